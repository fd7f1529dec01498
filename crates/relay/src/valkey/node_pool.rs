//! Command connections to one node: the only one, or the primary Sentinel names now. A pool
//! that grows with bursts and shrinks back when they are over.

use std::time::Duration;

use deadpool::managed::{self, Metrics, QueueMode, RecycleResult};
use deadpool_redis::redis::sentinel::{
    SentinelClient, SentinelNodeConnectionInfo, SentinelServerType,
};
use deadpool_redis::redis::{self, aio::MultiplexedConnection, AsyncConnectionConfig};
use tokio::sync::Mutex as AsyncMutex;

use super::{Timeouts, TopologyError};

/// Most command connections.
const POOL_SIZE: usize = 16;

/// A connection nobody took for this long is closed (a burst opened it; the pool keeps what
/// the steady load uses).
const IDLE: Duration = Duration::from_secs(60);

pub type PoolError = managed::PoolError<redis::RedisError>;
pub type Pooled = managed::Object<NodeManager>;

/// Where the node is.
enum Node {
    Fixed(redis::Client),
    /// Asked of the sentinels at each new connection, so a failover is followed as soon as
    /// the old primary's connections fail (Sentinel closes them when it demotes it).
    Sentinel(AsyncMutex<SentinelClient>),
}

impl Node {
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Node::Fixed(client) => Ok(client.clone()),
            // Boxed: redis-rs' Sentinel lookup is deep enough to overflow the layout of every
            // future that awaits a connection.
            Node::Sentinel(sentinel) => {
                Box::pin(async { sentinel.lock().await.async_get_client().await }).await
            }
        }
    }
}

pub struct NodeManager {
    node: Node,
    config: AsyncConnectionConfig,
}

impl managed::Manager for NodeManager {
    type Type = MultiplexedConnection;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        self.node
            .client()
            .await?
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        _: &Metrics,
    ) -> RecycleResult<redis::RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await?;
        Ok(())
    }
}

pub struct NodePool {
    pool: managed::Pool<NodeManager>,
}

impl NodePool {
    pub fn single(info: redis::ConnectionInfo, timeouts: Timeouts) -> Result<Self, TopologyError> {
        let client = redis::Client::open(info).map_err(TopologyError::Client)?;
        Self::build(Node::Fixed(client), timeouts)
    }

    pub fn sentinel(
        sentinels: Vec<redis::ConnectionInfo>,
        service: String,
        node: redis::RedisConnectionInfo,
        timeouts: Timeouts,
    ) -> Result<Self, TopologyError> {
        let nodes = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(node)
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client =
            SentinelClient::build(sentinels, service, Some(nodes), SentinelServerType::Master)
                .map_err(TopologyError::Client)?;
        Self::build(Node::Sentinel(AsyncMutex::new(client)), timeouts)
    }

    /// `timeouts.command` bounds a command and also the wait for a connection: a restore that
    /// waits is still a restore (with 4 connections and a 1 s wait, a failover's restores
    /// gave up).
    fn build(node: Node, timeouts: Timeouts) -> Result<Self, TopologyError> {
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(timeouts.command))
            .set_connection_timeout(Some(timeouts.connect));
        let pool = managed::Pool::builder(NodeManager { node, config })
            .max_size(POOL_SIZE)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(timeouts.command))
            .create_timeout(Some(timeouts.connect))
            .recycle_timeout(Some(Duration::from_secs(1)))
            // The most recently used connection first: under a light load the same few are
            // reused and the rest go idle and get closed (round robin would keep all of them).
            .queue_mode(QueueMode::Lifo)
            .build()
            .map_err(|e| TopologyError::Pool(e.to_string()))?;
        Ok(NodePool { pool })
    }

    pub async fn get(&self) -> Result<Pooled, PoolError> {
        self.pool.get().await
    }

    /// A client for the node as it is now (for a Pub/Sub connection).
    pub async fn node_client(&self) -> redis::RedisResult<redis::Client> {
        self.pool.manager().node.client().await
    }

    /// Closes connections idle for [`IDLE`], every so often.
    pub async fn close_idle(&self) {
        let mut tick = tokio::time::interval(IDLE / 2);
        loop {
            tick.tick().await;
            let closed = self.pool.retain(|_, m| m.last_used() < IDLE).removed.len();
            if closed > 0 {
                tracing::debug!(closed, "relay: closed idle Valkey connections");
            }
        }
    }
}
