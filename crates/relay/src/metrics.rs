//! The relay's metrics: its names, descriptions and label values, and the functions that
//! record them through the `metrics` facade. The gateway's exporter describes them with
//! [`describe`] and starts their series at zero with [`init_series`].

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub const VALKEY_PUBLISHES: &str = "socket_gateway_valkey_publishes_total";
pub const VALKEY_MESSAGES_RECEIVED: &str = "socket_gateway_valkey_messages_received_total";
pub const VALKEY_ERRORS: &str = "socket_gateway_valkey_errors_total";
pub const VALKEY_CONNECTED: &str = "socket_gateway_valkey_connected";
pub const VALKEY_SUBSCRIPTIONS: &str = "socket_gateway_valkey_subscriptions";
pub const VALKEY_RESUBSCRIBES: &str = "socket_gateway_valkey_resubscribes_total";
pub const VALKEY_PUBSUB_LAG: &str = "socket_gateway_valkey_pubsub_lag_seconds";
pub const RECOVERY_ATTEMPTS: &str = "socket_gateway_recovery_attempts_total";
pub const RECOVERY_MARKERS: &str = "socket_gateway_recovery_markers_total";

/// The `op` label of `valkey_errors_total`: what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValkeyOp {
    /// The Pub/Sub connection could not be (re)established.
    Connect,
    /// A pipelined PUBLISH failed.
    Publish,
    /// The publisher's queue was full: the message was dropped.
    PublishQueueFull,
    /// A broadcast made while the relay was down reached local sockets only.
    PublishDegraded,
    /// Appending a broadcast to the recovery log failed.
    Record,
    /// Writing a kept session (recovery) failed.
    Session,
    /// A message from Valkey could not be decoded and was ignored.
    Decode,
}

impl ValkeyOp {
    pub const ALL: [ValkeyOp; 7] = [
        ValkeyOp::Connect,
        ValkeyOp::Publish,
        ValkeyOp::PublishQueueFull,
        ValkeyOp::PublishDegraded,
        ValkeyOp::Record,
        ValkeyOp::Session,
        ValkeyOp::Decode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ValkeyOp::Connect => "connect",
            ValkeyOp::Publish => "publish",
            ValkeyOp::PublishQueueFull => "publish_queue_full",
            ValkeyOp::PublishDegraded => "publish_degraded",
            ValkeyOp::Record => "record",
            ValkeyOp::Session => "session",
            ValkeyOp::Decode => "decode",
        }
    }
}

/// The `outcome` label of `recovery_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    Restored,
    /// No kept session of this user with the client's pid in that namespace (expired, used,
    /// or never theirs: an attempt with another user's pid lands here too).
    UnknownSession,
    /// The client's offset is no longer in the log: what it missed is unknown.
    OffsetGone,
    /// Valkey did not answer in time.
    Unavailable,
    /// The session was found but its missed packets could not be read.
    LogUnavailable,
    /// The missed packets were read, but this instance did not deliver as far as they went
    /// in time (its subscriptions lag behind the log).
    DeliveriesBehind,
}

impl RecoveryOutcome {
    pub const ALL: [RecoveryOutcome; 6] = [
        RecoveryOutcome::Restored,
        RecoveryOutcome::UnknownSession,
        RecoveryOutcome::OffsetGone,
        RecoveryOutcome::Unavailable,
        RecoveryOutcome::LogUnavailable,
        RecoveryOutcome::DeliveriesBehind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryOutcome::Restored => "restored",
            RecoveryOutcome::UnknownSession => "unknown_session",
            RecoveryOutcome::OffsetGone => "offset_gone",
            RecoveryOutcome::Unavailable => "unavailable",
            RecoveryOutcome::LogUnavailable => "log_unavailable",
            RecoveryOutcome::DeliveriesBehind => "deliveries_behind",
        }
    }
}

/// The `reason` label of `recovery_markers_total`: why an instance asked for a partition's
/// marker (see the relay's `recovery` module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkReason {
    /// The partition delivered nothing here for a while.
    Quiet,
    /// A room in it is followed here for the first time.
    NewRoom,
    /// A restore waits for this instance to deliver as far as its replay went.
    Restore,
    /// The subscriber connected and had delivered nothing of it yet.
    Start,
}

impl MarkReason {
    pub const ALL: [MarkReason; 4] = [
        MarkReason::Quiet,
        MarkReason::NewRoom,
        MarkReason::Restore,
        MarkReason::Start,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MarkReason::Quiet => "quiet",
            MarkReason::NewRoom => "new_room",
            MarkReason::Restore => "restore",
            MarkReason::Start => "start",
        }
    }
}

/// Describes the relay's metrics to the installed recorder.
pub fn describe() {
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
    describe_counter!(
        VALKEY_RESUBSCRIBES,
        Unit::Count,
        "Sharded channels subscribed again after Valkey moved their slot (migration, failover)."
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
    describe_counter!(
        RECOVERY_MARKERS,
        Unit::Count,
        "Markers of the recovery log's partitions asked for, by reason."
    );
}

/// Starts the relay's series at zero, so dashboards show 0 and `rate()` sees the first
/// increment; the recovery attempts only when connection state recovery is on.
pub fn init_series(recovery: bool) {
    counter!(VALKEY_PUBLISHES).increment(0);
    counter!(VALKEY_MESSAGES_RECEIVED).increment(0);
    for op in ValkeyOp::ALL {
        counter!(VALKEY_ERRORS, "op" => op.as_str()).increment(0);
    }
    gauge!(VALKEY_CONNECTED).increment(0.0);
    gauge!(VALKEY_SUBSCRIPTIONS).increment(0.0);
    counter!(VALKEY_RESUBSCRIBES).increment(0);
    let _ = histogram!(VALKEY_PUBSUB_LAG);
    if recovery {
        for outcome in RecoveryOutcome::ALL {
            counter!(RECOVERY_ATTEMPTS, "outcome" => outcome.as_str()).increment(0);
        }
        for reason in MarkReason::ALL {
            counter!(RECOVERY_MARKERS, "reason" => reason.as_str()).increment(0);
        }
    }
}

pub fn valkey_errors(op: ValkeyOp, count: u64) {
    counter!(VALKEY_ERRORS, "op" => op.as_str()).increment(count);
}

pub fn valkey_connected(up: bool) {
    gauge!(VALKEY_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

pub fn valkey_subscriptions(channels: usize) {
    gauge!(VALKEY_SUBSCRIPTIONS).set(channels as f64);
}

pub fn valkey_resubscribed(channels: u64) {
    counter!(VALKEY_RESUBSCRIBES).increment(channels);
}

pub fn valkey_published(messages: u64) {
    counter!(VALKEY_PUBLISHES).increment(messages);
}

pub fn valkey_received(messages: u64) {
    counter!(VALKEY_MESSAGES_RECEIVED).increment(messages);
}

pub fn pubsub_lag(seconds: f64) {
    histogram!(VALKEY_PUBSUB_LAG).record(seconds);
}

pub fn recovery_attempt(outcome: RecoveryOutcome) {
    counter!(RECOVERY_ATTEMPTS, "outcome" => outcome.as_str()).increment(1);
}

pub fn recovery_marker(reason: MarkReason) {
    counter!(RECOVERY_MARKERS, "reason" => reason.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        for c in [
            VALKEY_PUBLISHES,
            VALKEY_MESSAGES_RECEIVED,
            VALKEY_ERRORS,
            VALKEY_RESUBSCRIBES,
            RECOVERY_ATTEMPTS,
            RECOVERY_MARKERS,
        ] {
            assert!(
                c.starts_with("socket_gateway_") && c.ends_with("_total"),
                "{c}"
            );
        }
        assert!(VALKEY_PUBSUB_LAG.ends_with("_seconds"));
        let ops: std::collections::HashSet<_> = ValkeyOp::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(ops.len(), ValkeyOp::ALL.len());
        let outcomes: std::collections::HashSet<_> =
            RecoveryOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes.len(), RecoveryOutcome::ALL.len());
        let reasons: std::collections::HashSet<_> =
            MarkReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(reasons.len(), MarkReason::ALL.len());
    }
}
