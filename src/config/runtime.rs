//! The lower crates' runtime types, built from the settings. Those crates cannot name the
//! gateway's configuration, so every copy from one to the other is here, once.

use engineio::server::Drain;
use engineio::{EngineConfig, HandshakeRate, OriginPolicy, Transport};
use relay::subscriber::Timing;
use relay::RelayConfig;
use socketio::SocketIoConfig;

use super::{Config, ServerSettings, SocketIoSettings};

/// The engine enforces keys of several sections: its own (`engine`), the mount path and the
/// session cap (`server`), the browser checks (`security`) and the handshake rate (`limits`).
impl From<&Config> for EngineConfig {
    fn from(cfg: &Config) -> Self {
        EngineConfig {
            path: cfg.server.path.clone(),
            ping_interval: cfg.engine.ping_interval(),
            ping_timeout: cfg.engine.ping_timeout(),
            upgrade_timeout: cfg.engine.upgrade_timeout(),
            max_payload: cfg.engine.max_payload,
            allow_polling: cfg.engine.allows(Transport::Polling),
            allow_websocket: cfg.engine.allows(Transport::Websocket),
            origins: OriginPolicy::List(cfg.security.allowed_origins.clone()),
            cors_max_age_s: cfg.security.cors_max_age_s,
            ws_read_buffer: cfg.engine.ws_read_buffer,
            ws_write_buffer: cfg.engine.ws_write_buffer,
            max_queued_frames: cfg.engine.outbound_queue,
            max_sessions: cfg.server.max_connections,
            handshake_rate: Some(HandshakeRate {
                per_s: cfg.limits.connect_rate_per_s,
                queue: cfg.limits.connect_queue(),
            }),
        }
    }
}

impl From<&SocketIoSettings> for SocketIoConfig {
    fn from(io: &SocketIoSettings) -> Self {
        SocketIoConfig {
            connect_timeout: io.connect_timeout(),
            max_attachments: io.max_attachments,
        }
    }
}

/// The relay's Valkey (`redis`), how long a peer's broadcast waits for acks
/// (`socketio.ack_timeout_ms`) and, when recovery is on, its window. Whether the relay runs at
/// all (`redis.enabled`) is the caller's choice.
impl From<&Config> for RelayConfig {
    fn from(cfg: &Config) -> Self {
        RelayConfig {
            url: cfg.redis.url.clone(),
            topology: cfg.redis.topology,
            nodes: cfg.redis.nodes.clone(),
            sentinel_service: cfg.redis.sentinel_service.clone(),
            pubsub: cfg.redis.pubsub,
            subscription_mode: cfg.redis.subscription_mode,
            prefix: cfg.redis.prefix.clone(),
            ack_timeout: cfg.socketio.ack_timeout(),
            timing: Timing::default(),
            recovery: cfg
                .recovery
                .enabled
                .then(|| cfg.recovery.max_disconnection()),
            log_partitions: cfg.recovery.log_partitions(cfg.redis.topology),
        }
    }
}

impl From<&ServerSettings> for Drain {
    fn from(server: &ServerSettings) -> Self {
        Drain {
            window: server.drain_window(),
            timeout: server.shutdown_timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Every key lands in its own field: no value is taken from a neighbouring key.
    #[test]
    fn each_setting_reaches_its_runtime_field() {
        let mut cfg = Config::default();
        cfg.server.path = "/rt/".into();
        cfg.server.max_connections = 7;
        cfg.server.drain_window_ms = 11;
        cfg.server.shutdown_timeout_ms = 12;
        cfg.engine.ping_interval_ms = 13;
        cfg.engine.ping_timeout_ms = 14;
        cfg.engine.upgrade_timeout_ms = 15;
        cfg.engine.max_payload = 16;
        cfg.engine.transports = vec![Transport::Websocket];
        cfg.engine.ws_read_buffer = 17;
        cfg.engine.ws_write_buffer = 18;
        cfg.engine.outbound_queue = 19;
        cfg.security.allowed_origins = vec!["https://a.example.com".into()];
        cfg.security.cors_max_age_s = 20;
        cfg.limits.connect_rate_per_s = 21;
        cfg.limits.connect_queue_ms = 22;
        cfg.socketio.connect_timeout_ms = 23;
        cfg.socketio.ack_timeout_ms = 24;
        cfg.socketio.max_attachments = 25;
        cfg.redis.url = "redis://rt:1".into();
        cfg.redis.prefix = "rt".into();
        cfg.recovery.max_disconnection_ms = 26;
        let ms = Duration::from_millis;

        let engine = EngineConfig::from(&cfg);
        assert_eq!(engine.path, "/rt/");
        assert_eq!(engine.max_sessions, 7);
        assert_eq!(
            (
                engine.ping_interval,
                engine.ping_timeout,
                engine.upgrade_timeout
            ),
            (ms(13), ms(14), ms(15))
        );
        assert_eq!(engine.max_payload, 16);
        assert!(!engine.allow_polling && engine.allow_websocket);
        assert_eq!((engine.ws_read_buffer, engine.ws_write_buffer), (17, 18));
        assert_eq!(engine.max_queued_frames, 19);
        assert!(engine.origins.allows("https://a.example.com"));
        assert!(!engine.origins.allows("https://b.example.com"));
        assert_eq!(engine.cors_max_age_s, 20);
        let rate = engine.handshake_rate.as_ref().map(|r| (r.per_s, r.queue));
        assert_eq!(rate, Some((21, ms(22))));

        let io = SocketIoConfig::from(&cfg.socketio);
        assert_eq!((io.connect_timeout, io.max_attachments), (ms(23), 25));

        let relay = RelayConfig::from(&cfg);
        assert_eq!(
            (relay.url.as_str(), relay.prefix.as_str()),
            ("redis://rt:1", "rt")
        );
        assert_eq!(relay.ack_timeout, ms(24));
        assert_eq!(relay.recovery, Some(ms(26)));
        cfg.recovery.enabled = false;
        assert_eq!(RelayConfig::from(&cfg).recovery, None);

        let drain = Drain::from(&cfg.server);
        assert_eq!((drain.window, drain.timeout), (ms(11), ms(12)));
    }
}
