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
        encode_url(&raw, &mut out);
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

/// Characters a [`SidTag`] puts in front of the ids it makes.
pub const TAG_LEN: usize = 4;

/// The first characters shared by the ids one server makes, so that all of them can be matched
/// by one prefix (a Pub/Sub pattern, say) instead of one name each. The tag is 3 random bytes,
/// the rest of each id 12 (96 bits): an id is still unguessable, and still 20 characters of
/// the same alphabet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SidTag([u8; TAG_LEN]);

impl SidTag {
    pub fn random() -> Self {
        let mut raw = [0u8; 3];
        rand::rng().fill_bytes(&mut raw);
        let mut out = [0u8; TAG_LEN];
        encode_url(&raw, &mut out);
        SidTag(out)
    }

    /// A new random id that starts with this tag.
    pub fn generate(&self) -> Sid {
        let mut raw = [0u8; 12];
        rand::rng().fill_bytes(&mut raw);
        let mut out = [0u8; SID_LEN];
        out[..TAG_LEN].copy_from_slice(&self.0);
        encode_url(&raw, &mut out[TAG_LEN..]);
        Sid(out)
    }

    /// Whether `name` has the shape of an id this tag makes: 20 bytes that start with it (any
    /// such name, so that a pattern of the tag and 16 single-byte wildcards matches exactly
    /// the names this says yes to).
    pub fn made(&self, name: &str) -> bool {
        name.len() == SID_LEN && name.as_bytes().starts_with(&self.0)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (see `random`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for SidTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SidTag({})", self.as_str())
    }
}

/// URL-safe base64 of `raw` into `out`, which must be exactly its encoded length (no padding:
/// `raw`'s length is a multiple of 3).
fn encode_url(raw: &[u8], out: &mut [u8]) {
    let _ = STANDARD.encode_slice(raw, out);
    for b in out {
        *b = match *b {
            b'/' => b'_',
            b'+' => b'-',
            other => other,
        };
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
    fn tagged_ids_parse_back_start_with_the_tag_and_only_they_are_made_by_it() {
        let tag = SidTag::random();
        for _ in 0..1000 {
            let sid = tag.generate();
            assert_eq!(Sid::parse(sid.as_str()), Some(sid));
            assert!(sid.as_str().starts_with(tag.as_str()));
            assert!(tag.made(sid.as_str()));
        }
        let other = format!("{}0000000000000000", tag.as_str());
        assert!(tag.made(&other));
        assert!(!tag.made(&other[..SID_LEN - 1]));
        assert!(!tag.made(&format!("{other}0")));
        let untagged = (0..100)
            .map(|_| Sid::generate())
            .filter(|s| tag.made(s.as_str()));
        assert!(
            untagged.count() < 2,
            "a random id rarely starts with the tag"
        );
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
