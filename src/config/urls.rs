//! The keys that hold an address, an origin or a URL: what each accepts, and how an origin is
//! made comparable with a browser's `Origin` header.

/// `https://x.com/app?q` → `https://x.com`. Input without `://` is returned
/// unchanged so validation can reject it with the original text.
pub(super) fn origin_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            format!("{scheme}://{}", &rest[..end])
        }
        None => url.to_owned(),
    }
}

/// Lower-case and drop the scheme's default port, as browsers do in `Origin`.
pub(super) fn normalize_origin(origin: &str) -> String {
    let lower = origin.to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if lower.starts_with(scheme) {
            if let Some(stripped) = lower.strip_suffix(port) {
                return stripped.to_owned();
            }
        }
    }
    lower
}

fn split_scheme(url: &str) -> Option<(String, &str)> {
    url.split_once("://")
        .map(|(scheme, rest)| (scheme.to_ascii_lowercase(), rest))
}

/// `host[:port]`, bracketed IPv6 allowed, port optional.
fn is_authority(authority: &str, port_required: bool) -> bool {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) if !v6.is_empty() => match tail {
                "" => (v6, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (v6, Some(p)),
                    None => return false,
                },
            },
            _ => return false,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = !host.is_empty()
        && !host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c))
        && (authority.starts_with('[') || !host.contains(':'));
    let port_ok = match port {
        Some(p) => p.parse::<u16>().is_ok(),
        None => !port_required,
    };
    host_ok && port_ok
}

pub(super) fn is_host_port(listen: &str) -> bool {
    is_authority(listen, true)
}

pub(super) fn check_origin(origin: &str) -> Result<(), &'static str> {
    const EXPECTED: &str =
        "an origin scheme://host[:port] with http or https and no path, such as \"https://chat.example.com\"";
    match split_scheme(origin) {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
            if is_authority(rest, false) {
                Ok(())
            } else {
                Err(EXPECTED)
            }
        }
        _ => Err(EXPECTED),
    }
}

pub(super) fn check_app_url(url: &str) -> Result<(), &'static str> {
    const EXPECTED: &str =
        "an http:// or https:// URL without query or fragment, such as \"http://127.0.0.1:3000\"";
    match split_scheme(url) {
        Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            if is_authority(authority, false) && !rest.contains(['?', '#']) {
                Ok(())
            } else {
                Err(EXPECTED)
            }
        }
        _ => Err(EXPECTED),
    }
}

pub(super) fn check_redis_url(url: &str) -> Result<(), &'static str> {
    const EXPECTED: &str =
        "a URL starting with redis://, rediss:// or unix:, such as \"redis://127.0.0.1:6379\"";
    let lower = url.to_ascii_lowercase();
    let rest = ["redis://", "rediss://", "unix:"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme));
    match rest {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => Err(EXPECTED),
    }
}

/// Hides credentials (`redis://:secret@host` → `redis://***@host`) so error
/// messages can be logged.
pub(super) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_helpers() {
        assert_eq!(origin_of("https://x.com/a/b?c#d"), "https://x.com");
        assert_eq!(origin_of("http://x.com:8080"), "http://x.com:8080");
        assert_eq!(normalize_origin("HTTP://X.com:80"), "http://x.com");
        assert_eq!(normalize_origin("https://x.com:8443"), "https://x.com:8443");
        assert!(check_origin("https://[::1]:3000").is_ok());
        assert!(check_origin("https://x.com/").is_err());
        assert!(check_origin("https://user@x.com").is_err());
        assert!(check_origin("https://x.com:99999").is_err());
        assert!(check_origin("ws://x.com").is_err());
        assert!(check_app_url("http://app:3000/base/").is_ok());
        assert!(check_app_url("http://app:3000?x").is_err());
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
