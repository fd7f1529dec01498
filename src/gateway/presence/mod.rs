//! Presence: each user's overall status over all their sockets on all gateway instances.
//!
//! # What clients see
//!
//! A socket starts *active*. `presence:setAway` and `presence:setActive` (no payload; an ack,
//! if asked for, gets `{ok: true}`) change that socket only. A user is `"online"` while any of
//! their sockets, on any instance, is connected and active; `"away"` while they have sockets
//! and all are away; `"offline"` when the last one is gone.
//!
//! When that status changes, every `workspace:<id>` room the user's sockets are in gets
//! `presence:update {userId, status, lastSeen}`, whichever instance noticed; a workspace room
//! that gets its first socket of the user (a live membership change) is told the status too.
//! Delivery is **at least once**: no change is lost, but a client may be told a status it has
//! already (after a flap within one window, a Valkey outage, a crash), so it keeps the last one.
//! `lastSeen` is a number, milliseconds since the Unix epoch of the change: now for `online` /
//! `away`; for `offline`, when the last socket disconnected, or its dead instance's last
//! heartbeat. Clients read the first argument only (recovery may append an offset).
//!
//! # Timing
//!
//! - A disconnected socket counts for `presence.grace_ms` more (4 s), so a page reload (a new
//!   socket within the grace period, on any instance) shows no flap. A recovered socket (same
//!   id) keeps its state.
//! - Instances heartbeat every `presence.heartbeat_ms` (2 s). One silent for `presence.ttl_ms`
//!   (6 s) is dead (killed, frozen or cut off): the first live instance to claim it removes its
//!   entries and announces who goes offline, within `ttl_ms + heartbeat_ms` of a SIGKILL. Only
//!   an instance whose own previous heartbeat was on time claims others: after a Valkey stall
//!   every heartbeat is late, and nobody is dead for that. A clean shutdown makes the instance
//!   die `grace_ms` later, so its users have the grace period to reconnect elsewhere.
//! - Updates wait up to `presence.batch_ms` (250 ms; 0: at once) on the instance that decided
//!   them; then each workspace room gets its updates together (see `window.rs`).
//!
//! # Valkey (`P` = `{redis.prefix}-presence`; the scripts' headers give the details)
//!
//! - `P:user:<userId>` hash: `status`, `lastSeen` (ms), and one `p:<member>` field per instance
//!   with sockets of the user (their *part*: one active or all away, and their workspaces). A
//!   member is an instance's relay uid and a counter bumped whenever it (re)joins.
//!   `set_user.lua` sets a part and recomputes the status atomically, so two instances racing
//!   on one user never both miss a change. With no part left, `status` and `lastSeen` stay
//!   7 days (the app shows "last seen"), then the key expires.
//! - `P:ws:<workspaceId>` hash: userId → `online` / `away` for each user with a socket in the
//!   workspace. Written after each change by `set_workspace.lua`, with a version per entry in
//!   `{P:ws:<workspaceId>}:v`, so a late write from one instance never undoes a newer one.
//! - `P:members` hash: each member's deadline and last heartbeat, and its claimer once it is
//!   dead (`beat.lua`). `P:users:<member>`: the users with a part under the member, so whoever
//!   claims it finds them all; emptied and deleted as they are removed.
//!
//! Each script takes its keys in `KEYS` and touches one hash slot (ready for Valkey Cluster);
//! everything else is single-key commands, safe to repeat. Times come from Valkey (`TIME`).
//!
//! The app reads who is online with the client it has for `@socket.io/redis-emitter`:
//! `HGETALL socket.io-presence:ws:<workspaceId>` → `{userId: "online" | "away"}` (everyone else
//! is offline); `HMGET socket.io-presence:user:<userId> status lastSeen` (nil: not seen for 7
//! days). A user of an instance that just died stays listed until it is claimed.
//!
//! # Without Valkey
//!
//! With `redis.enabled = false` (one instance) the status comes from this instance's sockets
//! in memory, with the same events. When Valkey is enabled but unreachable, each instance
//! decides from its own sockets and tells only them: a user with sockets on two instances may
//! look offline on one. When Valkey answers again, the instance joins as a new member, copies
//! its parts, tells the rooms it told meanwhile Valkey's status, and removes its previous
//! member's entries (sockets gone meanwhile go offline). After Valkey restarts empty, the
//! copied parts count as changes: users' status is sent again.

mod hooks;
mod local;
mod queue;
mod store;
mod window;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::room_names::is_valid_room;
use crate::config::PresenceSettings;
pub use hooks::PresenceHooks;
use local::Workspaces;
use queue::ChangeQueue;
use relay::Relay;
use socketio::{Namespace, Socket};
use store::Store;
use worker::Worker;

/// How long a shutdown waits for the deregistration (so a dead Valkey cannot hold it up).
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The handle the socket callbacks use; the state lives in the presence task.
pub struct Presence {
    queue: Arc<ChangeQueue>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Presence {
    /// Starts presence for namespace `ns`: in Valkey through the relay's pool when `relay` is
    /// given (keys under `{redis_prefix}-presence`), else from this instance's memory.
    pub fn start(
        cfg: &PresenceSettings,
        ns: &Arc<Namespace>,
        relay: Option<&Arc<Relay>>,
        redis_prefix: &str,
    ) -> Arc<Presence> {
        let queue = Arc::new(ChangeQueue::default());
        let store = relay.map(|r| Store::new(r.valkey().clone(), redis_prefix, r.uid(), cfg.ttl()));
        let relay = relay.map_or_else(Default::default, Arc::downgrade);
        let worker = Worker::new(cfg, Arc::downgrade(ns), queue.clone(), store, relay);
        Arc::new(Presence {
            queue,
            task: Mutex::new(Some(tokio::spawn(worker.run()))),
        })
    }

    /// The end of a clean shutdown: stops the task once it has applied what is queued, and
    /// lets survivors take this instance's users over after the grace period.
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        self.queue.stop(done);
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
pub(crate) fn workspaces_of(socket: &Socket) -> Workspaces {
    socket
        .rooms()
        .iter()
        .filter(|r| is_valid_room(r))
        .filter_map(|r| r.strip_prefix("workspace:"))
        .map(str::to_owned)
        .collect()
}
