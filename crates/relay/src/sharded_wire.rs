//! The `createShardedAdapter` wire format (`@socket.io/redis-adapter` 8.3): socket.io-adapter's
//! `ClusterAdapter` messages `{uid, nsp, type, data}`, JSON unless they carry binary data (then
//! msgpack of the whole message). Broadcasts, requests and responses share this one shape;
//! `type` tells them apart. Responses go to `{prefix}#{nsp}#{requester uid}#`.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Value};

use super::msgpack;
use super::wire::{self, RemoteBroadcast, Request, RequestKind, WireError};
use engineio::Sid;
use socketio::packet::Packet;
use socketio::BroadcastTarget;

/// `MessageType` in socket.io-adapter's cluster-adapter.
pub mod message_type {
    pub const BROADCAST: u64 = 3;
    pub const SOCKETS_JOIN: u64 = 4;
    pub const SOCKETS_LEAVE: u64 = 5;
    pub const DISCONNECT_SOCKETS: u64 = 6;
    pub const FETCH_SOCKETS: u64 = 7;
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub const SERVER_SIDE_EMIT: u64 = 9;
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub const BROADCAST_ACK: u64 = 12;
    /// The gateway's own, as in the classic format (Node ignores types it does not know).
    pub const GATEWAY_REPLACE: u64 = 1001;
}

/// A message from another server, the sharded emitter or a gateway.
#[derive(Debug)]
pub enum Message {
    /// A broadcast without acks: delivered (or recorded).
    Broadcast(RemoteBroadcast),
    /// Anything to answer or act on, in the classic requests' terms.
    Request(Request),
}

pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    // A msgpack message's packet is kept as it came: its attachments are its data's.
    let (v, packed_packet) = if bytes.first() == Some(&b'{') {
        (serde_json::from_slice::<Value>(bytes)?, None)
    } else {
        let packed = msgpack::decode(bytes)?;
        let packet = packed_packet(&packed);
        (msgpack::to_json(packed, &mut Vec::new(), 0)?, packet)
    };
    let kind = v
        .get("type")
        .and_then(Value::as_u64)
        .ok_or(WireError::Shape("message without a type"))?;
    let uid = v.get("uid").and_then(Value::as_str).map(str::to_owned);
    let nsp = v
        .get("nsp")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_owned();
    let data = v.get("data").unwrap_or(&Value::Null);
    let request_id = data.get("requestId").cloned();
    let target = || {
        let opts = data.get("opts");
        BroadcastTarget {
            rooms: wire::room_list(opts.and_then(|o| o.get("rooms"))),
            except: wire::room_list(opts.and_then(|o| o.get("except"))),
        }
    };
    let rooms = || wire::room_list(data.get("rooms"));
    let text = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_owned);
    use message_type as t;
    let kind = match kind {
        t::BROADCAST => {
            let packet = event(&nsp, data.get("packet"), packed_packet)?;
            if request_id.is_none() {
                return Ok(Message::Broadcast(RemoteBroadcast {
                    uid: uid.unwrap_or_default(),
                    offset: None,
                    nsp,
                    packet,
                    target: target(),
                }));
            }
            RequestKind::BroadcastWithAck {
                packet,
                target: target(),
                timeout_ms: data.pointer("/opts/flags/timeout").and_then(Value::as_u64),
            }
        }
        t::SOCKETS_JOIN => RequestKind::Join {
            target: target(),
            rooms: rooms(),
        },
        t::SOCKETS_LEAVE => RequestKind::Leave {
            target: target(),
            rooms: rooms(),
        },
        t::DISCONNECT_SOCKETS => RequestKind::Disconnect {
            target: target(),
            close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
        },
        t::FETCH_SOCKETS => RequestKind::Fetch { target: target() },
        t::SERVER_SIDE_EMIT => RequestKind::ServerSideEmit {
            data: data.get("packet").cloned().unwrap_or(Value::Null),
        },
        t::GATEWAY_REPLACE => {
            let (Some(sid), Some(holder)) = (text("sid"), text("holder")) else {
                return Err(WireError::Shape("replace without sid or holder"));
            };
            RequestKind::Replace { sid, holder }
        }
        // Heartbeats, responses to other requesters, adapter closes.
        other => RequestKind::Other(other),
    };
    Ok(Message::Request(Request {
        uid,
        request_id,
        kind,
    }))
}

/// `data.packet` of a msgpack message, as a map.
fn packed_packet(message: &Mp) -> Option<Vec<(Mp, Mp)>> {
    let Mp::Map(message) = message else {
        return None;
    };
    let Some(Mp::Map(data)) = wire::field(message, "data") else {
        return None;
    };
    match wire::field(data, "packet") {
        Some(Mp::Map(packet)) => Some(packet.clone()),
        _ => None,
    }
}

/// A broadcast's packet: an EVENT (BINARY_EVENT with attachments) with a non-empty data array.
fn event(
    nsp: &str,
    json: Option<&Value>,
    packed: Option<Vec<(Mp, Mp)>>,
) -> Result<Packet, WireError> {
    let kind = json.and_then(|p| p.get("type")).and_then(Value::as_u64);
    if !matches!(kind, Some(2 | 5)) {
        return Err(WireError::Shape("packet is not an event"));
    }
    let (data, attachments) = match packed {
        Some(packet) => wire::event_data(packet)?,
        None => match json.and_then(|p| p.get("data")) {
            Some(d @ Value::Array(items)) if !items.is_empty() => (d.clone(), Vec::new()),
            _ => return Err(WireError::Shape("packet data is not a non-empty array")),
        },
    };
    Ok(wire::event_packet(nsp, data, attachments, None))
}

/// A local broadcast for the other servers.
pub fn encode_broadcast(
    uid: &str,
    nsp: &str,
    target: &BroadcastTarget,
    packet: &Packet,
) -> Result<Vec<u8>, WireError> {
    let data = packet.data.clone().unwrap_or_else(|| json!([]));
    let body = json!({
        "packet": {"type": 2, "data": data, "nsp": nsp},
        "opts": {"rooms": target.rooms, "except": target.except, "flags": {}},
    });
    encode(uid, nsp, message_type::BROADCAST, body, &packet.attachments)
}

/// `fetchSockets()`'s answer: the sockets as Node describes them.
pub fn fetch_response(uid: &str, nsp: &str, request_id: &Value, sockets: Vec<Value>) -> Vec<u8> {
    let body = json!({"requestId": request_id, "sockets": sockets});
    plain(uid, nsp, message_type::FETCH_SOCKETS_RESPONSE, body)
}

/// `serverSideEmit` with an ack: the gateway has no listeners and answers with no argument.
pub fn server_side_emit_response(uid: &str, nsp: &str, request_id: &Value) -> Vec<u8> {
    let body = json!({"requestId": request_id});
    plain(uid, nsp, message_type::SERVER_SIDE_EMIT_RESPONSE, body)
}

/// How many acks a broadcast with acks should wait for from this server.
pub fn client_count_response(uid: &str, nsp: &str, request_id: &Value, count: usize) -> Vec<u8> {
    let body = json!({"requestId": request_id, "clientCount": count});
    plain(uid, nsp, message_type::BROADCAST_CLIENT_COUNT, body)
}

/// One client's ack: its first argument (left out when there is none, `undefined` in Node).
pub fn ack_response(
    uid: &str,
    nsp: &str,
    request_id: &Value,
    first_arg: Option<&Value>,
    attachments: &[Bytes],
) -> Result<Vec<u8>, WireError> {
    let mut body = json!({"requestId": request_id});
    if let Some(arg) = first_arg {
        body["packet"] = arg.clone();
    }
    encode(uid, nsp, message_type::BROADCAST_ACK, body, attachments)
}

/// The request asking whichever instance still has socket `sid`, held by `holder`, to close
/// it: its session was restored by another connection.
pub fn replace_request(uid: &str, nsp: &str, sid: Sid, holder: &str) -> Vec<u8> {
    let body = json!({"sid": sid.as_str(), "holder": holder});
    plain(uid, nsp, message_type::GATEWAY_REPLACE, body)
}

fn plain(uid: &str, nsp: &str, kind: u64, data: Value) -> Vec<u8> {
    json!({"uid": uid, "nsp": nsp, "type": kind, "data": data})
        .to_string()
        .into_bytes()
}

/// JSON, or msgpack when `data` holds placeholders for `attachments` (binary becomes `bin`).
fn encode(
    uid: &str,
    nsp: &str,
    kind: u64,
    data: Value,
    attachments: &[Bytes],
) -> Result<Vec<u8>, WireError> {
    if attachments.is_empty() {
        return Ok(plain(uid, nsp, kind, data));
    }
    let message = Mp::Map(vec![
        (Mp::from("uid"), Mp::from(uid)),
        (Mp::from("nsp"), Mp::from(nsp)),
        (Mp::from("type"), Mp::from(kind)),
        (Mp::from("data"), msgpack::from_json(&data, attachments)?),
    ]);
    Ok(msgpack::encode(&message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketio::packet::PacketType;

    fn event_packet(data: Value, attachments: Vec<Bytes>) -> Packet {
        wire::event_packet("/", data, attachments, None)
    }

    #[test]
    fn decodes_what_the_sharded_adapter_broadcasts() {
        let json = br#"{"uid":"a1b2c3d4e5f60718","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["m",{"x":1}],"nsp":"/"},"opts":{"rooms":["channel:1"],"except":["s"],"flags":{}}}}"#;
        let Message::Broadcast(b) = decode(json).unwrap() else {
            panic!("not a broadcast")
        };
        assert_eq!(b.uid, "a1b2c3d4e5f60718");
        assert_eq!(b.target, BroadcastTarget::room("channel:1").except("s"));
        assert_eq!(b.packet.data, Some(json!(["m", {"x": 1}])));
        assert_eq!(b.packet.kind, PacketType::Event);
    }

    #[test]
    fn a_binary_broadcast_round_trips_as_msgpack() {
        let packet = event_packet(
            json!(["b", {"_placeholder": true, "num": 0}]),
            vec![Bytes::from_static(&[1, 2, 3])],
        );
        let bytes = encode_broadcast("gw-1", "/", &BroadcastTarget::room("r"), &packet).unwrap();
        assert_ne!(bytes[0], b'{');
        let Message::Broadcast(b) = decode(&bytes).unwrap() else {
            panic!("not a broadcast")
        };
        assert_eq!(b.packet.attachments, packet.attachments);
        assert_eq!(b.packet.kind, PacketType::BinaryEvent);
        assert_eq!(b.target, BroadcastTarget::room("r"));
    }

    #[test]
    fn requests_become_the_classic_kinds() {
        let m = |s: &str| match decode(s.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Broadcast(_) => panic!("a broadcast"),
        };
        let r = m(
            r#"{"uid":"n","nsp":"/","type":7,"data":{"opts":{"rooms":["a"],"except":[]},"requestId":"q"}}"#,
        );
        assert_eq!(r.request_id, Some(json!("q")));
        assert!(matches!(r.kind, RequestKind::Fetch { ref target } if target.rooms == ["a"]));
        let r = m(
            r#"{"uid":"n","nsp":"/","type":4,"data":{"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}}"#,
        );
        assert!(matches!(r.kind, RequestKind::Join { ref rooms, .. } if rooms == &["b"]));
        let r = m(
            r#"{"uid":"n","nsp":"/","type":6,"data":{"opts":{"rooms":[],"except":[]},"close":true}}"#,
        );
        assert!(matches!(
            r.kind,
            RequestKind::Disconnect { close: true, .. }
        ));
        let r = m(
            r#"{"uid":"n","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["e"]},"opts":{"rooms":[],"except":[],"flags":{"timeout":900}},"requestId":"k"}}"#,
        );
        assert!(matches!(
            r.kind,
            RequestKind::BroadcastWithAck {
                timeout_ms: Some(900),
                ..
            }
        ));
        let r = m(r#"{"uid":"n","nsp":"/","type":9,"data":{"packet":["ping",1],"requestId":"s"}}"#);
        assert!(
            matches!(r.kind, RequestKind::ServerSideEmit { ref data } if data == &json!(["ping", 1]))
        );
        assert!(matches!(
            m(r#"{"uid":"n","nsp":"/","type":2}"#).kind,
            RequestKind::Other(2)
        ));
    }

    #[test]
    fn rejects_what_is_not_a_message() {
        for bad in [
            &b"{nope"[..],
            br#"{"nsp":"/"}"#,
            br#"{"type":3,"data":{"packet":{"type":0,"data":["e"]}}}"#,
            br#"{"type":3,"data":{"packet":{"type":2,"data":[]}}}"#,
            &[0xc1],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn responses_name_their_type_and_request() {
        let v: Value =
            serde_json::from_slice(&fetch_response("gw", "/", &json!("q"), vec![])).unwrap();
        assert_eq!(
            v,
            json!({"uid": "gw", "nsp": "/", "type": 8, "data": {"requestId": "q", "sockets": []}})
        );
        let v: Value =
            serde_json::from_slice(&ack_response("gw", "/", &json!("q"), None, &[]).unwrap())
                .unwrap();
        assert_eq!(v["data"], json!({"requestId": "q"}));
        let v: Value =
            serde_json::from_slice(&client_count_response("gw", "/", &json!("q"), 3)).unwrap();
        assert_eq!(
            (v["type"].as_u64(), &v["data"]["clientCount"]),
            (Some(11), &json!(3))
        );
    }
}
