//! Presence: each user's overall status over all their sockets on all gateway instances.
//!
//! # What clients see
//!
//! A socket starts *active*. `presence:setAway` and `presence:setActive` (no payload; an ack,
//! if asked for, gets `{ok: true}`) change that socket only. A user is
//! - `"online"` while any of their sockets, on any instance, is connected and active,
//! - `"away"` while they have sockets and all of them are away,
//! - `"offline"` when the last one is gone.
//!
//! When that overall status changes, every `workspace:<id>` room the user's sockets are in
//! gets `presence:update {userId, status, lastSeen}` once, whichever instance noticed. A
//! workspace room that gets its first socket of an already-online user (a live membership
//! change) is told the current status too. `lastSeen` is a number: milliseconds since the
//! Unix epoch of the change, i.e. now for `online`/`away`; for `offline`, when the last socket
//! disconnected, or, when its instance died, that instance's last heartbeat. (A number rather
//! than an ISO string: it compares and subtracts without parsing, and `new Date(lastSeen)`
//! reads it.) Clients should read the first argument only (recovery may append an offset).
//!
//! # Timing
//!
//! - A disconnected socket keeps counting for `presence.grace_ms` (default 4 s), so a page
//!   reload (disconnect, then a new socket within the grace period, on any instance) shows no
//!   offline/online flap. A recovered socket (same id) simply keeps its state.
//! - Every instance heartbeats every `presence.heartbeat_ms` (2 s). One silent for
//!   `presence.ttl_ms` (6 s) is dead (killed, frozen or cut off): the first live instance to
//!   claim it removes its sockets and broadcasts `offline` for users with no other socket.
//!   After a SIGKILL, users go offline within `ttl_ms + heartbeat_ms` (measured: about 6 s
//!   with the defaults). Until it is claimed, a silent instance's sockets still count, and only
//!   an instance whose own previous heartbeat is recent claims others: a Valkey stall makes
//!   every heartbeat late, and nobody is dead for that.
//! - A clean shutdown marks the instance as expiring `grace_ms` later, so its users have the
//!   grace period to reconnect elsewhere before a survivor removes them.
//! - Updates wait up to `presence.batch_ms` (250 ms; 0: sent at once): the first change
//!   opens a window on the instance that decided it, and when it closes, each workspace room
//!   gets its updates together, each recipient all of them in one write (see `coalesce.rs`).
//!   Within the window only a user's last change counts, with the status and `lastSeen`
//!   Valkey has when the window closes (so a window cannot deliver an update after a newer
//!   one from another instance); a flap that ends where this instance last left the room
//!   (online → away → online) is not sent when the script's counter proves nobody else told
//!   the room anything meanwhile. So every time above is up to `batch_ms` later, and under a
//!   connect storm a room's members get about one write per window instead of one per user.
//!
//! # Valkey layout (`P` = `{redis.prefix}-presence`, e.g. `socket.io-presence`)
//!
//! Every change is one call of a Lua script (`presence.lua`, run by `store.rs`) that sets one
//! socket's state, recomputes the user's status and says whether it changed, atomically: two
//! instances racing on one user never both broadcast a change, nor both miss it.
//! - `P:user:<userId>` hash: `status` (`online`/`away`/`offline`), `lastSeen` (ms), and one
//!   `s:<member>:<socketId>` field per socket (internal: `a` or `w`, then its workspace ids).
//!   When the last socket goes, `status` and `lastSeen` stay for 7 days (so the app can show
//!   "last seen"), then the key expires.
//! - `P:ann:<userId>` hash, internal, living as long as the user's key: `v` counts the user's
//!   announcements (changes and first news to a room), `by` and `at` say who made the last
//!   one and when, `ot` when another member last did: what lets an instance coalescing
//!   updates prove that a flap is invisible.
//! - `P:ws:<workspaceId>` hash: userId → `online` / `away` for each user with a socket in the
//!   workspace; a user not listed is offline. Entries go with the user's last socket there.
//! - Internal: `P:instances` sorted set (member → last heartbeat, ms), `P:reaping` hash (claimed
//!   members being removed: claim time and last heartbeat), `P:left` hash (when a member shut
//!   down cleanly), `P:sockets:<member>` set (`<socketId>|<userId>` of one member's sockets, so
//!   a survivor knows what to remove). A member is the relay's instance id plus a counter that
//!   grows whenever the instance rebuilds its entries.
//!
//! Bounded: sockets are removed by their instance after the grace period, or by a survivor
//! when their instance dies; a survivor that dies while removing them is replaced once its
//! claim is `ttl_ms` old; leftovers of a member that is neither live nor being removed are
//! deleted when next seen; an offline user's key expires after 7 days. Times come from
//! Valkey (`TIME`), so the instances' clocks need not agree. The script computes key names,
//! so it needs one Valkey (or a primary with replicas), not Valkey Cluster.
//!
//! # For the app: who is online in a workspace
//!
//! With the client it already has for `@socket.io/redis-emitter`:
//! `HGETALL socket.io-presence:ws:<workspaceId>` → `{userId: "online" | "away"}`; everyone
//! else in the workspace is offline. `HMGET socket.io-presence:user:<userId> status lastSeen`
//! gives one user's status and the time of its last change (nil: not seen for 7 days). A user
//! of an instance that just died stays listed until it is claimed (`ttl_ms + heartbeat_ms`).
//!
//! # Without Valkey
//!
//! With `redis.enabled = false` (a single instance) the status comes from this instance's
//! sockets, in memory; the events behave as above, but nothing is readable in Valkey.
//! When Valkey is enabled but unreachable, each instance falls back to its own sockets and
//! tells only its own sockets (the relay is down too): a user with sockets on two instances
//! may look offline on one of them. When Valkey answers again (at the next heartbeat, or the
//! next change once the relay is back), the instance rewrites its entries from memory under a
//! new member, removes those of sockets that left meanwhile, and sends Valkey's status where
//! it announced a different one. After Valkey restarts empty, the rebuilt entries count as
//! changes: users' current status is broadcast again once.

mod coalesce;
mod local;
mod store;
mod worker;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::rooms::is_valid_room;
use super::state::SocketState;
use super::Gateway;
use crate::config::PresenceConfig;
use local::Local;
use relay::Relay;
use socketio::{AckSender, Namespace, Socket};
use store::Store;
use worker::{Op, Worker};

/// How long a shutdown waits for the deregistration (so a dead Valkey cannot hold it up).
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The handle the socket callbacks use; the state lives in the presence task.
pub struct Presence {
    tx: mpsc::UnboundedSender<Op>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Presence {
    /// Starts presence for namespace `ns`: in Valkey through the relay's pool when `relay` is
    /// given (keys under `{redis_prefix}-presence`), else from this instance's memory.
    pub fn start(
        cfg: &PresenceConfig,
        ns: &Arc<Namespace>,
        relay: Option<&Arc<Relay>>,
        redis_prefix: &str,
    ) -> Arc<Presence> {
        let store = relay.map(|r| Store::new(r.pool().clone(), redis_prefix, r.uid(), cfg.ttl()));
        let (tx, task) = worker::spawn(Worker {
            ns: Arc::downgrade(ns),
            grace: cfg.grace(),
            heartbeat: cfg.heartbeat(),
            local: Local::default(),
            store,
            relay: relay.map_or_else(Weak::new, Arc::downgrade),
            synced: false,
            registered: false,
            retired: Vec::new(),
            announced: Default::default(),
            failure_logged: false,
            next_attempt: tokio::time::Instant::now(),
            batch: cfg.batch(),
            coalescer: coalesce::Coalescer::new(cfg.batch()),
            window_ends: None,
        });
        Arc::new(Presence {
            tx,
            task: Mutex::new(Some(task)),
        })
    }

    fn send(&self, op: Op) {
        // Fails only once the task has stopped (shutdown): nothing is left to update.
        let _ = self.tx.send(op);
    }

    /// The end of a clean shutdown: stops the task and lets survivors take this instance's
    /// users over after the grace period.
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        self.send(Op::Stop(done));
        if tokio::time::timeout(STOP_TIMEOUT, wait).await.is_err() {
            tracing::warn!("presence: shutdown timed out");
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// The ids of the `workspace:<id>` rooms a socket is in, sorted (the rooms are the truth:
/// they follow live membership changes made through the app's emitter).
pub(crate) fn workspaces_of(socket: &Socket) -> Vec<String> {
    let mut out: Vec<String> = socket
        .rooms()
        .iter()
        .filter(|r| is_valid_room(r))
        .filter_map(|r| r.strip_prefix("workspace:"))
        .map(str::to_owned)
        .collect();
    out.sort();
    out.dedup();
    out
}

impl Gateway {
    /// Wires presence in (once, at start, after the relay): until then the hooks do nothing.
    pub fn attach_presence(&self, presence: Arc<Presence>) -> bool {
        self.presence.set(presence).is_ok()
    }

    pub(super) fn presence_connect(&self, socket: &Arc<Socket>, state: &SocketState) {
        if let Some(p) = self.presence.get() {
            state.in_presence.store(true, Ordering::Release);
            p.send(Op::Connect {
                socket: Arc::downgrade(socket),
                user: state.user.id.clone(),
            });
        }
    }

    /// `presence:setAway` (`away`) / `presence:setActive`. Any payload is ignored.
    pub(super) fn presence_set(&self, socket: &Arc<Socket>, away: bool, ack: Option<AckSender>) {
        if let Some(p) = self.presence.get() {
            p.send(Op::Set {
                sid: socket.id,
                away,
                workspaces: workspaces_of(socket),
            });
        }
        if let Some(ack) = ack {
            ack.send(vec![json!({ "ok": true })]);
        }
    }

    /// A socket's rooms changed: its workspaces, where its user's updates go, follow (a live
    /// membership change through the app's emitter, or re-validation).
    pub(super) fn presence_rooms(&self, socket: &Socket, state: &SocketState) {
        if let Some(p) = self.presence.get() {
            if state.in_presence.load(Ordering::Acquire) {
                p.send(Op::Rooms {
                    sid: socket.id,
                    workspaces: workspaces_of(socket),
                });
            }
        }
    }

    pub(super) fn presence_disconnect(&self, socket: &Arc<Socket>) {
        if let Some(p) = self.presence.get() {
            p.send(Op::Disconnect { sid: socket.id });
        }
    }
}
