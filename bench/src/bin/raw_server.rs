//! The practical ceiling of this machine for the fan-out benchmark: a raw tokio-tungstenite
//! broadcast server. No Socket.IO framing, no Engine.IO heartbeats, no authentication. It takes
//! its rooms from the query string (`/?rooms=a,b,c`), sends `ok` once they are joined, and
//! relays every `@socket.io/redis-emitter` message it sees on Valkey (PSUBSCRIBE `<prefix>#/#*`)
//! as one text frame, the JSON of the packet's data, encoded once for all recipients. A message
//! to no room goes to every socket (as `io.emit`): each is also in the room `""`.
//!
//! Each socket has one task and one bounded channel (like a typical tokio WebSocket server); the
//! task writes everything queued in one flush. Buffers as the gateway's defaults: 4 KiB read and
//! write buffers.
//!
//!     bench-raw-server --port 0 --host 127.0.0.1 --redis 127.0.0.1:6379 [--prefix socket.io]
//!
//! Prints `listening on <addr>` on stdout when ready; stops on SIGTERM or SIGINT.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_bench::args::Args;
use gateway_bench::resp::{self, Value};
use gateway_bench::{emitter, Result};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const QUEUE: usize = 4096;

#[derive(Default)]
struct Hub {
    rooms: RwLock<HashMap<String, HashMap<u64, mpsc::Sender<Utf8Bytes>>>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
}

impl Hub {
    fn join(&self, id: u64, rooms: &[String], tx: &mpsc::Sender<Utf8Bytes>) {
        let mut map = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        for r in rooms.iter().chain([&String::new()]) {
            map.entry(r.clone()).or_default().insert(id, tx.clone());
        }
    }

    fn leave(&self, id: u64, rooms: &[String]) {
        let mut map = self.rooms.write().unwrap_or_else(|e| e.into_inner());
        for r in rooms.iter().chain([&String::new()]) {
            if let Some(m) = map.get_mut(r) {
                m.remove(&id);
                if m.is_empty() {
                    map.remove(r);
                }
            }
        }
    }

    fn broadcast(&self, rooms: &[String], text: Utf8Bytes) {
        let everyone = [String::new()];
        let rooms = if rooms.is_empty() {
            &everyone[..]
        } else {
            rooms
        };
        let map = self.rooms.read().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::HashSet::new();
        for r in rooms {
            let Some(members) = map.get(r) else { continue };
            for (id, tx) in members {
                if rooms.len() > 1 && !seen.insert(*id) {
                    continue;
                }
                if tx.try_send(text.clone()).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn main() -> ExitCode {
    gateway_bench::run_main(run())
}

async fn run() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let host = args.str("host").unwrap_or("127.0.0.1").to_owned();
    let port: u16 = args.get("port", 0)?;
    let redis = args.str("redis").map(str::to_owned);
    let prefix = args.str("prefix").unwrap_or("socket.io").to_owned();
    let hub = Arc::new(Hub::default());
    if let Some(addr) = redis {
        let sub = TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("cannot connect to valkey at {addr}: {e}"))?;
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Err(e) = subscribe(sub, &prefix, &hub).await {
                eprintln!("error: valkey subscription ended: {e}");
                std::process::exit(1);
            }
        });
    }
    let listener = TcpListener::bind((host.as_str(), port)).await?;
    println!("listening on {}", listener.local_addr()?);
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, hub.clone()));
    }
    eprintln!(
        "raw-server: stopping ({} frames dropped on full queues)",
        hub.dropped.load(Ordering::Relaxed)
    );
    Ok(())
}

fn rooms_from_query(uri: &str) -> Vec<String> {
    uri.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("rooms="))
        .flat_map(|v| v.split(','))
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect()
}

// The handshake callback's error type is tungstenite's (large) HTTP response.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, hub: Arc<Hub>) {
    let mut rooms = Vec::new();
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let callback = |req: &Request, res: Response| {
        rooms = rooms_from_query(&req.uri().to_string());
        Ok(res)
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
    hub.join(id, &rooms, &tx);
    drop(tx);
    if ws.send(Message::Text("ok".into())).await.is_ok() {
        loop {
            tokio::select! {
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    let mut res = ws.feed(Message::Text(m)).await;
                    while res.is_ok() {
                        match rx.try_recv() {
                            Ok(m) => res = ws.feed(Message::Text(m)).await,
                            Err(_) => break,
                        }
                    }
                    if res.is_err() || ws.flush().await.is_err() {
                        break;
                    }
                }
                r = ws.next() => match r {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    hub.leave(id, &rooms);
}

async fn subscribe(stream: TcpStream, prefix: &str, hub: &Hub) -> Result<()> {
    let mut r = BufReader::new(stream);
    let mut cmd = Vec::new();
    let pattern = format!("{prefix}#/#*");
    resp::command(&mut cmd, &[b"PSUBSCRIBE", pattern.as_bytes()]);
    r.get_mut().write_all(&cmd).await?;
    loop {
        let Value::Array(Some(items)) = resp::read_value(&mut r).await? else {
            continue;
        };
        if items.len() != 4 || items[0].bulk() != Some(b"pmessage") {
            continue;
        }
        let Some(msg) = items[3].bulk() else { continue };
        match emitter::decode_broadcast(msg) {
            Ok(Some(b)) => {
                let text = serde_json::to_string(&b.data)?;
                hub.broadcast(&b.rooms, Utf8Bytes::from(text));
            }
            Ok(None) => {}
            Err(e) => eprintln!("raw-server: undecodable message: {e}"),
        }
    }
}
