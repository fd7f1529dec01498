//! Answering the adapter's request protocol as a Node server does.
//!
//! Node counts every subscriber of the request channel as a server and waits for each one's
//! answer to `fetchSockets()`, `allRooms()`, `serverSideEmit` with ack and broadcasts with
//! acks: an instance that stayed silent would make those calls time out after 5 s.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde_json::{json, Map, Value};

use super::sharded_wire;
use super::wire::{self, Request, RequestKind};
use super::{Relay, RelayedNamespace};
use crate::metrics::ValkeyOp;
use crate::sessions::KeptChange;
use bytes::Bytes;
use engineio::{Handshake, Sid};
use socketio::{BroadcastTarget, Namespace, Socket};

/// An answer to a request, whichever wire format carries it.
enum Reply<'a> {
    /// Classic: a legacy request addressed to one socket was done here.
    Done,
    SocketIds(Vec<String>),
    Rooms(Vec<String>),
    Sockets(Vec<Value>),
    /// `serverSideEmit` with an ack: answered with no argument (no listeners here).
    ServerSideEmitted,
    /// How many clients a broadcast with acks reached here.
    ClientCount(usize),
    /// One client's ack: its first argument and attachments.
    Ack(Option<&'a Value>, &'a [Bytes]),
}

impl Relay {
    /// A request on the classic request channel.
    pub(super) fn on_request(&self, space: &RelayedNamespace, payload: &[u8]) {
        match wire::decode_request(payload) {
            Ok(request) => self.answer(space, request),
            Err(e) => {
                crate::metrics::valkey_errors(ValkeyOp::Decode, 1);
                tracing::debug!(error = %e, "relay: ignoring a malformed request");
            }
        }
    }

    /// Acts on a request of either wire format, and answers it as a Node server would.
    pub(super) fn answer(&self, space: &RelayedNamespace, request: Request) {
        let Some(ns) = space.ns.upgrade() else { return };
        // Our own requests (none today) and answers to other requesters are not for us.
        if request.uid.as_deref() == Some(self.uid.as_str()) {
            return;
        }
        let Request {
            uid,
            request_id,
            kind,
        } = request;
        let respond = |id: &Value, reply: Reply| self.reply(space, uid.as_deref(), id, reply);
        match kind {
            RequestKind::Join { target, rooms } => {
                ns.handler().on_rooms_request(&target);
                for socket in ns.select(&target) {
                    socket.join(&rooms);
                }
                self.change_kept_sessions(&ns, &target, KeptChange::Join(rooms));
            }
            RequestKind::Leave { target, rooms } => {
                ns.handler().on_rooms_request(&target);
                for socket in ns.select(&target) {
                    for room in &rooms {
                        socket.leave(room);
                    }
                }
                self.change_kept_sessions(&ns, &target, KeptChange::Leave(rooms));
            }
            RequestKind::Disconnect { target, close } => {
                ns.handler().on_disconnect_request(&target);
                for socket in ns.select(&target) {
                    disconnect(&socket, close);
                }
                self.change_kept_sessions(&ns, &target, KeptChange::Forget);
            }
            RequestKind::Replace { sid, holder } => {
                if let Some(socket) = local(&ns, &sid).filter(|s| s.holder().to_string() == holder)
                {
                    socket.replace();
                }
            }
            RequestKind::JoinSid { sid, room } => {
                ns.handler()
                    .on_rooms_request(&BroadcastTarget::room(sid.as_str()));
                if let (Some(socket), Some(id)) = (local(&ns, &sid), &request_id) {
                    socket.join(&[room]);
                    respond(id, Reply::Done);
                }
            }
            RequestKind::LeaveSid { sid, room } => {
                ns.handler()
                    .on_rooms_request(&BroadcastTarget::room(sid.as_str()));
                if let (Some(socket), Some(id)) = (local(&ns, &sid), &request_id) {
                    socket.leave(&room);
                    respond(id, Reply::Done);
                }
            }
            RequestKind::DisconnectSid { sid, close } => {
                if let (Some(socket), Some(id)) = (local(&ns, &sid), &request_id) {
                    disconnect(&socket, close);
                    respond(id, Reply::Done);
                }
            }
            RequestKind::Sockets { rooms } => {
                let Some(id) = request_id else { return };
                let target = BroadcastTarget {
                    rooms,
                    except: Vec::new(),
                };
                let ids: Vec<String> = ns
                    .select(&target)
                    .iter()
                    .map(|s| s.id.to_string())
                    .collect();
                respond(&id, Reply::SocketIds(ids));
            }
            RequestKind::AllRooms => {
                let Some(id) = request_id else { return };
                let rooms: Vec<String> =
                    ns.rooms.all_rooms().iter().map(|r| r.to_string()).collect();
                respond(&id, Reply::Rooms(rooms));
            }
            RequestKind::Fetch { target } => {
                let Some(id) = request_id else { return };
                let sockets: Vec<Value> = ns
                    .select(&target)
                    .iter()
                    .map(|s| describe(&ns, s))
                    .collect();
                respond(&id, Reply::Sockets(sockets));
            }
            RequestKind::ServerSideEmit { data } => {
                // The gateway has no server-side listeners; with an ack it answers with no
                // argument (undefined in Node) so the requester gets one answer per server.
                let event = data.get(0).and_then(Value::as_str).unwrap_or_default();
                tracing::debug!(event, "relay: server-side emit");
                if let Some(id) = request_id {
                    respond(&id, Reply::ServerSideEmitted);
                }
            }
            RequestKind::BroadcastWithAck {
                packet,
                target,
                timeout_ms,
            } => {
                let Some(id) = request_id else { return };
                let timeout = timeout_ms.map_or(self.ack_timeout, std::time::Duration::from_millis);
                let recipients = ns.select(&target);
                respond(&id, Reply::ClientCount(recipients.len()));
                for socket in recipients {
                    let (relay, nsp) = (self.me(), space.name.clone());
                    let (packet, uid, id) = (packet.clone(), uid.clone(), id.clone());
                    tokio::spawn(async move {
                        let Some((event, args)) =
                            packet.data.clone().and_then(socketio::packet::event_parts)
                        else {
                            return;
                        };
                        // No answer in time: the requester's own timeout reports it.
                        let Ok(ack) = socket
                            .emit_with_ack(&event, args, packet.attachments.clone(), timeout)
                            .await
                        else {
                            return;
                        };
                        let Some(relay) = relay.upgrade() else { return };
                        if let Some(space) = relay.space(&nsp) {
                            let reply = Reply::Ack(ack.args.first(), &ack.attachments);
                            relay.reply(space, uid.as_deref(), &id, reply);
                        }
                    });
                }
            }
            RequestKind::Other(_) => {}
        }
    }
}

impl Relay {
    /// Publishes `reply` to request `id` from `requester` in this relay's wire format, where
    /// the requester listens.
    fn reply(&self, space: &RelayedNamespace, requester: Option<&str>, id: &Value, reply: Reply) {
        let channel = space.channels.response_to(requester);
        let body = if self.sharded {
            // Sharded requesters always name themselves; the rest is the classic protocol's.
            if requester.is_none() {
                return;
            }
            let (uid, nsp) = (self.uid.as_str(), space.name.as_str());
            match reply {
                Reply::Sockets(sockets) => Ok(sharded_wire::fetch_response(uid, nsp, id, sockets)),
                Reply::ServerSideEmitted => {
                    Ok(sharded_wire::server_side_emit_response(uid, nsp, id))
                }
                Reply::ClientCount(n) => Ok(sharded_wire::client_count_response(uid, nsp, id, n)),
                Reply::Ack(arg, attachments) => {
                    sharded_wire::ack_response(uid, nsp, id, arg, attachments)
                }
                Reply::Done | Reply::SocketIds(_) | Reply::Rooms(_) => return,
            }
        } else {
            match reply {
                Reply::Done => Ok(wire::json_response(id, json!({}))),
                Reply::SocketIds(ids) => Ok(wire::json_response(id, json!({ "sockets": ids }))),
                Reply::Rooms(rooms) => Ok(wire::json_response(id, json!({ "rooms": rooms }))),
                Reply::Sockets(sockets) => {
                    Ok(wire::json_response(id, json!({ "sockets": sockets })))
                }
                Reply::ServerSideEmitted => {
                    // Node always answers these on the generic response channel.
                    let body = json!({ "type": wire::request_type::SERVER_SIDE_EMIT });
                    self.publisher.publish(
                        space.channels.response.clone(),
                        wire::json_response(id, body),
                    );
                    return;
                }
                Reply::ClientCount(n) => Ok(wire::client_count_response(id, n)),
                Reply::Ack(arg, attachments) => wire::broadcast_ack_response(id, arg, attachments),
            }
        };
        match body {
            Ok(body) => {
                self.publisher.publish(channel, body);
            }
            Err(e) => tracing::debug!(error = %e, "relay: cannot encode a response"),
        }
    }

    /// What other servers asked of every socket of `target` also applies to the kept
    /// sessions of the users it names, so a reconnect does not undo it. Every instance
    /// applies it (it is idempotent): after its own earlier writes of those sessions, which
    /// go through the same queue.
    fn change_kept_sessions(&self, ns: &Namespace, target: &BroadcastTarget, change: KeptChange) {
        if let Some(owners) = ns.handler().owners_of(target) {
            self.kept_sessions_changed(&ns.name, &owners, change);
        }
    }
}

fn local(ns: &Namespace, sid: &str) -> Option<Arc<Socket>> {
    Sid::parse(sid).and_then(|sid| ns.socket(&sid))
}

fn disconnect(socket: &Arc<Socket>, close: bool) {
    if close {
        socket.close_connection();
    } else {
        socket.disconnect();
    }
}

/// A socket as Node's `fetchSockets()` describes it: `{id, handshake, rooms, data}`.
fn describe(ns: &Namespace, socket: &Arc<Socket>) -> Value {
    let rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    json!({
        "id": socket.id.as_str(),
        "handshake": handshake(&socket.session().handshake, &socket.auth),
        "rooms": rooms,
        "data": ns.handler().socket_data(socket),
    })
}

/// Headers that carry credentials never leave the instance.
const PRIVATE_HEADERS: [&str; 3] = ["cookie", "authorization", "proxy-authorization"];

fn handshake(h: &Handshake, auth: &Value) -> Value {
    let mut headers = Map::new();
    for (name, value) in h.headers.iter() {
        if PRIVATE_HEADERS.contains(&name) {
            continue;
        }
        // Node joins a repeated header's values with ", ".
        match headers.get_mut(name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                headers.insert(name.to_owned(), Value::String(value.to_owned()));
            }
        }
    }
    let query: Map<String, Value> = h
        .query()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), Value::String(v.to_owned()))
        })
        .collect();
    let issued = h
        .issued
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "headers": headers,
        "time": httpdate(h.issued),
        "address": h.remote_addr.map(|a| a.ip().to_string()),
        "xdomain": h.headers.contains("origin"),
        "secure": false,
        "issued": issued,
        "url": h.url(),
        "query": query,
        "auth": auth,
    })
}

/// The handshake time as text (Node gives `Date#toString()`; an RFC 7231 date carries the same).
fn httpdate(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = super::msgpack::civil_from_days(days);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days.rem_euclid(7)) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
