//! Server-sent heartbeats (Engine.IO v4): a ping every `ping_interval`, and the session closes
//! when the pong does not arrive within `ping_timeout` of the ping being queued.

use std::sync::Arc;
use std::time::Duration;

use super::packet::Frame;
use super::session::{CloseReason, Session};

pub(crate) async fn run(session: Arc<Session>, interval: Duration, timeout: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
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
            _ = session.pong.notified() => {}
            _ = tokio::time::sleep(timeout) => {
                session.close(CloseReason::PingTimeout);
                return;
            }
            _ = session.closed() => return,
        }
    }
}
