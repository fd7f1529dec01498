//! The closed sets of label values. Each set is one list, from which its enum, its `ALL`
//! slice and its label strings are generated, so the series started at zero
//! ([`super::init_series`]) cannot miss a value that is recorded later.

/// Declares an enum of label values with `ALL` (every value, in order) and `as_str`.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

label_values! {
    /// The `result` label of `socket_gateway_connects_total`.
    ConnectResult {
        Ok => "ok",
        InvalidSession => "invalid_session",
        AuthUnavailable => "auth_unavailable",
        OriginRefused => "origin_refused",
        RateLimited => "rate_limited",
        OverCapacity => "over_capacity",
    }
}

label_values! {
    /// The `call` label of the app call metrics: which endpoint of the app's contract.
    AppCall {
        Session => "session",
        Memberships => "memberships",
        Authorize => "authorize",
        Event => "event",
    }
}

label_values! {
    /// The `outcome` label of `socket_gateway_app_call_duration_seconds`.
    AppCallOutcome {
        /// A 2xx answer.
        Ok => "ok",
        /// A 4xx answer other than 429: the app said no.
        Refused => "refused",
        /// No usable answer: connection failure, 5xx, 429, unreadable body.
        Error => "error",
        Timeout => "timeout",
    }
}

label_values! {
    /// The `status` label of `socket_gateway_presence_updates_total`.
    PresenceStatus {
        Online => "online",
        Away => "away",
        Offline => "offline",
    }
}

/// Client-to-server event names that may appear as a label.
pub const CLIENT_EVENTS: [&str; 8] = [
    "message:send",
    "message:delete",
    "room:join",
    "room:leave",
    "typing:start",
    "typing:stop",
    "presence:setAway",
    "presence:setActive",
];

/// Server-to-client event names that may appear as a label.
pub const SERVER_EVENTS: [&str; 5] = [
    "message:new",
    "message:deleted",
    "typing:update",
    "presence:update",
    "error",
];

/// The label of every event name outside the sets above.
pub const OTHER_EVENT: &str = "other";

/// The label value for an event name; a client can send any name, so anything outside the
/// contract's set is folded into `other` to keep the label set bounded.
pub fn event_label(name: &str) -> &'static str {
    CLIENT_EVENTS
        .iter()
        .chain(SERVER_EVENTS.iter())
        .find(|known| **known == name)
        .copied()
        .unwrap_or(OTHER_EVENT)
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
    fn label_sets_list_every_value_once() {
        let sets: [Vec<&str>; 4] = [
            ConnectResult::ALL.iter().map(|v| v.as_str()).collect(),
            AppCall::ALL.iter().map(|v| v.as_str()).collect(),
            AppCallOutcome::ALL.iter().map(|v| v.as_str()).collect(),
            PresenceStatus::ALL.iter().map(|v| v.as_str()).collect(),
        ];
        for set in sets {
            let unique: std::collections::HashSet<_> = set.iter().collect();
            assert_eq!(unique.len(), set.len(), "{set:?}");
        }
        assert_eq!(ConnectResult::ALL.len(), 6);
    }
}
