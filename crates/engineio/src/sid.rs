//! Session and socket ids: 20 characters of URL-safe base64 over 15 random bytes, the format of
//! Node's `base64id`, so ids look the same to clients, adapters and logs as the reference's.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;

/// Length of an id in characters.
pub const SID_LEN: usize = 20;

/// A session id (Engine.IO) or socket id (Socket.IO). `Copy` and allocation-free, so it can be
/// used as a map key on every message without cloning strings.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid([u8; SID_LEN]);

impl Sid {
    /// A new random id from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let mut raw = [0u8; 15];
        rand::rng().fill_bytes(&mut raw);
        let mut out = [0u8; SID_LEN];
        // 15 bytes encode to exactly 20 base64 characters, without padding.
        let _ = STANDARD.encode_slice(raw, &mut out);
        for b in &mut out {
            *b = match *b {
                b'/' => b'_',
                b'+' => b'-',
                other => other,
            };
        }
        Sid(out)
    }

    /// Parses an id received from a client. Anything but 20 characters of the id alphabet is
    /// refused, so a malformed id can never be mistaken for a new session.
    pub fn parse(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != SID_LEN {
            return None;
        }
        let valid = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
        if !valid {
            return None;
        }
        let mut out = [0u8; SID_LEN];
        out.copy_from_slice(bytes);
        Some(Sid(out))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (see `generate` and `parse`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Sid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Sid::parse(&s).ok_or_else(|| serde::de::Error::custom("not a session id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back() {
        for _ in 0..1000 {
            let sid = Sid::generate();
            assert_eq!(sid.as_str().len(), SID_LEN);
            assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "short",
            "aaaaaaaaaaaaaaaaaaa/",
            "aaaaaaaaaaaaaaaaaaaaa",
            "éééééééééé",
        ] {
            assert_eq!(Sid::parse(bad), None, "{bad}");
        }
    }
}
