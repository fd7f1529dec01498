//! Conversions between msgpack values (as notepack.io writes them for Node peers) and the
//! JSON-plus-attachments form the Socket.IO layer uses.
//!
//! Node puts `Buffer`s inline in a packet's data; msgpack carries them as `bin`. Our packets
//! keep binary out of the JSON as attachments referenced by `{"_placeholder":true,"num":n}`.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value};

use socketio::packet::placeholder;

/// Deepest nesting of a packet's data accepted from a peer: as deep as serde_json reads JSON
/// (128), so whatever a client or the app can send through one gateway can be relayed to the
/// others. Checked by [`to_json`], level by level.
pub const MAX_DEPTH: usize = 128;

/// The decoder's own guard against deep input, before [`to_json`] checks the real nesting.
/// rmpv's limit is not a nesting depth: it spends two units per array or map and up to three
/// at a string leaf, so two encodings of the same structure could fall on either side of it
/// (the fuzzer found a broadcast that passed it and, re-encoded with an extension turned
/// nil, did not). Set above anything [`to_json`] accepts (the data, the packet map and the
/// message array around it), it only bounds recursion.
const DECODER_DEPTH: usize = 2 * (MAX_DEPTH + 3) + 4;

#[derive(Debug, thiserror::Error)]
pub enum MsgpackError {
    #[error("malformed msgpack: {0}")]
    Decode(#[from] rmpv::decode::Error),
    #[error("msgpack nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("placeholder {0} refers to no attachment")]
    BadPlaceholder(u64),
}

/// Decodes one msgpack value (its nesting is checked by [`to_json`]).
pub fn decode(bytes: &[u8]) -> Result<Mp, MsgpackError> {
    let mut rd = bytes;
    Ok(rmpv::decode::read_value_with_max_depth(
        &mut rd,
        DECODER_DEPTH,
    )?)
}

pub fn encode(value: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

/// msgpack → JSON; `bin` values become placeholders and are moved into `attachments`.
pub fn to_json(
    value: Mp,
    attachments: &mut Vec<Bytes>,
    depth: usize,
) -> Result<Value, MsgpackError> {
    if depth > MAX_DEPTH {
        return Err(MsgpackError::TooDeep);
    }
    Ok(match value {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => Value::Bool(b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(s)) => Value::from(s),
            _ => Value::Null,
        },
        Mp::F32(f) => float(f64::from(f)),
        Mp::F64(f) => float(f),
        // Invalid UTF-8 is replaced, as Node's decoder does.
        Mp::String(s) => Value::String(String::from_utf8_lossy(&s.into_bytes()).into_owned()),
        Mp::Binary(b) => {
            attachments.push(Bytes::from(b));
            placeholder(attachments.len() - 1)
        }
        Mp::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| to_json(v, attachments, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Mp::Map(entries) => {
            let keys: Vec<String> = entries.iter().map(|(k, _)| json_key(k)).collect();
            let replaced = replaced_keys(&keys);
            let mut obj = Map::with_capacity(entries.len());
            for ((key, (_, v)), replaced) in keys.into_iter().zip(entries).zip(replaced) {
                // A repeated key keeps its last value, as a JS decoder assigns keys in order
                // (here at the place of its last occurrence). A value it replaces is never
                // converted: its binaries would be attachments no placeholder refers to.
                if !replaced {
                    obj.insert(key, to_json(v, attachments, depth + 1)?);
                }
            }
            Value::Object(obj)
        }
        // notepack 3: a `Date` is the timestamp extension; JSON.stringify gives its ISO form.
        Mp::Ext(-1, data) => timestamp(&data).map_or(Value::Null, Value::String),
        // notepack's `undefined` (fixext1 type 0), or an unknown extension: no JSON form.
        Mp::Ext(_, _) => Value::Null,
    })
}

/// A map key as the JSON key it becomes (a JS decoder makes every key a string).
fn json_key(key: &Mp) -> String {
    match key {
        Mp::String(s) => s.as_str().unwrap_or_default().to_owned(),
        other => other.to_string(),
    }
}

/// For each key, whether the same key comes again later in the map.
fn replaced_keys(keys: &[String]) -> Vec<bool> {
    // Pairwise for the small maps of real payloads; indexed for large ones.
    if keys.len() <= 32 {
        return (0..keys.len())
            .map(|i| keys[i + 1..].contains(&keys[i]))
            .collect();
    }
    let last: std::collections::HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    keys.iter()
        .enumerate()
        .map(|(i, k)| last.get(k.as_str()) != Some(&i))
        .collect()
}

/// JSON (with placeholders) → msgpack, putting each attachment back in its place as `bin`.
pub fn from_json(value: &Value, attachments: &[Bytes]) -> Result<Mp, MsgpackError> {
    Ok(match value {
        Value::Null => Mp::Nil,
        Value::Bool(b) => Mp::Boolean(*b),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else {
                Mp::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Mp::from(s.as_str()),
        Value::Array(items) => Mp::Array(
            items
                .iter()
                .map(|v| from_json(v, attachments))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(obj) => {
            if let Some(num) = placeholder_num(obj) {
                let bin = usize::try_from(num)
                    .ok()
                    .and_then(|i| attachments.get(i))
                    .ok_or(MsgpackError::BadPlaceholder(num))?;
                return Ok(Mp::Binary(bin.to_vec()));
            }
            Mp::Map(
                obj.iter()
                    .map(|(k, v)| Ok((Mp::from(k.as_str()), from_json(v, attachments)?)))
                    .collect::<Result<_, MsgpackError>>()?,
            )
        }
    })
}

/// Whether `value` holds a map whose `_placeholder` is `true` (what socket.io-parser on the
/// client side reconstructs as an attachment).
pub fn has_placeholder_map(value: &Mp) -> bool {
    match value {
        Mp::Array(items) => items.iter().any(has_placeholder_map),
        Mp::Map(entries) => entries.iter().any(|(k, v)| {
            (k.as_str() == Some("_placeholder") && *v == Mp::Boolean(true))
                || has_placeholder_map(v)
        }),
        _ => false,
    }
}

fn placeholder_num(obj: &Map<String, Value>) -> Option<u64> {
    if obj.len() == 2 && obj.get("_placeholder") == Some(&Value::Bool(true)) {
        obj.get("num").and_then(Value::as_u64)
    } else {
        None
    }
}

/// JSON.stringify turns NaN and infinities into null.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// The msgpack timestamp extension (32, 64 or 96 bit) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn timestamp(data: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..12].try_into().ok()?),
            u32::from_be_bytes(data[0..4].try_into().ok()?),
        ),
        _ => return None,
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    ))
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_round_trips_through_placeholders() {
        let data = json!(["ev", "x", {"_placeholder": true, "num": 0}, {"n": [1, -2, 1.5]}]);
        let bin = vec![Bytes::from_static(&[1, 2, 3])];
        let mp = from_json(&data, &bin).unwrap();
        let mut out = Vec::new();
        let back = to_json(decode(&encode(&mp)).unwrap(), &mut out, 0).unwrap();
        assert_eq!(back, data);
        assert_eq!(out, bin);
    }

    #[test]
    fn a_placeholder_without_attachment_is_an_error() {
        let data = json!([{"_placeholder": true, "num": 3}]);
        assert!(from_json(&data, &[]).is_err());
    }

    /// Found by the relay_broadcast fuzz target: in a map with a repeated key, the value the
    /// last one replaced still brought its binary as an attachment, which no placeholder
    /// referred to any more. A repeated key keeps its last value, as a JS decoder reads it.
    #[test]
    fn a_replaced_value_brings_no_attachment() {
        let map = |entries: Vec<(Mp, Mp)>| Mp::Array(vec![Mp::Map(entries)]);
        let mut att = Vec::new();
        let got = to_json(
            map(vec![
                (Mp::from("x"), Mp::Binary(vec![1])),
                (Mp::from("y"), Mp::Binary(vec![2])),
                // The integer 7 and the string "7" are the same JSON key.
                (Mp::from(7), Mp::Binary(vec![3])),
                (Mp::from("7"), Mp::from(true)),
                (Mp::from("x"), Mp::from(1)),
            ]),
            &mut att,
            0,
        )
        .unwrap();
        assert_eq!(
            got,
            json!([{"y": {"_placeholder": true, "num": 0}, "7": true, "x": 1}])
        );
        assert_eq!(att, vec![Bytes::from_static(&[2])]);
        // Large maps take the other path of the same rule.
        let mut entries: Vec<(Mp, Mp)> = (0..100).map(|i| (Mp::from(i), Mp::from(i))).collect();
        entries.insert(0, (Mp::from(50), Mp::Binary(vec![9])));
        let mut att = Vec::new();
        let got = to_json(map(entries), &mut att, 0).unwrap();
        assert!(att.is_empty());
        assert_eq!(got[0]["50"], json!(50));
        assert_eq!(got[0].as_object().map(Map::len), Some(100));
    }

    #[test]
    fn notepack_extensions_map_to_their_json_form() {
        // Date(0) as notepack 3 writes it: timestamp 64, and `undefined` as fixext1 type 0.
        let date = Mp::Ext(-1, 0u64.to_be_bytes().to_vec());
        let undefined = Mp::Ext(0, vec![0]);
        let mut att = Vec::new();
        assert_eq!(
            to_json(Mp::Array(vec![date, undefined]), &mut att, 0).unwrap(),
            json!(["1970-01-01T00:00:00.000Z", null])
        );
        let ts = Mp::Ext(-1, 1_764_254_888u32.to_be_bytes().to_vec());
        assert_eq!(
            to_json(ts, &mut att, 0).unwrap(),
            json!("2025-11-27T14:48:08.000Z")
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = vec![0x91; 200];
        bytes.push(0xc0);
        assert!(decode(&bytes).is_err());
    }
}
