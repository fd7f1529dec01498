//! Publishing to Valkey.
//!
//! Broadcasts run on sockets' tasks and must not wait for Valkey, so they go into a bounded
//! queue. One task drains it and sends everything queued as one pipeline on one pooled
//! connection: order is kept, and a burst costs one round trip instead of one per message.

use std::sync::Arc;

use bytes::Bytes;
use deadpool_redis::{redis, Connection, Pool};
use tokio::sync::mpsc;

use super::link::Link;
use super::subscriber::Interest;

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
        cmd: redis::Cmd,
        on_fail: Box<dyn FnOnce() + Send>,
    },
    /// Jobs that go out in the same pipeline, back to back (a batch of broadcasts).
    Together(Vec<Outgoing>),
}

impl Outgoing {
    /// Adds the job's commands to `pipe`; returns how many.
    fn add_to(
        self,
        pipe: &mut redis::Pipeline,
        fallbacks: &mut Vec<Box<dyn FnOnce() + Send>>,
    ) -> u64 {
        match self {
            Outgoing::Publish { channel, payload } => {
                pipe.cmd("PUBLISH").arg(channel).arg(&payload[..]).ignore();
                1
            }
            Outgoing::Command(cmd) => {
                pipe.add_command(cmd).ignore();
                1
            }
            Outgoing::Record { cmd, on_fail } => {
                pipe.add_command(cmd).ignore();
                fallbacks.push(on_fail);
                1
            }
            Outgoing::Together(jobs) => jobs.into_iter().map(|j| j.add_to(pipe, fallbacks)).sum(),
        }
    }

    /// Runs the fallbacks of a job that was not queued.
    fn fail(self) {
        match self {
            Outgoing::Record { on_fail, .. } => on_fail(),
            Outgoing::Together(jobs) => jobs.into_iter().for_each(Outgoing::fail),
            Outgoing::Publish { .. } | Outgoing::Command(_) => {}
        }
    }
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

    /// Queues PUBLISHes that go out in one pipeline. Returns false when they were dropped.
    pub fn publish_all(&self, messages: Vec<(String, Bytes)>) -> bool {
        let jobs = messages
            .into_iter()
            .map(|(channel, payload)| Outgoing::Publish { channel, payload })
            .collect();
        self.queue(Outgoing::Together(jobs))
    }

    /// Queues a recording script call; `on_fail` runs if it cannot be made.
    pub fn record(&self, cmd: redis::Cmd, on_fail: Box<dyn FnOnce() + Send>) {
        self.queue_records(Outgoing::Record { cmd, on_fail });
    }

    /// Queues recording script calls that go out in one pipeline, in order; `on_fail` runs
    /// if they cannot be made.
    pub fn record_all(&self, cmds: Vec<redis::Cmd>, on_fail: Box<dyn FnOnce() + Send>) {
        let mut jobs: Vec<Outgoing> = cmds.into_iter().map(Outgoing::Command).collect();
        // The fallback rides on the last call: the pipeline succeeds or fails as a whole.
        if let Some(Outgoing::Command(cmd)) = jobs.pop() {
            jobs.push(Outgoing::Record { cmd, on_fail });
        }
        self.queue_records(Outgoing::Together(jobs));
    }

    fn queue_records(&self, job: Outgoing) {
        if let Err(e) = self.tx.try_send(job) {
            metrics::counter!("socket_gateway_valkey_errors_total", "op" => "publish_queue_full")
                .increment(1);
            e.into_inner().fail();
        }
    }

    /// Queues a command after the broadcasts queued before it.
    pub fn command(&self, cmd: redis::Cmd) -> bool {
        self.queue(Outgoing::Command(cmd))
    }

    fn queue(&self, job: Outgoing) -> bool {
        let queued = self.tx.try_send(job).is_ok();
        if !queued {
            metrics::counter!("socket_gateway_valkey_errors_total", "op" => "publish_queue_full")
                .increment(1);
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
    let mut conn: Option<(u64, Connection)> = None;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut fallbacks = Vec::new();
        let mut pipe = redis::pipe();
        let n: u64 = batch
            .drain(..)
            .map(|job| job.add_to(&mut pipe, &mut fallbacks))
            .sum();
        // Degraded means local-only: messages are not held back for a Valkey that may not
        // return soon (the subscriber side is down too, so nothing would be consistent).
        if !link.is_up() {
            metrics::counter!("socket_gateway_valkey_errors_total", "op" => "publish_degraded")
                .increment(n);
            fallbacks.into_iter().for_each(|f| f());
            continue;
        }
        if !fallbacks.is_empty() {
            // Rooms joined just now must be subscribed before their broadcasts come back.
            interest.settled(SETTLE_LIMIT).await;
        }
        // A connection from before the last reconnection is dead for sure. A dropped one
        // gets one retry on a fresh connection, so a Valkey restart loses no message; other
        // failures (a timeout) are not retried, as the PUBLISH may have happened.
        if conn.as_ref().is_some_and(|(g, _)| *g != link.generation()) {
            conn = None;
        }
        let mut result = send(&pool, &link, &mut conn, &pipe).await;
        if result.as_ref().is_err_and(PublishError::is_dropped) {
            conn = None;
            result = send(&pool, &link, &mut conn, &pipe).await;
        }
        match result {
            Ok(()) => {
                metrics::counter!("socket_gateway_valkey_publishes_total").increment(n);
            }
            Err(e) => {
                tracing::warn!(error = %e, dropped = n, "relay: publishing failed");
                metrics::counter!("socket_gateway_valkey_errors_total", "op" => "publish")
                    .increment(n);
                conn = None;
                fallbacks.into_iter().for_each(|f| f());
            }
        }
    }
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

async fn send(
    pool: &Pool,
    link: &Link,
    conn: &mut Option<(u64, Connection)>,
    pipe: &redis::Pipeline,
) -> Result<(), PublishError> {
    let (_, c) = match conn {
        Some(c) => c,
        None => conn.insert((link.generation(), pool.get().await?)),
    };
    pipe.query_async::<()>(&mut **c).await?;
    Ok(())
}
