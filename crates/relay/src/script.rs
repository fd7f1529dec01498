//! Lua scripts, called by digest.
//!
//! Every call is sent as `EVALSHA` with the script's digest, computed here as Valkey computes
//! it. A call answered `NOSCRIPT` (Valkey restarted, or its scripts were flushed) did nothing:
//! it is sent again as `EVAL` with the text, which also loads the script for the next ones.

use std::sync::OnceLock;

use deadpool_redis::redis;

/// A Lua script and its digest.
pub struct Lua {
    text: &'static str,
    digest: OnceLock<String>,
}

impl Lua {
    pub const fn new(text: &'static str) -> Self {
        Lua {
            text,
            digest: OnceLock::new(),
        }
    }

    pub fn digest(&self) -> &str {
        self.digest
            .get_or_init(|| redis::Script::new(self.text).get_hash().to_owned())
    }

    /// A call of this script with `keys` and `args`.
    pub fn call(&'static self, keys: Vec<String>, args: Vec<Vec<u8>>) -> ScriptCall {
        ScriptCall {
            script: self,
            keys,
            args,
        }
    }
}

/// One call of a [`Lua`] script.
pub struct ScriptCall {
    script: &'static Lua,
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl ScriptCall {
    /// `EVALSHA digest ...`, or `EVAL text ...` when Valkey did not know the digest.
    pub fn cmd(&self, by_digest: bool) -> redis::Cmd {
        let mut cmd = if by_digest {
            let mut c = redis::cmd("EVALSHA");
            c.arg(self.script.digest());
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(self.script.text);
            c
        };
        cmd.arg(self.keys.len()).arg(&self.keys).arg(&self.args);
        cmd
    }

    /// Runs the call on `conn` and returns its answer (by digest, then by text if needed).
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        conn: &mut impl redis::aio::ConnectionLike,
    ) -> redis::RedisResult<T> {
        match self.cmd(true).query_async(conn).await {
            Err(e) if is_unknown_script(&e) => self.cmd(false).query_async(conn).await,
            other => other,
        }
    }
}

pub fn is_unknown_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Whether a pipeline's reply says the script was not known.
pub fn is_unknown_script_reply(v: &redis::Value) -> bool {
    matches!(v, redis::Value::ServerError(e) if e.kind() == Some(redis::ServerErrorKind::NoScript))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_valkeys_sha1_of_the_text() {
        static S: Lua = Lua::new("return 1");
        // `SCRIPT LOAD "return 1"` answers this digest.
        assert_eq!(S.digest(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
