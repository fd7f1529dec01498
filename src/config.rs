//! Gateway configuration.
//!
//! Layers, lowest first (later layers win):
//! 1. built-in defaults ([`Config::default`]),
//! 2. a TOML file: `gateway.toml` in the current directory if present, or the
//!    file named by `--config PATH` (which must then exist),
//! 3. `GATEWAY_<SECTION>__<KEY>` environment variables (`__` nests; a single
//!    `_` never does, because keys are snake_case),
//! 4. the names the Node seed used: `PORT`, `REDIS_URL`, `APP_URL`, and
//!    `NEXT_PUBLIC_APP_URL`, whose origin is *added* to
//!    `security.allowed_origins`.
//!
//! Every error names the dotted key, the layer that supplied the value and
//! what was expected, because a gateway that refuses to start must say why.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::{Kind, OneOf};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

/// The file read from the current directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "gateway.toml";
/// Prefix of the gateway's own environment variables.
pub const ENV_PREFIX: &str = "GATEWAY_";
/// Version printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Seed-compatible variable names and the keys they set (highest layer).
const SEED_VARS: [(&str, &str); 3] = [
    ("PORT", "server.port"),
    ("REDIS_URL", "redis.url"),
    ("APP_URL", "app.url"),
];
/// Seed variable whose origin is appended to `security.allowed_origins`.
const PUBLIC_APP_URL_VAR: &str = "NEXT_PUBLIC_APP_URL";

/// Provider names used to say where a value came from.
const DEFAULT_SOURCE: &str = "default";
const ENV_SOURCE: &str = "env var";

// ---------------------------------------------------------------------------
// The configuration tree
// ---------------------------------------------------------------------------

/// The whole gateway configuration. See `gateway.toml` for every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: EngineConfig,
    pub socketio: SocketIoConfig,
    pub security: SecurityConfig,
    pub app: AppConfig,
    pub redis: RedisConfig,
    pub recovery: RecoveryConfig,
    pub presence: PresenceConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

/// The HTTP listener and graceful shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
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

impl Default for ServerConfig {
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

impl ServerConfig {
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
    pub fn drain_window(&self) -> Duration {
        Duration::from_millis(self.drain_window_ms)
    }
}

/// An Engine.IO transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Polling,
    Websocket,
}

impl Transport {
    /// The name used on the wire (`transport=` query parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::Websocket => "websocket",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Engine.IO transport settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub upgrade_timeout_ms: u64,
    /// Largest accepted packet or HTTP body in bytes (Engine.IO `maxHttpBufferSize`).
    pub max_payload: usize,
    /// Accepts a list or, from env, a comma-separated string.
    #[serde(deserialize_with = "list_or_csv")]
    pub transports: Vec<Transport>,
    /// Bytes asked of each WebSocket read (the buffer lives only while a read is parsed).
    pub ws_read_buffer: usize,
    /// Queued bytes merged into one WebSocket write (a transient buffer).
    pub ws_write_buffer: usize,
    /// Packets queued per socket before it counts as a slow consumer.
    pub outbound_queue: usize,
}

impl Default for EngineConfig {
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

impl EngineConfig {
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
pub struct SocketIoConfig {
    pub connect_timeout_ms: u64,
    pub ack_timeout_ms: u64,
    pub max_attachments: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 45_000,
            ack_timeout_ms: 10_000,
            max_attachments: 10,
        }
    }
}

impl SocketIoConfig {
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
pub struct SecurityConfig {
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

impl Default for SecurityConfig {
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
pub struct AppConfig {
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

impl Default for AppConfig {
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

impl AppConfig {
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

/// Longest `app.auth_queue_ms`: past it the client is better told to come back later.
const MAX_AUTH_QUEUE_MS: u64 = 60_000;

/// Valkey/Redis used to relay between gateway instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    #[serde(deserialize_with = "lenient_string")]
    pub url: String,
    /// Channel prefix; `socket.io` matches `@socket.io/redis-adapter`.
    #[serde(deserialize_with = "lenient_string")]
    pub prefix: String,
    pub enabled: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "socket.io".into(),
            enabled: true,
        }
    }
}

/// Socket.IO connection state recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    pub enabled: bool,
    pub max_disconnection_ms: u64,
    /// Ask the app again (no cache) whether the session is valid before restoring it.
    pub recheck_session: bool,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_disconnection_ms: 120_000,
            recheck_session: true,
        }
    }
}

impl RecoveryConfig {
    pub fn max_disconnection(&self) -> Duration {
        Duration::from_millis(self.max_disconnection_ms)
    }
}

/// Presence (online / away / offline per user, over all instances).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// How long a disconnected socket still counts, so a page reload does not flap.
    pub grace_ms: u64,
    /// How often each instance tells Valkey it is alive.
    pub heartbeat_ms: u64,
    /// An instance silent for this long is dead and its users are removed.
    pub ttl_ms: u64,
    /// Updates wait this long to go out together per workspace room (0: at once).
    pub batch_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            grace_ms: 4_000,
            heartbeat_ms: 2_000,
            ttl_ms: 6_000,
            batch_ms: 250,
        }
    }
}

impl PresenceConfig {
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

/// Longest `presence.batch_ms`: beyond it updates would lag behind what users notice.
const MAX_PRESENCE_BATCH_MS: u64 = 5_000;

/// Rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub connect_rate_per_s: u32,
    pub connect_queue_ms: u64,
    pub events_per_s: u32,
    pub events_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connect_rate_per_s: 1000,
            connect_queue_ms: 5000,
            events_per_s: 20,
            events_burst: 40,
        }
    }
}

impl LimitsConfig {
    pub fn connect_queue(&self) -> Duration {
        Duration::from_millis(self.connect_queue_ms)
    }
}

/// Longest `limits.connect_queue_ms`: a handshake held longer is better refused, so the
/// client's backoff takes over (and proxies' timeouts stay far away).
const MAX_CONNECT_QUEUE_MS: u64 = 30_000;

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Empty: serve `/metrics` on the main listener; else `host:port` of an admin listener.
    #[serde(deserialize_with = "lenient_string")]
    pub listen: String,
}

impl Default for MetricsConfig {
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
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive string, e.g. `info,socket_gateway=debug`.
    #[serde(deserialize_with = "lenient_string")]
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

// ---------------------------------------------------------------------------
// Lenient deserializers (figment parses env values as TOML-ish literals)
// ---------------------------------------------------------------------------

/// Accepts integers and booleans as strings: figment turns
/// `GATEWAY_REDIS__PREFIX=123` into a number, which would otherwise be
/// rejected for a `String` field.
fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    deserializer.deserialize_any(V)
}

/// Accepts a sequence or a comma-separated string (`GATEWAY_ENGINE__TRANSPORTS=websocket`),
/// because env vars cannot hold TOML arrays comfortably.
fn list_or_csv<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list or a comma-separated string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| T::deserialize(s.to_owned().into_deserializer()))
                .collect()
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_any(V(std::marker::PhantomData))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One problem with one key, printed as `key: message (from source)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `engine.ping_interval_ms`; empty for file-level errors.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// Where the value came from: `default`, `TOML file /x/gateway.toml`,
    /// `env var PORT`; `None` when unknown (e.g. [`Config::validate`] alone).
    pub source: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.key.is_empty()) {
            // File-level errors (e.g. TOML syntax) can span lines: source first.
            (Some(source), true) => write!(f, "{source}: {}", self.message),
            (Some(source), false) => write!(f, "{}: {} (from {source})", self.key, self.message),
            (None, _) if self.key.is_empty() => f.write_str(&self.message),
            (None, _) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` is missing or not a regular file.
    #[error("config file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// One or more keys are malformed or out of range; all are listed.
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    /// The per-key problems (empty for a file error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::File { .. } => &[],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => format!("invalid configuration: {one}"),
        many => {
            let mut out = format!("invalid configuration ({} problems):", many.len());
            for p in many {
                out.push_str("\n  ");
                out.push_str(&p.to_string());
            }
            out
        }
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// Where to read the configuration from (the CLI's `--config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSource {
    /// `--config PATH`; `None` reads `./gateway.toml` if it exists.
    pub file: Option<PathBuf>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(self.file.as_deref())
    }
}

/// Loads all layers, then validates. See the module docs for the order.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    load_from(figment_for(file)?)
}

/// Builds the layered [`Figment`] without extracting it.
///
/// Fails only when `file` is given and is not an existing regular file; the
/// default `gateway.toml` may be absent. Parse errors surface at extraction.
pub fn figment_for(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Labeled::new(
        Serialized::defaults(Config::default()),
        Metadata::named(DEFAULT_SOURCE),
    ));

    let toml_path = match file {
        Some(path) => {
            let abs = absolute(path);
            if !abs.exists() {
                return Err(ConfigError::File {
                    path: abs,
                    reason: "does not exist (given with --config)".into(),
                });
            }
            if !abs.is_file() {
                return Err(ConfigError::File {
                    path: abs,
                    reason: "is not a regular file (given with --config)".into(),
                });
            }
            Some(abs)
        }
        None => Some(absolute(Path::new(DEFAULT_FILE))).filter(|p| p.exists()),
    };
    if let Some(path) = toml_path {
        // `file_exact`, never `file`: the latter searches every parent directory.
        fig = fig.merge(Toml::file_exact(path));
    }

    // Only section-qualified names (`GATEWAY_X__Y`), so an unrelated
    // `GATEWAY_URL` in a shared .env does not stop the gateway.
    let gateway_env = Env::prefixed(ENV_PREFIX)
        .filter(|k| k.as_str().contains("__"))
        .split("__");
    fig = fig.merge(Labeled::new(
        gateway_env,
        env_metadata(|keys| {
            let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{ENV_PREFIX}{}", upper.join("__"))
        }),
    ));

    let seed_names: Vec<&str> = SEED_VARS.iter().map(|(name, _)| *name).collect();
    let seed_env = Env::raw().only(&seed_names).map(|name| {
        SEED_VARS
            .iter()
            .find(|(var, _)| name == *var)
            .map_or_else(|| name.as_str().to_owned(), |(_, key)| (*key).to_owned())
            .into()
    });
    fig = fig.merge(Labeled::new(
        seed_env,
        env_metadata(|keys| {
            let key = keys.join(".");
            SEED_VARS
                .iter()
                .find(|(_, k)| *k == key)
                .map_or(key.clone(), |(var, _)| (*var).to_owned())
        }),
    ));

    let public_url = Env::raw()
        .only(&[PUBLIC_APP_URL_VAR])
        .iter()
        .map(|(_, value)| value.trim().to_owned())
        .find(|value| !value.is_empty());
    if let Some(url) = public_url {
        fig = split_csv_value(fig, "security.allowed_origins");
        // `admerge` appends to the array instead of replacing it.
        fig = fig.admerge(Labeled::new(
            Serialized::default("security.allowed_origins", vec![origin_of(&url)]),
            env_metadata(|_| PUBLIC_APP_URL_VAR.to_owned()),
        ));
    }
    Ok(fig)
}

/// Extracts a [`Config`] from `figment`, validates it with source-aware
/// messages, and normalizes `security.allowed_origins`.
pub fn load_from(figment: Figment) -> Result<Config, ConfigError> {
    let mut config: Config = figment.extract().map_err(|err| ConfigError::Invalid {
        problems: figment_problems(&figment, err),
    })?;
    let problems: Vec<Problem> = config
        .violations()
        .into_iter()
        .map(|v| {
            let source = source_of(&figment, v.key, v.index);
            v.into_problem(source)
        })
        .collect();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { problems });
    }
    config.normalize();
    Ok(config)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Gives a provider our own metadata, so messages can say `env var PORT`
/// instead of figment's generic "environment variable(s)".
struct Labeled<P> {
    inner: P,
    metadata: Metadata,
}

impl<P> Labeled<P> {
    fn new(inner: P, metadata: Metadata) -> Self {
        Self { inner, metadata }
    }
}

impl<P: Provider> Provider for Labeled<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Metadata whose interpolator turns a key path back into the variable name.
fn env_metadata(name_of: fn(&[&str]) -> String) -> Metadata {
    Metadata::named(ENV_SOURCE).interpolater(move |_: &Profile, keys: &[&str]| name_of(keys))
}

/// Human description of a provider for `key`.
fn describe(md: &Metadata, key: &str) -> String {
    if let Some(path) = md.source.as_ref().and_then(|s| s.file_path()) {
        return format!("TOML file {}", path.display());
    }
    if md.name == ENV_SOURCE {
        let parts: Vec<&str> = key.split('.').collect();
        return format!("{ENV_SOURCE} {}", md.interpolate(&Profile::Default, &parts));
    }
    md.name.to_string()
}

/// Which layer supplied `key` (or element `index` of the array at `key`).
fn source_of(figment: &Figment, key: &str, index: Option<usize>) -> Option<String> {
    let mut value = figment.find_value(key).ok()?;
    let mut key = key.to_owned();
    // An unknown section (`GATEWAY_FOO__BAR`) is a table: name its first
    // entry, so the message shows a variable that really exists.
    while let Value::Dict(_, dict) = value {
        let (name, inner) = dict.into_iter().next()?;
        key = format!("{key}.{name}");
        value = inner;
    }
    let tag = match (index, &value) {
        (Some(i), Value::Array(_, items)) => items.get(i).map_or(value.tag(), Value::tag),
        _ => value.tag(),
    };
    figment.get_metadata(tag).map(|md| describe(md, &key))
}

/// One line per figment error, keyed by the offending value's own source.
fn figment_problems(figment: &Figment, err: figment::Error) -> Vec<Problem> {
    err.into_iter()
        .map(|e| {
            let message = match &e.kind {
                Kind::UnknownField(_, expected) => {
                    format!("unknown key, expected {}", OneOf(expected))
                }
                Kind::UnknownVariant(found, expected) => {
                    format!("unknown variant `{found}`, expected {}", OneOf(expected))
                }
                // TOML syntax errors end with a newline.
                kind => kind.to_string().trim_end().to_owned(),
            };
            // figment puts array indices in the path as plain numbers:
            // `engine.transports.1` is reported as `engine.transports[1]`.
            let split = e
                .path
                .iter()
                .position(|p| p.parse::<usize>().is_ok())
                .unwrap_or(e.path.len());
            let base = e.path[..split].join(".");
            let index = e.path.get(split).and_then(|p| p.parse::<usize>().ok());
            let source = (!base.is_empty())
                .then(|| source_of(figment, &base, index))
                .flatten()
                .or_else(|| e.metadata.as_ref().map(|md| describe(md, &base)));
            let key = match index {
                Some(i) => format!("{base}[{i}]"),
                None => base,
            };
            Problem {
                key,
                message,
                source,
            }
        })
        .collect()
}

/// Turns a comma-separated string at `key` into an array with the same
/// source, so a following `admerge` appends to it instead of replacing it.
fn split_csv_value(fig: Figment, key: &str) -> Figment {
    let Ok(Value::String(tag, text)) = fig.find_value(key) else {
        return fig;
    };
    let Some(md) = fig.get_metadata(tag).cloned() else {
        return fig;
    };
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    fig.merge(Labeled::new(Serialized::default(key, items), md))
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// A semantic problem before its source is known.
struct Violation {
    key: &'static str,
    /// Element of an array key, so the element's own layer can be named.
    index: Option<usize>,
    message: String,
}

impl Violation {
    fn into_problem(self, source: Option<String>) -> Problem {
        let key = match self.index {
            Some(i) => format!("{}[{i}]", self.key),
            None => self.key.to_owned(),
        };
        Problem {
            key,
            message: self.message,
            source,
        }
    }
}

/// `value` above `max`: expected "at most {max} ({note})".
fn at_most(out: &mut Vec<Violation>, key: &'static str, value: u64, max: u64, note: &str) {
    if value > max {
        out.push(bad(key, value, &format!("at most {max} ({note})")));
    }
}

fn bad(key: &'static str, value: impl fmt::Debug, expected: &str) -> Violation {
    Violation {
        key,
        index: None,
        message: format!("invalid value {value:?}, expected {expected}"),
    }
}

fn positive(out: &mut Vec<Violation>, key: &'static str, value: u64) {
    if value == 0 {
        out.push(bad(key, value, "a number greater than 0"));
    }
}

impl Config {
    /// Checks the values that types alone cannot. Messages carry no source;
    /// [`load`] adds it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems: Vec<Problem> = self
            .violations()
            .into_iter()
            .map(|v| v.into_problem(None))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// Every semantic problem, in file order.
    fn violations(&self) -> Vec<Violation> {
        let mut out = Vec::new();

        let s = &self.server;
        let host = s.host.trim();
        if host.is_empty() || host.contains(['/', ' ']) {
            out.push(bad(
                "server.host",
                &s.host,
                "an IP address or host name such as \"0.0.0.0\" (no scheme, no path)",
            ));
        }
        if s.path.len() < 2 || !s.path.starts_with('/') || !s.path.ends_with('/') {
            out.push(bad(
                "server.path",
                &s.path,
                "a path that starts and ends with '/', such as \"/socket.io/\"",
            ));
        }
        positive(&mut out, "server.max_connections", s.max_connections as u64);
        if s.drain_window_ms > s.shutdown_timeout_ms {
            out.push(bad(
                "server.drain_window_ms",
                s.drain_window_ms,
                &format!(
                    "at most server.shutdown_timeout_ms ({})",
                    s.shutdown_timeout_ms
                ),
            ));
        }

        let e = &self.engine;
        positive(&mut out, "engine.ping_interval_ms", e.ping_interval_ms);
        positive(&mut out, "engine.ping_timeout_ms", e.ping_timeout_ms);
        positive(&mut out, "engine.upgrade_timeout_ms", e.upgrade_timeout_ms);
        positive(&mut out, "engine.max_payload", e.max_payload as u64);
        let transports: Vec<&str> = e.transports.iter().map(|t| t.as_str()).collect();
        if e.transports.is_empty() {
            out.push(bad(
                "engine.transports",
                &transports,
                "a non-empty subset of [\"polling\", \"websocket\"]",
            ));
        } else if e
            .transports
            .iter()
            .enumerate()
            .any(|(i, t)| e.transports[..i].contains(t))
        {
            out.push(bad(
                "engine.transports",
                &transports,
                "each transport listed at most once",
            ));
        }
        positive(&mut out, "engine.ws_read_buffer", e.ws_read_buffer as u64);
        positive(&mut out, "engine.ws_write_buffer", e.ws_write_buffer as u64);
        positive(&mut out, "engine.outbound_queue", e.outbound_queue as u64);

        let io = &self.socketio;
        positive(
            &mut out,
            "socketio.connect_timeout_ms",
            io.connect_timeout_ms,
        );
        positive(&mut out, "socketio.ack_timeout_ms", io.ack_timeout_ms);
        positive(
            &mut out,
            "app.revalidate_concurrency",
            self.app.revalidate_concurrency as u64,
        );

        for (i, origin) in self.security.allowed_origins.iter().enumerate() {
            if let Err(why) = check_origin(origin) {
                let mut v = bad("security.allowed_origins", origin, why);
                v.index = Some(i);
                out.push(v);
            }
        }
        for (i, net) in self.security.trusted_proxies.iter().enumerate() {
            if crate::gateway::client_ip::parse_net(net).is_none() {
                let mut v = bad(
                    "security.trusted_proxies",
                    net,
                    "an IP address or network (10.0.0.0/8, ::1)",
                );
                v.index = Some(i);
                out.push(v);
            }
        }

        let app = &self.app;
        if let Err(why) = check_app_url(&app.url) {
            out.push(bad("app.url", redact(&app.url), why));
        }
        for (key, path) in [
            ("app.session_path", &app.session_path),
            ("app.memberships_path", &app.memberships_path),
            ("app.authorize_path", &app.authorize_path),
            ("app.events_path", &app.events_path),
        ] {
            if !path.starts_with('/') {
                out.push(bad(key, path, "a path starting with '/'"));
            }
        }
        positive(&mut out, "app.timeout_ms", app.timeout_ms);
        positive(
            &mut out,
            "app.max_auth_calls_in_flight",
            app.max_auth_calls_in_flight.into(),
        );
        at_most(
            &mut out,
            "app.auth_queue_ms",
            app.auth_queue_ms,
            MAX_AUTH_QUEUE_MS,
            "0: no waiting, a call without a free slot fails at once",
        );

        // An unused URL is not worth refusing to start over.
        if self.redis.enabled {
            if let Err(why) = check_redis_url(&self.redis.url) {
                out.push(bad("redis.url", redact(&self.redis.url), why));
            }
        }
        if self.redis.prefix.is_empty() {
            out.push(bad(
                "redis.prefix",
                &self.redis.prefix,
                "a non-empty channel prefix such as \"socket.io\"",
            ));
        }

        if self.recovery.enabled {
            let ms = self.recovery.max_disconnection_ms;
            positive(&mut out, "recovery.max_disconnection_ms", ms);
        }

        let presence = &self.presence;
        positive(&mut out, "presence.heartbeat_ms", presence.heartbeat_ms);
        // One late heartbeat must not make a live instance look dead.
        if presence.ttl_ms < presence.heartbeat_ms.saturating_mul(2) {
            out.push(bad(
                "presence.ttl_ms",
                presence.ttl_ms,
                "at least twice presence.heartbeat_ms (3 times is the usual choice)",
            ));
        }
        // A window as long as the grace period would hide the reloads it exists to hide
        // behind a delay of the same size; 5 s is already far past noticeable.
        at_most(
            &mut out,
            "presence.batch_ms",
            presence.batch_ms,
            MAX_PRESENCE_BATCH_MS,
            "0 sends every update at once",
        );

        let limits = &self.limits;
        positive(
            &mut out,
            "limits.connect_rate_per_s",
            limits.connect_rate_per_s.into(),
        );
        at_most(
            &mut out,
            "limits.connect_queue_ms",
            limits.connect_queue_ms,
            MAX_CONNECT_QUEUE_MS,
            "0 refuses at once",
        );
        positive(&mut out, "limits.events_per_s", limits.events_per_s.into());
        positive(&mut out, "limits.events_burst", limits.events_burst.into());

        if !self.metrics.listen.is_empty() && !is_host_port(&self.metrics.listen) {
            out.push(bad(
                "metrics.listen",
                &self.metrics.listen,
                "\"\" (serve on the main port) or \"host:port\" such as \"127.0.0.1:9091\"",
            ));
        }
        if self.log.level.trim().is_empty() {
            out.push(bad(
                "log.level",
                &self.log.level,
                "a tracing filter such as \"info\" or \"info,socket_gateway=debug\"",
            ));
        }
        out
    }

    /// Makes origins comparable with the `Origin` header as plain strings.
    fn normalize(&mut self) {
        let mut seen = Vec::with_capacity(self.security.allowed_origins.len());
        for origin in &self.security.allowed_origins {
            let origin = normalize_origin(origin);
            if !seen.contains(&origin) {
                seen.push(origin);
            }
        }
        self.security.allowed_origins = seen;
    }
}

/// `https://x.com/app?q` → `https://x.com`. Input without `://` is returned
/// unchanged so validation can reject it with the original text.
fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!("{scheme}://{}", &rest[..end])
        }
        None => url.to_owned(),
    }
}

/// Lower-case and drop the scheme's default port, as browsers do in `Origin`.
fn normalize_origin(origin: &str) -> String {
    let lower = origin.to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if lower.starts_with(scheme) {
            if let Some(stripped) = lower.strip_suffix(port) {
                return stripped.to_owned();
            }
        }
    }
    lower
}

fn split_scheme(url: &str) -> Option<(String, &str)> {
    url.split_once("://")
        .map(|(scheme, rest)| (scheme.to_ascii_lowercase(), rest))
}

/// `host[:port]`, bracketed IPv6 allowed, port optional.
fn is_authority(authority: &str, port_required: bool) -> bool {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) if !v6.is_empty() => match tail {
                "" => (v6, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => return false,
                },
            },
            _ => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && !host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c))
        && (authority.starts_with('[') || !host.contains(':'));
    let port_ok = match port {
        Some(p) => p.parse::<u16>().is_ok(),
        None => !port_required,
    };
    host_ok && port_ok
}

fn is_host_port(listen: &str) -> bool {
    is_authority(listen, true)
}

fn check_origin(origin: &str) -> Result<(), &'static str> {
    const EXPECTED: &str =
        "an origin scheme://host[:port] with http or https and no path, such as \"https://chat.example.com\"";
    match split_scheme(origin) {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
            if is_authority(rest, false) {
                Ok(())
            } else {
                Err(EXPECTED)
            }
        }
        _ => Err(EXPECTED),
    }
}

fn check_app_url(url: &str) -> Result<(), &'static str> {
    const EXPECTED: &str =
        "an http:// or https:// URL without query or fragment, such as \"http://127.0.0.1:3000\"";
    match split_scheme(url) {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            if is_authority(authority, false) && !rest.contains(['?', '#']) {
                Ok(())
            } else {
                Err(EXPECTED)
            }
        }
        _ => Err(EXPECTED),
    }
}

fn check_redis_url(url: &str) -> Result<(), &'static str> {
    const EXPECTED: &str =
        "a URL starting with redis://, rediss:// or unix:, such as \"redis://127.0.0.1:6379\"";
    let lower = url.to_ascii_lowercase();
    let rest = ["redis://", "rediss://", "unix:"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(EXPECTED),
    }
}

/// Hides credentials (`redis://:secret@host` → `redis://***@host`) so error
/// messages can be logged.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// Options that affect a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    /// `--config PATH`: read this TOML file instead of `./gateway.toml`; it must exist.
    pub config: Option<PathBuf>,
    /// `--check-config`: load and validate, print the result, exit.
    pub check_config: bool,
}

impl Cli {
    pub fn source(&self) -> ConfigSource {
        ConfigSource {
            file: self.config.clone(),
        }
    }
}

/// What `main` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAction {
    Run(Cli),
    /// Print this text and exit 0.
    Help(String),
    /// Print `socket-gateway {VERSION}` and exit 0.
    Version,
}

/// Usage text for `--help`.
pub fn usage() -> String {
    format!(
        "socket-gateway {VERSION}\n\
         A Socket.IO gateway beside a Next.js app.\n\
         \n\
         USAGE:\n    socket-gateway [--config PATH] [--check-config]\n\
         \n\
         OPTIONS:\n\
         \x20   --config PATH    TOML file to read (default: ./{DEFAULT_FILE} if present)\n\
         \x20   --check-config   validate the configuration, print any errors, and exit\n\
         \x20   -h, --help       print this help\n\
         \x20   --version        print the version\n\
         \n\
         Every key can be overridden with GATEWAY_<SECTION>__<KEY>, e.g.\n\
         GATEWAY_ENGINE__PING_INTERVAL_MS=25000. PORT, REDIS_URL and APP_URL override\n\
         server.port, redis.url and app.url; NEXT_PUBLIC_APP_URL adds its origin to\n\
         security.allowed_origins.\n"
    )
}

/// Parses the arguments *after* the program name (`std::env::args().skip(1)`).
pub fn parse_cli(args: impl IntoIterator<Item = String>) -> Result<CliAction, String> {
    let mut cli = Cli::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let path = match arg.as_str() {
            "-h" | "--help" => return Ok(CliAction::Help(usage())),
            "--version" | "-V" => return Ok(CliAction::Version),
            "--check-config" => {
                cli.check_config = true;
                continue;
            }
            "--config" => args
                .next()
                .ok_or_else(|| "--config needs a PATH".to_owned())?,
            other => match other.strip_prefix("--config=") {
                Some(path) => path.to_owned(),
                None => return Err(format!("unknown argument `{other}` (see --help)")),
            },
        };
        if path.is_empty() {
            return Err("--config needs a non-empty PATH".into());
        }
        if cli.config.is_some() {
            return Err("--config given more than once".into());
        }
        cli.config = Some(PathBuf::from(path));
    }
    Ok(CliAction::Run(cli))
}

#[cfg(test)]
// Jail's closures must return figment::Result, whose error is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    /// Runs `f` in a fresh directory with an empty environment.
    fn jail(f: impl FnOnce(&mut Jail) -> figment::Result<()>) {
        Jail::expect_with(|jail| {
            jail.clear_env();
            f(jail)
        });
    }

    fn load_err(file: Option<&Path>) -> String {
        match load(file) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Unwraps, printing the rendered error on failure.
    fn ok<T>(result: Result<T, ConfigError>) -> T {
        match result {
            Ok(value) => value,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn assert_has(text: &str, parts: &[&str]) {
        for part in parts {
            assert!(text.contains(part), "missing {part:?} in:\n{text}");
        }
    }

    fn toml_path(jail: &Jail, name: &str) -> String {
        format!("TOML file {}", jail.directory().join(name).display())
    }

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
            assert_eq!(keys(&defaults)?.len(), 49);

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

    #[test]
    fn toml_file_overrides_defaults() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                r#"
                [server]
                port = 4000
                [engine]
                transports = ["websocket"]
                [log]
                format = "json"
                "#,
            )?;
            let config = ok(load(None));
            assert_eq!(config.server.port, 4000);
            assert_eq!(config.engine.transports, vec![Transport::Websocket]);
            assert_eq!(config.log.format, LogFormat::Json);
            assert_eq!(config.server.host, "0.0.0.0");
            Ok(())
        });
    }

    #[test]
    fn explicit_config_file_replaces_default_file() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[server]\nport = 4000\n")?;
            j.create_dir("etc")?;
            j.create_file("etc/other.toml", "[server]\nport = 5000\n")?;
            let config = ok(load(Some(Path::new("etc/other.toml"))));
            assert_eq!(config.server.port, 5000);
            Ok(())
        });
    }

    #[test]
    fn explicit_config_file_must_exist() {
        jail(|j| {
            let err = load_err(Some(Path::new("missing.toml")));
            let abs = j.directory().join("missing.toml");
            assert_has(
                &err,
                &[&abs.display().to_string(), "does not exist", "--config"],
            );

            j.create_dir("dir.toml")?;
            let err = load_err(Some(Path::new("dir.toml")));
            assert_has(&err, &["dir.toml", "not a regular file"]);
            Ok(())
        });
    }

    #[test]
    fn toml_does_not_search_parent_directories() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[server]\nport = 4000\n")?;
            j.create_dir("sub")?;
            j.change_dir("sub")?;
            assert_eq!(ok(load(None)).server.port, 3001);
            Ok(())
        });
    }

    #[test]
    fn gateway_env_overrides_toml() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                "[engine]\nping_interval_ms = 1000\n[app]\nurl = \"http://toml:3000\"\n",
            )?;
            j.set_env("GATEWAY_ENGINE__PING_INTERVAL_MS", "300");
            j.set_env("GATEWAY_APP__URL", "http://env:3000");
            j.set_env("GATEWAY_LIMITS__EVENTS_BURST", "7");
            let config = ok(load(None));
            assert_eq!(config.engine.ping_interval_ms, 300);
            assert_eq!(config.app.url, "http://env:3000");
            assert_eq!(config.limits.events_burst, 7);
            Ok(())
        });
    }

    #[test]
    fn gateway_env_without_section_is_ignored() {
        jail(|j| {
            // e.g. a shared .env that the Next.js app also reads
            j.set_env("GATEWAY_URL", "http://gateway");
            j.set_env("GATEWAYS__X", "1");
            j.set_env("HOME", "/root");
            assert_eq!(ok(load(None)), Config::default());
            Ok(())
        });
    }

    #[test]
    fn env_lists_accept_comma_separated_strings() {
        jail(|j| {
            j.set_env("GATEWAY_ENGINE__TRANSPORTS", "websocket");
            j.set_env(
                "GATEWAY_SECURITY__ALLOWED_ORIGINS",
                "https://a.example.com, http://b.example.com:8080",
            );
            let config = ok(load(None));
            assert_eq!(config.engine.transports, vec![Transport::Websocket]);
            assert_eq!(
                config.security.allowed_origins,
                vec!["https://a.example.com", "http://b.example.com:8080"]
            );
            j.set_env("GATEWAY_ENGINE__TRANSPORTS", "[polling, websocket]");
            assert_eq!(ok(load(None)).engine.transports.len(), 2);
            Ok(())
        });
    }

    #[test]
    fn numeric_env_values_are_accepted_for_string_keys() {
        jail(|j| {
            j.set_env("GATEWAY_REDIS__PREFIX", "123");
            j.set_env("GATEWAY_SERVER__HOST", "0");
            let config = ok(load(None));
            assert_eq!(config.redis.prefix, "123");
            assert_eq!(config.server.host, "0");
            Ok(())
        });
    }

    #[test]
    fn seed_env_names_override_gateway_env() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[server]\nport = 4000\n")?;
            j.set_env("GATEWAY_SERVER__PORT", "5000");
            j.set_env("GATEWAY_REDIS__URL", "redis://gateway:6379");
            j.set_env("GATEWAY_APP__URL", "http://gateway:3000");
            j.set_env("PORT", "6000");
            j.set_env("REDIS_URL", "rediss://seed:6380");
            j.set_env("APP_URL", "https://seed.example.com");
            let config = ok(load(None));
            assert_eq!(config.server.port, 6000);
            assert_eq!(config.redis.url, "rediss://seed:6380");
            assert_eq!(config.app.url, "https://seed.example.com");
            Ok(())
        });
    }

    #[test]
    fn port_zero_means_any_free_port() {
        jail(|j| {
            j.set_env("PORT", "0");
            assert_eq!(ok(load(None)).server.port, 0);
            Ok(())
        });
    }

    #[test]
    fn next_public_app_url_adds_its_origin() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                "[security]\nallowed_origins = [\"https://admin.example.com\"]\n",
            )?;
            j.set_env("NEXT_PUBLIC_APP_URL", "https://Chat.Example.com/app/?x=1");
            assert_eq!(
                ok(load(None)).security.allowed_origins,
                vec!["https://admin.example.com", "https://chat.example.com"]
            );

            // Already listed (modulo case and default port): not duplicated.
            j.set_env("NEXT_PUBLIC_APP_URL", "https://ADMIN.example.com:443/");
            assert_eq!(
                ok(load(None)).security.allowed_origins,
                vec!["https://admin.example.com"]
            );

            // Appends to a comma-separated env list as well.
            j.set_env(
                "GATEWAY_SECURITY__ALLOWED_ORIGINS",
                "https://a.example.com,https://b.example.com",
            );
            j.set_env("NEXT_PUBLIC_APP_URL", "http://localhost:3000/");
            assert_eq!(
                ok(load(None)).security.allowed_origins,
                vec![
                    "https://a.example.com",
                    "https://b.example.com",
                    "http://localhost:3000"
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn bad_next_public_app_url_is_blamed_on_that_var() {
        jail(|j| {
            j.set_env("NEXT_PUBLIC_APP_URL", "chat.example.com");
            let err = load_err(None);
            assert_has(
                &err,
                &[
                    "security.allowed_origins[0]",
                    "\"chat.example.com\"",
                    "(from env var NEXT_PUBLIC_APP_URL)",
                ],
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_source() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[engine]\nping_interval = 5\n")?;
            let err = load_err(None);
            assert_has(
                &err,
                &[
                    "engine.ping_interval: unknown key",
                    "`ping_interval_ms`",
                    &toml_path(j, DEFAULT_FILE),
                ],
            );

            j.create_file(DEFAULT_FILE, "[enigne]\nping_interval_ms = 5\n")?;
            assert_has(&load_err(None), &["enigne: unknown key", "`engine`"]);

            j.create_file(DEFAULT_FILE, "")?;
            j.set_env("GATEWAY_SERVR__PORT", "1");
            assert_has(
                &load_err(None),
                &["servr: unknown key", "(from env var GATEWAY_SERVR__PORT)"],
            );
            j.clear_env();
            j.set_env("GATEWAY_SERVER__PROT", "1");
            assert_has(
                &load_err(None),
                &[
                    "server.prot: unknown key",
                    "(from env var GATEWAY_SERVER__PROT)",
                ],
            );
            Ok(())
        });
    }

    #[test]
    fn type_errors_name_key_source_and_expectation() {
        jail(|j| {
            j.set_env("GATEWAY_ENGINE__PING_INTERVAL_MS", "abc");
            assert_has(
                &load_err(None),
                &[
                    "engine.ping_interval_ms: invalid type: found string \"abc\", expected u64 \
                     (from env var GATEWAY_ENGINE__PING_INTERVAL_MS)",
                ],
            );
            j.set_env("GATEWAY_ENGINE__PING_INTERVAL_MS", "1");

            j.set_env("PORT", "70000");
            assert_has(
                &load_err(None),
                &[
                    "server.port:",
                    "70000",
                    "expected u16",
                    "(from env var PORT)",
                ],
            );
            j.set_env("PORT", "1");

            j.create_file(DEFAULT_FILE, "[log]\nformat = \"xml\"\n")?;
            assert_has(
                &load_err(None),
                &[
                    "log.format: unknown variant `xml`, expected `text` or `json`",
                    &toml_path(j, DEFAULT_FILE),
                ],
            );

            j.create_file(
                DEFAULT_FILE,
                "[engine]\ntransports = [\"polling\", \"ws\"]\n",
            )?;
            assert_has(
                &load_err(None),
                &[
                    "engine.transports[1]: unknown variant `ws`",
                    &toml_path(j, DEFAULT_FILE),
                ],
            );
            Ok(())
        });
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        jail(|j| {
            j.create_file("bad.toml", "[server\nport = 1\n")?;
            let err = load_err(Some(Path::new("bad.toml")));
            assert_has(&err, &[&toml_path(j, "bad.toml"), "line 1"]);
            Ok(())
        });
    }

    #[test]
    fn semantic_errors_name_key_value_and_source() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                r#"
                [server]
                path = "/socket.io"
                shutdown_timeout_ms = 5000
                [engine]
                transports = []
                [security]
                allowed_origins = ["https://ok.example.com", "https://chat.example.com/app"]
                [metrics]
                listen = "9091"
                "#,
            )?;
            j.set_env("GATEWAY_ENGINE__PING_TIMEOUT_MS", "0");
            j.set_env("REDIS_URL", "http://:secret@cache:6379");
            j.set_env("APP_URL", "127.0.0.1:3000");
            let err = load_err(None);
            let file = toml_path(j, DEFAULT_FILE);
            let lines = [
                format!("server.path: invalid value \"/socket.io\", expected a path that starts and ends with '/', such as \"/socket.io/\" (from {file})"),
                "server.drain_window_ms: invalid value 10000, expected at most server.shutdown_timeout_ms (5000) (from default)".to_owned(),
                format!("engine.transports: invalid value [], expected a non-empty subset of [\"polling\", \"websocket\"] (from {file})"),
                format!("security.allowed_origins[1]: invalid value \"https://chat.example.com/app\", expected an origin scheme://host[:port] with http or https and no path, such as \"https://chat.example.com\" (from {file})"),
                "engine.ping_timeout_ms: invalid value 0, expected a number greater than 0 (from env var GATEWAY_ENGINE__PING_TIMEOUT_MS)".to_owned(),
                "redis.url: invalid value \"http://***@cache:6379\", expected a URL starting with redis://, rediss:// or unix:, such as \"redis://127.0.0.1:6379\" (from env var REDIS_URL)".to_owned(),
                "app.url: invalid value \"127.0.0.1:3000\", expected an http:// or https:// URL without query or fragment, such as \"http://127.0.0.1:3000\" (from env var APP_URL)".to_owned(),
                format!("metrics.listen: invalid value \"9091\", expected \"\" (serve on the main port) or \"host:port\" such as \"127.0.0.1:9091\" (from {file})"),
                "invalid configuration (8 problems):".to_owned(),
            ];
            let parts: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert_has(&err, &parts);
            assert!(!err.contains("secret"), "credentials leaked:\n{err}");
            Ok(())
        });
    }

    #[test]
    fn more_semantic_checks() {
        jail(|j| {
            j.set_env("GATEWAY_ENGINE__TRANSPORTS", "websocket,websocket");
            assert_has(
                &load_err(None),
                &["engine.transports: invalid value [\"websocket\", \"websocket\"], expected each transport listed at most once (from env var GATEWAY_ENGINE__TRANSPORTS)"],
            );
            j.set_env("GATEWAY_ENGINE__TRANSPORTS", "polling");
            j.set_env("GATEWAY_REDIS__PREFIX", "\"\"");
            assert_has(&load_err(None), &["redis.prefix", "GATEWAY_REDIS__PREFIX"]);
            j.set_env("GATEWAY_REDIS__PREFIX", "sio");
            j.set_env("GATEWAY_APP__EVENTS_PATH", "api/events");
            assert_has(
                &load_err(None),
                &["app.events_path: invalid value \"api/events\", expected a path starting with '/'"],
            );
            j.set_env("GATEWAY_APP__EVENTS_PATH", "/e");
            j.set_env("GATEWAY_SERVER__HOST", "http://0.0.0.0");
            assert_has(&load_err(None), &["server.host", "GATEWAY_SERVER__HOST"]);
            j.set_env("GATEWAY_SERVER__HOST", "::");
            j.set_env("GATEWAY_METRICS__LISTEN", "[::1]:9091");
            j.set_env("GATEWAY_REDIS__URL", "unix:/run/valkey.sock");
            j.set_env("GATEWAY_RECOVERY__ENABLED", "false");
            j.set_env("GATEWAY_RECOVERY__MAX_DISCONNECTION_MS", "0");
            let config = ok(load(None));
            assert_eq!(config.metrics.listen, "[::1]:9091");
            assert_eq!(config.redis.url, "unix:/run/valkey.sock");
            Ok(())
        });
    }

    #[test]
    fn presence_checks() {
        jail(|j| {
            j.set_env("GATEWAY_PRESENCE__HEARTBEAT_MS", "0");
            assert_has(
                &load_err(None),
                &["presence.heartbeat_ms: invalid value 0, expected a number greater than 0 (from env var GATEWAY_PRESENCE__HEARTBEAT_MS)"],
            );
            j.set_env("GATEWAY_PRESENCE__HEARTBEAT_MS", "500");
            j.set_env("GATEWAY_PRESENCE__TTL_MS", "999");
            assert_has(
                &load_err(None),
                &["presence.ttl_ms: invalid value 999, expected at least twice presence.heartbeat_ms"],
            );
            j.set_env("GATEWAY_PRESENCE__TTL_MS", "1500");
            j.set_env("GATEWAY_PRESENCE__GRACE_MS", "0");
            j.set_env("GATEWAY_PRESENCE__BATCH_MS", "5001");
            assert_has(
                &load_err(None),
                &["presence.batch_ms: invalid value 5001, expected at most 5000"],
            );
            j.set_env("GATEWAY_PRESENCE__BATCH_MS", "0");
            let config = ok(load(None));
            assert_eq!(config.presence.ttl(), Duration::from_millis(1500));
            assert_eq!(config.presence.grace(), Duration::ZERO);
            assert_eq!(config.presence.batch(), Duration::ZERO);
            assert_eq!(
                Config::default().presence.batch(),
                Duration::from_millis(250)
            );
            Ok(())
        });
    }

    #[test]
    fn auth_call_limit_checks() {
        jail(|j| {
            j.set_env("GATEWAY_APP__MAX_AUTH_CALLS_IN_FLIGHT", "0");
            j.set_env("GATEWAY_APP__AUTH_QUEUE_MS", "60001");
            assert_has(
                &load_err(None),
                &[
                    "app.max_auth_calls_in_flight: invalid value 0, expected a number greater than 0",
                    "app.auth_queue_ms: invalid value 60001, expected at most 60000",
                ],
            );
            j.set_env("GATEWAY_APP__MAX_AUTH_CALLS_IN_FLIGHT", "8");
            j.set_env("GATEWAY_APP__AUTH_QUEUE_MS", "0");
            let config = ok(load(None));
            assert_eq!(config.app.max_auth_calls_in_flight, 8);
            assert_eq!(config.app.auth_queue(), Duration::ZERO);
            Ok(())
        });
    }

    #[test]
    fn connect_queue_checks() {
        jail(|j| {
            j.set_env("GATEWAY_LIMITS__CONNECT_QUEUE_MS", "30001");
            assert_has(
                &load_err(None),
                &["limits.connect_queue_ms: invalid value 30001, expected at most 30000"],
            );
            j.set_env("GATEWAY_LIMITS__CONNECT_QUEUE_MS", "0");
            assert_eq!(ok(load(None)).limits.connect_queue(), Duration::ZERO);
            assert_eq!(
                Config::default().limits.connect_queue(),
                Duration::from_millis(5000)
            );
            Ok(())
        });
    }

    #[test]
    fn validate_alone_has_no_source() {
        let mut config = Config::default();
        config.limits.events_per_s = 0;
        config.security.allowed_origins = vec!["ftp://x".into()];
        let err = match config.validate() {
            Ok(()) => panic!("expected an error"),
            Err(e) => e,
        };
        assert_eq!(err.problems().len(), 2);
        assert_eq!(err.problems()[0].key, "security.allowed_origins[0]");
        assert_eq!(
            err.problems()[1].to_string(),
            "limits.events_per_s: invalid value 0, expected a number greater than 0"
        );
    }

    #[test]
    fn origin_helpers() {
        assert_eq!(origin_of("https://x.com/a/b?c#d"), "https://x.com");
        assert_eq!(origin_of("http://x.com:8080"), "http://x.com:8080");
        assert_eq!(normalize_origin("HTTP://X.com:80"), "http://x.com");
        assert_eq!(normalize_origin("https://x.com:8443"), "https://x.com:8443");
        assert!(check_origin("https://[::1]:3000").is_ok());
        assert!(check_origin("https://x.com/").is_err());
        assert!(check_origin("https://user@x.com").is_err());
        assert!(check_origin("https://x.com:99999").is_err());
        assert!(check_origin("ws://x.com").is_err());
        assert!(check_app_url("http://app:3000/base/").is_ok());
        assert!(check_app_url("http://app:3000?x").is_err());
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }

    fn cli(args: &[&str]) -> Result<CliAction, String> {
        parse_cli(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn cli_parsing() {
        assert_eq!(cli(&[]), Ok(CliAction::Run(Cli::default())));
        assert_eq!(
            cli(&["--config", "/etc/gw.toml", "--check-config"]),
            Ok(CliAction::Run(Cli {
                config: Some(PathBuf::from("/etc/gw.toml")),
                check_config: true,
            }))
        );
        assert_eq!(
            cli(&["--config=x.toml"]),
            Ok(CliAction::Run(Cli {
                config: Some(PathBuf::from("x.toml")),
                check_config: false,
            }))
        );
        assert!(
            matches!(cli(&["-h"]), Ok(CliAction::Help(text)) if text.contains("--check-config"))
        );
        assert!(matches!(cli(&["--help"]), Ok(CliAction::Help(_))));
        assert_eq!(cli(&["--version"]), Ok(CliAction::Version));
        assert_eq!(cli(&["--config"]), Err("--config needs a PATH".to_owned()));
        assert!(cli(&["--config="]).is_err());
        assert!(cli(&["--config", "a", "--config", "b"]).is_err());
        assert_eq!(
            cli(&["--verbose"]),
            Err("unknown argument `--verbose` (see --help)".to_owned())
        );
        let source = Cli {
            config: Some(PathBuf::from("a.toml")),
            check_config: false,
        }
        .source();
        assert_eq!(source.file, Some(PathBuf::from("a.toml")));
    }
}
