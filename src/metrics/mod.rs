//! The gateway's Prometheus metrics: their fixed names (a deploy kit and alert rules use them),
//! their HELP texts, and small recording helpers so every label value comes from a closed set.
//!
//! Recording goes through the `metrics` facade: without an installed recorder
//! (`metrics.enabled = false`, unit tests, the conformance example) every call is a no-op.
//! No label ever carries a user, room, session or socket id, nor anything a client chose freely:
//! event names are mapped onto the contract's known set, anything else is `other`.

pub mod exporter;
pub mod labels;

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub use labels::{event_label, AppCall, AppCallOutcome, ConnectResult, PresenceStatus};

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
    pub const ROOMS: &str = "socket_gateway_rooms";
    pub const SLOW_CONSUMER_DISCONNECTS: &str = "socket_gateway_slow_consumer_disconnects_total";
    pub const PRESENCE_UPDATES: &str = "socket_gateway_presence_updates_total";
    pub const PRESENCE_CHANGES_MERGED: &str = "socket_gateway_presence_changes_merged_total";
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
/// installed; the relay's (valkey_*, recovery) are its own (`relay::metrics`), described with
/// the rest.
pub fn describe_all() {
    use names::*;
    relay::metrics::describe();
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
    describe_counter!(
        PRESENCE_CHANGES_MERGED,
        Unit::Count,
        "Socket changes merged into one still waiting for the presence task (it was behind)."
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

pub fn connect(result: ConnectResult) {
    counter!(names::CONNECTS, "result" => result.as_str()).increment(1);
}

pub fn disconnect(reason: socketio::DisconnectReason) {
    counter!(names::DISCONNECTS, "reason" => reason.as_str()).increment(1);
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

pub fn session_cache_hit() {
    counter!(names::SESSION_CACHE_HITS).increment(1);
}

pub fn app_call_coalesced() {
    counter!(names::APP_CALLS_COALESCED).increment(1);
}

/// Sets every series whose labels are known in advance, at zero, as Prometheus'
/// instrumentation guide advises: a dashboard panel shows 0 rather than "no data", and
/// `rate()`/`increase()` see the first occurrence (a series that appears with its first
/// increment hides that increment from them). The relay's series start with the relay
/// (`relay::metrics::init_series`), so an instance without Valkey exposes no valkey_* series.
pub fn init_series(version: &'static str) {
    gauge!(names::BUILD_INFO, "version" => version).set(1.0);
    for r in ConnectResult::ALL {
        counter!(names::CONNECTS, "result" => r.as_str()).increment(0);
    }
    for r in socketio::DisconnectReason::ALL {
        counter!(names::DISCONNECTS, "reason" => r.as_str()).increment(0);
    }
    for event in labels::CLIENT_EVENTS
        .into_iter()
        .chain([labels::OTHER_EVENT])
    {
        counter!(names::EVENTS_IN, "event" => event).increment(0);
    }
    for event in labels::SERVER_EVENTS
        .into_iter()
        .chain([labels::OTHER_EVENT])
    {
        counter!(names::EVENTS_OUT, "event" => event).increment(0);
    }
    let _ = histogram!(names::BROADCAST_RECIPIENTS);
    for call in AppCall::ALL {
        gauge!(names::APP_CALLS_IN_FLIGHT, "call" => call.as_str()).increment(0.0);
        for outcome in AppCallOutcome::ALL {
            let _ = histogram!(names::APP_CALL_DURATION, "call" => call.as_str(), "outcome" => outcome.as_str());
        }
    }
    for t in ["polling", "websocket"] {
        gauge!(names::CONNECTIONS, "transport" => t).set(0.0);
    }
    gauge!(names::ROOMS).set(0.0);
    gauge!(names::HANDSHAKES_WAITING).set(0.0);
    for call in [AppCall::Session, AppCall::Memberships] {
        gauge!(names::APP_CALLS_WAITING, "call" => call.as_str()).set(0.0);
    }
    counter!(names::SLOW_CONSUMER_DISCONNECTS).increment(0);
    counter!(names::SESSION_CACHE_HITS).increment(0);
    counter!(names::APP_CALLS_COALESCED).increment(0);
    for status in PresenceStatus::ALL {
        counter!(names::PRESENCE_UPDATES, "status" => status.as_str()).increment(0);
    }
}

/// The connect path's current limit of app calls in flight.
pub fn app_auth_limit(limit: usize) {
    gauge!(names::APP_AUTH_LIMIT).set(limit as f64);
}

/// An app call waiting for a slot, counted while alive.
pub struct AppCallWaiting(AppCall);

impl AppCallWaiting {
    pub fn start(call: AppCall) -> Self {
        gauge!(names::APP_CALLS_WAITING, "call" => call.as_str()).increment(1.0);
        AppCallWaiting(call)
    }
}

impl Drop for AppCallWaiting {
    fn drop(&mut self) {
        gauge!(names::APP_CALLS_WAITING, "call" => self.0.as_str()).decrement(1.0);
    }
}

/// The engine's figures: refused handshakes, the handshake queue, slow consumers.
pub struct EngineFigures;

impl engineio::EngineObserver for EngineFigures {
    fn refused(&self, why: engineio::Refused) {
        let result = match why {
            engineio::Refused::Origin => ConnectResult::OriginRefused,
            engineio::Refused::OverCapacity => ConnectResult::OverCapacity,
            engineio::Refused::RateLimited => ConnectResult::RateLimited,
            // A draining instance's refusals are the drain, not a connect outcome.
            engineio::Refused::Draining => return,
        };
        connect(result);
    }

    fn queued(&self, waiting: bool) {
        let gauge = gauge!(names::HANDSHAKES_WAITING);
        if waiting {
            gauge.increment(1.0);
        } else {
            gauge.decrement(1.0);
        }
    }

    fn slow_consumer(&self) {
        counter!(names::SLOW_CONSUMER_DISCONNECTS).increment(1);
    }
}

/// Measures one app call: in flight while alive, its duration recorded by [`AppCallTimer::finish`].
/// Dropped unfinished (the caller gave up), it only leaves the in-flight gauge.
pub struct AppCallTimer {
    call: AppCall,
    start: std::time::Instant,
}

impl AppCallTimer {
    pub fn start(call: AppCall) -> Self {
        gauge!(names::APP_CALLS_IN_FLIGHT, "call" => call.as_str()).increment(1.0);
        AppCallTimer {
            call,
            start: std::time::Instant::now(),
        }
    }

    pub fn finish(self, outcome: AppCallOutcome) {
        histogram!(names::APP_CALL_DURATION, "call" => self.call.as_str(), "outcome" => outcome.as_str())
            .record(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for AppCallTimer {
    fn drop(&mut self) {
        gauge!(names::APP_CALLS_IN_FLIGHT, "call" => self.call.as_str()).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            SLOW_CONSUMER_DISCONNECTS,
            PRESENCE_UPDATES,
            PRESENCE_CHANGES_MERGED,
        ];
        for c in counters {
            assert!(
                c.starts_with("socket_gateway_") && c.ends_with("_total"),
                "{c}"
            );
        }
        assert!(APP_CALL_DURATION.ends_with("_seconds"));
    }
}
