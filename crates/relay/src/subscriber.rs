//! The dedicated Pub/Sub connection: it follows the rooms this instance has members in,
//! reconnects by itself and restores every subscription after a reconnect.
//!
//! Pub/Sub cannot be pooled (a subscribed connection takes no other commands) and redis-rs'
//! `PubSub` does not reconnect, so this task supervises one: connect, subscribe to what is
//! wanted now, then follow changes in batches until the connection fails; back off and
//! start over. Messages published while it is down are lost to this instance: that is the
//! degraded, local-only mode, and `/readyz` says so.
//!
//! Sharded Pub/Sub has its own session ([`super::sharded_subscriber`]) under the same
//! supervision.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{watch, Notify};

use super::link::ValkeyLink;
use super::valkey::{Valkey, ValkeyError};
use crate::metrics::ValkeyOp;
use engineio::sparse::ShrinkWhenSparse;
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
    Connect(redis::RedisError),
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
async fn session(
    valkey: &Valkey,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    link: &ValkeyLink,
    timing: &Timing,
) -> Result<(), SessionError> {
    let client = valkey.pubsub_client().await.map_err(SessionError::Node)?;
    let pubsub = tokio::time::timeout(timing.connect_timeout, client.get_async_pubsub())
        .await
        .map_err(|_| SessionError::ConnectTimeout(timing.connect_timeout))?
        .map_err(SessionError::Connect)?;
    let (mut sink, mut stream) = pubsub.split();

    let (mut subscribed, patterns) = subscribe_all(&mut sink, inbox, interest, link).await?;

    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => {
                    // The messages already here join one batch: one write per socket.
                    let mut batch = WriteBatch::new();
                    inbox.on_message(msg.get_channel_name(), msg.get_payload_bytes(), &mut batch);
                    let mut received = 1;
                    let mut ended = false;
                    while received < MAX_BATCH {
                        match stream.next().now_or_never() {
                            Some(Some(msg)) => {
                                inbox.on_message(
                                    msg.get_channel_name(),
                                    msg.get_payload_bytes(),
                                    &mut batch,
                                );
                                received += 1;
                            }
                            Some(None) => {
                                ended = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    if received >= BUSY_BATCH {
                        batch.busy();
                    }
                    batch.flush();
                    crate::metrics::valkey_received(received);
                    if ended {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            },
            _ = interest.wake.notified() => {
                flush(&mut sink, inbox, interest, &mut subscribed).await?;
                crate::metrics::valkey_subscriptions(subscribed.len() + patterns.len());
            }
            _ = ping.tick() => {
                match tokio::time::timeout(timing.ping_timeout, sink.ping::<()>()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(source)) => return Err(SessionError::Command { op: "PING", source }),
                    Err(_) => return Err(SessionError::PingTimeout(timing.ping_timeout)),
                }
            }
        }
    }
}

/// A Pub/Sub connection as a session drives it: classic (`PubSubSink`) or sharded (the
/// cluster connection, see `sharded_subscriber`).
pub(crate) trait ChannelSink {
    /// Subscribes to (`on`) or unsubscribes from `channels`, keeping `subscribed` in step
    /// with what Valkey confirmed.
    async fn apply(
        &mut self,
        channels: Vec<String>,
        on: bool,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), SessionError>;

    /// Follows `patterns` for the life of the connection (never asked of sharded Pub/Sub:
    /// its handler has none).
    async fn follow(&mut self, patterns: &[String]) -> Result<(), SessionError>;
}

/// A session's start: everything wanted now is followed, then the link is up and what was
/// missed meanwhile is made up for. Returns the channels and the patterns followed.
pub(crate) async fn subscribe_all(
    sink: &mut impl ChannelSink,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    link: &ValkeyLink,
) -> Result<(HashSet<String>, Vec<String>), SessionError> {
    // Pending changes are dropped first: `desired()` below already includes them, and any
    // change from now on is recorded again.
    let (_, generation) = interest.take();
    let mut subscribed: HashSet<String> = HashSet::new();
    sink.apply(inbox.desired(), true, &mut subscribed).await?;
    let patterns = inbox.patterns();
    if !patterns.is_empty() {
        sink.follow(&patterns).await?;
    }
    interest.applied(generation);
    let followed = subscribed.len() + patterns.len();
    crate::metrics::valkey_subscriptions(followed);
    link.set_up(followed);
    inbox.resubscribed().await;
    Ok((subscribed, patterns))
}

/// Applies the recorded changes: what is now wanted is subscribed, then what is no longer
/// is unsubscribed, each as few commands as the connection allows.
pub(crate) async fn flush(
    sink: &mut impl ChannelSink,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    subscribed: &mut HashSet<String>,
) -> Result<(), SessionError> {
    let changes = Changes::take(inbox, interest, subscribed);
    sink.apply(changes.add, true, subscribed).await?;
    sink.apply(changes.remove, false, subscribed).await?;
    interest.applied(changes.generation);
    Ok(())
}

/// The recorded changes, against what is subscribed: channels to add and to remove.
pub(crate) struct Changes {
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// What [`Subscriptions::applied`] is told once they are.
    pub generation: u64,
}

impl Changes {
    pub(crate) fn take(
        inbox: &dyn PubSubHandler,
        interest: &Subscriptions,
        subscribed: &HashSet<String>,
    ) -> Changes {
        let (channels, generation) = interest.take();
        let mut changes = Changes {
            add: Vec::new(),
            remove: Vec::new(),
            generation,
        };
        for channel in channels {
            match (inbox.wanted(&channel), subscribed.contains(&channel)) {
                (true, false) => changes.add.push(channel),
                (false, true) => changes.remove.push(channel),
                _ => {}
            }
        }
        changes
    }
}

impl ChannelSink for redis::aio::PubSubSink {
    /// [`CHUNK`] channels per SUBSCRIBE or UNSUBSCRIBE.
    async fn apply(
        &mut self,
        channels: Vec<String>,
        on: bool,
        subscribed: &mut HashSet<String>,
    ) -> Result<(), SessionError> {
        for chunk in channels.chunks(CHUNK) {
            let (op, result) = if on {
                ("SUBSCRIBE", self.subscribe(chunk).await)
            } else {
                ("UNSUBSCRIBE", self.unsubscribe(chunk).await)
            };
            result.map_err(|source| SessionError::Command { op, source })?;
            for c in chunk {
                if on {
                    subscribed.insert(c.clone());
                } else {
                    subscribed.remove(c);
                }
            }
        }
        subscribed.shrink_when_sparse();
        Ok(())
    }

    async fn follow(&mut self, patterns: &[String]) -> Result<(), SessionError> {
        let op = "PSUBSCRIBE";
        let subscribing = self.psubscribe(patterns).await;
        subscribing.map_err(|source| SessionError::Command { op, source })
    }
}
