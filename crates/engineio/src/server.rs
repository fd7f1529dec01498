//! Serving engines over HTTP: our own hyper accept loop in front of warp. WebSocket upgrades
//! on an engine's path go straight to its WebSocket transport (which takes the TCP stream back
//! and frames it itself); everything else (polling, and whatever routes the caller adds:
//! health, metrics) is served by warp's filters. A shutdown drains the sessions gradually.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
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

use crate::polling::ClientAddr;
use crate::{websocket, CloseReason, Engine, Session};

/// How a shutdown proceeds once its signal came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drain {
    /// Open sessions are closed one after another, evenly spread over this window, so their
    /// clients do not all reconnect to the rest of the fleet in the same instant.
    pub window: Duration,
    /// From the signal, the longest the shutdown may take; whatever is left is abandoned.
    pub timeout: Duration,
}

/// Serves until `shutdown` resolves, then drains: new handshakes are refused with 503 while
/// the listener keeps serving (so `/readyz` answers 503 and polling sessions keep working until
/// their turn), every session is closed within `drain.window` (clients are told and reconnect
/// elsewhere), and it returns once they are gone, at most `drain.timeout` after the signal.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    routes: BoxedFilter<(warp::reply::Response,)>,
    shutdown: impl Future<Output = ()>,
    drain: Drain,
) {
    serve_with(listener, vec![engine], routes, shutdown, drain).await
}

/// [`serve`] in a spawned task with no other routes (anything else answers 404), until the
/// returned sender is used or dropped; sessions are then closed at once. For tests and tools
/// that need an engine on a port and nothing else.
pub fn spawn_alone(listener: TcpListener, engine: Engine) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let not_found = warp::any()
        .map(|| warp::http::StatusCode::NOT_FOUND)
        .map(Reply::into_response)
        .boxed();
    let drain = Drain {
        window: Duration::ZERO,
        timeout: Duration::from_secs(1),
    };
    tokio::spawn(serve(
        listener,
        engine,
        not_found,
        async move {
            let _ = stopped.await;
        },
        drain,
    ));
    stop
}

/// [`serve`] for several engines on distinct paths (the conformance example's two servers).
pub async fn serve_with(
    listener: TcpListener,
    engines: Vec<Engine>,
    routes: BoxedFilter<(warp::reply::Response,)>,
    shutdown: impl Future<Output = ()>,
    drain: Drain,
) {
    let routes = engines.iter().fold(routes, |acc, engine| {
        crate::polling::filter(engine.clone())
            .or(acc)
            .unify()
            .boxed()
    });
    let engines: Arc<[Engine]> = engines.into();
    let accept = accept_loop(listener, engines.clone(), warp::service(routes));
    tokio::pin!(accept);
    tokio::select! {
        _ = &mut accept => return,
        _ = shutdown => {}
    }
    for engine in engines.iter() {
        engine.start_draining();
    }
    let drained = tokio::time::timeout(drain.timeout, close_gradually(&engines, drain.window));
    tokio::select! {
        _ = &mut accept => {}
        done = drained => {
            if done.is_err() {
                let left: usize = engines.iter().map(Engine::session_count).sum();
                tracing::warn!(left, "shutdown timeout reached");
            }
        }
    }
}

/// Accepts connections for ever; each is served on its own task.
async fn accept_loop<S>(listener: TcpListener, engines: Arc<[Engine]>, warp_svc: S)
where
    S: Service<http::Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            addr,
            engines.clone(),
            warp_svc.clone(),
        ));
    }
}

/// Closes the sessions open now at evenly spaced instants over `window` (the first at once),
/// then waits until every one has left the session tables.
async fn close_gradually(engines: &[Engine], window: Duration) {
    let sessions: Vec<Arc<Session>> = engines
        .iter()
        .flat_map(Engine::sessions)
        .filter(|s| !s.is_closed())
        .collect();
    let n = sessions.len();
    tracing::info!(
        sessions = n,
        window_ms = window.as_millis() as u64,
        "draining: closing sessions over the drain window"
    );
    let start = tokio::time::Instant::now();
    for (i, session) in sessions.iter().enumerate() {
        let turn = start + window.mul_f64(i as f64 / n as f64);
        tokio::select! {
            _ = tokio::time::sleep_until(turn) => session.close(CloseReason::ShuttingDown),
            // Gone by itself (the client left): the next one's turn may already have come.
            _ = session.closed() => {}
        }
    }
    drop(sessions);
    // Polling clients fetch their close packet with their next GET: a session waits for it at
    // most a second (also one closed earlier for another reason, which would wait longer).
    // WebSocket tasks finish writing their close frames.
    let settle = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        let sessions = engines.iter().map(Engine::session_count).sum::<usize>();
        let writers = engines.iter().map(Engine::websocket_tasks).sum::<usize>();
        if writers == 0 && (sessions == 0 || tokio::time::Instant::now() >= settle) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("drained");
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
            let engine = engine.clone();
            Either::Left(Box::pin(async move {
                let res = websocket::upgrade(engine, req, Some(addr)).await;
                Ok::<_, Infallible>(res.into_response())
            }))
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
