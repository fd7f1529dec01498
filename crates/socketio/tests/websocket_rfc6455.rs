//! RFC 6455's server-side MUSTs, against a real listener, case by case in the order of the
//! Autobahn test suite (sections 1–7, 9 and 10; its case numbers are in each test's doc).
//! Autobahn itself is not run here: these are its cases in our own code.
//!
//! The server under test is the Engine.IO / Socket.IO stack with an echo namespace, so a
//! message's integrity is checked end to end: a text message is a Socket.IO event
//! `42["m",<string>]` echoed as `42["echo",<string>]`; a binary message is the attachment of
//! `451-["m",{placeholder}]`, echoed with the same bytes. Rules of the frame decoder itself
//! (every UTF-8 case, every length form split anywhere) are unit tests in `wsproto.rs`; this
//! file checks what the connection does with them: pongs, close handshakes, close codes, and
//! that nothing is read after a close or a failure.

mod support;

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// The listener's `engine.max_payload`.
const MAX_PAYLOAD: usize = 100_000;

type Server = support::EchoServer;

async fn start() -> Server {
    // A short ping timeout, so a server waiting for the peer's close never holds a test up.
    support::start_echo(MAX_PAYLOAD, Duration::from_secs(2)).await
}

/// A frame from the server.
#[derive(Debug, PartialEq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("server text is UTF-8")
    }

    /// The close frame's code, if it has one.
    fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A client frame with the given first byte's bits, masked as a client must.
fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![u8::from(fin) << 7 | rsv << 4 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A text message in fragments of `size` bytes (the first with the text opcode, the last
/// with FIN).
fn fragmented_text(message: &[u8], size: usize) -> Vec<u8> {
    let parts: Vec<&[u8]> = message.chunks(size).collect();
    parts
        .iter()
        .enumerate()
        .flat_map(|(i, p)| frame(i + 1 == parts.len(), 0, u8::from(i == 0), p))
        .collect()
}

fn text(payload: &[u8]) -> Vec<u8> {
    frame(true, 0, 1, payload)
}

fn close(code: u16, reason: &[u8]) -> Vec<u8> {
    frame(true, 0, 8, &[&code.to_be_bytes()[..], reason].concat())
}

/// The Socket.IO event whose echo proves a text message arrived whole.
fn event(s: &str) -> String {
    format!(r#"42["m",{}]"#, serde_json::Value::from(s))
}

fn echo_of(s: &str) -> String {
    format!(r#"42["echo",{}]"#, serde_json::Value::from(s))
}

/// A connected client speaking raw frames.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    /// WebSocket handshake, Engine.IO open, Socket.IO connect to `/`.
    async fn connect(server: &Server) -> Client {
        let mut c = Client::handshake(server, "").await;
        let open = c.next().await.expect("open packet");
        assert!(open.text().starts_with("0{"), "{open:?}");
        c.send(&text(b"40")).await;
        let reply = c.next().await.expect("connect reply");
        assert!(reply.text().starts_with("40{\"sid\""), "{reply:?}");
        c
    }

    /// The opening handshake (RFC 6455 §4.2.2): 101 with the accept key, and no extension
    /// accepted, whatever the client offers.
    async fn handshake(server: &Server, extra_headers: &str) -> Client {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(
                stream.read_buf(&mut buf).await.unwrap() > 0,
                "no handshake answer"
            );
        };
        let head = String::from_utf8(buf.split_to(end).to_vec())
            .unwrap()
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        let accept = derive_accept_key(key.as_bytes()).to_ascii_lowercase();
        assert!(
            head.contains(&format!("sec-websocket-accept: {accept}\r\n")),
            "{head}"
        );
        assert!(!head.contains("sec-websocket-extensions"), "{head}");
        Client { stream, buf }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends `bytes` in writes of `chunk` bytes, each flushed on its own (Autobahn's "chopped").
    async fn send_chopped(&mut self, bytes: &[u8], chunk: usize) {
        self.stream.set_nodelay(true).unwrap();
        for part in bytes.chunks(chunk) {
            self.stream.write_all(part).await.unwrap();
            self.stream.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
    }

    /// The next frame from the server, skipping Engine.IO pings; `None` at end of stream
    /// (or after 3 s of silence). Server frames must be unmasked with no reserved bit (§5.1).
    async fn next(&mut self) -> Option<Frame> {
        loop {
            let f = self.read_frame().await?;
            if f.opcode == 1 && f.payload == b"2" {
                continue;
            }
            return Some(f);
        }
    }

    async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.parse() {
                return Some(f);
            }
            let read =
                tokio::time::timeout(Duration::from_secs(3), self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        let b = &self.buf[..];
        let (b0, b1) = (*b.first()?, *b.get(1)?);
        assert_eq!(b1 & 0x80, 0, "server frames are never masked");
        assert_eq!(b0 & 0x70, 0, "no reserved bit without an extension");
        let (len, ext) = match b1 & 0x7f {
            126 => (usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 2),
            127 => (
                usize::try_from(u64::from_be_bytes(b.get(2..10)?.try_into().ok()?)).ok()?,
                8,
            ),
            n => (usize::from(n), 0),
        };
        if b.len() < 2 + ext + len {
            return None;
        }
        self.buf.advance(2 + ext);
        let payload = self.buf.split_to(len).to_vec();
        Some(Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// The echo of a text message.
    async fn expect_echo(&mut self, s: &str) {
        let f = self.next().await.expect("echo");
        assert_eq!((f.fin, f.opcode), (true, 1));
        assert_eq!(f.text(), echo_of(s));
    }

    /// The echo of a binary message.
    async fn expect_binary_echo(&mut self, data: &[u8]) {
        let header = self.next().await.expect("echo header");
        assert_eq!(
            header.text(),
            r#"451-["echo",{"_placeholder":true,"num":0}]"#
        );
        let f = self.next().await.expect("echo attachment");
        assert_eq!((f.fin, f.opcode), (true, 2));
        assert_eq!(f.payload, data);
    }

    /// The server's close frame (skipping `skipped` other frames at most, none by default),
    /// then the end of the TCP stream: the server closes the connection.
    async fn expect_close(&mut self, code: Option<u16>) {
        let f = self.next().await.expect("close frame");
        assert_eq!(f.opcode, 8, "expected a close frame, got {f:?}");
        assert_eq!(f.close_code(), code, "close code");
        assert_eq!(
            self.read_frame().await,
            None,
            "nothing after the close frame"
        );
    }

    /// A clean close started by the client: echo of its code, then the end of the stream.
    async fn close_with(mut self, code: u16) {
        self.send(&close(code, b"")).await;
        self.expect_close(Some(code)).await;
    }
}

fn binary_message(data: &[u8]) -> Vec<u8> {
    let mut out = text(br#"451-["m",{"_placeholder":true,"num":0}]"#);
    out.extend(frame(true, 0, 2, data));
    out
}

/// A text message whose frame payload is exactly `len` bytes, and the string it carries.
fn text_of_len(len: usize) -> (Vec<u8>, String) {
    let overhead = event("").len();
    let s = "*".repeat(len - overhead);
    (event(&s).into_bytes(), s)
}

/// 1.1.1–1.1.8, 1.2.1–1.2.8: text and binary messages of every length form, sent at once and
/// in 997-byte pieces, arrive whole.
#[tokio::test]
async fn framing_messages_of_every_length_form() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    for len in [16, 125, 126, 127, 128, 65535, 65536] {
        let (payload, s) = text_of_len(len);
        c.send(&text(&payload)).await;
        c.expect_echo(&s).await;
        c.send_chopped(&text(&payload), 997).await;
        c.expect_echo(&s).await;
    }
    for len in [0, 125, 126, 127, 128, 65535, 65536] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        c.send(&binary_message(&data)).await;
        c.expect_binary_echo(&data).await;
        c.send_chopped(&binary_message(&data), 997).await;
        c.expect_binary_echo(&data).await;
    }
    c.close_with(1000).await;
}

/// 2.1–2.4, 2.6, 2.10, 2.11: every ping gets a pong with the same payload (§5.5.2), up to
/// the 125 bytes a control frame holds, whole or sent byte by byte, and ten in a row.
#[tokio::test]
async fn pings_are_answered_with_their_payload() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let payloads: [Vec<u8>; 4] = [
        vec![],
        b"Hello, world!".to_vec(),
        vec![0, 255, 254, 253, 252],
        vec![0xfe; 125],
    ];
    for p in &payloads {
        c.send(&frame(true, 0, 9, p)).await;
        assert_eq!(
            c.next().await,
            Some(Frame {
                fin: true,
                opcode: 10,
                payload: p.clone()
            })
        );
    }
    c.send_chopped(&frame(true, 0, 9, &payloads[3]), 1).await;
    assert_eq!(
        c.next().await,
        Some(Frame {
            fin: true,
            opcode: 10,
            payload: payloads[3].clone()
        })
    );
    let ten: Vec<u8> = (0..10u8).flat_map(|i| frame(true, 0, 9, &[i])).collect();
    c.send(&ten).await;
    for i in 0..10u8 {
        assert_eq!(
            c.next().await,
            Some(Frame {
                fin: true,
                opcode: 10,
                payload: vec![i]
            })
        );
    }
    c.send_chopped(&ten, 1).await;
    for i in 0..10u8 {
        assert_eq!(
            c.next().await,
            Some(Frame {
                fin: true,
                opcode: 10,
                payload: vec![i]
            })
        );
    }
    c.close_with(1000).await;
}

/// 2.5: a ping with 126 bytes is not a valid control frame (§5.5): 1002.
#[tokio::test]
async fn an_oversized_ping_fails_the_connection() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    c.send(&frame(true, 0, 9, &[0; 126])).await;
    c.expect_close(Some(1002)).await;
}

/// 2.7–2.9: unsolicited pongs, with or without payload, are ignored (§5.5.3); a ping after
/// one is answered with its own payload.
#[tokio::test]
async fn unsolicited_pongs_are_ignored() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    c.send(&frame(true, 0, 10, b"")).await;
    c.send(&frame(true, 0, 10, b"unsolicited")).await;
    c.send(&frame(true, 0, 9, b"ping")).await;
    assert_eq!(
        c.next().await,
        Some(Frame {
            fin: true,
            opcode: 10,
            payload: b"ping".to_vec()
        })
    );
    c.send(&text(event("after").as_bytes())).await;
    c.expect_echo("after").await;
    c.close_with(1000).await;
}

/// 3.1–3.7: a frame with a reserved bit set, no extension being negotiated, fails the
/// connection (§5.2), even after a valid message in the same write; a ping after it is never
/// answered.
#[tokio::test]
async fn reserved_bits_fail_the_connection() {
    let server = start().await;
    for rsv in 1..=7u8 {
        let bad = match rsv {
            // 3.6 and 3.7 carry the bit on a binary and a ping frame.
            6 => frame(true, rsv, 2, &[1, 2, 3]),
            7 => frame(true, rsv, 9, b""),
            _ => frame(true, rsv, 1, event("bad").as_bytes()),
        };
        fails_after_an_echo(&server, bad, 1002).await;
    }
}

/// Sends a valid message, `bad` and a ping in one write: the message is echoed, then the
/// connection fails with `code` and the ping is never answered.
async fn fails_after_an_echo(server: &Server, bad: Vec<u8>, code: u16) {
    let mut c = Client::connect(server).await;
    let mut bytes = text(event("before").as_bytes());
    bytes.extend(bad);
    bytes.extend(frame(true, 0, 9, b"after"));
    c.send(&bytes).await;
    c.expect_echo("before").await;
    c.expect_close(Some(code)).await;
}

/// 4.1.1–4.1.5, 4.2.1–4.2.5: reserved data opcodes (3–7) and control opcodes (11–15) fail the
/// connection (§5.2), with or without payload; a valid message before one is still echoed.
#[tokio::test]
async fn reserved_opcodes_fail_the_connection() {
    let server = start().await;
    for (i, opcode) in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15]
        .into_iter()
        .enumerate()
    {
        let payload: &[u8] = if i % 2 == 0 { b"" } else { b"payload" };
        fails_after_an_echo(&server, frame(true, 0, opcode, payload), 1002).await;
    }
}

/// 5.1, 5.2: control frames must not be fragmented (§5.5).
#[tokio::test]
async fn fragmented_control_frames_fail_the_connection() {
    let server = start().await;
    for opcode in [9u8, 10] {
        let mut c = Client::connect(&server).await;
        let mut bytes = frame(false, 0, opcode, b"frag");
        bytes.extend(frame(true, 0, 0, b"ment"));
        c.send(&bytes).await;
        c.expect_close(Some(1002)).await;
    }
}

/// 5.3–5.8, 5.19, 5.20: fragmented messages are reassembled (§5.4), sent at once or byte by
/// byte, with pings between the fragments answered at once.
#[tokio::test]
async fn fragmented_messages_are_reassembled_around_pings() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let message = event("fragmented");
    let (a, b) = message.as_bytes().split_at(5);
    let two = [frame(false, 0, 1, a), frame(true, 0, 0, b)].concat();
    c.send(&two).await;
    c.expect_echo("fragmented").await;
    c.send_chopped(&two, 1).await;
    c.expect_echo("fragmented").await;
    let with_ping = [
        frame(false, 0, 1, a),
        frame(true, 0, 9, b"between"),
        frame(true, 0, 0, b),
    ]
    .concat();
    for chunk in [with_ping.len(), 1] {
        c.send_chopped(&with_ping, chunk).await;
        assert_eq!(
            c.next().await,
            Some(Frame {
                fin: true,
                opcode: 10,
                payload: b"between".to_vec()
            })
        );
        c.expect_echo("fragmented").await;
    }
    // 5.19/5.20: five fragments, a ping after the second and the fourth.
    let parts: Vec<&[u8]> = message
        .as_bytes()
        .chunks(message.len().div_ceil(5))
        .collect();
    assert_eq!(parts.len(), 5);
    let mut bytes = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        bytes.extend(frame(
            i + 1 == parts.len(),
            0,
            if i == 0 { 1 } else { 0 },
            part,
        ));
        if i == 1 || i == 3 {
            bytes.extend(frame(true, 0, 9, &[i as u8]));
        }
    }
    c.send(&bytes).await;
    for i in [1u8, 3] {
        assert_eq!(
            c.next().await,
            Some(Frame {
                fin: true,
                opcode: 10,
                payload: vec![i]
            })
        );
    }
    c.expect_echo("fragmented").await;
    // Binary, in three fragments.
    let data: Vec<u8> = (0..=255).collect();
    let mut bytes = text(br#"451-["m",{"_placeholder":true,"num":0}]"#);
    bytes.extend(frame(false, 0, 2, &data[..100]));
    bytes.extend(frame(false, 0, 0, &data[100..200]));
    bytes.extend(frame(true, 0, 0, &data[200..]));
    c.send(&bytes).await;
    c.expect_binary_echo(&data).await;
    c.close_with(1000).await;
}

/// 5.9–5.14: a continuation frame with no message to continue fails the connection (§5.4),
/// FIN set or not, sent at once or byte by byte.
#[tokio::test]
async fn continuations_without_a_message_fail_the_connection() {
    let server = start().await;
    for (fin, chunk) in [(true, 0), (true, 1), (false, 0), (false, 1)] {
        let mut c = Client::connect(&server).await;
        let mut bytes = frame(fin, 0, 0, b"orphan");
        bytes.extend(text(event("after").as_bytes()));
        if chunk == 0 {
            c.send(&bytes).await;
        } else {
            c.send_chopped(&bytes, chunk).await;
        }
        c.expect_close(Some(1002)).await;
    }
}

/// 5.15–5.18: a new data frame while a message is fragmented (instead of a continuation)
/// fails the connection (§5.4); the message completed before it is delivered.
#[tokio::test]
async fn a_message_inside_another_fails_the_connection() {
    let server = start().await;
    let message = event("first");
    let (a, b) = message.as_bytes().split_at(4);
    let cases = [
        // 5.15: a whole message, then a continuation with nothing to continue.
        [
            frame(false, 0, 1, a),
            frame(true, 0, 0, b),
            frame(false, 0, 0, b"x"),
            text(b"4"),
        ]
        .concat(),
        // 5.18: two fragments both with the text opcode.
        [frame(false, 0, 1, a), frame(true, 0, 1, b)].concat(),
        // A binary message started inside a text one.
        [frame(false, 0, 1, a), frame(true, 0, 2, b)].concat(),
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut c = Client::connect(&server).await;
        c.send(bytes).await;
        if i == 0 {
            c.expect_echo("first").await;
        }
        c.expect_close(Some(1002)).await;
    }
}

/// 6.1–6.23 over the connection: valid UTF-8 (including the largest code point and
/// non-characters, which are valid) arrives intact, in one frame or split inside characters;
/// invalid UTF-8 fails the connection with 1007 (§8.1), and in a fragment as soon as that
/// fragment arrives (6.4, fail fast). The full table of sequences is `wsproto.rs`'s.
#[tokio::test]
async fn text_must_be_utf8() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    for s in [
        "",
        "κόσμε",
        "\u{10FFFF}\u{FFFE}\u{FFFF}\u{FDD0}",
        "\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFD}",
    ] {
        let message = event(s);
        c.send(&text(message.as_bytes())).await;
        c.expect_echo(s).await;
        // 6.2, 6.6: split at every byte, so inside every multi-byte character.
        c.send(&fragmented_text(message.as_bytes(), 1)).await;
        c.expect_echo(s).await;
    }
    // 6.1: empty fragments around a message.
    let message = event("x");
    let bytes = [
        frame(false, 0, 1, b""),
        frame(false, 0, 0, message.as_bytes()),
        frame(true, 0, 0, b""),
    ]
    .concat();
    c.send(&bytes).await;
    c.expect_echo("x").await;
    c.close_with(1000).await;

    let invalid: [&[u8]; 6] = [
        &[
            0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            0x65, 0x64, 0x69, 0x74, 0x65, 0x64,
        ],
        &[0xf4, 0x90, 0x80, 0x80],
        &[0xc0, 0xaf],
        &[0x80],
        &[0xed, 0xbf, 0xbf],
        &[0xce, 0xba, 0xe1],
    ];
    for bad in invalid {
        let mut c = Client::connect(&server).await;
        c.send(&text(&[b"42[\"m\",\"", bad, b"\"]"].concat())).await;
        c.expect_close(Some(1007)).await;
    }
    // 6.4: the fragment carrying the invalid byte fails the connection while the message is
    // still open: the server closes before the rest is sent.
    let mut c = Client::connect(&server).await;
    c.send(&frame(false, 0, 1, &[b'4', b'2', 0xf4, 0x90, 0x80]))
        .await;
    c.expect_close(Some(1007)).await;
}

/// 7.1.1–7.1.5: after a close frame nothing is read (a second close, a ping, a message, a
/// message's last fragment), the close is answered and the server closes the connection.
#[tokio::test]
async fn nothing_is_read_after_a_close() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    c.send(&text(event("last").as_bytes())).await;
    c.expect_echo("last").await;
    let mut bytes = close(1000, b"");
    bytes.extend(close(1001, b""));
    bytes.extend(frame(true, 0, 9, b"ping"));
    bytes.extend(text(event("ignored").as_bytes()));
    c.send(&bytes).await;
    c.expect_close(Some(1000)).await;

    // 7.1.5: a message's first fragment, then the close: the message is never delivered.
    let mut c = Client::connect(&server).await;
    let message = event("unfinished");
    let mut bytes = frame(false, 0, 1, &message.as_bytes()[..4]);
    bytes.extend(close(1000, b""));
    bytes.extend(frame(true, 0, 0, &message.as_bytes()[4..]));
    c.send(&bytes).await;
    c.expect_close(Some(1000)).await;
}

/// 7.3.1–7.3.6, 7.5.1: the close frame's payload: empty (answered with an empty close), a
/// code, a code and a reason up to the 123 bytes that fit; one byte, a reason that makes the
/// frame 126 bytes (1002) and a reason that is not UTF-8 (1007) fail the connection.
#[tokio::test]
async fn close_frame_payloads() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    c.send(&frame(true, 0, 8, b"")).await;
    c.expect_close(None).await;
    for reason in [&b""[..], b"Hello World!", &[b'*'; 123]] {
        let mut c = Client::connect(&server).await;
        c.send(&close(1000, reason)).await;
        c.expect_close(Some(1000)).await;
    }
    for (payload, code) in [
        (vec![0x03], 1002),
        (
            close(1000, &[b'*'; 124])[6..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [0x37, 0xfa, 0x21, 0x3d][i % 4])
                .collect(),
            1002,
        ),
        (
            [&1000u16.to_be_bytes()[..], &[0xce, 0xba, 0xed, 0xa0, 0x80]].concat(),
            1007,
        ),
    ] {
        let mut c = Client::connect(&server).await;
        c.send(&frame(true, 0, 8, &payload)).await;
        c.expect_close(Some(code)).await;
    }
}

/// 7.7.1–7.7.13: every code an endpoint may send (RFC 6455 §7.4.1 and IANA's registry:
/// 1000–1003, 1007–1014; 3000–4999) is accepted and echoed.
#[tokio::test]
async fn valid_close_codes_are_echoed() {
    let server = start().await;
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        Client::connect(&server).await.close_with(code).await;
    }
}

/// 7.9.1–7.9.13, 7.13.1–7.13.2: a code no endpoint may send (below 1000, 1004 reserved,
/// 1005/1006/1015 never on the wire, 1016–2999 unassigned, 5000 and above) fails the
/// connection with 1002 (§7.4).
#[tokio::test]
async fn invalid_close_codes_fail_the_connection() {
    let server = start().await;
    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut c = Client::connect(&server).await;
        c.send(&close(code, b"")).await;
        c.expect_close(Some(1002)).await;
    }
}

/// 9.1–9.6 against this server's limit (`engine.max_payload`, Autobahn goes to 16 MiB): a
/// message of exactly the limit arrives whole, in one frame or in fragments of 64 bytes to
/// 64 KiB, sent at once or in 4 KiB writes; one byte more fails the connection with 1009.
#[tokio::test]
async fn messages_up_to_the_limit() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let (payload, s) = text_of_len(MAX_PAYLOAD);
    c.send(&text(&payload)).await;
    c.expect_echo(&s).await;
    for fragment in [64, 256, 1024, 4096, 16384, 65536] {
        c.send_chopped(&fragmented_text(&payload, fragment), 4096)
            .await;
        c.expect_echo(&s).await;
    }
    let data = vec![0x5a; MAX_PAYLOAD];
    c.send(&binary_message(&data)).await;
    c.expect_binary_echo(&data).await;

    let (payload, _) = text_of_len(MAX_PAYLOAD + 1);
    c.send(&text(&payload)).await;
    c.expect_close(Some(1009)).await;
    // Over the limit only once the fragments add up.
    let mut c = Client::connect(&server).await;
    let (payload, _) = text_of_len(MAX_PAYLOAD + 1);
    let (a, b) = payload.split_at(MAX_PAYLOAD / 2);
    c.send(&[frame(false, 0, 1, a), frame(true, 0, 0, b)].concat())
        .await;
    c.expect_close(Some(1009)).await;
}

/// 9.7, 9.8: 1000 messages in a row, text and binary, all echoed in order.
#[tokio::test]
async fn a_thousand_messages_in_order() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let bytes: Vec<u8> = (0..1000)
        .flat_map(|i| text(event(&i.to_string()).as_bytes()))
        .collect();
    c.send(&bytes).await;
    for i in 0..1000 {
        c.expect_echo(&i.to_string()).await;
    }
    let bytes: Vec<u8> = (0..1000u32)
        .flat_map(|i| binary_message(&i.to_be_bytes()))
        .collect();
    c.send(&bytes).await;
    for i in 0..1000u32 {
        c.expect_binary_echo(&i.to_be_bytes()).await;
    }
    c.close_with(1000).await;
}

/// 10.1.1: a 65536-byte text message in 1300-byte fragments.
#[tokio::test]
async fn auto_fragmented_message() {
    let server = start().await;
    let mut c = Client::connect(&server).await;
    let (payload, s) = text_of_len(65536);
    c.send(&fragmented_text(&payload, 1300)).await;
    c.expect_echo(&s).await;
    c.close_with(1000).await;
}

/// §4.2.2 / §9.1: an offered extension (permessage-deflate) is not accepted, so RSV1 stays
/// reserved and a "compressed" frame fails the connection.
#[tokio::test]
async fn offered_extensions_are_declined() {
    let server = start().await;
    let mut c = Client::handshake(
        &server,
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
    )
    .await;
    let open = c.next().await.expect("open packet");
    assert!(open.text().starts_with("0{"));
    c.send(&frame(true, 4, 1, b"40")).await;
    c.expect_close(Some(1002)).await;
}

/// §4.2.2 / §4.4: a handshake for a version this server does not speak is refused, and the
/// refusal names the version it does speak.
#[tokio::test]
async fn an_unknown_version_is_refused_with_the_supported_one() {
    let server = start().await;
    for version in ["8", "14", ""] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 400"), "{answer}");
        assert!(answer.contains("sec-websocket-version: 13\r\n"), "{answer}");
    }
}
