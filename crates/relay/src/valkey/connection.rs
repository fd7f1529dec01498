//! A command connection of any topology, and pipelines that work on a Cluster too.

use std::collections::HashMap;

use deadpool_redis::redis::{
    self, aio::ConnectionLike, aio::MultiplexedConnection, cluster_async::ClusterConnection,
    cluster_routing::Slot, Arg, Cmd, Pipeline, RedisFuture, Value,
};
use futures_util::future::join_all;

use super::node_pool::Pooled;

pub enum Connection {
    /// Holds its pool slot until dropped.
    Pooled(Pooled),
    /// A handle on a pooled connection, its slot already released.
    Shared(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Pooled(c) => c.req_packed_command(cmd),
            Connection::Shared(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Pooled(c) => c.req_packed_commands(pipe, offset, count),
            Connection::Shared(c) => c.req_packed_commands(pipe, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Pooled(c) => c.get_db(),
            Connection::Shared(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// Sends `pipe`, built with `ignore_errors()` and without `ignore()`: one reply per
    /// command, a command's error among them as a [`Value::ServerError`]; `Err` when it
    /// could not be sent.
    ///
    /// On a Cluster the commands are split by slot (a pipeline goes to one node, and keys of
    /// other slots would be refused), the parts sent at once and the replies put back in order.
    pub async fn pipeline(&mut self, pipe: &Pipeline) -> redis::RedisResult<Vec<Value>> {
        match self {
            // Boxed: its future is large, and it would be part of every caller's.
            Connection::Cluster(c) => Box::pin(by_slot(c, pipe)).await,
            other => pipe.query_async(other).await,
        }
    }
}

/// Where a command may run on a Cluster.
#[derive(PartialEq, Eq, Hash, Clone, Copy)]
enum Place {
    /// On its key's slot's primary.
    Slot(Slot),
    /// Anywhere (no key).
    AnyNode,
    /// Sent on its own, routed by redis-rs (`SCRIPT LOAD` goes to every primary).
    Alone,
}

fn place(cmd: &Cmd) -> Place {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .filter_map(|a| match a {
            Arg::Simple(bytes) => Some(bytes),
            _ => None,
        })
        .collect();
    let Some(name) = args.first() else {
        return Place::Alone;
    };
    let name = name.to_ascii_uppercase();
    match name.as_slice() {
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => {
            let keys = args.get(2).and_then(|n| std::str::from_utf8(n).ok());
            match (keys.and_then(|n| n.parse::<usize>().ok()), args.get(3)) {
                (Some(n), Some(key)) if n > 0 => Place::Slot(Slot::for_key(key)),
                _ => Place::AnyNode,
            }
        }
        // A classic PUBLISH reaches every node from any of them; sent by its channel's slot,
        // a channel's messages always leave from the same node, so they stay in order. An
        // SPUBLISH must go to its channel's slot (the default below).
        b"PING" | b"ECHO" => Place::AnyNode,
        b"SCRIPT" | b"FUNCTION" | b"PUBSUB" | b"CLUSTER" | b"INFO" => Place::Alone,
        _ => match args.get(1) {
            Some(key) => Place::Slot(Slot::for_key(key)),
            None => Place::Alone,
        },
    }
}

async fn by_slot(conn: &ClusterConnection, pipe: &Pipeline) -> redis::RedisResult<Vec<Value>> {
    let mut parts: HashMap<Place, (Pipeline, Vec<usize>)> = HashMap::new();
    let mut alone: Vec<(usize, &Cmd)> = Vec::new();
    let mut total = 0;
    for (i, cmd) in pipe.cmd_iter().enumerate() {
        total += 1;
        match place(cmd) {
            Place::Alone => alone.push((i, cmd)),
            at => {
                let (part, indices) = parts.entry(at).or_insert_with(|| {
                    let mut p = redis::pipe();
                    p.ignore_errors();
                    (p, Vec::new())
                });
                part.add_command(cmd.clone());
                indices.push(i);
            }
        }
    }
    let piped = join_all(parts.into_values().map(|(part, indices)| {
        let mut conn = conn.clone();
        async move {
            let replies: Vec<Value> = part.query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(indices.into_iter().zip(replies).collect::<Vec<_>>())
        }
    }));
    let single = join_all(alone.into_iter().map(|(i, cmd)| {
        let mut conn = conn.clone();
        async move {
            match cmd.query_async::<Value>(&mut conn).await {
                Ok(v) => Ok((i, v)),
                Err(e) => match redis::ServerError::try_from(e) {
                    Ok(server) => Ok((i, Value::ServerError(server))),
                    Err(e) => Err(e),
                },
            }
        }
    }));
    let (piped, single) = futures_util::future::join(piped, single).await;
    let mut replies: Vec<Option<Value>> = vec![None; total];
    for part in piped {
        for (i, v) in part? {
            replies[i] = Some(v);
        }
    }
    for reply in single {
        let (i, v) = reply?;
        replies[i] = Some(v);
    }
    replies
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Client, "a reply is missing"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_placed_by_their_key() {
        let slot = |k: &str| Place::Slot(Slot::for_key(k.as_bytes()));
        let mut c = redis::cmd("EVALSHA");
        c.arg("abc").arg(2).arg("{u}:a").arg("{u}:b").arg("x");
        assert!(place(&c) == slot("u"));
        let mut c = redis::cmd("evalsha");
        c.arg("abc").arg(0).arg("x");
        assert!(place(&c) == Place::AnyNode);
        let mut c = redis::cmd("PUBLISH");
        c.arg("socket.io#/#").arg("x");
        assert!(place(&c) == slot("socket.io#/#"));
        let mut c = redis::cmd("SPUBLISH");
        c.arg("socket.io#/#room#").arg("x");
        assert!(place(&c) == slot("socket.io#/#room#"));
        let mut c = redis::cmd("SCRIPT");
        c.arg("LOAD").arg("return 1");
        assert!(place(&c) == Place::Alone);
        let mut c = redis::cmd("PEXPIRE");
        c.arg("k1").arg(10);
        assert!(place(&c) == slot("k1"));
    }
}
