//! Validation: the checks types alone cannot make, each with the value found and what was
//! expected. `load` adds the layer that supplied the value.

use std::fmt;

use super::error::{ConfigError, Problem};
use super::urls::{
    check_app_url, check_origin, check_redis_url, is_host_port, normalize_origin, redact,
};
use super::Config;
use relay::channels::PubSubKind;
use relay::valkey::TopologyKind;

/// Longest `app.auth_queue_ms`: past it the client is better told to come back later.
const MAX_AUTH_QUEUE_MS: u64 = 60_000;

/// Longest `presence.batch_ms`: beyond it updates would lag behind what users notice.
const MAX_PRESENCE_BATCH_MS: u64 = 5_000;

/// Longest `limits.connect_queue_ms`: a handshake held longer is better refused, so the
/// client's backoff takes over (and proxies' timeouts stay far away).
const MAX_CONNECT_QUEUE_MS: u64 = 30_000;

/// A semantic problem before its source is known.
pub(super) struct Violation {
    pub(super) key: &'static str,
    /// Element of an array key, so the element's own layer can be named.
    pub(super) index: Option<usize>,
    message: String,
}

impl Violation {
    pub(super) fn into_problem(self, source: Option<String>) -> Problem {
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
    /// `load` adds it.
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
    pub(super) fn violations(&self) -> Vec<Violation> {
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
                let mut v = bad("security.allowed_origins", redact(origin), why);
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
            for node in &self.redis.nodes {
                if let Err(why) = check_redis_url(node) {
                    out.push(bad("redis.nodes", redact(node), why));
                }
            }
            if self.redis.pubsub == PubSubKind::Sharded
                && self.redis.topology != TopologyKind::Cluster
            {
                out.push(bad(
                    "redis.pubsub",
                    "sharded",
                    "\"classic\", or redis.topology = \"cluster\" (sharded Pub/Sub is a Cluster's)",
                ));
            }
            if self.redis.topology == TopologyKind::Sentinel {
                if self.redis.nodes.is_empty() {
                    out.push(bad(
                        "redis.nodes",
                        "[]",
                        "the sentinels' URLs, such as [\"redis://sentinel-1:26379\"]",
                    ));
                }
                if self.redis.sentinel_service.is_empty() {
                    out.push(bad(
                        "redis.sentinel_service",
                        "",
                        "the name the sentinels monitor the primary under, such as \"mymaster\"",
                    ));
                }
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
            let partitions = self.recovery.log_partitions;
            let max = socketio::recovery::MAX_PARTITIONS as u64;
            at_most(
                &mut out,
                "recovery.log_partitions",
                partitions,
                max,
                "0 picks",
            );
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
    pub(super) fn normalize(&mut self) {
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

#[cfg(test)]
// Jail's closures must return figment::Result, whose error is large.
#[allow(clippy::result_large_err)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::{assert_has, jail, load_err, ok, toml_path};
    use super::super::{load, DEFAULT_FILE};
    use super::*;

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
    fn sharded_pubsub_needs_a_cluster() {
        jail(|j| {
            j.set_env("GATEWAY_REDIS__PUBSUB", "sharded");
            assert_has(
                &load_err(None),
                &["redis.pubsub: invalid value \"sharded\", expected \"classic\", or redis.topology = \"cluster\""],
            );
            j.set_env("GATEWAY_REDIS__TOPOLOGY", "cluster");
            j.set_env("GATEWAY_REDIS__SUBSCRIPTION_MODE", "dynamic-private");
            let config = ok(load(None));
            assert_eq!(config.redis.pubsub, PubSubKind::Sharded);
            assert_eq!(
                config.redis.subscription_mode,
                relay::channels::SubscriptionMode::DynamicPrivate
            );
            j.set_env("GATEWAY_REDIS__SUBSCRIPTION_MODE", "private");
            assert_has(&load_err(None), &["redis.subscription_mode"]);
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
    fn credentials_in_a_refused_origin_are_not_shown() {
        jail(|j| {
            j.set_env(
                "NEXT_PUBLIC_APP_URL",
                "https://admin:secret@chat.example.com/",
            );
            let err = load_err(None);
            assert_has(
                &err,
                &["security.allowed_origins[0]: invalid value \"https://***@chat.example.com/\""],
            );
            assert!(!err.contains("secret"), "credentials leaked:\n{err}");
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
}
