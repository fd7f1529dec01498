//! The HTTP server: our own hyper accept loop in front of warp. WebSocket upgrades on the
//! engine path go straight to the Engine.IO transport (so tungstenite's buffers can be sized);
//! everything else (polling, health, metrics) is served by warp's filters.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Whether the instance takes new connections (`/readyz`).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `/healthz` (the process answers) and `/readyz` (it accepts new sockets).
pub fn health_routes(readiness: Readiness) -> BoxedFilter<(warp::reply::Response,)> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok", http::StatusCode::OK).into_response());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        if readiness.get() {
            warp::reply::with_status("ready", http::StatusCode::OK).into_response()
        } else {
            warp::reply::with_status("not ready", http::StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
        }
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
