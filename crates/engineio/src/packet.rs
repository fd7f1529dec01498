//! Engine.IO v4 packets: decoding what a client sends, and the encoded frames the server queues.
//!
//! Outbound packets are encoded once into a [`Frame`] whose bytes are reference-counted, so one
//! broadcast frame is shared by every recipient's queue instead of being copied per socket.

use bytes::Bytes;
use thiserror::Error;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// An encoded outbound packet. Text frames hold the packet type digit followed by the data
/// (`4hello`, `2`, `3probe`); binary frames are always message packets and hold the raw bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Frame {
    pub fn open(handshake_json: &str) -> Frame {
        let mut s = String::with_capacity(handshake_json.len() + 1);
        s.push('0');
        s.push_str(handshake_json);
        Frame::Text(s.into())
    }
    pub const fn close() -> Frame {
        Frame::Text(Utf8Bytes::from_static("1"))
    }
    pub const fn ping() -> Frame {
        Frame::Text(Utf8Bytes::from_static("2"))
    }
    pub const fn pong_probe() -> Frame {
        Frame::Text(Utf8Bytes::from_static("3probe"))
    }
    pub const fn noop() -> Frame {
        Frame::Text(Utf8Bytes::from_static("6"))
    }
    /// A message packet from text that already starts with the `4` type digit.
    pub fn message(encoded: String) -> Frame {
        debug_assert!(encoded.starts_with('4'));
        Frame::Text(encoded.into())
    }
    pub fn binary(data: Bytes) -> Frame {
        Frame::Binary(data)
    }
    /// Bytes this frame occupies in a queue (for bounding buffers).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A packet received from a client, borrowed from the frame or payload it came in.
#[derive(Debug, PartialEq)]
pub enum Packet<'a> {
    Close,
    /// `2probe` during an upgrade; a plain `2` from a v4 client is a protocol error.
    Ping {
        probe: bool,
    },
    Pong {
        probe: bool,
    },
    /// The text after the `4` type digit.
    Message(&'a str),
    Binary(Bytes),
    Upgrade,
    Noop,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("packet of type {0} carries unexpected data")]
    UnexpectedData(char),
    #[error("invalid base64 in a binary packet")]
    BadBase64,
}

impl<'a> Packet<'a> {
    /// Decodes a text packet (a WebSocket text frame, or one item of a polling payload that is
    /// not base64 binary).
    pub fn decode_text(text: &'a str) -> Result<Packet<'a>, PacketError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(PacketError::Empty)?;
        let data = chars.as_str();
        let probe = match data {
            "" => false,
            "probe" => true,
            _ if kind == '2' || kind == '3' => return Err(PacketError::UnexpectedData(kind)),
            _ => false,
        };
        match kind {
            '1' => Ok(Packet::Close),
            '2' => Ok(Packet::Ping { probe }),
            '3' => Ok(Packet::Pong { probe }),
            '4' => Ok(Packet::Message(data)),
            '5' => Ok(Packet::Upgrade),
            '6' => Ok(Packet::Noop),
            other => Err(PacketError::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_type() {
        assert_eq!(Packet::decode_text("1"), Ok(Packet::Close));
        assert_eq!(
            Packet::decode_text("2probe"),
            Ok(Packet::Ping { probe: true })
        );
        assert_eq!(Packet::decode_text("3"), Ok(Packet::Pong { probe: false }));
        assert_eq!(Packet::decode_text("4hello"), Ok(Packet::Message("hello")));
        assert_eq!(Packet::decode_text("4"), Ok(Packet::Message("")));
        assert_eq!(Packet::decode_text("5"), Ok(Packet::Upgrade));
        assert_eq!(Packet::decode_text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Packet::decode_text(""), Err(PacketError::Empty));
        assert_eq!(
            Packet::decode_text("abc"),
            Err(PacketError::UnknownType('a'))
        );
        assert_eq!(
            Packet::decode_text("0{}"),
            Err(PacketError::UnknownType('0'))
        );
        assert_eq!(Packet::decode_text("é"), Err(PacketError::UnknownType('é')));
        assert_eq!(
            Packet::decode_text("2x"),
            Err(PacketError::UnexpectedData('2'))
        );
    }

    #[test]
    fn frames_encode_their_type() {
        assert_eq!(Frame::open("{}"), Frame::Text("0{}".into()));
        assert_eq!(Frame::ping().len(), 1);
    }
}
