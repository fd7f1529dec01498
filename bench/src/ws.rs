//! A lean WebSocket client (RFC 6455) for holding tens of thousands of sockets: no task or
//! channel of its own, one receive buffer per socket that grows only for large frames, every
//! frame of one `read` parsed in place. Only what a load generator needs: text frames out
//! (masked), text/binary/ping/close in, fragmented messages reassembled.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const INITIAL_BUF: usize = 4096;
const MAX_MESSAGE: usize = 16 << 20;
const MAX_HEADER: usize = 16 << 10;

#[derive(Debug)]
pub enum WsError {
    Io(io::Error),
    /// The HTTP upgrade was answered with something other than 101.
    Refused(u16),
    Protocol(&'static str),
    Closed,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "i/o: {e}"),
            WsError::Refused(s) => write!(f, "upgrade refused with HTTP {s}"),
            WsError::Protocol(m) => write!(f, "protocol: {m}"),
            WsError::Closed => write!(f, "closed by the server"),
        }
    }
}

impl std::error::Error for WsError {}

impl From<io::Error> for WsError {
    fn from(e: io::Error) -> Self {
        WsError::Io(e)
    }
}

/// Opens a TCP connection from `src` (any port) to `dst`. Binding the source first spreads
/// sockets over several loopback addresses, each with its own ephemeral port range.
pub async fn connect_tcp(src: Option<Ipv4Addr>, dst: SocketAddr) -> io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.set_reuseaddr(true)?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip.into(), 0))?;
    }
    let stream = sock.connect(dst).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Binary,
    Close,
}

pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented message being reassembled (rare: servers send whole frames).
    partial: Option<(Kind, Vec<u8>)>,
    /// The last reassembled message (its payload is returned as a range into it).
    assembled: Vec<u8>,
    out: Vec<u8>,
    mask_seed: u32,
}

static MASK_SEED: AtomicU32 = AtomicU32::new(0x9e37_79b9);

/// Where a received payload lives until the next call to `next`.
pub enum Payload {
    Buf(Range<usize>),
    Assembled,
}

impl WsClient {
    /// Sends the upgrade request for `path_and_query` and waits for `101 Switching Protocols`.
    pub async fn handshake(
        mut stream: TcpStream,
        host: &str,
        path_and_query: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<Self, WsError> {
        let mut req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (k, v) in extra_headers {
            req.push_str(k);
            req.push_str(": ");
            req.push_str(v);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = vec![0u8; INITIAL_BUF];
        let mut end = 0;
        let header_end = loop {
            if end == buf.len() {
                if buf.len() >= MAX_HEADER {
                    return Err(WsError::Protocol("upgrade response header too large"));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[end..]).await?;
            if n == 0 {
                return Err(WsError::Closed);
            }
            end += n;
            if let Some(i) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let status = std::str::from_utf8(&buf[..header_end])
            .ok()
            .and_then(|h| h.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(WsError::Protocol("malformed upgrade response"))?;
        if status != 101 {
            return Err(WsError::Refused(status));
        }
        Ok(WsClient {
            stream,
            buf,
            start: header_end,
            end,
            partial: None,
            assembled: Vec::new(),
            out: Vec::new(),
            mask_seed: MASK_SEED.fetch_add(0x6d2b_79f5, Ordering::Relaxed),
        })
    }

    /// Drops the connection with a TCP reset, as a network failure would: no close frame, no
    /// FIN, and the peer learns at once (unlike a silent loss, found only by heartbeats).
    pub fn abort(self) {
        let _ = self.stream.set_zero_linger();
    }

    /// Queues a masked text frame; `flush` sends everything queued in one write.
    pub fn queue_text(&mut self, data: &[u8]) {
        self.queue_frame(0x1, data);
    }

    fn queue_frame(&mut self, opcode: u8, data: &[u8]) {
        self.mask_seed ^= self.mask_seed << 13;
        self.mask_seed ^= self.mask_seed >> 17;
        self.mask_seed ^= self.mask_seed << 5;
        let mask = self.mask_seed.to_be_bytes();
        self.out.push(0x80 | opcode);
        let len = data.len();
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(&mask);
        self.out
            .extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    }

    pub async fn flush(&mut self) -> Result<(), WsError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    pub async fn send_text(&mut self, data: &[u8]) -> Result<(), WsError> {
        self.queue_text(data);
        self.flush().await
    }

    /// The bytes of a payload returned by `next`.
    pub fn payload(&self, p: &Payload) -> &[u8] {
        match p {
            Payload::Buf(r) => &self.buf[r.clone()],
            Payload::Assembled => &self.assembled,
        }
    }

    /// True when a complete frame is already buffered (`next` will not wait for the socket).
    pub fn has_buffered_frame(&self) -> bool {
        matches!(parse_header(&self.buf[self.start..self.end]), Ok(Some(h)) if h.total() <= self.end - self.start)
    }

    /// The next data or close message. Pings are answered (queued, sent on the next flush).
    pub async fn next(&mut self) -> Result<(Kind, Payload), WsError> {
        match self.next_until(None).await? {
            Some(m) => Ok(m),
            None => Err(WsError::Protocol("no message")),
        }
    }

    /// Like [`Self::next`], but gives up waiting for the socket at `deadline` (`Ok(None)`), so
    /// a caller can send something on a timer between reads. Only the read is abandoned (tokio
    /// reads are cancel-safe); nothing is lost, the next call goes on where this one stopped.
    pub async fn next_until(
        &mut self,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<Option<(Kind, Payload)>, WsError> {
        loop {
            let avail = &self.buf[self.start..self.end];
            match parse_header(avail)? {
                Some(h) if h.total() <= avail.len() => {
                    let p0 = self.start + h.header_len;
                    let p1 = p0 + h.len;
                    self.start += h.total();
                    if let Some(mask) = h.mask {
                        for (i, b) in self.buf[p0..p1].iter_mut().enumerate() {
                            *b ^= mask[i & 3];
                        }
                    }
                    match h.opcode {
                        0x0 => {
                            let Some((kind, mut acc)) = self.partial.take() else {
                                return Err(WsError::Protocol("continuation without a start"));
                            };
                            acc.extend_from_slice(&self.buf[p0..p1]);
                            if acc.len() > MAX_MESSAGE {
                                return Err(WsError::Protocol("message too large"));
                            }
                            if h.fin {
                                self.assembled = acc;
                                return Ok(Some((kind, Payload::Assembled)));
                            }
                            self.partial = Some((kind, acc));
                        }
                        0x1 | 0x2 => {
                            let kind = if h.opcode == 0x1 {
                                Kind::Text
                            } else {
                                Kind::Binary
                            };
                            if h.fin {
                                return Ok(Some((kind, Payload::Buf(p0..p1))));
                            }
                            self.partial = Some((kind, self.buf[p0..p1].to_vec()));
                        }
                        0x8 => return Ok(Some((Kind::Close, Payload::Buf(p0..p1)))),
                        0x9 => {
                            let data = self.buf[p0..p1].to_vec();
                            self.queue_frame(0xA, &data);
                        }
                        0xA => {}
                        _ => return Err(WsError::Protocol("unknown opcode")),
                    }
                }
                need => {
                    // Make room: move the unread bytes to the front, grow for a large frame.
                    let want = need.map_or(0, |h| h.total());
                    if self.start > 0 {
                        self.buf.copy_within(self.start..self.end, 0);
                        self.end -= self.start;
                        self.start = 0;
                    }
                    if want > self.buf.len() {
                        if want > MAX_MESSAGE + 14 {
                            return Err(WsError::Protocol("frame too large"));
                        }
                        self.buf.resize(want, 0);
                    } else if self.end == self.buf.len() {
                        let n = self.buf.len() * 2;
                        self.buf.resize(n, 0);
                    }
                    self.flush().await?;
                    let read = self.stream.read(&mut self.buf[self.end..]);
                    let n = match deadline {
                        None => read.await?,
                        Some(d) => match tokio::time::timeout_at(d, read).await {
                            Ok(r) => r?,
                            Err(_) => return Ok(None),
                        },
                    };
                    if n == 0 {
                        return Err(WsError::Closed);
                    }
                    self.end += n;
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    opcode: u8,
    header_len: usize,
    len: usize,
    mask: Option<[u8; 4]>,
}

impl Header {
    fn total(&self) -> usize {
        self.header_len + self.len
    }
}

/// The frame header at the start of `b`, or None if more bytes are needed.
fn parse_header(b: &[u8]) -> Result<Option<Header>, WsError> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    if b[0] & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut header_len) = match b[1] & 0x7f {
        126 => {
            if b.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
        }
        127 => {
            if b.len() < 10 {
                return Ok(None);
            }
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[2..10]);
            let l = u64::from_be_bytes(a);
            if l > MAX_MESSAGE as u64 {
                return Err(WsError::Protocol("frame too large"));
            }
            (l as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    let mask = if masked {
        if b.len() < header_len + 4 {
            return Ok(None);
        }
        let m = [
            b[header_len],
            b[header_len + 1],
            b[header_len + 2],
            b[header_len + 3],
        ];
        header_len += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        header_len,
        len,
        mask,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let h = parse_header(&[0x81, 5]).expect("ok").expect("complete");
        assert!(h.fin && h.opcode == 1 && h.header_len == 2 && h.len == 5);
        let h = parse_header(&[0x82, 126, 1, 0])
            .expect("ok")
            .expect("complete");
        assert_eq!((h.header_len, h.len), (4, 256));
        assert!(parse_header(&[0x81, 127, 0]).expect("ok").is_none());
        assert!(parse_header(&[0xf1, 0]).is_err());
    }
}
