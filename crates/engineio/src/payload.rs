//! The HTTP long-polling payload: packets joined with the record separator `\x1e`, binary
//! packets as `b` followed by base64 (Engine.IO v4 never sends raw binary over polling).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;

use super::packet::{Frame, Packet, PacketError};

pub const SEPARATOR: char = '\x1e';

/// Encodes queued frames into one GET response body.
pub fn encode(frames: &[Frame]) -> String {
    let len: usize = frames.iter().map(|f| f.len() * 4 / 3 + 4).sum();
    let mut out = String::with_capacity(len);
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        match frame {
            Frame::Text(t) => out.push_str(t),
            Frame::Binary(b) => {
                out.push('b');
                STANDARD.encode_string(b, &mut out);
            }
        }
    }
    out
}

/// Decodes a POST body into packets. Stops at the first invalid packet: the caller closes the
/// session, as the reference does.
pub fn decode(body: &str) -> impl Iterator<Item = Result<Packet<'_>, PacketError>> {
    body.split(SEPARATOR).map(|item| {
        if let Some(b64) = item.strip_prefix('b') {
            STANDARD
                .decode(b64)
                .map(|v| Packet::Binary(Bytes::from(v)))
                .map_err(|_| PacketError::BadBase64)
        } else {
            Packet::decode_text(item)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_text_and_binary() {
        let frames = [
            Frame::Text("4hello".into()),
            Frame::binary(Bytes::from_static(&[1, 2, 3, 4])),
        ];
        assert_eq!(encode(&frames), "4hello\x1ebAQIDBA==");
    }

    #[test]
    fn decodes_mixed_payload() {
        let got: Vec<_> = decode("4hello\x1ebAQIDBA==\x1e3").collect();
        assert_eq!(
            got,
            vec![
                Ok(Packet::Message("hello")),
                Ok(Packet::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Ok(Packet::Pong { probe: false }),
            ]
        );
    }

    #[test]
    fn rejects_bad_items() {
        assert!(decode("abc").any(|p| p.is_err()));
        assert!(decode("b!!!").any(|p| p.is_err()));
        assert!(decode("4a\x1e\x1e4b").any(|p| p.is_err()));
    }

    proptest! {
        #[test]
        fn decode_never_panics(s in ".*") {
            for _ in decode(&s) {}
        }

        #[test]
        fn round_trips_messages(texts in proptest::collection::vec("[^\x1e]*", 1..5),
                                bins in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..3)) {
            let mut frames: Vec<Frame> = texts.iter().map(|t| Frame::message(format!("4{t}"))).collect();
            frames.extend(bins.iter().map(|b| Frame::binary(Bytes::from(b.clone()))));
            let body = encode(&frames);
            let decoded: Vec<_> = decode(&body).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(decoded.len(), frames.len());
            for (d, f) in decoded.iter().zip(&frames) {
                match (d, f) {
                    (Packet::Message(m), Frame::Text(t)) => prop_assert_eq!(*m, &t[1..]),
                    (Packet::Binary(b), Frame::Binary(e)) => prop_assert_eq!(b, e),
                    _ => prop_assert!(false, "kind mismatch"),
                }
            }
        }
    }
}
