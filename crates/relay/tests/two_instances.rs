//! Two instances of the stack (engineio + socketio + relay) on one real Valkey: a broadcast
//! made on one reaches a socket on the other, and a socket that drops from one is recovered on
//! the other with what it missed. Valkey is `$VALKEY_SERVER` (`scripts/test.sh` sets it to the
//! one `scripts/setup.sh` installs), started on a free loopback port for each test.

use std::sync::Arc;
use std::time::Duration;

use engineio::server;
use engineio::{Engine, EngineConfig, OriginPolicy};
use futures_util::{SinkExt, StreamExt};
use relay::{Relay, RelayConfig};
use serde_json::{json, Value};
use socketio::packet::Packet;
use socketio::{
    Accepted, BoxFuture, BroadcastTarget, ConnectError, ConnectRequest, NamespaceHandler, Socket,
    SocketIo, SocketIoConfig,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod common;
use common::{valkey, Valkey};

const ROOM: &str = "room:r";

/// Owner from the CONNECT payload's `user`; every socket joins [`ROOM`].
struct Handler;

impl NamespaceHandler for Handler {
    fn authenticate(&self, req: ConnectRequest) -> BoxFuture<Result<Accepted, ConnectError>> {
        let owner = req.auth["user"].as_str().map(str::to_owned);
        Box::pin(async move {
            Ok(Accepted {
                extension: None,
                owner,
            })
        })
    }
    fn prepare(&self, socket: &Arc<Socket>) {
        socket.join(&[ROOM]);
    }
}

struct Instance {
    addr: std::net::SocketAddr,
    io: Arc<SocketIo>,
    relay: Arc<Relay>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// An instance; with `recovery`, its log in `partitions`.
async fn instance(valkey: &Valkey, recovery: bool, partitions: usize) -> Instance {
    let io = SocketIo::builder(SocketIoConfig::default())
        .namespace("/", Arc::new(Handler))
        .build();
    let relay = Relay::start(
        RelayConfig {
            url: format!("redis://127.0.0.1:{}", valkey.port),
            topology: Default::default(),
            nodes: Vec::new(),
            sentinel_service: String::new(),
            pubsub: Default::default(),
            subscription_mode: Default::default(),
            prefix: "socket.io".into(),
            ack_timeout: Duration::from_secs(5),
            timing: Default::default(),
            recovery: recovery.then_some(Duration::from_secs(120)),
            log_partitions: partitions,
        },
        &io,
    )
    .expect("the relay starts");
    let engine = Engine::new(
        EngineConfig {
            path: "/socket.io/".into(),
            origins: OriginPolicy::Any,
            ..EngineConfig::default()
        },
        io.clone(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = server::spawn_alone(listener, engine);
    for _ in 0..100 {
        if relay.is_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(relay.is_up(), "the relay reached Valkey");
    Instance {
        addr,
        io,
        relay,
        _stop: stop,
    }
}

impl Instance {
    fn emit(&self, event: &str, arg: Value) {
        let ns = self.io.namespace("/").unwrap();
        let packet = Packet::event("/", event, vec![arg], Vec::new(), None);
        ns.broadcast(&BroadcastTarget::room(ROOM), packet);
    }
}

/// A connected client: its WebSocket, the CONNECT reply's payload, and the events that came
/// before that reply (a recovered session's missed packets come first, as the reference sends
/// them, and socket.io-client buffers them until it is connected).
struct Client {
    ws: WebSocketStream<TcpStream>,
    connected: Value,
    early: Vec<Vec<Value>>,
}

/// A Socket.IO client over a raw WebSocket, connected to `/` with `auth`.
async fn client(at: &Instance, auth: Value) -> Client {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", at.addr);
    let stream = TcpStream::connect(at.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = next_text(&mut ws).await;
    assert!(open.starts_with('0'), "{open}");
    ws.send(Message::text(format!("40{auth}"))).await.unwrap();
    let mut early = Vec::new();
    loop {
        let text = next_text(&mut ws).await;
        if let Some(event) = text.strip_prefix("42") {
            early.push(serde_json::from_str(event).unwrap());
            continue;
        }
        let payload = text.strip_prefix("40").unwrap_or_else(|| panic!("{text}"));
        let connected = serde_json::from_str(payload).unwrap();
        return Client {
            ws,
            connected,
            early,
        };
    }
}

/// The next text message, answering pings; panics after 5 s.
async fn next_text(ws: &mut WebSocketStream<TcpStream>) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the connection is open")
            .unwrap();
        match m {
            Message::Text(t) if t.as_str() == "2" => ws.send(Message::text("3")).await.unwrap(),
            Message::Text(t) => return t.to_string(),
            _ => {}
        }
    }
}

/// The next event as `[name, arg, ...]`.
async fn next_event(ws: &mut WebSocketStream<TcpStream>) -> Vec<Value> {
    let text = next_text(ws).await;
    let payload = text
        .strip_prefix("42")
        .unwrap_or_else(|| panic!("not an event: {text}"));
    serde_json::from_str(payload).unwrap()
}

/// Emits `warm-up` from `from` until the socket on the other instance hears one: the other
/// instance's subscription to the room is then in place. Returns the last offset heard.
async fn warm_up(from: &Instance, ws: &mut WebSocketStream<TcpStream>) -> Option<Value> {
    for i in 0..100 {
        from.emit("warm-up", json!(i));
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(100), next_event(ws)).await {
            assert_eq!(event[0], "warm-up");
            // Later warm-ups may still be on their way: read until quiet.
            let mut offset = event.get(2).cloned();
            while let Ok(e) = tokio::time::timeout(Duration::from_millis(300), next_event(ws)).await
            {
                assert_eq!(e[0], "warm-up");
                offset = e.get(2).cloned();
            }
            return offset;
        }
    }
    panic!("no broadcast reached the other instance");
}

#[tokio::test]
async fn a_broadcast_on_one_instance_reaches_a_socket_on_the_other() {
    let v = valkey(&[]).await;
    let (a, b) = (instance(&v, false, 1).await, instance(&v, false, 1).await);
    let Client {
        mut ws, connected, ..
    } = client(&b, json!({"user": "u1"})).await;
    assert!(connected.get("pid").is_none(), "no recovery, no pid");
    warm_up(&a, &mut ws).await;
    // No order between instances: B delivers its own at once, A's goes through Valkey.
    a.emit("news", json!({"n": 1}));
    b.emit("news", json!({"n": 2}));
    let mut got = vec![next_event(&mut ws).await, next_event(&mut ws).await];
    got.sort_by_key(|e| e[1]["n"].as_u64());
    let want = [json!(["news", {"n": 1}]), json!(["news", {"n": 2}])];
    assert_eq!(got.into_iter().map(Value::Array).collect::<Vec<_>>(), want);
    // Nothing twice: the publisher does not hear its own message back.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_event(&mut ws))
            .await
            .is_err()
    );
    a.relay.stop().await;
    b.relay.stop().await;
}

#[tokio::test]
async fn a_socket_dropped_on_one_instance_is_recovered_on_the_other_with_what_it_missed() {
    dropped_and_recovered_on_the_other(1).await;
}

#[tokio::test]
async fn the_same_with_the_log_in_four_partitions() {
    dropped_and_recovered_on_the_other(4).await;
}

async fn dropped_and_recovered_on_the_other(partitions: usize) {
    let v = valkey(&[]).await;
    let (a, b) = (
        instance(&v, true, partitions).await,
        instance(&v, true, partitions).await,
    );
    let Client {
        mut ws, connected, ..
    } = client(&b, json!({"user": "u1"})).await;
    let (sid, pid) = (connected["sid"].clone(), connected["pid"].clone());
    assert!(
        pid.is_string(),
        "a recoverable socket gets a pid: {connected}"
    );
    let offset = warm_up(&a, &mut ws)
        .await
        .expect("recorded broadcasts carry an offset");
    let read: Option<socketio::Frontier> = offset.as_str().and_then(|o| o.parse().ok());
    assert_eq!(read.map(|f| f.partitions()), Some(partitions), "{offset}");

    // The connection drops without a close (a network failure): B keeps the session.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.emit("missed", json!(1));
    a.emit("missed", json!(2));

    // Another user presenting u1's pid gets a fresh session, and nothing of u1's.
    let thief = client(&a, json!({"user": "u2", "pid": pid, "offset": offset})).await;
    assert_ne!(thief.connected["sid"], sid);
    assert!(thief.early.is_empty(), "{:?}", thief.early);

    let again = client(&a, json!({"user": "u1", "pid": pid, "offset": offset})).await;
    assert_eq!(again.connected["sid"], sid, "the same socket id: recovered");
    let missed: Vec<(&Value, &Value)> = again.early.iter().map(|e| (&e[0], &e[1])).collect();
    assert_eq!(
        missed,
        vec![(&json!("missed"), &json!(1)), (&json!("missed"), &json!(2))]
    );
    a.relay.stop().await;
    b.relay.stop().await;
}
