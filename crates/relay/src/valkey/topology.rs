//! Which Valkey deployment the relay talks to, from the `redis.*` settings.

use deadpool_redis::redis::{self, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};
use serde::Deserialize;

/// The `redis.topology` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopologyKind {
    /// One node (or anything that looks like one).
    #[default]
    Single,
    /// A Valkey Cluster: `url` and `nodes` are seeds, the rest is discovered.
    Cluster,
    /// A primary and its replicas watched by Sentinel: `nodes` are the sentinels.
    Sentinel,
}

/// A topology with its addresses.
#[derive(Debug, Clone)]
pub enum Topology {
    Single(ConnectionInfo),
    /// Seed nodes.
    Cluster(Vec<ConnectionInfo>),
    Sentinel {
        sentinels: Vec<ConnectionInfo>,
        /// The name the sentinels know the primary by (`sentinel monitor <service> ...`).
        service: String,
        /// Credentials and database for the data nodes (the sentinels have their own).
        node: RedisConnectionInfo,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("invalid Valkey URL {which}: {source}")]
    Url {
        which: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("redis.topology = \"cluster\" needs at least one seed node")]
    NoSeeds,
    #[error("redis.topology = \"sentinel\" needs the sentinels' addresses in redis.nodes")]
    NoSentinels,
    #[error(
        "redis.topology = \"sentinel\" needs redis.sentinel_service (the monitored primary's name)"
    )]
    NoService,
    #[error("cannot set up the Valkey client: {0}")]
    Client(#[source] redis::RedisError),
    #[error("cannot build the Valkey connection pool: {0}")]
    Pool(String),
}

impl Topology {
    /// `url` is the node (single), a seed (cluster) or, for Sentinel, where the data nodes'
    /// credentials and database come from; `nodes` are more seeds (cluster) or the sentinels.
    pub fn from_settings(
        kind: TopologyKind,
        url: &str,
        nodes: &[String],
        sentinel_service: &str,
    ) -> Result<Topology, TopologyError> {
        let parse = |which: &str| {
            let info = which
                .into_connection_info()
                .map_err(|source| TopologyError::Url {
                    // Never the whole URL: it may carry a password.
                    which: which.split('@').next_back().unwrap_or_default().to_owned(),
                    source,
                })?;
            // redis-rs 1.x leaves Nagle on, which delays small pipelined PUBLISHes.
            Ok(info.set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true)))
        };
        match kind {
            TopologyKind::Single => Ok(Topology::Single(parse(url)?)),
            TopologyKind::Cluster => {
                let mut seeds = vec![parse(url)?];
                for node in nodes {
                    seeds.push(parse(node)?);
                }
                Ok(Topology::Cluster(seeds))
            }
            TopologyKind::Sentinel => {
                if nodes.is_empty() {
                    return Err(TopologyError::NoSentinels);
                }
                if sentinel_service.is_empty() {
                    return Err(TopologyError::NoService);
                }
                Ok(Topology::Sentinel {
                    sentinels: nodes.iter().map(|n| parse(n)).collect::<Result<_, _>>()?,
                    service: sentinel_service.to_owned(),
                    node: parse(url)?.redis_settings().clone(),
                })
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Topology::Single(_) => "single",
            Topology::Cluster(_) => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_seeds_are_the_url_and_the_nodes() {
        let nodes = vec!["redis://10.0.0.2:7001".to_owned()];
        let t = Topology::from_settings(TopologyKind::Cluster, "redis://10.0.0.1:7000", &nodes, "")
            .unwrap();
        assert!(matches!(t, Topology::Cluster(ref s) if s.len() == 2));
    }

    #[test]
    fn sentinel_needs_its_sentinels_and_service() {
        let none: Vec<String> = Vec::new();
        let url = "redis://:pw@ignored:6379/0";
        assert!(matches!(
            Topology::from_settings(TopologyKind::Sentinel, url, &none, "mymaster"),
            Err(TopologyError::NoSentinels)
        ));
        let s = vec!["redis://127.0.0.1:26379".to_owned()];
        assert!(matches!(
            Topology::from_settings(TopologyKind::Sentinel, url, &s, ""),
            Err(TopologyError::NoService)
        ));
        let t = Topology::from_settings(TopologyKind::Sentinel, url, &s, "mymaster").unwrap();
        assert!(matches!(t, Topology::Sentinel { ref node, .. } if node.password() == Some("pw")));
    }

    #[test]
    fn a_bad_url_is_named_without_its_password() {
        let err = Topology::from_settings(TopologyKind::Single, "redis://:secret@", &[], "")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
