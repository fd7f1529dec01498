//! The load generator of the benchmarks (BENCHMARKS.md). It holds tens of thousands of
//! WebSocket sockets spread over several loopback source addresses, speaks Engine.IO v4 /
//! Socket.IO v5 (`--mode sio`, with each user's session cookie) or the raw server's protocol
//! (`--mode raw`), publishes in the `@socket.io/redis-emitter` wire format through Valkey with a
//! timestamp in every payload, and measures the servers from `/proc`. One scenario per run:
//!
//!   bench-loadgen idle   --levels 10000,20000,50000 ...   S1: RSS per socket at each level
//!   bench-loadgen fanout --sockets 10000 --rates ... ...   S2: publish rate ramp, fixed-rate latency
//!   bench-loadgen storm  --sockets 20000 --waves 2 ...     S3: everyone (re)connects at once
//!
//! Results are JSON lines on stdout (one per measurement); progress goes to stderr. `--help`
//! lists the options.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_bench::args::Args;
use gateway_bench::clock::{self, now_us};
use gateway_bench::hist::{Hist, Snapshot};
use gateway_bench::procstat::{self, Sample};
use gateway_bench::ws::{self, Kind, WsClient, WsError};
use gateway_bench::{emitter, http, resp, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

const HELP: &str = "\
bench-loadgen <idle|fanout|storm> [options]

common:
  --users FILE            JSON lines {cookie, userId, rooms}; socket i uses user i mod N
  --targets H:P,H:P       servers; socket i goes to target (i / 100) mod T
  --mode sio|raw          Socket.IO over WebSocket with the cookie (default), or the raw server
  --path /socket.io/      Engine.IO path (sio)
  --sources N             source addresses 127.0.0.2 .. 127.0.0.(N+1) (default 8)
  --inflight N            handshakes in flight at once (default 500)
  --connect-timeout-s S   per attempt (default 20); failed attempts retry with socket.io-client's backoff
  --server-pids P,Q       processes measured as the server (CPU summed, RSS summed)
  --app-pid P             the fixture app (CPU reported on the side)
  --valkey-pid P          Valkey (CPU reported on the side)
  --app URL               fixture app base URL (its /test/stats counts the app calls)
  --gc-urls U,V           GET before each RSS reading (the Node baseline's /bench/gc)
  --label k=v,k=v         copied into every result line
idle (S1):
  --levels 10000,20000,50000   --settle-s 5
fanout (S2):
  --sockets N  --redis H:P  --prefix socket.io  --room-prefix channel:f  --room-count 100
  --rates R1,R2,...       publish rates (publishes/s) of the ramp; it stops at saturation
  --step-s 4  --warmup-s 1  --fixed-rate R|auto|0  --fixed-s 10  --payload-bytes 160
  --ramp true|false
storm (S3):
  --sockets N  --waves 2  --pause-s 2  --storm-timeout-s 180
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return if argv.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(argv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(argv: Vec<String>) -> Result<()> {
    let args = Args::parse(argv)?;
    let scenario = args
        .positional
        .first()
        .cloned()
        .ok_or("missing scenario: idle, fanout or storm")?;
    clock::now_us();
    let sh = Arc::new(Shared::new(&args)?);
    match scenario.as_str() {
        "idle" => idle(&sh, &args).await,
        "fanout" => fanout(&sh, &args).await,
        "storm" => storm(&sh, &args).await,
        other => Err(format!("unknown scenario {other:?}").into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared state of the fleet of sockets

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sio,
    Raw,
}

struct User {
    cookie: String,
    rooms: Vec<String>,
    /// Indices of this user's rooms among the published rooms.
    pub_idx: Vec<usize>,
}

struct Target {
    addr: SocketAddr,
    host: String,
}

struct Shared {
    mode: Mode,
    sio_path: String,
    users: Vec<User>,
    targets: Vec<Target>,
    sources: Vec<Ipv4Addr>,
    sem: Semaphore,
    connect_timeout: Duration,
    server_pids: Vec<String>,
    app_pid: Option<String>,
    valkey_pid: Option<String>,
    app_url: Option<String>,
    gc_urls: Vec<String>,
    labels: serde_json::Map<String, Value>,
    pub_rooms: Vec<String>,
    room_members: Vec<AtomicU32>,
    // counters
    connected: AtomicUsize,
    gave_up: AtomicUsize,
    retries: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    unstamped: AtomicU64,
    failures: Mutex<HashMap<String, u64>>,
    latency: Hist,
    connect_time: Hist,
}

impl Shared {
    fn new(args: &Args) -> Result<Self> {
        let mode = match args.str("mode").unwrap_or("sio") {
            "sio" => Mode::Sio,
            "raw" => Mode::Raw,
            m => return Err(format!("--mode {m:?}: expected sio or raw").into()),
        };
        let path = args.str("path").unwrap_or("/socket.io/");
        let sio_path = format!("{path}?EIO=4&transport=websocket");
        let room_prefix = args.str("room-prefix").unwrap_or("channel:f");
        let room_count: usize = args.get("room-count", 100)?;
        let pub_rooms: Vec<String> = (0..room_count)
            .map(|i| format!("{room_prefix}{i}"))
            .collect();
        let pub_index: HashMap<&str, usize> = pub_rooms
            .iter()
            .enumerate()
            .map(|(i, r)| (r.as_str(), i))
            .collect();
        let users_file = args.req("users")?;
        let text = std::fs::read_to_string(users_file)
            .map_err(|e| format!("cannot read {users_file}: {e}"))?;
        let mut users = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("{users_file}:{}: {e}", n + 1))?;
            let cookie = v["cookie"].as_str().unwrap_or_default().to_owned();
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
                .filter_map(|r| pub_index.get(r.as_str()).copied())
                .collect();
            users.push(User {
                cookie,
                rooms,
                pub_idx,
            });
        }
        if users.is_empty() {
            return Err(format!("{users_file}: no users").into());
        }
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
        let sources = (0..n_sources.clamp(1, 250))
            .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
            .collect();
        let mut labels = serde_json::Map::new();
        for kv in args.list::<String>("label")? {
            if let Some((k, v)) = kv.split_once('=') {
                labels.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
        Ok(Shared {
            mode,
            sio_path,
            users,
            targets,
            sources,
            sem: Semaphore::new(args.get("inflight", 500)?),
            connect_timeout: Duration::from_secs_f64(args.get("connect-timeout-s", 20.0)?),
            server_pids: args.list("server-pids")?,
            app_pid: args.str("app-pid").map(str::to_owned),
            valkey_pid: args.str("valkey-pid").map(str::to_owned),
            app_url: args.str("app").map(|s| s.trim_end_matches('/').to_owned()),
            gc_urls: args.list("gc-urls")?,
            labels,
            room_members: pub_rooms.iter().map(|_| AtomicU32::new(0)).collect(),
            pub_rooms,
            connected: AtomicUsize::new(0),
            gave_up: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
            latency: Hist::default(),
            connect_time: Hist::default(),
        })
    }

    fn user(&self, i: usize) -> &User {
        &self.users[i % self.users.len()]
    }

    fn fail(&self, kind: &str) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        *f.entry(kind.to_owned()).or_default() += 1;
    }

    fn failures_json(&self) -> Value {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        json!(*f)
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

    /// One result line: the labels, then `fields`.
    fn emit(&self, fields: Value) {
        let mut line = self.labels.clone();
        if let Value::Object(m) = fields {
            line.extend(m);
        }
        println!("{}", Value::Object(line));
    }

    fn server(&self) -> Result<Sample> {
        procstat::sample_all(&self.server_pids)
    }

    fn side(&self, pid: &Option<String>) -> Option<Sample> {
        pid.as_ref().and_then(|p| procstat::sample(p).ok())
    }

    async fn gc(&self) {
        for u in &self.gc_urls {
            if let Err(e) = http::request("GET", u, None).await {
                eprintln!("warning: {u}: {e}");
            }
        }
        if !self.gc_urls.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn app_stats(&self) -> Option<Value> {
        let url = format!("{}/test/stats", self.app_url.as_ref()?);
        match http::get_json(&url).await {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        }
    }

    async fn reset_app_stats(&self) {
        if let Some(base) = &self.app_url {
            if let Err(e) = http::post_json(&format!("{base}/test/stats/reset"), "{}").await {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// Counts a connected socket (and its published rooms) until dropped, also when its task is
/// aborted.
struct ConnectedGuard {
    sh: Arc<Shared>,
    i: usize,
}

impl ConnectedGuard {
    fn new(sh: &Arc<Shared>, i: usize) -> Self {
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

// ---------------------------------------------------------------------------------------------
// One socket

enum Fail {
    Tcp(std::io::Error),
    Ws(WsError),
    InvalidSession,
    AuthUnavailable,
    ConnectError,
    Timeout,
}

impl Fail {
    fn kind(&self) -> String {
        match self {
            Fail::Tcp(e) => format!("tcp: {}", e.kind()),
            Fail::Ws(WsError::Refused(s)) => format!("http {s}"),
            Fail::Ws(WsError::Io(e)) => format!("io: {}", e.kind()),
            Fail::Ws(WsError::Protocol(m)) => format!("protocol: {m}"),
            Fail::Ws(WsError::Closed) => "closed during handshake".into(),
            Fail::InvalidSession => "connect_error: Invalid session".into(),
            Fail::AuthUnavailable => "connect_error: Auth unavailable".into(),
            Fail::ConnectError => "connect_error: other".into(),
            Fail::Timeout => "timeout".into(),
        }
    }
}

impl From<WsError> for Fail {
    fn from(e: WsError) -> Self {
        Fail::Ws(e)
    }
}

const MAX_ATTEMPTS: u32 = 10;

/// socket.io-client's reconnection delay: 1 s doubling up to 5 s, ±50 % randomisation.
fn backoff(attempt: u32, i: usize) -> Duration {
    let base = (1000u64 << attempt.saturating_sub(1).min(3)).min(5000) as f64;
    // A cheap per-socket pseudo-random factor in [0.5, 1.5).
    let x = ((i as u64 ^ u64::from(attempt)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f64
        / (1u64 << 24) as f64;
    Duration::from_millis((base * (0.5 + x)) as u64)
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
                    let text = String::from_utf8_lossy(b);
                    return Err(if text.contains("Invalid session") {
                        Fail::InvalidSession
                    } else if text.contains("Auth unavailable") {
                        Fail::AuthUnavailable
                    } else {
                        Fail::ConnectError
                    });
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

async fn socket_task(sh: Arc<Shared>, i: usize) {
    let spawned = now_us();
    let mut attempt = 0u32;
    loop {
        let Ok(permit) = sh.sem.acquire().await else {
            return;
        };
        let r = tokio::time::timeout(sh.connect_timeout, open(&sh, i)).await;
        drop(permit);
        let fail = match r {
            Ok(Ok(ws)) => {
                sh.connect_time.record(now_us().saturating_sub(spawned));
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

/// The sockets of a run (their tasks).
#[derive(Default)]
struct Fleet {
    tasks: Vec<JoinHandle<()>>,
}

impl Fleet {
    fn spawn(&mut self, sh: &Arc<Shared>, range: std::ops::Range<usize>) {
        for i in range {
            self.tasks.push(tokio::spawn(socket_task(sh.clone(), i)));
        }
    }

    /// Closes every socket (abrupt TCP close, like a dropped network).
    async fn close_all(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// Waits until `want` sockets are connected or gave up; returns the time it took.
async fn wait_connected(sh: &Shared, want: usize, limit: Duration) -> (Duration, bool) {
    let t0 = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let c = sh.connected.load(Ordering::Relaxed);
        let g = sh.gave_up.load(Ordering::Relaxed);
        if c + g >= want {
            return (t0.elapsed(), true);
        }
        if t0.elapsed() > limit {
            return (t0.elapsed(), false);
        }
        if last_log.elapsed() > Duration::from_secs(5) {
            eprintln!("  ... {c}/{want} connected, {g} gave up");
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn us_per(cpu_s: f64, n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(round(cpu_s * 1e6 / n as f64, 2))
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

fn cpu_json(s: &Sample, window_s: f64) -> Value {
    json!({
        "user_s": round(s.user_s, 3),
        "sys_s": round(s.sys_s, 3),
        "util": round(s.cpu_s() / window_s.max(1e-9), 3),
    })
}

fn latency_json(s: &Snapshot) -> Value {
    let q = |x| s.quantile(x).map_or(Value::Null, |v| json!(v));
    json!({
        "count": s.count(),
        "p50_us": q(0.5),
        "p90_us": q(0.9),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": s.max(),
        "mean_us": s.mean().map(|m| round(m, 1)),
    })
}

// ---------------------------------------------------------------------------------------------
// S1: idle sockets

async fn idle(sh: &Arc<Shared>, args: &Args) -> Result<()> {
    let levels: Vec<usize> = args.list("levels")?;
    if levels.is_empty() {
        return Err("missing --levels".into());
    }
    let settle = Duration::from_secs_f64(args.get("settle-s", 5.0)?);
    let limit = Duration::from_secs_f64(args.get("level-timeout-s", 300.0)?);
    sh.gc().await;
    let base = sh.server()?;
    eprintln!("S1: server RSS before any socket: {} KiB", base.rss_kib);
    let mut fleet = Fleet::default();
    let mut have = 0;
    for &level in &levels {
        if level <= have {
            continue;
        }
        let before = sh.server()?;
        let app0 = sh.side(&sh.app_pid);
        fleet.spawn(sh, have..level);
        let (took, complete) = wait_connected(sh, level, limit).await;
        have = level;
        let connect_cpu = sh.server()?.since(&before);
        let app_cpu = match (sh.side(&sh.app_pid), app0) {
            (Some(a), Some(b)) => Some(a.since(&b)),
            _ => None,
        };
        tokio::time::sleep(settle).await;
        sh.gc().await;
        let now = sh.server()?;
        let connected = sh.connected.load(Ordering::Relaxed);
        let delta = now.rss_kib.saturating_sub(base.rss_kib);
        eprintln!(
            "S1: {connected}/{level} sockets in {:.1}s, RSS {} KiB (+{delta} KiB)",
            took.as_secs_f64(),
            now.rss_kib
        );
        sh.emit(json!({
            "scenario": "S1",
            "level": level,
            "sockets": connected,
            "complete": complete,
            "gave_up": sh.gave_up.load(Ordering::Relaxed),
            "connect_s": round(took.as_secs_f64(), 2),
            "rss_base_kib": base.rss_kib,
            "rss_kib": now.rss_kib,
            "rss_kib_per_socket": if connected > 0 { json!(round(delta as f64 / connected as f64, 2)) } else { Value::Null },
            "connect_cpu": cpu_json(&connect_cpu, took.as_secs_f64()),
            "app_cpu_s": app_cpu.map(|a| round(a.cpu_s(), 2)),
            "failures": sh.failures_json(),
        }));
    }
    fleet.close_all().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// S2: fan-out

struct Publisher {
    write: tokio::net::tcp::OwnedWriteHalf,
    replies: Arc<AtomicU64>,
    prefix: String,
    payload_pad: String,
    seq: u64,
    /// Deliveries the publishes so far should cause (members of the room at publish time).
    expected: u64,
    published: u64,
    buf: Vec<u8>,
}

impl Publisher {
    async fn connect(addr: &str, prefix: &str, payload_bytes: usize) -> Result<Self> {
        let s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to valkey at {addr}: {e}"))?;
        s.set_nodelay(true)?;
        let (read, write) = s.into_split();
        let replies = Arc::new(AtomicU64::new(0));
        let counter = replies.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(read);
            while let Ok(v) = resp::read_value(&mut r).await {
                if let resp::Value::Error(e) = v {
                    eprintln!("valkey error: {}", String::from_utf8_lossy(&e));
                }
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Publisher {
            write,
            replies,
            prefix: prefix.to_owned(),
            payload_pad: "x".repeat(payload_bytes.saturating_sub(130)),
            seq: 0,
            expected: 0,
            published: 0,
            buf: Vec::new(),
        })
    }

    /// Queues one `message:new` to room `r` in the emitter format, stamped now.
    fn queue(&mut self, sh: &Shared, r: usize) -> Result<()> {
        let room = &sh.pub_rooms[r];
        self.seq += 1;
        let mut content = String::with_capacity(self.payload_pad.len() + 24);
        clock::stamp(&mut content, now_us());
        content.push(' ');
        content.push_str(&self.payload_pad);
        let arg = json!({
            "id": format!("b{}", self.seq),
            "channelId": room.rsplit(':').next().unwrap_or(room),
            "author": {"id": "bench", "name": "Bench"},
            "content": content,
            "createdAt": "2025-01-01T00:00:00.000Z",
        });
        let msg = emitter::encode_emit(room, "message:new", &arg)?;
        let channel = emitter::room_channel(&self.prefix, room);
        resp::command(&mut self.buf, &[b"PUBLISH", channel.as_bytes(), &msg]);
        self.expected += u64::from(sh.room_members[r].load(Ordering::Relaxed));
        self.published += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.write.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

struct Snap {
    at: Instant,
    delivered: u64,
    expected: u64,
    published: u64,
    hist: Snapshot,
    server: Sample,
    app: Option<Sample>,
    valkey: Option<Sample>,
    client: Sample,
}

fn snap(sh: &Shared, p: &Publisher) -> Result<Snap> {
    Ok(Snap {
        at: Instant::now(),
        delivered: sh.delivered.load(Ordering::Relaxed),
        expected: p.expected,
        published: p.published,
        hist: sh.latency.snapshot(),
        server: sh.server()?,
        app: sh.side(&sh.app_pid),
        valkey: sh.side(&sh.valkey_pid),
        client: procstat::sample("self")?,
    })
}

struct PhaseResult {
    delivered_per_s: f64,
    expected_per_s: f64,
    publish_rate: f64,
    saturated: bool,
}

/// Publishes at `rate`/s round-robin over the rooms for `warmup + dur`, measuring the `dur`
/// window; then waits for stragglers.
async fn phase(
    sh: &Shared,
    p: &mut Publisher,
    phase_name: &str,
    rate: f64,
    warmup: Duration,
    dur: Duration,
    next_room: &mut usize,
) -> Result<PhaseResult> {
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut start: Option<Snap> = None;
    let rooms = sh.pub_rooms.len();
    loop {
        tick.tick().await;
        let el = t0.elapsed();
        if start.is_none() && el >= warmup {
            start = Some(snap(sh, p)?);
        }
        if el >= warmup + dur {
            break;
        }
        let due = (rate * el.as_secs_f64()) as u64;
        let mut batch = 0;
        while sent < due && batch < 2000 {
            p.queue(sh, *next_room % rooms)?;
            *next_room += 1;
            sent += 1;
            batch += 1;
        }
        p.flush().await?;
    }
    let end = snap(sh, p)?;
    let start = start.ok_or("phase too short")?;
    let window = end.at.duration_since(start.at).as_secs_f64();
    let delivered = end.delivered - start.delivered;
    let expected = end.expected - start.expected;
    let published = end.published - start.published;
    let server = end.server.since(&start.server);
    let client = end.client.since(&start.client);
    let lat = end.hist.since(&start.hist);
    let delivered_per_s = delivered as f64 / window;
    let expected_per_s = expected as f64 / window;
    let publish_rate = published as f64 / window;
    let saturated = delivered_per_s < 0.9 * expected_per_s || publish_rate < 0.9 * rate;
    // Stragglers: wait until deliveries stop (at most 10 s) so the next phase starts clean.
    let mut last = sh.delivered.load(Ordering::Relaxed);
    let drain0 = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let d = sh.delivered.load(Ordering::Relaxed);
        if d == last || drain0.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = d;
    }
    let side = |a: &Option<Sample>, b: &Option<Sample>| match (a, b) {
        (Some(a), Some(b)) => cpu_json(&a.since(b), window),
        _ => Value::Null,
    };
    eprintln!(
        "S2 {phase_name} rate {rate:.0}/s: delivered {delivered_per_s:.0}/s of {expected_per_s:.0}/s, server {:.2} µs/msg, p50 {:?} µs p99 {:?} µs{}",
        if delivered > 0 { server.cpu_s() * 1e6 / delivered as f64 } else { 0.0 },
        lat.quantile(0.5),
        lat.quantile(0.99),
        if saturated { " (saturated)" } else { "" }
    );
    sh.emit(json!({
        "scenario": "S2",
        "phase": phase_name,
        "rate": rate,
        "window_s": round(window, 3),
        "publish_rate": round(publish_rate, 1),
        "delivered": delivered,
        "delivered_per_s": round(delivered_per_s, 1),
        "expected_per_s": round(expected_per_s, 1),
        "delivery_ratio": if expected > 0 { json!(round(delivered as f64 / expected as f64, 4)) } else { Value::Null },
        "saturated": saturated,
        "sockets": sh.connected.load(Ordering::Relaxed),
        "dropped_sockets": sh.dropped.load(Ordering::Relaxed),
        "server_cpu_us_per_msg": us_per(server.cpu_s(), delivered),
        "server_user_us_per_msg": us_per(server.user_s, delivered),
        "server_sys_us_per_msg": us_per(server.sys_s, delivered),
        "server_cpu": cpu_json(&server, window),
        "client_cpu": cpu_json(&client, window),
        "app_cpu": side(&end.app, &start.app),
        "valkey_cpu": side(&end.valkey, &start.valkey),
        "server_rss_kib": end.server.rss_kib,
        "latency": latency_json(&lat),
    }));
    Ok(PhaseResult {
        delivered_per_s,
        expected_per_s,
        publish_rate,
        saturated,
    })
}

async fn fanout(sh: &Arc<Shared>, args: &Args) -> Result<()> {
    let sockets: usize = args.get("sockets", 10_000)?;
    let redis = args.req("redis")?;
    let prefix = args.str("prefix").unwrap_or("socket.io");
    let step = Duration::from_secs_f64(args.get("step-s", 4.0)?);
    let warmup = Duration::from_secs_f64(args.get("warmup-s", 1.0)?);
    let fixed_s = Duration::from_secs_f64(args.get("fixed-s", 10.0)?);
    let ramp = args.str("ramp").is_none_or(|v| v != "false");
    let mut rates: Vec<f64> = args.list("rates")?;
    if rates.is_empty() {
        rates = vec![100.0, 200.0, 400.0, 700.0, 1000.0, 1500.0, 2200.0, 3200.0];
    }
    let fixed = args.str("fixed-rate").unwrap_or("auto").to_owned();
    let mut p = Publisher::connect(redis, prefix, args.get("payload-bytes", 160)?).await?;

    let mut fleet = Fleet::default();
    fleet.spawn(sh, 0..sockets);
    let (took, complete) = wait_connected(sh, sockets, Duration::from_secs(300)).await;
    let connected = sh.connected.load(Ordering::Relaxed);
    let sizes: Vec<u32> = sh
        .room_members
        .iter()
        .map(|m| m.load(Ordering::Relaxed))
        .collect();
    let mean_room = sizes.iter().map(|&s| f64::from(s)).sum::<f64>() / sizes.len().max(1) as f64;
    eprintln!(
        "S2: {connected}/{sockets} sockets in {:.1}s; {} published rooms, {mean_room:.1} members on average",
        took.as_secs_f64(),
        sizes.len()
    );
    if !complete || connected == 0 {
        fleet.close_all().await;
        return Err(format!("only {connected}/{sockets} sockets connected").into());
    }
    // Let the connect burst's work (and the servers' GC) settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut next_room = 0usize;
    let run_fixed = |rate: f64| rate > 0.0;
    let mut fixed_rate: Option<f64> = match fixed.as_str() {
        "auto" => None,
        v => Some(
            v.parse::<f64>()
                .map_err(|e| format!("--fixed-rate {v:?}: {e}"))?,
        ),
    };
    if let Some(r) = fixed_rate.filter(|r| run_fixed(*r)) {
        phase(sh, &mut p, "fixed", r, warmup, fixed_s, &mut next_room).await?;
    }
    let mut best: Option<(f64, f64)> = None; // (delivered/s, rate)
    if ramp {
        for &rate in &rates {
            let r = phase(sh, &mut p, "ramp", rate, warmup, step, &mut next_room).await?;
            if best.is_none_or(|(d, _)| r.delivered_per_s > d) {
                best = Some((r.delivered_per_s, rate));
            }
            if r.saturated {
                eprintln!(
                    "S2: saturated at {rate:.0}/s (published {:.0}/s, delivered {:.0} of {:.0}/s)",
                    r.publish_rate, r.delivered_per_s, r.expected_per_s
                );
                break;
            }
        }
    }
    let mut auto_rate = None;
    if fixed_rate.is_none() {
        if let Some((d, _)) = best {
            let r = (d / mean_room.max(1.0) / 2.0).round();
            auto_rate = Some(r);
            fixed_rate = Some(r);
            phase(sh, &mut p, "fixed", r, warmup, fixed_s, &mut next_room).await?;
        }
    }
    sh.emit(json!({
        "scenario": "S2",
        "phase": "summary",
        "sockets": connected,
        "connect_s": round(took.as_secs_f64(), 2),
        "rooms": sizes.len(),
        "mean_room_size": round(mean_room, 2),
        "max_delivered_per_s": best.map(|b| round(b.0, 1)),
        "max_at_rate": best.map(|b| b.1),
        "fixed_rate": fixed_rate,
        "fixed_rate_auto": auto_rate,
        "replies": p.replies.load(Ordering::Relaxed),
        "unstamped": sh.unstamped.load(Ordering::Relaxed),
        "dropped_sockets": sh.dropped.load(Ordering::Relaxed),
        "failures": sh.failures_json(),
    }));
    fleet.close_all().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// S3: connect storm

async fn storm(sh: &Arc<Shared>, args: &Args) -> Result<()> {
    let sockets: usize = args.get("sockets", 20_000)?;
    let waves: usize = args.get("waves", 2)?;
    let pause = Duration::from_secs_f64(args.get("pause-s", 2.0)?);
    let limit = Duration::from_secs_f64(args.get("storm-timeout-s", 180.0)?);
    let mut fleet = Fleet::default();
    for wave in 1..=waves {
        if wave > 1 {
            fleet.close_all().await;
            // Let the servers process the disconnects outside the measured window.
            tokio::time::sleep(pause).await;
        }
        sh.gave_up.store(0, Ordering::Relaxed);
        sh.retries.store(0, Ordering::Relaxed);
        sh.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        sh.reset_app_stats().await;
        let server0 = sh.server()?;
        let app0 = sh.side(&sh.app_pid);
        let client0 = procstat::sample("self")?;
        let ct0 = sh.connect_time.snapshot();
        fleet.spawn(sh, 0..sockets);
        let (took, complete) = wait_connected(sh, sockets, limit).await;
        let server = sh.server()?.since(&server0);
        let app = match (sh.side(&sh.app_pid), app0) {
            (Some(a), Some(b)) => Some(a.since(&b)),
            _ => None,
        };
        let client = procstat::sample("self")?.since(&client0);
        let stats = sh.app_stats().await;
        let connected = sh.connected.load(Ordering::Relaxed);
        let ct = sh.connect_time.snapshot().since(&ct0);
        let window = took.as_secs_f64();
        eprintln!(
            "S3 wave {wave}: {connected}/{sockets} in {window:.2}s, server {:.0} µs/connect, app calls {}",
            if connected > 0 { server.cpu_s() * 1e6 / connected as f64 } else { 0.0 },
            stats.as_ref().map_or("?".into(), Value::to_string)
        );
        let q = |x| ct.quantile(x).map(|v| round(v as f64 / 1000.0, 1));
        sh.emit(json!({
            "scenario": "S3",
            "wave": wave,
            "sockets": connected,
            "complete": complete,
            "all_in_rooms_s": round(window, 3),
            "connect_ms": {"p50": q(0.5), "p99": q(0.99), "max": ct.max().map(|v| round(v as f64 / 1000.0, 1))},
            "app_calls": stats,
            "server_cpu_us_per_connect": us_per(server.cpu_s(), connected as u64),
            "server_user_us_per_connect": us_per(server.user_s, connected as u64),
            "server_sys_us_per_connect": us_per(server.sys_s, connected as u64),
            "server_cpu": cpu_json(&server, window),
            "app_cpu": app.map(|a| cpu_json(&a, window)),
            "client_cpu": cpu_json(&client, window),
            "retries": sh.retries.load(Ordering::Relaxed),
            "gave_up": sh.gave_up.load(Ordering::Relaxed),
            "failures": sh.failures_json(),
        }));
    }
    fleet.close_all().await;
    Ok(())
}
