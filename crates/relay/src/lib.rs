//! The Valkey relay: broadcasts between gateway instances, Node socket.io servers running
//! `@socket.io/redis-adapter` 8.x and the app's `@socket.io/redis-emitter`, in their wire
//! format ([`wire`], [`channels`]).
//!
//! Data path:
//! - out: a namespace delivers a broadcast locally, then [`Relay::publish`] encodes it once
//!   and queues a PUBLISH to the room's channel (one room) or the namespace channel;
//! - in: the [`subscriber`] receives it and the namespace delivers it to its local sockets.
//!
//! Subscriptions are per room: this instance subscribes to `{prefix}#{nsp}#{room}#` while the
//! room has a local member, plus the namespace channel and the request channel, so it never
//! receives broadcasts for rooms it has nobody in. The rooms named by the ids of its own
//! sockets (`io.to(socketId)` from Node) are followed by one pattern per namespace instead, as
//! every id made here starts with this instance's tag (classic Pub/Sub; [`channels::ids_pattern`]).
//!
//! Subscribing to the request channel makes Node count this instance as a server, so it
//! answers every request a Node server answers ([`requests`]).
//!
//! On a Valkey Cluster the relay may speak sharded Pub/Sub instead (`redis.pubsub =
//! "sharded"`): SPUBLISH/SSUBSCRIBE ([`sharded_subscriber`]) in `createShardedAdapter`'s wire
//! format ([`sharded_wire`]), where requests share the namespace's channel and rooms have
//! channels as the subscription mode says ([`channels`]). Recovery's own channels keep the
//! classic format on both.

pub mod channels;
mod link;
pub mod log_cache;
pub mod metrics;
pub mod msgpack;
mod publisher;
pub mod recorder;
pub mod recovery;
mod requests;
pub mod script;
pub mod sessions;
mod sharded_recording;
pub mod sharded_subscriber;
pub mod sharded_wire;
pub mod subscriber;
pub mod valkey;
pub mod wire;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis;
use rand::distr::{Alphanumeric, SampleString};

use crate::metrics::{MarkReason, RecoveryOutcome, ValkeyOp};
use channels::{Channels, PubSubKind, SubscriptionMode};
use engineio::{SidTag, WriteBatch};
use link::ValkeyLink;
use publisher::Publisher;
use sessions::KeptChange;
use socketio::packet::Packet;
use socketio::recovery::{
    Claim, Frontier, Missed, Offset, Position, Recorded, Restored, SessionRecord,
};
use socketio::rooms::RoomChanges;
use socketio::{Adapter, BoxFuture, BroadcastTarget, Namespace, SessionStore, SocketIo};
use subscriber::{PubSubHandler, Subscriptions, Timing};
use valkey::{Timeouts, Topology, TopologyError, TopologyKind, Valkey};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    #[error("redis.pubsub = \"sharded\" needs redis.topology = \"cluster\"")]
    ShardedNeedsCluster,
}

/// What the relay needs from the configuration.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The node (single), a seed (cluster), or the data nodes' credentials (sentinel).
    pub url: String,
    pub topology: TopologyKind,
    /// More seeds (cluster) or the sentinels (sentinel).
    pub nodes: Vec<String>,
    /// The primary's name at the sentinels.
    pub sentinel_service: String,
    pub prefix: String,
    /// Classic or sharded Pub/Sub, with the Node adapter's wire format of each.
    pub pubsub: PubSubKind,
    /// Which rooms have their own channel on sharded Pub/Sub.
    pub subscription_mode: SubscriptionMode,
    /// How long a broadcast-with-ack from a Node peer waits for our clients when it names no
    /// timeout.
    pub ack_timeout: Duration,
    pub timing: Timing,
    /// Connection state recovery's window, when it is on.
    pub recovery: Option<Duration>,
    /// Into how many partitions each namespace's recovery log is split (every instance of a
    /// fleet must use the same).
    pub log_partitions: usize,
}

/// How often the relay measures Pub/Sub lag with a probe through Valkey.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// One namespace as the relay sees it.
struct RelayedNamespace {
    name: String,
    ns: Weak<Namespace>,
    channels: Channels,
    /// What was delivered here from the recovery channels, per partition (they carry each in
    /// order): the stamp of every recorded packet, and where what a lost subscriber
    /// connection missed starts.
    delivered: Mutex<Delivered>,
    /// Woken when `delivered` moves (a restore waits for it to pass its replay).
    delivered_moved: tokio::sync::Notify,
    /// Sharded with recovery: the rooms followed to record, beyond the members' own.
    recording: sharded_recording::RoomsToRecord,
}

pub struct Relay {
    /// This instance's id in messages; it ignores messages carrying it.
    uid: String,
    /// For the futures it hands out, which must not keep it alive.
    me: Weak<Relay>,
    spaces: Vec<RelayedNamespace>,
    publisher: Publisher,
    valkey: Arc<Valkey>,
    interest: Arc<Subscriptions>,
    link: Arc<ValkeyLink>,
    probe_channel: String,
    ack_timeout: Duration,
    recovery: Option<recovery::Recovery>,
    /// Kept sessions (with recovery on).
    sessions: Option<sessions::Sessions>,
    /// Sharded Pub/Sub (`createShardedAdapter`'s wire format) rather than classic.
    sharded: bool,
    /// What the ids of the sockets made here start with. On classic Pub/Sub their own rooms
    /// are followed by one pattern per namespace ([`PubSubHandler::patterns`]), not by a
    /// channel each (sharded Pub/Sub has no patterns).
    own_socket_ids: SidTag,
    /// With recovery on sharded Pub/Sub, every gateway records the foreign broadcasts it
    /// receives (no pattern subscription reaches sharded channels): how often it saw each.
    foreign_seen: Mutex<recorder::Seen>,
    /// The subscriber, the probe and recovery's tasks: aborted at the end.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The publisher's task: it ends by itself once told to, after what was queued.
    publishing: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Longest wait at shutdown for what is queued to reach Valkey (a dead Valkey must not hold
/// the exit up).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest wait for Valkey while restoring a session; past it the client gets a fresh one. A
/// failover's storm queues restores behind each other: a few seconds' wait is still cheaper
/// for the client than a fresh session (its app refetches everything).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(8);

impl Relay {
    /// Wires the relay into every namespace of `io` and starts its tasks. It does not wait
    /// for Valkey: until the subscriber is connected the instance serves local-only.
    pub fn start(config: RelayConfig, io: &Arc<SocketIo>) -> Result<Arc<Relay>, RelayError> {
        let topology = Topology::from_settings(
            config.topology,
            &config.url,
            &config.nodes,
            &config.sentinel_service,
        )?;
        // redis-rs answers a command with a timeout after 500 ms by default: a short Valkey stall
        // would then drop whole publish batches. Commands wait instead until the link would be
        // declared down (an unanswered PING: interval + timeout), plus a margin, so a stall
        // shorter than that delays messages and loses none.
        let timing = &config.timing;
        let command_timeout = timing.ping_interval + timing.ping_timeout + Duration::from_secs(2);
        let timeouts = Timeouts {
            command: command_timeout,
            connect: timing.connect_timeout,
        };
        let sharded = config.pubsub == PubSubKind::Sharded;
        if sharded && config.topology != TopologyKind::Cluster {
            return Err(RelayError::ShardedNeedsCluster);
        }
        let publish_command = if sharded { "SPUBLISH" } else { "PUBLISH" };
        let valkey = Arc::new(Valkey::open(topology, timeouts)?);
        // 13 characters: never a Node adapter's uid (6) nor the emitter's (see recorder).
        let uid = format!("gw-{}", Alphanumeric.sample_string(&mut rand::rng(), 10));
        let link = Arc::new(ValkeyLink::new());
        let interest = Arc::new(Subscriptions::default());
        let (publisher, publisher_task) = Publisher::start(
            valkey.clone(),
            link.clone(),
            interest.clone(),
            publish_command,
        );
        let relay = Arc::new_cyclic(|me| Relay {
            me: me.clone(),
            spaces: io
                .namespaces()
                .map(|ns| RelayedNamespace {
                    name: ns.name.clone(),
                    ns: Arc::downgrade(ns),
                    channels: if sharded {
                        Channels::sharded(
                            &config.prefix,
                            &ns.name,
                            config.subscription_mode,
                            config.log_partitions,
                        )
                    } else {
                        Channels::new(&config.prefix, &ns.name, config.log_partitions)
                    },
                    delivered: Mutex::new(Delivered::new(config.log_partitions)),
                    delivered_moved: tokio::sync::Notify::new(),
                    recording: Default::default(),
                })
                .collect(),
            probe_channel: format!("{}-gateway-probe#{uid}#", config.prefix),
            sessions: config
                .recovery
                .map(|window| sessions::Sessions::new(&config.prefix, &uid, window)),
            uid,
            sharded,
            own_socket_ids: io.socket_id_tag(),
            foreign_seen: Mutex::default(),
            publisher,
            valkey,
            interest,
            link,
            ack_timeout: config.ack_timeout,
            recovery: config.recovery.map(|window| {
                recovery::Recovery::new(
                    &config.prefix,
                    window,
                    publish_command,
                    config.log_partitions,
                )
            }),
            tasks: Mutex::new(Vec::new()),
            publishing: Mutex::new(Some(publisher_task)),
        });
        for ns in io.namespaces() {
            ns.set_adapter(relay.clone());
            if relay.recovery.is_some() {
                ns.set_session_store(relay.clone());
            }
        }
        if relay.recovery.is_some() {
            let weak = Arc::downgrade(&relay);
            let tasks = [
                tokio::spawn(recorder::run(weak.clone())),
                tokio::spawn(mark_quiet_partitions(weak.clone())),
                tokio::spawn(keep_sessions(weak)),
            ];
            relay
                .lock_tasks()
                .extend(tasks.iter().map(|t| t.abort_handle()));
        }
        let (valkey, inbox, interest, link) = (
            relay.valkey.clone(),
            relay.clone(),
            relay.interest.clone(),
            relay.link.clone(),
        );
        let subscriber = tokio::spawn(subscriber::run(
            valkey,
            inbox,
            interest,
            link,
            config.timing,
            sharded,
        ));
        let probe = tokio::spawn(probe(Arc::downgrade(&relay)));
        let valkey = relay.valkey.clone();
        let close_idle = tokio::spawn(async move { valkey.close_idle().await });
        relay.lock_tasks().extend([
            subscriber.abort_handle(),
            probe.abort_handle(),
            close_idle.abort_handle(),
        ]);
        tracing::info!(
            uid = %relay.uid,
            prefix = %config.prefix,
            topology = relay.valkey.topology(),
            sharded,
            "relay starting"
        );
        Ok(relay)
    }

    fn me(&self) -> Weak<Relay> {
        self.me.clone()
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Valkey's command connections (for callers that need Valkey beyond Pub/Sub).
    pub fn valkey(&self) -> &Arc<Valkey> {
        &self.valkey
    }

    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// `true` while the relay is connected to Valkey (for `/readyz`).
    pub fn link_state(&self) -> tokio::sync::watch::Receiver<bool> {
        self.link.watch()
    }

    /// The end of a clean shutdown: stops receiving, then lets the publisher send what is
    /// queued (broadcasts, the kept sessions of the sockets the drain closed) before it ends,
    /// for at most [`FLUSH_TIMEOUT`].
    pub async fn stop(&self) {
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
        let publishing = self
            .publishing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut task) = publishing {
            self.publisher.finish();
            if tokio::time::timeout(FLUSH_TIMEOUT, &mut task)
                .await
                .is_err()
            {
                tracing::warn!("relay: Valkey did not take the last messages in time");
                task.abort();
            }
        }
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn space(&self, nsp: &str) -> Option<&RelayedNamespace> {
        self.spaces.iter().find(|s| s.name == nsp)
    }

    /// Where this instance receives broadcasts: the recovery channels when recovery is on
    /// (everything recorded, its own broadcasts included, each partition in order; one base
    /// per partition on sharded Pub/Sub), else the adapter's.
    fn listen<'a>(&self, space: &'a RelayedNamespace) -> Vec<&'a str> {
        if self.recovery.is_some() {
            let bases = space.channels.recorded_bases();
            bases.iter().map(String::as_str).collect()
        } else {
            vec![&space.channels.broadcast]
        }
    }

    /// The channel bases this instance subscribes under. Sharded, the adapter's too, with
    /// recovery on: requests come there, and the foreign broadcasts it records (no pattern
    /// subscription reaches sharded channels).
    fn listen_all<'a>(&self, space: &'a RelayedNamespace) -> Vec<&'a str> {
        let mut bases = self.listen(space);
        if self.sharded && self.recovery.is_some() {
            bases.insert(0, &space.channels.broadcast);
        }
        bases
    }

    /// Whether `room` is the own room of a socket made here: followed by the pattern of its
    /// namespace, never by a channel of its own.
    fn by_pattern(&self, room: &str) -> bool {
        !self.sharded && self.own_socket_ids.made(room)
    }

    /// Whether a room this instance has members in is followed on its channel under `base`:
    /// on the recovery channels under its partition's base (the record script picks them), on
    /// the adapter's when the subscription mode gives the room a channel.
    fn room_channel_wanted(&self, space: &RelayedNamespace, base: &str, room: &str) -> bool {
        if base == space.channels.broadcast {
            space.channels.room_has_channel(room)
        } else {
            space.channels.recorded_under(base, room)
        }
    }

    /// A broadcast in the classic format: another server's, or (with recovery on) one recorded
    /// in the log, on the recovery channels.
    fn on_broadcast(
        &self,
        space: &RelayedNamespace,
        room: &str,
        payload: &[u8],
        batch: &mut WriteBatch,
    ) {
        match wire::decode_broadcast(payload) {
            Ok(b) => self.deliver_remote(space, room, b, batch),
            Err(e) => {
                crate::metrics::valkey_errors(ValkeyOp::Decode, 1);
                tracing::debug!(error = %e, "relay: ignoring a malformed broadcast");
            }
        }
    }

    /// A message in the sharded format on the namespace's channel or a room's: a broadcast to
    /// deliver (recovery off) or to record (on: gateways' own arrive recorded), or a request.
    fn on_sharded(
        &self,
        space: &RelayedNamespace,
        channel: &str,
        room: &str,
        payload: &[u8],
        batch: &mut WriteBatch,
    ) {
        match sharded_wire::decode(payload) {
            Ok(sharded_wire::Message::Broadcast(b)) if self.recovery.is_some() => {
                if !recorder::is_gateway_uid(&b.uid) && b.nsp == space.name {
                    let mut seen = self.foreign_seen.lock().unwrap_or_else(|e| e.into_inner());
                    self.record_foreign_broadcast(space, channel, payload, &b, &mut seen);
                }
            }
            Ok(sharded_wire::Message::Broadcast(b)) => self.deliver_remote(space, room, b, batch),
            Ok(sharded_wire::Message::Request(request)) => self.answer(space, request),
            Err(e) => {
                crate::metrics::valkey_errors(ValkeyOp::Decode, 1);
                tracing::debug!(error = %e, "relay: ignoring a malformed sharded message");
            }
        }
    }

    fn deliver_remote(
        &self,
        space: &RelayedNamespace,
        room: &str,
        b: wire::RemoteBroadcast,
        batch: &mut WriteBatch,
    ) {
        let Some(ns) = space.ns.upgrade() else { return };
        // A message for a room we just left (the UNSUBSCRIBE is still on its way).
        if !room.is_empty() && !ns.rooms.contains_room(room) {
            return;
        }
        let recording = self.recovery.is_some();
        if (b.uid == self.uid && !recording) || b.nsp != ns.name {
            return;
        }
        match b.offset.as_deref().and_then(|o| o.parse::<Offset>().ok()) {
            Some(id) if recording => {
                let partition = space.channels.partition_of(&b.target.rooms);
                let at = Position { partition, id };
                let Some(stamp) = space.advance(at) else {
                    return; // made up for after a lost connection already
                };
                let recorded = Recorded { at, stamp };
                ns.deliver_recorded(&b.target, b.packet, &recorded, Some(batch));
            }
            _ => {
                ns.deliver_in(&b.target, &[b.packet], batch);
            }
        }
    }

    /// [`Adapter::restore`]'s work: the offset must still be in the log, then the session is
    /// claimed (bound to its owner, see [`sessions`]); a stale socket still holding it on
    /// another instance is told to go.
    async fn claim(&self, claim: &Claim) -> Result<Restored, RecoveryOutcome> {
        let (Some(recovery), Some(sessions)) = (&self.recovery, &self.sessions) else {
            return Err(RecoveryOutcome::Unavailable);
        };
        match recovery
            .whole_after(&self.valkey, &claim.nsp, &claim.offset)
            .await
        {
            Some(true) => {}
            Some(false) => return Err(RecoveryOutcome::OffsetGone),
            None => return Err(RecoveryOutcome::Unavailable),
        }
        let claimed = match sessions.claim(&self.valkey, claim).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(RecoveryOutcome::UnknownSession),
            Err(e) => {
                tracing::warn!(error = %e, "relay: cannot restore a session");
                return Err(RecoveryOutcome::Unavailable);
            }
        };
        if !claimed.previous_host.is_empty() && claimed.previous_host != self.uid {
            if let Some(space) = self.space(&claim.nsp) {
                let (sid, holder) = (claimed.sid, &claimed.previous_holder);
                let request = if self.sharded {
                    sharded_wire::replace_request(&self.uid, &space.name, sid, holder)
                } else {
                    wire::replace_request(&self.uid, sid, holder)
                };
                self.publisher
                    .publish(space.channels.request.clone(), request);
            }
        }
        Ok(Restored {
            sid: claimed.sid,
            rooms: claimed.rooms,
            offset: claim.offset.clone(),
        })
    }

    fn on_probe(&self, payload: &[u8]) {
        let sent = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(sent) = sent {
            let lag = now_micros().saturating_sub(sent);
            crate::metrics::pubsub_lag(lag as f64 / 1e6);
        }
    }
}

impl Adapter for Relay {
    /// Without recovery: delivered here, then published for the other instances. With it:
    /// each packet is recorded (log and publish in one script) and delivered here like
    /// everyone else's, when it comes back from Valkey with its offset.
    fn broadcast(&self, ns: &Namespace, target: &BroadcastTarget, packets: Vec<Packet>) {
        if self.recovery.is_some() {
            for packet in packets {
                self.record(ns, target.clone(), packet);
            }
            return;
        }
        ns.deliver(target, &packets);
        for packet in &packets {
            self.publish(&ns.name, target, packet);
        }
    }

    fn rooms_changed(&self, nsp: &str, changes: RoomChanges) {
        let Some(space) = self.space(nsp) else { return };
        if self.sharded && self.recovery.is_some() {
            space.recording.created(&changes.created);
        }
        self.mark_new_rooms(space, &changes.created);
        let bases = self.listen_all(space);
        self.interest.changed(
            changes
                .created
                .iter()
                .chain(&changes.deleted)
                .filter(|room| !self.by_pattern(room))
                .flat_map(|room| bases.iter().map(move |base| channels::room_in(base, room))),
        );
    }

    /// Waits for the subscriber to apply the subscriptions asked so far (at most 1 s); at
    /// once while the link is down: nothing is relayed then anyway (local-only).
    fn rooms_followed(&self) -> BoxFuture<()> {
        if !self.link.is_up() {
            return Box::pin(std::future::ready(()));
        }
        let interest = self.interest.clone();
        Box::pin(async move { interest.settled(Duration::from_secs(1)).await })
    }
}

impl Relay {
    /// Publishes a broadcast already delivered here, for the other instances.
    fn publish(&self, nsp: &str, target: &BroadcastTarget, packet: &Packet) {
        if !self.link.accepts() {
            crate::metrics::valkey_errors(ValkeyOp::PublishDegraded, 1);
            return;
        }
        let Some(space) = self.space(nsp) else { return };
        match self.plain_copy(space, target, packet) {
            Ok(payload) => {
                let channel = space.channels.publish_channel(&target.rooms, false);
                self.publisher.publish(channel, payload);
            }
            Err(e) => tracing::warn!(error = %e, "relay: cannot encode a broadcast"),
        }
    }

    /// A broadcast as Node servers read it, in this relay's wire format.
    fn plain_copy(
        &self,
        space: &RelayedNamespace,
        target: &BroadcastTarget,
        packet: &Packet,
    ) -> Result<Vec<u8>, wire::WireError> {
        if self.sharded {
            sharded_wire::encode_broadcast(&self.uid, &space.name, target, packet)
        } else {
            wire::encode_broadcast(&self.uid, target, packet, false)
        }
    }

    /// Records a broadcast in the log and publishes it (a plain copy for Node peers, one with
    /// its offset for the gateways, this one included). Without Valkey, or when the call
    /// fails, it is still delivered here, without an offset.
    fn record(&self, ns: &Namespace, target: BroadcastTarget, packet: Packet) {
        let (Some(space), Some(recovery)) = (self.space(&ns.name), self.recovery.as_ref()) else {
            return;
        };
        let message = wire::encode_broadcast(&self.uid, &target, &packet, true);
        let plain = space.channels.publish_channel(&target.rooms, false);
        let partition = space.channels.partition_of(&target.rooms);
        let recorded = space.channels.recorded_for(&target.rooms);
        // Sharded: the script may only publish in the log's slot, so Node peers' copy goes
        // out on its own, in their format.
        let sharded_copy = match self.sharded {
            true => Some(self.plain_copy(space, &target, &packet)),
            false => None,
        };
        let weak = space.ns.clone();
        let local = move || {
            if let Some(ns) = weak.upgrade() {
                ns.deliver(&target, &[packet]);
            }
        };
        match message {
            Ok(message) if self.link.accepts() => {
                let plain_in_script = (!self.sharded).then_some(plain.as_str());
                let call = recovery.record_call(
                    &ns.name,
                    partition,
                    &message,
                    plain_in_script,
                    &recorded,
                    None,
                );
                self.publisher.record(call, Box::new(local));
                if let Some(Ok(copy)) = sharded_copy {
                    self.publisher.publish(plain, copy);
                }
            }
            Ok(_) => local(),
            Err(e) => {
                tracing::warn!(error = %e, "relay: cannot encode a broadcast");
                local();
            }
        }
    }

    /// Applies what other servers asked of every socket of these owners to their kept
    /// sessions too (see [`sessions`]).
    pub(crate) fn kept_sessions_changed(&self, nsp: &str, owners: &[String], change: KeptChange) {
        let Some(sessions) = &self.sessions else {
            return;
        };
        for owner in owners {
            self.publisher.script(sessions.change(nsp, owner, &change));
        }
    }
}

impl SessionStore for Relay {
    fn socket_rooms_changed(&self, nsp: &str, sid: engineio::Sid) {
        if let Some(recovery) = &self.recovery {
            recovery.mark_dirty(nsp, sid);
        }
    }

    fn session_opened(&self, record: SessionRecord) {
        if let Some(sessions) = &self.sessions {
            self.publisher.script(sessions.save_live(&record));
        }
    }

    fn session_closed(&self, record: SessionRecord, recoverable: bool) {
        let Some(sessions) = &self.sessions else {
            return;
        };
        if recoverable && self.sharded {
            self.keep_rooms(&record);
        }
        self.publisher.script(if recoverable {
            sessions.save_closed(&record)
        } else {
            sessions.forget(&record)
        });
    }

    fn restore(&self, claim: Claim) -> BoxFuture<Option<Restored>> {
        if self.recovery.is_none() || !self.link.accepts() {
            return Box::pin(async { None });
        }
        let relay = self.me();
        Box::pin(async move {
            let relay = relay.upgrade()?;
            // A client back during a failover waits for it rather than losing its session.
            if !relay.link.wait_up().await {
                return None;
            }
            let outcome = tokio::time::timeout(RESTORE_TIMEOUT, relay.claim(&claim))
                .await
                .unwrap_or(Err(RecoveryOutcome::Unavailable));
            let outcome_label = match &outcome {
                Ok(_) => RecoveryOutcome::Restored,
                Err(o) => *o,
            };
            crate::metrics::recovery_attempt(outcome_label);
            // Never the pid, the socket id or the user: the claim may be someone else's.
            tracing::debug!(outcome = outcome_label.as_str(), "recovery claim");
            outcome.ok()
        })
    }

    fn missed(&self, nsp: &str, rooms: Vec<String>, offset: Frontier) -> BoxFuture<Option<Missed>> {
        let (relay, nsp) = (self.me(), nsp.to_owned());
        Box::pin(async move {
            let relay = relay.upgrade()?;
            let recovery = relay.recovery.as_ref()?;
            let missed = recovery.missed(&relay.valkey, &nsp, &rooms, &offset).await;
            let read = Instant::now();
            let Some(missed) = missed else {
                crate::metrics::recovery_attempt(RecoveryOutcome::LogUnavailable);
                return None;
            };
            if !relay.deliveries_pass(&nsp, &missed.through, read).await {
                crate::metrics::recovery_attempt(RecoveryOutcome::DeliveriesBehind);
                return None;
            }
            Some(missed)
        })
    }
}

/// What an instance delivered of a namespace's log (see [`RelayedNamespace::delivered`]).
struct Delivered {
    frontier: Frontier,
    /// When each partition last moved (a quiet one gets a marker).
    moved_at: Vec<Instant>,
    /// When each partition's last marker was sent (a storm's restores share one).
    marked_at: Vec<Option<Instant>>,
}

impl Delivered {
    fn new(partitions: usize) -> Self {
        Delivered {
            frontier: Frontier::empty(partitions),
            moved_at: vec![Instant::now(); partitions.max(1)],
            marked_at: vec![None; partitions.max(1)],
        }
    }
}

impl RelayedNamespace {
    fn lock_delivered(&self) -> std::sync::MutexGuard<'_, Delivered> {
        self.delivered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the packet at `at` as delivered and returns the stamp it goes out with; `None`
    /// when it was delivered already (not newer than the last of its partition).
    fn advance(&self, at: Position) -> Option<Frontier> {
        let mut delivered = self.lock_delivered();
        if !delivered.frontier.advance(at) {
            return None;
        }
        let stamp = delivered.frontier.clone();
        // With one partition nothing is marked when quiet and no restore waits (see
        // `deliveries_pass`): no clock read, no wake-up, per packet.
        let several = stamp.partitions() > 1;
        if several {
            delivered.moved_at[at.partition] = Instant::now();
        }
        drop(delivered);
        if several {
            self.delivered_moved.notify_waiters();
        }
        Some(stamp)
    }

    /// A marker arrived: everything of `partition` up to `id` that this instance follows was
    /// delivered before it.
    fn passed_mark(&self, partition: usize, id: Offset) {
        let mut delivered = self.lock_delivered();
        if partition >= delivered.moved_at.len() {
            return;
        }
        delivered.frontier.advance(Position { partition, id });
        // Known up to date now, moved or not.
        delivered.moved_at[partition] = Instant::now();
        drop(delivered);
        self.delivered_moved.notify_waiters();
    }

    fn last_delivered(&self) -> Frontier {
        self.lock_delivered().frontier.clone()
    }

    /// The partitions that delivered nothing for `quiet`.
    fn quiet_partitions(&self, quiet: Duration) -> Vec<usize> {
        let delivered = self.lock_delivered();
        let moved = delivered.moved_at.iter().enumerate();
        moved
            .filter(|(_, at)| at.elapsed() >= quiet)
            .map(|(p, _)| p)
            .collect()
    }
}

/// Longest wait for this instance's deliveries to pass a restore's replay; past it the client
/// gets a fresh session rather than an offset that could move back.
const PASS_REPLAY_TIMEOUT: Duration = Duration::from_secs(3);

impl Relay {
    /// Waits until every partition delivered here is at or past `replayed`, read from the log
    /// before `read`, so every stamp from now on covers what a restore replayed. A partition
    /// behind gets a marker, unless one was sent since `read`: that one ran in Valkey after the
    /// read, so it reaches past it (a storm's restores share it). One partition needs no wait:
    /// a live packet the replay did not cover is past it, and so is its stamp. False when it
    /// does not happen in time.
    async fn deliveries_pass(&self, nsp: &str, replayed: &Frontier, read: Instant) -> bool {
        let (Some(space), Some(recovery)) = (self.space(nsp), &self.recovery) else {
            return false;
        };
        if recovery.partitions() == 1 {
            return true;
        }
        let (behind, unmarked): (Vec<usize>, Vec<usize>) = {
            let delivered = space.lock_delivered();
            let behind: Vec<usize> = (0..recovery.partitions())
                .filter(|&p| delivered.frontier.get(p) < replayed.get(p))
                .collect();
            let unmarked = behind
                .iter()
                .copied()
                .filter(|&p| delivered.marked_at[p].is_none_or(|at| at < read))
                .collect();
            (behind, unmarked)
        };
        if behind.is_empty() {
            return true;
        }
        for partition in unmarked {
            self.mark(space, partition, MarkReason::Restore);
        }
        let passed = async {
            loop {
                let moved = space.delivered_moved.notified();
                if space.lock_delivered().frontier.covers_all(replayed) {
                    return;
                }
                moved.await;
            }
        };
        tokio::time::timeout(PASS_REPLAY_TIMEOUT, passed)
            .await
            .is_ok()
    }

    /// A room followed here for the first time may have had broadcasts recorded in a partition
    /// this instance heard nothing from lately: its stamps would name an older place there,
    /// and a restore would replay those broadcasts, from before the socket joined, as missed.
    /// A marker brings the partition here up to date. A new socket's own room needs none:
    /// nothing was sent to an id before it was made (and a restored socket waits for its
    /// replay to be passed, see [`Relay::deliveries_pass`]).
    fn mark_new_rooms(&self, space: &RelayedNamespace, created: &[Arc<str>]) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        if recovery.partitions() == 1 || created.is_empty() {
            return;
        }
        let mut partitions: Vec<usize> = created
            .iter()
            .filter(|room| !self.own_socket_ids.made(room))
            .map(|room| space.channels.partition_of_room(room))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        for partition in partitions {
            self.mark(space, partition, MarkReason::NewRoom);
        }
    }

    /// Publishes the marker of `partition` (see [`recovery`]).
    fn mark(&self, space: &RelayedNamespace, partition: usize, reason: MarkReason) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        crate::metrics::recovery_marker(reason);
        let channel = space.channels.recorded_base(partition);
        if let Some(at) = space.lock_delivered().marked_at.get_mut(partition) {
            *at = Some(Instant::now());
        }
        self.publisher
            .script(recovery.mark_call(&space.name, partition, channel));
    }
}

impl Relay {
    /// Makes up for what the recovery channels carried while the subscriber was disconnected
    /// (a Valkey stall or a partition: Pub/Sub keeps nothing for a lost connection). The log
    /// after the last offset delivered here goes to this instance's sockets in order, before
    /// the new connection's first message. When the log holds that offset but the rest cannot
    /// be given (too much missed, an unreadable entry), the sockets that are recoverable are
    /// closed: their clients reconnect and get what recovery can give, or `recovered: false`.
    /// When the offset is gone (Valkey lost its data, or the outage outlasted the window),
    /// nothing tells what was missed: the sockets stay connected, and what was in flight when
    /// Valkey lost its data may not reach them (Pub/Sub's own guarantee; RELIABILITY.md).
    async fn catch_up(&self) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        for space in &self.spaces {
            let Some(ns) = space.ns.upgrade() else {
                continue;
            };
            let after = space.last_delivered();
            for partition in 0..recovery.partitions() {
                let after = after.get(partition);
                if after == Offset::default() {
                    // Nothing delivered yet: its marker tells where this instance starts.
                    self.mark(space, partition, MarkReason::Start);
                    continue;
                }
                self.catch_up_partition(recovery, space, &ns, partition, after)
                    .await;
            }
        }
    }

    async fn catch_up_partition(
        &self,
        recovery: &recovery::Recovery,
        space: &RelayedNamespace,
        ns: &Arc<Namespace>,
        partition: usize,
        after: Offset,
    ) {
        let whole = recovery
            .partition_whole_after(&self.valkey, &space.name, partition, after)
            .await;
        if whole != Some(true) {
            tracing::warn!(partition, "relay: the log no longer holds what was delivered here last; what was published while the subscriber was disconnected cannot be made up for");
            return;
        }
        let Some(entries) = recovery
            .since(&self.valkey, &space.name, partition, after)
            .await
        else {
            let sockets: Vec<_> = ns
                .sockets()
                .into_iter()
                .filter(|s| s.session_record().is_some())
                .collect();
            tracing::warn!(
                sockets = sockets.len(),
                "relay: too much was published while the subscriber was disconnected; closing recoverable sockets so their clients recover"
            );
            for socket in sockets {
                socket.close_connection();
            }
            return;
        };
        let mut delivered = 0;
        for (id, b) in entries {
            let at = Position { partition, id };
            if b.nsp != ns.name {
                continue;
            }
            let Some(stamp) = space.advance(at) else {
                continue;
            };
            let recorded = Recorded { at, stamp };
            ns.deliver_recorded(&b.target, b.packet.clone(), &recorded, None);
            delivered += 1;
        }
        if delivered > 0 {
            tracing::info!(
                partition,
                packets = delivered,
                "relay: made up for what was published while the subscriber was disconnected"
            );
        }
    }
}

impl PubSubHandler for Relay {
    fn resubscribed(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.catch_up())
    }

    fn desired(&self) -> Vec<String> {
        let mut out = vec![self.probe_channel.clone()];
        for space in &self.spaces {
            let bases = self.listen_all(space);
            out.extend(bases.iter().map(|b| b.to_string()));
            if !self.sharded {
                out.push(space.channels.request.clone());
            }
            let Some(ns) = space.ns.upgrade() else {
                continue;
            };
            for room in ns.rooms.all_rooms() {
                if self.by_pattern(&room) {
                    continue;
                }
                for base in &bases {
                    if self.room_channel_wanted(space, base, &room) {
                        out.push(channels::room_in(base, &room));
                    }
                }
            }
            for room in space.recording.all() {
                if space.channels.room_has_channel(&room) && !ns.rooms.contains_room(&room) {
                    out.push(channels::room_in(&space.channels.broadcast, &room));
                }
            }
        }
        out
    }

    fn patterns(&self) -> Vec<String> {
        if self.sharded {
            return Vec::new();
        }
        let tag = self.own_socket_ids;
        let bases = self.spaces.iter().flat_map(|space| self.listen(space));
        bases
            .map(|base| channels::ids_pattern(base, tag.as_str()))
            .collect()
    }

    fn wanted(&self, channel: &str) -> bool {
        let wanted_in = |space: &RelayedNamespace| {
            for base in self.listen_all(space) {
                match channels::room_of_in(base, channel) {
                    Some("") => return true,
                    Some(room) if self.by_pattern(room) => return false,
                    Some(room) => {
                        let member = space
                            .ns
                            .upgrade()
                            .is_some_and(|ns| ns.rooms.contains_room(room));
                        let followed =
                            base == space.channels.broadcast && space.recording.follows(room);
                        return self.room_channel_wanted(space, base, room) && (member || followed);
                    }
                    None => {}
                }
            }
            channel == space.channels.request
        };
        self.spaces.iter().any(wanted_in) || channel == self.probe_channel
    }

    fn on_message(&self, channel: &str, payload: &[u8], batch: &mut WriteBatch) {
        if channel == self.probe_channel {
            return self.on_probe(payload);
        }
        for space in &self.spaces {
            if self.sharded {
                if let Some(room) = channels::room_of_in(&space.channels.broadcast, channel) {
                    return self.on_sharded(space, channel, room, payload, batch);
                }
            } else if channel == space.channels.request {
                return self.on_request(space, payload);
            }
            for base in self.listen(space) {
                let Some(room) = channels::room_of_in(base, channel) else {
                    continue;
                };
                if let Some((partition, id)) = room
                    .is_empty()
                    .then(|| recovery::parse_mark(payload))
                    .flatten()
                {
                    return space.passed_mark(partition, id);
                }
                return self.on_broadcast(space, room, payload, batch);
            }
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Publishes a timestamp to this instance's probe channel now and then; the subscriber
/// records how long it took to come back (Pub/Sub lag, as the metric reports it).
async fn probe(relay: Weak<Relay>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    loop {
        tick.tick().await;
        let Some(relay) = relay.upgrade() else { return };
        if relay.link.is_up() {
            relay
                .publisher
                .publish(relay.probe_channel.clone(), now_micros().to_string());
        }
    }
}

/// Sends a marker to every partition that delivered nothing here for [`recovery::MARK_EVERY`]
/// (see [`recovery`]); with one partition there is nothing to keep up to date.
async fn mark_quiet_partitions(relay: Weak<Relay>) {
    let mut tick = tokio::time::interval(recovery::MARK_EVERY);
    loop {
        tick.tick().await;
        let Some(r) = relay.upgrade() else { return };
        let Some(recovery) = &r.recovery else { return };
        if recovery.partitions() == 1 {
            return;
        }
        if !r.link.is_up() {
            continue;
        }
        for space in &r.spaces {
            for partition in space.quiet_partitions(recovery::MARK_EVERY) {
                r.mark(space, partition, MarkReason::Quiet);
            }
        }
    }
}

/// How often [`keep_sessions`] runs.
const KEEP_TICK: Duration = Duration::from_millis(500);

/// Keeps recoverable sessions in step: rewrites those whose rooms changed (every tick) and
/// pushes back the expiry of every live one once a quarter window, so sessions of an instance
/// that dies stay restorable for the whole window. The expiries are pushed back a slice of
/// the sockets per tick, not all at once: a burst of tens of thousands of `PEXPIRE` would hold
/// up the recorded broadcasts queued behind it in Valkey.
async fn keep_sessions(relay: Weak<Relay>) {
    let mut tick = tokio::time::interval(KEEP_TICK);
    let mut last_refresh = tokio::time::Instant::now();
    let mut slice = 0;
    loop {
        tick.tick().await;
        let Some(r) = relay.upgrade() else { return };
        let (Some(recovery), Some(sessions)) = (r.recovery.as_ref(), r.sessions.as_ref()) else {
            return;
        };
        r.forget_expired_rooms();
        if !r.link.is_up() {
            continue;
        }
        let whole_round = last_refresh.elapsed() >= sessions.refresh_every();
        if r.sharded {
            r.share_rooms(whole_round).await;
        }
        for (nsp, sid) in recovery.take_dirty() {
            let record = r
                .space(&nsp)
                .and_then(|s| s.ns.upgrade())
                .and_then(|ns| ns.socket(&sid))
                .and_then(|socket| socket.session_record());
            if let Some(record) = record {
                r.publisher.script(sessions.save_live(&record));
            }
        }
        let slices = refresh_slices(sessions.refresh_every());
        slice = (slice + 1) % slices;
        let live: Vec<(String, String)> = r
            .spaces
            .iter()
            .filter_map(|s| s.ns.upgrade())
            .flat_map(|ns| ns.sockets())
            .filter(|s| s.pid().is_some_and(|pid| slice_of(pid, slices) == slice))
            .filter_map(|s| Some((s.owner()?.to_owned(), s.pid()?.to_owned())))
            .collect();
        if let Ok(mut c) = r.valkey.connection().await {
            for chunk in live.chunks(500) {
                if let Err(e) = c.pipeline(&sessions.refresh(chunk)).await {
                    tracing::warn!(error = %e, "relay: cannot refresh recoverable sessions");
                    break;
                }
            }
            if !whole_round {
                continue;
            }
            last_refresh = tokio::time::Instant::now();
            recovery.forget_idle();
            for space in &r.spaces {
                for partition in 0..recovery.partitions() {
                    let _: Result<(), _> = redis::cmd("XTRIM")
                        .arg(recovery.log_key(&space.name, partition))
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(recovery::MAX_LOG)
                        .query_async(&mut c)
                        .await;
                }
            }
        }
    }
}

/// Into how many slices the live sessions are cut, one refreshed per tick, so that each is
/// refreshed once every `refresh_every`.
fn refresh_slices(refresh_every: Duration) -> u64 {
    (refresh_every.as_millis() / KEEP_TICK.as_millis()).max(1) as u64
}

/// The slice of the session `pid` (FNV-1a: stable, and pids are random already).
fn slice_of(pid: &str, slices: u64) -> u64 {
    let hash = pid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % slices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_is_refreshed_once_a_round_and_slices_are_even() {
        let slices = refresh_slices(Duration::from_secs(30));
        assert_eq!(slices, 60, "one slice per tick of a 30 s round");
        assert_eq!(refresh_slices(Duration::from_millis(300)), 1);
        let mut counts = vec![0_u32; slices as usize];
        for i in 0..60_000 {
            let pid = engineio::Sid::generate().to_string() + &i.to_string();
            counts[slice_of(&pid, slices) as usize] += 1;
        }
        let (least, most) = (counts.iter().min(), counts.iter().max());
        assert!(
            least >= Some(&700) && most <= Some(&1300),
            "1,000 per slice expected, got {least:?}..{most:?}"
        );
    }
}
