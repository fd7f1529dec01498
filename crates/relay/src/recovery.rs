//! Connection state recovery across instances: a shared log of broadcasts and the sessions
//! kept for reconnecting clients, both in Valkey.
//!
//! How it holds across the fleet:
//! - Every recoverable broadcast goes into one Valkey stream per namespace (the log); its
//!   entry id is the packet's offset. A gateway records its own broadcasts with a script
//!   that appends to the log and publishes in one step: a plain copy on the adapter's channel
//!   for Node peers, and a copy carrying the offset on the recovery channel
//!   (`{prefix}-csr#{nsp}#[room#]`).
//! - Broadcasts from the emitter and Node servers carry no offset. One or two gateways hold a
//!   recorder lease ([`super::recorder`]), receive them with PSUBSCRIBE and record them with
//!   the same script (and a dedupe key, so two recorders write each once).
//! - Gateways deliver only what arrives on the recovery channels, their own broadcasts
//!   included. Scripts run one at a time in Valkey, so those channels carry packets in log
//!   order: what a socket received is exactly the log up to its last offset, in its rooms.
//! - Sessions are kept in Valkey too ([`super::sessions`]), bound to their owner and holder.
//! - Restoring claims the session, follows its rooms, then reads the log after the client's
//!   offset, keeping the packets for the rooms the socket may still be in. Restores share what
//!   they read of the log ([`super::log_cache`]): a storm reads each entry once per instance.
//!
//! Bounds: the log is trimmed to the window (MINID) on every append and capped in length;
//! dedupe keys expire with the window.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis;

use crate::valkey::{Connection, Valkey};
use serde_json::Value;

use tokio::sync::Mutex as AsyncMutex;

use super::log_cache::{Entry, LogReader, Stretch};
use super::script::{Lua, ScriptCall};
use super::wire;
use engineio::Sid;
use socketio::packet::Packet;
use socketio::recovery::Offset;

/// Appends a message to the log and publishes it. KEYS: log[, dedupe key]. ARGV: the message
/// (ending with an empty offset slot), window in ms, channel of the plain copy ("" for none),
/// channel of the copy with the offset, the publishing command (PUBLISH, or SPUBLISH to a
/// channel in the log's slot)[, dedupe ttl ms]. Returns the id, or nil when the dedupe key
/// shows another recorder wrote it.
static RECORD: Lua = Lua::new(
    r#"
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[6]) then
  return false
end
local t = redis.call('TIME')
local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
if minid < 0 then minid = 0 end
local id = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'm', ARGV[1])
if ARGV[3] ~= '' then redis.call(ARGV[5], ARGV[3], ARGV[1]) end
redis.call(ARGV[5], ARGV[4], string.sub(ARGV[1], 1, -2) .. string.char(0xd9, #id) .. id)
return id
"#,
);

/// Most entries kept in a log, whatever the window (a bound on memory under a burst).
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
    /// PUBLISH, or SPUBLISH on sharded Pub/Sub.
    publish: &'static str,
    pub window: Duration,
    /// Sockets whose rooms changed since the last write of their sessions.
    dirty: Mutex<HashSet<(String, Sid)>>,
    /// What restores read of each namespace's log, shared by them.
    log: Mutex<HashMap<String, Arc<AsyncMutex<Stretch>>>>,
}

impl Recovery {
    pub fn new(prefix: &str, window: Duration, publish: &'static str) -> Self {
        Recovery {
            prefix: prefix.to_owned(),
            publish,
            window,
            dirty: Mutex::default(),
            log: Mutex::default(),
        }
    }

    /// The namespace's log. `{nsp}` is a hash tag: on a Cluster the log and its dedupe keys,
    /// which the record script writes together, live in one slot.
    pub fn log_key(&self, nsp: &str) -> String {
        format!("{}-csr-log#{{{nsp}}}#", self.prefix)
    }

    pub fn seen_key(&self, nsp: &str, digest: &str) -> String {
        format!("{}-csr-seen#{{{nsp}}}#{digest}", self.prefix)
    }

    /// Sharded Pub/Sub: the rooms of the fleet's live and kept sessions, scored by expiry
    /// (see `sharded_recording`).
    pub fn rooms_key(&self, nsp: &str) -> String {
        format!("{}-csr-rooms#{{{nsp}}}#", self.prefix)
    }

    pub fn lease_key(&self, slot: usize) -> String {
        format!("{}-csr-recorder#{slot}", self.prefix)
    }

    /// The script call recording `message` (see [`RECORD`]).
    pub fn record_call(
        &self,
        nsp: &str,
        message: &[u8],
        plain_channel: Option<&str>,
        recorded_channel: &str,
        dedupe: Option<&str>,
    ) -> ScriptCall {
        let mut keys = vec![self.log_key(nsp)];
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

    pub fn mark_dirty(&self, nsp: &str, sid: Sid) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((nsp.to_owned(), sid));
    }

    pub fn take_dirty(&self) -> HashSet<(String, Sid)> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether `offset` is still in the log of `nsp` (what came after it is then known).
    pub async fn in_log(&self, valkey: &Valkey, nsp: &str, offset: Offset) -> Option<bool> {
        let mut c = valkey.shared_connection().await.ok()?;
        let id = offset.to_string();
        type Entries = Vec<(String, HashMap<String, Vec<u8>>)>;
        let found: Entries = redis::cmd("XRANGE")
            .arg(self.log_key(nsp))
            .arg(&id)
            .arg(&id)
            .query_async(&mut c)
            .await
            .ok()?;
        Some(!found.is_empty())
    }

    /// The log after `offset` as a socket in `rooms` received it, each packet with its offset.
    /// `None` when it cannot all be given back (the log unreadable, an entry in the gap
    /// unreadable, the gap too long).
    pub async fn missed(
        &self,
        valkey: &Valkey,
        nsp: &str,
        rooms: &[String],
        offset: Offset,
    ) -> Option<Vec<(Offset, Packet)>> {
        let rooms: HashSet<&str> = rooms.iter().map(String::as_str).collect();
        let reaches = |b: &wire::RemoteBroadcast| {
            let to_room = b.target.rooms.is_empty()
                || b.target.rooms.iter().any(|r| rooms.contains(r.as_str()));
            let excluded = b.target.except.iter().any(|r| rooms.contains(r.as_str()));
            b.nsp == nsp && to_room && !excluded
        };
        let entries = self.since(valkey, nsp, offset).await?;
        Some(
            entries
                .into_iter()
                .filter(|(_, b)| reaches(b))
                .map(|(at, b)| (at, with_offset(b.packet.clone(), at)))
                .collect(),
        )
    }

    /// Every entry of the log after `offset`, read through the shared stretch. `None` when
    /// they cannot all be given: the log unreadable, the gap too long, or an entry unreadable
    /// (it may have been for the socket asking, so a restore is then refused).
    pub async fn since(
        &self,
        valkey: &Valkey,
        nsp: &str,
        offset: Offset,
    ) -> Option<Vec<(Offset, Arc<wire::RemoteBroadcast>)>> {
        let mut reader = ValkeyLog {
            conn: valkey.shared_connection().await.ok()?,
            key: self.log_key(nsp),
        };
        let stretch = self.stretch(nsp);
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

    fn stretch(&self, nsp: &str) -> Arc<AsyncMutex<Stretch>> {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.entry(nsp.to_owned()).or_default().clone()
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

/// The packet as a client receives it with recovery on: the offset is its last argument.
pub fn with_offset(mut packet: Packet, offset: Offset) -> Packet {
    if let Some(Value::Array(items)) = packet.data.as_mut() {
        items.push(Value::String(offset.to_string()));
    }
    packet
}
