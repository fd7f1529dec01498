//! The HTTP server: our own hyper accept loop in front of warp. WebSocket upgrades on the
//! engine path go straight to the Engine.IO transport (so tungstenite's buffers can be sized);
//! everything else (polling, health, metrics) is served by warp's filters.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_service::Service;
use warp::filters::BoxedFilter;
use warp::{Filter, Reply};

use crate::engineio::polling::ClientAddr;
use crate::engineio::{websocket, CloseReason, Engine};

/// The relay's state as `/readyz` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RelayState {
    /// Configured off: a single instance on its own.
    Disabled = 0,
    /// Subscribed and publishing.
    Up = 1,
    /// Valkey unreachable: serving local-only while retrying.
    Down = 2,
}

impl RelayState {
    fn as_str(self) -> &'static str {
        match self {
            RelayState::Disabled => "disabled",
            RelayState::Up => "up",
            RelayState::Down => "down",
        }
    }
}

/// Whether the instance takes new connections (`/readyz`), and whether its relay is up.
///
/// A degraded relay leaves the instance ready: it still serves its own sockets, and making
/// every instance unready when the shared Valkey fails would take the whole fleet out.
#[derive(Clone, Default)]
pub struct Readiness {
    ready: Arc<AtomicBool>,
    relay: Arc<AtomicU8>,
}

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
    pub fn get(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
    pub fn set_relay(&self, state: RelayState) {
        self.relay.store(state as u8, Ordering::Release);
    }
    pub fn relay(&self) -> RelayState {
        match self.relay.load(Ordering::Acquire) {
            1 => RelayState::Up,
            2 => RelayState::Down,
            _ => RelayState::Disabled,
        }
    }
}

/// `/healthz` (the process answers) and `/readyz` (it accepts new sockets; JSON
/// `{"ready":bool,"relay":"up"|"down"|"disabled"}`, 503 when not ready).
pub fn health_routes(readiness: Readiness) -> BoxedFilter<(warp::reply::Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok", http::StatusCode::OK).into_response());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let ready = readiness.get();
        let body = warp::reply::json(&serde_json::json!({
            "ready": ready,
            "relay": readiness.relay().as_str(),
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

/// Serves until `shutdown` resolves, then stops accepting, closes every session (clients are
/// told and reconnect elsewhere) and waits for them, at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    routes: BoxedFilter<(warp::reply::Response,)>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    serve_with(listener, vec![engine], routes, shutdown, drain_timeout).await
}

/// [`serve`] for several engines on distinct paths (the conformance example's two servers).
pub async fn serve_with(
    listener: TcpListener,
    engines: Vec<Engine>,
    routes: BoxedFilter<(warp::reply::Response,)>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) {
    let routes = engines.iter().fold(routes, |acc, engine| {
        crate::engineio::polling::filter(engine.clone())
            .or(acc)
            .unify()
            .boxed()
    });
    let engines: Arc<[Engine]> = engines.into();
    let warp_svc = warp::service(routes);
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            addr,
            engines.clone(),
            warp_svc.clone(),
        ));
    }
    drop(listener);
    let open = || engines.iter().map(Engine::session_count).sum::<usize>();
    tracing::info!(sessions = open(), "shutting down: closing sessions");
    for engine in engines.iter() {
        engine.close_all(CloseReason::ShuttingDown);
    }
    let drained = tokio::time::timeout(drain_timeout, async {
        while open() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(left = open(), "drain timeout reached");
    }
}

async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    addr: SocketAddr,
    engines: Arc<[Engine]>,
    warp_svc: S,
) where
    S: Service<http::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let svc = service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ClientAddr(addr));
        if let Some(engine) = engines.iter().find(|e| websocket::is_upgrade(e, &req)) {
            let res = websocket::upgrade(engine, req, Some(addr)).into_response();
            Either::Left(std::future::ready(Ok::<_, Infallible>(res)))
        } else {
            let mut svc = warp_svc.clone();
            Either::Right(svc.call(req))
        }
    });
    let conn = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}
