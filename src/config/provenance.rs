//! Provenance: which layer (default, TOML file, environment variable) supplied a key, so
//! every problem can name it.

use figment::error::{Kind, OneOf};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::error::Problem;

/// How environment variables are named as a source (`env var PORT`).
pub(super) const ENV_SOURCE: &str = "env var";

/// Gives a provider our own metadata, so messages can say `env var PORT`
/// instead of figment's generic "environment variable(s)".
pub(super) struct Labeled<P> {
    inner: P,
    metadata: Metadata,
}

impl<P> Labeled<P> {
    pub(super) fn new(inner: P, metadata: Metadata) -> Self {
        Self { inner, metadata }
    }
}

impl<P: Provider> Provider for Labeled<P> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.inner.data()
    }
}

/// Metadata whose interpolator turns a key path back into the variable name.
pub(super) fn env_metadata(name_of: fn(&[&str]) -> String) -> Metadata {
    Metadata::named(ENV_SOURCE).interpolater(move |_: &Profile, keys: &[&str]| name_of(keys))
}

/// Human description of a provider for `key`.
fn describe(md: &Metadata, key: &str) -> String {
    if let Some(path) = md.source.as_ref().and_then(|s| s.file_path()) {
        return format!("TOML file {}", path.display());
    }
    if md.name == ENV_SOURCE {
        let parts: Vec<&str> = key.split('.').collect();
        return format!("{ENV_SOURCE} {}", md.interpolate(&Profile::Default, &parts));
    }
    md.name.to_string()
}

/// Which layer supplied `key` (or element `index` of the array at `key`).
pub(super) fn source_of(figment: &Figment, key: &str, index: Option<usize>) -> Option<String> {
    let mut value = figment.find_value(key).ok()?;
    let mut key = key.to_owned();
    // An unknown section (`GATEWAY_FOO__BAR`) is a table: name its first
    // entry, so the message shows a variable that really exists.
    while let Value::Dict(_, dict) = value {
        let (name, inner) = dict.into_iter().next()?;
        key = format!("{key}.{name}");
        value = inner;
    }
    let tag = match (index, &value) {
        (Some(i), Value::Array(_, items)) => items.get(i).map_or(value.tag(), Value::tag),
        _ => value.tag(),
    };
    figment.get_metadata(tag).map(|md| describe(md, &key))
}

/// One line per figment error, keyed by the offending value's own source.
pub(super) fn figment_problems(figment: &Figment, err: figment::Error) -> Vec<Problem> {
    err.into_iter()
        .map(|e| {
            let message = match &e.kind {
                Kind::UnknownField(_, expected) => {
                    format!("unknown key, expected {}", OneOf(expected))
                }
                Kind::UnknownVariant(found, expected) => {
                    format!("unknown variant `{found}`, expected {}", OneOf(expected))
                }
                // TOML syntax errors end with a newline.
                kind => kind.to_string().trim_end().to_owned(),
            };
            // figment puts array indices in the path as plain numbers:
            // `engine.transports.1` is reported as `engine.transports[1]`.
            let split = e
                .path
                .iter()
                .position(|p| p.parse::<usize>().is_ok())
                .unwrap_or(e.path.len());
            let base = e.path[..split].join(".");
            let index = e.path.get(split).and_then(|p| p.parse::<usize>().ok());
            let source = (!base.is_empty())
                .then(|| source_of(figment, &base, index))
                .flatten()
                .or_else(|| e.metadata.as_ref().map(|md| describe(md, &base)));
            let key = match index {
                Some(i) => format!("{base}[{i}]"),
                None => base,
            };
            Problem {
                key,
                message,
                source,
            }
        })
        .collect()
}
