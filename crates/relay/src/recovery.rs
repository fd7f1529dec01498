//! Connection state recovery across instances: a shared log of broadcasts and the sessions
//! kept for reconnecting clients, both in Valkey.
//!
//! How it holds across the fleet:
//! - Every recoverable broadcast goes into the namespace's log, split into partitions (one
//!   Valkey stream each, `recovery.log_partitions`, so on a Cluster the log spreads over slots):
//!   a broadcast to one room goes into that room's partition, any other into the first
//!   ([`Channels::partition_of`]). Its entry id is its place there. A gateway records its own
//!   broadcasts with a script that appends to the partition and publishes in one step: a plain
//!   copy on the adapter's channel for Node peers, and a copy carrying the id on the recovery
//!   channel (`{prefix}-csr#{nsp}#[room#]`; sharded, in the partition's slot).
//! - Broadcasts from the emitter and Node servers carry no id. One or two gateways hold a
//!   recorder lease ([`super::recorder`]), receive them with PSUBSCRIBE and record them with
//!   the same script (and a dedupe key, so two recorders write each once).
//! - Gateways deliver only what arrives on the recovery channels, their own broadcasts
//!   included. Scripts run one at a time in Valkey, so those channels carry each partition in
//!   its order. An instance delivers them in one serial order and stamps each packet with its
//!   frontier: the last id it delivered of each partition ([`Frontier`]). What a socket
//!   received is then exactly each partition up to the stamp of the last packet it got, in
//!   its rooms, and that stamp is the client's offset.
//! - A partition this instance hears nothing from would keep an old id in every stamp, and a
//!   restore would take packets from before the socket joined for missed ones. So a
//!   partition quiet here for [`MARK_EVERY`], and the partition of every room this instance
//!   starts following, gets a marker: a script publishes its last id on its recovery channel,
//!   behind everything recorded before it, and every instance moves its frontier there when
//!   the marker arrives.
//! - Sessions are kept in Valkey too ([`super::sessions`]), bound to their owner and holder.
//! - Restoring claims the session, follows its rooms, then reads each partition after the
//!   client's offset, keeping the packets for the rooms the socket may still be in. Restores
//!   share what they read of the log ([`super::log_cache`]): a storm reads each entry once per
//!   instance. Before the socket goes live, this instance's frontier must reach what the
//!   replay gave (a marker brings it there), so no later stamp moves the client's offset back.
//!
//! The guarantee: a restored client gets exactly the recorded packets it missed in its rooms,
//! once, in order within each partition, so in order per room for broadcasts to one room.
//! Broadcasts to no room or to several rooms are in order among themselves; the replay merges
//! partitions by their ids' time. With one partition the order is the log's, as before.
//!
//! Bounds: each partition is trimmed to the window (MINID) on every append and capped in
//! length; dedupe keys expire with the window.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis;
use futures_util::future::join_all;

use crate::valkey::{Connection, Valkey};

use tokio::sync::Mutex as AsyncMutex;

use super::channels::log_tag;
use super::log_cache::{Entry, LogReader, Stretch};
use super::script::{Lua, ScriptCall};
use super::wire;
use engineio::Sid;
use socketio::recovery::{stamped, Frontier, Missed, Offset, Position};

/// Appends a message to a partition of the log and publishes it. KEYS: the partition[, dedupe
/// key]. ARGV: the message (ending with an empty offset slot), window in ms, channel of the
/// plain copy ("" for none), channel of the copy with the offset, the publishing command
/// (PUBLISH, or SPUBLISH to a channel in the partition's slot)[, dedupe ttl ms]. Returns the
/// id, or nil when the dedupe key shows another recorder wrote it.
///
/// The copy with the offset, which gateways deliver, goes first: a Cluster node forwards each
/// message to the others on bus links with Nagle's algorithm on, so a second message right
/// behind the first can wait ~40 ms for the other node's delayed ACK.
static RECORD: Lua = Lua::new(
    r#"
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[6]) then
  return false
end
local t = redis.call('TIME')
local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
if minid < 0 then minid = 0 end
local id = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'm', ARGV[1])
redis.call(ARGV[5], ARGV[4], string.sub(ARGV[1], 1, -2) .. string.char(0xd9, #id) .. id)
if ARGV[3] ~= '' then redis.call(ARGV[5], ARGV[3], ARGV[1]) end
return id
"#,
);

/// Whether nothing recorded in a partition after the client's last id in it is gone. KEYS: the
/// partition. ARGV: that id (`0-0` for none). The id is still there, or it was the last entry
/// trimmed (the trimming only ever takes the oldest); a partition that does not exist held
/// nothing the client got, or lost its data.
static WHOLE_AFTER: Lua = Lua::new(
    r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return ARGV[1] == '0-0' and 1 or 0
end
if ARGV[1] ~= '0-0' and #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) > 0 then
  return 1
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then
    return info[i + 1] == ARGV[1] and 1 or 0
  end
end
return 0
"#,
);

/// Publishes a partition's marker: `mark:<partition>:<its last id>`, behind everything recorded
/// in it. KEYS: the partition. ARGV: channel, publishing command, partition.
static MARK: Lua = Lua::new(
    r#"
local id = '0-0'
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then id = info[i + 1] end
  end
end
redis.call(ARGV[2], ARGV[1], 'mark:' .. ARGV[3] .. ':' .. id)
return id
"#,
);

/// A partition that delivered nothing here for this long gets a marker (see the module docs).
pub const MARK_EVERY: Duration = Duration::from_secs(1);

/// Most entries kept in a partition, whatever the window (a bound on memory under a burst).
pub const MAX_LOG: usize = 200_000;

/// How long past the window the shared stretch keeps entries in memory (a clock skew between
/// Valkey, whose clock makes the ids, and this instance).
const KEEP_MARGIN: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_millis() as u64)
}

pub struct Recovery {
    prefix: String,
    /// Into how many streams each namespace's log is split.
    partitions: usize,
    /// PUBLISH, or SPUBLISH on sharded Pub/Sub.
    publish: &'static str,
    pub window: Duration,
    /// Sockets whose rooms changed since the last write of their sessions.
    dirty: Mutex<HashSet<(String, Sid)>>,
    /// What restores read of each partition of each namespace's log, shared by them (by the
    /// partition's key).
    log: Mutex<HashMap<String, Arc<AsyncMutex<Stretch>>>>,
}

impl Recovery {
    pub fn new(prefix: &str, window: Duration, publish: &'static str, partitions: usize) -> Self {
        Recovery {
            prefix: prefix.to_owned(),
            partitions: partitions.max(1),
            publish,
            window,
            dirty: Mutex::default(),
            log: Mutex::default(),
        }
    }

    pub fn partitions(&self) -> usize {
        self.partitions
    }

    /// A partition of the namespace's log. Its [`log_tag`] is a hash tag: on a Cluster the
    /// partition and its dedupe keys, which the record script writes together, live in one
    /// slot, and the partitions spread over slots.
    pub fn log_key(&self, nsp: &str, partition: usize) -> String {
        format!("{}-csr-log#{{{}}}#", self.prefix, log_tag(nsp, partition))
    }

    pub fn seen_key(&self, nsp: &str, partition: usize, digest: &str) -> String {
        let tag = log_tag(nsp, partition);
        format!("{}-csr-seen#{{{tag}}}#{digest}", self.prefix)
    }

    /// Sharded Pub/Sub: the rooms of the fleet's live and kept sessions, scored by expiry
    /// (see `sharded_recording`).
    pub fn rooms_key(&self, nsp: &str) -> String {
        format!("{}-csr-rooms#{{{nsp}}}#", self.prefix)
    }

    pub fn lease_key(&self, slot: usize) -> String {
        format!("{}-csr-recorder#{slot}", self.prefix)
    }

    /// The script call recording `message` in `partition` (see [`RECORD`]).
    pub fn record_call(
        &self,
        nsp: &str,
        partition: usize,
        message: &[u8],
        plain_channel: Option<&str>,
        recorded_channel: &str,
        dedupe: Option<&str>,
    ) -> ScriptCall {
        let mut keys = vec![self.log_key(nsp, partition)];
        keys.extend(dedupe.map(str::to_owned));
        let window = self.window.as_millis().to_string().into_bytes();
        let mut args = vec![
            message.to_vec(),
            window.clone(),
            plain_channel.unwrap_or("").as_bytes().to_vec(),
            recorded_channel.as_bytes().to_vec(),
            self.publish.as_bytes().to_vec(),
        ];
        if dedupe.is_some() {
            args.push(window);
        }
        RECORD.call(keys, args)
    }

    /// The script call publishing the marker of `partition` on `channel`, its recovery
    /// channel (see [`MARK`]).
    pub fn mark_call(&self, nsp: &str, partition: usize, channel: &str) -> ScriptCall {
        let args = [channel, self.publish, &partition.to_string()];
        MARK.call(
            vec![self.log_key(nsp, partition)],
            args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        )
    }

    pub fn mark_dirty(&self, nsp: &str, sid: Sid) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((nsp.to_owned(), sid));
    }

    pub fn take_dirty(&self) -> HashSet<(String, Sid)> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the log of `nsp` still holds everything after `frontier` in each partition
    /// (what came after it is then known). `None` when it cannot be read.
    pub async fn whole_after(
        &self,
        valkey: &Valkey,
        nsp: &str,
        frontier: &Frontier,
    ) -> Option<bool> {
        if frontier.partitions() != self.partitions {
            return Some(false);
        }
        // All at once: on one node they go out pipelined on the shared connection, on a
        // Cluster to their slots' primaries side by side; a restore waits one round trip.
        let checks = (0..self.partitions).map(|partition| {
            self.partition_whole_after(valkey, nsp, partition, frontier.get(partition))
        });
        // A partition whose offset is gone decides, even if another could not be read.
        let wholes = join_all(checks).await;
        if wholes.contains(&Some(false)) {
            Some(false)
        } else if wholes.contains(&None) {
            None
        } else {
            Some(true)
        }
    }

    /// [`Recovery::whole_after`] for one partition.
    pub async fn partition_whole_after(
        &self,
        valkey: &Valkey,
        nsp: &str,
        partition: usize,
        after: Offset,
    ) -> Option<bool> {
        let mut c = valkey.shared_connection().await.ok()?;
        let call = WHOLE_AFTER.call(
            vec![self.log_key(nsp, partition)],
            vec![after.to_string().into_bytes()],
        );
        let whole: i64 = call.invoke(&mut c).await.ok()?;
        Some(whole == 1)
    }

    /// The log after `from` as a socket in `rooms` received it: each packet carrying the
    /// client's offset once it has it, each partition in order, partitions merged by their
    /// ids' time. `None` when it cannot all be given back (a partition unreadable, an entry in
    /// the gap unreadable, the gap too long).
    pub async fn missed(
        &self,
        valkey: &Valkey,
        nsp: &str,
        rooms: &[String],
        from: &Frontier,
    ) -> Option<Missed> {
        let rooms: HashSet<&str> = rooms.iter().map(String::as_str).collect();
        let reaches = |b: &wire::RemoteBroadcast| {
            let to_room = b.target.rooms.is_empty()
                || b.target.rooms.iter().any(|r| rooms.contains(r.as_str()));
            let excluded = b.target.except.iter().any(|r| rooms.contains(r.as_str()));
            b.nsp == nsp && to_room && !excluded
        };
        // Every partition read at once, as in `whole_after`.
        let reads = (0..self.partitions)
            .map(|partition| self.since(valkey, nsp, partition, from.get(partition)));
        let mut found = Vec::new();
        for (partition, entries) in join_all(reads).await.into_iter().enumerate() {
            let entries = entries?;
            found.extend(
                entries
                    .into_iter()
                    .filter(|(_, b)| reaches(b))
                    .map(|(id, b)| (Position { partition, id }, b)),
            );
        }
        // Stable: within a partition the ids grow, so its order stays.
        found.sort_by_key(|(at, _)| at.id);
        let mut through = from.clone();
        let packets = found
            .into_iter()
            .map(|(at, b)| {
                through.advance(at);
                stamped(b.packet.clone(), &through)
            })
            .collect();
        Some(Missed { packets, through })
    }

    /// Every entry of a partition after `offset`, read through its shared stretch. `None` when
    /// they cannot all be given: the log unreadable, the gap too long, or an entry unreadable
    /// (it may have been for the socket asking, so a restore is then refused).
    pub async fn since(
        &self,
        valkey: &Valkey,
        nsp: &str,
        partition: usize,
        offset: Offset,
    ) -> Option<Vec<(Offset, Arc<wire::RemoteBroadcast>)>> {
        let key = self.log_key(nsp, partition);
        let stretch = self.stretch(&key);
        let mut reader = ValkeyLog {
            conn: valkey.shared_connection().await.ok()?,
            key,
        };
        let mut stretch = stretch.lock().await;
        // Stream ids are Valkey's clock in ms; the margin covers a skew with ours.
        let window_ms = (self.window + KEEP_MARGIN).as_millis() as u64;
        stretch.forget_before(Offset(now_ms().saturating_sub(window_ms), 0));
        let gap = stretch.gap(&mut reader, offset).await?;
        gap.iter().map(|(at, b)| Some((*at, b.clone()?))).collect()
    }

    /// Drops the shared stretches no restore used lately (see [`Stretch::forget_if_idle`]);
    /// one a restore is reading is left alone.
    pub fn forget_idle(&self) {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        for stretch in log.values() {
            if let Ok(mut stretch) = stretch.try_lock() {
                stretch.forget_if_idle();
            }
        }
    }

    fn stretch(&self, key: &str) -> Arc<AsyncMutex<Stretch>> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stretch) = log.get(key) {
            return stretch.clone();
        }
        log.entry(key.to_owned()).or_default().clone()
    }
}

/// The log in Valkey, read for [`Stretch::gap`].
struct ValkeyLog {
    conn: Connection,
    key: String,
}

impl LogReader for ValkeyLog {
    async fn read(
        &mut self,
        after: Offset,
        until: Option<Offset>,
        count: usize,
    ) -> Option<Vec<Entry>> {
        let page: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
            .arg(&self.key)
            .arg(format!("({after}"))
            .arg(until.map_or_else(|| "+".to_owned(), |u| u.to_string()))
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn)
            .await
            .ok()?;
        page.into_iter()
            .map(|(id, fields)| {
                let at: Offset = id.parse().ok()?;
                let b = fields.get("m").and_then(|m| wire::decode_broadcast(m).ok());
                Some((at, b.map(Arc::new)))
            })
            .collect()
    }
}

/// A marker's partition and id (see [`MARK`]), or `None` for any other message.
pub fn parse_mark(payload: &[u8]) -> Option<(usize, Offset)> {
    let rest = std::str::from_utf8(payload.strip_prefix(b"mark:")?).ok()?;
    let (partition, id) = rest.split_once(':')?;
    Some((partition.parse().ok()?, id.parse().ok()?))
}
