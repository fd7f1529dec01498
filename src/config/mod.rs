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
//!
//! Where each concern lives, by file:
//! - `schema.rs`: the sections, their keys and defaults (`gateway.toml` documents each key);
//! - `lenient.rs`: how values from environment variables are read;
//! - `load.rs`: the layers; `provenance.rs`: which layer supplied a key;
//! - `validate.rs`: the checks types alone cannot make; `urls.rs`: the address and URL keys;
//! - `error.rs`: how problems are reported;
//! - `runtime.rs`: the lower crates' runtime types built from the settings
//!   (`engineio::EngineConfig::from(&config)`, ...);
//! - `cli.rs`: the command line.

mod cli;
mod error;
mod lenient;
mod load;
mod provenance;
mod runtime;
mod schema;
mod urls;
mod validate;

#[cfg(test)]
mod test_support;

use serde::{Deserialize, Serialize};

pub use cli::{parse_cli, usage, Cli, CliAction};
pub use error::{ConfigError, Problem};
pub use load::{figment_for, load, load_from, ConfigSource};
pub use schema::{
    AppSettings, EngineSettings, LimitsSettings, LogFormat, LogSettings, MetricsSettings,
    PresenceSettings, RecoverySettings, RedisSettings, SecuritySettings, ServerSettings,
    SocketIoSettings,
};

/// The file read from the current directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "gateway.toml";
/// Prefix of the gateway's own environment variables.
pub const ENV_PREFIX: &str = "GATEWAY_";
/// Version printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The whole gateway configuration. See `gateway.toml` for every key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSettings,
    pub engine: EngineSettings,
    pub socketio: SocketIoSettings,
    pub security: SecuritySettings,
    pub app: AppSettings,
    pub redis: RedisSettings,
    pub recovery: RecoverySettings,
    pub presence: PresenceSettings,
    pub limits: LimitsSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}
