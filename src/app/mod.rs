//! The app client: the HTTP calls of the contract with the Next.js app, each carrying the
//! browser's own `Cookie`, plus the coalescing and short caching that keep a reconnect storm
//! from becoming an app outage. It knows nothing of sockets.

pub mod client;
pub mod limit;
pub mod single_flight;
pub mod strict_json;
pub mod types;

pub use client::{AppClient, AppClientError, AppError};
pub use types::{Authorization, EmitInstruction, EventReply, Memberships, SessionInfo, UserInfo};

/// The caller's identity as forwarded to the app: never logged, never in metrics.
#[derive(Clone)]
pub struct Credentials {
    pub cookie: String,
    pub forwarded_for: Option<String>,
}

impl Credentials {
    /// A stable digest of the cookie, used to key coalesced calls and caches so the raw token
    /// is never a map key, a log field or a label.
    pub fn key(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.cookie.as_bytes()).into()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}
