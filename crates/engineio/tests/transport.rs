//! The transport over real sockets, without Socket.IO: an echo handler on a free loopback port,
//! reached by HTTP long-polling, by WebSocket, and by a polling session upgraded to WebSocket,
//! plus admission's answers (the session cap, draining).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engineio::server;
use engineio::{CloseReason, Engine, EngineConfig, EngineHandler, Frame, OriginPolicy, Session};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Sends every message back, prefixed with `echo:`.
struct Echo;

impl EngineHandler for Echo {
    fn on_open(&self, _session: &Arc<Session>) {}
    fn on_message(&self, session: &Arc<Session>, text: &str) {
        let _ = session.send_frame(Frame::message(format!("4echo:{text}")));
    }
    fn on_binary(&self, session: &Arc<Session>, data: Bytes) {
        let _ = session.send_frame(Frame::binary(data));
    }
    fn on_close(&self, _session: &Arc<Session>, _reason: CloseReason) {}
}

struct Server {
    base: String,
    engine: Arc<Engine>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(cfg: EngineConfig) -> Server {
    let engine = Arc::new(Engine::new(cfg, Arc::new(Echo)));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = server::spawn_alone(listener, (*engine).clone());
    Server {
        base: format!("{addr}/engine.io/?EIO=4"),
        engine,
        _stop: stop,
    }
}

/// A WebSocket client for `url` (`ws://host:port/...`).
async fn ws_connect(url: String) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let host = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let stream = tokio::net::TcpStream::connect(host).await.unwrap();
    tokio_tungstenite::client_async(url, stream)
        .await
        .unwrap()
        .0
}

fn config() -> EngineConfig {
    EngineConfig {
        origins: OriginPolicy::Any,
        ..EngineConfig::default()
    }
}

/// The open packet's handshake object.
fn open_packet(text: &str) -> Value {
    assert!(text.starts_with('0'), "not an open packet: {text}");
    serde_json::from_str(&text[1..]).unwrap()
}

#[tokio::test]
async fn polling_handshake_message_and_echo() {
    let s = start(config()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}&transport=polling", s.base);
    let open = http.get(&url).send().await.unwrap().text().await.unwrap();
    let hs = open_packet(&open);
    assert_eq!(hs["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(hs["maxPayload"], 1_000_000);
    let sid = hs["sid"].as_str().unwrap().to_owned();
    let url = format!("{url}&sid={sid}");

    // Two messages in one POST: the record separator splits them.
    let posted = http.post(&url).body("4one\u{1e}4two").send().await.unwrap();
    assert_eq!(posted.text().await.unwrap(), "ok");
    let got = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(got, "4echo:one\u{1e}4echo:two");

    // A second GET while one is pending closes the session (the reference's rule).
    let first = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(&url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = http.get(&url).send().await.unwrap();
    assert_eq!(second.status(), 400);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(s.engine.session_count(), 0);
}

#[tokio::test]
async fn websocket_text_and_binary_echo() {
    let s = start(config()).await;
    let mut ws = ws_connect(format!("ws://{}&transport=websocket", s.base)).await;
    let Some(Ok(Message::Text(open))) = ws.next().await else {
        panic!("no open packet");
    };
    assert_eq!(open_packet(&open)["upgrades"], serde_json::json!([]));
    ws.send(Message::text("4hi")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("4echo:hi"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    // A close packet ends the session.
    ws.send(Message::text("1")).await.unwrap();
    for _ in 0..50 {
        if s.engine.session_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the session outlived its close packet");
}

#[tokio::test]
async fn polling_upgrades_to_websocket_without_losing_a_message() {
    let s = start(config()).await;
    let http = reqwest::Client::new();
    let poll = format!("http://{}&transport=polling", s.base);
    let sid = open_packet(&http.get(&poll).send().await.unwrap().text().await.unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let poll = format!("{poll}&sid={sid}");
    let mut ws = ws_connect(format!("ws://{}&transport=websocket&sid={sid}", s.base)).await;
    // A message sent over polling during the probe is answered there (a noop ends the GET).
    http.post(&poll).body("4during").send().await.unwrap();
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("3probe"));
    let pending = http.get(&poll).send().await.unwrap().text().await.unwrap();
    assert!(pending.contains("4echo:during"), "polling got {pending:?}");
    ws.send(Message::text("5")).await.unwrap();
    ws.send(Message::text("4after")).await.unwrap();
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(t) if t.as_str() == "6" => continue,
            m => {
                assert_eq!(m, Message::text("4echo:after"));
                break;
            }
        }
    }
}

#[tokio::test]
async fn the_session_cap_answers_429_with_retry_after_and_draining_503() {
    let s = start(EngineConfig {
        max_sessions: 1,
        ..config()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("http://{}&transport=polling", s.base);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);
    let over = http.get(&url).send().await.unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    s.engine.start_draining();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 503);
}
