//! The `@socket.io/redis-emitter` wire format: what `emitter.to(room).emit(ev, data)` publishes,
//! and the reading of it that the raw server needs.
//!
//! Channel `<prefix>#/#<room>#` (one room), message: msgpack
//! `["emitter", {type: 2, data: [ev, ...args], nsp: "/"}, {rooms: [room], except: [], flags: {}}]`.

use rmpv::Value as Mp;

use crate::Result;

/// The channel an emit to one room of the main namespace is published on.
pub fn room_channel(prefix: &str, room: &str) -> String {
    if room.is_empty() {
        return format!("{prefix}#/#");
    }
    format!("{prefix}#/#{room}#")
}

/// The msgpack message of an emit of `event` with one JSON argument to `room` (`""`: to
/// every socket of the namespace, as `io.emit`).
pub fn encode_emit(room: &str, event: &str, arg: &serde_json::Value) -> Result<Vec<u8>> {
    let packet = Mp::Map(vec![
        (Mp::from("type"), Mp::from(2)),
        (
            Mp::from("data"),
            Mp::Array(vec![Mp::from(event), json_to_mp(arg)]),
        ),
        (Mp::from("nsp"), Mp::from("/")),
    ]);
    let opts = Mp::Map(vec![
        (
            Mp::from("rooms"),
            Mp::Array(if room.is_empty() {
                vec![]
            } else {
                vec![Mp::from(room)]
            }),
        ),
        (Mp::from("except"), Mp::Array(vec![])),
        (Mp::from("flags"), Mp::Map(vec![])),
    ]);
    let msg = Mp::Array(vec![Mp::from("emitter"), packet, opts]);
    let mut out = Vec::with_capacity(256);
    rmpv::encode::write_value(&mut out, &msg)?;
    Ok(out)
}

pub fn json_to_mp(v: &serde_json::Value) -> Mp {
    use serde_json::Value as J;
    match v {
        J::Null => Mp::Nil,
        J::Bool(b) => Mp::Boolean(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Mp::from(i)
            } else if let Some(u) = n.as_u64() {
                Mp::from(u)
            } else {
                Mp::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => Mp::from(s.as_str()),
        J::Array(a) => Mp::Array(a.iter().map(json_to_mp).collect()),
        J::Object(o) => Mp::Map(
            o.iter()
                .map(|(k, v)| (Mp::from(k.as_str()), json_to_mp(v)))
                .collect(),
        ),
    }
}

pub fn mp_to_json(v: &Mp) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Mp::Nil => J::Null,
        Mp::Boolean(b) => J::Bool(*b),
        Mp::Integer(i) => i
            .as_i64()
            .map(J::from)
            .or_else(|| i.as_u64().map(J::from))
            .unwrap_or(J::Null),
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Mp::String(s) => J::String(s.as_str().unwrap_or_default().to_owned()),
        Mp::Binary(_) | Mp::Ext(..) => J::Null,
        Mp::Array(a) => J::Array(a.iter().map(mp_to_json).collect()),
        Mp::Map(m) => J::Object(
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), mp_to_json(v))))
                .collect(),
        ),
    }
}

fn get<'a>(map: &'a Mp, key: &str) -> Option<&'a Mp> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A broadcast read from an emitter or adapter message: the packet's `data` (event name and
/// arguments) and the target rooms.
pub struct Broadcast {
    pub data: serde_json::Value,
    pub rooms: Vec<String>,
}

/// Reads `[uid, packet, opts]`; None for anything that is not an event to the main namespace.
pub fn decode_broadcast(msg: &[u8]) -> Result<Option<Broadcast>> {
    let v = rmpv::decode::read_value(&mut &msg[..])?;
    let Some([_uid, packet, opts]) = v.as_array().map(Vec::as_slice) else {
        return Ok(None);
    };
    if get(packet, "nsp").and_then(Mp::as_str) != Some("/")
        || get(packet, "type").and_then(Mp::as_u64) != Some(2)
    {
        return Ok(None);
    }
    let Some(data) = get(packet, "data") else {
        return Ok(None);
    };
    let rooms = get(opts, "rooms")
        .and_then(Mp::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Broadcast {
        data: mp_to_json(data),
        rooms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emit_to_no_room_is_for_everyone() {
        let msg = encode_emit("", "message:new", &serde_json::json!({})).expect("encode");
        let b = decode_broadcast(&msg).expect("decode").expect("an event");
        assert!(b.rooms.is_empty());
        assert_eq!(room_channel("socket.io", ""), "socket.io#/#");
    }

    #[test]
    fn emit_roundtrip() {
        let arg = serde_json::json!({"content": "T~5~ hi", "n": 3});
        let msg = encode_emit("channel:f1", "message:new", &arg).expect("encode");
        let b = decode_broadcast(&msg).expect("decode").expect("an event");
        assert_eq!(b.rooms, vec!["channel:f1".to_owned()]);
        assert_eq!(b.data, serde_json::json!(["message:new", arg]));
        assert_eq!(
            room_channel("socket.io", "channel:f1"),
            "socket.io#/#channel:f1#"
        );
    }
}
