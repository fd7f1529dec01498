//! The command connections (publisher, recorder scripts, restores, presence): a pool that
//! grows with bursts and shrinks back when they are over.

use std::time::Duration;

use deadpool_redis::redis;
use deadpool_redis::{Manager, Pool, QueueMode, Runtime};

/// Most command connections.
const POOL_SIZE: usize = 16;

/// A connection nobody took for this long is closed (a burst opened it; the pool keeps what
/// the steady load uses).
const IDLE: Duration = Duration::from_secs(60);

/// `command_timeout` bounds a command and also the wait for a connection: a restore that
/// waits is still a restore (with 4 connections and a 1 s wait, a failover's restores gave up).
pub fn build(
    info: redis::ConnectionInfo,
    command_timeout: Duration,
    connect_timeout: Duration,
) -> Result<Pool, String> {
    let connection =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(command_timeout));
    let manager = Manager::new_with_config(info, connection).map_err(|e| e.to_string())?;
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(command_timeout))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(Duration::from_secs(1)))
        // The most recently used connection first: under a light load the same few are
        // reused and the rest go idle and get closed (round robin would keep all of them).
        .queue_mode(QueueMode::Lifo)
        .build()
        .map_err(|e| e.to_string())
}

/// Closes connections idle for [`IDLE`], every so often, for the life of the relay.
pub async fn close_idle(pool: Pool) {
    let mut tick = tokio::time::interval(IDLE / 2);
    loop {
        tick.tick().await;
        let closed = pool.retain(|_, m| m.last_used() < IDLE).removed.len();
        if closed > 0 {
            tracing::debug!(closed, "relay: closed idle Valkey connections");
        }
    }
}
