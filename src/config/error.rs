//! How a configuration problem is reported: one line per key, with the layer that set it.

use std::fmt;
use std::path::PathBuf;

/// One problem with one key, printed as `key: message (from source)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `engine.ping_interval_ms`; empty for file-level errors.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
    /// Where the value came from: `default`, `TOML file /x/gateway.toml`,
    /// `env var PORT`; `None` when unknown (e.g. [`Config::validate`] alone).
    pub source: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.key.is_empty()) {
            // File-level errors (e.g. TOML syntax) can span lines: source first.
            (Some(source), true) => write!(f, "{source}: {}", self.message),
            (Some(source), false) => write!(f, "{}: {} (from {source})", self.key, self.message),
            (None, _) if self.key.is_empty() => f.write_str(&self.message),
            (None, _) => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` is missing or not a regular file.
    #[error("config file {}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// One or more keys are malformed or out of range; all are listed.
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<Problem> },
}

impl ConfigError {
    /// The per-key problems (empty for a file error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::File { .. } => &[],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => format!("invalid configuration: {one}"),
        many => {
            let mut out = format!("invalid configuration ({} problems):", many.len());
            for p in many {
                out.push_str("\n  ");
                out.push_str(&p.to_string());
            }
            out
        }
    }
}
