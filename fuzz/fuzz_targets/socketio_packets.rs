//! Socket.IO v5 packets as a client's frames reach the server: text packets and the binary
//! attachments that follow a BINARY_EVENT/BINARY_ACK header, through the per-session decoder
//! the server uses. Structure-aware: besides free text, the fuzzer builds binary headers with
//! placeholders whose `num` it picks (integers, floats, strings, huge, negative...).
//!
//! Checked: a completed packet carries exactly the binary frames that followed its header,
//! as many as announced, and every placeholder in it names one of them; nothing of a packet
//! survives an error into the next; every packet re-encodes to frames that decode the same.

#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use engineio::Frame;
use socketio::encode::encode;
use socketio::packet::{Decoder, Packet};
use socket_gateway_fuzz::placeholders_in_range;

#[derive(Arbitrary, Debug)]
struct Input {
    /// The attachment limit, 0..=15 (the server's default is 10).
    max_attachments: u8,
    frames: Vec<SioFrame>,
}

#[derive(Arbitrary, Debug)]
enum SioFrame {
    Text(String),
    Binary(Vec<u8>),
    /// `5<count>-[<nsp>,][<id>]["ev", <placeholders and extra args>]` (or `6...` for an ack).
    BinaryHeader {
        ack: bool,
        count: u8,
        nsp: Option<String>,
        id: Option<u32>,
        placeholders: Vec<Num>,
        /// JSON spliced in as a last argument when it parses.
        extra: String,
    },
}

/// The `num` of a placeholder.
#[derive(Arbitrary, Debug)]
enum Num {
    Int(i64),
    Float(f64),
    Text(String),
    Missing,
    /// `{"_placeholder":true,"num":n,"other":..}`: extra keys still make a placeholder.
    WithExtraKey(u8),
}

impl SioFrame {
    fn text(&self) -> Option<String> {
        match self {
            SioFrame::Text(t) => Some(t.clone()),
            SioFrame::Binary(_) => None,
            SioFrame::BinaryHeader {
                ack,
                count,
                nsp,
                id,
                placeholders,
                extra,
            } => {
                let mut args: Vec<serde_json::Value> = Vec::new();
                if !ack {
                    args.push("ev".into());
                }
                for n in placeholders {
                    let mut obj = serde_json::Map::new();
                    obj.insert("_placeholder".into(), true.into());
                    match n {
                        Num::Int(i) => {
                            obj.insert("num".into(), (*i).into());
                        }
                        Num::Float(f) => {
                            obj.insert("num".into(), serde_json::json!(f));
                        }
                        Num::Text(s) => {
                            obj.insert("num".into(), s.clone().into());
                        }
                        Num::Missing => {}
                        Num::WithExtraKey(i) => {
                            obj.insert("num".into(), (*i).into());
                            obj.insert("other".into(), 1.into());
                        }
                    }
                    args.push(obj.into());
                }
                if let Ok(v) = serde_json::from_str(extra) {
                    args.push(v);
                }
                let nsp = nsp.as_ref().map(|n| format!("/{n},")).unwrap_or_default();
                let id = id.map(|i| i.to_string()).unwrap_or_default();
                let kind = if *ack { '6' } else { '5' };
                Some(format!(
                    "{kind}{count}-{nsp}{id}{}",
                    serde_json::Value::from(args)
                ))
            }
        }
    }
}

/// Feeds one frame as the server does (`on_message` / `on_binary`).
fn feed(decoder: &mut Decoder, frame: &Frame) -> Result<Option<Packet>, String> {
    match frame {
        Frame::Text(t) => {
            // What follows the Engine.IO `4`.
            decoder.text(t.as_str().strip_prefix('4').unwrap_or(t.as_str()))
        }
        Frame::Binary(b) => decoder.binary(b.clone()),
    }
    .map_err(|e| e.to_string())
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max_attachments % 16);
    let mut decoder = Decoder::new(max);
    // The binary frames fed since the packet header now waiting, if any.
    let mut since_header: Option<Vec<Bytes>> = None;
    for frame in &input.frames {
        let outcome = match (frame.text(), frame) {
            (Some(text), _) => {
                let was_waiting = decoder.is_waiting();
                let r = decoder.text(&text).map_err(|e| e.to_string());
                if r == Ok(None) {
                    assert!(!was_waiting);
                    since_header = Some(Vec::new());
                }
                r
            }
            (None, SioFrame::Binary(b)) => {
                let b = Bytes::from(b.clone());
                if let Some(got) = since_header.as_mut() {
                    got.push(b.clone());
                }
                decoder.binary(b).map_err(|e| e.to_string())
            }
            (None, _) => continue,
        };
        match outcome {
            Ok(Some(packet)) => {
                let attachments = since_header.take().unwrap_or_default();
                assert_eq!(
                    packet.attachments, attachments,
                    "attachments not the frames after the header"
                );
                assert!(packet.attachments.len() <= max);
                if let Some(data) = &packet.data {
                    assert!(
                        placeholders_in_range(data, packet.attachments.len()),
                        "placeholder out of range in {data}"
                    );
                }
                assert!(!decoder.is_waiting());
                check_reencoding(&packet, max);
            }
            Ok(None) => assert!(decoder.is_waiting()),
            Err(_) => {
                // The server closes the session here; the decoder must hold nothing either.
                assert!(!decoder.is_waiting(), "a packet survived an error");
                since_header = None;
            }
        }
    }
});

/// The frames the server would send for `packet` decode to the same packet.
fn check_reencoding(packet: &Packet, max: usize) {
    let frames = encode(packet);
    let mut decoder = Decoder::new(max);
    let mut back = None;
    for frame in &frames {
        match feed(&mut decoder, frame) {
            Ok(Some(p)) => back = Some(p),
            Ok(None) => {}
            Err(e) => panic!("{frames:?} does not decode: {e}"),
        }
    }
    let back = back.expect("re-encoded packet incomplete");
    assert_eq!(encode(&back), frames, "re-encoding is not stable");
    assert_eq!(
        (back.kind, &back.nsp, back.id, &back.attachments),
        (packet.kind, &packet.nsp, packet.id, &packet.attachments)
    );
}
