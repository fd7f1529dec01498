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
//! - Sessions (`pid` → sid, rooms) are written when a socket connects and when its rooms
//!   change, and their expiry is pushed back while it lives; a disconnect with a recoverable
//!   reason keeps them for the window. So a session survives its instance being killed.
//! - Restoring takes the session (GETDEL: once), follows its rooms, then reads the log after
//!   the client's offset, keeping the packets for its rooms.
//!
//! Bounds: the log is trimmed to the window (MINID) on every append and capped in length;
//! sessions and dedupe keys expire with the window.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use deadpool_redis::{redis, Pool};
use serde_json::Value;

use super::wire;
use crate::engineio::Sid;
use crate::socketio::adapter::{Offset, Restored, SessionRecord};
use crate::socketio::packet::Packet;

/// Appends a message to the log and publishes it. KEYS: log[, dedupe key]. ARGV: the message
/// (ending with an empty offset slot), window in ms, channel of the plain copy ("" for none),
/// channel of the copy with the offset[, dedupe ttl ms]. Returns the id, or nil when the
/// dedupe key shows another recorder wrote it.
pub(super) const RECORD: &str = r#"
if KEYS[2] and not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[5]) then
  return false
end
local t = redis.call('TIME')
local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[2])
if minid < 0 then minid = 0 end
local id = redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'm', ARGV[1])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[1]) end
redis.call('PUBLISH', ARGV[4], string.sub(ARGV[1], 1, -2) .. string.char(0xd9, #id) .. id)
return id
"#;

/// One call of [`RECORD`], sent by the publisher as `EVALSHA` once the script is loaded on its
/// connection (the text is ~500 bytes, sent for nothing on every recorded broadcast), or as
/// `EVAL` when it is not.
pub struct RecordCall {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl RecordCall {
    /// `EVALSHA sha ...` with the script's digest, `EVAL text ...` without.
    pub fn cmd(&self, sha: Option<&str>) -> redis::Cmd {
        let mut cmd = match sha {
            Some(sha) => {
                let mut c = redis::cmd("EVALSHA");
                c.arg(sha);
                c
            }
            None => {
                let mut c = redis::cmd("EVAL");
                c.arg(RECORD);
                c
            }
        };
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }
}

/// Most log entries read to restore one session; past it the client gets a fresh one.
const MAX_SCAN: usize = 20_000;
const PAGE: usize = 500;
/// Most entries kept in a log, whatever the window (a bound on memory under a burst).
pub const MAX_LOG: usize = 200_000;

pub struct Recovery {
    prefix: String,
    pub window: Duration,
    /// Sockets whose rooms changed since the last write of their sessions.
    dirty: Mutex<HashSet<(String, Sid)>>,
}

impl Recovery {
    pub fn new(prefix: &str, window: Duration) -> Self {
        Recovery {
            prefix: prefix.to_owned(),
            window,
            dirty: Mutex::default(),
        }
    }

    pub fn log_key(&self, nsp: &str) -> String {
        format!("{}-csr-log#{nsp}#", self.prefix)
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}-csr-session#{pid}", self.prefix)
    }

    pub fn seen_key(&self, nsp: &str, digest: &str) -> String {
        format!("{}-csr-seen#{nsp}#{digest}", self.prefix)
    }

    pub fn lease_key(&self, slot: usize) -> String {
        format!("{}-csr-recorder#{slot}", self.prefix)
    }

    /// How long a live session's key lasts without a refresh: the window after the last
    /// refresh, so a killed instance's sessions stay restorable for the whole window.
    pub fn live_ttl(&self) -> Duration {
        self.window + self.refresh_every()
    }

    pub fn refresh_every(&self) -> Duration {
        (self.window / 4).max(Duration::from_secs(1))
    }

    fn ms(d: Duration) -> u64 {
        d.as_millis() as u64
    }

    /// The script call recording `message` (see [`RECORD`]).
    pub fn record_call(
        &self,
        nsp: &str,
        message: &[u8],
        plain_channel: Option<&str>,
        recorded_channel: &str,
        dedupe: Option<&str>,
    ) -> RecordCall {
        let mut keys = vec![self.log_key(nsp)];
        keys.extend(dedupe.map(str::to_owned));
        let window = Self::ms(self.window).to_string().into_bytes();
        let mut args = vec![
            message.to_vec(),
            window.clone(),
            plain_channel.unwrap_or("").as_bytes().to_vec(),
            recorded_channel.as_bytes().to_vec(),
        ];
        if dedupe.is_some() {
            args.push(window);
        }
        RecordCall { keys, args }
    }

    /// `SET` of a session: `NX` when it opens, `XX` later (a restored session's key is gone and
    /// must not come back from a stale write).
    pub fn save_cmd(
        &self,
        record: &SessionRecord,
        ttl: Duration,
        create: bool,
    ) -> Option<redis::Cmd> {
        let body = serde_json::to_string(record).ok()?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.session_key(&record.pid))
            .arg(body)
            .arg(if create { "NX" } else { "XX" })
            .arg("PX")
            .arg(Self::ms(ttl));
        Some(cmd)
    }

    pub fn forget_cmd(&self, pid: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.session_key(pid));
        cmd
    }

    pub fn refresh_cmds(&self, pids: &[String]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for pid in pids {
            pipe.cmd("PEXPIRE")
                .arg(self.session_key(pid))
                .arg(Self::ms(self.live_ttl()))
                .arg("XX")
                .ignore();
        }
        pipe
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

    /// Takes the session `pid` if it belongs to `nsp` and `offset` is still in the log.
    pub async fn restore(
        &self,
        pool: &Pool,
        nsp: &str,
        pid: &str,
        offset: Offset,
    ) -> Option<Restored> {
        let mut c = pool.get().await.ok()?;
        // One round trip: the log lookup does not depend on the session's contents.
        let id = offset.to_string();
        type Entries = Vec<(String, HashMap<String, Vec<u8>>)>;
        let (raw, found): (Option<String>, Entries) = redis::pipe()
            .cmd("GETDEL")
            .arg(self.session_key(pid))
            .cmd("XRANGE")
            .arg(self.log_key(nsp))
            .arg(&id)
            .arg(&id)
            .query_async(&mut *c)
            .await
            .ok()?;
        let record: SessionRecord = serde_json::from_str(&raw?).ok()?;
        if record.nsp != nsp {
            return None;
        }
        if found.is_empty() {
            // Trimmed (older than the window) or never ours: what came after is unknown.
            return None;
        }
        Some(Restored {
            sid: record.sid,
            rooms: record.rooms,
            offset,
        })
    }

    /// The log after `offset` as a socket in `rooms` received it, each packet with its offset.
    pub async fn missed(
        &self,
        pool: &Pool,
        nsp: &str,
        rooms: &[String],
        offset: Offset,
    ) -> Option<Vec<(Offset, Packet)>> {
        let mut c = pool.get().await.ok()?;
        let rooms: HashSet<&str> = rooms.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        let mut after = offset;
        let mut scanned = 0;
        loop {
            let page: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(self.log_key(nsp))
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut *c)
                .await
                .ok()?;
            let n = page.len();
            for (id, fields) in page {
                let at: Offset = id.parse().ok()?;
                after = at;
                let Some(m) = fields.get("m") else { continue };
                let Ok(b) = wire::decode_broadcast(m) else {
                    continue;
                };
                let reaches = b.target.rooms.is_empty()
                    || b.target.rooms.iter().any(|r| rooms.contains(r.as_str()));
                let excluded = b.target.except.iter().any(|r| rooms.contains(r.as_str()));
                if b.nsp == nsp && reaches && !excluded {
                    out.push((at, with_offset(b.packet, at)));
                }
            }
            scanned += n;
            if n < PAGE {
                return Some(out);
            }
            if scanned >= MAX_SCAN {
                return None;
            }
        }
    }
}

/// The packet as a client receives it with recovery on: the offset is its last argument.
pub fn with_offset(mut packet: Packet, offset: Offset) -> Packet {
    if let Some(Value::Array(items)) = packet.data.as_mut() {
        items.push(Value::String(offset.to_string()));
    }
    packet
}
