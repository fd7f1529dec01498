//! What an app call carries for a socket: its handshake's `Cookie` and its client's address.
//! Read from the handshake on every call, so the cookie is kept in one place only.

use engineio::Session;

use super::client_ip::TrustedProxies;
use crate::app::Credentials;

/// Reads the credentials of a handshake (the address as [`super::client_ip`] resolves it).
#[derive(Debug, Default)]
pub struct CredentialSource {
    /// Whose `X-Forwarded-For` is believed (`security.trusted_proxies`).
    trusted_proxies: TrustedProxies,
}

impl CredentialSource {
    pub fn new(trusted_proxies: TrustedProxies) -> Self {
        CredentialSource { trusted_proxies }
    }

    /// `None` without a non-blank cookie: such a socket has no session to ask about.
    pub fn of(&self, session: &Session) -> Option<Credentials> {
        let hs = &session.handshake;
        let cookie = hs
            .header("cookie")
            .filter(|c| !c.trim().is_empty())?
            .to_owned();
        let client = self
            .trusted_proxies
            .client_ip(hs.remote_addr.map(|a| a.ip()), hs.header("x-forwarded-for"));
        Some(Credentials {
            cookie,
            forwarded_for: client.map(|ip| ip.to_string()),
        })
    }
}
