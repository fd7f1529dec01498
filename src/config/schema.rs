//! The settings: one struct per section of `gateway.toml`, with its defaults.
//!
//! These are what the file says (milliseconds, names, lists of strings), documented per key in
//! `gateway.toml`. They are named `*Settings`, apart from the runtime types the lower crates take
//! (`engineio::EngineConfig`, `socketio::SocketIoConfig`, `relay::RelayConfig`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use engineio::Transport;
use relay::channels::{PubSubKind, SubscriptionMode};
use relay::valkey::TopologyKind;

use super::lenient::{lenient_string, list_or_csv, transport_names};

/// The HTTP listener and graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    #[serde(deserialize_with = "lenient_string")]
    pub host: String,
    /// 0 asks the OS for any free port (useful in tests).
    pub port: u16,
    /// Mount path of the Socket.IO endpoint; starts and ends with `/`.
    #[serde(deserialize_with = "lenient_string")]
    pub path: String,
    pub max_connections: usize,
    pub shutdown_timeout_ms: u64,
    pub drain_window_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 3001,
            path: "/socket.io/".into(),
            max_connections: 10_000,
            shutdown_timeout_ms: 30_000,
            drain_window_ms: 10_000,
        }
    }
}

impl ServerSettings {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
    pub fn drain_window(&self) -> Duration {
        Duration::from_millis(self.drain_window_ms)
    }
}

/// Engine.IO transport settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub upgrade_timeout_ms: u64,
    /// Largest accepted packet or HTTP body in bytes (Engine.IO `maxHttpBufferSize`).
    pub max_payload: usize,
    /// Engine.IO's own transports, by their wire names; a list or, from env, a comma-separated
    /// string.
    #[serde(with = "transport_names")]
    pub transports: Vec<Transport>,
    /// Bytes asked of each WebSocket read (the buffer lives only while a read is parsed).
    pub ws_read_buffer: usize,
    /// Queued bytes merged into one WebSocket write (a transient buffer).
    pub ws_write_buffer: usize,
    /// Packets queued per socket before it counts as a slow consumer.
    pub outbound_queue: usize,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            upgrade_timeout_ms: 10_000,
            max_payload: 1_000_000,
            transports: vec![Transport::Polling, Transport::Websocket],
            ws_read_buffer: 4096,
            ws_write_buffer: 16384,
            outbound_queue: 256,
        }
    }
}

impl EngineSettings {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }
    pub fn upgrade_timeout(&self) -> Duration {
        Duration::from_millis(self.upgrade_timeout_ms)
    }
    pub fn allows(&self, transport: Transport) -> bool {
        self.transports.contains(&transport)
    }
}

/// Socket.IO protocol settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketIoSettings {
    pub connect_timeout_ms: u64,
    pub ack_timeout_ms: u64,
    pub max_attachments: usize,
}

impl Default for SocketIoSettings {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 45_000,
            ack_timeout_ms: 10_000,
            max_attachments: 10,
        }
    }
}

impl SocketIoSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }
}

/// Browser-facing checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// Origins (`scheme://host[:port]`) allowed to connect. After loading they
    /// are lower-case, without a default port, and deduplicated, so they can
    /// be compared with the `Origin` header as plain strings.
    #[serde(deserialize_with = "list_or_csv")]
    pub allowed_origins: Vec<String>,
    pub cors_max_age_s: u64,
    /// Proxies (networks or addresses) whose `X-Forwarded-For` is believed when the gateway
    /// tells the app who the client is; anyone else is the client. Loopback by default.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            cors_max_age_s: 86_400,
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

/// The Next.js app the gateway asks about sessions and rooms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    #[serde(deserialize_with = "lenient_string")]
    pub session_path: String,
    #[serde(deserialize_with = "lenient_string")]
    pub memberships_path: String,
    #[serde(deserialize_with = "lenient_string")]
    pub authorize_path: String,
    #[serde(deserialize_with = "lenient_string")]
    pub events_path: String,
    pub timeout_ms: u64,
    /// Reuse of positive session (per cookie digest) and memberships (per user) answers;
    /// revocation and membership-change signals forget them first (see gateway.toml).
    pub session_cache_ttl_ms: u64,
    pub revalidate_interval_ms: u64,
    /// Most sessions re-validated at once (each is one session and one memberships call).
    pub revalidate_concurrency: usize,
    /// Session and memberships calls in flight at once; more wait in line up to
    /// `auth_queue_ms` (a storm waits in the gateway, where identical calls coalesce, instead
    /// of at the app past its timeout).
    pub max_auth_calls_in_flight: u32,
    pub auth_queue_ms: u64,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:3000".into(),
            session_path: "/api/auth/get-session?disableCookieCache=true&disableRefresh=true"
                .into(),
            memberships_path: "/api/realtime/memberships".into(),
            authorize_path: "/api/realtime/authorize".into(),
            events_path: "/api/realtime/events".into(),
            timeout_ms: 3000,
            session_cache_ttl_ms: 60_000,
            revalidate_interval_ms: 60_000,
            revalidate_concurrency: 16,
            max_auth_calls_in_flight: 64,
            auth_queue_ms: 10_000,
        }
    }
}

impl AppSettings {
    /// `url` joined with one of the `*_path` keys, tolerating a trailing `/` on `url`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), path)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn session_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.session_cache_ttl_ms)
    }
    pub fn revalidate_interval(&self) -> Duration {
        Duration::from_millis(self.revalidate_interval_ms)
    }
    pub fn auth_queue(&self) -> Duration {
        Duration::from_millis(self.auth_queue_ms)
    }
}

/// Valkey/Redis used to relay between gateway instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// The node (`single`), a seed node (`cluster`), or where the data nodes' credentials and
    /// database come from (`sentinel`: its host is not used).
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    /// `single`, `cluster` or `sentinel`.
    pub topology: TopologyKind,
    /// More seed nodes (`cluster`) or the sentinels (`sentinel`), as URLs (a list, or one
    /// comma-separated string as in `GATEWAY_REDIS__NODES`).
    #[serde(deserialize_with = "list_or_csv")]
    pub nodes: Vec<String>,
    /// The primary's name at the sentinels (`sentinel monitor <name> ...`).
    #[serde(deserialize_with = "lenient_string")]
    pub sentinel_service: String,
    /// `classic` (PUBLISH, `createAdapter`) or `sharded` (SPUBLISH, `createShardedAdapter`;
    /// Cluster only).
    pub pubsub: PubSubKind,
    /// Sharded only: `dynamic`, `dynamic-private` or `static`, as the Node servers'
    /// `subscriptionMode`.
    pub subscription_mode: SubscriptionMode,
    /// Channel prefix; `socket.io` matches `@socket.io/redis-adapter`.
    #[serde(deserialize_with = "lenient_string")]
    pub prefix: String,
    pub enabled: bool,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            topology: TopologyKind::Single,
            nodes: Vec::new(),
            sentinel_service: "mymaster".into(),
            pubsub: PubSubKind::Classic,
            subscription_mode: SubscriptionMode::Dynamic,
            prefix: "socket.io".into(),
            enabled: true,
        }
    }
}

/// Socket.IO connection state recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoverySettings {
    pub enabled: bool,
    pub max_disconnection_ms: u64,
    /// Ask the app again (no cache) whether the session is valid before restoring it.
    pub recheck_session: bool,
    /// Into how many partitions (Valkey streams) each namespace's log is split; 0 picks:
    /// [`RecoverySettings::AUTO_CLUSTER_PARTITIONS`] on a Cluster, 1 otherwise.
    pub log_partitions: u64,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_disconnection_ms: 120_000,
            recheck_session: true,
            log_partitions: 0,
        }
    }
}

impl RecoverySettings {
    /// The log's partitions on a Cluster unless set: enough to spread it over the primaries
    /// of a small cluster, few enough that a restore reads them all at little cost.
    pub const AUTO_CLUSTER_PARTITIONS: u64 = 8;

    pub fn max_disconnection(&self) -> Duration {
        Duration::from_millis(self.max_disconnection_ms)
    }

    /// `log_partitions`, with 0 resolved for `topology`.
    pub fn log_partitions(&self, topology: TopologyKind) -> usize {
        match (self.log_partitions, topology) {
            (0, TopologyKind::Cluster) => Self::AUTO_CLUSTER_PARTITIONS as usize,
            (0, _) => 1,
            (n, _) => n as usize,
        }
    }
}

/// Presence (online / away / offline per user, over all instances).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSettings {
    /// How long a disconnected socket still counts, so a page reload does not flap.
    pub grace_ms: u64,
    /// How often each instance tells Valkey it is alive.
    pub heartbeat_ms: u64,
    /// An instance silent for this long is dead and its users are removed.
    pub ttl_ms: u64,
    /// Updates wait this long to go out together per workspace room (0: at once).
    pub batch_ms: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            grace_ms: 4_000,
            heartbeat_ms: 2_000,
            ttl_ms: 6_000,
            batch_ms: 250,
        }
    }
}

impl PresenceSettings {
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }
    pub fn batch(&self) -> Duration {
        Duration::from_millis(self.batch_ms)
    }
}

/// Rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    pub connect_rate_per_s: u32,
    pub connect_queue_ms: u64,
    pub events_per_s: u32,
    pub events_burst: u32,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            connect_rate_per_s: 1000,
            connect_queue_ms: 5000,
            events_per_s: 20,
            events_burst: 40,
        }
    }
}

impl LimitsSettings {
    pub fn connect_queue(&self) -> Duration {
        Duration::from_millis(self.connect_queue_ms)
    }
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    pub enabled: bool,
    /// Empty: serve `/metrics` on the main listener; else `host:port` of an admin listener.
    #[serde(deserialize_with = "lenient_string")]
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: String::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing_subscriber::EnvFilter` directive string, e.g. `info,socket_gateway=debug`.
    #[serde(deserialize_with = "lenient_string")]
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[cfg(test)]
// Jail's closures must return figment::Result, whose error is large.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use figment::providers::{Format, Serialized, Toml};
    use figment::{Figment, Profile, Provider};

    use engineio::Transport;

    use super::super::test_support::{jail, ok};
    use super::super::{load, load_from, Config, DEFAULT_FILE};
    use super::*;

    #[test]
    fn defaults_without_file_or_env() {
        jail(|_| {
            let config = ok(load(None));
            assert_eq!(config, Config::default());
            assert_eq!(config.server.port, 3001);
            assert_eq!(config.engine.ping_interval(), Duration::from_secs(25));
            assert_eq!(config.engine.ping_timeout(), Duration::from_secs(20));
            assert!(config.engine.allows(Transport::Websocket));
            assert_eq!(
                config.app.url_for(&config.app.memberships_path),
                "http://127.0.0.1:3000/api/realtime/memberships"
            );
            ok(Config::default().validate());
            Ok(())
        });
    }

    #[test]
    fn shipped_gateway_toml_lists_every_key_with_its_default() {
        jail(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
            let shipped = Figment::from(Toml::file_exact(&path));
            assert_eq!(ok(load_from(shipped.clone())), Config::default());

            // `serde(default)` would hide a missing key, so compare key sets too.
            let defaults = Figment::from(Serialized::defaults(Config::default()));
            let keys = |fig: &Figment| -> figment::Result<Vec<String>> {
                let dict = fig.data()?.remove(&Profile::Default).unwrap_or_default();
                let mut keys = Vec::new();
                for (section, value) in dict {
                    let table = value.into_dict().unwrap_or_default();
                    keys.extend(table.keys().map(|k| format!("{section}.{k}")));
                }
                keys.sort();
                Ok(keys)
            };
            assert_eq!(keys(&shipped)?, keys(&defaults)?);
            assert_eq!(keys(&defaults)?.len(), 55);

            // Every key is documented with its env override.
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            for key in keys(&defaults)? {
                let (section, name) = key.split_once('.').unwrap_or_default();
                let var = format!("GATEWAY_{}__{}", section, name).to_ascii_uppercase();
                assert!(text.contains(&var), "gateway.toml does not mention {var}");
            }
            Ok(())
        });
    }
}
