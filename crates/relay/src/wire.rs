//! The `@socket.io/redis-adapter` 8.x (classic) and `@socket.io/redis-emitter` 5.x wire
//! format: broadcast messages, requests and responses.
//!
//! - A broadcast is msgpack `[uid, {type: 2, data: [event, ...args], nsp}, {rooms, except,
//!   flags}]`, structs as maps, binary as `bin`.
//! - Requests are JSON (first byte `{`), except a broadcast with acks, which is msgpack.
//! - Responses are JSON, except a client's ack to such a broadcast, which is msgpack.

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{json, Value};

use super::msgpack::{self, MsgpackError};
use engineio::Sid;
use socketio::packet::{Packet, PacketType};
use socketio::BroadcastTarget;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Msgpack(#[from] MsgpackError),
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a broadcast message: {0}")]
    Shape(&'static str),
}

/// The adapter's request types (`RequestType` in its source).
pub mod request_type {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
    /// The gateway's own (Node's adapter ignores the types it does not know): a session was
    /// restored elsewhere, so the socket still holding it here must go.
    pub const GATEWAY_REPLACE: u64 = 1001;
}

/// A broadcast received from another server or the emitter.
#[derive(Debug)]
pub struct RemoteBroadcast {
    pub uid: String,
    /// The packet's place in the recovery log, on the recovery channels.
    pub offset: Option<String>,
    pub nsp: String,
    /// An EVENT (BINARY_EVENT when it carries attachments), without ack id.
    pub packet: Packet,
    pub target: BroadcastTarget,
}

/// Encodes a local broadcast for the other servers. The packet's placeholders become `bin`.
///
/// With `offset_slot`, `flags` ends with `"offset": ""`, so the message's last byte is the
/// empty string's, which the recording script replaces by the log id it assigns (other
/// servers ignore an unknown flag).
pub fn encode_broadcast(
    uid: &str,
    target: &BroadcastTarget,
    packet: &Packet,
    offset_slot: bool,
) -> Result<Vec<u8>, WireError> {
    let data = match &packet.data {
        Some(d) => msgpack::from_json(d, &packet.attachments)?,
        None => Mp::Array(Vec::new()),
    };
    let rooms = |list: &[String]| Mp::Array(list.iter().map(|r| Mp::from(r.as_str())).collect());
    let flags = if offset_slot {
        vec![(Mp::from("offset"), Mp::from(""))]
    } else {
        Vec::new()
    };
    let msg = Mp::Array(vec![
        Mp::from(uid),
        Mp::Map(vec![
            (Mp::from("type"), Mp::from(2u8)),
            (Mp::from("data"), data),
            (Mp::from("nsp"), Mp::from(packet.nsp.as_str())),
        ]),
        Mp::Map(vec![
            (Mp::from("rooms"), rooms(&target.rooms)),
            (Mp::from("except"), rooms(&target.except)),
            (Mp::from("flags"), Mp::Map(flags)),
        ]),
    ]);
    Ok(msgpack::encode(&msg))
}

/// Decodes a broadcast message published by any adapter or emitter.
pub fn decode_broadcast(bytes: &[u8]) -> Result<RemoteBroadcast, WireError> {
    let Mp::Array(mut parts) = msgpack::decode(bytes)? else {
        return Err(WireError::Shape("not an array"));
    };
    if parts.len() < 3 {
        return Err(WireError::Shape("fewer than 3 elements"));
    }
    let opts = parts.swap_remove(2);
    let packet = parts.swap_remove(1);
    let uid = match &parts[0] {
        Mp::String(s) => s.as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    let Mp::Map(packet) = packet else {
        return Err(WireError::Shape("packet is not a map"));
    };
    let opts = msgpack::to_json(opts, &mut Vec::new(), 0)?;
    let kind = field(&packet, "type").and_then(Mp::as_u64);
    // EVENT (2) or BINARY_EVENT (5): Node publishes the packet before the parser splits it.
    if !matches!(kind, Some(2 | 5)) {
        return Err(WireError::Shape("packet is not an event"));
    }
    let nsp = match field(&packet, "nsp") {
        Some(Mp::String(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => "/".to_owned(),
    };
    let (data, attachments) = event_data(packet)?;
    let target = BroadcastTarget {
        rooms: room_list(opts.get("rooms")),
        except: room_list(opts.get("except")),
    };
    let offset = opts
        .get("flags")
        .and_then(|f| f.get("offset"))
        .and_then(Value::as_str)
        .filter(|o| !o.is_empty())
        .map(str::to_owned);
    Ok(RemoteBroadcast {
        uid,
        offset,
        packet: event_packet(&nsp, data, attachments, None),
        nsp,
        target,
    })
}

/// The value of `name` in a msgpack map; the last one when it is there twice, as a JS
/// decoder (which assigns the keys in order) reads it.
pub(crate) fn field<'a>(map: &'a [(Mp, Mp)], name: &str) -> Option<&'a Mp> {
    map.iter()
        .rev()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// A msgpack packet's `data` (a non-empty array) as JSON, its `bin` values moved into
/// attachments. Only `data` brings attachments: a `bin` anywhere else in the message (another
/// key, a duplicate `data` that the last one replaces) belongs to no argument.
pub(crate) fn event_data(mut packet: Vec<(Mp, Mp)>) -> Result<(Value, Vec<Bytes>), WireError> {
    let data = packet
        .iter()
        .rposition(|(k, _)| k.as_str() == Some("data"))
        .map(|i| packet.swap_remove(i).1);
    let data = match data {
        Some(d @ Mp::Array(_)) if d.as_array().is_some_and(|items| !items.is_empty()) => d,
        _ => return Err(WireError::Shape("packet data is not a non-empty array")),
    };
    // Beside real binaries, a `{_placeholder: true}` map is what the clients' parser takes
    // for an attachment: any index, or one out of range that fails their connection (and
    // again on every replay from the recovery log). Without binaries it is plain data.
    let placeholder_map = msgpack::has_placeholder_map(&data);
    let mut attachments = Vec::new();
    let json = msgpack::to_json(data, &mut attachments, 0)?;
    if placeholder_map && !attachments.is_empty() {
        return Err(WireError::Shape("a placeholder object beside binary data"));
    }
    Ok((json, attachments))
}

pub(crate) fn event_packet(
    nsp: &str,
    data: Value,
    attachments: Vec<Bytes>,
    id: Option<u64>,
) -> Packet {
    Packet {
        kind: if attachments.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        },
        nsp: nsp.to_owned(),
        id,
        data: Some(data),
        attachments,
    }
}

/// Room names arrive as strings or, from `io.to(123)` in Node, numbers; both become strings.
pub(crate) fn room_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items.iter().filter_map(room_name).collect(),
        _ => Vec::new(),
    }
}

fn room_name(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A request from another server (or the emitter) on the request channel.
#[derive(Debug)]
pub struct Request {
    /// The requester's uid; the emitter sends none (and expects no response).
    pub uid: Option<String>,
    /// Echoed in responses as received.
    pub request_id: Option<Value>,
    pub kind: RequestKind,
}

#[derive(Debug)]
pub enum RequestKind {
    /// Legacy: ids of the sockets in `rooms`.
    Sockets {
        rooms: Vec<String>,
    },
    AllRooms,
    Join {
        target: BroadcastTarget,
        rooms: Vec<String>,
    },
    Leave {
        target: BroadcastTarget,
        rooms: Vec<String>,
    },
    Disconnect {
        target: BroadcastTarget,
        close: bool,
    },
    /// Legacy forms addressing one socket by id.
    JoinSid {
        sid: String,
        room: String,
    },
    LeaveSid {
        sid: String,
        room: String,
    },
    DisconnectSid {
        sid: String,
        close: bool,
    },
    Fetch {
        target: BroadcastTarget,
    },
    ServerSideEmit {
        data: Value,
    },
    /// A broadcast whose every recipient's ack goes back to the requester.
    BroadcastWithAck {
        packet: Packet,
        target: BroadcastTarget,
        timeout_ms: Option<u64>,
    },
    /// A gateway restored the session of socket `sid` held here by `holder` (see
    /// [`replace_request`]).
    Replace {
        sid: String,
        holder: String,
    },
    /// A response or a type this version does not know: ignored.
    Other(u64),
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    // A msgpack request is also kept as it came: a broadcast's attachments are its data's.
    let (v, packed): (Value, _) = if bytes.first() == Some(&b'{') {
        (serde_json::from_slice(bytes)?, None)
    } else {
        let packed = msgpack::decode(bytes)?;
        (
            msgpack::to_json(packed.clone(), &mut Vec::new(), 0)?,
            Some(packed),
        )
    };
    let kind = v
        .get("type")
        .and_then(Value::as_u64)
        .ok_or(WireError::Shape("request without a type"))?;
    let str_field = |name: &str| v.get(name).and_then(room_name);
    let target = || {
        let opts = v.get("opts");
        BroadcastTarget {
            rooms: room_list(opts.and_then(|o| o.get("rooms"))),
            except: room_list(opts.and_then(|o| o.get("except"))),
        }
    };
    let has_opts = v.get("opts").is_some_and(Value::is_object);
    let close = v.get("close").and_then(Value::as_bool).unwrap_or(false);
    use request_type as t;
    let kind = match kind {
        t::SOCKETS => RequestKind::Sockets {
            rooms: room_list(v.get("rooms")),
        },
        t::ALL_ROOMS => RequestKind::AllRooms,
        t::REMOTE_JOIN | t::REMOTE_LEAVE if has_opts => {
            let rooms = room_list(v.get("rooms"));
            if kind == t::REMOTE_JOIN {
                RequestKind::Join {
                    target: target(),
                    rooms,
                }
            } else {
                RequestKind::Leave {
                    target: target(),
                    rooms,
                }
            }
        }
        t::REMOTE_JOIN | t::REMOTE_LEAVE => {
            let (Some(sid), Some(room)) = (str_field("sid"), str_field("room")) else {
                return Err(WireError::Shape("join/leave without opts or sid"));
            };
            if kind == t::REMOTE_JOIN {
                RequestKind::JoinSid { sid, room }
            } else {
                RequestKind::LeaveSid { sid, room }
            }
        }
        t::REMOTE_DISCONNECT if has_opts => RequestKind::Disconnect {
            target: target(),
            close,
        },
        t::REMOTE_DISCONNECT => RequestKind::DisconnectSid {
            sid: str_field("sid").ok_or(WireError::Shape("disconnect without opts or sid"))?,
            close,
        },
        t::REMOTE_FETCH => RequestKind::Fetch { target: target() },
        t::SERVER_SIDE_EMIT => RequestKind::ServerSideEmit {
            data: v.get("data").cloned().unwrap_or(Value::Null),
        },
        t::BROADCAST => {
            let packet = v.get("packet").ok_or(WireError::Shape("no packet"))?;
            let nsp = packet.get("nsp").and_then(Value::as_str).unwrap_or("/");
            let (data, attachments) = match packed {
                Some(Mp::Map(request)) => match request
                    .into_iter()
                    .rev()
                    .find(|(k, _)| k.as_str() == Some("packet"))
                {
                    Some((_, Mp::Map(packet))) => event_data(packet)?,
                    _ => return Err(WireError::Shape("packet is not a map")),
                },
                _ => match packet.get("data") {
                    Some(d @ Value::Array(items)) if !items.is_empty() => (d.clone(), Vec::new()),
                    _ => return Err(WireError::Shape("packet data is not a non-empty array")),
                },
            };
            let timeout_ms = v
                .get("opts")
                .and_then(|o| o.get("flags"))
                .and_then(|f| f.get("timeout"))
                .and_then(Value::as_u64);
            RequestKind::BroadcastWithAck {
                packet: event_packet(nsp, data, attachments, None),
                target: target(),
                timeout_ms,
            }
        }
        t::GATEWAY_REPLACE => {
            let (Some(sid), Some(holder)) = (str_field("sid"), str_field("holder")) else {
                return Err(WireError::Shape("replace without sid or holder"));
            };
            RequestKind::Replace { sid, holder }
        }
        other => RequestKind::Other(other),
    };
    Ok(Request {
        uid: v.get("uid").and_then(Value::as_str).map(str::to_owned),
        request_id: v.get("requestId").cloned(),
        kind,
    })
}

/// The request asking whichever instance still has socket `sid`, held by `holder`, to close
/// it: its session was restored by another connection.
pub fn replace_request(uid: &str, sid: Sid, holder: &str) -> Vec<u8> {
    json!({
        "uid": uid,
        "type": request_type::GATEWAY_REPLACE,
        "sid": sid.as_str(),
        "holder": holder,
    })
    .to_string()
    .into_bytes()
}

/// JSON response `{"requestId", ...fields}`.
pub fn json_response(request_id: &Value, fields: Value) -> Vec<u8> {
    let mut obj = serde_json::Map::new();
    obj.insert("requestId".to_owned(), request_id.clone());
    if let Value::Object(extra) = fields {
        obj.extend(extra);
    }
    Value::Object(obj).to_string().into_bytes()
}

/// `{"type": 8, "requestId", "clientCount"}`: how many acks a broadcast-with-ack should wait for.
pub fn client_count_response(request_id: &Value, count: usize) -> Vec<u8> {
    json_response(
        request_id,
        json!({"type": request_type::BROADCAST_CLIENT_COUNT, "clientCount": count}),
    )
}

/// msgpack `{type: 9, requestId, packet: <first ack argument>}`.
pub fn broadcast_ack_response(
    request_id: &Value,
    first_arg: Option<&Value>,
    attachments: &[Bytes],
) -> Result<Vec<u8>, WireError> {
    let mut entries = vec![
        (Mp::from("type"), Mp::from(request_type::BROADCAST_ACK)),
        (Mp::from("requestId"), msgpack::from_json(request_id, &[])?),
    ];
    // An ack without arguments is `undefined` in Node: the key is left out, as notepack does.
    if let Some(arg) = first_arg {
        entries.push((Mp::from("packet"), msgpack::from_json(arg, attachments)?));
    }
    Ok(msgpack::encode(&Mp::Map(entries)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `io.to("room1").emit("hello", "world", Buffer[1,2,3])` as captured from Node 8.3.0,
    /// with uid "abcdef".
    const NODE_BROADCAST: &str = "93a6616263646566\
        83a47479706502a46461746193a568656c6c6fa5776f726c64c403010203a36e7370a12f\
        83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A broadcast nested `levels` deep in its data, with a string at the bottom.
    fn nested_broadcast(levels: usize) -> Vec<u8> {
        let mut data = Mp::from("deepest");
        for _ in 0..levels {
            data = Mp::Array(vec![data, Mp::from(-1)]);
        }
        let packet = Mp::Map(vec![
            (Mp::from("type"), Mp::from(2)),
            (Mp::from("data"), Mp::Array(vec![Mp::from("e"), data])),
            (Mp::from("nsp"), Mp::from("/")),
        ]);
        let opts = Mp::Map(vec![(Mp::from("rooms"), Mp::Array(vec![]))]);
        msgpack::encode(&Mp::Array(vec![Mp::from("uid"), packet, opts]))
    }

    /// The fuzzer's find: rmpv's depth limit counts two per level and more for a string at
    /// the bottom, so a broadcast it let through could re-encode (the same structure, an
    /// extension turned nil) into one it refused. Accepted must mean re-publishable.
    #[test]
    fn what_is_accepted_at_any_depth_decodes_again_once_re_encoded() {
        let fuzzed = hex(
            "93a7656d697474657283a47479706502a46461746192a19595959595959595959595d59595959595\
            9595959595959d9595959595959595f0a12f82ffffffffffffffffffffffffffffffffffffffffff\
            ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\
            ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa5726f6f6d\
            73a67b9165787074917f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7f7fa178",
        );
        let mut inputs = vec![fuzzed];
        inputs.extend((0..=140).map(nested_broadcast));
        for bytes in inputs {
            let Ok(b) = decode_broadcast(&bytes) else {
                continue;
            };
            let again = encode_broadcast(&b.uid, &b.target, &b.packet, false).unwrap();
            let back = decode_broadcast(&again).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.packet, b.packet);
        }
    }

    /// As deep as serde_json reads JSON (128 levels), so what a client or the app can send
    /// can be relayed; deeper is refused.
    #[test]
    fn nesting_is_bounded_by_jsons_own_limit() {
        assert!(decode_broadcast(&nested_broadcast(126)).is_ok());
        assert!(decode_broadcast(&nested_broadcast(200)).is_err());
    }

    #[test]
    fn decodes_a_node_broadcast_and_encodes_it_back_byte_for_byte() {
        let bytes = hex(NODE_BROADCAST);
        let b = decode_broadcast(&bytes).unwrap();
        assert_eq!(b.uid, "abcdef");
        assert_eq!(b.nsp, "/");
        assert_eq!(b.target, BroadcastTarget::room("room1"));
        assert_eq!(b.packet.kind, PacketType::BinaryEvent);
        assert_eq!(b.packet.attachments, vec![Bytes::from_static(&[1, 2, 3])]);
        assert_eq!(
            b.packet.data,
            Some(json!(["hello", "world", {"_placeholder": true, "num": 0}]))
        );
        assert_eq!(
            encode_broadcast("abcdef", &b.target, &b.packet, false).unwrap(),
            bytes
        );
        assert!(b.offset.is_none());
        // The offset slot is the message's last byte: an empty string.
        let slotted = encode_broadcast("abcdef", &b.target, &b.packet, true).unwrap();
        assert_eq!(slotted.last(), Some(&0xa0));
        let mut tagged = slotted[..slotted.len() - 1].to_vec();
        tagged.extend([0xd9, 3]);
        tagged.extend(b"1-2");
        assert_eq!(
            decode_broadcast(&tagged).unwrap().offset.as_deref(),
            Some("1-2")
        );
    }

    /// Found by the relay_broadcast fuzz target: a packet map with `data` twice kept the
    /// binary of the discarded one as an attachment, so clients got an attachment no
    /// argument refers to and placeholders shifted by one.
    #[test]
    fn only_the_kept_data_brings_attachments() {
        // The fuzzer's input as it found it: the packet map is
        // {type: 2, data: ["hello", "world", bin "pe\x02"], data: ["hello", "world", bin "\x01dx"]}
        // (the bytes after it, which a msgpack reader never looks at, are left as they were).
        let bytes = hex("93a6616263642866\
             83a47479706502a46461746193a568656c6c6fa5776f726c64c403706502\
             a46461746193a568656c6c6fa5776f726c64c4030164786365707490a5666c61677381a66f\
             66667374616192a132");
        let b = decode_broadcast(&bytes).unwrap();
        assert_eq!(b.packet.attachments, vec![Bytes::from_static(b"\x01dx")]);
        assert_eq!(
            b.packet.data,
            Some(json!(["hello", "world", {"_placeholder": true, "num": 0}]))
        );
        // A `bin` anywhere but in `data` belongs to no argument.
        let msg = Mp::Array(vec![
            Mp::from("u"),
            Mp::Map(vec![
                (Mp::from("type"), Mp::from(2)),
                (Mp::from("data"), Mp::Array(vec![Mp::from("e")])),
                (Mp::from("extra"), Mp::Binary(vec![1; 1000])),
            ]),
            Mp::Map(vec![(
                Mp::from("rooms"),
                Mp::Array(vec![Mp::Binary(vec![2])]),
            )]),
        ]);
        let b = decode_broadcast(&msgpack::encode(&msg)).unwrap();
        assert!(b.packet.attachments.is_empty());
        assert_eq!(b.packet.kind, PacketType::Event);
    }

    /// Found by the relay_broadcast fuzz target (as it found it): in data, maps whose
    /// repeated keys replaced a binary, which stayed an attachment.
    #[test]
    fn replaced_binaries_in_nested_maps_are_no_attachments() {
        let bytes = hex(
            "93a64b494b64656783a47479706502a46461746199a56865fcff93a661626383a474e5797283\
             64c4006c6474e57972836cc4006c64c400c4006f6666",
        );
        let b = decode_broadcast(&bytes).unwrap();
        let data = b.packet.data.unwrap();
        let placeholders = data.to_string().matches("_placeholder").count();
        assert_eq!(b.packet.attachments.len(), placeholders);
    }

    /// A `{_placeholder: true}` map beside real binaries would be taken by the clients'
    /// parser for an attachment (any index, or one out of range that fails their connection
    /// on every replay): refused. Without binaries it is plain data, as in Node.
    #[test]
    fn a_literal_placeholder_beside_binaries_is_refused() {
        let literal = Mp::Map(vec![
            (Mp::from("_placeholder"), Mp::Boolean(true)),
            (Mp::from("num"), Mp::from(7)),
        ]);
        let broadcast = |args: Vec<Mp>| {
            let mut data = vec![Mp::from("e")];
            data.extend(args);
            msgpack::encode(&Mp::Array(vec![
                Mp::from("u"),
                Mp::Map(vec![
                    (Mp::from("type"), Mp::from(2)),
                    (Mp::from("data"), Mp::Array(data)),
                ]),
                Mp::Map(vec![]),
            ]))
        };
        assert!(decode_broadcast(&broadcast(vec![literal.clone(), Mp::Binary(vec![1])])).is_err());
        let plain = decode_broadcast(&broadcast(vec![literal])).unwrap();
        assert_eq!(plain.packet.kind, PacketType::Event);
        assert_eq!(
            plain.packet.data,
            Some(json!(["e", {"_placeholder": true, "num": 7}]))
        );
    }

    #[test]
    fn emitter_broadcast_with_numeric_room_and_no_flags() {
        // ["emitter", {type:2, data:["e",1], nsp:"/"}, {rooms:[123], except:["x"]}]
        let msg = Mp::Array(vec![
            Mp::from("emitter"),
            Mp::Map(vec![
                (Mp::from("type"), Mp::from(2)),
                (
                    Mp::from("data"),
                    Mp::Array(vec![Mp::from("e"), Mp::from(1)]),
                ),
                (Mp::from("nsp"), Mp::from("/")),
            ]),
            Mp::Map(vec![
                (Mp::from("rooms"), Mp::Array(vec![Mp::from(123)])),
                (Mp::from("except"), Mp::Array(vec![Mp::from("x")])),
            ]),
        ]);
        let b = decode_broadcast(&msgpack::encode(&msg)).unwrap();
        assert_eq!(b.uid, "emitter");
        assert_eq!(b.target, BroadcastTarget::room("123").except("x"));
        assert_eq!(b.packet.kind, PacketType::Event);
    }

    #[test]
    fn rejects_what_is_not_an_event_broadcast() {
        for bad in [
            msgpack::encode(&Mp::from("x")),
            msgpack::encode(&Mp::Array(vec![Mp::from("u")])),
            msgpack::encode(&Mp::Array(vec![
                Mp::from("u"),
                Mp::Map(vec![(Mp::from("type"), Mp::from(3))]),
                Mp::Map(vec![]),
            ])),
            vec![0xc1],
            vec![],
        ] {
            assert!(decode_broadcast(&bad).is_err());
        }
    }

    #[test]
    fn decodes_the_request_shapes_node_and_the_emitter_send() {
        let r =
            decode_request(br#"{"type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["b","c"]}"#)
                .unwrap();
        assert!(r.uid.is_none());
        assert!(matches!(r.kind, RequestKind::Join { ref rooms, .. } if rooms == &["b", "c"]));
        let r = decode_request(
            br#"{"uid":"x1","requestId":"r1","type":5,"opts":{"rooms":[],"except":[]}}"#,
        )
        .unwrap();
        assert_eq!(r.request_id, Some(json!("r1")));
        assert!(matches!(r.kind, RequestKind::Fetch { .. }));
        let r = decode_request(br#"{"requestId":"r","sid":"s","room":"x","type":3}"#).unwrap();
        assert!(matches!(r.kind, RequestKind::LeaveSid { .. }));
        let r = decode_request(br#"{"type":4,"opts":{"rooms":["a"]},"close":true}"#).unwrap();
        assert!(matches!(
            r.kind,
            RequestKind::Disconnect { close: true, .. }
        ));
        assert!(decode_request(br#"{"type":"x"}"#).is_err());
        assert!(decode_request(b"{nope").is_err());
    }

    #[test]
    fn decodes_a_msgpack_broadcast_with_ack_request() {
        let msg = Mp::Map(vec![
            (Mp::from("uid"), Mp::from("n1")),
            (Mp::from("requestId"), Mp::from("q")),
            (Mp::from("type"), Mp::from(7)),
            (
                Mp::from("packet"),
                Mp::Map(vec![
                    (Mp::from("type"), Mp::from(2)),
                    (
                        Mp::from("data"),
                        Mp::Array(vec![Mp::from("ev"), Mp::Binary(vec![9])]),
                    ),
                    (Mp::from("nsp"), Mp::from("/")),
                ]),
            ),
            (
                Mp::from("opts"),
                Mp::Map(vec![
                    (Mp::from("rooms"), Mp::Array(vec![])),
                    (Mp::from("except"), Mp::Array(vec![])),
                    (
                        Mp::from("flags"),
                        Mp::Map(vec![(Mp::from("timeout"), Mp::from(1500))]),
                    ),
                ]),
            ),
        ]);
        let r = decode_request(&msgpack::encode(&msg)).unwrap();
        let RequestKind::BroadcastWithAck {
            packet, timeout_ms, ..
        } = r.kind
        else {
            panic!("wrong kind")
        };
        assert_eq!(timeout_ms, Some(1500));
        assert_eq!(packet.attachments, vec![Bytes::from_static(&[9])]);
    }

    /// As for broadcasts: in a msgpack request, only the packet's `data` brings attachments.
    #[test]
    fn a_broadcast_with_ack_takes_attachments_from_its_data_only() {
        let request = |data: Vec<Mp>| {
            msgpack::encode(&Mp::Map(vec![
                (Mp::from("uid"), Mp::from("n1")),
                (Mp::from("requestId"), Mp::Binary(vec![7; 64])),
                (Mp::from("type"), Mp::from(7)),
                (
                    Mp::from("packet"),
                    Mp::Map(vec![
                        (Mp::from("type"), Mp::from(2)),
                        (Mp::from("data"), Mp::Array(data)),
                    ]),
                ),
                (
                    Mp::from("opts"),
                    Mp::Map(vec![(Mp::from("x"), Mp::Binary(vec![8]))]),
                ),
            ]))
        };
        let r = decode_request(&request(vec![Mp::from("ev"), Mp::Binary(vec![9])])).unwrap();
        let RequestKind::BroadcastWithAck { packet, .. } = r.kind else {
            panic!("wrong kind")
        };
        assert_eq!(packet.attachments, vec![Bytes::from_static(&[9])]);
        assert_eq!(
            packet.data,
            Some(json!(["ev", {"_placeholder": true, "num": 0}]))
        );
        let literal = Mp::Map(vec![
            (Mp::from("_placeholder"), Mp::Boolean(true)),
            (Mp::from("num"), Mp::from(3)),
        ]);
        assert!(
            decode_request(&request(vec![Mp::from("ev"), literal, Mp::Binary(vec![9])])).is_err()
        );
    }

    #[test]
    fn ack_response_leaves_out_an_undefined_argument() {
        let with = broadcast_ack_response(&json!("q"), Some(&json!("ok")), &[]).unwrap();
        let without = broadcast_ack_response(&json!("q"), None, &[]).unwrap();
        let mut att = Vec::new();
        assert_eq!(
            msgpack::to_json(msgpack::decode(&with).unwrap(), &mut att, 0).unwrap(),
            json!({"type": 9, "requestId": "q", "packet": "ok"})
        );
        assert_eq!(
            msgpack::to_json(msgpack::decode(&without).unwrap(), &mut att, 0).unwrap(),
            json!({"type": 9, "requestId": "q"})
        );
    }
}
