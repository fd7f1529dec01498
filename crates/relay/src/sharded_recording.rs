//! Which rooms' channels an instance follows to record broadcasts on sharded Pub/Sub.
//!
//! Classic recorders PSUBSCRIBE every room's channel; sharded channels take no patterns, so a
//! broadcast from a Node server or the emitter to a room is recorded only by an instance
//! subscribed to that room's channel. Each instance follows, besides the rooms it has
//! members in:
//! - the rooms of its sockets that left recoverable, until their sessions expire ("kept");
//! - while it holds a recorder lease ([`super::recorder`]), every room of every instance's
//!   live and kept sessions ("fleet"): a set in Valkey (`{prefix}-csr-rooms#{nsp}#`, room →
//!   expiry in ms) each instance adds its rooms to. So a room whose only member's instance
//!   died is still recorded until the member is restored elsewhere.
//!
//! Recording writes each broadcast once whoever records it (dedupe keys).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use deadpool_redis::redis;

use super::channels;
use super::{Relay, RelayedNamespace};
use socketio::recovery::SessionRecord;

/// How often a lease holder reads the fleet's rooms.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// Most rooms per ZADD.
const CHUNK: usize = 500;

/// The rooms one namespace follows for recording, beyond its members'.
#[derive(Default)]
pub struct RoomsToRecord {
    inner: Mutex<Rooms>,
}

#[derive(Default)]
struct Rooms {
    /// Rooms of sockets that left recoverable, until their sessions expire.
    kept: HashMap<String, Instant>,
    /// The fleet's rooms, while this instance holds a recorder lease.
    fleet: HashSet<String>,
    /// Rooms created here since they were last added to the fleet's set.
    created: HashSet<String>,
}

impl RoomsToRecord {
    fn lock(&self) -> MutexGuard<'_, Rooms> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn follows(&self, room: &str) -> bool {
        let rooms = self.lock();
        rooms.kept.contains_key(room) || rooms.fleet.contains(room)
    }

    pub fn all(&self) -> Vec<String> {
        let rooms = self.lock();
        let mut all: HashSet<&String> = rooms.kept.keys().collect();
        all.extend(&rooms.fleet);
        all.into_iter().cloned().collect()
    }

    pub fn created(&self, rooms: &[std::sync::Arc<str>]) {
        self.lock()
            .created
            .extend(rooms.iter().map(|r| r.to_string()));
    }
}

impl Relay {
    /// Follows the rooms of a session that left recoverable for its window.
    pub(crate) fn keep_rooms(&self, record: &SessionRecord) {
        let (Some(space), Some(recovery)) = (self.space(&record.nsp), &self.recovery) else {
            return;
        };
        let until = Instant::now() + recovery.window;
        let mut rooms = space.recording.lock();
        for room in &record.rooms {
            rooms.kept.insert(room.clone(), until);
        }
        drop(rooms);
        self.recording_changed(space, record.rooms.iter());
    }

    /// Lets the kept rooms whose sessions expired go.
    pub(crate) fn forget_expired_rooms(&self) {
        let now = Instant::now();
        for space in &self.spaces {
            let mut expired = Vec::new();
            space.recording.lock().kept.retain(|room, until| {
                let keep = *until > now;
                if !keep {
                    expired.push(room.clone());
                }
                keep
            });
            self.recording_changed(space, expired.iter());
        }
    }

    fn recording_changed<'a>(
        &self,
        space: &RelayedNamespace,
        rooms: impl Iterator<Item = &'a String>,
    ) {
        let base = &space.channels.broadcast;
        self.interest
            .changed(rooms.map(|room| channels::room_in(base, room)));
    }

    /// Adds this instance's rooms to the fleet's set: the ones created since the last call, or
    /// with `all` every room it has members in or keeps (their expiry pushed back), and drops
    /// the expired ones from the set.
    pub(crate) async fn share_rooms(&self, all: bool) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let expiry = now_ms() + recovery.window.as_millis() as u64;
        let Ok(mut c) = self.valkey.connection().await else {
            return;
        };
        for space in &self.spaces {
            let rooms: Vec<String> = {
                let mut rooms = space.recording.lock();
                let created = std::mem::take(&mut rooms.created);
                if all {
                    let mut every: HashSet<String> = rooms.kept.keys().cloned().collect();
                    if let Some(ns) = space.ns.upgrade() {
                        every.extend(ns.rooms.all_rooms().iter().map(|r| r.to_string()));
                    }
                    every.into_iter().collect()
                } else {
                    created.into_iter().collect()
                }
            };
            let rooms: Vec<String> = rooms
                .into_iter()
                .filter(|r| space.channels.room_has_channel(r))
                .collect();
            let key = recovery.rooms_key(&space.name);
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for chunk in rooms.chunks(CHUNK) {
                let cmd = pipe.cmd("ZADD").arg(&key);
                for room in chunk {
                    cmd.arg(expiry).arg(room);
                }
            }
            if all {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now_ms());
            }
            if pipe.is_empty() {
                continue;
            }
            if let Err(e) = c.pipeline(&pipe).await {
                tracing::warn!(error = %e, "relay: cannot share the rooms to record");
                return;
            }
        }
    }

    /// Stops following the fleet's rooms (the recorder lease was lost).
    pub(crate) fn forget_fleet_rooms(&self) {
        for space in &self.spaces {
            let fleet = std::mem::take(&mut space.recording.lock().fleet);
            self.recording_changed(space, fleet.iter());
        }
    }
}

/// While this instance holds a recorder lease: follows the fleet's rooms (the task is
/// aborted when the lease is lost; [`Relay::forget_fleet_rooms`] then lets them go).
pub async fn follow_fleet_rooms(relay: Weak<Relay>) {
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tick.tick().await;
        let Some(r) = relay.upgrade() else { return };
        let Some(recovery) = &r.recovery else { return };
        let Ok(mut c) = r.valkey.shared_connection().await else {
            continue;
        };
        for space in &r.spaces {
            let now: Result<Vec<String>, _> = redis::cmd("ZRANGE")
                .arg(recovery.rooms_key(&space.name))
                .arg(now_ms())
                .arg("+inf")
                .arg("BYSCORE")
                .query_async(&mut c)
                .await;
            let Ok(now) = now else { continue };
            let now: HashSet<String> = now.into_iter().collect();
            let changed: Vec<String> = {
                let mut rooms = space.recording.lock();
                let changed = rooms.fleet.symmetric_difference(&now).cloned().collect();
                rooms.fleet = now;
                changed
            };
            r.recording_changed(space, changed.iter());
        }
    }
}

fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_millis() as u64)
}
