//! Valkey as the relay reaches it: one node, a Valkey Cluster, or a primary that Sentinel
//! watches and replaces ([`Topology`]).
//!
//! Two kinds of connection, whatever the topology:
//! - commands ([`Valkey::connection`]): a pool of connections to the primary (one node, or
//!   Sentinel's primary of the moment), or one cluster connection that routes each command
//!   to its slot's primary and follows MOVED/ASK and failovers by itself (redis-rs);
//! - Pub/Sub ([`Valkey::pubsub_client`]): a client for the node a subscriber should use now.
//!   A classic PUBLISH reaches every node of a Cluster, so any primary will do. The relay's
//!   subscriber speaks to it over a connection of its own ([`pubsub::PubSubConnection`]);
//! - sharded Pub/Sub ([`Valkey::sharded_pubsub`], Cluster only): a cluster connection of its
//!   own, over RESP3, that subscribes each channel on its slot's primary.

mod cluster;
mod connection;
mod node_pool;
pub mod pubsub;
mod topology;

use std::time::Duration;

use deadpool_redis::redis;
use redis::cluster_async::ClusterConnection;

pub use connection::Connection;
pub use topology::{Topology, TopologyError, TopologyKind};

/// Why a connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ValkeyError {
    #[error("no pooled Valkey connection: {0}")]
    Pool(#[from] node_pool::PoolError),
    #[error("Valkey: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no Valkey answer within {0:?}")]
    Timeout(Duration),
}

impl ValkeyError {
    /// Whether the connection itself failed (the caller should drop what it holds).
    pub fn is_dropped(&self) -> bool {
        match self {
            ValkeyError::Redis(e) => e.is_connection_dropped() || e.is_io_error(),
            ValkeyError::Pool(_) | ValkeyError::Timeout(_) => true,
        }
    }
}

/// How long commands and connecting may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// A command, and the wait for a pooled connection.
    pub command: Duration,
    pub connect: Duration,
}

/// The relay's way to Valkey.
pub struct Valkey {
    commands: Commands,
    topology: &'static str,
}

enum Commands {
    Nodes(node_pool::NodePool),
    Cluster(Box<cluster::ClusterLink>),
}

impl Valkey {
    /// Prepares connections; nothing connects until the first use.
    pub fn open(topology: Topology, timeouts: Timeouts) -> Result<Valkey, TopologyError> {
        let name = topology.name();
        let commands = match topology {
            Topology::Single(info) => Commands::Nodes(node_pool::NodePool::single(info, timeouts)?),
            Topology::Sentinel {
                sentinels,
                service,
                node,
            } => Commands::Nodes(node_pool::NodePool::sentinel(
                sentinels, service, node, timeouts,
            )?),
            Topology::Cluster(seeds) => {
                Commands::Cluster(Box::new(cluster::ClusterLink::new(seeds, timeouts)?))
            }
        };
        Ok(Valkey {
            commands,
            topology: name,
        })
    }

    /// `single`, `cluster` or `sentinel` (for logs).
    pub fn topology(&self) -> &'static str {
        self.topology
    }

    /// A command connection. Pooled ones go back to the pool when dropped.
    pub async fn connection(&self) -> Result<Connection, ValkeyError> {
        match &self.commands {
            Commands::Nodes(pool) => Ok(Connection::Pooled(pool.get().await?)),
            Commands::Cluster(link) => Ok(Connection::Cluster(link.connection().await?)),
        }
    }

    /// A handle on a command connection whose pool slot is released at once. Connections are
    /// multiplexed: holding the slot for each command only made commands wait for each other
    /// (a failover's restores, three commands per client, queued until they gave up);
    /// through the handle, concurrent commands are pipelined on one connection.
    pub async fn shared_connection(&self) -> Result<Connection, ValkeyError> {
        match &self.commands {
            Commands::Nodes(pool) => Ok(Connection::Shared((*pool.get().await?).clone())),
            Commands::Cluster(link) => Ok(Connection::Cluster(link.connection().await?)),
        }
    }

    /// A client for a Pub/Sub connection to the node to use now: the one node, Sentinel's
    /// current primary, or one of the Cluster's primaries (chosen at random, so a fleet's
    /// subscribers spread over them).
    pub async fn pubsub_client(&self) -> Result<redis::Client, ValkeyError> {
        match &self.commands {
            Commands::Nodes(pool) => Ok(pool.node_client().await?),
            Commands::Cluster(link) => link.pubsub_client().await,
        }
    }

    /// A new cluster connection for sharded Pub/Sub: its messages and subscription changes
    /// arrive on `pushes`; `None` when Valkey is not a Cluster.
    pub async fn sharded_pubsub(
        &self,
        pushes: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    ) -> Option<Result<ClusterConnection, ValkeyError>> {
        match &self.commands {
            Commands::Nodes(_) => None,
            Commands::Cluster(link) => Some(link.sharded_pubsub(pushes).await),
        }
    }

    /// Closes command connections idle for a while, for the life of the relay.
    pub async fn close_idle(&self) {
        match &self.commands {
            Commands::Nodes(pool) => pool.close_idle().await,
            // One multiplexed cluster connection, kept: nothing to shrink.
            Commands::Cluster(_) => std::future::pending().await,
        }
    }
}
