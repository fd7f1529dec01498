//! Server-sent heartbeats (Engine.IO v4): a ping every `ping_interval`, and the session closes
//! when the pong does not arrive within `ping_timeout` of the ping being due.
//!
//! Deadlines are absolute, counted from the moment the session opened (before the handshake
//! response left), so task scheduling delays never push them later: a client that stops
//! answering is dropped at `interval + timeout`, as by the reference.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use super::packet::Frame;
use super::session::{CloseReason, Session};

pub(crate) async fn run(
    session: Arc<Session>,
    start: Instant,
    interval: Duration,
    timeout: Duration,
) {
    let mut ping_due = start + interval;
    loop {
        tokio::select! {
            _ = sleep_until(ping_due) => {}
            _ = session.closed() => return,
        }
        {
            let mut st = session.lock();
            if st.closed.is_some() {
                return;
            }
            st.awaiting_pong = true;
        }
        session.send_control(Frame::ping());
        tokio::select! {
            _ = session.pong.notified() => ping_due = Instant::now() + interval,
            _ = sleep_until(ping_due + timeout) => {
                session.close(CloseReason::PingTimeout);
                return;
            }
            _ = session.closed() => return,
        }
    }
}
