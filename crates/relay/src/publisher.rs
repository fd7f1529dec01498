//! Publishing to Valkey.
//!
//! Broadcasts run on sockets' tasks and must not wait for Valkey, so they go into a bounded
//! queue. One task drains it and sends everything queued as one pipeline on one pooled
//! connection: order is kept, and a burst costs one round trip instead of one per message.
//!
//! Scripts (recording, session writes) are called by digest; a call answered `NOSCRIPT` did
//! nothing, so it is sent again with the script's text after the rest of its batch
//! ([`super::script`]).

use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::redis;
use tokio::sync::mpsc;

use super::link::ValkeyLink;
use super::script::{is_unknown_script_reply, ScriptCall};
use super::subscriber::Subscriptions;
use crate::metrics::ValkeyOp;
use crate::valkey::{Connection, Valkey, ValkeyError};

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
    /// A script call whose answer nobody waits for (session writes).
    Script(ScriptCall),
    /// A recording script call (it publishes what it records). `on_fail` runs when the
    /// call could not be made, so the caller can still deliver locally.
    Record {
        call: ScriptCall,
        on_fail: Box<dyn FnOnce() + Send>,
    },
    /// Send what was queued before, then end.
    Finish,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
}

impl Publisher {
    /// Starts the publishing task; it ends when every `Publisher` clone is dropped.
    /// `command` publishes: `PUBLISH`, or `SPUBLISH` on sharded Pub/Sub.
    pub fn start(
        valkey: Arc<Valkey>,
        link: Arc<ValkeyLink>,
        interest: Arc<Subscriptions>,
        command: &'static str,
    ) -> (Publisher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(valkey, rx, link, interest, command));
        (Publisher { tx }, task)
    }

    /// Queues a PUBLISH (or SPUBLISH). Returns false when it was dropped (queue full or task gone).
    pub fn publish(&self, channel: String, payload: impl Into<Bytes>) -> bool {
        self.queue(Outgoing::Publish {
            channel,
            payload: payload.into(),
        })
    }

    /// Queues a recording script call; `on_fail` runs if it cannot be made.
    pub fn record(&self, call: ScriptCall, on_fail: Box<dyn FnOnce() + Send>) {
        if let Err(e) = self.tx.try_send(Outgoing::Record { call, on_fail }) {
            crate::metrics::valkey_errors(ValkeyOp::PublishQueueFull, 1);
            if let Outgoing::Record { on_fail, .. } = e.into_inner() {
                on_fail();
            }
        }
    }

    /// Queues a script call after everything queued before it.
    pub fn script(&self, call: ScriptCall) -> bool {
        self.queue(Outgoing::Script(call))
    }

    /// Tells the task to end once everything queued so far has been sent.
    pub fn finish(&self) {
        // Waits for room if the queue is full: the task is draining it.
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(Outgoing::Finish).await;
        });
    }

    fn queue(&self, job: Outgoing) -> bool {
        let queued = self.tx.try_send(job).is_ok();
        if !queued {
            crate::metrics::valkey_errors(ValkeyOp::PublishQueueFull, 1);
        }
        queued
    }
}

/// A failed call's `on_fail`, if it has one.
type OnFail = Option<Box<dyn FnOnce() + Send>>;

async fn run(
    valkey: Arc<Valkey>,
    mut rx: mpsc::Receiver<Outgoing>,
    link: Arc<ValkeyLink>,
    interest: Arc<Subscriptions>,
    command: &'static str,
) {
    // The connection, with the link generation it was made in.
    let mut conn: Option<(u64, Connection)> = None;
    let mut batch = Vec::with_capacity(BATCH);
    let mut finished = false;
    while !finished && rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Some(at) = batch.iter().position(|j| matches!(j, Outgoing::Finish)) {
            batch.truncate(at);
            finished = true;
            if batch.is_empty() {
                break;
            }
        }
        let n = batch.len() as u64;
        let has_records = batch.iter().any(|j| matches!(j, Outgoing::Record { .. }));
        // A link lost just now is waited for (a failover); past the hold the relay is
        // degraded, local-only: messages are not held back for a Valkey that may not return
        // soon (the subscriber side is down too, so nothing would be consistent).
        if !link.wait_up().await {
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
        if conn.as_ref().is_some_and(|(g, _)| *g != link.generation()) {
            conn = None;
        }
        // Script calls with their place in the pipeline.
        let mut scripts: Vec<(usize, ScriptCall, OnFail)> = Vec::new();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for job in batch.drain(..) {
            match job {
                Outgoing::Publish { channel, payload } => {
                    pipe.cmd(command).arg(channel).arg(&payload[..]);
                }
                Outgoing::Script(call) => {
                    pipe.add_command(call.cmd(true));
                    scripts.push((pipe.len() - 1, call, None));
                }
                Outgoing::Record { call, on_fail } => {
                    pipe.add_command(call.cmd(true));
                    scripts.push((pipe.len() - 1, call, Some(on_fail)));
                }
                Outgoing::Finish => {}
            }
        }
        // A dropped connection gets one retry on a fresh one, so a Valkey restart loses no
        // message; other failures (a timeout) are not retried, as the PUBLISH may have happened.
        let mut result = send(&valkey, &link, &mut conn, &pipe).await;
        if result.as_ref().is_err_and(PublishError::is_dropped) {
            conn = None;
            result = send(&valkey, &link, &mut conn, &pipe).await;
        }
        let replies = match result {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!(error = %e, dropped = n, "relay: publishing failed");
                crate::metrics::valkey_errors(ValkeyOp::Publish, n);
                conn = None;
                scripts.into_iter().filter_map(|s| s.2).for_each(|f| f());
                continue;
            }
        };
        crate::metrics::valkey_published(n);
        let failed = replies
            .iter()
            .enumerate()
            .filter(|(i, v)| {
                matches!(v, redis::Value::ServerError(_)) && !scripts.iter().any(|s| s.0 == *i)
            })
            .count();
        if failed > 0 {
            tracing::warn!(failed, "relay: Valkey refused some publishes");
            crate::metrics::valkey_errors(ValkeyOp::Publish, failed as u64);
        }
        let mut unknown_script = Vec::new();
        for (i, call, on_fail) in scripts {
            match replies.get(i) {
                Some(v) if is_unknown_script_reply(v) => unknown_script.push((call, on_fail)),
                Some(redis::Value::ServerError(e)) => {
                    tracing::warn!(error = e.code(), "relay: a script call failed");
                    let op = if on_fail.is_some() {
                        ValkeyOp::Record
                    } else {
                        ValkeyOp::Session
                    };
                    crate::metrics::valkey_errors(op, 1);
                    if let Some(f) = on_fail {
                        f();
                    }
                }
                _ => {}
            }
        }
        if !unknown_script.is_empty() {
            resend_with_text(&valkey, &link, &mut conn, unknown_script).await;
        }
    }
}

/// Sends again, as `EVAL` with the text, the calls Valkey answered `NOSCRIPT` (they did
/// nothing); that loads the scripts for the next batches.
async fn resend_with_text(
    valkey: &Valkey,
    link: &ValkeyLink,
    conn: &mut Option<(u64, Connection)>,
    calls: Vec<(ScriptCall, OnFail)>,
) {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for (call, _) in &calls {
        pipe.add_command(call.cmd(false));
    }
    match send(valkey, link, conn, &pipe).await {
        Ok(replies) => {
            for (i, (_, on_fail)) in calls.into_iter().enumerate() {
                let done =
                    matches!(replies.get(i), Some(v) if !matches!(v, redis::Value::ServerError(_)));
                if let (false, Some(f)) = (done, on_fail) {
                    f();
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, dropped = calls.len(), "relay: script calls failed");
            *conn = None;
            calls.into_iter().filter_map(|c| c.1).for_each(|f| f());
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error(transparent)]
    Connection(#[from] ValkeyError),
    #[error(transparent)]
    Command(#[from] redis::RedisError),
}

impl PublishError {
    fn is_dropped(&self) -> bool {
        match self {
            PublishError::Connection(e) => e.is_dropped(),
            PublishError::Command(e) => e.is_connection_dropped(),
        }
    }
}

/// Sends a pipeline built with `ignore_errors`: one reply per command, a command's error
/// among them; `Err` only when the pipeline could not be sent.
async fn send(
    valkey: &Valkey,
    link: &ValkeyLink,
    conn: &mut Option<(u64, Connection)>,
    pipe: &redis::Pipeline,
) -> Result<Vec<redis::Value>, PublishError> {
    let (_, c) = match conn {
        Some(c) => c,
        None => conn.insert((link.generation(), valkey.connection().await?)),
    };
    Ok(c.pipeline(pipe).await?)
}
