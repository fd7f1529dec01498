//! Serving the metrics: the Prometheus recorder is installed once for the process, `/metrics`
//! is rendered by our own HTTP server (the exporter's listener feature pulls a TLS stack we do
//! not need), either on the main port or on a separate admin listener, and the recorder's
//! upkeep runs on a timer, since only the exporter's own listener would run it for us and
//! without it histogram data grows without bound.
//!
//! Gauges that describe the current state (sessions by transport, rooms, tasks) are read from the
//! engine at scrape time instead of being counted up and down on every change: they cannot
//! drift, and they cost nothing between scrapes.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use warp::filters::BoxedFilter;
use warp::{Filter, Reply};

use super::{buckets, names};
use crate::config::MetricsSettings;
use engineio::Engine;
use socketio::SocketIo;

/// How often the recorder's upkeep runs (the exporter's own default).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(#[from] BuildError),
    #[error("cannot listen for metrics on {addr} (metrics.listen): {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// The recorder with the gateway's histogram buckets (real histograms, not summaries, so they
/// aggregate across instances). Not installed: see [`install`].
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::APP_CALL_DURATION.into()),
            buckets::APP_CALL_SECONDS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(names::BROADCAST_RECIPIENTS.into()),
            buckets::BROADCAST_RECIPIENTS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(relay::metrics::VALKEY_PUBSUB_LAG.into()),
            buckets::PUBSUB_LAG_SECONDS,
        )
}

/// Installs the global recorder (once per process), describes every metric, sets the series
/// that start at zero and spawns the upkeep task. Must run inside the Tokio runtime.
pub fn install(version: &'static str) -> Result<PrometheusHandle, MetricsError> {
    let handle = builder()?.install_recorder()?;
    super::describe_all();
    super::init_series(version);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// What the scrape-time gauges are read from.
#[derive(Clone)]
pub struct Sources {
    pub engine: Engine,
    pub io: Arc<SocketIo>,
}

impl Sources {
    /// Sets the state gauges from the live tables.
    pub fn observe(&self) {
        let (polling, websocket) = self.engine.transport_counts();
        ::metrics::gauge!(names::CONNECTIONS, "transport" => "polling").set(polling as f64);
        ::metrics::gauge!(names::CONNECTIONS, "transport" => "websocket").set(websocket as f64);
        let rooms: usize = self.io.namespaces().map(|ns| ns.rooms.shared_rooms()).sum();
        ::metrics::gauge!(names::ROOMS).set(rooms as f64);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            ::metrics::gauge!(names::TOKIO_TASKS).set(rt.metrics().num_alive_tasks() as f64);
        }
    }
}

/// `GET /metrics`: the text exposition format.
pub fn route(handle: PrometheusHandle, sources: Sources) -> BoxedFilter<(warp::reply::Response,)> {
    warp::path!("metrics")
        .and(warp::get())
        .map(move || {
            sources.observe();
            warp::reply::with_header(
                handle.render(),
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response()
        })
        .boxed()
}

/// Sets metrics up as configured. Returns the `/metrics` route to mount on the main listener
/// when `metrics.listen` is empty; with an admin address, serves it there (spawned, for the
/// life of the process: scrapes keep working while the main listener drains) and returns
/// `None`. Disabled metrics install nothing and serve nothing.
pub async fn start(
    cfg: &MetricsSettings,
    version: &'static str,
    sources: Sources,
) -> Result<Option<BoxedFilter<(warp::reply::Response,)>>, MetricsError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let handle = install(version)?;
    let route = route(handle, sources);
    if cfg.listen.is_empty() {
        return Ok(Some(route));
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen.as_str())
        .await
        .map_err(|source| MetricsError::Listen {
            addr: cfg.listen.clone(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| MetricsError::Listen {
            addr: cfg.listen.clone(),
            source,
        })?;
    tracing::info!(%addr, "metrics on http://{addr}/metrics");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders what `record` did with a fresh recorder (the global one is never touched).
    fn render(record: impl FnOnce()) -> String {
        let recorder = builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            crate::metrics::describe_all();
            crate::metrics::init_series("9.9.9");
            record();
        });
        handle.render()
    }

    /// The rendered sample lines, without their values.
    fn series(text: &str) -> std::collections::HashSet<&str> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series))
            .collect()
    }

    /// Every series whose labels are known must be there, at zero, before anything happened:
    /// the label values are spelled out here (they are what dashboards and alerts match on),
    /// not taken from the enums under test.
    #[test]
    fn known_series_exist_at_zero_from_the_start() {
        let text = render(|| relay::metrics::init_series(true));
        let have = series(&text);
        let mut want: Vec<String> = Vec::new();
        let mut labelled = |name: &str, label: &str, values: &[&str]| {
            for v in values {
                want.push(format!("{name}{{{label}=\"{v}\"}}"));
            }
        };
        labelled(
            "socket_gateway_connects_total",
            "result",
            &[
                "ok",
                "invalid_session",
                "auth_unavailable",
                "origin_refused",
                "rate_limited",
                "over_capacity",
            ],
        );
        labelled(
            "socket_gateway_disconnects_total",
            "reason",
            &[
                "client namespace disconnect",
                "server namespace disconnect",
                "transport close",
                "transport error",
                "ping timeout",
                "parse error",
                "forced server close",
                "forced close",
                "server shutting down",
                "slow consumer",
            ],
        );
        labelled(
            "socket_gateway_events_in_total",
            "event",
            &[
                "message:send",
                "message:delete",
                "room:join",
                "room:leave",
                "typing:start",
                "typing:stop",
                "presence:setAway",
                "presence:setActive",
                "other",
            ],
        );
        labelled(
            "socket_gateway_events_out_total",
            "event",
            &[
                "message:new",
                "message:deleted",
                "typing:update",
                "presence:update",
                "error",
                "other",
            ],
        );
        let calls = ["session", "memberships", "authorize", "event"];
        labelled("socket_gateway_app_calls_in_flight", "call", &calls);
        labelled(
            "socket_gateway_valkey_errors_total",
            "op",
            &[
                "connect",
                "publish",
                "publish_queue_full",
                "publish_degraded",
                "record",
                "session",
                "decode",
            ],
        );
        labelled(
            "socket_gateway_recovery_attempts_total",
            "outcome",
            &[
                "restored",
                "unknown_session",
                "offset_gone",
                "unavailable",
                "log_unavailable",
                "deliveries_behind",
            ],
        );
        labelled(
            "socket_gateway_recovery_markers_total",
            "reason",
            &["quiet", "new_room", "restore", "start"],
        );
        labelled(
            "socket_gateway_presence_updates_total",
            "status",
            &["online", "away", "offline"],
        );
        labelled(
            "socket_gateway_connections",
            "transport",
            &["polling", "websocket"],
        );
        for call in calls {
            for outcome in ["ok", "refused", "error", "timeout"] {
                want.push(format!(
                    "socket_gateway_app_call_duration_seconds_count{{call=\"{call}\",outcome=\"{outcome}\"}}"
                ));
            }
        }
        for name in [
            "socket_gateway_rooms",
            "socket_gateway_slow_consumer_disconnects_total",
            "socket_gateway_session_cache_hits_total",
            "socket_gateway_app_calls_coalesced_total",
            "socket_gateway_broadcast_recipients_count",
            "socket_gateway_valkey_publishes_total",
            "socket_gateway_valkey_messages_received_total",
            "socket_gateway_valkey_connected",
            "socket_gateway_valkey_subscriptions",
            "socket_gateway_valkey_pubsub_lag_seconds_count",
        ] {
            want.push(name.to_owned());
        }
        let missing: Vec<&String> = want.iter().filter(|w| !have.contains(w.as_str())).collect();
        assert!(missing.is_empty(), "missing at start: {missing:?}\n{text}");
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            if line.starts_with("socket_gateway_build_info") {
                continue;
            }
            assert!(line.ends_with(" 0"), "not zero at start: {line}");
        }
    }

    #[test]
    fn no_relay_series_without_the_relay() {
        let text = render(|| {});
        assert!(!text.contains("socket_gateway_valkey_"), "{text}");
        assert!(!text.contains("socket_gateway_recovery_"), "{text}");
        let without_recovery = render(|| relay::metrics::init_series(false));
        assert!(without_recovery.contains("socket_gateway_valkey_connected 0"));
        assert!(!without_recovery.contains("socket_gateway_recovery_"));
    }

    #[test]
    fn renders_help_real_histograms_and_zero_series() {
        let text = render(|| {
            crate::metrics::broadcast("message:new", 3);
            crate::metrics::broadcast("user-chosen-name", 0);
            crate::metrics::AppCallTimer::start(crate::metrics::AppCall::Session)
                .finish(crate::metrics::AppCallOutcome::Ok);
        });
        assert!(
            text.contains("# HELP socket_gateway_connects_total "),
            "{text}"
        );
        assert!(text.contains("# TYPE socket_gateway_connects_total counter"));
        assert!(text.contains("socket_gateway_connects_total{result=\"over_capacity\"} 0"));
        assert!(text.contains("socket_gateway_build_info{version=\"9.9.9\"} 1"));
        assert!(text.contains("# TYPE socket_gateway_broadcast_recipients histogram"));
        assert!(text.contains("socket_gateway_broadcast_recipients_bucket{le=\"0\"} 1"));
        assert!(text.contains("socket_gateway_broadcast_recipients_bucket{le=\"5\"} 2"));
        assert!(text.contains("socket_gateway_broadcast_recipients_count 2"));
        assert!(text.contains("socket_gateway_events_out_total{event=\"message:new\"} 3"));
        assert!(text.contains("socket_gateway_events_out_total{event=\"other\"} 0"));
        assert!(text.contains(
            "socket_gateway_app_call_duration_seconds_count{call=\"session\",outcome=\"ok\"} 1"
        ));
        assert!(text.contains("socket_gateway_app_calls_in_flight{call=\"session\"} 0"));
        assert!(
            !text.contains("quantile="),
            "histograms must not be summaries"
        );
    }
}
