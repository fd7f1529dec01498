//! The keys that hold an address, an origin or a URL: what each accepts, and how an origin is
//! made comparable with a browser's `Origin` header.
//!
//! Parsing is the `url` crate's (the WHATWG URL standard, as browsers and reqwest parse). A few
//! checks look at the text as written, for what a parsed URL no longer shows: `https://x.com/`
//! and `https://x.com` parse alike, so do `x.com:` and `x.com`, `@x.com` and `x.com`, and the
//! parser silently drops tabs, newlines and surrounding spaces.

use url::{Host, Url};

const ORIGIN_EXPECTED: &str =
    "an origin scheme://host[:port] with http or https and no path, such as \"https://chat.example.com\"";
const APP_URL_EXPECTED: &str =
    "an http:// or https:// URL without query or fragment, such as \"http://127.0.0.1:3000\"";
const REDIS_URL_EXPECTED: &str =
    "a URL starting with redis://, rediss:// or unix:, such as \"redis://127.0.0.1:6379\"";

/// What follows `scheme://` up to the path, query or fragment: the host and port as written
/// (with the user info, if any).
fn authority_of(after_scheme: &str) -> &str {
    let end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    &after_scheme[..end]
}

/// An `http://` or `https://` URL whose authority is a host and an optional port, nothing else:
/// no user info (not even an empty one), no empty port, no white space or backslash before the
/// path.
fn http_url(text: &str) -> Option<(Url, &str)> {
    let (scheme, after_scheme) = text.split_once("://")?;
    let authority = authority_of(after_scheme);
    let blank = |part: &str| part.contains(|c: char| c.is_whitespace() || c.is_control());
    let plain = !authority.is_empty()
        && !authority.ends_with(':')
        && !authority.contains(['@', '\\'])
        && !blank(scheme)
        && !blank(authority);
    let url = Url::parse(text).ok()?;
    (plain && matches!(url.scheme(), "http" | "https")).then_some((url, after_scheme))
}

/// The origin of an http(s) URL (`https://Chat.example.com/app?q` → `https://chat.example.com`).
/// Anything else (no scheme, another scheme, user info) is returned unchanged so validation
/// rejects it with the original text.
pub(super) fn origin_of(url: &str) -> String {
    match http_url(url) {
        Some((parsed, _)) => parsed.origin().ascii_serialization(),
        None => url.to_owned(),
    }
}

/// The origin as browsers write it in `Origin`: lower case, without the scheme's default port,
/// the host in ASCII (IDNA). Used on validated origins; anything else is only lower-cased.
pub(super) fn normalize_origin(origin: &str) -> String {
    match Url::parse(origin) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url.origin().ascii_serialization(),
        _ => origin.to_ascii_lowercase(),
    }
}

/// `host:port`, IPv6 in brackets, port required: what `TcpListener::bind` takes.
pub(super) fn is_host_port(listen: &str) -> bool {
    listen
        .rsplit_once(':')
        .is_some_and(|(host, port)| port.parse::<u16>().is_ok() && Host::parse(host).is_ok())
}

/// `scheme://host[:port]`: http or https, nothing after the port (not even `/`).
pub(super) fn check_origin(origin: &str) -> Result<(), &'static str> {
    match http_url(origin) {
        Some((_, after_scheme)) if authority_of(after_scheme) == after_scheme => Ok(()),
        _ => Err(ORIGIN_EXPECTED),
    }
}

/// An http(s) URL, a base path allowed, without query or fragment (paths are appended to it).
pub(super) fn check_app_url(url: &str) -> Result<(), &'static str> {
    match http_url(url) {
        Some((parsed, _)) if parsed.query().is_none() && parsed.fragment().is_none() => Ok(()),
        _ => Err(APP_URL_EXPECTED),
    }
}

/// `redis://host…` or `rediss://host…` (a host required), or `unix:` with a socket path.
pub(super) fn check_redis_url(url: &str) -> Result<(), &'static str> {
    let usable = Url::parse(url).is_ok_and(|parsed| match parsed.scheme() {
        "redis" | "rediss" => parsed.host_str().is_some_and(|host| !host.is_empty()),
        "unix" => !parsed.path().is_empty(),
        _ => false,
    });
    if usable {
        Ok(())
    } else {
        Err(REDIS_URL_EXPECTED)
    }
}

/// Hides credentials (`redis://:secret@host` → `redis://***@host`, `user:secret@host` when the
/// scheme was forgotten) so error messages can be logged. On the text as written, not a parsed
/// URL: the message must show what the user wrote (a parsed URL is re-serialized), and text that
/// does not parse may still hold a password.
pub(super) fn redact(url: &str) -> String {
    let (scheme, after_scheme) = match url.split_once("://") {
        Some((scheme, rest)) => (&url[..scheme.len() + 3], rest),
        None => ("", url),
    };
    match authority_of(after_scheme).rfind('@') {
        Some(at) => format!("{scheme}***{}", &after_scheme[at..]),
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

    #[test]
    fn origins_accepted_as_before() {
        for origin in [
            "https://chat.example.com",
            "http://localhost:3000",
            "HTTPS://Chat.Example.com",
            "http://127.0.0.1:8080",
            "https://[::1]",
            "https://[2001:db8::1]:8443",
        ] {
            assert_eq!(check_origin(origin), Ok(()), "{origin}");
        }
    }

    #[test]
    fn origins_rejected_as_before() {
        for origin in [
            "",
            "chat.example.com",
            "https:chat.example.com",
            "https://",
            "https://:443",
            "https://x.com/",
            "https://x.com/app",
            "https://x.com?q",
            "https://x.com#f",
            "https://user@x.com",
            "https://user:pw@x.com",
            "https://x.com:",
            "https://x.com:99999",
            "https://x.com:port",
            "https://::1",
            "https://x .com",
            "ws://x.com",
            "ftp://x.com",
        ] {
            assert_eq!(check_origin(origin), Err(ORIGIN_EXPECTED), "{origin:?}");
        }
    }

    /// Inputs the hand-written parser let through, though no browser sends such an `Origin`.
    #[test]
    fn origins_the_old_parser_let_through_are_refused() {
        for origin in [
            "https://@x.com",
            "https://x.com\\",
            "https://[not-v6]",
            " https://x.com",
            "https://x.com\t",
        ] {
            assert_eq!(check_origin(origin), Err(ORIGIN_EXPECTED), "{origin:?}");
        }
    }

    #[test]
    fn origins_normalize_as_browsers_write_them() {
        assert_eq!(normalize_origin("HTTPS://X.com:443"), "https://x.com");
        assert_eq!(normalize_origin("http://x.com:8080"), "http://x.com:8080");
        assert_eq!(normalize_origin("https://[::1]:443"), "https://[::1]");
        // A port written with a leading zero is still the default one.
        assert_eq!(normalize_origin("https://x.com:0443"), "https://x.com");
        // Browsers send an international name in its ASCII form.
        assert_eq!(
            normalize_origin("https://bücher.example"),
            "https://xn--bcher-kva.example"
        );
    }

    #[test]
    fn origin_of_keeps_what_it_cannot_take_an_origin_from() {
        assert_eq!(
            origin_of("HTTPS://Chat.Example.com:443/app/?x=1"),
            "https://chat.example.com"
        );
        assert_eq!(origin_of("http://[::1]:3000/"), "http://[::1]:3000");
        for text in ["chat.example.com", "ftp://x.com/a", "https://u@x.com/a", ""] {
            assert_eq!(origin_of(text), text);
        }
    }

    #[test]
    fn app_urls() {
        for url in [
            "http://127.0.0.1:3000",
            "http://app:3000/",
            "http://app:3000/base/",
            "HTTPS://App.Example.com/base",
            "http://[::1]:3000/x",
            // Reqwest escapes it, as before.
            "http://app:3000/a b",
        ] {
            assert_eq!(check_app_url(url), Ok(()), "{url}");
        }
        for url in [
            "127.0.0.1:3000",
            "http:///x",
            "http://app:3000?x",
            "http://app:3000/x?",
            "http://app:3000/#f",
            "http://u:p@app:3000",
            "http://app:",
            "http://app:70000",
            " http://app:3000",
            "http://ap p:3000",
            "ftp://app",
            "redis://app",
        ] {
            assert_eq!(check_app_url(url), Err(APP_URL_EXPECTED), "{url:?}");
        }
    }

    #[test]
    fn redis_urls() {
        for url in [
            "redis://127.0.0.1:6379",
            "REDIS://h:6379/0",
            "rediss://:secret@cache:6380",
            "redis://[::1]:6379",
            "unix:/run/valkey.sock",
            "unix:///run/valkey.sock",
        ] {
            assert_eq!(check_redis_url(url), Ok(()), "{url}");
        }
        for url in ["", "redis://", "unix:", "http://h:6379", "127.0.0.1:6379"] {
            assert_eq!(check_redis_url(url), Err(REDIS_URL_EXPECTED), "{url:?}");
        }
    }

    /// Inputs the hand-written parser let through (anything after the scheme) that name no
    /// server to connect to.
    #[test]
    fn redis_urls_without_a_server_are_refused() {
        for url in [
            "redis://:secret@",
            "redis:///0",
            "unix://",
            "redis://ca che:6379",
        ] {
            assert_eq!(check_redis_url(url), Err(REDIS_URL_EXPECTED), "{url:?}");
        }
    }

    #[test]
    fn listen_addresses() {
        for listen in [
            "127.0.0.1:9091",
            "0.0.0.0:0",
            "[::1]:9091",
            "localhost:9091",
        ] {
            assert!(is_host_port(listen), "{listen}");
        }
        for listen in [
            "",
            "9091",
            ":9091",
            "::1:9091",
            "[::1]",
            "host:",
            "host:70000",
            "http://h:1",
            "a b:1",
            "h/x:1",
        ] {
            assert!(!is_host_port(listen), "{listen:?}");
        }
    }

    #[test]
    fn redaction_works_on_text_that_does_not_parse() {
        assert_eq!(redact("redis://:se cret@h:1"), "redis://***@h:1");
        assert_eq!(
            redact("http://u:p@app:3000/base"),
            "http://***@app:3000/base"
        );
        assert_eq!(redact("default:secret@cache:6379"), "***@cache:6379");
    }
}
