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
    /// The nodes the cluster named last, tried after the seeds: after failovers every
    /// configured seed may be gone while the cluster lives on.
    learned: std::sync::Mutex<Vec<redis::ConnectionInfo>>,
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
            learned: std::sync::Mutex::default(),
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
        self.learn_nodes().await;
        let client = ClusterClient::builder(self.candidates())
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
        self.learn_nodes().await;
        let mut last = None;
        for seed in &self.candidates() {
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

    /// The seeds, then the nodes learned from the cluster.
    fn candidates(&self) -> Vec<redis::ConnectionInfo> {
        let learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = self.seeds.clone();
        for node in learned.iter() {
            if !all.iter().any(|s| s.addr() == node.addr()) {
                all.push(node.clone());
            }
        }
        all
    }

    /// Asks the cluster, through the command connection (which follows failovers), which
    /// nodes it has now. Kept as it was when the cluster cannot be asked.
    async fn learn_nodes(&self) {
        let limit = self.timeouts.connect;
        let asking = async {
            let mut conn = self.connection().await?;
            let slots = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut conn)
                .await?;
            Ok::<_, ValkeyError>(slots)
        };
        let Ok(Ok(slots)) = tokio::time::timeout(limit, asking).await else {
            return;
        };
        let Some(template) = self.seeds.first() else {
            return;
        };
        let found: Vec<redis::ConnectionInfo> = nodes(&slots)
            .into_iter()
            .map(|(host, port)| {
                let at = redis::ConnectionAddr::Tcp(host, port);
                template.clone().set_addr(at)
            })
            .collect();
        if !found.is_empty() {
            *self.learned.lock().unwrap_or_else(|e| e.into_inner()) = found;
        }
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
    addresses(slots, asked, 2..3)
}

/// Every node's address in a `CLUSTER SLOTS` answer, primaries and replicas, as the cluster
/// names them (an empty host is left out: the node asked is not known here).
fn nodes(slots: &redis::Value) -> Vec<(String, u16)> {
    addresses(slots, "", 2..usize::MAX)
}

/// The addresses at positions `at` of each slot range.
fn addresses(slots: &redis::Value, asked: &str, at: std::ops::Range<usize>) -> Vec<(String, u16)> {
    let mut found = Vec::new();
    let redis::Value::Array(ranges) = slots else {
        return found;
    };
    for range in ranges {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        for node in parts.iter().skip(at.start).take(at.len()) {
            let redis::Value::Array(node) = node else {
                continue;
            };
            if let Some(addr) = address(node, asked) {
                if !found.contains(&addr) {
                    found.push(addr);
                }
            }
        }
    }
    found
}

/// `[host, port, id, ...]`; an empty host is `asked`'s.
fn address(node: &[redis::Value], asked: &str) -> Option<(String, u16)> {
    let host = match node.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(redis::Value::SimpleString(s)) => s.clone(),
        _ => return None,
    };
    let Some(redis::Value::Int(port)) = node.get(1) else {
        return None;
    };
    let port = u16::try_from(*port).ok()?;
    let host = if host.is_empty() {
        asked.to_owned()
    } else {
        host
    };
    (!host.is_empty()).then_some((host, port))
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
        assert_eq!(
            nodes(&slots),
            vec![
                addr("127.0.0.1", 7000),
                addr("127.0.0.1", 7003),
                addr("127.0.0.1", 7001)
            ]
        );
    }
}
