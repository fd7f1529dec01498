//! Lenient deserializers: figment parses environment values as TOML-ish literals, so a string
//! key may arrive as a number and a list as one comma-separated string.

use std::fmt;

use engineio::Transport;
use serde::de::{self, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serializer};

/// Accepts integers and booleans as strings: figment turns
/// `GATEWAY_REDIS__PREFIX=123` into a number, which would otherwise be
/// rejected for a `String` field.
pub(super) fn lenient_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    deserializer.deserialize_any(V)
}

/// Accepts a sequence or a comma-separated string (`GATEWAY_ENGINE__TRANSPORTS=websocket`),
/// because env vars cannot hold TOML arrays comfortably.
pub(super) fn list_or_csv<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or a comma-separated string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| T::deserialize(s.to_owned().into_deserializer()))
                .collect()
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(V(std::marker::PhantomData))
}

/// `engine.transports` as [`engineio::Transport`] itself, read and written by the wire names
/// (`polling`, `websocket`), so the settings need no transport type of their own.
pub(super) mod transport_names {
    use super::*;

    const NAMES: &[&str] = &["polling", "websocket"];

    pub fn serialize<S: Serializer>(list: &[Transport], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(|t| t.as_str()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Transport>, D::Error> {
        let names: Vec<Name> = list_or_csv(deserializer)?;
        Ok(names.into_iter().map(|Name(t)| t).collect())
    }

    /// One transport, by its wire name.
    struct Name(Transport);

    impl<'de> Deserialize<'de> for Name {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct V;
            impl de::Visitor<'_> for V {
                type Value = Name;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("`polling` or `websocket`")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
                    match v {
                        "polling" => Ok(Name(Transport::Polling)),
                        "websocket" => Ok(Name(Transport::Websocket)),
                        other => Err(E::unknown_variant(other, NAMES)),
                    }
                }
            }
            deserializer.deserialize_str(V)
        }
    }
}
