//! Presence in Valkey: the calls of `presence.lua` and the parsing of its answers.
//!
//! Every operation is one EVALSHA of the same script, so each is atomic: the socket's field,
//! the user's status and the workspace hashes change together, and the script alone decides
//! whether the status changed (so two instances racing on one user broadcast it once).
//! Writes are pipelined: a burst of connects costs one round trip.

use std::time::Duration;

use deadpool_redis::redis::{self, ErrorKind, ServerErrorKind, Value};
use deadpool_redis::{Connection, Pool};

use super::local::{Status, Write};

const SCRIPT: &str = include_str!("presence.lua");

/// How long one round trip to Valkey may take before presence gives up on it and falls back
/// to local memory (the next heartbeat tries again).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an offline user's `status` / `lastSeen` stay readable in `{P}:user:<id>`.
pub const OFFLINE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most socket writes in one pipeline (each pipeline has its own [`CALL_TIMEOUT`]).
const SET_BATCH: usize = 256;
/// Most expired instances one heartbeat claims.
const MOST_CLAIMS: u32 = 16;
/// Most sockets of a dead instance removed by one script call (keeps each call short).
pub const REAP_BATCH: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no Valkey connection: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("Valkey: {0}")]
    Valkey(#[from] redis::RedisError),
    #[error("Valkey did not answer within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer from the presence script: {0}")]
    Reply(String),
}

/// What the script says about one user after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub user: String,
    pub status: Status,
    pub last_seen: u64,
    /// Workspaces to send `presence:update` to (empty: nothing to tell).
    pub targets: Vec<String>,
    /// Where this announcement sits among the user's announcements, when this instance made
    /// it (`None` for a reaper's, which count as someone else's).
    pub seq: Option<Seq>,
    /// How many of `targets` (the first ones) had none of the user's sockets before: their
    /// clients may know nothing of the user, so what they are told is never deduplicated.
    pub fresh: usize,
}

/// An announcement's place in the user's history, as the script counts it (see
/// `presence.lua`): what lets the coalescer prove nobody else told the user's rooms anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq {
    /// The user's announcement counter after this one.
    pub version: u64,
    /// When it was made (Valkey's clock, ms).
    pub at_ms: u64,
    /// When another member last announced the user (0: never).
    pub foreign_ms: u64,
}

/// A user's status as Valkey has it now, read when a window of updates is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub status: Status,
    pub last_seen: u64,
    pub version: u64,
}

/// The answer to one `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetReply {
    Done(Outcome),
    /// This instance's member was claimed as dead: nothing was written; resync first.
    Lost,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// False when this member was claimed as dead (resync under a new member).
    pub alive: bool,
    /// Dead instances this heartbeat claimed: (member, its last heartbeat in ms).
    pub claimed: Vec<(String, u64)>,
}

pub struct Store {
    pool: Pool,
    /// Kept between calls (like the publisher's): one steady connection per instance, and
    /// no pool round trip per change. Dropped after any error.
    conn: Option<Connection>,
    /// Key prefix: `{redis.prefix}-presence`.
    prefix: String,
    uid: String,
    epoch: u64,
    ttl_ms: u64,
    sha: Option<String>,
}

impl Store {
    pub fn new(pool: Pool, redis_prefix: &str, uid: &str, ttl: Duration) -> Store {
        Store {
            pool,
            conn: None,
            prefix: format!("{redis_prefix}-presence"),
            uid: uid.to_owned(),
            epoch: 0,
            ttl_ms: ttl.as_millis() as u64,
            sha: None,
        }
    }

    /// This instance's name in Valkey: the relay's uid, and a counter bumped by every
    /// resync so a reaper still working on the previous member cannot remove new entries.
    pub fn member(&self) -> String {
        format!("{}.{}", self.uid, self.epoch)
    }

    /// Moves to a new member; returns the previous one.
    pub fn next_member(&mut self) -> String {
        let old = self.member();
        self.epoch += 1;
        old
    }

    fn argv(&self, op: &str) -> Vec<String> {
        vec![
            op.to_owned(),
            self.prefix.clone(),
            self.ttl_ms.to_string(),
            (OFFLINE_RETENTION.as_millis() as u64).to_string(),
        ]
    }

    /// Runs the script once per argument list, in one pipeline, in order.
    async fn run(&mut self, calls: &[Vec<String>]) -> Result<Vec<Vec<String>>, StoreError> {
        let result = match tokio::time::timeout(CALL_TIMEOUT, self.run_inner(calls)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Timeout(CALL_TIMEOUT)),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn run_inner(&mut self, calls: &[Vec<String>]) -> Result<Vec<Vec<String>>, StoreError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.get().await?,
        };
        let out = self.run_on(&mut conn, calls).await?;
        self.conn = Some(conn);
        Ok(out)
    }

    async fn run_on(
        &mut self,
        conn: &mut Connection,
        calls: &[Vec<String>],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let mut out = Vec::with_capacity(calls.len());
        let mut loaded_now = false;
        while out.len() < calls.len() {
            let sha = match &self.sha {
                Some(sha) => sha.clone(),
                None => {
                    let sha: String = redis::cmd("SCRIPT")
                        .arg("LOAD")
                        .arg(SCRIPT)
                        .query_async(&mut **conn)
                        .await?;
                    loaded_now = true;
                    self.sha.insert(sha).clone()
                }
            };
            let rest = &calls[out.len()..];
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for argv in rest {
                pipe.cmd("EVALSHA").arg(&sha).arg(0).arg(argv);
            }
            let replies: Vec<redis::RedisResult<Value>> = pipe.query_async(&mut **conn).await?;
            for reply in replies {
                match reply {
                    Ok(v) => out.push(strings(v)?),
                    // Valkey restarted or its script cache was flushed: nothing from here on
                    // ran. Load it again and send the rest (once).
                    Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                        if loaded_now {
                            return Err(e.into());
                        }
                        self.sha = None;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(out)
    }

    /// Copies socket changes to Valkey, in order (one pipeline per [`SET_BATCH`] writes).
    pub async fn set(&mut self, writes: &[Write]) -> Result<Vec<SetReply>, StoreError> {
        let mut out = Vec::with_capacity(writes.len());
        for chunk in writes.chunks(SET_BATCH) {
            out.extend(self.set_batch(chunk).await?);
        }
        Ok(out)
    }

    async fn set_batch(&mut self, writes: &[Write]) -> Result<Vec<SetReply>, StoreError> {
        let member = self.member();
        let calls: Vec<Vec<String>> = writes
            .iter()
            .map(|w| {
                let mut argv = self.argv("set");
                argv.extend([
                    member.clone(),
                    w.sid.as_str().to_owned(),
                    w.user.clone(),
                    w.value.as_ref().map_or_else(String::new, |c| {
                        let mut v = String::from(if c.away { "w" } else { "a" });
                        for ws in &c.workspaces {
                            v.push('\n');
                            v.push_str(ws);
                        }
                        v
                    }),
                    w.seen_ms.map_or_else(String::new, |ms| ms.to_string()),
                ]);
                argv
            })
            .collect();
        let replies = self.run(&calls).await?;
        writes
            .iter()
            .zip(replies)
            .map(|(w, r)| parse_set(&w.user, &r))
            .collect()
    }

    /// Refreshes this member's heartbeat (`register`: first time under this member) and
    /// claims expired instances.
    pub async fn beat(&mut self, register: bool) -> Result<Beat, StoreError> {
        let mut argv = self.argv("beat");
        argv.extend([
            self.member(),
            if register { "1" } else { "0" }.to_owned(),
            MOST_CLAIMS.to_string(),
        ]);
        let reply = self.run(&[argv]).await?.pop().unwrap_or_default();
        parse_beat(&reply)
    }

    /// A clean shutdown: this member expires `grace` from now, so survivors reap its
    /// sockets then, unless their users reconnected elsewhere in the meantime.
    pub async fn leave(&mut self, grace: Duration) -> Result<(), StoreError> {
        let mut argv = self.argv("leave");
        argv.extend([self.member(), grace.as_millis().to_string()]);
        self.run(&[argv]).await.map(drop)
    }

    /// Claims one of this instance's own old members, to reap it.
    pub async fn retire(&mut self, member: &str) -> Result<(), StoreError> {
        let mut argv = self.argv("retire");
        argv.push(member.to_owned());
        self.run(&[argv]).await.map(drop)
    }

    /// Each user's status, lastSeen and announcement counter now, read atomically (MULTI, so
    /// no script runs between a user's status and counter); `None` for a user Valkey has
    /// nothing readable for.
    pub async fn current(&mut self, users: &[String]) -> Result<Vec<Option<Current>>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for user in users {
            pipe.cmd("HMGET")
                .arg(format!("{}:user:{user}", self.prefix))
                .arg("status")
                .arg("lastSeen");
            pipe.cmd("HGET")
                .arg(format!("{}:ann:{user}", self.prefix))
                .arg("v");
        }
        let result = tokio::time::timeout(CALL_TIMEOUT, async {
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => self.pool.get().await?,
            };
            // Two replies per user: [status, lastSeen], then v.
            let replies: Vec<Value> = pipe.query_async(&mut *conn).await?;
            self.conn = Some(conn);
            let rows = replies
                .chunks(2)
                .map(|pair| {
                    let mut row: Vec<Option<String>> = match pair.first() {
                        Some(v) => redis::from_redis_value(v.clone()).unwrap_or_default(),
                        None => Vec::new(),
                    };
                    row.push(
                        pair.get(1)
                            .and_then(|v| redis::from_redis_value(v.clone()).ok()),
                    );
                    row
                })
                .collect::<Vec<_>>();
            Ok::<_, StoreError>(rows)
        })
        .await
        .unwrap_or(Err(StoreError::Timeout(CALL_TIMEOUT)));
        match result {
            Ok(rows) => Ok(rows.iter().map(|r| parse_current(r)).collect()),
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    /// Removes up to [`REAP_BATCH`] sockets of a claimed member; returns whether it is done,
    /// and each removed socket's user (with no targets when nothing is to be told).
    pub async fn reap(
        &mut self,
        member: &str,
        last_seen: u64,
    ) -> Result<(bool, Vec<Outcome>), StoreError> {
        let mut argv = self.argv("reap");
        argv.extend([
            member.to_owned(),
            REAP_BATCH.to_string(),
            last_seen.to_string(),
        ]);
        let reply = self.run(&[argv]).await?.pop().unwrap_or_default();
        parse_reap(&reply)
    }
}

/// A script answer as strings (it only ever returns flat arrays of strings).
fn strings(v: Value) -> Result<Vec<String>, StoreError> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::BulkString(b) => String::from_utf8(b)
                    .map_err(|_| StoreError::Reply("a reply that is not UTF-8".into())),
                Value::SimpleString(s) => Ok(s),
                Value::Int(i) => Ok(i.to_string()),
                other => Err(StoreError::Reply(format!("{other:?}"))),
            })
            .collect(),
        other => Err(StoreError::Reply(format!("{other:?}"))),
    }
}

fn number(s: &str) -> Result<u64, StoreError> {
    s.parse()
        .map_err(|_| StoreError::Reply(format!("not a number: {s:?}")))
}

fn status(s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Reply(format!("not a status: {s:?}")))
}

fn parse_current(row: &[Option<String>]) -> Option<Current> {
    match row {
        [Some(st), Some(last), v] => Some(Current {
            status: Status::parse(st)?,
            last_seen: last.parse().ok()?,
            version: v.as_deref().map_or(Some(0), |v| v.parse().ok())?,
        }),
        _ => None,
    }
}

fn parse_set(user: &str, r: &[String]) -> Result<SetReply, StoreError> {
    match r {
        [lost] if lost == "lost" => Ok(SetReply::Lost),
        [ok, _changed, st, last, version, at, foreign, fresh, targets @ ..] if ok == "ok" => {
            let fresh = number(fresh)? as usize;
            if fresh > targets.len() {
                return Err(StoreError::Reply(format!(
                    "set: {fresh} fresh of {targets:?}"
                )));
            }
            Ok(SetReply::Done(Outcome {
                user: user.to_owned(),
                status: status(st)?,
                last_seen: number(last)?,
                targets: targets.to_vec(),
                seq: Some(Seq {
                    version: number(version)?,
                    at_ms: number(at)?,
                    foreign_ms: number(foreign)?,
                }),
                fresh,
            }))
        }
        other => Err(StoreError::Reply(format!("set: {other:?}"))),
    }
}

fn parse_beat(r: &[String]) -> Result<Beat, StoreError> {
    let Some((state, rest)) = r.split_first() else {
        return Err(StoreError::Reply("beat: empty".into()));
    };
    let alive = match state.as_str() {
        "ok" | "new" => true,
        "lost" => false,
        other => return Err(StoreError::Reply(format!("beat: {other:?}"))),
    };
    if rest.len() % 2 != 0 {
        return Err(StoreError::Reply("beat: odd claim list".into()));
    }
    let claimed = rest
        .chunks(2)
        .map(|c| Ok((c[0].clone(), number(&c[1])?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(Beat { alive, claimed })
}

fn parse_reap(r: &[String]) -> Result<(bool, Vec<Outcome>), StoreError> {
    let Some((done, mut rest)) = r.split_first() else {
        return Err(StoreError::Reply("reap: empty".into()));
    };
    let mut out = Vec::new();
    while let [user, st, last, n, tail @ ..] = rest {
        let n = number(n)? as usize;
        if tail.len() < n {
            return Err(StoreError::Reply("reap: short target list".into()));
        }
        out.push(Outcome {
            user: user.clone(),
            status: status(st)?,
            last_seen: number(last)?,
            targets: tail[..n].to_vec(),
            seq: None,
            fresh: 0,
        });
        rest = &tail[n..];
    }
    if !rest.is_empty() {
        return Err(StoreError::Reply("reap: trailing data".into()));
    }
    Ok((done == "1", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn set_replies() {
        assert_eq!(parse_set("u", &v(&["lost"])).ok(), Some(SetReply::Lost));
        let r = parse_set(
            "u",
            &v(&["ok", "1", "away", "17", "3", "20", "0", "1", "w1", "w2"]),
        );
        assert_eq!(
            r.ok(),
            Some(SetReply::Done(Outcome {
                user: "u".into(),
                status: Status::Away,
                last_seen: 17,
                targets: v(&["w1", "w2"]),
                seq: Some(Seq {
                    version: 3,
                    at_ms: 20,
                    foreign_ms: 0
                }),
                fresh: 1,
            }))
        );
        assert!(parse_set("u", &v(&["ok", "1", "busy", "17", "1", "2", "0", "0"])).is_err());
        assert!(parse_set("u", &v(&["ok", "1", "away", "x", "1", "2", "0", "0"])).is_err());
        assert!(parse_set("u", &v(&["ok", "1", "away", "1", "1", "2", "0", "2", "w1"])).is_err());
        assert!(parse_set("u", &v(&["ok", "1", "away", "17"])).is_err());
        assert!(parse_set("u", &[]).is_err());
    }

    #[test]
    fn current_rows() {
        let row = |a: Option<&str>, b: Option<&str>, c: Option<&str>| {
            vec![
                a.map(String::from),
                b.map(String::from),
                c.map(String::from),
            ]
        };
        assert_eq!(
            parse_current(&row(Some("away"), Some("5"), Some("2"))),
            Some(Current {
                status: Status::Away,
                last_seen: 5,
                version: 2
            })
        );
        assert_eq!(
            parse_current(&row(Some("online"), Some("5"), None)).map(|c| c.version),
            Some(0)
        );
        assert_eq!(parse_current(&row(None, None, None)), None);
        assert_eq!(parse_current(&row(Some("busy"), Some("5"), None)), None);
    }

    #[test]
    fn beat_replies() {
        let b = parse_beat(&v(&["ok", "abc.0", "5", "def.2", "6"])).ok();
        assert_eq!(
            b,
            Some(Beat {
                alive: true,
                claimed: vec![("abc.0".into(), 5), ("def.2".into(), 6)],
            })
        );
        assert_eq!(parse_beat(&v(&["lost"])).ok().map(|b| b.alive), Some(false));
        assert!(parse_beat(&v(&["ok", "abc.0"])).is_err());
        assert!(parse_beat(&[]).is_err());
    }

    #[test]
    fn reap_replies() {
        let (done, out) = parse_reap(&v(&[
            "1", "u1", "offline", "9", "2", "w1", "w2", "u2", "away", "9", "0",
        ]))
        .unwrap_or_default();
        assert!(done);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].targets, v(&["w1", "w2"]));
        assert_eq!(out[1].status, Status::Away);
        assert!(parse_reap(&v(&["0", "u1", "offline", "9", "3", "w1"])).is_err());
        assert!(parse_reap(&v(&["0", "u1"])).is_err());
        assert_eq!(parse_reap(&v(&["0"])).ok(), Some((false, vec![])));
    }
}
