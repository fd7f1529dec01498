//! Why a socket left its namespace.

/// Why a socket left its namespace. The strings are the reference's disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedServerClose,
    ForcedClose,
    ServerShuttingDown,
    SlowConsumer,
    /// Another connection of the same client recovered this socket's session (its old
    /// connection went silent): one live socket per session.
    Replaced,
}

impl DisconnectReason {
    /// Every reason, for the metrics to start one series per reason at zero (a new variant
    /// must be added here too; the exhaustive match in this file's test is the reminder).
    pub const ALL: [DisconnectReason; 11] = [
        DisconnectReason::ClientNamespaceDisconnect,
        DisconnectReason::ServerNamespaceDisconnect,
        DisconnectReason::TransportClose,
        DisconnectReason::TransportError,
        DisconnectReason::PingTimeout,
        DisconnectReason::ParseError,
        DisconnectReason::ForcedServerClose,
        DisconnectReason::ForcedClose,
        DisconnectReason::ServerShuttingDown,
        DisconnectReason::SlowConsumer,
        DisconnectReason::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::SlowConsumer => "slow consumer",
            DisconnectReason::Replaced => "replaced",
        }
    }

    /// Whether the client may come back and expect its state (connection state recovery).
    pub fn is_recoverable(self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientNamespaceDisconnect
                | DisconnectReason::ServerNamespaceDisconnect
                | DisconnectReason::ParseError
                | DisconnectReason::Replaced
        )
    }
}

impl From<engineio::CloseReason> for DisconnectReason {
    fn from(r: engineio::CloseReason) -> Self {
        use engineio::CloseReason as C;
        match r {
            C::TransportClose => DisconnectReason::TransportClose,
            C::TransportError | C::MultiplePolling | C::PayloadTooLarge => {
                DisconnectReason::TransportError
            }
            C::PingTimeout => DisconnectReason::PingTimeout,
            C::ParseError => DisconnectReason::ParseError,
            C::ForcedServerClose => DisconnectReason::ForcedServerClose,
            C::ForcedClose => DisconnectReason::ForcedClose,
            C::SlowConsumer => DisconnectReason::SlowConsumer,
            C::ShuttingDown => DisconnectReason::ServerShuttingDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DisconnectReason;

    #[test]
    fn all_lists_every_disconnect_reason_once() {
        for r in DisconnectReason::ALL {
            // Exhaustive on purpose: a new variant stops this from compiling; list it in ALL.
            match r {
                DisconnectReason::ClientNamespaceDisconnect
                | DisconnectReason::ServerNamespaceDisconnect
                | DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ParseError
                | DisconnectReason::ForcedServerClose
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::SlowConsumer
                | DisconnectReason::Replaced => {}
            }
        }
        let names: std::collections::HashSet<_> =
            DisconnectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DisconnectReason::ALL.len());
    }
}
