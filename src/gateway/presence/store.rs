//! Presence in Valkey: key names, the scripts' calls, the parsing of their answers.
//!
//! Each script takes all its keys in `KEYS` and touches one hash slot (see their headers);
//! the rest are single-key commands. Calls are pipelined; scripts are called by digest and
//! loaded when this instance joins: a `NOSCRIPT` (Valkey restarted or flushed) makes it
//! resync, which loads them again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, Value};
use relay::valkey::{Connection, Valkey, ValkeyError};

use super::local::{Outcome, Status, UserWrite};
use relay::script::{is_unknown_script_reply, Lua};

const SET_USER: &str = include_str!("scripts/set_user.lua");
const SET_WORKSPACE: &str = include_str!("scripts/set_workspace.lua");
const BEAT: &str = include_str!("scripts/beat.lua");
static SCRIPTS: [Lua; 3] = [Lua::new(SET_USER), Lua::new(SET_WORKSPACE), Lua::new(BEAT)];

/// How long one round trip may take before presence gives up on Valkey and works from memory.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an offline user's `status` / `lastSeen` stay readable in `P:user:<id>` (and the
/// versions of workspace entries are kept).
const RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Most users of a claimed member removed per call.
const REAP_BATCH: usize = 256;
/// Most dead instances one heartbeat claims.
const MOST_CLAIMS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no Valkey connection: {0}")]
    Connection(#[from] ValkeyError),
    #[error("Valkey: {0}")]
    Valkey(#[from] redis::RedisError),
    #[error("unexpected answer from Valkey: {0}")]
    Parse(#[from] redis::ParsingError),
    #[error("unexpected answer from Valkey: {0}")]
    Reply(String),
    #[error("Valkey did not answer within {CALL_TIMEOUT:?}")]
    Timeout,
    #[error("Valkey does not know the presence scripts (restarted or flushed)")]
    NoScript,
}

/// A member to remove (a dead instance's, or this instance's previous one), and the
/// `lastSeen` of its users.
pub type Claim = (String, u64);

/// Workspace entries to write: `(workspace, user) → (version, status, or None to remove)`.
pub type WorkspaceWrites = HashMap<(String, String), (u64, Option<Status>)>;

/// A key in the same Valkey Cluster hash slot as `key`: a key is hashed by its hash tag (the
/// text between its first `{` and the next `}`, if not empty), else whole. So `{key}:suffix`
/// hashes like `key` when `key` has no braces, and `key:suffix` does when `key` has a tag.
/// (A workspace id with a `}` but no tag has no such name: its two keys would be in two slots,
/// which one Valkey does not mind and a Cluster refuses. App ids are not made that way.)
fn same_slot(key: &str, suffix: &str) -> String {
    let tag = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'));
    match tag {
        Some((tag, _)) if !tag.is_empty() => format!("{key}:{suffix}"),
        _ => format!("{{{key}}}:{suffix}"),
    }
}

pub struct Store {
    valkey: Arc<Valkey>,
    /// Kept between calls: one steady connection, no pool round trip per change. Dropped
    /// after any error.
    conn: Option<Connection>,
    /// `{redis.prefix}-presence`
    prefix: String,
    uid: String,
    /// Counts joins: a member is the uid and this counter.
    epoch: u64,
    /// The last member that joined: its entries are in Valkey.
    joined: Option<String>,
    ttl: Duration,
}

impl Store {
    pub fn new(valkey: Arc<Valkey>, redis_prefix: &str, uid: &str, ttl: Duration) -> Store {
        let prefix = format!("{redis_prefix}-presence");
        let uid = uid.to_owned();
        Store {
            valkey,
            conn: None,
            prefix,
            uid,
            epoch: 0,
            joined: None,
            ttl,
        }
    }

    /// This instance's name in Valkey now.
    pub fn member(&self) -> String {
        format!("{}.{}", self.uid, self.epoch)
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn script(&self, script: usize, keys: Vec<String>, args: &[&str]) -> redis::Cmd {
        let args = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        SCRIPTS[script].call(keys, args).cmd(true)
    }

    /// Sends a pipeline made by [`pipe`]: one reply per command, errors among them.
    async fn query(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>, StoreError> {
        let result = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.valkey.connection().await?,
            };
            let replies = conn.pipeline(pipe).await?;
            self.conn = Some(conn);
            Ok(replies)
        });
        let result = result.await.unwrap_or(Err(StoreError::Timeout));
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Runs `beat.lua`: the claims it made, or `None` when this member was claimed as dead.
    async fn beat_as(
        &mut self,
        op: &str,
        life: Duration,
        previous: &str,
    ) -> Result<Option<Vec<Claim>>, StoreError> {
        let args = [
            &self.member(),
            op,
            &life.as_millis().to_string(),
            previous,
            &MOST_CLAIMS.to_string(),
        ];
        let mut pipe = pipe();
        pipe.add_command(self.script(2, vec![self.key("members")], &args));
        let reply = strings(self.query(&pipe).await?.pop())?;
        match reply.split_first() {
            Some((state, _)) if state == "lost" => Ok(None),
            Some((state, claims)) if state == "ok" && claims.len() % 2 == 0 => {
                let claim = |c: &[String]| Ok((c[0].clone(), number(&c[1])?));
                claims
                    .chunks(2)
                    .map(claim)
                    .collect::<Result<_, _>>()
                    .map(Some)
            }
            _ => Err(StoreError::Reply(format!("beat: {reply:?}"))),
        }
    }

    /// Registers a new member (after loading the scripts). The previous one is claimed, to
    /// be removed like a dead instance's once the new one has every part.
    pub async fn join(&mut self) -> Result<Vec<Claim>, StoreError> {
        let mut pipe = pipe();
        for text in [SET_USER, SET_WORKSPACE, BEAT] {
            pipe.cmd("SCRIPT").arg("LOAD").arg(text);
        }
        if let Some(e) = self.query(&pipe).await?.into_iter().find(is_error) {
            return Err(StoreError::Reply(format!("SCRIPT LOAD: {e:?}")));
        }
        self.epoch += 1;
        let previous = self.joined.clone().unwrap_or_default();
        let claims = self.beat_as("join", self.ttl, &previous).await?;
        self.joined = Some(self.member());
        Ok(claims.unwrap_or_default())
    }

    /// A heartbeat: the dead instances it claimed, or `None` when this instance was claimed
    /// as dead (it must join again).
    pub async fn beat(&mut self) -> Result<Option<Vec<Claim>>, StoreError> {
        self.beat_as("beat", self.ttl, "").await
    }

    /// A clean shutdown: the member lives `grace` more, so its users have the grace period
    /// to reconnect elsewhere before a survivor removes them.
    pub async fn leave(&mut self, grace: Duration) -> Result<(), StoreError> {
        self.beat_as("leave", grace, "").await.map(drop)
    }

    /// Runs `set_user.lua` for `member`'s part of each user: one answer per user.
    async fn set_users<'a>(
        &mut self,
        member: &str,
        parts: impl Iterator<Item = (&'a str, String, String)>,
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let (field, index) = (format!("p:{member}"), self.key(&format!("users:{member}")));
        let mut pipe = pipe();
        let mut users = Vec::new();
        // Where each script's reply is (after the SADDs that go before them).
        let mut answers = Vec::new();
        for (user, value, seen) in parts {
            // Listed before it is written, so whoever removes the member finds every entry.
            if !value.is_empty() {
                pipe.cmd("SADD").arg(&index).arg(user);
            }
            let args = [field.as_str(), &value, &seen, &RETENTION_MS.to_string()];
            pipe.add_command(self.script(0, vec![self.key(&format!("user:{user}"))], &args));
            answers.push(pipe.len() - 1);
            users.push(user);
        }
        let mut replies = self.query(&pipe).await?;
        let refused_listing = replies
            .iter()
            .enumerate()
            .find(|(i, r)| !answers.contains(i) && is_error(r));
        if let Some((_, e)) = refused_listing {
            // The member's list would miss a user: none of these writes may count.
            return Err(StoreError::Reply(format!("SADD: {e:?}")));
        }
        let replies: Vec<Value> = answers
            .iter()
            .filter_map(|&i| replies.get_mut(i).map(|r| std::mem::replace(r, Value::Nil)))
            .collect();
        if replies.len() != users.len() {
            return Err(StoreError::Reply(format!(
                "{} answers to {} calls",
                replies.len(),
                users.len()
            )));
        }
        Ok(users
            .into_iter()
            .zip(replies)
            .map(|(u, r)| parse_outcome(u, r))
            .collect())
    }

    /// Copies users' parts under the current member: one answer per write.
    pub async fn write(
        &mut self,
        writes: &[UserWrite],
    ) -> Result<Vec<Result<Outcome, StoreError>>, StoreError> {
        let parts = writes.iter().map(|w| {
            let mut value = String::new();
            if let Some(p) = &w.after {
                value.push(if p.away { 'w' } else { 'a' });
                p.workspaces
                    .iter()
                    .for_each(|ws| value.extend(["\n", ws.as_str()]));
            }
            (
                w.user.as_str(),
                value,
                w.seen_ms.map_or_else(String::new, |ms| ms.to_string()),
            )
        });
        self.set_users(&self.member(), parts).await
    }

    /// Removes a batch of a claimed member's users, answering for each; `None` when it has
    /// none left (then its entry goes). They leave its list with [`Store::settle`].
    pub async fn reap(
        &mut self,
        (member, seen): &Claim,
    ) -> Result<Option<Vec<(String, Result<Outcome, StoreError>)>>, StoreError> {
        let (index, entry) = (self.key(&format!("users:{member}")), self.key("members"));
        let mut pipe = pipe();
        pipe.cmd("SRANDMEMBER").arg(index).arg(REAP_BATCH);
        let users: Vec<String> = match self.query(&pipe).await?.pop() {
            Some(v) => redis::from_redis_value(v)?,
            None => Vec::new(),
        };
        if users.is_empty() {
            self.query(self::pipe().cmd("HDEL").arg(entry).arg(member))
                .await?;
            return Ok(None);
        }
        let parts = users
            .iter()
            .map(|u| (u.as_str(), String::new(), seen.to_string()));
        let answers = self.set_users(member, parts).await?;
        Ok(Some(users.into_iter().zip(answers).collect()))
    }

    /// The writes that follow answers: users leaving a member's list `(member, user)` (only
    /// once their part is gone), and workspace entries. Writes Valkey refuses (a key of another
    /// type, say) are logged and skipped; an error means none may have been made.
    pub async fn settle(
        &mut self,
        unlisted: &[(String, String)],
        workspaces: &WorkspaceWrites,
    ) -> Result<(), StoreError> {
        let mut pipe = pipe();
        for (member, user) in unlisted {
            pipe.cmd("SREM")
                .arg(self.key(&format!("users:{member}")))
                .arg(user);
        }
        for ((ws, user), (version, status)) in workspaces {
            let key = self.key(&format!("ws:{ws}"));
            let keys = vec![key.clone(), same_slot(&key, "v")];
            let status = status.map_or("", Status::as_str);
            let args = [
                user.as_str(),
                &version.to_string(),
                status,
                &RETENTION_MS.to_string(),
            ];
            pipe.add_command(self.script(1, keys, &args));
        }
        let replies = self.query(&pipe).await?;
        if replies.iter().any(is_unknown_script_reply) {
            return Err(StoreError::NoScript);
        }
        for e in replies.iter().filter(|v| is_error(v)) {
            tracing::warn!(error = ?e, "presence: Valkey refused a write; skipped");
        }
        Ok(())
    }

    /// Users' `(status, lastSeen)` now; users Valkey has nothing readable for (or refuses to
    /// read: a key of another type) are left out.
    pub async fn read(
        &mut self,
        users: &[String],
    ) -> Result<HashMap<String, (Status, u64)>, StoreError> {
        let mut pipe = pipe();
        for user in users {
            pipe.cmd("HMGET")
                .arg(self.key(&format!("user:{user}")))
                .arg("status")
                .arg("lastSeen");
        }
        let row = |v| -> Option<(Status, u64)> {
            let (status, seen): (Option<String>, Option<u64>) = redis::from_redis_value(v).ok()?;
            Some((Status::parse(&status?)?, seen?))
        };
        let replies = self.query(&pipe).await?;
        Ok(users
            .iter()
            .zip(replies)
            .filter_map(|(u, v)| Some((u.clone(), row(v)?)))
            .collect())
    }
}

/// A script's answer as strings (they only return flat arrays of strings).
/// A pipeline whose commands' errors come back among the replies (see
/// [`Connection::pipeline`]).
fn pipe() -> redis::Pipeline {
    let mut p = redis::pipe();
    p.ignore_errors();
    p
}

fn is_error(v: &Value) -> bool {
    matches!(v, Value::ServerError(_))
}

fn strings(v: Option<Value>) -> Result<Vec<String>, StoreError> {
    match v {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|i| Ok(redis::from_redis_value(i)?))
            .collect(),
        other => Err(StoreError::Reply(format!("{other:?}"))),
    }
}

fn number(s: &str) -> Result<u64, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Reply(format!("not a number: {s:?}")))
}

/// `set_user.lua`'s answer: status, lastSeen, changed, version, n, n workspaces before, after.
fn parse_outcome(user: &str, reply: Value) -> Result<Outcome, StoreError> {
    if is_unknown_script_reply(&reply) {
        return Err(StoreError::NoScript);
    }
    let r = strings(Some(reply))?;
    let bad = || StoreError::Reply(format!("set_user: {r:?}"));
    let [status, last_seen, changed, version, n, workspaces @ ..] = r.as_slice() else {
        return Err(bad());
    };
    let (before, after) = workspaces
        .split_at_checked(number(n)? as usize)
        .ok_or_else(bad)?;
    Ok(Outcome {
        user: user.to_owned(),
        status: Status::parse(status).ok_or_else(bad)?,
        last_seen: number(last_seen)?,
        changed: changed == "1",
        version: number(version)?,
        before: before.iter().cloned().collect(),
        after: after.iter().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn outcomes() {
        let o = parse_outcome(
            "u",
            reply(&["away", "17", "1", "99", "1", "w1", "w1", "w2"]),
        );
        assert_eq!(
            o.ok(),
            Some(Outcome {
                user: "u".into(),
                status: Status::Away,
                last_seen: 17,
                changed: true,
                version: 99,
                before: ["w1".to_string()].into(),
                after: ["w1".to_string(), "w2".to_string()].into(),
            })
        );
        assert!(parse_outcome("u", reply(&["busy", "17", "1", "99", "0"])).is_err());
        assert!(parse_outcome("u", reply(&["away", "x", "1", "99", "0"])).is_err());
        assert!(parse_outcome("u", reply(&["away", "17", "1", "99", "2", "w1"])).is_err());
        assert!(parse_outcome("u", reply(&["away", "17"])).is_err());
        assert!(parse_outcome("u", Value::Okay).is_err());
    }

    #[test]
    fn same_slot_keys() {
        assert_eq!(same_slot("p:ws:w1", "v"), "{p:ws:w1}:v");
        assert_eq!(same_slot("p:ws:{t}x", "v"), "p:ws:{t}x:v");
    }
}
