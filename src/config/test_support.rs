//! Helpers shared by the configuration's tests.
// Jail's closures must return figment::Result, whose error is large.
#![allow(clippy::result_large_err)]

use std::path::Path;

use figment::Jail;

use super::{load, ConfigError};

/// Runs `f` in a fresh directory with an empty environment.
pub(super) fn jail(f: impl FnOnce(&mut Jail) -> figment::Result<()>) {
    Jail::expect_with(|jail| {
        jail.clear_env();
        f(jail)
    });
}

pub(super) fn load_err(file: Option<&Path>) -> String {
    match load(file) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(e) => e.to_string(),
    }
}

/// Unwraps, printing the rendered error on failure.
pub(super) fn ok<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub(super) fn assert_has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "missing {part:?} in:\n{text}");
    }
}

pub(super) fn toml_path(jail: &Jail, name: &str) -> String {
    format!("TOML file {}", jail.directory().join(name).display())
}
