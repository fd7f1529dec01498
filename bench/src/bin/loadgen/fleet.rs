//! The socket side of the load generator, run by each worker process: the users, where each
//! socket connects from and to, the Engine.IO / Socket.IO (or raw) handshake, reading until the
//! end with latency and delivery counting, and the retry policy of socket.io-client.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gateway_bench::args::Args;
use gateway_bench::clock::{self, now_us};
use gateway_bench::hist::Hist;
use gateway_bench::ws::{self, Kind, WsClient, WsError};
use gateway_bench::Result;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Sio,
    Raw,
}

pub struct User {
    pub cookie: String,
    pub rooms: Vec<String>,
    /// Indices of this user's rooms among the published rooms.
    pub pub_idx: Vec<usize>,
}

pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

/// The published rooms (S2): `<room-prefix>0 .. <room-prefix><room-count - 1>`.
pub fn pub_rooms(args: &Args) -> Result<Vec<String>> {
    let prefix = args.str("room-prefix").unwrap_or("channel:f");
    let count: usize = args.get("room-count", 100)?;
    Ok((0..count).map(|i| format!("{prefix}{i}")).collect())
}

/// Reads the users file: JSON lines `{cookie, userId, rooms}`.
pub fn load_users(file: &str, pub_rooms: &[String]) -> Result<Vec<User>> {
    let index: HashMap<&str, usize> = pub_rooms
        .iter()
        .enumerate()
        .map(|(i, r)| (r.as_str(), i))
        .collect();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| format!("{file}:{}: {e}", n + 1))?;
        let rooms: Vec<String> = v["rooms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let pub_idx = rooms
            .iter()
            .filter_map(|r| index.get(r.as_str()).copied())
            .collect();
        users.push(User {
            cookie: v["cookie"].as_str().unwrap_or_default().to_owned(),
            rooms,
            pub_idx,
        });
    }
    if users.is_empty() {
        return Err(format!("{file}: no users").into());
    }
    Ok(users)
}

/// State of one process's sockets.
pub struct Shared {
    pub mode: Mode,
    pub sio_path: String,
    pub users: Vec<User>,
    /// The published rooms' names (`User::pub_idx` indexes them).
    pub pub_rooms: Vec<String>,
    pub targets: Vec<Target>,
    pub sources: Vec<Ipv4Addr>,
    pub sem: Semaphore,
    pub connect_timeout: Duration,
    pub per_user: usize,
    pub room_members: Vec<AtomicU32>,
    pub connected: AtomicUsize,
    pub gave_up: AtomicUsize,
    pub retries: AtomicU64,
    pub dropped: AtomicU64,
    pub delivered: AtomicU64,
    pub unstamped: AtomicU64,
    failures: Mutex<HashMap<String, u64>>,
    pub latency: Hist,
    /// Milliseconds from a socket's start to its CONNECT answer (storms outlast the latency
    /// histogram's range in microseconds).
    pub connect_time: Hist,
}

impl Shared {
    pub fn new(args: &Args) -> Result<Self> {
        let mode = match args.str("mode").unwrap_or("sio") {
            "sio" => Mode::Sio,
            "raw" => Mode::Raw,
            m => return Err(format!("--mode {m:?}: expected sio or raw").into()),
        };
        let path = args.str("path").unwrap_or("/socket.io/");
        let pub_rooms = pub_rooms(args)?;
        let users = load_users(args.req("users")?, &pub_rooms)?;
        let mut targets = Vec::new();
        for t in args.list::<String>("targets")? {
            let addr = t
                .to_socket_addrs()
                .map_err(|e| format!("--targets {t}: {e}"))?
                .find(SocketAddr::is_ipv4)
                .ok_or_else(|| format!("--targets {t}: no IPv4 address"))?;
            targets.push(Target { addr, host: t });
        }
        if targets.is_empty() {
            return Err("missing --targets".into());
        }
        let n_sources: u8 = args.get("sources", 8)?;
        Ok(Shared {
            mode,
            sio_path: format!("{path}?EIO=4&transport=websocket"),
            users,
            targets,
            sources: (0..n_sources.clamp(1, 250))
                .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
                .collect(),
            sem: Semaphore::new(args.get::<usize>("inflight", 500)?.max(1)),
            connect_timeout: Duration::from_secs_f64(args.get("connect-timeout-s", 20.0)?),
            per_user: args.get::<usize>("per-user", 1)?.max(1),
            room_members: (0..pub_rooms.len()).map(|_| AtomicU32::new(0)).collect(),
            connected: AtomicUsize::new(0),
            gave_up: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
            pub_rooms,
            latency: Hist::default(),
            connect_time: Hist::default(),
        })
    }

    pub fn user(&self, i: usize) -> &User {
        &self.users[(i / self.per_user) % self.users.len()]
    }

    /// The published rooms socket `i`'s user is in.
    pub fn pub_rooms_of(&self, i: usize) -> Vec<&str> {
        self.user(i)
            .pub_idx
            .iter()
            .map(|&r| self.pub_rooms[r].as_str())
            .collect()
    }

    pub fn fail(&self, kind: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *f.entry(kind.to_owned()).or_default() += 1;
    }

    /// Forgets the failure counts (a new storm wave).
    pub fn reset_failures(&self) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.gave_up.store(0, Ordering::Relaxed);
        self.retries.store(0, Ordering::Relaxed);
    }

    fn deliver(&self, payload: &[u8]) {
        match clock::find_stamp(payload) {
            Some(t) => {
                self.latency.record(now_us().saturating_sub(t));
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.unstamped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters (and with `full`, the histograms) as one JSON object.
    pub fn stats_json(&self, full: bool) -> Value {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut v = json!({
            "connected": self.connected.load(Ordering::Relaxed),
            "gave_up": self.gave_up.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "unstamped": self.unstamped.load(Ordering::Relaxed),
            "failures": failures,
            "room_members": self.room_members.iter().map(|m| m.load(Ordering::Relaxed)).collect::<Vec<_>>(),
        });
        if full {
            v["latency"] = json!(self.latency.snapshot().to_sparse());
            v["connect_time"] = json!(self.connect_time.snapshot().to_sparse());
        }
        v
    }
}

/// Counts a connected socket (and its published rooms) until dropped, also when its task is
/// aborted.
pub struct ConnectedGuard {
    sh: Arc<Shared>,
    i: usize,
}

impl ConnectedGuard {
    pub fn new(sh: &Arc<Shared>, i: usize) -> Self {
        sh.connected.fetch_add(1, Ordering::Relaxed);
        for &r in &sh.user(i).pub_idx {
            sh.room_members[r].fetch_add(1, Ordering::Relaxed);
        }
        ConnectedGuard { sh: sh.clone(), i }
    }
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.sh.connected.fetch_sub(1, Ordering::Relaxed);
        for &r in &self.sh.user(self.i).pub_idx {
            self.sh.room_members[r].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Why one connection attempt failed (the failure counters' keys).
pub enum Fail {
    Tcp(std::io::Error),
    Ws(WsError),
    /// The server (or a proxy) closed the connection at this stage of the handshake.
    ClosedBefore(&'static str),
    InvalidSession,
    AuthUnavailable,
    ConnectError,
    Timeout,
}

impl Fail {
    pub fn kind(&self) -> String {
        match self {
            Fail::Tcp(e) => format!("tcp: {}", e.kind()),
            Fail::Ws(WsError::Refused(s)) => format!("http {s}"),
            Fail::Ws(WsError::Io(e)) => format!("io: {}", e.kind()),
            Fail::Ws(WsError::Protocol(m)) => format!("protocol: {m}"),
            Fail::Ws(WsError::Closed) => "closed during handshake".into(),
            Fail::ClosedBefore(stage) => format!("closed before {stage}"),
            Fail::InvalidSession => "connect_error: Invalid session".into(),
            Fail::AuthUnavailable => "connect_error: Auth unavailable".into(),
            Fail::ConnectError => "connect_error: other".into(),
            Fail::Timeout => "timeout".into(),
        }
    }
}

impl Fail {
    /// A CONNECT_ERROR packet (`44{...}`), by the gateway's message.
    pub fn connect_error(packet: &[u8]) -> Fail {
        let text = String::from_utf8_lossy(packet);
        if text.contains("Invalid session") {
            Fail::InvalidSession
        } else if text.contains("Auth unavailable") {
            Fail::AuthUnavailable
        } else {
            Fail::ConnectError
        }
    }
}

impl Fail {
    /// `e`, with a close told apart by the handshake's `stage` it interrupted.
    pub fn at(stage: &'static str) -> impl Fn(WsError) -> Fail {
        move |e| match e {
            WsError::Closed => Fail::ClosedBefore(stage),
            e => Fail::Ws(e),
        }
    }
}

impl From<WsError> for Fail {
    fn from(e: WsError) -> Self {
        Fail::Ws(e)
    }
}

const MAX_ATTEMPTS: u32 = 10;

/// A cheap, fixed pseudo-random number in [0, 1) for socket `i` (and a salt).
pub fn unit(i: usize, salt: u64) -> f64 {
    let x =
        ((i as u64) ^ salt.wrapping_mul(0xff51_afd7_ed55_8ccd)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 40) as f64 / (1u64 << 24) as f64
}

/// socket.io-client's reconnection delay: 1 s doubling up to 5 s, ±50 % randomisation.
fn backoff(attempt: u32, i: usize) -> Duration {
    let base = (1000u64 << attempt.saturating_sub(1).min(3)).min(5000) as f64;
    Duration::from_millis((base * (0.5 + unit(i, u64::from(attempt)))) as u64)
}

async fn open(sh: &Shared, i: usize) -> Result<WsClient, Fail> {
    let user = sh.user(i);
    let target = &sh.targets[(i / 100) % sh.targets.len()];
    let src = sh.sources[i % sh.sources.len()];
    let stream = ws::connect_tcp(Some(src), target.addr)
        .await
        .map_err(Fail::Tcp)?;
    match sh.mode {
        Mode::Sio => {
            let mut ws = WsClient::handshake(
                stream,
                &target.host,
                &sh.sio_path,
                &[("Cookie", user.cookie.as_str())],
            )
            .await?;
            // Engine.IO open packet, then the Socket.IO CONNECT to the main namespace.
            loop {
                let (k, p) = ws.next().await?;
                match k {
                    Kind::Text if ws.payload(&p).first() == Some(&b'0') => break,
                    Kind::Close => return Err(WsError::Closed.into()),
                    _ => {}
                }
            }
            ws.send_text(b"40").await?;
            loop {
                let (k, p) = ws.next().await?;
                if k == Kind::Close {
                    return Err(WsError::Closed.into());
                }
                if k != Kind::Text {
                    continue;
                }
                let b = ws.payload(&p);
                if b.starts_with(b"40") {
                    return Ok(ws);
                }
                if b.starts_with(b"44") {
                    return Err(Fail::connect_error(b));
                }
                if b == b"2" {
                    ws.queue_text(b"3");
                }
            }
        }
        Mode::Raw => {
            let path = format!("/?rooms={}", user.rooms.join(","));
            let mut ws = WsClient::handshake(stream, &target.host, &path, &[]).await?;
            loop {
                let (k, p) = ws.next().await?;
                match k {
                    Kind::Text if ws.payload(&p) == b"ok" => return Ok(ws),
                    Kind::Close => return Err(WsError::Closed.into()),
                    _ => {}
                }
            }
        }
    }
}

enum Action {
    None,
    Pong,
    Deliver,
    End,
}

/// Reads until the connection ends: answers pings, records every stamped event.
async fn serve(sh: &Shared, mut ws: WsClient) {
    loop {
        let Ok((k, p)) = ws.next().await else {
            return;
        };
        let action = match k {
            Kind::Close => Action::End,
            Kind::Binary => Action::None,
            Kind::Text => {
                let b = ws.payload(&p);
                match sh.mode {
                    Mode::Raw => Action::Deliver,
                    Mode::Sio => match (b.first(), b.get(1)) {
                        (Some(b'2'), _) => Action::Pong,
                        (Some(b'4'), Some(b'2')) => Action::Deliver,
                        (Some(b'4'), Some(b'1')) | (Some(b'1'), _) => Action::End,
                        _ => Action::None,
                    },
                }
            }
        };
        match action {
            Action::None => {}
            Action::Pong => ws.queue_text(b"3"),
            Action::Deliver => sh.deliver(ws.payload(&p)),
            Action::End => return,
        }
    }
}

async fn socket_task(sh: Arc<Shared>, i: usize, spread: Duration) {
    let spawned = now_us();
    if !spread.is_zero() {
        // socket.io-client's first reconnection attempt comes after a randomised delay: the
        // clients of a restarted server arrive spread over about a second.
        tokio::time::sleep(spread.mul_f64(unit(i, 0))).await;
    }
    let mut attempt = 0u32;
    loop {
        let Ok(permit) = sh.sem.acquire().await else {
            return;
        };
        let r = tokio::time::timeout(sh.connect_timeout, open(&sh, i)).await;
        drop(permit);
        let fail = match r {
            Ok(Ok(ws)) => {
                sh.connect_time
                    .record(now_us().saturating_sub(spawned) / 1000);
                let _guard = ConnectedGuard::new(&sh, i);
                serve(&sh, ws).await;
                sh.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(Err(f)) => f,
            Err(_) => Fail::Timeout,
        };
        sh.fail(&fail.kind());
        attempt += 1;
        if matches!(fail, Fail::InvalidSession) || attempt >= MAX_ATTEMPTS {
            sh.gave_up.fetch_add(1, Ordering::Relaxed);
            return;
        }
        sh.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(attempt, i)).await;
    }
}

/// The sockets of one process (their tasks).
#[derive(Default)]
pub struct Fleet {
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    pub fn spawn(&mut self, sh: &Arc<Shared>, ids: impl Iterator<Item = usize>, spread: Duration) {
        for i in ids {
            self.tasks
                .push(tokio::spawn(socket_task(sh.clone(), i, spread)));
        }
    }

    /// Closes every socket (abrupt TCP close, like a dropped network).
    pub async fn close_all(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}
