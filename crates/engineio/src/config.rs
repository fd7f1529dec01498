//! Transport settings of the Engine.IO layer, built by the server from the gateway config.

use std::time::Duration;

/// Which browser origins may open a session.
#[derive(Clone, Debug)]
pub enum OriginPolicy {
    /// Any origin (the protocol test suites' reference servers use `cors: "*"`).
    Any,
    /// Only these exact origins (`scheme://host[:port]`). A request without `Origin` is allowed:
    /// it is not a browser, and it still has to authenticate.
    List(Vec<String>),
}

impl OriginPolicy {
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// The handshake rate: a bucket holding one second's worth, and how long a handshake may wait
/// for a token before it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeRate {
    pub per_s: u32,
    pub queue: Duration,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Request path, with leading and trailing slash (`/socket.io/`).
    pub path: String,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Largest message or POST body accepted, in bytes (advertised as `maxPayload`).
    pub max_payload: usize,
    pub allow_polling: bool,
    pub allow_websocket: bool,
    pub origins: OriginPolicy,
    pub cors_max_age_s: u64,
    /// Bytes asked of each WebSocket read; the buffer exists only while a read is parsed.
    pub ws_read_buffer: usize,
    /// Queued bytes merged into one WebSocket write.
    pub ws_write_buffer: usize,
    /// Frames queued for one session before it counts as a slow consumer and is closed.
    pub max_queued_frames: usize,
    /// Most sessions open at once; handshakes beyond it get 429.
    pub max_sessions: usize,
    /// New sessions per second across the engine (a token bucket holding one second's worth)
    /// and how long a handshake over it may wait for its turn; `None` for no limit. Handshakes
    /// beyond it get 429.
    pub handshake_rate: Option<HandshakeRate>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            path: "/engine.io/".into(),
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            allow_polling: true,
            allow_websocket: true,
            origins: OriginPolicy::Any,
            cors_max_age_s: 86_400,
            ws_read_buffer: 4096,
            ws_write_buffer: 16384,
            max_queued_frames: 1024,
            max_sessions: usize::MAX,
            handshake_rate: None,
        }
    }
}
