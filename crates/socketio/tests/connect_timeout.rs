//! The connect timeout: a session that joins no namespace in time is closed, one that joined
//! is not, and sessions opened at different times each get their own full timeout.

// Each test binary uses part of the support module.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use socketio::SocketIoConfig;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

const TIMEOUT: Duration = Duration::from_millis(600);

/// An Engine.IO session over WebSocket that has not joined a namespace yet.
async fn open(addr: std::net::SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = next_text(&mut ws, Duration::from_secs(2)).await;
    assert!(
        open.as_deref().is_some_and(|o| o.starts_with("0{")),
        "{open:?}"
    );
    ws
}

/// The next text message other than a ping, or None when the connection ended or `wait`
/// passed.
async fn next_text(ws: &mut Ws, wait: Duration) -> Option<String> {
    let until = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) if t.as_str() == "2" => ws.send(Message::text("3")).await.ok()?,
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// When the connection ended (close frame, EOF or reset), within `wait`.
async fn ended_within(ws: &mut Ws, wait: Duration) -> Option<Instant> {
    let until = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await.ok()? {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Some(Instant::now()),
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn idle_sessions_close_at_their_own_deadline_and_joined_ones_stay() {
    let config = SocketIoConfig {
        connect_timeout: TIMEOUT,
        ..SocketIoConfig::default()
    };
    let server = support::start_echo_with(config, 10_000, Duration::from_secs(20)).await;

    let first_opened = Instant::now();
    let mut first = open(server.addr).await;
    let mut joined = open(server.addr).await;
    joined.send(Message::text("40")).await.unwrap();
    let reply = next_text(&mut joined, Duration::from_secs(2)).await;
    assert!(
        reply
            .as_deref()
            .is_some_and(|r| r.starts_with("40{\"sid\"")),
        "{reply:?}"
    );

    tokio::time::sleep(TIMEOUT / 2).await;
    let second_opened = Instant::now();
    let mut second = open(server.addr).await;

    let first_end = ended_within(&mut first, Duration::from_secs(5)).await;
    let first_end = first_end.expect("the idle session is closed");
    assert!(
        first_end >= first_opened + TIMEOUT,
        "closed before its timeout"
    );
    let second_end = ended_within(&mut second, Duration::from_secs(5)).await;
    let second_end = second_end.expect("the later idle session is closed too");
    assert!(
        second_end >= second_opened + TIMEOUT,
        "the later session got its own full timeout, not the first one's"
    );

    // Past both deadlines, the session that joined a namespace still works.
    tokio::time::sleep(TIMEOUT / 2).await;
    joined.send(Message::text(r#"42["m",1]"#)).await.unwrap();
    let echo = next_text(&mut joined, Duration::from_secs(2)).await;
    assert_eq!(echo.as_deref(), Some(r#"42["echo",1]"#));

    // A session opened after the queue ran empty is still timed.
    let third_opened = Instant::now();
    let mut third = open(server.addr).await;
    let third_end = ended_within(&mut third, Duration::from_secs(5)).await;
    assert!(third_end.expect("closed") >= third_opened + TIMEOUT);
}
