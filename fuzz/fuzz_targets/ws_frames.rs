//! The WebSocket frame decoder on structured frame sequences: every frame is built from
//! fields the fuzzer picks (flags, opcode, mask, length encoding, payload), the bytes are fed
//! whole and in arbitrary chunks, and both must give exactly what a model of RFC 6455's
//! receiving rules, working on the fields rather than the bytes, says.

#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use engineio::wsproto::{Decoder as WsDecoder, Incoming as WsIncoming, WsError};

#[derive(Arbitrary, Debug)]
struct Input {
    /// The message size limit, 0..=1023.
    max: u16,
    frames: Vec<FrameSpec>,
    /// Bytes appended after the frames (a truncated or garbage tail).
    tail: Vec<u8>,
    /// Sizes of the chunks the bytes arrive in (cycled; 0 counts as 1).
    chunks: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct FrameSpec {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    mask: [u8; 4],
    /// 0: shortest length encoding, 1: 16-bit, 2: 64-bit (non-minimal forms are allowed).
    length_form: u8,
    payload: Payload,
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Text(String),
    /// A close frame's payload: a code and a reason.
    Close(u16, String),
}

impl FrameSpec {
    fn opcode(&self) -> u8 {
        self.opcode & 0x0f
    }

    fn payload(&self) -> Vec<u8> {
        match &self.payload {
            Payload::Bytes(b) => b.clone(),
            Payload::Text(t) => t.as_bytes().to_vec(),
            Payload::Close(code, reason) => {
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(reason.as_bytes());
                p
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let payload = self.payload();
        let len = payload.len();
        out.push(u8::from(self.fin) << 7 | (self.rsv & 7) << 4 | self.opcode());
        let mask_bit = u8::from(self.masked) << 7;
        match self.length_form % 3 {
            0 if len < 126 => out.push(mask_bit | len as u8),
            0 | 1 if len <= 0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if self.masked {
            out.extend_from_slice(&self.mask);
            out.extend(
                payload
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ self.mask[i % 4]),
            );
        } else {
            out.extend_from_slice(&payload);
        }
    }
}

/// What a receiver must make of the frames (RFC 6455 §5, §7.4, §8.1), frame by frame. The
/// order of the checks within one frame is the decoder's: reserved bits, opcode, mask, control
/// frame shape, size; then the payload's rules.
fn model(frames: &[FrameSpec], max: usize) -> (Vec<WsIncoming>, Option<u16>) {
    let mut out = Vec::new();
    // The message being reassembled: (is text, bytes so far).
    let mut partial: Option<(bool, Vec<u8>)> = None;
    for f in frames {
        let payload = f.payload();
        let op = f.opcode();
        let control = op >= 8;
        if f.rsv & 7 != 0 || !matches!(op, 0 | 1 | 2 | 8 | 9 | 10) || !f.masked {
            return (out, Some(1002));
        }
        if control && (!f.fin || payload.len() > 125) {
            return (out, Some(1002));
        }
        if payload.len() > max {
            return (out, Some(1009));
        }
        match op {
            9 => out.push(WsIncoming::Ping(Bytes::from(payload))),
            10 => out.push(WsIncoming::Pong),
            8 => {
                let close = match payload.as_slice() {
                    [] => Ok(None),
                    [_] => Err(1002),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                            Err(1002)
                        } else if std::str::from_utf8(reason).is_err() {
                            Err(1007)
                        } else {
                            Ok(Some(code))
                        }
                    }
                };
                match close {
                    Ok(code) => out.push(WsIncoming::Close(code)),
                    Err(code) => return (out, Some(code)),
                }
                // The connection ends with the close: nothing after it is read.
                return (out, None);
            }
            _ => {
                let (text, mut data) = match (op, partial.take()) {
                    (0, None) => return (out, Some(1002)),
                    (0, Some((text, mut data))) => {
                        if data.len() + payload.len() > max {
                            return (out, Some(1009));
                        }
                        data.extend_from_slice(&payload);
                        (text, data)
                    }
                    (_, Some(_)) => return (out, Some(1002)),
                    (op, None) => (op == 1, payload),
                };
                if text {
                    if let Err(e) = std::str::from_utf8(&data) {
                        // Fail fast: only a sequence cut at the end of a fragment may wait.
                        if f.fin || e.error_len().is_some() {
                            return (out, Some(1007));
                        }
                    }
                }
                if !f.fin {
                    partial = Some((text, data));
                } else if text {
                    let text = String::from_utf8(std::mem::take(&mut data)).unwrap_or_default();
                    out.push(WsIncoming::Text(text.into()));
                } else {
                    out.push(WsIncoming::Binary(Bytes::from(data)));
                }
            }
        }
    }
    (out, None)
}

/// Feeds `bytes` in chunks of the given sizes; what was decoded until the first close or error.
fn decode(bytes: &[u8], chunks: &[u8], max: usize) -> (Vec<WsIncoming>, Result<(), WsError>) {
    let mut dec = WsDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut sizes = chunks.iter().map(|&c| usize::from(c.max(1))).cycle();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = if chunks.is_empty() {
            rest.len()
        } else {
            sizes.next().unwrap_or(1)
        };
        let (chunk, after) = rest.split_at(n.min(rest.len()));
        rest = after;
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => {
                    let closed = matches!(m, WsIncoming::Close(_));
                    out.push(m);
                    if closed {
                        return (out, Ok(()));
                    }
                }
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
    }
    (out, Ok(()))
}

fuzz_target!(|input: Input| {
    let max = usize::from(input.max % 1024);
    let mut bytes = Vec::new();
    for f in &input.frames {
        f.encode(&mut bytes);
    }
    let (whole, whole_end) = decode(&bytes, &[], max);
    let (chunked, chunked_end) = decode(&bytes, &input.chunks, max);
    assert_eq!(whole, chunked, "chunking changed the messages");
    assert_eq!(whole_end, chunked_end, "chunking changed the outcome");

    let (expected, failure) = model(&input.frames, max);
    assert_eq!(whole, expected, "decoded messages differ from the model");
    assert_eq!(
        whole_end.err().map(WsError::close_code),
        failure,
        "outcome differs from the model"
    );

    // Bytes after the frames never change what the frames gave.
    if !input.tail.is_empty() {
        bytes.extend_from_slice(&input.tail);
        let (with_tail, _) = decode(&bytes, &input.chunks, max);
        assert!(
            with_tail.starts_with(&whole),
            "a tail changed earlier messages"
        );
    }
});
