//! Recording the broadcasts of the emitter and of Node servers into the recovery log.
//!
//! They are published without an offset, on the adapter's channels. Up to [`SLOTS`] gateways
//! hold a lease; each holder PSUBSCRIBEs those channels and records every message that no
//! gateway wrote, through the recording script with a dedupe key: both holders see the same
//! messages in the same order, so each is written once, and losing one holder loses nothing.
//!
//! On sharded Pub/Sub there is no pattern subscription: every gateway records the foreign
//! broadcasts it receives on its own subscriptions (see `Relay::on_sharded`), with the same
//! dedupe keys, and a lease holder subscribes to every room of the fleet's sessions besides
//! (`sharded_recording`).
//!
//! The dedupe key is a digest of channel and message plus how many times this recorder saw
//! that digest within the window, so a message repeated on purpose is recorded again.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::channels::room_of_in;
use super::sharded_recording::follow_fleet_rooms;
use super::{wire, Relay, RelayedNamespace};

/// Gateways recording at once.
pub const SLOTS: usize = 2;
const LEASE: Duration = Duration::from_secs(3);
const RENEW_EVERY: Duration = Duration::from_secs(1);

/// Extends the lease only if this instance still holds it.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// Every gateway runs this: take a free slot, record while it is held, renew it.
pub async fn run(relay: Weak<Relay>) {
    let mut held: Option<(usize, tokio::task::JoinHandle<()>)> = None;
    let mut tick = tokio::time::interval(RENEW_EVERY);
    loop {
        tick.tick().await;
        let Some(r) = relay.upgrade() else { return };
        let Some(recovery) = r.recovery.as_ref() else {
            return;
        };
        let Ok(mut c) = r.valkey.connection().await else {
            continue;
        };
        let lease_ms = LEASE.as_millis() as u64;
        if let Some((slot, task)) = &held {
            let renewed: Result<i64, _> = redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(recovery.lease_key(*slot))
                .arg(&r.uid)
                .arg(lease_ms)
                .query_async(&mut c)
                .await;
            if !matches!(renewed, Ok(1)) || task.is_finished() {
                tracing::info!(slot, "relay: recorder lease lost");
                task.abort();
                held = None;
                r.forget_fleet_rooms();
            }
            continue;
        }
        for slot in 0..SLOTS {
            let taken: Result<Option<String>, _> = redis::cmd("SET")
                .arg(recovery.lease_key(slot))
                .arg(&r.uid)
                .arg("NX")
                .arg("PX")
                .arg(lease_ms)
                .query_async(&mut c)
                .await;
            if matches!(taken, Ok(Some(_))) {
                tracing::info!(
                    slot,
                    "relay: recording the emitter's and Node servers' broadcasts"
                );
                let task = if r.sharded {
                    tokio::spawn(follow_fleet_rooms(relay.clone()))
                } else {
                    tokio::spawn(record(relay.clone()))
                };
                held = Some((slot, task));
                break;
            }
        }
    }
}

/// One PSUBSCRIBE connection's life; the lease loop restarts it if it ends.
async fn record(relay: Weak<Relay>) {
    let Some(valkey) = relay.upgrade().map(|r| r.valkey.clone()) else {
        return;
    };
    let Ok(client) = valkey.pubsub_client().await else {
        return;
    };
    let Ok(mut pubsub) = client.get_async_pubsub().await else {
        return;
    };
    let patterns: Vec<String> = match relay.upgrade() {
        Some(r) => r
            .spaces
            .iter()
            .map(|s| format!("{}*", s.channels.broadcast))
            .collect(),
        None => return,
    };
    if pubsub.psubscribe(&patterns).await.is_err() {
        return;
    }
    let mut seen = Seen::default();
    let mut stream = pubsub.into_on_message();
    while let Some(msg) = stream.next().await {
        let Some(r) = relay.upgrade() else { return };
        r.record_foreign(msg.get_channel_name(), msg.get_payload_bytes(), &mut seen);
    }
}

/// How many times each digest was seen lately (the dedupe key's counter).
#[derive(Default)]
pub struct Seen {
    counts: HashMap<[u8; 16], (u32, Instant)>,
}

impl Seen {
    fn next(&mut self, digest: [u8; 16], window: Duration) -> u32 {
        let now = Instant::now();
        if self.counts.len() > 50_000 {
            self.counts
                .retain(|_, (_, at)| now.duration_since(*at) < window);
        }
        let entry = self.counts.entry(digest).or_insert((0, now));
        if now.duration_since(entry.1) >= window {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
        entry.0
    }
}

/// A gateway's uid ("gw-" and 10 characters) cannot be a Node adapter's (6 characters on
/// classic, 16 on sharded) or the emitter's ("emitter"): the recorder skips what gateways
/// recorded themselves by looking at the message's first bytes.
pub fn is_gateway_message(payload: &[u8]) -> bool {
    payload.len() > 5 && payload[0] == 0x93 && payload[1] == 0xa0 | 13 && &payload[2..5] == b"gw-"
}

pub fn is_gateway_uid(uid: &str) -> bool {
    uid.len() == 13 && uid.starts_with("gw-")
}

impl Relay {
    fn record_foreign(self: &Arc<Self>, channel: &str, payload: &[u8], seen: &mut Seen) {
        if is_gateway_message(payload) {
            return;
        }
        let Some(space) = self
            .spaces
            .iter()
            .find(|s| room_of_in(&s.channels.broadcast, channel).is_some())
        else {
            return;
        };
        let Ok(b) = wire::decode_broadcast(payload) else {
            return;
        };
        if b.nsp != space.name {
            return;
        }
        self.record_foreign_broadcast(space, channel, payload, &b, seen);
    }

    /// Records `b`, received as `payload` on `channel` (of `space`), in the partition of its
    /// rooms, with a dedupe key so that however many recorders saw it, it is written once.
    pub(crate) fn record_foreign_broadcast(
        &self,
        space: &RelayedNamespace,
        channel: &str,
        payload: &[u8],
        b: &wire::RemoteBroadcast,
        seen: &mut Seen,
    ) {
        let Some(recovery) = self.recovery.as_ref() else {
            return;
        };
        let Ok(message) = wire::encode_broadcast(&b.uid, &b.target, &b.packet, true) else {
            return;
        };
        let mut h = Sha256::new();
        h.update(channel.as_bytes());
        h.update([0]);
        h.update(payload);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&h.finalize()[..16]);
        let n = seen.next(digest, recovery.window);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let partition = space.channels.partition_of(&b.target.rooms);
        let dedupe = recovery.seen_key(&space.name, partition, &format!("{hex}:{n}"));
        let recorded = space.channels.recorded_for(&b.target.rooms);
        let call = recovery.record_call(
            &space.name,
            partition,
            &message,
            None,
            &recorded,
            Some(&dedupe),
        );
        self.publisher.record(call, Box::new(|| {}));
    }
}
