//! Socket.IO v5 packet codec: `<type>[<attachments>-][<nsp>,][<ack id>][<JSON>]`.
//!
//! Decoding follows socket.io-parser 4.2.7 (the Node reference): whatever Node rejects is
//! rejected, plus a few inputs no client produces (see [`Packet::decode`]). Encoding prints
//! numbers and object-key order the way `JSON.stringify` does, so a relayed payload is
//! string-identical to what a Node server would send. (Floats with 16-17 significant digits
//! need serde_json's `float_roundtrip` feature to be *parsed* exactly; without it about 10% of
//! them come back 1 ulp off.)
//!
//! Binary attachments never enter the JSON: `data` keeps the `{"_placeholder":true,"num":N}`
//! objects and `attachments[N]` holds the bytes, so relaying a binary packet needs no tree rewrite.

use std::fmt::{self, Write as _};
use std::io;

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap as _, SerializeSeq as _, Serializer};
use serde_json::{Map, Value};

/// Default cap on attachments per packet (socket.io-parser 4.2.x `maxAttachments`).
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// Ack ids are JS numbers on the other side; 15 significant digits stay below 2^53.
const MAX_ACK_ID_DIGITS: usize = 15;

/// Event names the Node parser refuses, since they have a special meaning to listeners.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Largest magnitude a JS number holds exactly; bigger integers are printed as Node would.
const JS_SAFE_INTEGER: u64 = 1 << 53;

/// Socket.IO packet type, the first character of the text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    /// Parses the ASCII digit of the wire form.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The ASCII digit written on the wire.
    pub fn as_char(self) -> char {
        char::from(b'0' + self as u8)
    }

    /// Whether the header carries an attachment count.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// Why a text frame (or the binary frames following it) was rejected. Every variant means
/// "close the connection", as the Node server does on a parser error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("illegal attachment count")]
    BadAttachmentCount,
    #[error("too many attachments ({count} > {max})")]
    TooManyAttachments { count: usize, max: usize },
    #[error("invalid ack id")]
    BadAckId,
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    #[error("invalid payload for {kind:?}: {reason}")]
    InvalidPayload {
        kind: PacketType,
        reason: &'static str,
    },
    #[error("binary frame received while no attachment is expected")]
    UnexpectedBinary,
    #[error("text frame received while attachments are expected")]
    UnexpectedText,
    #[error("bad attachment placeholder: {0}")]
    BadPlaceholder(String),
}

/// One Socket.IO packet. Binary attachments are kept out of `data`: `data` keeps the
/// `{"_placeholder":true,"num":N}` objects in place, `attachments[N]` holds the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Event/Ack for plain packets, BinaryEvent/BinaryAck when `attachments` is non-empty.
    pub kind: PacketType,
    /// `/` by default.
    pub nsp: String,
    /// Ack id.
    pub id: Option<u64>,
    pub data: Option<Value>,
    pub attachments: Vec<Bytes>,
}

/// Result of decoding one text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Complete(Packet),
    /// A binary packet whose attachments follow as separate binary frames.
    NeedsAttachments(PartialPacket),
}

/// Header of a binary packet waiting for its attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialPacket {
    /// `None` once the packet has been handed out.
    packet: Option<Packet>,
    expected: usize,
}

impl PartialPacket {
    /// Adds the next binary frame. Ok(Some(packet)) when all attachments arrived and the
    /// placeholders validated; Ok(None) when more are expected.
    pub fn push(&mut self, bin: Bytes) -> Result<Option<Packet>, ParseError> {
        let Some(packet) = self.packet.as_mut() else {
            return Err(ParseError::UnexpectedBinary);
        };
        packet.attachments.push(bin);
        if packet.attachments.len() < self.expected {
            return Ok(None);
        }
        let Some(packet) = self.packet.take() else {
            return Err(ParseError::UnexpectedBinary);
        };
        check_placeholders(packet.data.as_ref(), self.expected)?;
        Ok(Some(packet))
    }

    /// Number of attachments announced in the header.
    pub fn expected(&self) -> usize {
        self.expected
    }

    /// Attachments still missing (0 once the packet was returned).
    pub fn remaining(&self) -> usize {
        self.packet
            .as_ref()
            .map_or(0, |p| self.expected.saturating_sub(p.attachments.len()))
    }
}

/// Per-connection decoding state: pairs text headers with the binary frames that follow
/// and rejects frames arriving out of order (socket.io-parser `Decoder.add`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoder {
    max_attachments: usize,
    pending: Option<PartialPacket>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS)
    }
}

impl Decoder {
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            pending: None,
        }
    }

    /// Feeds a text frame; Ok(None) when the packet now waits for attachments. After an error
    /// nothing of a pending packet is kept, so its attachments can never complete another.
    pub fn text(&mut self, text: &str) -> Result<Option<Packet>, ParseError> {
        if self.pending.take().is_some() {
            return Err(ParseError::UnexpectedText);
        }
        match Packet::decode(text, self.max_attachments)? {
            Decoded::Complete(p) => Ok(Some(p)),
            Decoded::NeedsAttachments(partial) => {
                self.pending = Some(partial);
                Ok(None)
            }
        }
    }

    /// Feeds a binary frame; Ok(Some) when it completed the pending packet.
    pub fn binary(&mut self, bin: Bytes) -> Result<Option<Packet>, ParseError> {
        let Some(partial) = self.pending.as_mut() else {
            return Err(ParseError::UnexpectedBinary);
        };
        let res = partial.push(bin);
        if !matches!(res, Ok(None)) {
            self.pending = None;
        }
        res
    }

    /// Whether binary frames are expected next.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }
}

impl Packet {
    /// An event's name (its first argument); `None` for other packets.
    pub fn event_name(&self) -> Option<&str> {
        self.data.as_ref()?.get(0)?.as_str()
    }

    /// Decodes the text of an Engine.IO message (the Socket.IO packet WITHOUT the leading Engine.IO '4').
    ///
    /// Stricter than Node only on input no Socket.IO client produces: empty text, attachment
    /// counts that are not plain digits, whitespace where the ack id goes, ack ids over 15 digits,
    /// EVENT/ACK/CONNECT_ERROR without payload, non-integer placeholder indexes, JSON numbers
    /// beyond f64 range, JSON nested deeper than 128. A count of 0 (`50-[..]`) is refused, as in
    /// socket.io-parser 4.2.7. Lone UTF-16 surrogate escapes, which JSON.parse accepts, become U+FFFD.
    pub fn decode(text: &str, max_attachments: usize) -> Result<Decoded, ParseError> {
        let mut chars = text.chars();
        let first = chars.next().ok_or(ParseError::Empty)?;
        let kind = u8::try_from(first)
            .ok()
            .and_then(PacketType::from_byte)
            .ok_or(ParseError::UnknownType(first))?;
        let mut rest = chars.as_str();

        let mut expected = 0;
        if kind.is_binary() {
            let (count, after) = split_digits(rest);
            rest = after
                .strip_prefix('-')
                .ok_or(ParseError::BadAttachmentCount)?;
            // Saturating: an absurd count must fail the limit check, never drive an allocation.
            let count = count.bytes().fold(0usize, |acc, d| {
                acc.saturating_mul(10).saturating_add(usize::from(d - b'0'))
            });
            if count == 0 {
                // socket.io-parser 4.2.7 refuses `5-` and `50-` ("Illegal attachments").
                return Err(ParseError::BadAttachmentCount);
            }
            if count > max_attachments {
                return Err(ParseError::TooManyAttachments {
                    count,
                    max: max_attachments,
                });
            }
            expected = count;
        }

        let nsp = if rest.starts_with('/') {
            // Up to the first ',' or the end: `0/custom` == `0/custom,`.
            let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
            rest = after;
            nsp.to_owned()
        } else {
            String::from("/")
        };

        let (digits, after) = split_digits(rest);
        let id = if digits.is_empty() {
            // Node counts whitespace as an ack-id digit (`Number(" ") == 0`); refuse it rather
            // than read a different packet than Node does.
            if rest.starts_with([' ', '\t', '\n', '\r']) {
                return Err(ParseError::BadAckId);
            }
            None
        } else {
            let significant = digits.trim_start_matches('0');
            if significant.len() > MAX_ACK_ID_DIGITS {
                return Err(ParseError::BadAckId);
            }
            rest = after;
            Some(significant.parse::<u64>().unwrap_or(0))
        };

        let data = if rest.is_empty() {
            None
        } else if kind == PacketType::Disconnect {
            return Err(ParseError::InvalidPayload {
                kind,
                reason: "DISCONNECT takes no payload",
            });
        } else {
            Some(parse_json(rest)?)
        };
        check_payload(kind, data.as_ref())?;

        let packet = Packet {
            kind,
            nsp,
            id,
            data,
            attachments: Vec::new(),
        };
        if kind.is_binary() {
            let mut packet = packet;
            // `expected` is already bounded by max_attachments, but the caller may pass a huge max.
            packet.attachments = Vec::with_capacity(expected.min(DEFAULT_MAX_ATTACHMENTS));
            Ok(Decoded::NeedsAttachments(PartialPacket {
                packet: Some(packet),
                expected,
            }))
        } else {
            Ok(Decoded::Complete(packet))
        }
    }

    /// Appends the text form to `out` (no Engine.IO '4' prefix; the caller may have pushed one).
    ///
    /// The type follows the attachments (EVENT with attachments goes out as BINARY_EVENT and
    /// vice versa) so the header never announces a count Node would refuse. The namespace must
    /// not contain ','; a JSON `null` payload is omitted like Node does.
    pub fn encode_into(&self, out: &mut String) {
        let kind = self.wire_kind();
        out.push(kind.as_char());
        if kind.is_binary() {
            push_u64(out, self.attachments.len() as u64);
            out.push('-');
        }
        if !self.nsp.is_empty() && self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = self.id {
            push_u64(out, id);
        }
        match &self.data {
            None | Some(Value::Null) => {}
            Some(data) => write_json(out, data),
        }
    }

    /// Text form in a fresh String (the tests' shorthand; the server encodes into frames, see
    /// `encode.rs`).
    #[cfg(test)]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(32 + self.nsp.len());
        self.encode_into(&mut out);
        out
    }

    /// Type actually written: binary iff there are attachments, for EVENT/ACK.
    fn wire_kind(&self) -> PacketType {
        let binary = !self.attachments.is_empty();
        match self.kind {
            PacketType::Event | PacketType::BinaryEvent if binary => PacketType::BinaryEvent,
            PacketType::Event | PacketType::BinaryEvent => PacketType::Event,
            PacketType::Ack | PacketType::BinaryAck if binary => PacketType::BinaryAck,
            PacketType::Ack | PacketType::BinaryAck => PacketType::Ack,
            other => other,
        }
    }

    fn new(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>) -> Packet {
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data,
            attachments: Vec::new(),
        }
    }

    /// CONNECT; the server reply carries `{"sid":...}`.
    pub fn connect(nsp: &str, data: Option<Value>) -> Packet {
        Self::new(PacketType::Connect, nsp, None, data)
    }

    pub fn disconnect(nsp: &str) -> Packet {
        Self::new(PacketType::Disconnect, nsp, None, None)
    }

    /// CONNECT_ERROR with `{"message":..,"data":..}`; the `data` key is omitted when None.
    pub fn connect_error(nsp: &str, message: &str, data: Option<Value>) -> Packet {
        let mut obj = Map::with_capacity(2);
        obj.insert("message".to_owned(), Value::String(message.to_owned()));
        if let Some(data) = data {
            obj.insert("data".to_owned(), data);
        }
        Self::new(
            PacketType::ConnectError,
            nsp,
            None,
            Some(Value::Object(obj)),
        )
    }

    /// EVENT (or BINARY_EVENT when attachments non-empty): data = [event, ...args].
    /// The caller puts [`placeholder`]s for the attachments into `args`.
    pub fn event(
        nsp: &str,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        id: Option<u64>,
    ) -> Packet {
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(event.to_owned()));
        data.extend(args);
        let kind = if attachments.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        };
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id,
            data: Some(Value::Array(data)),
            attachments,
        }
    }

    /// ACK (or BINARY_ACK): data = args array.
    pub fn ack(nsp: &str, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) -> Packet {
        let kind = if attachments.is_empty() {
            PacketType::Ack
        } else {
            PacketType::BinaryAck
        };
        Packet {
            kind,
            nsp: nsp.to_owned(),
            id: Some(id),
            data: Some(Value::Array(args)),
            attachments,
        }
    }
}

/// `{"_placeholder":true,"num":num}`, the stand-in for attachment `num` inside `data`.
pub fn placeholder(num: usize) -> Value {
    let mut obj = Map::with_capacity(2);
    obj.insert("_placeholder".to_owned(), Value::Bool(true));
    obj.insert("num".to_owned(), Value::from(num));
    Value::Object(obj)
}

/// Event name and args of an Event packet: Some((name, args)) — name is the first element (a string; a number is
/// accepted like Node does and turned into its decimal string).
pub fn event_parts(data: Value) -> Option<(String, Vec<Value>)> {
    let Value::Array(mut items) = data else {
        return None;
    };
    if !matches!(items.first(), Some(Value::String(_) | Value::Number(_))) {
        return None;
    }
    let name = match items.remove(0) {
        Value::String(s) => s,
        Value::Number(n) => {
            let mut s = String::new();
            push_js_number(&mut s, n.as_f64().unwrap_or(0.0));
            s
        }
        _ => return None,
    };
    Some((name, items))
}

/// Appends `value` as compact JSON, byte-identical to Node's `JSON.stringify(JSON.parse(..))`:
/// numbers printed the JS way, object keys in JS property order (array-index keys first,
/// ascending, then the rest in insertion order).
pub fn write_json(out: &mut String, value: &Value) {
    let start = out.len();
    // SAFETY: serde_json only writes valid UTF-8 (the same invariant `serde_json::to_string`
    // relies on), in whole fragments split at ASCII boundaries, and JsFormatter writes ASCII.
    // On error the String is cut back to its previous (valid) length.
    let buf = unsafe { out.as_mut_vec() };
    let mut ser = serde_json::Serializer::with_formatter(&mut *buf, JsFormatter);
    if JsValue(value).serialize(&mut ser).is_err() {
        buf.truncate(start);
    }
}

/// Serializes a Value with JS own-property order, which JSON.parse imposes on the receiving side.
struct JsValue<'a>(&'a Value);

impl Serialize for JsValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsValue(item))?;
                }
                seq.end()
            }
            Value::Object(obj) => {
                let mut map = serializer.serialize_map(Some(obj.len()))?;
                if obj.keys().any(|k| array_index(k).is_some()) {
                    let mut indexed: Vec<(u32, &String, &Value)> = obj
                        .iter()
                        .filter_map(|(k, v)| array_index(k).map(|i| (i, k, v)))
                        .collect();
                    indexed.sort_unstable_by_key(|e| e.0);
                    for (_, k, v) in indexed {
                        map.serialize_entry(k, &JsValue(v))?;
                    }
                    for (k, v) in obj.iter().filter(|(k, _)| array_index(k).is_none()) {
                        map.serialize_entry(k, &JsValue(v))?;
                    }
                } else {
                    for (k, v) in obj {
                        map.serialize_entry(k, &JsValue(v))?;
                    }
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// ECMAScript array index: canonical decimal below 2^32 - 1 ("0", "7", not "07" or "-1").
fn array_index(key: &str) -> Option<u32> {
    let b = key.as_bytes();
    match b.first() {
        Some(b'0') if b.len() == 1 => Some(0),
        Some(b'1'..=b'9') if b.len() <= 10 && b.iter().all(u8::is_ascii_digit) => {
            key.parse::<u32>().ok().filter(|&i| i != u32::MAX)
        }
        _ => None,
    }
}

/// Compact formatter printing numbers like JS `Number.prototype.toString`.
struct JsFormatter;

impl serde_json::ser::Formatter for JsFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let mut buf = StackStr::new();
        write_js_number(&mut buf, value).map_err(|_| io::Error::other("number formatting"))?;
        writer.write_all(buf.as_bytes())
    }

    fn write_u64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: u64) -> io::Result<()> {
        if value <= JS_SAFE_INTEGER {
            serde_json::ser::CompactFormatter.write_u64(writer, value)
        } else {
            // JSON.parse rounds it to a double; print what Node would re-send.
            self.write_f64(writer, value as f64)
        }
    }

    fn write_i64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: i64) -> io::Result<()> {
        if value.unsigned_abs() <= JS_SAFE_INTEGER {
            serde_json::ser::CompactFormatter.write_i64(writer, value)
        } else {
            self.write_f64(writer, value as f64)
        }
    }
}

/// Fixed buffer for number formatting, so the hot path does not allocate.
struct StackStr {
    buf: [u8; 48],
    len: usize,
}

impl StackStr {
    fn new() -> Self {
        Self {
            buf: [0; 48],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn push_js_number(out: &mut String, value: f64) {
    let mut buf = StackStr::new();
    if write_js_number(&mut buf, value).is_ok() {
        out.push_str(buf.as_str());
    }
}

/// ECMAScript Number::toString(10) from Rust's shortest round-trip digits; non-finite values
/// print as `null` (what JSON.stringify does).
fn write_js_number(out: &mut impl fmt::Write, value: f64) -> fmt::Result {
    if !value.is_finite() {
        return out.write_str("null");
    }
    if value == 0.0 {
        return out.write_str("0"); // also -0
    }
    let abs = value.abs();
    let mut sci = StackStr::new();
    write!(sci, "{abs:e}")?;
    let digits = sci.as_str().find('e').unwrap_or(0).saturating_sub(1).max(1);
    if digits >= 16 {
        // Two shortest candidates can be equally close (exact ties need 16+ digits): Rust picks
        // the upper one, V8 the even one. Exact-precision formatting rounds half to even.
        let mut exact = StackStr::new();
        write!(exact, "{:.*e}", digits - 1, abs)?;
        if exact.as_str() != sci.as_str() && exact.as_str().parse::<f64>() == Ok(abs) {
            sci = exact;
        }
    }
    let (mantissa, exp) = sci.as_str().split_once('e').ok_or(fmt::Error)?;
    let exp: i32 = exp.parse().map_err(|_| fmt::Error)?;
    // mantissa is `d` or `d.ddd`: digits = lead ++ frac, value = 0.digits × 10^n.
    let (lead, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let frac = frac.trim_end_matches('0');
    let k = 1 + i32::try_from(frac.len()).map_err(|_| fmt::Error)?;
    let n = exp + 1;
    if value < 0.0 {
        out.write_char('-')?;
    }
    if k <= n && n <= 21 {
        out.write_str(lead)?;
        out.write_str(frac)?;
        for _ in 0..(n - k) {
            out.write_char('0')?;
        }
    } else if 0 < n && n <= 21 {
        let split = usize::try_from(n - 1).map_err(|_| fmt::Error)?;
        let (int_part, frac_part) = frac.split_at_checked(split).ok_or(fmt::Error)?;
        out.write_str(lead)?;
        out.write_str(int_part)?;
        out.write_char('.')?;
        out.write_str(frac_part)?;
    } else if -6 < n && n <= 0 {
        out.write_str("0.")?;
        for _ in 0..(-n) {
            out.write_char('0')?;
        }
        out.write_str(lead)?;
        out.write_str(frac)?;
    } else {
        out.write_str(lead)?;
        if !frac.is_empty() {
            out.write_char('.')?;
            out.write_str(frac)?;
        }
        let e = n - 1;
        out.write_char('e')?;
        out.write_char(if e < 0 { '-' } else { '+' })?;
        write!(out, "{}", e.unsigned_abs())?;
    }
    Ok(())
}

fn push_u64(out: &mut String, v: u64) {
    let mut buf = StackStr::new();
    if write!(buf, "{v}").is_ok() {
        out.push_str(buf.as_str());
    }
}

/// Leading ASCII-digit run and the remainder.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    // Digits are ASCII, so `end` is a char boundary.
    s.split_at_checked(end).unwrap_or((s, ""))
}

/// Parses the payload; serde_json's recursion limit (128) turns deep nesting into an error.
fn parse_json(text: &str) -> Result<Value, ParseError> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(err) => {
            // JS strings may carry lone UTF-16 surrogates (e.g. an emoji cut by `slice`) that
            // JSON.parse accepts but a Rust String cannot hold: retry with U+FFFD instead of
            // dropping the whole connection. Only on the error path, so no cost otherwise.
            if let Some(fixed) = replace_lone_surrogates(text) {
                if let Ok(v) = serde_json::from_str(&fixed) {
                    return Ok(v);
                }
            }
            Err(ParseError::InvalidJson(err.to_string()))
        }
    }
}

/// Rewrites `\uD8xx`-`\uDFxx` escapes that are not part of a valid pair to `\ufffd`;
/// None when there is nothing to rewrite.
fn replace_lone_surrogates(text: &str) -> Option<String> {
    if !text.contains("\\u") {
        return None;
    }
    fn hex4(s: &str) -> Option<u16> {
        let h = s.get(..4)?;
        if h.bytes().all(|b| b.is_ascii_hexdigit()) {
            u16::from_str_radix(h, 16).ok()
        } else {
            None
        }
    }
    let is_high = |u: u16| (0xD800..0xDC00).contains(&u);
    let is_low = |u: u16| (0xDC00..0xE000).contains(&u);

    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while let Some(pos) = rest.find('\\') {
        let (before, from_bs) = rest.split_at_checked(pos)?;
        out.push_str(before);
        let after_bs = from_bs.get(1..)?;
        let unit = after_bs.strip_prefix('u').and_then(hex4);
        match unit {
            Some(hi) if is_high(hi) => {
                let next = after_bs.get(5..).unwrap_or("");
                let low = next
                    .strip_prefix("\\u")
                    .and_then(hex4)
                    .filter(|&u| is_low(u));
                if low.is_some() {
                    out.push_str(from_bs.get(..12)?);
                    rest = from_bs.get(12..)?;
                } else {
                    out.push_str("\\ufffd");
                    changed = true;
                    rest = from_bs.get(6..)?;
                }
            }
            Some(lo) if is_low(lo) => {
                out.push_str("\\ufffd");
                changed = true;
                rest = from_bs.get(6..)?;
            }
            Some(_) => {
                out.push_str(from_bs.get(..6)?);
                rest = from_bs.get(6..)?;
            }
            None => {
                // Any other escape: copy `\` and the escaped char as a unit so `\\` is not re-read.
                let esc_len = 1 + after_bs.chars().next().map_or(0, char::len_utf8);
                out.push_str(from_bs.get(..esc_len)?);
                rest = from_bs.get(esc_len..)?;
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Payload rules of socket.io-parser `isPayloadValid`.
fn check_payload(kind: PacketType, data: Option<&Value>) -> Result<(), ParseError> {
    let reason = match (kind, data) {
        (PacketType::Connect, None | Some(Value::Object(_))) => return Ok(()),
        (PacketType::Connect, _) => "CONNECT payload must be an object",
        (PacketType::Disconnect, None) => return Ok(()),
        (PacketType::Disconnect, _) => "DISCONNECT takes no payload",
        (PacketType::ConnectError, Some(Value::Object(_) | Value::String(_))) => return Ok(()),
        (PacketType::ConnectError, _) => "CONNECT_ERROR payload must be an object or a string",
        (PacketType::Event | PacketType::BinaryEvent, Some(Value::Array(items))) => {
            match items.first() {
                Some(Value::Number(_)) => return Ok(()),
                Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()) => {
                    return Ok(())
                }
                Some(Value::String(_)) => "reserved event name",
                _ => "event name must be a string or a number",
            }
        }
        (PacketType::Event | PacketType::BinaryEvent, _) => "EVENT payload must be an array",
        (PacketType::Ack | PacketType::BinaryAck, Some(Value::Array(_))) => return Ok(()),
        (PacketType::Ack | PacketType::BinaryAck, _) => "ACK payload must be an array",
    };
    Err(ParseError::InvalidPayload { kind, reason })
}

/// Every `{"_placeholder":true,...}` object must carry an integer `num` below `count`
/// (socket.io-parser `reconstructPacket`, which would otherwise hand out `undefined`).
fn check_placeholders(data: Option<&Value>, count: usize) -> Result<(), ParseError> {
    fn walk(v: &Value, count: usize) -> Result<(), ParseError> {
        match v {
            Value::Array(items) => items.iter().try_for_each(|item| walk(item, count)),
            Value::Object(obj) => {
                if obj.get("_placeholder") == Some(&Value::Bool(true)) {
                    let num = obj.get("num");
                    let index = num.and_then(|n| match n {
                        Value::Number(n) => n.as_u64().or_else(|| {
                            // Integral floats (1.0, -0) index like integers in JS.
                            n.as_f64()
                                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < count as f64)
                                .map(|f| f as u64)
                        }),
                        _ => None,
                    });
                    match index {
                        Some(i) if i < count as u64 => Ok(()),
                        _ => Err(ParseError::BadPlaceholder(match num {
                            Some(n) => format!("num {n} not an index below {count}"),
                            None => "missing num".to_owned(),
                        })),
                    }
                } else {
                    obj.values().try_for_each(|item| walk(item, count))
                }
            }
            _ => Ok(()),
        }
    }
    data.map_or(Ok(()), |v| walk(v, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn dec(text: &str) -> Result<Decoded, ParseError> {
        Packet::decode(text, DEFAULT_MAX_ATTACHMENTS)
    }

    fn complete(text: &str) -> Packet {
        match dec(text) {
            Ok(Decoded::Complete(p)) => p,
            other => panic!("{text:?}: expected a complete packet, got {other:?}"),
        }
    }

    fn partial(text: &str) -> PartialPacket {
        match dec(text) {
            Ok(Decoded::NeedsAttachments(p)) => p,
            other => panic!("{text:?}: expected a partial packet, got {other:?}"),
        }
    }

    fn err(text: &str) -> ParseError {
        match dec(text) {
            Err(e) => e,
            Ok(p) => panic!("{text:?}: expected an error, got {p:?}"),
        }
    }

    /// Decodes and feeds `atts`; the final outcome.
    fn decode_with(text: &str, atts: &[Bytes], max: usize) -> Result<Packet, ParseError> {
        match Packet::decode(text, max)? {
            Decoded::Complete(p) => Ok(p),
            Decoded::NeedsAttachments(mut partial) => {
                for a in atts {
                    if let Some(p) = partial.push(a.clone())? {
                        return Ok(p);
                    }
                }
                Err(ParseError::UnexpectedText) // ran out of attachments
            }
        }
    }

    /// Feeds dummy attachments until the packet completes or fails; must never panic.
    fn drive(text: &str, max: usize) -> Result<Packet, ParseError> {
        match Packet::decode(text, max)? {
            Decoded::Complete(p) => Ok(p),
            Decoded::NeedsAttachments(mut partial) => {
                assert!(partial.expected() >= 1 && partial.expected() <= max);
                for i in 0..partial.expected() {
                    assert_eq!(partial.remaining(), partial.expected() - i);
                    if let Some(p) = partial.push(Bytes::from(vec![i as u8]))? {
                        assert_eq!(p.attachments.len(), partial.expected());
                        assert_eq!(
                            partial.push(Bytes::new()),
                            Err(ParseError::UnexpectedBinary)
                        );
                        return Ok(p);
                    }
                }
                panic!("{text:?}: never completed")
            }
        }
    }

    fn ph(n: usize) -> Value {
        placeholder(n)
    }

    fn js(v: &Value) -> String {
        let mut s = String::new();
        write_json(&mut s, v);
        s
    }

    // ---- wire examples -------------------------------------------------------------------

    #[test]
    fn encodes_protocol_examples() {
        let b1 = Bytes::from_static(&[1, 2, 3]);
        let b2 = Bytes::from_static(&[4, 5, 6]);
        let cases: Vec<(Packet, &str)> = vec![
            (
                Packet::event("/", "foo", vec![], vec![], None),
                r#"2["foo"]"#,
            ),
            (
                Packet::event("/admin", "bar", vec![], vec![], None),
                r#"2/admin,["bar"]"#,
            ),
            (
                Packet::event("/", "foo", vec![], vec![], Some(12)),
                r#"212["foo"]"#,
            ),
            (
                Packet::ack("/admin", 13, vec![json!("bar")], vec![]),
                r#"3/admin,13["bar"]"#,
            ),
            (Packet::disconnect("/admin"), "1/admin,"),
            (Packet::disconnect("/"), "1"),
            (Packet::connect("/", None), "0"),
            (
                Packet::connect("/admin", Some(json!({"sid": "x"}))),
                r#"0/admin,{"sid":"x"}"#,
            ),
            (
                Packet::event("/", "baz", vec![ph(0)], vec![b1.clone()], None),
                r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            ),
            (
                Packet::event(
                    "/admin",
                    "x",
                    vec![ph(0), ph(1)],
                    vec![b1.clone(), b2.clone()],
                    Some(7),
                ),
                r#"52-/admin,7["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            ),
            (
                Packet::ack("/", 789, vec![ph(0), ph(1)], vec![b1.clone(), b2.clone()]),
                r#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            ),
            (
                Packet::connect_error("/random", "Invalid namespace", None),
                r#"4/random,{"message":"Invalid namespace"}"#,
            ),
            (
                Packet::connect_error("/", "nope", Some(json!({"code": 4}))),
                r#"4{"message":"nope","data":{"code":4}}"#,
            ),
        ];
        for (packet, wire) in cases {
            assert_eq!(packet.encode(), wire);
            let back = decode_with(wire, &packet.attachments, DEFAULT_MAX_ATTACHMENTS);
            assert_eq!(back, Ok(packet), "{wire}");
        }
    }

    #[test]
    fn encode_into_appends() {
        let mut out = String::from("4");
        Packet::event("/", "foo", vec![json!(1)], vec![], None).encode_into(&mut out);
        Packet::disconnect("/x").encode_into(&mut out);
        assert_eq!(out, r#"42["foo",1]1/x,"#);
    }

    #[test]
    fn decodes_suite_connects() {
        assert_eq!(complete("0"), Packet::connect("/", None));
        assert_eq!(
            complete(r#"0{"token":"123"}"#),
            Packet::connect("/", Some(json!({"token": "123"})))
        );
        assert_eq!(complete("0/custom,"), Packet::connect("/custom", None));
        assert_eq!(complete("0/custom"), Packet::connect("/custom", None));
        assert_eq!(complete("0/random"), Packet::connect("/random", None));
        assert_eq!(
            complete(r#"0/custom,{"token":"abc"}"#),
            Packet::connect("/custom", Some(json!({"token": "abc"})))
        );
        assert_eq!(complete("1"), Packet::disconnect("/"));
        assert_eq!(complete("1/custom"), Packet::disconnect("/custom"));
        assert_eq!(complete("1/custom,"), Packet::disconnect("/custom"));
    }

    #[test]
    fn suite_plain_message_and_ack() {
        let p = complete(r#"2["message",1,"2",{"3":[true]}]"#);
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketType::Event, "/", None)
        );
        let (name, args) = event_parts(p.data.unwrap()).unwrap();
        assert_eq!(name, "message");
        let reply = Packet::event("/", "message-back", args, vec![], None);
        assert_eq!(reply.encode(), r#"2["message-back",1,"2",{"3":[true]}]"#);

        let p = complete(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#);
        assert_eq!(p.id, Some(456));
        let (name, args) = event_parts(p.data.unwrap()).unwrap();
        assert_eq!(name, "message-with-ack");
        assert_eq!(
            Packet::ack("/", 456, args, vec![]).encode(),
            r#"3456[1,"2",{"3":[false]}]"#
        );
    }

    #[test]
    fn suite_binary_message_and_ack() {
        let mut part = partial(
            r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        );
        assert_eq!(part.expected(), 2);
        assert_eq!(part.push(Bytes::from_static(&[1, 2, 3])), Ok(None));
        let p = part.push(Bytes::from_static(&[4, 5, 6])).unwrap().unwrap();
        assert_eq!(p.kind, PacketType::BinaryEvent);
        assert_eq!(
            p.attachments,
            vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::from_static(&[4, 5, 6])
            ]
        );
        let (name, args) = event_parts(p.data.unwrap()).unwrap();
        assert_eq!(name, "message");
        assert_eq!(args, vec![ph(0), ph(1)]);
        let reply = Packet::event("/", "message-back", args, p.attachments, None);
        assert_eq!(
            reply.encode(),
            r#"52-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );

        let mut part = partial(
            r#"52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        );
        part.push(Bytes::from_static(&[1])).unwrap();
        let p = part.push(Bytes::from_static(&[2])).unwrap().unwrap();
        assert_eq!(p.id, Some(789));
        let (_, args) = event_parts(p.data.unwrap()).unwrap();
        let reply = Packet::ack("/", 789, args, p.attachments);
        assert_eq!(
            reply.encode(),
            r#"62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );

        let p = drive(r#"61-/admin,3[{"_placeholder":true,"num":0}]"#, 10).unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketType::BinaryAck, "/admin", Some(3))
        );
    }

    #[test]
    fn suite_invalid_packets() {
        // Engine.IO frames `4abc`, `42{}`, `42abc[...]` carry these Socket.IO texts.
        assert_eq!(err("abc"), ParseError::UnknownType('a'));
        assert!(matches!(
            err("2{}"),
            ParseError::InvalidPayload {
                kind: PacketType::Event,
                ..
            }
        ));
        assert!(matches!(
            err(r#"2abc["message-with-ack",1]"#),
            ParseError::InvalidJson(_)
        ));
        // ... and the same strings taken as Socket.IO text.
        assert!(matches!(err("4abc"), ParseError::InvalidJson(_)));
        assert!(matches!(err("4[]"), ParseError::InvalidPayload { .. }));
        // `42{}` read as Socket.IO text is CONNECT_ERROR with ack id 2: valid for Node too.
        assert_eq!(complete("42{}").id, Some(2));
        assert!(matches!(
            err(r#"42abc["message-with-ack",1]"#),
            ParseError::InvalidJson(_)
        ));
    }

    /// socket.io-parser test/parser.js "throw an error upon parsing error" and friends.
    #[test]
    fn node_parser_rejections() {
        for bad in [
            r#"442["some","data""#,
            r#"0/admin,"invalid""#,
            "0[]",
            "0null",
            "1/admin,{}",
            r#"2/admin,"invalid"#,
            "2/admin,{}",
            r#"2[{"toString":"foo"}]"#,
            r#"2[true,"foo"]"#,
            r#"2[null,"bar"]"#,
            r#"2["connect"]"#,
            r#"2["connect_error"]"#,
            r#"2["disconnect","123"]"#,
            r#"2["disconnecting"]"#,
            r#"2["newListener"]"#,
            r#"2["removeListener"]"#,
            "2[]",
            "2",
            "3",
            "3/admin,1",
            "3{}",
            "4",
            "4[]",
            "41",
            r#"51-{"a":1}"#,
            r#"61-{}"#,
            "2/admin,,[\"x\"]",
        ] {
            assert!(dec(bad).is_err(), "{bad:?} must be rejected");
        }
        assert_eq!(err(""), ParseError::Empty);
        assert_eq!(err("999"), ParseError::UnknownType('9'));
        assert_eq!(err("7"), ParseError::UnknownType('7'));
        assert_eq!(err("é"), ParseError::UnknownType('é'));
        assert_eq!(err("5"), ParseError::BadAttachmentCount);
        assert_eq!(err(r#"51["x"]"#), ParseError::BadAttachmentCount);
        assert_eq!(err(r#"5-["x"]"#), ParseError::BadAttachmentCount);
        assert_eq!(err(r#"50-["x"]"#), ParseError::BadAttachmentCount);
        assert_eq!(err(r#"5a-["x"]"#), ParseError::BadAttachmentCount);
        assert_eq!(err(r#"5 1-["x"]"#), ParseError::BadAttachmentCount);
    }

    #[test]
    fn accepted_variants() {
        assert_eq!(complete(r#"2[1,"a"]"#).data, Some(json!([1, "a"])));
        assert_eq!(complete(r#"2[-1.5]"#).data, Some(json!([-1.5])));
        assert_eq!(
            complete(r#"4"Unauthorized""#).data,
            Some(json!("Unauthorized"))
        );
        assert_eq!(
            complete(r#"4{"message":"x"}"#).data,
            Some(json!({"message": "x"}))
        );
        assert_eq!(complete("3/a,0[]").id, Some(0));
        assert_eq!(complete("2007[\"x\"]").id, Some(7));
        assert_eq!(complete("1/a,12").id, Some(12)); // ids are legal on any type, as in Node
        assert_eq!(complete("2[\"x\"] \n").data, Some(json!(["x"]))); // JSON.parse allows trailing ws
        assert_eq!(complete("2/a/b c,[\"x\"]").nsp, "/a/b c");
        assert_eq!(complete("2/é,[\"x\"]").nsp, "/é");
        assert_eq!(complete("0/").nsp, "/");
        assert_eq!(complete("0/,").nsp, "/");
        assert_eq!(
            complete("2[\"connected\"]").data,
            Some(json!(["connected"])),
            "only exact reserved names are refused"
        );
        let p = drive(r#"510-["x"]"#, 10).unwrap();
        assert_eq!(
            p.attachments.len(),
            10,
            "placeholders are optional, as in Node"
        );
        assert_eq!(drive(r#"501-["x"]"#, 10).unwrap().attachments.len(), 1);
    }

    #[test]
    fn attachment_limits() {
        assert_eq!(
            err(r#"511-["x"]"#),
            ParseError::TooManyAttachments { count: 11, max: 10 }
        );
        assert_eq!(
            err(r#"5100000-["x"]"#),
            ParseError::TooManyAttachments {
                count: 100_000,
                max: 10
            }
        );
        assert_eq!(
            err(&format!("5{}-[\"x\"]", "9".repeat(40))),
            ParseError::TooManyAttachments {
                count: usize::MAX,
                max: 10
            }
        );
        assert_eq!(
            Packet::decode(r#"52-["x"]"#, 1).unwrap_err(),
            ParseError::TooManyAttachments { count: 2, max: 1 }
        );
        // A huge caller limit must not turn into a huge allocation.
        let part = match Packet::decode(r#"5999999999999-["x"]"#, usize::MAX) {
            Ok(Decoded::NeedsAttachments(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(part.expected(), 999_999_999_999);
    }

    #[test]
    fn ack_id_limits() {
        assert_eq!(
            complete(r#"2999999999999999["x"]"#).id,
            Some(999_999_999_999_999)
        );
        assert_eq!(
            complete(r#"20000999999999999999["x"]"#).id,
            Some(999_999_999_999_999)
        );
        assert_eq!(err(r#"21000000000000000["x"]"#), ParseError::BadAckId);
        assert_eq!(
            err(&format!("2{}[\"x\"]", "1".repeat(31))),
            ParseError::BadAckId
        );
        assert_eq!(
            err(&format!("3/a,{}[]", "9".repeat(400))),
            ParseError::BadAckId
        );
        assert_eq!(err(r#"2 ["x"]"#), ParseError::BadAckId);
        assert_eq!(err("2\n[\"x\"]"), ParseError::BadAckId);
        assert_eq!(err("0/a, {}"), ParseError::BadAckId);
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        assert!(matches!(err(r#"2["x"]x"#), ParseError::InvalidJson(_)));
        assert!(matches!(err(r#"2["x"]["y"]"#), ParseError::InvalidJson(_)));
        assert!(matches!(err(r#"0{"a":1}}"#), ParseError::InvalidJson(_)));
        assert!(matches!(err(r#"2["x",]"#), ParseError::InvalidJson(_)));
        assert!(matches!(err("2[\"x\u{1}\"]"), ParseError::InvalidJson(_)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for depth in [129, 1_000, 100_000] {
            let arrays = format!("2{}{}", "[".repeat(depth), "]".repeat(depth));
            assert!(
                matches!(err(&arrays), ParseError::InvalidJson(_)),
                "depth {depth}"
            );
            let objects = format!(
                "2[\"x\",{}1{}]",
                r#"{"a":"#.repeat(depth),
                "}".repeat(depth)
            );
            assert!(
                matches!(err(&objects), ParseError::InvalidJson(_)),
                "depth {depth}"
            );
            let open_only = format!("51-[\"x\",{}", "[".repeat(depth));
            assert!(dec(&open_only).is_err());
        }
        // Within the limit it parses, and placeholder validation walks it.
        let ok = format!(
            "51-[\"x\",{}{}{}]",
            "[".repeat(100),
            r#"{"_placeholder":true,"num":0}"#,
            "]".repeat(100)
        );
        assert!(drive(&ok, 10).is_ok());
        let bad = format!(
            "51-[\"x\",{}{}{}]",
            "[".repeat(100),
            r#"{"_placeholder":true,"num":1}"#,
            "]".repeat(100)
        );
        assert!(matches!(
            drive(&bad, 10),
            Err(ParseError::BadPlaceholder(_))
        ));
    }

    #[test]
    fn placeholder_validation() {
        let one = [Bytes::from_static(b"a")];
        let check = |payload: &str| decode_with(&format!("51-[\"x\",{payload}]"), &one, 10);
        for good in [
            r#"{"_placeholder":true,"num":0}"#,
            r#"{"num":0,"_placeholder":true}"#,
            r#"{"_placeholder":true,"num":0.0}"#,
            r#"{"_placeholder":true,"num":-0}"#,
            r#"{"_placeholder":false,"num":99}"#,
            r#"{"_placeholder":"true","num":99}"#,
            r#"{"_placeholder":1,"num":99}"#,
            r#"{"nested":[{"_placeholder":true,"num":0}]}"#,
            r#"{"_placeholder":true,"num":0,"extra":{"_placeholder":true,"num":9}}"#,
            r#""no placeholder at all""#,
        ] {
            assert!(check(good).is_ok(), "{good} should be accepted");
        }
        for bad in [
            r#"{"_placeholder":true,"num":1}"#,
            r#"{"_placeholder":true,"num":-1}"#,
            r#"{"_placeholder":true,"num":0.5}"#,
            r#"{"_placeholder":true,"num":1e300}"#,
            r#"{"_placeholder":true,"num":-1e300}"#,
            r#"{"_placeholder":true,"num":18446744073709551616}"#,
            r#"{"_placeholder":true,"num":"0"}"#,
            r#"{"_placeholder":true,"num":null}"#,
            r#"{"_placeholder":true,"num":[0]}"#,
            r#"{"_placeholder":true}"#,
            r#"{"a":{"b":[1,{"_placeholder":true,"num":7}]}}"#,
        ] {
            assert!(
                matches!(check(bad), Err(ParseError::BadPlaceholder(_))),
                "{bad} should be refused"
            );
        }
        // Plain (non-binary) packets are not checked, as in Node.
        assert!(dec(r#"2["x",{"_placeholder":true,"num":5}]"#).is_ok());
        // Placeholders stay in place.
        let p = check(r#"{"k":{"_placeholder":true,"num":0}}"#).unwrap();
        assert_eq!(
            p.data,
            Some(json!(["x", {"k": {"_placeholder": true, "num": 0}}]))
        );
    }

    #[test]
    fn decoder_state_machine() {
        let mut d = Decoder::default();
        assert_eq!(d.binary(Bytes::new()), Err(ParseError::UnexpectedBinary));
        assert_eq!(
            d.text(r#"52-["x",{"_placeholder":true,"num":1}]"#),
            Ok(None)
        );
        assert!(d.is_waiting());
        // Text in place of an attachment drops the pending packet: its attachments can never
        // be taken for another packet's.
        assert_eq!(d.text(r#"2["y"]"#), Err(ParseError::UnexpectedText));
        assert!(!d.is_waiting());
        assert_eq!(d.binary(Bytes::new()), Err(ParseError::UnexpectedBinary));
        assert_eq!(
            d.text(r#"52-["x",{"_placeholder":true,"num":1}]"#),
            Ok(None)
        );
        assert_eq!(d.binary(Bytes::from_static(b"1")), Ok(None));
        let p = d.binary(Bytes::from_static(b"2")).unwrap().unwrap();
        assert_eq!(p.attachments.len(), 2);
        assert!(!d.is_waiting());
        assert_eq!(d.binary(Bytes::new()), Err(ParseError::UnexpectedBinary));
        assert_eq!(
            d.text(r#"2["y"]"#).unwrap().unwrap().data,
            Some(json!(["y"]))
        );
        // A failed reconstruction clears the state.
        assert_eq!(
            d.text(r#"51-["x",{"_placeholder":true,"num":3}]"#),
            Ok(None)
        );
        assert!(matches!(
            d.binary(Bytes::new()),
            Err(ParseError::BadPlaceholder(_))
        ));
        assert!(!d.is_waiting());
        assert!(matches!(
            d.text("2"),
            Err(ParseError::InvalidPayload { .. })
        ));
        assert!(!d.is_waiting());
    }

    #[test]
    fn encode_normalizes_kind_and_null() {
        let mut p = Packet::event("/", "x", vec![], vec![], None);
        p.kind = PacketType::BinaryEvent;
        assert_eq!(p.encode(), r#"2["x"]"#);
        p.kind = PacketType::Event;
        p.attachments.push(Bytes::new());
        assert_eq!(p.encode(), r#"51-["x"]"#);
        let mut a = Packet::ack("/", 1, vec![], vec![Bytes::new()]);
        assert_eq!(a.encode(), "61-1[]");
        a.attachments.clear();
        assert_eq!(a.encode(), "31[]");
        let mut c = Packet::connect("", Some(Value::Null));
        assert_eq!(
            c.encode(),
            "0",
            "null payload and empty nsp are omitted like in Node"
        );
        c.attachments.push(Bytes::new());
        assert_eq!(c.encode(), "0");
    }

    #[test]
    fn event_parts_cases() {
        assert_eq!(
            event_parts(json!(["a", 1, 2])),
            Some(("a".to_owned(), vec![json!(1), json!(2)]))
        );
        assert_eq!(event_parts(json!([42])), Some(("42".to_owned(), vec![])));
        assert_eq!(
            event_parts(json!([1.5, "x"])),
            Some(("1.5".to_owned(), vec![json!("x")]))
        );
        assert_eq!(
            event_parts(json!([1e21])),
            Some(("1e+21".to_owned(), vec![]))
        );
        assert_eq!(event_parts(json!([-0.0])), Some(("0".to_owned(), vec![])));
        assert_eq!(event_parts(json!([])), None);
        assert_eq!(event_parts(json!([null, "x"])), None);
        assert_eq!(event_parts(json!([["a"]])), None);
        assert_eq!(event_parts(json!({"0": "a"})), None);
        assert_eq!(event_parts(json!("a")), None);
    }

    #[test]
    fn numbers_print_like_javascript() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.0, "-1"),
            (100.0, "100"),
            (0.1, "0.1"),
            (-0.0, "0"),
            (1.5, "1.5"),
            (123.456, "123.456"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1.2345678901234568e21, "1.2345678901234568e+21"),
            (1e-6, "0.000001"),
            (1.2e-6, "0.0000012"),
            (1e-7, "1e-7"),
            (-1.5e-7, "-1.5e-7"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            // Exact ties between two shortest forms: V8 takes the even digit.
            (606_660_258_652_108.0 + 0.25, "606660258652108.2"),
            (224_646_600_206_621.0 + 0.625, "224646600206621.62"),
            (159_718_943_231_548.0 + 0.125, "159718943231548.12"),
            (0.30000000000000004, "0.30000000000000004"),
            (0.000123, "0.000123"),
            (2.5e-10, "2.5e-10"),
        ];
        for &(v, want) in cases {
            assert_eq!(js(&json!(v)), want, "{v:e}");
        }
        assert_eq!(js(&json!(9_007_199_254_740_992u64)), "9007199254740992");
        assert_eq!(js(&json!(9_007_199_254_740_993u64)), "9007199254740992");
        assert_eq!(js(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(js(&json!(i64::MIN)), "-9223372036854776000");
        assert_eq!(js(&json!(-9_007_199_254_740_992i64)), "-9007199254740992");
        let p = complete(r#"2["x",1.0,1e2,1E+21,-0,0.10,18446744073709551616,1.5e-7]"#);
        assert_eq!(
            p.encode(),
            r#"2["x",1,100,1e+21,0,0.1,18446744073709552000,1.5e-7]"#
        );
    }

    #[test]
    fn json_text_is_kept_exact() {
        for wire in [
            r#"2["x",{"b":1,"a":[true,false,null],"c":{"z":"y"}}]"#,
            "2[\"é\\\"\\\\\\n\\t\\u0001\\u001f\",\"😀\",\"\u{2028}\",\"\"]",
            r#"0/a,{"":0,"__proto__":{}}"#,
        ] {
            assert_eq!(complete(wire).encode(), wire);
        }
        // Object keys come out in JS property order: array indexes first, ascending.
        assert_eq!(
            complete(r#"2["x",{"b":1,"2":2,"1":3,"01":4,"4294967295":5,"4294967294":6,"-1":7,"10":8,"0":9,"1.5":10,"__proto__":1}]"#).encode(),
            r#"2["x",{"0":9,"1":3,"2":2,"10":8,"4294967294":6,"b":1,"01":4,"4294967295":5,"-1":7,"1.5":10,"__proto__":1}]"#
        );
        assert_eq!(array_index("4294967294"), Some(4_294_967_294));
        assert_eq!(array_index("4294967295"), None);
        assert_eq!(array_index("99999999999"), None);
        assert_eq!(array_index(""), None);
        assert_eq!(array_index("+1"), None);
        // Duplicate keys: last value wins at the first position, as JSON.parse does.
        assert_eq!(
            complete(r#"2["x",{"a":1,"b":2,"a":3}]"#).encode(),
            r#"2["x",{"a":3,"b":2}]"#
        );
        // Escapes are normalized the way JSON.stringify prints them.
        assert_eq!(complete(r#"2["\u0041\/\b\f"]"#).encode(), r#"2["A/\b\f"]"#);
    }

    #[test]
    fn lone_surrogates_are_replaced() {
        assert_eq!(
            complete(r#"2["x","\ud83d"]"#).data,
            Some(json!(["x", "\u{fffd}"]))
        );
        assert_eq!(
            complete(r#"2["x","a\udc00b"]"#).data,
            Some(json!(["x", "a\u{fffd}b"]))
        );
        assert_eq!(
            complete(r#"2["x","\ud83d\ud83d\ude00"]"#).data,
            Some(json!(["x", "\u{fffd}😀"]))
        );
        assert_eq!(
            complete(r#"2["x","\ud83d\u0041"]"#).data,
            Some(json!(["x", "\u{fffd}A"]))
        );
        assert_eq!(
            complete(r#"2["x","\\ud83d"]"#).data,
            Some(json!(["x", "\\ud83d"]))
        );
        assert_eq!(
            complete(r#"2["x","\\\ud83d"]"#).data,
            Some(json!(["x", "\\\u{fffd}"]))
        );
        assert_eq!(complete(r#"2["\ud83d\ude00"]"#).data, Some(json!(["😀"])));
        assert!(dec(r#"2["x","\ud83d",]"#).is_err());
        assert!(dec(r#"2["x","\ud83"]"#).is_err());
        assert!(dec(r#"2["x","\"#).is_err());
        assert_eq!(replace_lone_surrogates(r#"["\u0041"]"#), None);
    }

    // ---- garbage -------------------------------------------------------------------------

    const VALID: &[&str] = &[
        "0",
        r#"0{"token":"123"}"#,
        "0/custom,",
        r#"0/admin,{"sid":"x"}"#,
        "1/admin,",
        r#"2["message",1,"2",{"3":[true]}]"#,
        r#"2456["message-with-ack",1,"2",{"3":[false]}]"#,
        r#"2/admin,12["bar",{"a":[1.5,null,"\u00e9\ud83d\ude00"]}]"#,
        r#"3/admin,13["bar"]"#,
        r#"4/random,{"message":"Invalid namespace"}"#,
        r#"4"Unauthorized""#,
        r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        r#"52-/admin,789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        r#"61-/x,1[{"_placeholder":true,"num":0}]"#,
    ];

    #[test]
    fn garbage_never_panics() {
        let mut ok = 0usize;
        let mut failed = 0usize;
        let mut run = |text: &str| match drive(text, DEFAULT_MAX_ATTACHMENTS) {
            Ok(p) => {
                ok += 1;
                // Whatever was accepted must re-encode to something that decodes the same way.
                let again = decode_with(&p.encode(), &p.attachments, DEFAULT_MAX_ATTACHMENTS);
                assert_eq!(
                    again.as_ref().map(Packet::encode),
                    Ok(p.encode()),
                    "{text:?}"
                );
            }
            Err(_) => failed += 1,
        };

        // Every prefix of valid packets (truncation at any char boundary).
        for v in VALID {
            for (i, _) in v.char_indices().chain(std::iter::once((v.len(), ' '))) {
                run(&v[..i]);
            }
        }

        // Header pieces x payloads for every type digit and some non-digits.
        let types = [
            "0", "1", "2", "3", "4", "5", "6", "7", "9", "a", "-", "/", " ", "\u{0}", "é",
        ];
        let counts = [
            "",
            "-",
            "0-",
            "1-",
            "2-",
            "10-",
            "11-",
            "100000-",
            "1000000000000000000000000000000-",
            "1",
            "1--",
            "-1-",
            "1.0-",
            "1e1-",
            " 1-",
            "01-",
            "x-",
        ];
        let nsps = [
            "", "/", "/,", "/admin", "/admin,", "/a,b,", ",", "/é,", "//,",
        ];
        let ids = [
            "",
            "0",
            "7",
            "007",
            "999999999999999",
            "1000000000000000",
            "1000000000000000000000000000000",
            " ",
            "-1",
            "1.5",
            "1e3",
        ];
        let payloads = [
            "",
            "[",
            "[]",
            "{",
            "{}",
            "}",
            "null",
            "true",
            "1",
            "-",
            "\"x\"",
            "\"x",
            "[\"x\"]",
            "[\"x\",]",
            "[\"connect\"]",
            "[1]",
            "[null]",
            "{\"message\":\"m\"}",
            "[\"x\"]garbage",
            "[\"x\"] ",
            "[\"x\",{\"_placeholder\":true,\"num\":0}]",
            "[\"x\",{\"_placeholder\":true,\"num\":1}]",
            "[\"x\",{\"_placeholder\":true,\"num\":-1}]",
            "[\"x\",{\"_placeholder\":true,\"num\":0.5}]",
            "[\"x\",{\"_placeholder\":true,\"num\":\"0\"}]",
            "[\"x\",{\"_placeholder\":true,\"num\":1e999}]",
            "[{\"_placeholder\":true,\"num\":0}]",
            "[\"x\",\"\\ud800\"]",
            "[\"x\",\"\\udc00\\ud800\"]",
            "[\"x\",\"\\u12\"]",
            "[\"x\",\"\\",
            "[1e999]",
            "[-0]",
        ];
        for t in types {
            for c in counts {
                for n in nsps {
                    for i in ids {
                        for p in payloads {
                            run(&format!("{t}{c}{n}{i}{p}"));
                        }
                    }
                }
            }
        }

        // Oversized and pathological inputs.
        let big = [
            format!("5{}-[\"x\"]", "9".repeat(10_000)),
            format!("2{}[\"x\"]", "9".repeat(10_000)),
            format!("2/{}", "a".repeat(100_000)),
            format!("2[\"{}\"]", "a".repeat(1_000_000)),
            format!("2{}", "[".repeat(1_000_000)),
            format!("2[\"x\",{}]", "{\"a\":".repeat(100_000)),
            format!("2[\"x\",{}]", "\\ud800".repeat(10_000)),
            format!("2[\"x\",\"{}\"]", "\\ud800".repeat(10_000)),
            "\u{fffd}".repeat(1000),
        ];
        for b in &big {
            run(b);
        }
        assert!(ok > 100 && failed > 10_000, "ok={ok} failed={failed}");
    }

    // ---- property tests ------------------------------------------------------------------

    fn arb_nsp() -> impl Strategy<Value = String> {
        prop_oneof![Just("/".to_owned()), "/[^,]{1,12}"]
    }

    /// Non-integral floats of at most 15 significant digits. Longer ones are not parsed
    /// exactly by serde_json unless its `float_roundtrip` feature is on (not in this crate's
    /// dependency spec), so they would not round-trip bit-for-bit.
    fn arb_float() -> impl Strategy<Value = f64> {
        (-999_999_999_999_999i64..=999_999_999_999_999, 1i32..=20)
            .prop_map(|(m, k)| m as f64 / 10f64.powi(k))
            .prop_filter("non-integral", |f| f.fract() != 0.0)
    }

    /// Object keys, often integer-like since JS orders those first.
    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), "[0-9]{1,11}", "-?[0-9]{1,2}"]
    }

    /// JSON values that survive a JSON round trip unchanged (integers within ±2^53, floats
    /// with a fractional part: integral floats come back as integers, like in JS).
    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
            any::<u32>().prop_map(Value::from),
            arb_float().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((arb_key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn arb_object() -> impl Strategy<Value = Value> {
        prop::collection::vec((arb_key(), arb_json()), 0..5)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()))
    }

    /// Args with `n` placeholders spliced in (some nested), plus the matching attachments.
    fn arb_args_with_attachments() -> impl Strategy<Value = (Vec<Value>, Vec<Bytes>)> {
        (
            prop::collection::vec(arb_json(), 0..5),
            prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..16),
                    any::<usize>(),
                    0u8..3,
                ),
                0..4,
            ),
        )
            .prop_map(|(mut args, atts)| {
                let mut bins = Vec::with_capacity(atts.len());
                for (num, (bytes, pos, wrap)) in atts.into_iter().enumerate() {
                    let p = match wrap {
                        0 => placeholder(num),
                        1 => Value::Array(vec![placeholder(num)]),
                        _ => json!({ "file": placeholder(num) }),
                    };
                    args.insert(pos % (args.len() + 1), p);
                    bins.push(Bytes::from(bytes));
                }
                (args, bins)
            })
    }

    fn arb_event_name() -> impl Strategy<Value = String> {
        any::<String>().prop_filter("not reserved", |s| !RESERVED_EVENTS.contains(&s.as_str()))
    }

    fn arb_id() -> impl Strategy<Value = Option<u64>> {
        prop::option::of(0u64..1_000_000_000_000_000)
    }

    fn arb_packet() -> impl Strategy<Value = Packet> {
        prop_oneof![
            (arb_nsp(), prop::option::of(arb_object())).prop_map(|(n, d)| Packet::connect(&n, d)),
            arb_nsp().prop_map(|n| Packet::disconnect(&n)),
            (arb_nsp(), any::<String>(), prop::option::of(arb_json()))
                .prop_map(|(n, m, d)| Packet::connect_error(&n, &m, d)),
            (arb_nsp(), any::<String>()).prop_map(|(n, m)| Packet {
                kind: PacketType::ConnectError,
                nsp: n,
                id: None,
                data: Some(Value::String(m)),
                attachments: vec![],
            }),
            (
                arb_nsp(),
                arb_event_name(),
                arb_args_with_attachments(),
                arb_id()
            )
                .prop_map(|(n, e, (args, atts), id)| Packet::event(&n, &e, args, atts, id)),
            (
                arb_nsp(),
                -1000i64..1000,
                arb_args_with_attachments(),
                arb_id()
            )
                .prop_map(|(n, e, (mut args, atts), id)| {
                    args.insert(0, json!(e)); // numeric event name
                    let mut p = Packet::ack(&n, 0, args, atts);
                    p.kind = if p.attachments.is_empty() {
                        PacketType::Event
                    } else {
                        PacketType::BinaryEvent
                    };
                    p.id = id;
                    p
                }),
            (
                arb_nsp(),
                0u64..1_000_000_000_000_000,
                arb_args_with_attachments()
            )
                .prop_map(|(n, id, (args, atts))| Packet::ack(&n, id, args, atts)),
        ]
    }

    /// Same JSON, comparing numbers by value (1.0 == 1), as JavaScript sees them.
    fn js_eq(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| js_eq(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, va)| y.get(k).is_some_and(|vb| js_eq(va, vb)))
            }
            _ => a == b,
        }
    }

    /// Packet texts written by a sloppier encoder: serde_json's own number format
    /// (`1.0`, `1e21`), escaped slashes, random header pieces; mostly valid.
    fn arb_noisy_text() -> impl Strategy<Value = String> {
        (
            0u8..7,
            0usize..4,
            prop::option::of("/[a-z0-9/ é_-]{0,6}"),
            prop::bool::ANY,
            prop::option::of("0{0,2}[0-9]{1,5}"),
            prop::option::of(arb_json()),
            arb_event_name(),
            prop::bool::ANY,
        )
            .prop_map(|(t, n, nsp, comma, id, data, name, wrap)| {
                let mut s = t.to_string();
                if t >= 5 {
                    s.push_str(&format!("{n}-"));
                }
                if let Some(nsp) = nsp {
                    s.push_str(&nsp);
                    if comma {
                        s.push(',');
                    }
                }
                if let Some(id) = id {
                    s.push_str(&id);
                }
                if let Some(mut d) = data {
                    if wrap {
                        let mut items = vec![Value::String(name)];
                        items.push(d);
                        for k in 0..n {
                            items.push(placeholder(k));
                        }
                        d = Value::Array(items);
                    }
                    s.push_str(&serde_json::to_string(&d).unwrap().replace('/', "\\/"));
                }
                s
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn prop_roundtrip(p in arb_packet()) {
            let text = p.encode();
            let back = decode_with(&text, &p.attachments, DEFAULT_MAX_ATTACHMENTS);
            prop_assert_eq!(back, Ok(p.clone()), "{}", text);
            // encode_into after a prefix appends the same bytes.
            let mut out = String::from("4");
            p.encode_into(&mut out);
            prop_assert_eq!(&out[1..], text.as_str());
        }

        #[test]
        fn prop_decode_never_panics_on_strings(s in any::<String>()) {
            let _ = drive(&s, DEFAULT_MAX_ATTACHMENTS);
        }

        #[test]
        fn prop_decode_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = drive(&String::from_utf8_lossy(&b), DEFAULT_MAX_ATTACHMENTS);
        }

        #[test]
        fn prop_decode_never_panics_on_packet_like_text(
            s in r#"[0-9]{0,3}-?(/[a-z,]{0,3})?[0-9 ]{0,3}[\[\]{}",:0-9a-z_\\. -]{0,40}"#,
            max in 0usize..12,
        ) {
            let _ = drive(&s, max);
        }

        #[test]
        fn prop_decoded_packets_reencode_identically(s in arb_noisy_text()) {
            if let Ok(p1) = drive(&s, DEFAULT_MAX_ATTACHMENTS) {
                let wire = p1.encode();
                let p2 = decode_with(&wire, &p1.attachments, DEFAULT_MAX_ATTACHMENTS);
                prop_assert!(p2.is_ok(), "{} -> {} -> {:?}", s, wire, p2);
                let p2 = p2.unwrap();
                prop_assert_eq!(p2.encode(), wire.clone());
                prop_assert_eq!((p1.kind, &p1.nsp, p1.id, &p1.attachments), (p2.kind, &p2.nsp, p2.id, &p2.attachments));
                match (&p1.data, &p2.data) {
                    (Some(a), Some(b)) => prop_assert!(js_eq(a, b), "{} vs {}", a, b),
                    (a, b) => prop_assert_eq!(a, b),
                }
            }
        }
    }
}
