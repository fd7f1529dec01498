//! Garbage over real connections: every malformed, oversized, truncated or badly placeheld
//! packet gets an error or a clean close, the server never panics, and it keeps serving.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

async fn start() -> (std::net::SocketAddr, support::EchoServer) {
    let server = support::start_echo(10_000, Duration::from_millis(20_000)).await;
    (server.addr, server)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    let stream = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = next_text(&mut ws).await.expect("open packet");
    assert!(open.starts_with("0{"), "{open}");
    ws.send(Message::text("40")).await.unwrap();
    let reply = next_text(&mut ws).await.expect("connect reply");
    assert!(reply.starts_with("40{\"sid\""), "{reply}");
    ws
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) if t.as_str() == "2" => continue,
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Binary(_)) | Ok(Message::Ping(_)) | Ok(Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// The connection ends (close frame, `1` packet, EOF or reset) within 2 s.
async fn closes(ws: &mut Ws) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "1" => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

async fn still_serves(addr: std::net::SocketAddr) {
    let mut ws = connect(addr).await;
    ws.send(Message::text(r#"42["ping",1]"#)).await.unwrap();
    assert_eq!(next_text(&mut ws).await.as_deref(), Some(r#"42["echo",1]"#));
}

#[tokio::test]
async fn malformed_text_packets_close_cleanly() {
    let (addr, _stop) = start().await;
    let valid = [
        r#"42["message",1,"2",{"3":[true]}]"#,
        r#"42456["message-with-ack",1]"#,
        r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        r#"43456[1]"#,
        r#"41"#,
    ];
    let mut garbage: Vec<String> = vec![
        "".into(),
        "x".into(),
        "4".into(),
        "4abc".into(),
        "42{}".into(),
        "42abc[\"x\"]".into(),
        "42[]".into(),
        "42[\"connect\"]".into(),
        "42[1".into(),
        "49[]".into(),
        "4-1[\"x\"]".into(),
        "4999999999999999999999[\"x\"]".into(),
        "45100000-[\"x\"]".into(),
        "45-1-[\"x\"]".into(),
        "400[]".into(),
        "40".into(),
        "44{\"message\":1}".into(),
        "2x".into(),
        "5".into(),
        "7".into(),
        format!("42[\"x\",{}]", "[".repeat(100_000)),
        format!("42[\"{}\"]", "y".repeat(20_000)),
    ];
    for v in valid {
        for cut in 1..v.len() {
            garbage.push(v[..cut].to_string());
        }
    }
    for g in &garbage {
        let mut ws = connect(addr).await;
        if ws.send(Message::text(g.clone())).await.is_err() {
            continue;
        }
        // Prefixes of valid packets may be valid themselves (`42["m"`... is not, `41` is): a
        // valid packet is answered or ignored, anything else closes the connection.
        let _ = tokio::time::timeout(Duration::from_millis(300), closes(&mut ws)).await;
    }
    still_serves(addr).await;
}

#[tokio::test]
async fn bad_binary_attachments_close_cleanly() {
    let (addr, _stop) = start().await;
    let cases: Vec<(String, Vec<Vec<u8>>, bool)> = vec![
        // placeholder index out of range
        (
            r#"451-["m",{"_placeholder":true,"num":1}]"#.into(),
            vec![vec![1]],
            true,
        ),
        // negative, float and string placeholders
        (
            r#"451-["m",{"_placeholder":true,"num":-1}]"#.into(),
            vec![vec![1]],
            true,
        ),
        (
            r#"451-["m",{"_placeholder":true,"num":0.5}]"#.into(),
            vec![vec![1]],
            true,
        ),
        (
            r#"451-["m",{"_placeholder":true,"num":"0"}]"#.into(),
            vec![vec![1]],
            true,
        ),
        // too many attachments
        (r#"4511-["m"]"#.into(), vec![], true),
        // text while attachments are expected
        (
            r#"452-["m",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.into(),
            vec![vec![1]],
            false,
        ),
    ];
    for (header, bins, expect_close) in cases {
        let mut ws = connect(addr).await;
        ws.send(Message::text(header.clone())).await.unwrap();
        for b in bins {
            ws.send(Message::binary(b)).await.unwrap();
        }
        if !expect_close {
            ws.send(Message::text(r#"42["x"]"#)).await.unwrap();
        }
        assert!(
            closes(&mut ws).await,
            "{header} should close the connection"
        );
    }
    // Binary with no packet waiting for it.
    let mut ws = connect(addr).await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(closes(&mut ws).await, "unexpected binary should close");
    // Oversized frame (max_payload 10 000).
    let mut ws = connect(addr).await;
    let _ = ws
        .send(Message::text(format!("42[\"{}\"]", "z".repeat(20_000))))
        .await;
    assert!(closes(&mut ws).await, "oversized frame should close");
    still_serves(addr).await;
}

/// Opens a polling session; returns the URL that addresses it.
async fn open_polling(client: &reqwest::Client, base: &str) -> String {
    let open = client.get(base).send().await.unwrap().text().await.unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap();
    format!("{base}&sid={sid}")
}

#[tokio::test]
async fn polling_garbage_and_oversized_bodies() {
    let (addr, _stop) = start().await;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
    let url = open_polling(&client, &base).await;
    let res = client
        .post(&url)
        .body("x".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        400,
        "session closed after 413"
    );

    for body in ["abc", "b!!!", "4a\x1e\x1e4b", "\u{1e}", "2", "3probe"] {
        let url = open_polling(&client, &base).await;
        let res = client.post(&url).body(body).send().await.unwrap();
        assert_eq!(res.status(), 400, "{body:?}");
        // The session is gone (400), or its last GET carries the close packet.
        let next = client.get(&url).send().await.unwrap();
        let status = next.status();
        let text = next.text().await.unwrap();
        assert!(
            status == 400 || text.ends_with('1'),
            "{body:?} closes the session: {status} {text:?}"
        );
    }
    let url = open_polling(&client, &base).await;
    let bin = client
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2])
        .send()
        .await
        .unwrap();
    assert_eq!(bin.status(), 400);
    still_serves(addr).await;
}
