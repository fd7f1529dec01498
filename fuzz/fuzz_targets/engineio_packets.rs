//! Engine.IO v4 packets (a WebSocket text frame) and HTTP long-polling payloads (a POST
//! body), plus the handshake query and session id a client sends. Beyond not panicking:
//! a payload splits into exactly its `\x1e`-separated items, and what decodes re-encodes to
//! a payload that decodes the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use engineio::packet::{Frame, Packet};
use engineio::payload;
use engineio::request::EngineQuery;
use engineio::Sid;

fuzz_target!(|data: &[u8]| {
    // A POST body that is not UTF-8 is refused before any parsing (polling.rs).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // One WebSocket text frame.
    if let Ok(Packet::Message(m)) = Packet::decode_text(text) {
        assert_eq!(Frame::message(format!("4{m}")), Frame::Text(text.into()));
    }

    // One POST body.
    let items: Vec<_> = payload::decode(text).collect();
    assert_eq!(items.len(), text.split(payload::SEPARATOR).count());
    let frames: Option<Vec<Frame>> = items
        .iter()
        .map(|item| match item {
            Ok(Packet::Message(m)) => Some(Frame::message(format!("4{m}"))),
            Ok(Packet::Binary(b)) => Some(Frame::binary(b.clone())),
            _ => None,
        })
        .collect();
    if let Some(frames) = frames {
        let body = payload::encode(&frames);
        let again: Vec<_> = payload::decode(&body).collect();
        assert_eq!(again.len(), items.len());
        for (a, b) in again.iter().zip(&items) {
            assert_eq!(a, b, "{body:?} does not decode as {text:?} did");
        }
    }
    for item in &items {
        if let Ok(Packet::Binary(b)) = item {
            // base64 of n bytes is at least 4n/3 characters: no amplification.
            assert!(
                b.len() <= text.len(),
                "{} bytes from {} characters",
                b.len(),
                text.len()
            );
        }
    }

    // The handshake query and a client-sent session id.
    let q = EngineQuery::parse(text);
    if let Some(sid) = q.sid.and_then(Sid::parse) {
        assert_eq!(Some(sid.as_str()), q.sid);
    }
});
