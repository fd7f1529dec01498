//! Commands on a Valkey Cluster: one cluster connection (redis-rs) that routes each command
//! to its slot's primary over one multiplexed connection per node, follows MOVED and ASK,
//! and refreshes the slot map after errors; and the choice of a node for Pub/Sub.

use deadpool_redis::redis::{self, cluster::ClusterClient, cluster_async::ClusterConnection};
use rand::seq::IndexedRandom;
use tokio::sync::Mutex as AsyncMutex;

use super::{Timeouts, TopologyError, ValkeyError};

pub struct ClusterLink {
    client: ClusterClient,
    /// Made at the first use (the relay starts without waiting for Valkey), then shared.
    conn: AsyncMutex<Option<ClusterConnection>>,
    /// Credentials and settings for Pub/Sub connections to single nodes.
    seed: redis::ConnectionInfo,
    timeouts: Timeouts,
}

impl ClusterLink {
    pub fn new(
        seeds: Vec<redis::ConnectionInfo>,
        timeouts: Timeouts,
    ) -> Result<Self, TopologyError> {
        let seed = seeds.first().cloned().ok_or(TopologyError::NoSeeds)?;
        let client = ClusterClient::builder(seeds)
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.command)
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            .build()
            .map_err(TopologyError::Client)?;
        Ok(ClusterLink {
            client,
            conn: AsyncMutex::new(None),
            seed,
            timeouts,
        })
    }

    pub async fn connection(&self) -> Result<ClusterConnection, ValkeyError> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let limit = self.timeouts.connect;
        // Boxed: redis-rs' connecting future is deep enough to overflow the layout of every
        // caller's future.
        let connecting = Box::pin(self.client.get_async_connection());
        let c = tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| ValkeyError::Timeout(limit))??;
        Ok(conn.insert(c).clone())
    }

    /// A client for one of the primaries, at random.
    pub async fn pubsub_client(&self) -> Result<redis::Client, ValkeyError> {
        let mut conn = self.connection().await?;
        let slots: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        let primaries = primaries(&slots);
        let (host, port) = primaries.choose(&mut rand::rng()).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "CLUSTER SLOTS names no primary"))
        })?;
        let info = self
            .seed
            .clone()
            .set_addr(redis::ConnectionAddr::Tcp(host.clone(), *port));
        Ok(redis::Client::open(info)?)
    }
}

/// The primaries' addresses in a `CLUSTER SLOTS` answer: `[[start, end, [host, port, id,
/// ...], replicas...], ...]`.
fn primaries(slots: &redis::Value) -> Vec<(String, u16)> {
    let mut found = Vec::new();
    let redis::Value::Array(ranges) = slots else {
        return found;
    };
    for range in ranges {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        let Some(redis::Value::Array(primary)) = parts.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(redis::Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else {
            continue;
        };
        // An empty host means "the node you asked"; the seed's address is not necessarily it.
        if !host.is_empty() && !found.contains(&(host.clone(), port)) {
            found.push((host, port));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value::{Array, BulkString, Int};

    fn node(host: &str, port: i64) -> redis::Value {
        Array(vec![
            BulkString(host.into()),
            Int(port),
            BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn primaries_are_read_from_cluster_slots() {
        let slots = Array(vec![
            Array(vec![
                Int(0),
                Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Array(vec![Int(5461), Int(10922), node("127.0.0.1", 7001)]),
            Array(vec![Int(10923), Int(16000), node("127.0.0.1", 7001)]),
            Array(vec![Int(16001), Int(16383), node("", 7002)]),
        ]);
        assert_eq!(
            primaries(&slots),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
        assert!(primaries(&Int(1)).is_empty());
    }
}
