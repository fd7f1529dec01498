//! `/healthz` and `/readyz`: whether the process answers, and whether the instance takes new
//! sockets (and how its relay is).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use warp::filters::BoxedFilter;
use warp::{Filter, Reply};

/// Whether the instance takes new connections (`/readyz`), and whether its relay is up.
///
/// A degraded relay leaves the instance ready: it still serves its own sockets, and making
/// every instance unready when the shared Valkey fails would take the whole fleet out.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    /// The relay's link (`true`: up), once a relay runs; none: the relay is disabled.
    relay: Arc<OnceLock<watch::Receiver<bool>>>,
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reports the relay's link from now on (see `relay::Relay::link_state`).
    pub fn watch_relay(&self, link: watch::Receiver<bool>) {
        let _ = self.relay.set(link);
    }

    /// `"up"`, `"down"` (serving local-only while retrying) or `"disabled"`.
    pub fn relay(&self) -> &'static str {
        match self.relay.get() {
            None => "disabled",
            Some(link) if *link.borrow() => "up",
            Some(_) => "down",
        }
    }
}

/// `/healthz` (the process answers) and `/readyz` (it accepts new sockets; JSON
/// `{"ready":bool,"relay":"up"|"down"|"disabled"}`, 503 when not ready).
pub fn routes(readiness: Readiness) -> BoxedFilter<(warp::reply::Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok", http::StatusCode::OK).into_response());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let ready = readiness.get();
        let body = warp::reply::json(&serde_json::json!({
            "ready": ready,
            "relay": readiness.relay(),
        }));
        let status = if ready {
            http::StatusCode::OK
        } else {
            http::StatusCode::SERVICE_UNAVAILABLE
        };
        warp::reply::with_status(body, status).into_response()
    });
    healthz.or(readyz).unify().boxed()
}
