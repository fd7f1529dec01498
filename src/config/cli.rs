//! The command line: `--config PATH`, `--check-config`, `--help`, `--version`.

use std::path::PathBuf;

use super::load::ConfigSource;
use super::{DEFAULT_FILE, VERSION};

/// Options that affect a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    /// `--config PATH`: read this TOML file instead of `./gateway.toml`; it must exist.
    pub config: Option<PathBuf>,
    /// `--check-config`: load and validate, print the result, exit.
    pub check_config: bool,
}

impl Cli {
    pub fn source(&self) -> ConfigSource {
        ConfigSource {
            file: self.config.clone(),
        }
    }
}

/// What `main` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliAction {
    Run(Cli),
    /// Print this text and exit 0.
    Help(String),
    /// Print `socket-gateway {VERSION}` and exit 0.
    Version,
}

/// Usage text for `--help`.
pub fn usage() -> String {
    format!(
        "socket-gateway {VERSION}\n\
         A Socket.IO gateway beside a Next.js app.\n\
         \n\
         USAGE:\n    socket-gateway [--config PATH] [--check-config]\n\
         \n\
         OPTIONS:\n\
         \x20   --config PATH    TOML file to read (default: ./{DEFAULT_FILE} if present)\n\
         \x20   --check-config   validate the configuration, print any errors, and exit\n\
         \x20   -h, --help       print this help\n\
         \x20   --version        print the version\n\
         \n\
         Every key can be overridden with GATEWAY_<SECTION>__<KEY>, e.g.\n\
         GATEWAY_ENGINE__PING_INTERVAL_MS=25000. PORT, REDIS_URL and APP_URL override\n\
         server.port, redis.url and app.url; NEXT_PUBLIC_APP_URL adds its origin to\n\
         security.allowed_origins.\n"
    )
}

/// Parses the arguments *after* the program name (`std::env::args().skip(1)`).
pub fn parse_cli(args: impl IntoIterator<Item = String>) -> Result<CliAction, String> {
    let mut cli = Cli::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let path = match arg.as_str() {
            "-h" | "--help" => return Ok(CliAction::Help(usage())),
            "--version" | "-V" => return Ok(CliAction::Version),
            "--check-config" => {
                cli.check_config = true;
                continue;
            }
            "--config" => args
                .next()
                .ok_or_else(|| "--config needs a PATH".to_owned())?,
            other => match other.strip_prefix("--config=") {
                Some(path) => path.to_owned(),
                None => return Err(format!("unknown argument `{other}` (see --help)")),
            },
        };
        if path.is_empty() {
            return Err("--config needs a non-empty PATH".into());
        }
        if cli.config.is_some() {
            return Err("--config given more than once".into());
        }
        cli.config = Some(PathBuf::from(path));
    }
    Ok(CliAction::Run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<CliAction, String> {
        parse_cli(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn cli_parsing() {
        assert_eq!(cli(&[]), Ok(CliAction::Run(Cli::default())));
        assert_eq!(
            cli(&["--config", "/etc/gw.toml", "--check-config"]),
            Ok(CliAction::Run(Cli {
                config: Some(PathBuf::from("/etc/gw.toml")),
                check_config: true,
            }))
        );
        assert_eq!(
            cli(&["--config=x.toml"]),
            Ok(CliAction::Run(Cli {
                config: Some(PathBuf::from("x.toml")),
                check_config: false,
            }))
        );
        assert!(
            matches!(cli(&["-h"]), Ok(CliAction::Help(text)) if text.contains("--check-config"))
        );
        assert!(matches!(cli(&["--help"]), Ok(CliAction::Help(_))));
        assert_eq!(cli(&["--version"]), Ok(CliAction::Version));
        assert_eq!(cli(&["--config"]), Err("--config needs a PATH".to_owned()));
        assert!(cli(&["--config="]).is_err());
        assert!(cli(&["--config", "a", "--config", "b"]).is_err());
        assert_eq!(
            cli(&["--verbose"]),
            Err("unknown argument `--verbose` (see --help)".to_owned())
        );
        let source = Cli {
            config: Some(PathBuf::from("a.toml")),
            check_config: false,
        }
        .source();
        assert_eq!(source.file, Some(PathBuf::from("a.toml")));
    }
}
