//! The subscriber's session on sharded Pub/Sub (Valkey Cluster): one RESP3 cluster connection
//! (redis-rs) that SSUBSCRIBEs each channel on its slot's primary, a command per slot (one
//! SSUBSCRIBE naming channels of several slots is a CROSSSLOT error).
//!
//! Valkey unsubscribes a slot's channels itself when the slot moves to another primary (a
//! migration, a failover): the push `sunsubscribe` for a channel still wanted is answered at
//! once with a new SSUBSCRIBE, which redis-rs sends to the slot's new owner, and counted
//! (`socket_gateway_valkey_resubscribes_total`). What was published to those channels in
//! between is made up for from the recovery log when recovery is on, as after a reconnect.
//! A primary that stops answering PING ends the session, as on classic Pub/Sub.

use std::collections::{HashMap, HashSet};

use deadpool_redis::redis::{self, cluster_async::ClusterConnection, PushInfo, PushKind};
use futures_util::future::join_all;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, Slot};
use tokio::sync::mpsc;

use super::link::ValkeyLink;
use super::subscriber::{
    Changes, PubSubHandler, SessionError, Subscriptions, Timing, BUSY_BATCH, CHUNK, MAX_BATCH,
};
use super::valkey::Valkey;
use engineio::sparse::ShrinkWhenSparse;
use engineio::WriteBatch;

/// One cluster connection's life: returns when it fails.
pub(crate) async fn session(
    valkey: &Valkey,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    link: &ValkeyLink,
    timing: &Timing,
) -> Result<(), SessionError> {
    let (tx, mut pushes) = mpsc::unbounded_channel();
    let mut conn = valkey
        .sharded_pubsub(tx)
        .await
        .ok_or(SessionError::NotACluster)?
        .map_err(SessionError::Node)?;

    let mut subscribed = subscribe_all(&mut conn, inbox, interest, link).await?;

    let mut ping = tokio::time::interval(timing.ping_interval);
    ping.tick().await;
    loop {
        tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return Ok(()) };
                let mut burst = Burst::default();
                burst.take(inbox, push, &subscribed);
                while burst.received < MAX_BATCH {
                    match pushes.try_recv() {
                        Ok(push) => burst.take(inbox, push, &subscribed),
                        Err(_) => break,
                    }
                }
                if burst.received >= BUSY_BATCH {
                    burst.batch.busy();
                }
                burst.batch.flush();
                crate::metrics::valkey_received(burst.received);
                if burst.node_lost {
                    return Err(SessionError::NodeLost);
                }
                if !burst.unsubscribed.is_empty() {
                    let again: Vec<String> = burst.unsubscribed.into_iter().collect();
                    crate::metrics::valkey_resubscribed(again.len() as u64);
                    tracing::info!(channels = again.len(), "relay: Valkey moved sharded channels; subscribing again");
                    for c in &again {
                        subscribed.remove(c);
                    }
                    apply(&mut conn, again, true, &mut subscribed).await?;
                    inbox.resubscribed().await;
                }
            }
            _ = interest.wake.notified() => {
                flush(&mut conn, inbox, interest, &mut subscribed).await?;
                crate::metrics::valkey_subscriptions(subscribed.len());
            }
            _ = ping.tick() => {
                // Every primary: a silent one holds subscriptions that no longer deliver.
                let all = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                ));
                let pinging = conn.route_command(redis::cmd("PING"), all);
                match tokio::time::timeout(timing.ping_timeout, pinging).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(source)) => return Err(SessionError::Command { op: "PING", source }),
                    Err(_) => return Err(SessionError::PingTimeout(timing.ping_timeout)),
                }
            }
        }
    }
}

/// The pushes already received, handled as one write batch.
#[derive(Default)]
struct Burst {
    batch: WriteBatch,
    received: u64,
    /// Channels Valkey unsubscribed on its own while they are still wanted.
    unsubscribed: HashSet<String>,
    node_lost: bool,
}

impl Burst {
    fn take(&mut self, inbox: &dyn PubSubHandler, push: PushInfo, subscribed: &HashSet<String>) {
        match push.kind {
            PushKind::SMessage => {
                if let [channel, payload, ..] = push.data.as_slice() {
                    if let (Some(channel), Some(payload)) = (text(channel), bytes(payload)) {
                        inbox.on_message(channel, payload, &mut self.batch);
                        self.received += 1;
                    }
                }
            }
            // Ours are taken out of `subscribed` before they are sent.
            PushKind::SUnsubscribe => {
                if let Some(channel) = push.data.first().and_then(text) {
                    if subscribed.contains(channel) {
                        self.unsubscribed.insert(channel.to_owned());
                    }
                }
            }
            PushKind::Disconnection => self.node_lost = true,
            _ => {}
        }
    }
}

fn bytes(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn text(v: &redis::Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

/// A session's start: everything wanted now is followed, then the link is up and what was
/// missed meanwhile is made up for. Returns the channels followed.
async fn subscribe_all(
    conn: &mut ClusterConnection,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    link: &ValkeyLink,
) -> Result<HashSet<String>, SessionError> {
    if !inbox.patterns().is_empty() {
        return Err(SessionError::NoShardedPatterns);
    }
    // Pending changes are dropped first: `desired()` below already includes them, and any
    // change from now on is recorded again.
    let (_, generation) = interest.take();
    let mut subscribed = HashSet::new();
    apply(conn, inbox.desired(), true, &mut subscribed).await?;
    interest.applied(generation);
    crate::metrics::valkey_subscriptions(subscribed.len());
    link.set_up(subscribed.len());
    inbox.resubscribed().await;
    Ok(subscribed)
}

/// Applies the recorded changes: what is now wanted is subscribed, then what is no longer
/// is unsubscribed. `subscribed` is kept here (unlike on classic Pub/Sub) to tell Valkey's
/// own unsubscribes of a moved slot from ours.
async fn flush(
    conn: &mut ClusterConnection,
    inbox: &dyn PubSubHandler,
    interest: &Subscriptions,
    subscribed: &mut HashSet<String>,
) -> Result<(), SessionError> {
    let changes = Changes::take(inbox, interest);
    let add = changes.add.into_iter().filter(|c| !subscribed.contains(c));
    let remove = changes
        .remove
        .into_iter()
        .filter(|c| subscribed.contains(c));
    let (add, remove) = (add.collect(), remove.collect());
    apply(conn, add, true, subscribed).await?;
    apply(conn, remove, false, subscribed).await?;
    interest.applied(changes.generation);
    Ok(())
}

/// SSUBSCRIBEs or SUNSUBSCRIBEs grouped by slot, the slots' commands sent together, keeping
/// `subscribed` in step with what Valkey confirmed. Channels leaving are taken out of
/// `subscribed` first, so their confirmations are not taken for Valkey's own unsubscribes.
async fn apply(
    conn: &mut ClusterConnection,
    channels: Vec<String>,
    on: bool,
    subscribed: &mut HashSet<String>,
) -> Result<(), SessionError> {
    let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
    for channel in channels {
        if !on {
            subscribed.remove(&channel);
        }
        let slot = Slot::for_key(channel.as_bytes());
        by_slot.entry(slot).or_default().push(channel);
    }
    let commands = by_slot.values().flat_map(|c| c.chunks(CHUNK)).map(|chunk| {
        let mut conn = conn.clone();
        async move {
            if on {
                conn.ssubscribe(chunk).await
            } else {
                conn.sunsubscribe(chunk).await
            }
        }
    });
    let op = if on { "SSUBSCRIBE" } else { "SUNSUBSCRIBE" };
    for result in join_all(commands).await {
        result.map_err(|source| SessionError::Command { op, source })?;
    }
    if on {
        subscribed.extend(by_slot.into_values().flatten());
    }
    subscribed.shrink_when_sparse();
    Ok(())
}
