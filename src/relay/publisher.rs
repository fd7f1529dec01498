//! Publishing to Valkey.
//!
//! Broadcasts run on sockets' tasks and must not wait for Valkey, so they go into a bounded
//! queue. One task drains it and sends everything queued as one pipeline on one pooled
//! connection: order is kept, and a burst costs one round trip instead of one per message.
//!
//! The recording script is loaded once per connection (`SCRIPT LOAD`) and called by digest
//! (`EVALSHA`). A call answered `NOSCRIPT` (Valkey restarted or its scripts were flushed) did
//! nothing, so it is sent again with the script's text after the rest of its batch.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::{redis, Connection, Pool};
use tokio::sync::mpsc;

use super::link::Link;
use super::recovery::{RecordCall, RECORD};
use super::subscriber::Interest;
use crate::metrics::ValkeyOp;

/// Messages that may wait for the publisher; past this a broadcast is dropped (and counted)
/// rather than let memory grow while Valkey is slow.
const QUEUE: usize = 16_384;
/// Most PUBLISH commands in one pipeline.
const BATCH: usize = 512;
/// Longest wait for pending subscriptions before publishing a recorded broadcast.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

enum Outgoing {
    Publish {
        channel: String,
        payload: Bytes,
    },
    /// A command whose answer nobody waits for (session writes).
    Command(redis::Cmd),
    /// A recording script call (it publishes what it records). `on_fail` runs when the
    /// call could not be made, so the caller can still deliver locally.
    Record {
        call: RecordCall,
        on_fail: Box<dyn FnOnce() + Send>,
    },
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
}

impl Publisher {
    /// Starts the publishing task; it ends when every `Publisher` clone is dropped.
    pub fn start(
        pool: Pool,
        link: Arc<Link>,
        interest: Arc<Interest>,
    ) -> (Publisher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(pool, rx, link, interest));
        (Publisher { tx }, task)
    }

    /// Queues a PUBLISH. Returns false when it was dropped (queue full or task gone).
    pub fn publish(&self, channel: String, payload: impl Into<Bytes>) -> bool {
        self.queue(Outgoing::Publish {
            channel,
            payload: payload.into(),
        })
    }

    /// Queues a recording script call; `on_fail` runs if it cannot be made.
    pub fn record(&self, call: RecordCall, on_fail: Box<dyn FnOnce() + Send>) {
        if let Err(e) = self.tx.try_send(Outgoing::Record { call, on_fail }) {
            crate::metrics::valkey_errors(ValkeyOp::PublishQueueFull, 1);
            if let Outgoing::Record { on_fail, .. } = e.into_inner() {
                on_fail();
            }
        }
    }

    /// Queues a command after the broadcasts queued before it.
    pub fn command(&self, cmd: redis::Cmd) -> bool {
        self.queue(Outgoing::Command(cmd))
    }

    fn queue(&self, job: Outgoing) -> bool {
        let queued = self.tx.try_send(job).is_ok();
        if !queued {
            crate::metrics::valkey_errors(ValkeyOp::PublishQueueFull, 1);
        }
        queued
    }
}

async fn run(
    pool: Pool,
    mut rx: mpsc::Receiver<Outgoing>,
    link: Arc<Link>,
    interest: Arc<Interest>,
) {
    // The connection, and the recording script's digest once loaded on it.
    let mut conn: Option<(u64, Connection, Option<String>)> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let n = batch.len() as u64;
        let has_records = batch.iter().any(|j| matches!(j, Outgoing::Record { .. }));
        // Degraded means local-only: messages are not held back for a Valkey that may not
        // return soon (the subscriber side is down too, so nothing would be consistent).
        if !link.is_up() {
            crate::metrics::valkey_errors(ValkeyOp::PublishDegraded, n);
            for job in batch.drain(..) {
                if let Outgoing::Record { on_fail, .. } = job {
                    on_fail();
                }
            }
            continue;
        }
        if has_records {
            // Rooms joined just now must be subscribed before their broadcasts come back.
            interest.settled(SETTLE_LIMIT).await;
        }
        // A connection from before the last reconnection is dead for sure.
        if conn.as_ref().is_some_and(|(g, ..)| *g != link.generation()) {
            conn = None;
        }
        if has_records {
            load_script(&pool, &link, &mut conn).await;
        }
        let sha = conn.as_ref().and_then(|(_, _, sha)| sha.clone());
        let mut records = Vec::new();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for job in batch.drain(..) {
            match job {
                Outgoing::Publish { channel, payload } => {
                    pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]);
                }
                Outgoing::Command(cmd) => {
                    pipe.add_command(cmd);
                }
                Outgoing::Record { call, on_fail } => {
                    pipe.add_command(call.cmd(sha.as_deref()));
                    records.push((pipe.len() - 1, call, on_fail));
                }
            }
        }
        // A dropped connection gets one retry on a fresh one, so a Valkey restart loses no
        // message; other failures (a timeout) are not retried, as the PUBLISH may have happened.
        let mut result = send(&pool, &link, &mut conn, &pipe).await;
        if result.as_ref().is_err_and(PublishError::is_dropped) {
            conn = None;
            result = send(&pool, &link, &mut conn, &pipe).await;
        }
        let replies = match result {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!(error = %e, dropped = n, "relay: publishing failed");
                crate::metrics::valkey_errors(ValkeyOp::Publish, n);
                conn = None;
                records.into_iter().for_each(|(_, _, f)| f());
                continue;
            }
        };
        crate::metrics::valkey_published(n);
        let failed = replies
            .iter()
            .enumerate()
            .filter(|(i, v)| {
                matches!(v, redis::Value::ServerError(_)) && !records.iter().any(|r| r.0 == *i)
            })
            .count();
        if failed > 0 {
            tracing::warn!(
                failed,
                "relay: Valkey refused some publishes or session writes"
            );
            crate::metrics::valkey_errors(ValkeyOp::Publish, failed as u64);
        }
        let mut unknown_script = Vec::new();
        for (i, call, on_fail) in records {
            match replies.get(i) {
                Some(redis::Value::ServerError(e))
                    if e.kind() == Some(redis::ServerErrorKind::NoScript) =>
                {
                    unknown_script.push((call, on_fail));
                }
                Some(redis::Value::ServerError(e)) => {
                    tracing::warn!(error = e.code(), "relay: recording failed");
                    crate::metrics::valkey_errors(ValkeyOp::Record, 1);
                    on_fail();
                }
                _ => {}
            }
        }
        if !unknown_script.is_empty() {
            if let Some((.., sha)) = conn.as_mut() {
                *sha = None;
            }
            resend_with_text(&pool, &link, &mut conn, unknown_script).await;
        }
    }
}

/// Loads the recording script on the current connection unless it is known there. Failing is
/// harmless: the calls then carry the script's text.
async fn load_script(
    pool: &Pool,
    link: &Link,
    conn: &mut Option<(u64, Connection, Option<String>)>,
) {
    if conn.as_ref().is_some_and(|(.., sha)| sha.is_some()) {
        return;
    }
    if conn.is_none() {
        match pool.get().await {
            Ok(c) => *conn = Some((link.generation(), c, None)),
            Err(_) => return,
        }
    }
    let Some((_, c, sha)) = conn.as_mut() else {
        return;
    };
    match redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(RECORD)
        .query_async::<String>(&mut **c)
        .await
    {
        Ok(digest) => *sha = Some(digest),
        Err(e) if e.is_connection_dropped() => *conn = None,
        Err(e) => tracing::debug!(error = %e, "relay: cannot load the recording script"),
    }
}

/// Sends again, as `EVAL` with the text, the calls Valkey answered `NOSCRIPT` (they did
/// nothing), then loads the script again for the next batches.
async fn resend_with_text(
    pool: &Pool,
    link: &Link,
    conn: &mut Option<(u64, Connection, Option<String>)>,
    calls: Vec<(RecordCall, Box<dyn FnOnce() + Send>)>,
) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (call, _) in &calls {
        pipe.add_command(call.cmd(None));
    }
    match send(pool, link, conn, &pipe).await {
        Ok(replies) => {
            for (i, (_, on_fail)) in calls.into_iter().enumerate() {
                if !matches!(replies.get(i), Some(v) if !matches!(v, redis::Value::ServerError(_)))
                {
                    on_fail();
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, dropped = calls.len(), "relay: recording failed");
            *conn = None;
            calls.into_iter().for_each(|(_, f)| f());
        }
    }
    load_script(pool, link, conn).await;
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("no Valkey connection: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error(transparent)]
    Command(#[from] redis::RedisError),
}

impl PublishError {
    fn is_dropped(&self) -> bool {
        match self {
            PublishError::Pool(_) => true,
            PublishError::Command(e) => e.is_connection_dropped(),
        }
    }
}

/// Sends a pipeline built with `ignore_errors`: one reply per command, a command's error
/// among them; `Err` only when the pipeline could not be sent.
async fn send(
    pool: &Pool,
    link: &Link,
    conn: &mut Option<(u64, Connection, Option<String>)>,
    pipe: &redis::Pipeline,
) -> Result<Vec<redis::Value>, PublishError> {
    let (_, c, _) = match conn {
        Some(c) => c,
        None => conn.insert((link.generation(), pool.get().await?, None)),
    };
    Ok(pipe.query_async::<Vec<redis::Value>>(&mut **c).await?)
}
