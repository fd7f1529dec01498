//! `--key value` and `--flag` command-line options, with typed getters and defaults.

use std::collections::HashMap;
use std::str::FromStr;

use crate::Result;

pub struct Args {
    values: HashMap<String, String>,
    pub positional: Vec<String>,
}

impl Args {
    /// Parses `--key value`, `--key=value` and bare `--flag` (value "true") options.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut values = HashMap::new();
        let mut positional = Vec::new();
        let mut it = args.into_iter().peekable();
        while let Some(a) = it.next() {
            if let Some(key) = a.strip_prefix("--") {
                if let Some((k, v)) = key.split_once('=') {
                    values.insert(k.to_owned(), v.to_owned());
                } else if it.peek().is_some_and(|n| !n.starts_with("--")) {
                    let v = it.next().unwrap_or_default();
                    values.insert(key.to_owned(), v);
                } else {
                    values.insert(key.to_owned(), "true".to_owned());
                }
            } else {
                positional.push(a);
            }
        }
        Ok(Args { values, positional })
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn req(&self, key: &str) -> Result<&str> {
        self.str(key)
            .ok_or_else(|| format!("missing option --{key}").into())
    }

    pub fn get<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.str(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{key} {v:?}: {e}").into()),
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.str(key), Some("true" | "1" | "yes"))
    }

    /// A comma-separated list (empty when absent).
    pub fn list<T: FromStr>(&self, key: &str) -> Result<Vec<T>>
    where
        T::Err: std::fmt::Display,
    {
        let Some(v) = self.str(key) else {
            return Ok(Vec::new());
        };
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|e| format!("--{key} {s:?}: {e}").into()))
            .collect()
    }
}
