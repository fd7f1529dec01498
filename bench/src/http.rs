//! A minimal HTTP/1.1 client for the control routes the bench calls (the fixture app's
//! `/test/stats`, the Node baseline's `/bench/gc`): one request per connection, JSON bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Result;

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split(url: &str) -> Result<(&str, &str)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// Sends one request and returns (status, body).
pub async fn request(method: &str, url: &str, body: Option<&str>) -> Result<(u16, String)> {
    let (authority, path) = split(url)?;
    let fut = async {
        let mut s = TcpStream::connect(authority).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        Ok::<_, crate::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| format!("{method} {url}: no answer within 30 s"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {url}: malformed answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {url}: no status"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// GET returning parsed JSON; errors on a non-200 status.
pub async fn get_json(url: &str) -> Result<serde_json::Value> {
    let (status, body) = request("GET", url, None).await?;
    if status != 200 {
        return Err(format!("GET {url}: status {status}").into());
    }
    Ok(serde_json::from_str(&body)?)
}

pub async fn post_json(url: &str, body: &str) -> Result<serde_json::Value> {
    let (status, text) = request("POST", url, Some(body)).await?;
    if status != 200 {
        return Err(format!("POST {url}: status {status}").into());
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks() {
        assert_eq!(
            super::dechunk("4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"),
            "abcdef"
        );
        assert_eq!(
            super::split("http://127.0.0.1:9/x?y").expect("url"),
            ("127.0.0.1:9", "/x?y")
        );
    }
}
