//! The dedicated Pub/Sub connection: it follows the rooms this instance has members in,
//! reconnects by itself and restores every subscription after a reconnect.
//!
//! Pub/Sub cannot be pooled (a subscribed connection takes no other commands) and redis-rs'
//! connections do not reconnect, so this task supervises one: connect, subscribe to what is
//! wanted now, then follow changes in batches until the connection fails; back off and
//! start over. The connection is the relay's own ([`PubSubConnection`]), which keeps no copy
//! of the channels it follows. Messages published while it is down are lost to this
//! instance: that is the degraded, local-only mode, and `/readyz` says so.
//!
//! Sharded Pub/Sub has its own session ([`super::sharded_subscriber`]) under the same
//! supervision.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis;
use tokio::sync::{watch, Notify};

use super::link::ValkeyLink;
use super::valkey::pubsub::{PubSubConnection, PubSubError, Push};
use super::valkey::{Valkey, ValkeyError};
use crate::metrics::ValkeyOp;
use engineio::WriteBatch;

/// What the subscriber serves.
pub trait PubSubHandler: Send + Sync + 'static {
    /// Every channel wanted right now (after a (re)connect).
    fn desired(&self) -> Vec<String>;
    /// Patterns followed for the life of the connection (classic Pub/Sub only), besides the
    /// channels; `on_message` gets the channel a message was published on either way.
    fn patterns(&self) -> Vec<String>;
    /// Whether `channel` is wanted now (after a change was signalled for it).
    fn wanted(&self, channel: &str) -> bool;
    /// A message; deliveries it makes to sockets join `batch` (one write per socket per burst).
    fn on_message(&self, channel: &str, payload: &[u8], batch: &mut WriteBatch);
    /// Subscribed again after a lost connection, before any message of the new connection is
    /// read: what was published meanwhile can be made up for first, in order.
    fn resubscribed(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;
}

/// Channels whose wanted state may have changed since the last flush. Joins and leaves only
/// record the channel name here; the subscriber decides later, so a room created and
/// deleted between two flushes costs nothing.
pub struct Subscriptions {
    changed: Mutex<Pending>,
    pub(crate) wake: Notify,
    /// The `generation` the subscriptions in place account for.
    applied: watch::Sender<u64>,
}

#[derive(Default)]
struct Pending {
    channels: HashSet<String>,
    /// Counts changes, so a caller can wait until those made so far are applied.
    generation: u64,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            changed: Mutex::default(),
            wake: Notify::new(),
            applied: watch::channel(0).0,
        }
    }
}

impl Subscriptions {
    pub fn changed(&self, channels: impl IntoIterator<Item = String>) {
        let mut pending = self.lock();
        let before = pending.channels.len();
        pending.channels.extend(channels);
        if pending.channels.len() != before {
            pending.generation += 1;
            drop(pending);
            self.wake.notify_one();
        }
    }

    /// Resolves once every change made before the call is applied, or after `limit` (the
    /// link may be down, and then nothing is relayed anyway).
    pub async fn settled(&self, limit: Duration) {
        let wanted = self.lock().generation;
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|g| *g >= wanted)).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.changed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn take(&self) -> (HashSet<String>, u64) {
        let mut pending = self.lock();
        (std::mem::take(&mut pending.channels), pending.generation)
    }

    pub(crate) fn applied(&self, generation: u64) {
        self.applied.send_if_modified(|g| {
            let newer = generation > *g;
            if newer {
                *g = generation;
            }
            newer
        });
    }
}

/// Pub/Sub messages handled in one write batch at most (see `engineio::batch`): enough to
/// merge a burst's frames per socket, few enough to keep its first delivery prompt.
pub(crate) const MAX_BATCH: u64 = 256;

/// A batch this large means the relay is behind: its sockets are written by their own tasks,
/// on every worker thread, merging what piles up (see `engineio::batch`).
pub(crate) const BUSY_BATCH: u64 = 4;

/// Timing of the supervision loop.
#[derive(Clone, Debug)]
pub struct Timing {
    pub connect_timeout: Duration,
    /// Liveness PING on an idle subscribed connection (a silent network failure ends no stream).
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// Most channels per SUBSCRIBE/UNSUBSCRIBE command.
pub(crate) const CHUNK: usize = 1024;

/// Keeps a subscriber connection up for the life of the relay: classic, or `sharded`.
pub async fn run(
    valkey: Arc<Valkey>,
    inbox: Arc<dyn PubSubHandler>,
    interest: Arc<Subscriptions>,
    link: Arc<ValkeyLink>,
    timing: Timing,
    sharded: bool,
) {
    let mut delay = timing.backoff_min;
    loop {
        let result = if sharded {
            super::sharded_subscriber::session(&valkey, &*inbox, &interest, &link, &timing).await
        } else {
            session(&valkey, &*inbox, &interest, &link, &timing).await
        };
        let ended = match result {
            Ok(()) => "connection closed".to_owned(),
            Err(e) => e.to_string(),
        };
        crate::metrics::valkey_subscriptions(0);
        if link.is_up() {
            // It had been working: retry at once, then back off from the minimum.
            delay = timing.backoff_min;
        } else {
            crate::metrics::valkey_errors(ValkeyOp::Connect, 1);
        }
        link.set_down(&ended);
        tracing::debug!(error = %ended, retry_in_ms = delay.as_millis() as u64, "relay: subscriber down");
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(timing.backoff_max);
    }
}

/// Between half and all of `d`, so a fleet does not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("finding the node to subscribe on: {0}")]
    Node(ValkeyError),
    #[error("connecting: {0}")]
    Connect(PubSubError),
    #[error("{0}")]
    Connection(PubSubError),
    #[error("connecting: no answer within {0:?}")]
    ConnectTimeout(Duration),
    #[error("{op}: {source}")]
    Command {
        op: &'static str,
        source: redis::RedisError,
    },
    #[error("no PING answer within {0:?}")]
    PingTimeout(Duration),
    #[error("sharded Pub/Sub needs a Valkey Cluster")]
    NotACluster,
    #[error("a node's connection was lost")]
    NodeLost,
    #[error("sharded Pub/Sub has no pattern subscriptions")]
    NoShardedPatterns,
}

/// One connection's life: returns when it fails.
///
/// Subscription changes are written without waiting for their confirmations, which arrive
/// among the messages: each flush is applied ([`Subscriptions::applied`]) once Valkey has
/// confirmed every channel it named.
async fn session(
    valkey: &Valkey,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    link: &ValkeyLink,
    timing: &Timing,
) -> Result<(), SessionError> {
    let client = valkey.pubsub_client().await.map_err(SessionError::Node)?;
    let connecting = PubSubConnection::connect(client.get_connection_info());
    let mut conn = tokio::time::timeout(timing.connect_timeout, connecting)
        .await
        .map_err(|_| SessionError::ConnectTimeout(timing.connect_timeout))?
        .map_err(SessionError::Connect)?;
    let held = subscribe_everything(&mut conn, inbox, interest, link, timing).await?;
    let mut batch = WriteBatch::new();
    for (channel, payload) in &held {
        inbox.on_message(channel, payload, &mut batch);
    }
    batch.flush();
    crate::metrics::valkey_received(held.len() as u64);

    let mut unconfirmed = Unconfirmed::default();
    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.tick().await;
    let mut pong_due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            read = conn.read_more() => {
                read.map_err(SessionError::Connection)?;
                loop {
                    // The messages already here join one batch: one write per socket.
                    let mut batch = WriteBatch::new();
                    let taken = conn.drain(MAX_BATCH, |push| match push {
                        Push::Message { channel, payload } => {
                            if let Ok(channel) = std::str::from_utf8(channel) {
                                inbox.on_message(channel, payload, &mut batch);
                            }
                        }
                        Push::Confirmed { count } => unconfirmed.confirmed(interest, count),
                        Push::Pong => pong_due = None,
                    }).map_err(SessionError::Connection)?;
                    if taken >= BUSY_BATCH {
                        batch.busy();
                    }
                    batch.flush();
                    crate::metrics::valkey_received(taken);
                    if taken < MAX_BATCH {
                        break;
                    }
                }
            }
            _ = interest.wake.notified() => {
                let changes = Changes::take(inbox, interest);
                let named = queue(&mut conn, "SUBSCRIBE", &changes.add)
                    + queue(&mut conn, "UNSUBSCRIBE", &changes.remove);
                unconfirmed.expect(interest, named, changes.generation);
                conn.flush_within(timing.ping_timeout).await.map_err(SessionError::Connection)?;
            }
            _ = ping.tick(), if pong_due.is_none() => {
                conn.command::<&str>("PING", &[]);
                conn.flush_within(timing.ping_timeout).await.map_err(SessionError::Connection)?;
                pong_due = Some(tokio::time::Instant::now() + timing.ping_timeout);
            }
            _ = sleep_until(pong_due) => return Err(SessionError::PingTimeout(timing.ping_timeout)),
        }
    }
}

/// Waits until `due`, or forever without one.
async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// A session's start: everything wanted now is followed, then the link is up and what was
/// missed meanwhile is made up for. Returns the messages that arrived before that, to be
/// delivered after it, in order.
async fn subscribe_everything(
    conn: &mut PubSubConnection,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    link: &ValkeyLink,
    timing: &Timing,
) -> Result<Vec<(String, Vec<u8>)>, SessionError> {
    // Pending changes are dropped first: `desired()` below already includes them, and any
    // change from now on is recorded again.
    let (_, generation) = interest.take();
    let mut expected = queue(conn, "SUBSCRIBE", &inbox.desired());
    expected += queue(conn, "PSUBSCRIBE", &inbox.patterns());
    conn.flush_within(timing.connect_timeout)
        .await
        .map_err(SessionError::Connection)?;
    let mut held = Vec::new();
    let mut followed = 0;
    while expected > 0 {
        tokio::time::timeout(timing.connect_timeout, conn.read_more())
            .await
            .map_err(|_| SessionError::ConnectTimeout(timing.connect_timeout))?
            .map_err(SessionError::Connection)?;
        conn.drain(u64::MAX, |push| match push {
            Push::Message { channel, payload } => {
                if let Ok(channel) = std::str::from_utf8(channel) {
                    held.push((channel.to_owned(), payload.to_vec()));
                }
            }
            Push::Confirmed { count } => {
                expected = expected.saturating_sub(1);
                followed = count.max(0) as usize;
            }
            Push::Pong => {}
        })
        .map_err(SessionError::Connection)?;
    }
    interest.applied(generation);
    crate::metrics::valkey_subscriptions(followed);
    link.set_up(followed);
    inbox.resubscribed().await;
    Ok(held)
}

/// Queues `op` for `names`, [`CHUNK`] at a time; returns how many confirmations to expect.
fn queue(conn: &mut PubSubConnection, op: &str, names: &[String]) -> usize {
    for chunk in names.chunks(CHUNK) {
        conn.command(op, chunk);
    }
    names.len()
}

/// Flushes of subscription changes whose confirmations have not all arrived, in order.
#[derive(Default)]
struct Unconfirmed {
    /// Confirmations still due, and the generation the flush makes applied.
    due: VecDeque<(usize, u64)>,
}

impl Unconfirmed {
    fn expect(&mut self, interest: &Subscriptions, confirmations: usize, generation: u64) {
        if confirmations == 0 && self.due.is_empty() {
            interest.applied(generation);
        } else {
            self.due.push_back((confirmations, generation));
        }
    }

    fn confirmed(&mut self, interest: &Subscriptions, count: i64) {
        crate::metrics::valkey_subscriptions(count.max(0) as usize);
        if let Some((left, _)) = self.due.front_mut() {
            *left = left.saturating_sub(1);
        }
        while let Some(&(0, generation)) = self.due.front() {
            self.due.pop_front();
            interest.applied(generation);
        }
    }
}

/// The recorded changes: channels now wanted, and channels no longer wanted. A channel's
/// (un)subscription is idempotent in Valkey, so no copy of what is subscribed is kept.
pub(crate) struct Changes {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// What [`Subscriptions::applied`] is told once they are.
    pub generation: u64,
}

impl Changes {
    pub(crate) fn take(inbox: &dyn PubSubHandler, interest: &Subscriptions) -> Changes {
        let (channels, generation) = interest.take();
        let (add, remove) = channels.into_iter().partition(|c| inbox.wanted(c));
        Changes {
            add,
            remove,
            generation,
        }
    }
}
