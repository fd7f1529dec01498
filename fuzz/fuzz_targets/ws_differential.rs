//! Differential: the same bytes from a client through our WebSocket decoder and through
//! tungstenite's (server role, same size limit). It fails when one accepts a frame the other
//! rejects, or they give different messages.
//!
//! Legitimate differences, normalised away (each is RFC-conformant on both sides):
//! - **Where a bad frame is refused.** We refuse on the header (unmasked, reserved opcode,
//!   fragmented or oversized control frame, too big) without waiting for the payload;
//!   tungstenite reads the whole frame first. When the input ends inside such a frame,
//!   tungstenite has only seen the end of input: accepted when we refused a frame that is not
//!   complete in the input.
//! - **Pong payloads.** We drop them (nothing uses them); only the pong itself is compared.
//! - **Close frames.** We fail the connection on a code no endpoint may send; tungstenite
//!   returns the close frame with its code replaced by 1002 (reason "Protocol violation") and
//!   answers 1002. Both answer 1002, so that close of tungstenite's matches our refusal, or
//!   our close with 1002 (a client may send that itself, with that reason) or with 1014
//!   (Bad Gateway, registered at IANA, which tungstenite 0.29 does not know). Reasons are not
//!   compared otherwise (we do not keep them).
//! - **Error kinds.** Only accept/refuse is compared: which close code a frame with several
//!   faults gets depends on the order of the checks (a close frame with both an invalid code
//!   and a reason that is not UTF-8 is 1002 here, 1007 there).

#![no_main]

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use engineio::wsproto::{Decoder as WsDecoder, Incoming as WsIncoming};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::Message;

/// The limit both sides get; small, so inputs of a few hundred bytes reach it.
const MAX: usize = 256;

#[derive(Debug, PartialEq)]
enum Event {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong,
    Close(Option<u16>),
}

#[derive(Debug, PartialEq)]
enum End {
    /// The input ran out (we wait for more; tungstenite sees the peer go away).
    Input,
    Closed,
    Refused,
    /// tungstenite's close with 1002 "Protocol violation": maybe its answer to a close code
    /// it refuses (see the module docs).
    ClosedWith1002,
}

/// The client's bytes in, the server's writes discarded.
struct Wire<'a> {
    input: &'a [u8],
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Our decoder, fed one whole frame at a time and then whatever incomplete frame is left; on
/// a refusal, also whether the refused frame was complete in the input.
fn ours(input: &[u8]) -> (Vec<Event>, End, bool) {
    let mut dec = WsDecoder::new(MAX);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let whole = frame_len(rest).filter(|&n| n <= rest.len());
        let (frame, after) = rest.split_at(whole.unwrap_or(rest.len()));
        rest = after;
        buf.extend_from_slice(frame);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => {
                    let event = match m {
                        WsIncoming::Text(t) => Event::Text(Bytes::copy_from_slice(t.as_bytes())),
                        WsIncoming::Binary(b) => Event::Binary(b),
                        WsIncoming::Ping(p) => Event::Ping(p),
                        WsIncoming::Pong => Event::Pong,
                        WsIncoming::Close(code) => Event::Close(code),
                    };
                    let closed = matches!(event, Event::Close(_));
                    out.push(event);
                    if closed {
                        return (out, End::Closed, true);
                    }
                }
                Ok(None) => break,
                Err(_) => return (out, End::Refused, whole.is_some()),
            }
        }
        if whole.is_none() {
            return (out, End::Input, false);
        }
    }
}

/// Length of the frame at the front of `bytes` (header and payload), once its header is there.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let b1 = *bytes.get(1)?;
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let (len, ext) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            2,
        ),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 8),
        n => (u64::from(n), 0),
    };
    usize::try_from(len).ok()?.checked_add(2 + ext + mask)
}

fn theirs(input: &[u8]) -> (Vec<Event>, End) {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(MAX))
        .max_frame_size(Some(MAX));
    let mut ws = WebSocket::from_raw_socket(Wire { input }, Role::Server, Some(config));
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => out.push(Event::Text(Bytes::copy_from_slice(t.as_bytes()))),
            Ok(Message::Binary(b)) => out.push(Event::Binary(b)),
            Ok(Message::Ping(p)) => out.push(Event::Ping(p)),
            Ok(Message::Pong(_)) => out.push(Event::Pong),
            Ok(Message::Close(Some(f)))
                if u16::from(f.code) == 1002 && f.reason.as_str() == "Protocol violation" =>
            {
                return (out, End::ClosedWith1002);
            }
            Ok(Message::Close(frame)) => {
                out.push(Event::Close(frame.map(|f| u16::from(f.code))));
                return (out, End::Closed);
            }
            Ok(Message::Frame(_)) => {}
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return (out, End::Input),
            Err(_) => return (out, End::Refused),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let (our_events, our_end, complete) = ours(input);
    let (their_events, their_end) = theirs(input);
    if their_end == End::ClosedWith1002 {
        let refused = our_end == End::Refused && our_events == their_events;
        let closed = our_end == End::Closed
            && matches!(our_events.split_last(), Some((Event::Close(Some(1002 | 1014)), before)) if before == their_events);
        assert!(
            refused || closed,
            "tungstenite answered 1002 to a close frame; we give {our_events:?}, {our_end:?}"
        );
        return;
    }
    assert_eq!(our_events, their_events, "different messages");
    let same = our_end == their_end
        // We refused a frame on its header; tungstenite was still waiting for its payload.
        || (our_end == End::Refused && their_end == End::Input && !complete);
    assert!(
        same,
        "we end with {our_end:?} (frame complete: {complete}), tungstenite with {their_end:?}"
    );
});
