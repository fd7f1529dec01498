//! The client's address, as the gateway forwards it to the app in `X-Forwarded-For` so that
//! better-auth's rate limits apply per browser (better-auth reads the first entry).
//!
//! Anyone can send an `X-Forwarded-For` header, so it is believed only as far as proxies we
//! trust wrote it (`security.trusted_proxies`, loopback by default: nginx on the same host).
//! The client is the rightmost address not of a trusted proxy: the peer itself when it is not
//! trusted, else the header read from the right past the trusted hops. The app is sent that
//! one address, never the header as received.

use std::net::IpAddr;

use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `security.trusted_proxies`: networks (`10.0.0.0/8`) or single addresses.
    pub fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|s| parse_net(s).ok_or_else(|| format!("not an IP address or network: {s:?}")))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address given the connection's `peer` and its `X-Forwarded-For`.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer.map(canonical)?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        for entry in forwarded_for.unwrap_or_default().rsplit(',') {
            // A hop we cannot read ends what can be believed: the last good one stands.
            let Some(ip) = parse_hop(entry) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// A network, or a single address as a network of one.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]` or with a port (as some proxies
/// write it).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = e.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    e.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|v6| v6.parse().ok())
        .map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`, as a dual-stack listener reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("valid test networks")
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("a test address"))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let t = trusted(&["127.0.0.0/8", "::1"]);
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), Some("10.9.9.9")),
            ip("203.0.113.9")
        );
        assert_eq!(t.client_ip(ip("203.0.113.9"), None), ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop() {
        let t = trusted(&["127.0.0.0/8", "10.0.0.0/8"]);
        // nginx appends the address it saw; what the client wrote before it is not believed.
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), Some("6.6.6.6, 198.51.100.7")),
            ip("198.51.100.7")
        );
        // Through two trusted hops.
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), Some("198.51.100.7, 10.1.2.3")),
            ip("198.51.100.7")
        );
        // A trusted peer that sent no header is the client itself.
        assert_eq!(t.client_ip(ip("127.0.0.1"), None), ip("127.0.0.1"));
        // Garbage stops the walk at the last address read.
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), Some("nonsense, 10.1.2.3")),
            ip("10.1.2.3")
        );
        assert_eq!(
            t.client_ip(ip("::ffff:127.0.0.1"), Some("[2001:db8::1]:443")),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn nothing_trusted_believes_no_header() {
        let t = trusted(&[]);
        assert_eq!(
            t.client_ip(ip("127.0.0.1"), Some("1.2.3.4")),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn bad_networks_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["localhost".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.1".into(), "fd00::/8".into()]).is_ok());
    }
}
