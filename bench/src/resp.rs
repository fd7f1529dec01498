//! The few RESP2 pieces the tools need: encoding commands (PUBLISH, PSUBSCRIBE) and reading
//! replies and pushes from Valkey.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::Result;

/// Appends one command (an array of bulk strings) to `out`.
pub fn command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
}

#[derive(Debug, PartialEq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn bulk(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) | Value::Simple(b) => Some(b),
            _ => None,
        }
    }
}

const MAX_BULK: usize = 64 << 20;
const MAX_ARRAY: usize = 1 << 20;

async fn line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>> {
    let mut l = Vec::new();
    let n = r.read_until(b'\n', &mut l).await?;
    if n == 0 {
        return Err("valkey closed the connection".into());
    }
    if !l.ends_with(b"\r\n") {
        return Err("malformed RESP line".into());
    }
    l.truncate(l.len() - 2);
    Ok(l)
}

fn int(b: &[u8]) -> Result<i64> {
    std::str::from_utf8(b)?
        .parse()
        .map_err(|e| format!("malformed RESP integer: {e}").into())
}

/// Reads one value (arrays recursively).
pub fn read_value<'a, R: AsyncBufRead + Unpin + Send>(
    r: &'a mut R,
) -> Pin<Box<dyn Future<Output = Result<Value>> + Send + 'a>> {
    Box::pin(async move {
        let l = line(r).await?;
        let (&kind, rest) = l.split_first().ok_or("empty RESP line")?;
        match kind {
            b'+' => Ok(Value::Simple(rest.to_vec())),
            b'-' => Ok(Value::Error(rest.to_vec())),
            b':' => Ok(Value::Int(int(rest)?)),
            b'$' => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Value::Bulk(None));
                }
                let n = usize::try_from(n)?;
                if n > MAX_BULK {
                    return Err("RESP bulk string too large".into());
                }
                let mut b = vec![0; n + 2];
                r.read_exact(&mut b).await?;
                b.truncate(n);
                Ok(Value::Bulk(Some(b)))
            }
            b'*' => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Value::Array(None));
                }
                let n = usize::try_from(n)?;
                if n > MAX_ARRAY {
                    return Err("RESP array too large".into());
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(read_value(r).await?);
                }
                Ok(Value::Array(Some(items)))
            }
            _ => Err(format!("unexpected RESP type byte {kind:#x}").into()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_reads() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"ch", b"x\r\ny"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$4\r\nx\r\ny\r\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let input: &[u8] = b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$4\r\nx\r\ny\r\n:3\r\n";
        let mut r = tokio::io::BufReader::new(input);
        let v = rt.block_on(read_value(&mut r)).expect("array");
        let Value::Array(Some(items)) = v else {
            panic!("not an array: {v:?}")
        };
        assert_eq!(items[3].bulk(), Some(&b"x\r\ny"[..]));
        assert_eq!(rt.block_on(read_value(&mut r)).expect("int"), Value::Int(3));
    }
}
