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
    /// Asked for the primaries; their credentials and settings serve Pub/Sub connections too.
    seeds: Vec<redis::ConnectionInfo>,
    timeouts: Timeouts,
}

impl ClusterLink {
    pub fn new(
        seeds: Vec<redis::ConnectionInfo>,
        timeouts: Timeouts,
    ) -> Result<Self, TopologyError> {
        if seeds.is_empty() {
            return Err(TopologyError::NoSeeds);
        }
        let client = ClusterClient::builder(seeds.clone())
            .connection_timeout(timeouts.connect)
            .response_timeout(timeouts.command)
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            .build()
            .map_err(TopologyError::Client)?;
        Ok(ClusterLink {
            client,
            conn: AsyncMutex::new(None),
            seeds,
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

    /// A new RESP3 cluster connection whose pushes (sharded messages, subscription changes)
    /// go to `pushes`. redis-rs routes each SSUBSCRIBE to its slot's primary and subscribes
    /// again after it reconnects to a node or refreshes its slot map.
    pub async fn sharded_pubsub(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Result<ClusterConnection, ValkeyError> {
        let client = ClusterClient::builder(self.seeds.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .connection_timeout(self.timeouts.connect)
            .response_timeout(self.timeouts.command)
            .tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true))
            .build()?;
        let limit = self.timeouts.connect;
        let connecting = Box::pin(client.get_async_connection());
        Ok(tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| ValkeyError::Timeout(limit))??)
    }

    /// A client for one of the primaries, at random, as the first seed that answers `CLUSTER
    /// SLOTS` names them. Seeds are asked directly: a node that does not know its own address
    /// yet (a cluster of one) names itself with an empty host, meaning the node asked.
    pub async fn pubsub_client(&self) -> Result<redis::Client, ValkeyError> {
        let mut last = None;
        for seed in &self.seeds {
            match self.primaries_from(seed).await {
                Ok(found) => {
                    if let Some((host, port)) = found.choose(&mut rand::rng()) {
                        let at = redis::ConnectionAddr::Tcp(host.clone(), *port);
                        return Ok(redis::Client::open(seed.clone().set_addr(at))?);
                    }
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            let none = (redis::ErrorKind::Client, "CLUSTER SLOTS names no primary");
            redis::RedisError::from(none).into()
        }))
    }

    async fn primaries_from(
        &self,
        seed: &redis::ConnectionInfo,
    ) -> Result<Vec<(String, u16)>, ValkeyError> {
        let limit = self.timeouts.connect;
        let asking = async {
            let mut conn = redis::Client::open(seed.clone())?
                .get_multiplexed_async_connection()
                .await?;
            redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut conn)
                .await
        };
        let slots = tokio::time::timeout(limit, asking)
            .await
            .map_err(|_| ValkeyError::Timeout(limit))??;
        let asked = match seed.addr() {
            redis::ConnectionAddr::Tcp(host, _) => host.as_str(),
            _ => "",
        };
        Ok(primaries(&slots, asked))
    }
}

/// The primaries' addresses in a `CLUSTER SLOTS` answer: `[[start, end, [host, port, id,
/// ...], replicas...], ...]`; an empty host is `asked`'s.
fn primaries(slots: &redis::Value, asked: &str) -> Vec<(String, u16)> {
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
        let host = if host.is_empty() {
            asked.to_owned()
        } else {
            host
        };
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
        let addr = |h: &str, p| (h.to_owned(), p);
        assert_eq!(
            primaries(&slots, "10.0.0.9"),
            vec![
                addr("127.0.0.1", 7000),
                addr("127.0.0.1", 7001),
                addr("10.0.0.9", 7002)
            ]
        );
        assert!(primaries(&Int(1), "h").is_empty());
    }
}
