//! Reads the app's JSON answers strictly: a struct only from a JSON object.
//!
//! serde's derived structs also accept a JSON array of their fields in order, so `[["u1"]]`
//! would read as `{"user": {"id": "u1"}}` (the fuzzer found it). No app answers that way: an
//! answer in that shape is a broken app, and reading a session out of it would be reading
//! what was not said. Answers go through [`from_slice`], which is serde_json's `Value` with
//! one rule added: a struct must be an object.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Error, Value};

/// `serde_json::from_slice`, except that a struct is never read from an array.
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(body)?;
    T::deserialize(Strict(value))
}

struct Strict(Value);

impl<'de> IntoDeserializer<'de, Error> for Strict {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Deserializer<'de> for Strict {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(items.into_iter().map(Strict));
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Object(fields) => {
                let mut map = MapDeserializer::new(fields.into_iter().map(|(k, v)| (k, Strict(v))));
                let out = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(out)
            }
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            Value::Array(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"an object")),
            _ => Err(de::Error::invalid_type(
                Unexpected::Other("a scalar"),
                &"an object",
            )),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        id: String,
        #[serde(default)]
        n: Option<u32>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        inner: Inner,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        any: Value,
    }

    #[test]
    fn objects_read_as_serde_json_reads_them() {
        let body =
            br#"{"inner":{"id":"a","n":2,"extra":[1]},"list":[{"id":"b"}],"any":[1,{"x":null}]}"#;
        let strict: Outer = from_slice(body).unwrap();
        let lax: Outer = serde_json::from_slice(body).unwrap();
        assert_eq!(strict, lax);
        assert_eq!(strict.any, serde_json::json!([1, {"x": null}]));
    }

    #[test]
    fn a_struct_from_an_array_is_refused_at_any_depth() {
        assert!(from_slice::<Outer>(br#"[["a"]]"#).is_err());
        assert!(from_slice::<Outer>(br#"{"inner":["a"]}"#).is_err());
        assert!(from_slice::<Outer>(br#"{"inner":{"id":"a"},"list":[["b"]]}"#).is_err());
        assert!(from_slice::<Outer>(br#"{"inner":"a"}"#).is_err());
    }
}
