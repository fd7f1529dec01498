//! Kept sessions of connection state recovery, in Valkey: whose each one is, which connection
//! holds it, its rooms.
//!
//! Keys (`P` = `{prefix}-csr`; `{owner}` is a hash tag, so one user's keys share a slot):
//! - `P-session#{<owner>}#<pid>`: a hash `{owner, nsp, sid, holder, host, rooms}` (`rooms` a
//!   JSON array), expiring with the recovery window once its socket is gone;
//! - `P-owner#{<owner>}`: the set of the owner's pids, so a change aimed at a user (the app's
//!   `socketsLeave`, `disconnectSockets`) reaches their kept sessions too.
//!
//! The rules that make a session safe to hand back:
//! - **Bound to its owner.** A claim looks only under the claiming user's own keys, and the
//!   script checks the owner and namespace again: another user's pid finds nothing.
//! - **One holder.** A claim makes the claiming connection the holder; every later write
//!   (rooms, expiry at the close, deletion) carries its writer's holder token and is ignored
//!   when it is not the current one. So a stale connection of the same session (half-open, or
//!   on a frozen instance that wakes up) can never overwrite or delete it.
//! - **Deletion leaves a tombstone** (`holder` = "") for the window, so a stale writer cannot
//!   bring a deleted session back either.

use std::time::Duration;

use deadpool_redis::redis;
use serde_json::Value;

use super::script::{Lua, ScriptCall};
use crate::valkey::{Valkey, ValkeyError};
use engineio::Sid;
use socketio::recovery::{Claim, SessionRecord};

/// Writes a session if its key is absent or its holder is the writer. KEYS: session, owner
/// set. ARGV: holder, owner, nsp, sid, host, rooms, ttl ms, pid.
static SAVE: Lua = Lua::new(
    r#"
local cur = redis.call('HGET', KEYS[1], 'holder')
if cur and cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'owner', ARGV[2], 'nsp', ARGV[3],
  'sid', ARGV[4], 'host', ARGV[5], 'rooms', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SADD', KEYS[2], ARGV[8])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[7]) then redis.call('PEXPIRE', KEYS[2], ARGV[7]) end
return 1
"#,
);

/// Deletes a session (leaving a tombstone) unless another connection holds it. KEYS:
/// session, owner set. ARGV: holder, pid, tombstone ttl ms.
static FORGET: Lua = Lua::new(
    r#"
local cur = redis.call('HGET', KEYS[1], 'holder')
if cur and cur ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'holder', '')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"#,
);

/// Hands a session of this owner and namespace to a new holder. KEYS: session. ARGV: owner,
/// nsp, new holder, host, ttl ms. Returns {sid, rooms, previous holder, previous host}, or
/// nil.
static CLAIM: Lua = Lua::new(
    r#"
local f = redis.call('HMGET', KEYS[1], 'owner', 'nsp', 'sid', 'rooms', 'holder', 'host')
if f[1] ~= ARGV[1] or f[2] ~= ARGV[2] or not f[3] or not f[4] then return false end
redis.call('HSET', KEYS[1], 'holder', ARGV[3], 'host', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {f[3], f[4], f[5] or '', f[6] or ''}
"#,
);

/// Applies a change to every kept session of one owner in one namespace. KEYS: owner set.
/// ARGV: the owner's session key prefix, nsp, op (join | leave | forget), tombstone ttl ms,
/// rooms... Pids whose session is gone are dropped from the set.
///
/// The one script touching keys it was not given: the sessions are found in the set, inside
/// the script, so that one found late is not missed. They carry the owner's hash tag like the
/// set, and a Cluster lets a script use undeclared keys of its declared keys' slot.
static CHANGE: Lua = Lua::new(
    r#"
local pids = redis.call('SMEMBERS', KEYS[1])
for _, pid in ipairs(pids) do
  local key = ARGV[1] .. pid
  local f = redis.call('HMGET', key, 'nsp', 'rooms')
  if not f[2] then
    redis.call('SREM', KEYS[1], pid)
  elseif f[1] == ARGV[2] then
    if ARGV[3] == 'forget' then
      redis.call('DEL', key)
      redis.call('HSET', key, 'holder', '')
      redis.call('PEXPIRE', key, ARGV[4])
      redis.call('SREM', KEYS[1], pid)
    else
      local given = {}
      for i = 5, #ARGV do given[ARGV[i]] = true end
      local out = {}
      for _, r in ipairs(cjson.decode(f[2])) do
        if ARGV[3] == 'join' or not given[r] then
          out[#out + 1] = r
          given[r] = nil
        end
      end
      if ARGV[3] == 'join' then
        for i = 5, #ARGV do
          if given[ARGV[i]] then out[#out + 1] = ARGV[i]; given[ARGV[i]] = nil end
        end
      end
      redis.call('HSET', key, 'rooms', cjson.encode(out))
    end
  end
end
return #pids
"#,
);

/// What other servers asked of every socket of some owners (`socketsJoin`, `socketsLeave`,
/// `disconnectSockets`), as it applies to their kept sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptChange {
    Join(Vec<String>),
    Leave(Vec<String>),
    /// Disconnected: the sessions are not to be recovered.
    Forget,
}

/// A session handed to a new holder by [`Sessions::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub sid: Sid,
    pub rooms: Vec<String>,
    /// The holder before the claim, and the instance it was on: a socket still live there is
    /// the same client's stale connection, to be replaced.
    pub previous_holder: String,
    pub previous_host: String,
}

pub struct Sessions {
    prefix: String,
    /// This instance's relay uid, written as each session's `host`.
    host: String,
    window: Duration,
}

impl Sessions {
    pub fn new(prefix: &str, host: &str, window: Duration) -> Self {
        Sessions {
            prefix: format!("{prefix}-csr"),
            host: host.to_owned(),
            window,
        }
    }

    fn owner_prefix(&self, owner: &str) -> String {
        format!("{}-session#{{{owner}}}#", self.prefix)
    }

    fn session_key(&self, owner: &str, pid: &str) -> String {
        format!("{}{pid}", self.owner_prefix(owner))
    }

    fn owner_key(&self, owner: &str) -> String {
        format!("{}-owner#{{{owner}}}", self.prefix)
    }

    /// How long a live session's key lasts without a refresh: the window after the last
    /// refresh, so a killed instance's sessions stay restorable for the whole window.
    pub fn live_ttl(&self) -> Duration {
        self.window + self.refresh_every()
    }

    pub fn refresh_every(&self) -> Duration {
        (self.window / 4).max(Duration::from_secs(1))
    }

    /// Writes `record` (its holder's view) to last `ttl`: while it lives ([`Self::live_ttl`])
    /// or, once it closed recoverably, for the window.
    pub fn save(&self, record: &SessionRecord, ttl: Duration) -> ScriptCall {
        let rooms = serde_json::to_string(&record.rooms).unwrap_or_else(|_| "[]".into());
        SAVE.call(
            vec![
                self.session_key(&record.owner, &record.pid),
                self.owner_key(&record.owner),
            ],
            vec![
                record.holder.to_string().into_bytes(),
                record.owner.clone().into_bytes(),
                record.nsp.clone().into_bytes(),
                record.sid.as_str().as_bytes().to_vec(),
                self.host.clone().into_bytes(),
                rooms.into_bytes(),
                ms(ttl).into_bytes(),
                record.pid.clone().into_bytes(),
            ],
        )
    }

    pub fn save_live(&self, record: &SessionRecord) -> ScriptCall {
        self.save(record, self.live_ttl())
    }

    pub fn save_closed(&self, record: &SessionRecord) -> ScriptCall {
        self.save(record, self.window)
    }

    /// Deletes `record`'s session, unless another connection holds it now.
    pub fn forget(&self, record: &SessionRecord) -> ScriptCall {
        FORGET.call(
            vec![
                self.session_key(&record.owner, &record.pid),
                self.owner_key(&record.owner),
            ],
            vec![
                record.holder.to_string().into_bytes(),
                record.pid.clone().into_bytes(),
                ms(self.window).into_bytes(),
            ],
        )
    }

    /// Applies `change` to every kept session of `owner` in `nsp`.
    pub fn change(&self, nsp: &str, owner: &str, change: &KeptChange) -> ScriptCall {
        let (op, rooms): (&str, &[String]) = match change {
            KeptChange::Join(rooms) => ("join", rooms),
            KeptChange::Leave(rooms) => ("leave", rooms),
            KeptChange::Forget => ("forget", &[]),
        };
        let mut args = vec![
            self.owner_prefix(owner).into_bytes(),
            nsp.as_bytes().to_vec(),
            op.as_bytes().to_vec(),
            ms(self.window).into_bytes(),
        ];
        args.extend(rooms.iter().map(|r| r.clone().into_bytes()));
        CHANGE.call(vec![self.owner_key(owner)], args)
    }

    /// Pushes back the expiry of live sessions, `(owner, pid)`, and their owners' sets.
    pub fn refresh(&self, live: &[(String, String)]) -> redis::Pipeline {
        let ttl = self.live_ttl().as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (owner, pid) in live {
            for key in [self.session_key(owner, pid), self.owner_key(owner)] {
                pipe.cmd("PEXPIRE").arg(key).arg(ttl).arg("GT");
            }
        }
        pipe
    }

    /// Makes `claim.holder` the holder of the claimed session, if it is the claiming owner's
    /// in the claimed namespace. The claim's pid must look like one of ours, so no client
    /// text is ever spliced into a key it was not made for.
    pub async fn claim(
        &self,
        valkey: &Valkey,
        claim: &Claim,
    ) -> Result<Option<Claimed>, ClaimError> {
        if Sid::parse(&claim.pid).is_none() {
            return Ok(None);
        }
        let mut conn = valkey.shared_connection().await?;
        let call = CLAIM.call(
            vec![self.session_key(&claim.owner, &claim.pid)],
            vec![
                claim.owner.clone().into_bytes(),
                claim.nsp.clone().into_bytes(),
                claim.holder.to_string().into_bytes(),
                self.host.clone().into_bytes(),
                ms(self.live_ttl()).into_bytes(),
            ],
        );
        let found: Option<(String, String, String, String)> = call.invoke(&mut conn).await?;
        let Some((sid, rooms, previous_holder, previous_host)) = found else {
            return Ok(None);
        };
        let Some(sid) = Sid::parse(&sid) else {
            return Ok(None);
        };
        Ok(Some(Claimed {
            sid,
            rooms: room_list(&rooms),
            previous_holder,
            previous_host,
        }))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Connection(#[from] ValkeyError),
    #[error("claiming a kept session: {0}")]
    Command(#[from] redis::RedisError),
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// A session's `rooms` field. Lua's cjson writes an empty list as `{}`: that is no room too.
fn room_list(json: &str) -> Vec<String> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_owners_hash_tag() {
        let s = Sessions::new("socket.io", "gw-1", Duration::from_secs(120));
        assert_eq!(s.session_key("u1", "p1"), "socket.io-csr-session#{u1}#p1");
        assert_eq!(s.owner_key("u1"), "socket.io-csr-owner#{u1}");
    }

    #[test]
    fn room_lists_from_lua() {
        assert_eq!(room_list(r#"["a","b"]"#), vec!["a", "b"]);
        assert!(room_list("{}").is_empty());
        assert!(room_list("not json").is_empty());
    }
}
