//! The handshake request's headers, kept for the session's life in one small allocation.
//!
//! hyper's header values are zero-copy slices of the connection's 8 KiB read buffer, so keeping
//! the request's `HeaderMap` would keep that whole buffer alive per socket. The few lookups a
//! session needs (cookie, origin, forwarded address, `fetchSockets()`'s header list) are rare,
//! so a linear scan over one owned block is cheaper than any map.

use http::HeaderMap;

/// Every header of a request as `name:value\n` lines (names lowercase, as `http` keeps them).
/// Values that are not visible ASCII are dropped, as `HeaderValue::to_str` would refuse them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HandshakeHeaders(Box<str>);

impl HandshakeHeaders {
    pub fn new(map: &HeaderMap) -> Self {
        let len = map
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 2)
            .sum();
        let mut text = String::with_capacity(len);
        for (name, value) in map {
            if let Ok(value) = value.to_str() {
                text.push_str(name.as_str());
                text.push(':');
                text.push_str(value);
                text.push('\n');
            }
        }
        HandshakeHeaders(text.into_boxed_str())
    }

    /// Every `(name, value)`, in the request's order, a repeated header once per value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.lines().filter_map(|line| line.split_once(':'))
    }

    /// The first value of `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn keeps_every_value_owned() {
        let mut map = HeaderMap::new();
        map.insert("cookie", HeaderValue::from_static("a=1; b=2"));
        map.append("x-tag", HeaderValue::from_static("one"));
        map.append("x-tag", HeaderValue::from_static("two:three"));
        map.insert("origin", HeaderValue::from_static("https://app.example"));
        map.insert("x-bad", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        let h = HandshakeHeaders::new(&map);
        assert_eq!(h.get("cookie"), Some("a=1; b=2"));
        assert_eq!(h.get_all("x-tag").collect::<Vec<_>>(), ["one", "two:three"]);
        assert!(h.contains("origin"));
        assert!(!h.contains("x-bad"), "non-ASCII values are not kept");
        assert_eq!(h.get("authorization"), None);
        assert_eq!(h.iter().count(), 4);
    }
}
