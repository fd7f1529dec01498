//! The gateway's Prometheus metrics: their fixed names (a deploy kit and alert rules use them),
//! their HELP texts, and small recording helpers so every label value comes from a closed set.
//!
//! Recording goes through the `metrics` facade: without an installed recorder
//! (`metrics.enabled = false`, unit tests, the conformance example) every call is a no-op.
//! No label ever carries a user, room, session or socket id, nor anything a client chose freely:
//! event names are mapped onto the contract's known set, anything else is `other`.

pub mod exporter;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, histogram, Unit};

/// Metric names, `socket_gateway_` prefixed, in base units, counters ending in `_total`.
pub mod names {
    pub const CONNECTIONS: &str = "socket_gateway_connections";
    pub const CONNECTS: &str = "socket_gateway_connects_total";
    pub const DISCONNECTS: &str = "socket_gateway_disconnects_total";
    pub const EVENTS_IN: &str = "socket_gateway_events_in_total";
    pub const EVENTS_OUT: &str = "socket_gateway_events_out_total";
    pub const BROADCAST_RECIPIENTS: &str = "socket_gateway_broadcast_recipients";
    pub const APP_CALL_DURATION: &str = "socket_gateway_app_call_duration_seconds";
    pub const APP_CALLS_IN_FLIGHT: &str = "socket_gateway_app_calls_in_flight";
    pub const APP_CALLS_WAITING: &str = "socket_gateway_app_calls_waiting";
    pub const APP_AUTH_LIMIT: &str = "socket_gateway_app_auth_limit";
    pub const SESSION_CACHE_HITS: &str = "socket_gateway_session_cache_hits_total";
    pub const APP_CALLS_COALESCED: &str = "socket_gateway_app_calls_coalesced_total";
    pub const VALKEY_PUBLISHES: &str = "socket_gateway_valkey_publishes_total";
    pub const VALKEY_MESSAGES_RECEIVED: &str = "socket_gateway_valkey_messages_received_total";
    pub const VALKEY_ERRORS: &str = "socket_gateway_valkey_errors_total";
    pub const VALKEY_CONNECTED: &str = "socket_gateway_valkey_connected";
    pub const VALKEY_SUBSCRIPTIONS: &str = "socket_gateway_valkey_subscriptions";
    pub const VALKEY_PUBSUB_LAG: &str = "socket_gateway_valkey_pubsub_lag_seconds";
    pub const RECOVERY_ATTEMPTS: &str = "socket_gateway_recovery_attempts_total";
    pub const ROOMS: &str = "socket_gateway_rooms";
    pub const SLOW_CONSUMER_DISCONNECTS: &str = "socket_gateway_slow_consumer_disconnects_total";
    pub const PRESENCE_UPDATES: &str = "socket_gateway_presence_updates_total";
    pub const BUILD_INFO: &str = "socket_gateway_build_info";
    pub const HANDSHAKES_WAITING: &str = "socket_gateway_handshakes_waiting";
    pub const TOKIO_TASKS: &str = "socket_gateway_tokio_tasks";
}

/// Bucket bounds of the histograms (they are rendered as real Prometheus histograms, so they
/// can be aggregated across instances).
pub mod buckets {
    /// App calls: a local Next.js answers in milliseconds; the default timeout is 3 s.
    pub const APP_CALL_SECONDS: &[f64] = &[
        0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    /// Recipients of one local broadcast: a typing update to a DM up to a big workspace.
    pub const BROADCAST_RECIPIENTS: &[f64] = &[
        0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
    ];
    /// Time from a publish on one instance to its delivery on another.
    pub const PUBSUB_LAG_SECONDS: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ];
}

/// Registers the HELP text (and unit) of every metric. Called once, after the recorder is
/// installed; the valkey_* and recovery metrics are recorded by the relay, described here so
/// the whole set is documented in one place.
pub fn describe_all() {
    use names::*;
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Open Engine.IO sessions by transport (polling|websocket); an upgrade moves a session from polling to websocket."
    );
    describe_counter!(
        CONNECTS,
        Unit::Count,
        "Connection attempts by result: ok (Socket.IO connected), invalid_session, auth_unavailable, origin_refused, rate_limited, over_capacity."
    );
    describe_counter!(
        DISCONNECTS,
        Unit::Count,
        "Socket.IO disconnections by reason (the Socket.IO disconnect reason strings)."
    );
    describe_counter!(
        EVENTS_IN,
        Unit::Count,
        "Client events received, by event name (the contract's events; anything else is \"other\"), including rate-limited ones."
    );
    describe_counter!(
        EVENTS_OUT,
        Unit::Count,
        "Events queued to client sockets (one per recipient), by event name (the contract's events; anything else is \"other\")."
    );
    describe_histogram!(
        BROADCAST_RECIPIENTS,
        Unit::Count,
        "Local sockets reached by one broadcast."
    );
    describe_histogram!(
        APP_CALL_DURATION,
        Unit::Seconds,
        "Duration of calls to the app by call (session|memberships|authorize|event) and outcome (ok|refused|error|timeout)."
    );
    describe_gauge!(
        APP_CALLS_IN_FLIGHT,
        Unit::Count,
        "Calls to the app currently waiting for an answer, by call."
    );
    describe_counter!(
        SESSION_CACHE_HITS,
        Unit::Count,
        "Session lookups answered from the short positive session cache instead of the app."
    );
    describe_counter!(
        APP_CALLS_COALESCED,
        Unit::Count,
        "Session and memberships lookups that joined an identical call already in flight instead of calling the app."
    );
    describe_counter!(
        VALKEY_PUBLISHES,
        Unit::Count,
        "Messages published to Valkey by the relay."
    );
    describe_counter!(
        VALKEY_MESSAGES_RECEIVED,
        Unit::Count,
        "Messages received from Valkey by the relay."
    );
    describe_counter!(VALKEY_ERRORS, Unit::Count, "Valkey errors by operation.");
    describe_gauge!(
        VALKEY_CONNECTED,
        "1 while the relay's Valkey connection is up, else 0."
    );
    describe_gauge!(
        VALKEY_SUBSCRIPTIONS,
        Unit::Count,
        "Valkey channels and patterns the relay is subscribed to."
    );
    describe_histogram!(
        VALKEY_PUBSUB_LAG,
        Unit::Seconds,
        "Delay between a publish on one instance and its receipt on this one."
    );
    describe_counter!(
        RECOVERY_ATTEMPTS,
        Unit::Count,
        "Connection state recovery attempts by outcome."
    );
    describe_gauge!(
        ROOMS,
        Unit::Count,
        "Rooms with at least one local socket (not counting each socket's own id room)."
    );
    describe_counter!(
        SLOW_CONSUMER_DISCONNECTS,
        Unit::Count,
        "Sessions closed because their outbound queue overflowed (the client stopped reading)."
    );
    describe_counter!(
        PRESENCE_UPDATES,
        Unit::Count,
        "Users' status changes this instance announced, by new status (online|away|offline)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label is the running build's version."
    );
    describe_gauge!(
        APP_CALLS_WAITING,
        "Session and memberships calls waiting for a slot (app.max_auth_calls_in_flight), by call."
    );
    describe_gauge!(
        APP_AUTH_LIMIT,
        "Session and memberships calls allowed in flight at once now (adapts to the app, up to app.max_auth_calls_in_flight)."
    );
    describe_gauge!(
        HANDSHAKES_WAITING,
        "Handshakes waiting in the queue of the handshake rate limit (limits.connect_queue_ms)."
    );
    describe_gauge!(
        TOKIO_TASKS,
        "Tasks alive in the runtime (a leak shows as growth at a steady load)."
    );
}

/// The result label of `socket_gateway_connects_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectResult {
    Ok,
    InvalidSession,
    AuthUnavailable,
    OriginRefused,
    RateLimited,
    OverCapacity,
}

impl ConnectResult {
    pub const ALL: [ConnectResult; 6] = [
        ConnectResult::Ok,
        ConnectResult::InvalidSession,
        ConnectResult::AuthUnavailable,
        ConnectResult::OriginRefused,
        ConnectResult::RateLimited,
        ConnectResult::OverCapacity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectResult::Ok => "ok",
            ConnectResult::InvalidSession => "invalid_session",
            ConnectResult::AuthUnavailable => "auth_unavailable",
            ConnectResult::OriginRefused => "origin_refused",
            ConnectResult::RateLimited => "rate_limited",
            ConnectResult::OverCapacity => "over_capacity",
        }
    }
}

/// Event names that may appear as a label; a client can send any name, so anything else is
/// folded into `other` to keep the label set bounded.
const KNOWN_EVENTS: [&str; 13] = [
    // client to server
    "message:send",
    "message:delete",
    "room:join",
    "room:leave",
    "typing:start",
    "typing:stop",
    "presence:setAway",
    "presence:setActive",
    // server to client
    "message:new",
    "message:deleted",
    "typing:update",
    "presence:update",
    "error",
];

/// The label value for an event name.
pub fn event_label(name: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("other")
}

pub fn connect(result: ConnectResult) {
    counter!(names::CONNECTS, "result" => result.as_str()).increment(1);
}

/// `reason` is a Socket.IO disconnect reason (a closed set of static strings).
pub fn disconnect(reason: &'static str) {
    counter!(names::DISCONNECTS, "reason" => reason).increment(1);
}

pub fn event_in(name: &str) {
    counter!(names::EVENTS_IN, "event" => event_label(name)).increment(1);
}

/// One event queued to `recipients` sockets.
pub fn events_out(name: &str, recipients: usize) {
    counter!(names::EVENTS_OUT, "event" => event_label(name)).increment(recipients as u64);
}

/// A broadcast to the local sockets of a room: its recipients, and the events they were sent.
pub fn broadcast(name: &str, recipients: usize) {
    histogram!(names::BROADCAST_RECIPIENTS).record(recipients as f64);
    events_out(name, recipients);
}

pub fn slow_consumer() {
    counter!(names::SLOW_CONSUMER_DISCONNECTS).increment(1);
}

pub fn session_cache_hit() {
    counter!(names::SESSION_CACHE_HITS).increment(1);
}

pub fn app_call_coalesced() {
    counter!(names::APP_CALLS_COALESCED).increment(1);
}

/// Sets series that must exist from the start at zero, so rates and alerts see them before the
/// first occurrence (a series that appears late hides its first increments from `rate()`).
pub fn init_series(version: &'static str) {
    use ::metrics::gauge;
    gauge!(names::BUILD_INFO, "version" => version).set(1.0);
    for r in ConnectResult::ALL {
        counter!(names::CONNECTS, "result" => r.as_str()).absolute(0);
    }
    for t in ["polling", "websocket"] {
        gauge!(names::CONNECTIONS, "transport" => t).set(0.0);
    }
    gauge!(names::ROOMS).set(0.0);
    gauge!(names::HANDSHAKES_WAITING).set(0.0);
    for call in ["session", "memberships"] {
        gauge!(names::APP_CALLS_WAITING, "call" => call).set(0.0);
    }
    counter!(names::SLOW_CONSUMER_DISCONNECTS).absolute(0);
    counter!(names::SESSION_CACHE_HITS).absolute(0);
    counter!(names::APP_CALLS_COALESCED).absolute(0);
}

/// The connect path's current limit of app calls in flight.
pub fn app_auth_limit(limit: usize) {
    ::metrics::gauge!(names::APP_AUTH_LIMIT).set(limit as f64);
}

/// An app call waiting for a slot, counted while alive.
pub struct AppCallWaiting(&'static str);

impl AppCallWaiting {
    pub fn start(call: &'static str) -> Self {
        ::metrics::gauge!(names::APP_CALLS_WAITING, "call" => call).increment(1.0);
        AppCallWaiting(call)
    }
}

impl Drop for AppCallWaiting {
    fn drop(&mut self) {
        ::metrics::gauge!(names::APP_CALLS_WAITING, "call" => self.0).decrement(1.0);
    }
}

/// A handshake waiting for the handshake rate, counted while alive.
pub struct HandshakeWaiting(());

impl HandshakeWaiting {
    pub fn start() -> Self {
        ::metrics::gauge!(names::HANDSHAKES_WAITING).increment(1.0);
        HandshakeWaiting(())
    }
}

impl Drop for HandshakeWaiting {
    fn drop(&mut self) {
        ::metrics::gauge!(names::HANDSHAKES_WAITING).decrement(1.0);
    }
}

/// Measures one app call: in flight while alive, its duration recorded by [`AppCallTimer::finish`].
/// Dropped unfinished (the caller gave up), it only leaves the in-flight gauge.
pub struct AppCallTimer {
    call: &'static str,
    start: std::time::Instant,
}

impl AppCallTimer {
    pub fn start(call: &'static str) -> Self {
        ::metrics::gauge!(names::APP_CALLS_IN_FLIGHT, "call" => call).increment(1.0);
        AppCallTimer {
            call,
            start: std::time::Instant::now(),
        }
    }

    /// `outcome` is one of `ok`, `refused`, `error`, `timeout`.
    pub fn finish(self, outcome: &'static str) {
        histogram!(names::APP_CALL_DURATION, "call" => self.call, "outcome" => outcome)
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for AppCallTimer {
    fn drop(&mut self) {
        ::metrics::gauge!(names::APP_CALLS_IN_FLIGHT, "call" => self.call).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_labels_are_bounded() {
        assert_eq!(event_label("message:send"), "message:send");
        assert_eq!(event_label("typing:update"), "typing:update");
        assert_eq!(event_label("error"), "error");
        assert_eq!(event_label("user:42"), "other");
        assert_eq!(event_label(""), "other");
        assert_eq!(event_label("MESSAGE:SEND"), "other");
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        use names::*;
        let counters = [
            CONNECTS,
            DISCONNECTS,
            EVENTS_IN,
            EVENTS_OUT,
            SESSION_CACHE_HITS,
            APP_CALLS_COALESCED,
            VALKEY_PUBLISHES,
            VALKEY_MESSAGES_RECEIVED,
            VALKEY_ERRORS,
            RECOVERY_ATTEMPTS,
            SLOW_CONSUMER_DISCONNECTS,
            PRESENCE_UPDATES,
        ];
        for c in counters {
            assert!(
                c.starts_with("socket_gateway_") && c.ends_with("_total"),
                "{c}"
            );
        }
        for s in [APP_CALL_DURATION, VALKEY_PUBSUB_LAG] {
            assert!(s.ends_with("_seconds"), "{s}");
        }
    }
}
