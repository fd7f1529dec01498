//! A classic Pub/Sub connection spoken directly, in RESP2.
//!
//! redis-rs' `PubSub` keeps a copy of every channel it is subscribed to (to answer an
//! UNSUBSCRIBE without arguments, which the relay never sends). With a channel per room that
//! is about 200 bytes per socket, beside the room index that already names them. This
//! connection keeps nothing per channel: it writes commands, and hands each push to its
//! caller as slices of its read buffer.

use std::io::Write as _;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use deadpool_redis::redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest bulk string accepted. Valkey drops a Pub/Sub client whose output passes 32 MiB
/// (`client-output-buffer-limit pubsub`), so nothing larger can be a real message.
const MAX_BULK: usize = 64 << 20;

/// Longest header or status line (`$123\r\n`, `-ERR …\r\n`).
const MAX_LINE: usize = 4096;

/// Bytes asked of each read.
const READ_CHUNK: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} addresses are not supported by this connection")]
    Unsupported(&'static str),
    #[error("AUTH refused: {0}")]
    Auth(String),
    #[error("Valkey refused a command: {0}")]
    Refused(String),
    #[error("unexpected reply from Valkey: {0}")]
    Protocol(&'static str),
    #[error("connection closed by Valkey")]
    Closed,
}

/// What Valkey sends a subscribed connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<'a> {
    /// A message published to `channel` (directly or through a pattern).
    Message {
        channel: &'a [u8],
        payload: &'a [u8],
    },
    /// A (P)SUBSCRIBE or (P)UNSUBSCRIBE of one channel or pattern is in place; the connection
    /// now follows `count` channels and patterns.
    Confirmed { count: i64 },
    /// The answer to a PING.
    Pong,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

pub struct PubSubConnection {
    stream: Pin<Box<dyn Stream>>,
    read: Replies,
    write: Vec<u8>,
}

/// What Valkey sent and was not handled yet: the read buffer and its parser.
#[derive(Default)]
pub struct Replies {
    buf: BytesMut,
}

impl Replies {
    /// Appends bytes as read from the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Hands up to `max` complete pushes of the buffer to `on_push`; returns how many. An
    /// error reply (a refused command) or a malformed one is an error: the connection
    /// cannot be read any further.
    pub fn drain(
        &mut self,
        max: u64,
        mut on_push: impl FnMut(Push<'_>),
    ) -> Result<u64, PubSubError> {
        let mut taken = 0;
        while taken < max {
            let Some((frame, len)) = parse(&self.buf)? else {
                break;
            };
            match frame {
                Frame::Error(e) => {
                    return Err(PubSubError::Refused(
                        String::from_utf8_lossy(e).into_owned(),
                    ))
                }
                Frame::Simple(s) if s.eq_ignore_ascii_case(b"PONG") => on_push(Push::Pong),
                Frame::Simple(_) => return Err(PubSubError::Protocol("a status reply")),
                Frame::Array(parts, n) => on_push(push(&parts[..n])?),
            }
            self.buf.advance(len);
            taken += 1;
        }
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            // A burst's large buffer is not kept while idle.
            self.buf = BytesMut::new();
        }
        Ok(taken)
    }

    /// Takes an `+OK` (the answer to AUTH): `Ok(None)` until it is complete.
    fn take_ok(&mut self) -> Result<Option<()>, PubSubError> {
        match parse(&self.buf)? {
            Some((Frame::Simple(b"OK"), len)) => {
                self.buf.advance(len);
                Ok(Some(()))
            }
            Some((Frame::Error(e), _)) => {
                Err(PubSubError::Auth(String::from_utf8_lossy(e).into_owned()))
            }
            Some(_) => Err(PubSubError::Protocol("not an answer to AUTH")),
            None => Ok(None),
        }
    }
}

impl PubSubConnection {
    /// Connects to the node of `info` (TCP or a Unix socket) and authenticates with its
    /// credentials, if any.
    pub async fn connect(info: &ConnectionInfo) -> Result<Self, PubSubError> {
        let stream: Pin<Box<dyn Stream>> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                Box::pin(tcp)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::pin(tokio::net::UnixStream::connect(path).await?),
            _ => return Err(PubSubError::Unsupported("TLS")),
        };
        let mut conn = PubSubConnection {
            stream,
            read: Replies::default(),
            write: Vec::new(),
        };
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => conn.command("AUTH", &[user, password]),
                None => conn.command("AUTH", &[password]),
            }
            conn.flush().await?;
            conn.expect_ok().await?;
        }
        Ok(conn)
    }

    /// Queues a command; [`Self::flush`] sends what is queued.
    pub fn command<A: AsRef<[u8]>>(&mut self, name: &str, args: &[A]) {
        let out = &mut self.write;
        // Writing to a Vec cannot fail.
        let _ = write!(out, "*{}\r\n${}\r\n{name}\r\n", args.len() + 1, name.len());
        for arg in args {
            let arg = arg.as_ref();
            let _ = write!(out, "${}\r\n", arg.len());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends the queued commands; they are gone from the queue even if this fails.
    pub async fn flush(&mut self) -> Result<(), PubSubError> {
        let result = self.stream.write_all(&self.write).await;
        self.write.clear();
        result.map_err(Into::into)
    }

    /// Sends the queued commands, failing after `limit` (a node that takes no input).
    pub async fn flush_within(&mut self, limit: Duration) -> Result<(), PubSubError> {
        match tokio::time::timeout(limit, self.flush()).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()),
        }
    }

    /// Reads what Valkey sent. Cancel-safe: nothing read is lost if the future is dropped.
    pub async fn read_more(&mut self) -> Result<(), PubSubError> {
        self.read.buf.reserve(READ_CHUNK);
        match self.stream.read_buf(&mut self.read.buf).await? {
            0 => Err(PubSubError::Closed),
            _ => Ok(()),
        }
    }

    /// [`Replies::drain`] of what was read.
    pub fn drain(&mut self, max: u64, on_push: impl FnMut(Push<'_>)) -> Result<u64, PubSubError> {
        self.read.drain(max, on_push)
    }

    /// Waits for `+OK` (the answer to AUTH).
    async fn expect_ok(&mut self) -> Result<(), PubSubError> {
        while self.read.take_ok()?.is_none() {
            self.read_more().await?;
        }
        Ok(())
    }
}

/// One element of an array reply.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Bulk(&'a [u8]),
    Int(i64),
    Nil,
}

/// A reply: Pub/Sub pushes are arrays of at most four parts (`pmessage`).
#[derive(Debug)]
enum Frame<'a> {
    Simple(&'a [u8]),
    Error(&'a [u8]),
    Array([Part<'a>; 4], usize),
}

fn push<'a>(parts: &[Part<'a>]) -> Result<Push<'a>, PubSubError> {
    let kind = match parts.first() {
        Some(Part::Bulk(kind)) => *kind,
        _ => return Err(PubSubError::Protocol("a push without its kind")),
    };
    match (kind, parts) {
        (b"message", [_, Part::Bulk(channel), Part::Bulk(payload)])
        | (b"pmessage", [_, _, Part::Bulk(channel), Part::Bulk(payload)]) => {
            Ok(Push::Message { channel, payload })
        }
        (b"subscribe" | b"unsubscribe" | b"psubscribe" | b"punsubscribe", [_, _, Part::Int(n)]) => {
            Ok(Push::Confirmed { count: *n })
        }
        (b"pong", _) => Ok(Push::Pong),
        _ => Err(PubSubError::Protocol("an unknown push")),
    }
}

/// The next complete reply at the start of `buf` and its length; `None` while incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, PubSubError> {
    let Some((line, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let (kind, rest) = split_kind(line)?;
    let frame = match kind {
        b'+' => Frame::Simple(rest),
        b'-' => Frame::Error(rest),
        // `>` is RESP3's push: the same shape, should a node answer in RESP3.
        b'*' | b'>' => {
            let n = number(rest)?;
            if !(0..=4).contains(&n) {
                return Err(PubSubError::Protocol("an array longer than a push"));
            }
            let mut parts = [Part::Nil; 4];
            for part in parts.iter_mut().take(n as usize) {
                let Some((p, next)) = element(buf, at)? else {
                    return Ok(None);
                };
                *part = p;
                at = next;
            }
            Frame::Array(parts, n as usize)
        }
        _ => return Err(PubSubError::Protocol("an unknown reply type")),
    };
    Ok(Some((frame, at)))
}

/// One array element at `at`: a bulk string, an integer or nil; and where the next starts.
fn element(buf: &[u8], at: usize) -> Result<Option<(Part<'_>, usize)>, PubSubError> {
    let Some((line, start)) = line(buf, at)? else {
        return Ok(None);
    };
    let (kind, rest) = split_kind(line)?;
    match kind {
        b':' => Ok(Some((Part::Int(number(rest)?), start))),
        b'+' => Ok(Some((Part::Bulk(rest), start))),
        b'$' => {
            let len = number(rest)?;
            if len < 0 {
                return Ok(Some((Part::Nil, start)));
            }
            let len = len as usize;
            if len > MAX_BULK {
                return Err(PubSubError::Protocol("a bulk string over 64 MiB"));
            }
            let end = start + len;
            match buf.get(end..end + 2) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((Part::Bulk(&buf[start..end]), end + 2))),
                Some(_) => Err(PubSubError::Protocol("a bulk string without its CRLF")),
            }
        }
        _ => Err(PubSubError::Protocol("an unexpected array element")),
    }
}

/// The line starting at `at` (without its CRLF) and where the next starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, PubSubError> {
    let rest = &buf[at.min(buf.len())..];
    match rest.iter().take(MAX_LINE).position(|&b| b == b'\n') {
        Some(0) => Err(PubSubError::Protocol("an empty line")),
        Some(nl) if rest[nl - 1] == b'\r' => Ok(Some((&rest[..nl - 1], at + nl + 1))),
        Some(_) => Err(PubSubError::Protocol("a line without CR")),
        None if rest.len() >= MAX_LINE => Err(PubSubError::Protocol("a line over 4 KiB")),
        None => Ok(None),
    }
}

fn split_kind(line: &[u8]) -> Result<(u8, &[u8]), PubSubError> {
    match line.split_first() {
        Some((kind, rest)) => Ok((*kind, rest)),
        None => Err(PubSubError::Protocol("an empty line")),
    }
}

fn number(text: &[u8]) -> Result<i64, PubSubError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(PubSubError::Protocol("a malformed number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bytes: &[u8]) -> Result<Vec<String>, PubSubError> {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((frame, len)) = parse(&bytes[at..])? {
            out.push(match frame {
                Frame::Simple(s) => format!("+{}", String::from_utf8_lossy(s)),
                Frame::Error(e) => format!("-{}", String::from_utf8_lossy(e)),
                Frame::Array(parts, n) => format!("{:?}", push(&parts[..n])?),
            });
            at += len;
        }
        Ok(out)
    }

    const PUSHES: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n\
        *3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nhe\r\nl\r\n\
        *4\r\n$8\r\npmessage\r\n$3\r\nc#*\r\n$3\r\nc#2\r\n$0\r\n\r\n\
        *3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n\
        *2\r\n$4\r\npong\r\n$0\r\n\r\n+PONG\r\n-ERR no\r\n";

    #[test]
    fn reads_every_push_kind() {
        assert_eq!(
            frames(PUSHES).unwrap(),
            [
                "Confirmed { count: 1 }",
                "Message { channel: [99, 49], payload: [104, 101, 13, 10, 108] }",
                "Message { channel: [99, 35, 50], payload: [] }",
                "Confirmed { count: 0 }",
                "Pong",
                "+PONG",
                "-ERR no",
            ]
        );
    }

    #[test]
    fn an_incomplete_reply_waits_for_more_at_every_cut() {
        let whole = frames(PUSHES).unwrap();
        for cut in 0..PUSHES.len() {
            let head = frames(&PUSHES[..cut]).unwrap();
            assert!(
                head.len() <= whole.len() && whole.starts_with(&head),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"*9\r\n"[..],
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n$1\r\n1\r\n",
            b"*1\r\n$3\r\nabcXY",
            b"$3\r\nabc\r\n",
            b"*2\r\n$99999999999\r\n",
            b"*2\r\n$-\r\n",
            b"*3\r\n$4\r\nnope\r\n:1\r\n:2\r\n",
            b"\r\n",
            b"*1\n",
            b"*x\r\n",
        ] {
            assert!(frames(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(frames(&[b'+'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut conn = PubSubConnection {
            stream: Box::pin(tokio::io::duplex(64).0),
            read: Replies::default(),
            write: Vec::new(),
        };
        conn.command("SUBSCRIBE", &["a", "bc"]);
        conn.command::<&str>("PING", &[]);
        assert_eq!(
            conn.write,
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$2\r\nbc\r\n*1\r\n$4\r\nPING\r\n"
        );
    }
}
