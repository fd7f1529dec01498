//! The WebSocket wire format (RFC 6455), server side, without extensions.
//!
//! Inbound frames are parsed in place from the connection's read buffer and reassembled into
//! messages; outbound frames are a 2–10 byte header before the payload. Keeping this in our
//! hands (instead of tungstenite's stream) is what lets an idle connection hold no buffers at
//! all: the read buffer exists only while a read is being parsed, the write buffer only while
//! a flush is in progress.
//!
//! Where RFC 6455 says SHOULD or leaves a choice, this side chose (tested here and, over a
//! real connection case by case along the Autobahn suite, in `tests/websocket_rfc6455.rs`):
//! - **UTF-8 fails fast.** Text is checked as each fragment arrives (§8.1), so a bad fragment
//!   fails the connection (1007) without waiting for the rest of the message.
//! - **Close codes.** A close frame is answered with the peer's own code (§5.5.1 "typically
//!   echos"; `ws` does the same), without its reason; an empty one with an empty one. A code
//!   no endpoint may send fails the connection with 1002: anything outside 1000–1003,
//!   1007–1014 (§7.4.1 and IANA's registry, which added 1012–1014) and 3000–4999. A reason
//!   that is not UTF-8 fails with 1007.
//! - **Limits.** A message over `engine.max_payload`, in one frame or reassembled, fails with
//!   1009, refused on its header before any of it is buffered (a 64-bit length with its top
//!   bit set is simply too big). Frames are refused on their header as soon as it is wrong
//!   (unmasked, reserved bits or opcode, fragmented or oversized control frame), without
//!   reading the payload.
//! - **Lengths in a longer form than needed** are accepted: the minimal-encoding MUST binds
//!   the sender, and checking it protects nothing.
//! - **Pongs** are not matched to pings (this layer sends none: Engine.IO has its own
//!   heartbeat); unsolicited ones are ignored (§5.5.3).
//! - **No extension or subprotocol** is ever negotiated, so every reserved bit is refused.
//! - **After a close or a failure** nothing more is read; the server sends its close frame,
//!   shuts down its side and waits (up to the ping timeout) for the client to close TCP.

use bytes::{Buf, Bytes, BytesMut};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::packet::Frame;

/// Largest control frame payload (ping, pong, close).
const MAX_CONTROL: usize = 125;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Why a connection must close, with the close code the peer is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("text message is not UTF-8")]
    InvalidUtf8,
    #[error("message larger than {0} bytes")]
    TooBig(usize),
}

impl WsError {
    pub fn close_code(self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::InvalidUtf8 => 1007,
            WsError::TooBig(_) => 1009,
        }
    }
}

/// A whole message or control frame received from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(Utf8Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    /// The peer's close code, if it sent one.
    Close(Option<u16>),
}

/// Reassembles client messages from frames. Holds only a fragmented message's parts between
/// reads, which browsers never send for Engine.IO's small packets.
#[derive(Debug, Default)]
pub struct Decoder {
    partial: Option<Fragmented>,
    max_message: usize,
}

/// The parts of a fragmented message received so far.
#[derive(Debug)]
struct Fragmented {
    opcode: Opcode,
    data: BytesMut,
    /// For text: how many bytes of `data` are known to be valid UTF-8, so each fragment is
    /// checked once, as it arrives (fail fast, RFC 6455 §8.1).
    utf8_checked: usize,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Decoder {
            partial: None,
            max_message,
        }
    }

    /// Takes the next whole message or control frame from the front of `buf`, or `None` when
    /// `buf` holds no complete frame yet (the caller reads more and calls again).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WsError> {
        loop {
            let Some(header) = Header::parse(buf, self.max_message)? else {
                return Ok(None);
            };
            let total = header.header_len + header.len;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.len);
            unmask(&mut payload, header.mask);
            if header.opcode.is_control() {
                return control(header.opcode, payload.freeze()).map(Some);
            }
            let mut message = match (header.opcode, self.partial.take()) {
                (Opcode::Continuation, None) => {
                    return Err(WsError::Protocol("continuation without a message"))
                }
                (Opcode::Continuation, Some(mut parts)) => {
                    if parts.data.len() + payload.len() > self.max_message {
                        return Err(WsError::TooBig(self.max_message));
                    }
                    parts.data.extend_from_slice(&payload);
                    parts
                }
                (_, Some(_)) => return Err(WsError::Protocol("message interrupted by another")),
                (opcode, None) => Fragmented {
                    opcode,
                    data: payload,
                    utf8_checked: 0,
                },
            };
            if !header.fin {
                if message.opcode == Opcode::Text {
                    message.utf8_checked = utf8_prefix(&message.data, message.utf8_checked)?;
                }
                self.partial = Some(message);
                continue;
            }
            let Fragmented { opcode, data, .. } = message;
            let data = data.freeze();
            return match opcode {
                Opcode::Text => Utf8Bytes::try_from(data)
                    .map(|t| Some(Incoming::Text(t)))
                    .map_err(|_| WsError::InvalidUtf8),
                _ => Ok(Some(Incoming::Binary(data))),
            };
        }
    }
}

/// How much of `data` is valid UTF-8 so far, checking from `from` (where the last check left
/// off); a sequence cut at the end may still be completed by the next fragment.
fn utf8_prefix(data: &[u8], from: usize) -> Result<usize, WsError> {
    let rest = data.get(from..).unwrap_or_default();
    match std::str::from_utf8(rest) {
        Ok(_) => Ok(data.len()),
        Err(e) if e.error_len().is_none() => Ok(from + e.valid_up_to()),
        Err(_) => Err(WsError::InvalidUtf8),
    }
}

fn control(opcode: Opcode, payload: Bytes) -> Result<Incoming, WsError> {
    Ok(match opcode {
        Opcode::Ping => Incoming::Ping(payload),
        Opcode::Pong => Incoming::Pong,
        _ => match *payload {
            [] => Incoming::Close(None),
            [_] => return Err(WsError::Protocol("close payload of one byte")),
            [hi, lo, ref reason @ ..] => {
                let code = u16::from_be_bytes([hi, lo]);
                if !is_sendable_close_code(code) {
                    return Err(WsError::Protocol("invalid close code"));
                }
                if std::str::from_utf8(reason).is_err() {
                    return Err(WsError::InvalidUtf8);
                }
                Incoming::Close(Some(code))
            }
        },
    })
}

/// Whether an endpoint may put `code` in a close frame (RFC 6455 §7.4): the codes the RFC
/// and IANA's registry define for sending (1000–1003, 1007–1014), and the ranges left to
/// libraries (3000–3999) and applications (4000–4999). 1004 is reserved, 1005, 1006 and 1015
/// must never be sent, 1016–2999 are unassigned, everything else is out of range.
fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    header_len: usize,
    len: usize,
}

impl Header {
    /// Parses a client frame's header; `None` until all of it is in `buf`.
    fn parse(buf: &[u8], max: usize) -> Result<Option<Header>, WsError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set without an extension"));
        }
        let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(WsError::Protocol("unknown opcode"))?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frame not masked"));
        }
        let (len, ext) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0; 8];
                    be.copy_from_slice(b);
                    (u64::from_be_bytes(be), 8)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        if opcode.is_control() && (!fin || len > MAX_CONTROL as u64) {
            return Err(WsError::Protocol("fragmented or oversized control frame"));
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or(WsError::TooBig(max))?;
        let Some(m) = buf.get(2 + ext..6 + ext) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask: [m[0], m[1], m[2], m[3]],
            header_len: 6 + ext,
            len,
        }))
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Appends one unmasked, unfragmented server frame to `out`.
pub fn encode(out: &mut BytesMut, opcode: Opcode, payload: &[u8]) {
    out.reserve(payload.len() + 10);
    out.extend_from_slice(&[0x80 | opcode.bits()]);
    match payload.len() {
        n if n < 126 => out.extend_from_slice(&[n as u8]),
        n if n <= usize::from(u16::MAX) => {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends an Engine.IO frame as a text or binary WebSocket frame.
pub fn encode_frame(out: &mut BytesMut, frame: &Frame) {
    match frame {
        Frame::Text(t) => encode(out, Opcode::Text, t.as_bytes()),
        Frame::Binary(b) => encode(out, Opcode::Binary, b),
    }
}

/// Encodes Engine.IO frames as WebSocket frames, back to back, for one write.
pub fn encode_frames(frames: impl IntoIterator<Item = Frame>) -> BytesMut {
    let mut out = BytesMut::new();
    for frame in frames {
        encode_frame(&mut out, &frame);
    }
    out
}

/// Appends a close frame with `code` and a short reason.
pub fn encode_close(out: &mut BytesMut, code: u16, reason: &str) {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode(out, Opcode::Close, &payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser sends it (masked).
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 65535 => {
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

    fn decode_all(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, WsError> {
        let mut dec = Decoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // One byte at a time: every split point of every header must wait for more.
        for &b in bytes {
            buf.extend_from_slice(&[b]);
            while let Some(m) = dec.decode(&mut buf)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[test]
    fn decodes_masked_frames_split_anywhere() {
        let big = vec![7u8; 70_000];
        let mut bytes = client_frame(true, 1, b"4hello");
        bytes.extend(client_frame(true, 2, &big));
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 1, "é".repeat(100).as_bytes()));
        bytes.extend(client_frame(true, 8, &[0x03, 0xe8, b'o', b'k']));
        let got = decode_all(&bytes, 100_000).unwrap();
        assert_eq!(
            got,
            vec![
                Incoming::Text("4hello".into()),
                Incoming::Binary(Bytes::from(big)),
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("é".repeat(100).into()),
                Incoming::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn reassembles_fragments_around_control_frames() {
        let mut bytes = client_frame(false, 1, b"4he");
        bytes.extend(client_frame(true, 10, b""));
        bytes.extend(client_frame(false, 0, b"ll"));
        bytes.extend(client_frame(true, 0, b"o"));
        let got = decode_all(&bytes, 100).unwrap();
        assert_eq!(got, vec![Incoming::Pong, Incoming::Text("4hello".into())]);
    }

    #[test]
    fn refuses_what_the_rfc_refuses() {
        let unmasked = [0x81, 0x01, b'x'];
        assert_eq!(
            decode_all(&unmasked, 100),
            Err(WsError::Protocol("client frame not masked"))
        );
        let rsv = {
            let mut f = client_frame(true, 1, b"x");
            f[0] |= 0x40;
            f
        };
        assert!(matches!(decode_all(&rsv, 100), Err(WsError::Protocol(_))));
        assert!(matches!(
            decode_all(&client_frame(true, 3, b""), 100),
            Err(WsError::Protocol(_))
        ));
        assert!(matches!(
            decode_all(&client_frame(false, 9, b""), 100),
            Err(WsError::Protocol(_))
        ));
        assert!(matches!(
            decode_all(&client_frame(true, 0, b"x"), 100),
            Err(WsError::Protocol(_))
        ));
        assert_eq!(
            decode_all(&client_frame(true, 1, &[0xff, 0xfe]), 100),
            Err(WsError::InvalidUtf8)
        );
        let mut interrupted = client_frame(false, 1, b"a");
        interrupted.extend(client_frame(true, 2, b"b"));
        assert!(matches!(
            decode_all(&interrupted, 100),
            Err(WsError::Protocol(_))
        ));
    }

    /// RFC 6455 §7.4: a close frame's status code must be one the RFC or IANA's registry
    /// defines for endpoints to send; any other fails the connection (1002).
    #[test]
    fn close_codes_outside_the_registry_fail_the_connection() {
        let close = |code: u16| decode_all(&client_frame(true, 8, &code.to_be_bytes()), 100);
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                close(code),
                Err(WsError::Protocol("invalid close code")),
                "close code {code}"
            );
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert_eq!(
                close(code),
                Ok(vec![Incoming::Close(Some(code))]),
                "close code {code}"
            );
        }
    }

    /// RFC 6455 §8.1 / Autobahn 6.4: invalid UTF-8 in a text fragment fails the connection
    /// when that fragment arrives, not when the message ends; a character cut between two
    /// fragments is fine.
    #[test]
    fn invalid_utf8_fails_at_the_fragment_that_carries_it() {
        let mut dec = Decoder::new(100);
        let mut buf = BytesMut::from(&client_frame(false, 1, "κόσμε".as_bytes()[..3].as_ref())[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend(client_frame(false, 0, &"κόσμε".as_bytes()[3..]));
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend(client_frame(
            false,
            0,
            &[0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80],
        ));
        assert_eq!(dec.decode(&mut buf), Err(WsError::InvalidUtf8));

        let mut dec = Decoder::new(100);
        let mut buf = BytesMut::from(&client_frame(false, 1, &[b'4', 0xf4, 0x90])[..]);
        assert_eq!(dec.decode(&mut buf), Err(WsError::InvalidUtf8));
        // Binary fragments are not text.
        let got = decode_all(
            &[
                client_frame(false, 2, &[0xff]),
                client_frame(true, 0, &[0xfe]),
            ]
            .concat(),
            100,
        );
        assert_eq!(
            got,
            Ok(vec![Incoming::Binary(Bytes::from_static(&[0xff, 0xfe]))])
        );
    }

    /// Autobahn 6.2–6.23 (Markus Kuhn's UTF-8 decoder stress test): valid sequences,
    /// boundary code points and non-characters are text; five- and six-byte forms, code
    /// points above U+10FFFF, lone and misplaced continuation bytes, overlong forms, UTF-16
    /// surrogates (paired or not), 0xFE/0xFF and a sequence cut by the end of the message are
    /// not. Each is sent in one frame and one byte per fragment; invalid bytes fail the
    /// connection at the fragment that makes the text invalid, not at the end of the message.
    #[test]
    fn utf8_of_the_autobahn_cases() {
        let valid: [&[u8]; 15] = [
            "κόσμε".as_bytes(),
            &[0x00],
            &[0xc2, 0x80],
            &[0xe0, 0xa0, 0x80],
            &[0xf0, 0x90, 0x80, 0x80],
            &[0x7f],
            &[0xdf, 0xbf],
            &[0xf4, 0x8f, 0xbf, 0xbf],
            &[0xed, 0x9f, 0xbf],
            &[0xee, 0x80, 0x80],
            &[0xef, 0xbf, 0xbd],
            &[0xef, 0xbf, 0xbe],
            &[0xef, 0xbf, 0xbf],
            &[0xef, 0xb7, 0x90],
            &[0xf0, 0x9f, 0xbf, 0xbe],
        ];
        let invalid: [&[u8]; 21] = [
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
            &[0xf8, 0x88, 0x80, 0x80, 0x80],
            &[0xfc, 0x84, 0x80, 0x80, 0x80, 0x80],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0x80],
            &[0xbf],
            &[0x80, 0xbf, 0x80],
            &[0xc0, 0x20],
            &[0xe0, 0x80],
            &[0xc0, 0xaf],
            &[0xe0, 0x80, 0xaf],
            &[0xf0, 0x80, 0x80, 0xaf],
            &[0xc1, 0xbf],
            &[0xe0, 0x9f, 0xbf],
            &[0xf0, 0x8f, 0xbf, 0xbf],
            &[0xed, 0xa0, 0x80],
            &[0xed, 0xbf, 0xbf],
            &[0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80],
            &[0xfe],
            &[0xff],
            &[0xfe, 0xfe, 0xff, 0xff],
        ];
        let fragmented = |text: &[u8]| -> Vec<Vec<u8>> {
            let n = text.len();
            (0..n)
                .map(|i| client_frame(i + 1 == n, if i == 0 { 1 } else { 0 }, &text[i..=i]))
                .collect()
        };
        for text in valid {
            let expected = Incoming::Text(std::str::from_utf8(text).unwrap().into());
            assert_eq!(
                decode_all(&client_frame(true, 1, text), 100),
                Ok(vec![expected])
            );
            let frames = fragmented(text).concat();
            let expected = Incoming::Text(std::str::from_utf8(text).unwrap().into());
            assert_eq!(decode_all(&frames, 100), Ok(vec![expected]), "{text:x?}");
        }
        for text in invalid {
            let whole = decode_all(&client_frame(true, 1, text), 100);
            assert_eq!(whole, Err(WsError::InvalidUtf8), "{text:x?}");
            // Fail fast: the error comes with the first fragment that cannot be completed.
            // The shortest prefix that no byte can complete.
            let bad_at = (1..=text.len())
                .find(|&k| std::str::from_utf8(&text[..k]).is_err_and(|e| e.error_len().is_some()))
                .unwrap_or(text.len());
            let mut dec = Decoder::new(100);
            let mut buf = BytesMut::new();
            let mut failed_at = None;
            for (i, f) in fragmented(text).iter().enumerate() {
                buf.extend_from_slice(f);
                if let Err(e) = dec.decode(&mut buf) {
                    assert_eq!(e, WsError::InvalidUtf8);
                    failed_at = Some(i + 1);
                    break;
                }
            }
            assert!(
                failed_at.is_some_and(|at| at <= bad_at),
                "{text:x?} failed at {failed_at:?}, invalid at {bad_at}"
            );
        }
    }

    #[test]
    fn refuses_oversized_messages_before_buffering_them() {
        // The header alone announces 2^40 bytes: refused without waiting for them.
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode_all(&header, 1000), Err(WsError::TooBig(1000)));
        let mut parts = client_frame(false, 2, &[0; 600]);
        parts.extend(client_frame(true, 0, &[0; 600]));
        assert_eq!(decode_all(&parts, 1000), Err(WsError::TooBig(1000)));
    }

    #[test]
    fn encodes_every_length_form() {
        for (len, header) in [
            (5usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut out = BytesMut::new();
            encode(&mut out, Opcode::Binary, &vec![1; len]);
            assert_eq!(out.len(), len + header, "length {len}");
            assert_eq!(out[0], 0x82);
        }
        let mut out = BytesMut::new();
        encode_close(&mut out, 1009, "too big");
        assert_eq!(&out[..4], &[0x88, 9, 0x03, 0xf1]);
    }
}
