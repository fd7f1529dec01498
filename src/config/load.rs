//! Loading: the figment layers, lowest first (see [`crate::config`] for the order), then
//! validation.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::{Figment, Metadata};

use super::error::{ConfigError, Problem};
use super::provenance::{env_metadata, figment_problems, source_of, Labeled};
use super::urls::origin_of;
use super::{Config, DEFAULT_FILE, ENV_PREFIX};

/// Seed-compatible variable names and the keys they set (highest layer).
const SEED_VARS: [(&str, &str); 3] = [
    ("PORT", "server.port"),
    ("REDIS_URL", "redis.url"),
    ("APP_URL", "app.url"),
];
/// Seed variable whose origin is appended to `security.allowed_origins`.
const PUBLIC_APP_URL_VAR: &str = "NEXT_PUBLIC_APP_URL";
/// How the built-in defaults are named as a source.
const DEFAULT_SOURCE: &str = "default";

/// Where to read the configuration from (the CLI's `--config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigSource {
    /// `--config PATH`; `None` reads `./gateway.toml` if it exists.
    pub file: Option<PathBuf>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigError> {
        load(self.file.as_deref())
    }
}

/// Loads all layers, then validates. See the module docs for the order.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
    load_from(figment_for(file)?)
}

/// Builds the layered [`Figment`] without extracting it.
///
/// Fails only when `file` is given and is not an existing regular file; the
/// default `gateway.toml` may be absent. Parse errors surface at extraction.
pub fn figment_for(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut fig = Figment::from(Labeled::new(
        Serialized::defaults(Config::default()),
        Metadata::named(DEFAULT_SOURCE),
    ));

    let toml_path = match file {
        Some(path) => {
            let abs = absolute(path);
            if !abs.exists() {
                return Err(ConfigError::File {
                    path: abs,
                    reason: "does not exist (given with --config)".into(),
                });
            }
            if !abs.is_file() {
                return Err(ConfigError::File {
                    path: abs,
                    reason: "is not a regular file (given with --config)".into(),
                });
            }
            Some(abs)
        }
        None => Some(absolute(Path::new(DEFAULT_FILE))).filter(|p| p.exists()),
    };
    if let Some(path) = toml_path {
        // `file_exact`, never `file`: the latter searches every parent directory.
        fig = fig.merge(Toml::file_exact(path));
    }

    // Only section-qualified names (`GATEWAY_X__Y`), so an unrelated
    // `GATEWAY_URL` in a shared .env does not stop the gateway.
    let gateway_env = Env::prefixed(ENV_PREFIX)
        .filter(|k| k.as_str().contains("__"))
        .split("__");
    fig = fig.merge(Labeled::new(
        gateway_env,
        env_metadata(|keys| {
            let upper: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{ENV_PREFIX}{}", upper.join("__"))
        }),
    ));

    let seed_names: Vec<&str> = SEED_VARS.iter().map(|(name, _)| *name).collect();
    let seed_env = Env::raw().only(&seed_names).map(|name| {
        SEED_VARS
            .iter()
            .find(|(var, _)| name == *var)
            .map_or_else(|| name.as_str().to_owned(), |(_, key)| (*key).to_owned())
            .into()
    });
    fig = fig.merge(Labeled::new(
        seed_env,
        env_metadata(|keys| {
            let key = keys.join(".");
            SEED_VARS
                .iter()
                .find(|(_, k)| *k == key)
                .map_or(key.clone(), |(var, _)| (*var).to_owned())
        }),
    ));

    let public_url = Env::raw()
        .only(&[PUBLIC_APP_URL_VAR])
        .iter()
        .map(|(_, value)| value.trim().to_owned())
        .find(|value| !value.is_empty());
    if let Some(url) = public_url {
        fig = split_csv_value(fig, "security.allowed_origins");
        // `admerge` appends to the array instead of replacing it.
        fig = fig.admerge(Labeled::new(
            Serialized::default("security.allowed_origins", vec![origin_of(&url)]),
            env_metadata(|_| PUBLIC_APP_URL_VAR.to_owned()),
        ));
    }
    Ok(fig)
}

/// Extracts a [`Config`] from `figment`, validates it with source-aware
/// messages, and normalizes `security.allowed_origins`.
pub fn load_from(figment: Figment) -> Result<Config, ConfigError> {
    let mut config: Config = figment.extract().map_err(|err| ConfigError::Invalid {
        problems: figment_problems(&figment, err),
    })?;
    let problems: Vec<Problem> = config
        .violations()
        .into_iter()
        .map(|v| {
            let source = source_of(&figment, v.key, v.index);
            v.into_problem(source)
        })
        .collect();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { problems });
    }
    config.normalize();
    Ok(config)
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Turns a comma-separated string at `key` into an array with the same
/// source, so a following `admerge` appends to it instead of replacing it.
fn split_csv_value(fig: Figment, key: &str) -> Figment {
    let Ok(Value::String(tag, text)) = fig.find_value(key) else {
        return fig;
    };
    let Some(md) = fig.get_metadata(tag).cloned() else {
        return fig;
    };
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    fig.merge(Labeled::new(Serialized::default(key, items), md))
}

#[cfg(test)]
// Jail's closures must return figment::Result, whose error is large.
#[allow(clippy::result_large_err)]
mod tests {
    use std::path::Path;

    use super::super::test_support::{assert_has, jail, load_err, ok, toml_path};
    use engineio::Transport;

    use super::super::{LogFormat, DEFAULT_FILE};
    use super::*;

    #[test]
    fn toml_file_overrides_defaults() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                r#"
                [server]
                port = 4000
                [engine]
                transports = ["websocket"]
                [log]
                format = "json"
                "#,
            )?;
            let config = ok(load(None));
            assert_eq!(config.server.port, 4000);
            assert_eq!(config.engine.transports, vec![Transport::Websocket]);
            assert_eq!(config.log.format, LogFormat::Json);
            assert_eq!(config.server.host, "0.0.0.0");
            Ok(())
        });
    }

    #[test]
    fn explicit_config_file_replaces_default_file() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[server]\nport = 4000\n")?;
            j.create_dir("etc")?;
            j.create_file("etc/other.toml", "[server]\nport = 5000\n")?;
            let config = ok(load(Some(Path::new("etc/other.toml"))));
            assert_eq!(config.server.port, 5000);
            Ok(())
        });
    }

    #[test]
    fn explicit_config_file_must_exist() {
        jail(|j| {
            let err = load_err(Some(Path::new("missing.toml")));
            let abs = j.directory().join("missing.toml");
            assert_has(
                &err,
                &[&abs.display().to_string(), "does not exist", "--config"],
            );

            j.create_dir("dir.toml")?;
            let err = load_err(Some(Path::new("dir.toml")));
            assert_has(&err, &["dir.toml", "not a regular file"]);
            Ok(())
        });
    }

    #[test]
    fn toml_does_not_search_parent_directories() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[server]\nport = 4000\n")?;
            j.create_dir("sub")?;
            j.change_dir("sub")?;
            assert_eq!(ok(load(None)).server.port, 3001);
            Ok(())
        });
    }

    #[test]
    fn gateway_env_overrides_toml() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                "[engine]\nping_interval_ms = 1000\n[app]\nurl = \"http://toml:3000\"\n",
            )?;
            j.set_env("GATEWAY_ENGINE__PING_INTERVAL_MS", "300");
            j.set_env("GATEWAY_APP__URL", "http://env:3000");
            j.set_env("GATEWAY_LIMITS__EVENTS_BURST", "7");
            let config = ok(load(None));
            assert_eq!(config.engine.ping_interval_ms, 300);
            assert_eq!(config.app.url, "http://env:3000");
            assert_eq!(config.limits.events_burst, 7);
            Ok(())
        });
    }

    #[test]
    fn gateway_env_without_section_is_ignored() {
        jail(|j| {
            // e.g. a shared .env that the Next.js app also reads
            j.set_env("GATEWAY_URL", "http://gateway");
            j.set_env("GATEWAYS__X", "1");
            j.set_env("HOME", "/root");
            assert_eq!(ok(load(None)), Config::default());
            Ok(())
        });
    }

    #[test]
    fn env_lists_accept_comma_separated_strings() {
        jail(|j| {
            j.set_env("GATEWAY_ENGINE__TRANSPORTS", "websocket");
            j.set_env(
                "GATEWAY_SECURITY__ALLOWED_ORIGINS",
                "https://a.example.com, http://b.example.com:8080",
            );
            let config = ok(load(None));
            assert_eq!(config.engine.transports, vec![Transport::Websocket]);
            assert_eq!(
                config.security.allowed_origins,
                vec!["https://a.example.com", "http://b.example.com:8080"]
            );
            j.set_env("GATEWAY_ENGINE__TRANSPORTS", "[polling, websocket]");
            assert_eq!(ok(load(None)).engine.transports.len(), 2);
            Ok(())
        });
    }

    #[test]
    fn numeric_env_values_are_accepted_for_string_keys() {
        jail(|j| {
            j.set_env("GATEWAY_REDIS__PREFIX", "123");
            j.set_env("GATEWAY_SERVER__HOST", "0");
            let config = ok(load(None));
            assert_eq!(config.redis.prefix, "123");
            assert_eq!(config.server.host, "0");
            Ok(())
        });
    }

    #[test]
    fn seed_env_names_override_gateway_env() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[server]\nport = 4000\n")?;
            j.set_env("GATEWAY_SERVER__PORT", "5000");
            j.set_env("GATEWAY_REDIS__URL", "redis://gateway:6379");
            j.set_env("GATEWAY_APP__URL", "http://gateway:3000");
            j.set_env("PORT", "6000");
            j.set_env("REDIS_URL", "rediss://seed:6380");
            j.set_env("APP_URL", "https://seed.example.com");
            let config = ok(load(None));
            assert_eq!(config.server.port, 6000);
            assert_eq!(config.redis.url, "rediss://seed:6380");
            assert_eq!(config.app.url, "https://seed.example.com");
            Ok(())
        });
    }

    #[test]
    fn port_zero_means_any_free_port() {
        jail(|j| {
            j.set_env("PORT", "0");
            assert_eq!(ok(load(None)).server.port, 0);
            Ok(())
        });
    }

    #[test]
    fn next_public_app_url_adds_its_origin() {
        jail(|j| {
            j.create_file(
                DEFAULT_FILE,
                "[security]\nallowed_origins = [\"https://admin.example.com\"]\n",
            )?;
            j.set_env("NEXT_PUBLIC_APP_URL", "https://Chat.Example.com/app/?x=1");
            assert_eq!(
                ok(load(None)).security.allowed_origins,
                vec!["https://admin.example.com", "https://chat.example.com"]
            );

            // Already listed (modulo case and default port): not duplicated.
            j.set_env("NEXT_PUBLIC_APP_URL", "https://ADMIN.example.com:443/");
            assert_eq!(
                ok(load(None)).security.allowed_origins,
                vec!["https://admin.example.com"]
            );

            // Appends to a comma-separated env list as well.
            j.set_env(
                "GATEWAY_SECURITY__ALLOWED_ORIGINS",
                "https://a.example.com,https://b.example.com",
            );
            j.set_env("NEXT_PUBLIC_APP_URL", "http://localhost:3000/");
            assert_eq!(
                ok(load(None)).security.allowed_origins,
                vec![
                    "https://a.example.com",
                    "https://b.example.com",
                    "http://localhost:3000"
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn bad_next_public_app_url_is_blamed_on_that_var() {
        jail(|j| {
            j.set_env("NEXT_PUBLIC_APP_URL", "chat.example.com");
            let err = load_err(None);
            assert_has(
                &err,
                &[
                    "security.allowed_origins[0]",
                    "\"chat.example.com\"",
                    "(from env var NEXT_PUBLIC_APP_URL)",
                ],
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_source() {
        jail(|j| {
            j.create_file(DEFAULT_FILE, "[engine]\nping_interval = 5\n")?;
            let err = load_err(None);
            assert_has(
                &err,
                &[
                    "engine.ping_interval: unknown key",
                    "`ping_interval_ms`",
                    &toml_path(j, DEFAULT_FILE),
                ],
            );

            j.create_file(DEFAULT_FILE, "[enigne]\nping_interval_ms = 5\n")?;
            assert_has(&load_err(None), &["enigne: unknown key", "`engine`"]);

            j.create_file(DEFAULT_FILE, "")?;
            j.set_env("GATEWAY_SERVR__PORT", "1");
            assert_has(
                &load_err(None),
                &["servr: unknown key", "(from env var GATEWAY_SERVR__PORT)"],
            );
            j.clear_env();
            j.set_env("GATEWAY_SERVER__PROT", "1");
            assert_has(
                &load_err(None),
                &[
                    "server.prot: unknown key",
                    "(from env var GATEWAY_SERVER__PROT)",
                ],
            );
            Ok(())
        });
    }

    #[test]
    fn type_errors_name_key_source_and_expectation() {
        jail(|j| {
            j.set_env("GATEWAY_ENGINE__PING_INTERVAL_MS", "abc");
            assert_has(
                &load_err(None),
                &[
                    "engine.ping_interval_ms: invalid type: found string \"abc\", expected u64 \
                     (from env var GATEWAY_ENGINE__PING_INTERVAL_MS)",
                ],
            );
            j.set_env("GATEWAY_ENGINE__PING_INTERVAL_MS", "1");

            j.set_env("PORT", "70000");
            assert_has(
                &load_err(None),
                &[
                    "server.port:",
                    "70000",
                    "expected u16",
                    "(from env var PORT)",
                ],
            );
            j.set_env("PORT", "1");

            j.create_file(DEFAULT_FILE, "[log]\nformat = \"xml\"\n")?;
            assert_has(
                &load_err(None),
                &[
                    "log.format: unknown variant `xml`, expected `text` or `json`",
                    &toml_path(j, DEFAULT_FILE),
                ],
            );

            j.create_file(
                DEFAULT_FILE,
                "[engine]\ntransports = [\"polling\", \"ws\"]\n",
            )?;
            assert_has(
                &load_err(None),
                &[
                    "engine.transports[1]: unknown variant `ws`",
                    &toml_path(j, DEFAULT_FILE),
                ],
            );
            Ok(())
        });
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        jail(|j| {
            j.create_file("bad.toml", "[server\nport = 1\n")?;
            let err = load_err(Some(Path::new("bad.toml")));
            assert_has(&err, &[&toml_path(j, "bad.toml"), "line 1"]);
            Ok(())
        });
    }
}
