//! The Valkey relay: broadcasts between gateway instances, Node socket.io servers running
//! `@socket.io/redis-adapter` 8.x and the app's `@socket.io/redis-emitter`, in their wire
//! format ([`wire`], [`channels`]).
//!
//! Data path:
//! - out: a namespace delivers a broadcast locally, then [`Relay::publish`] encodes it once
//!   and queues a PUBLISH to the room's channel (one room) or the namespace channel;
//! - in: the [`subscriber`] receives it and the namespace delivers it to its local sockets.
//!
//! Interest is per room: this instance subscribes to `{prefix}#{nsp}#{room}#` while the room
//! has a local member (socket-id rooms included, so `io.to(socketId)` from Node reaches the
//! socket), plus the namespace channel and the request channel. It does not PSUBSCRIBE, so
//! it never receives broadcasts for rooms it has nobody in.
//!
//! Subscribing to the request channel makes Node count this instance as a server, so it
//! answers every request a Node server answers ([`requests`]).

pub mod channels;
mod link;
pub mod msgpack;
mod publisher;
mod requests;
pub mod subscriber;
pub mod wire;

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::{self, IntoConnectionInfo};
use deadpool_redis::{Manager, Pool, Runtime};
use rand::distr::{Alphanumeric, SampleString};

use crate::server::Readiness;
use crate::socketio::packet::Packet;
use crate::socketio::rooms::RoomChanges;
use crate::socketio::{Adapter, BroadcastTarget, Namespace, SocketIo};
use channels::Channels;
use link::Link;
use publisher::Publisher;
use subscriber::{Inbox, Interest, Timing};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("invalid redis.url: {0}")]
    Url(#[source] redis::RedisError),
    #[error("cannot build the Valkey connection pool: {0}")]
    Pool(String),
}

/// What the relay needs from the configuration.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub url: String,
    pub prefix: String,
    /// How long a broadcast-with-ack from a Node peer waits for our clients when it names no
    /// timeout.
    pub ack_timeout: Duration,
    pub timing: Timing,
}

/// How often the relay measures Pub/Sub lag with a probe through Valkey.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// One namespace as the relay sees it.
struct Space {
    name: String,
    ns: Weak<Namespace>,
    channels: Channels,
}

pub struct Relay {
    /// This instance's id in messages; it ignores messages carrying it.
    uid: String,
    spaces: Vec<Space>,
    publisher: Publisher,
    pool: Pool,
    interest: Arc<Interest>,
    link: Arc<Link>,
    probe_channel: String,
    ack_timeout: Duration,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Relay {
    /// Wires the relay into every namespace of `io` and starts its tasks. It does not wait
    /// for Valkey: until the subscriber is connected the instance serves local-only.
    pub fn start(
        config: RelayConfig,
        io: &Arc<SocketIo>,
        readiness: Readiness,
    ) -> Result<Arc<Relay>, RelayError> {
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(RelayError::Url)?;
        // redis-rs 1.x leaves Nagle on, which delays small pipelined PUBLISHes.
        let info = info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info.clone()).map_err(RelayError::Url)?;
        let pool = Pool::builder(Manager::new(info).map_err(RelayError::Url)?)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(1)))
            .create_timeout(Some(config.timing.connect_timeout))
            .recycle_timeout(Some(Duration::from_secs(1)))
            .build()
            .map_err(|e| RelayError::Pool(e.to_string()))?;
        let uid = Alphanumeric.sample_string(&mut rand::rng(), 6);
        let link = Arc::new(Link::new(readiness));
        let (publisher, publisher_task) = Publisher::start(pool.clone(), link.clone());
        let relay = Arc::new(Relay {
            spaces: io
                .namespaces()
                .map(|ns| Space {
                    name: ns.name.clone(),
                    ns: Arc::downgrade(ns),
                    channels: Channels::new(&config.prefix, &ns.name),
                })
                .collect(),
            probe_channel: format!("{}-gateway-probe#{uid}#", config.prefix),
            uid,
            publisher,
            pool,
            interest: Arc::new(Interest::default()),
            link,
            ack_timeout: config.ack_timeout,
            tasks: Mutex::new(vec![publisher_task.abort_handle()]),
        });
        for ns in io.namespaces() {
            ns.set_adapter(relay.clone());
        }
        let subscriber = tokio::spawn(subscriber::run(
            client,
            relay.clone(),
            relay.interest.clone(),
            relay.link.clone(),
            config.timing,
        ));
        let probe = tokio::spawn(probe(Arc::downgrade(&relay)));
        relay
            .lock_tasks()
            .extend([subscriber.abort_handle(), probe.abort_handle()]);
        tracing::info!(uid = %relay.uid, prefix = %config.prefix, "relay starting");
        Ok(relay)
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The command pool (for callers that need Valkey beyond Pub/Sub).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Stops the relay's tasks (the end of a clean shutdown).
    pub fn stop(&self) {
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn space(&self, nsp: &str) -> Option<&Space> {
        self.spaces.iter().find(|s| s.name == nsp)
    }

    fn on_broadcast(&self, space: &Space, room: &str, payload: &[u8]) {
        let Some(ns) = space.ns.upgrade() else { return };
        // A message for a room we just left (the UNSUBSCRIBE is still on its way).
        if !room.is_empty() && !ns.rooms.contains_room(room) {
            return;
        }
        match wire::decode_broadcast(payload) {
            Ok(b) if b.uid == self.uid || b.nsp != ns.name => {}
            Ok(b) => {
                ns.broadcast_local(&b.target, &b.packet);
            }
            Err(e) => {
                metrics::counter!("socket_gateway_valkey_errors_total", "op" => "decode")
                    .increment(1);
                tracing::debug!(error = %e, "relay: ignoring a malformed broadcast");
            }
        }
    }

    fn on_probe(&self, payload: &[u8]) {
        let sent = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(sent) = sent {
            let lag = now_micros().saturating_sub(sent);
            metrics::histogram!("socket_gateway_valkey_pubsub_lag_seconds")
                .record(lag as f64 / 1e6);
        }
    }
}

impl Adapter for Relay {
    fn publish(&self, nsp: &str, target: &BroadcastTarget, packet: &Packet) {
        if !self.link.is_up() {
            metrics::counter!("socket_gateway_valkey_errors_total", "op" => "publish_degraded")
                .increment(1);
            return;
        }
        let Some(space) = self.space(nsp) else { return };
        let payload = match wire::encode_broadcast(&self.uid, target, packet) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "relay: cannot encode a broadcast");
                return;
            }
        };
        let channel = match target.rooms.as_slice() {
            [room] => space.channels.room(room),
            _ => space.channels.broadcast.clone(),
        };
        self.publisher.publish(channel, payload);
    }

    fn rooms_changed(&self, nsp: &str, changes: RoomChanges) {
        let Some(space) = self.space(nsp) else { return };
        self.interest.changed(
            changes
                .created
                .iter()
                .chain(&changes.deleted)
                .map(|room| space.channels.room(room)),
        );
    }
}

impl Inbox for Relay {
    fn desired(&self) -> Vec<String> {
        let mut out = vec![self.probe_channel.clone()];
        for space in &self.spaces {
            out.push(space.channels.broadcast.clone());
            out.push(space.channels.request.clone());
            if let Some(ns) = space.ns.upgrade() {
                out.extend(ns.rooms.all_rooms().iter().map(|r| space.channels.room(r)));
            }
        }
        out
    }

    fn wanted(&self, channel: &str) -> bool {
        self.spaces
            .iter()
            .any(|space| match space.channels.room_of(channel) {
                Some("") => true,
                Some(room) => space
                    .ns
                    .upgrade()
                    .is_some_and(|ns| ns.rooms.contains_room(room)),
                None => channel == space.channels.request,
            })
            || channel == self.probe_channel
    }

    fn on_message(&self, channel: &str, payload: &[u8]) {
        if channel == self.probe_channel {
            return self.on_probe(payload);
        }
        for space in &self.spaces {
            if channel == space.channels.request {
                return self.on_request(space, payload);
            }
            if let Some(room) = space.channels.room_of(channel) {
                return self.on_broadcast(space, room, payload);
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
