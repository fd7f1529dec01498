//! The load generator of the benchmarks (BENCHMARKS.md). It holds tens of thousands of
//! WebSocket sockets spread over several loopback source addresses and worker processes, speaks
//! Engine.IO v4 / Socket.IO v5 (`--mode sio`, with each user's session cookie) or the raw
//! server's protocol (`--mode raw`), publishes in the `@socket.io/redis-emitter` wire format
//! through Valkey with a timestamp in every payload, and measures the servers from `/proc`. One
//! scenario per run:
//!
//!   bench-loadgen idle   --levels 10000,20000,50000 ...   S1: RSS per socket at each level
//!   bench-loadgen fanout --sockets 10000 --rates ... ...   S2: publish rate ramp, fixed-rate latency
//!   bench-loadgen storm  --sockets 20000 ...               S3: everyone (re)connects at once
//!   bench-loadgen fanout --everyone true ...               S4: one message to every socket
//!
//! Results are JSON lines on stdout (one per measurement); progress goes to stderr. `--help`
//! lists the options.

mod chaos;
mod coord;
mod fleet;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coord::{Stats, Workers};
use gateway_bench::args::Args;
use gateway_bench::clock::{self, now_us};
use gateway_bench::hist::Snapshot;
use gateway_bench::procstat::{self, Sample};
use gateway_bench::{emitter, http, resp, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const HELP: &str = "\
bench-loadgen <idle|fanout|storm> [options]      (the scenario comes first)

common:
  --users FILE            JSON lines {cookie, userId, rooms}
  --per-user K            sockets per user (default: the run's sockets / users, rounded up);
                          socket i uses user (i / K) mod N: a user's tabs connect together
  --targets H:P,H:P       servers; socket i goes to target (i / 100) mod T
  --mode sio|raw          Socket.IO over WebSocket with the cookie (default), or the raw server
  --path /socket.io/      Engine.IO path (sio)
  --sources N             source addresses 127.0.0.2 .. 127.0.0.(N+1) (default 8)
  --workers W             worker processes holding the sockets (default: 1 per 15,000 sockets)
  --inflight N            handshakes in flight at once, all workers together (default 500)
  --connect-timeout-s S   per attempt (default 20); failed attempts retry with socket.io-client's
                          backoff (1 s doubling to 5 s, +-50 %), at most 10 attempts
  --server-pids P,Q       processes measured as the server (CPU summed, RSS summed)
  --app-pid P             the fixture app (CPU reported on the side)
  --valkey-pid P          Valkey (CPU reported on the side)
  --app URL               fixture app base URL (its /test/stats counts the app calls)
  --gc-urls U,V           GET before each RSS reading (the Node baseline's /bench/gc)
  --label k=v,k=v         copied into every result line
  --profile-cmd CMD       run `sh -c \"exec CMD\"` ({tag} replaced) during the measured window
                          of S2's fixed phase and S3's first wave, stopped with SIGINT at its end
                          (e.g. perf record -p PIDS -o perf-{tag}.data)
idle (S1):
  --levels 10000,20000,50000   --settle-s 5
  --idle-s 0              then, after the last level, RSS again once the sockets idled this long
fanout (S2):
  --sockets N  --redis H:P  --prefix socket.io  --room-prefix channel:f  --room-count 100
  --rates R1,R2,...       publish rates (publishes/s) of the ramp; it stops at saturation
  --step-s 4  --warmup-s 1  --fixed-rate R|auto|0  --fixed-s 10  --payload-bytes 160
  --ramp true|false       --interactive-p99-ms 50 (the summary's best step with p99 within it)
  --everyone true         S4: publish to no room (`io.emit`: every socket of every server)
                          instead of round-robin over the rooms; results say S4
storm (S3):
  --sockets N  --waves 1  --spread-s 1  --pause-s 2  --storm-timeout-s 180
                          every socket starts at a random time within --spread-s (like
                          socket.io-client's randomised first reconnection delay), at most
                          --inflight handshakes at once; later waves drop every socket first
worker (driven by a coordinator over stdin/stdout, one JSON line per command and answer;
        the fault matrix and soak, tests/node/chaos/, drive workers directly):
  --worker K/W            this worker holds the sockets i with i mod W = K
  --record FILE           chaos mode: what every socket gets (see chaos.rs)
  --send-every-s S        chaos mode: sockets that send do so about every S seconds (0: never)
  --senders-one-in N      chaos mode: sockets i with i mod N = 0 send (default 10)
  commands: {cmd: connect, from, to, spread_s}, {cmd: chaos, from, to | slots: [i...], spread_s},
            {cmd: drop|leave, all | slots: [i...]},
            {cmd: sending, on}, {cmd: stats, full}, {cmd: flush}, {cmd: close}, {cmd: exit}
";

/// Sockets per worker process (under the 20,000 open files a process may have here).
const PER_WORKER: usize = 15_000;

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
    gateway_bench::run_main(run(argv))
}

async fn run(argv: Vec<String>) -> Result<()> {
    let scenario = argv[0].clone();
    let common: Vec<String> = argv[1..].to_vec();
    let args = Args::parse(common.iter().cloned())?;
    match scenario.as_str() {
        "worker" => worker(&args).await,
        "idle" | "fanout" | "storm" => {
            let total = match scenario.as_str() {
                "idle" => args.list::<usize>("levels")?.into_iter().max().unwrap_or(0),
                _ => args.get("sockets", 0)?,
            };
            let mut ctx = Ctx::new(&args, &common, total).await?;
            let r = match scenario.as_str() {
                "idle" => idle(&mut ctx, &args).await,
                "fanout" => fanout(&mut ctx, &args).await,
                _ => storm(&mut ctx, &args).await,
            };
            ctx.workers.exit().await;
            r
        }
        other => Err(format!("unknown scenario {other:?} (idle, fanout or storm first)").into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Worker process: holds a share of the sockets, answers the coordinator's commands.

async fn worker(args: &Args) -> Result<()> {
    let (k, w) = args
        .req("worker")?
        .split_once('/')
        .and_then(|(k, w)| Some((k.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
        .filter(|(k, w)| k < w)
        .ok_or("--worker K/W")?;
    let sh = Arc::new(fleet::Shared::new(args)?);
    let mut fleet = fleet::Fleet::default();
    // Chaos mode (RELIABILITY.md): recovering sockets that record what they get.
    let chaos = Arc::new(chaos::Chaos::new(sh.clone(), args)?);
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let cmd: Value = serde_json::from_str(&line)?;
        let reply = match cmd["cmd"].as_str() {
            Some("connect") => {
                let from = cmd["from"].as_u64().unwrap_or(0) as usize;
                let to = cmd["to"].as_u64().unwrap_or(0) as usize;
                let spread = Duration::from_secs_f64(cmd["spread_s"].as_f64().unwrap_or(0.0));
                fleet.spawn(&sh, (from..to).filter(|i| i % w == k), spread);
                json!({"ok": true})
            }
            Some("close") => {
                fleet.close_all().await;
                chaos.stop().await;
                json!({"ok": true})
            }
            Some("chaos") => {
                let spread = Duration::from_secs_f64(cmd["spread_s"].as_f64().unwrap_or(0.0));
                let slots: Vec<usize> = match cmd["slots"].as_array() {
                    // Given slots (e.g. sockets that left, starting again as new tabs).
                    Some(list) => list
                        .iter()
                        .filter_map(|v| v.as_u64().map(|x| x as usize))
                        .collect(),
                    None => {
                        let from = cmd["from"].as_u64().unwrap_or(0) as usize;
                        let to = cmd["to"].as_u64().unwrap_or(0) as usize;
                        (from..to).collect()
                    }
                };
                chaos.spawn(slots.into_iter().filter(|i| i % w == k), spread);
                json!({"ok": true})
            }
            Some("drop" | "leave") => chaos.control(&cmd),
            Some("sending") => {
                chaos.set_sending(cmd["on"].as_bool().unwrap_or(true));
                json!({"ok": true})
            }
            Some("flush") => {
                chaos.flush();
                json!({"ok": true})
            }
            Some("reset") => {
                sh.reset_failures();
                json!({"ok": true})
            }
            Some("stats") => {
                let mut v = sh.stats_json(cmd["full"].as_bool().unwrap_or(false));
                v["chaos"] = chaos.stats_json();
                v
            }
            Some("exit") => break,
            _ => json!({"error": format!("unknown command {line}")}),
        };
        out.write_all(format!("{reply}\n").as_bytes()).await?;
        out.flush().await?;
    }
    fleet.close_all().await;
    chaos.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Coordinator

struct Ctx {
    workers: Workers,
    profile_cmd: Option<String>,
    server_pids: Vec<String>,
    app_pid: Option<String>,
    valkey_pid: Option<String>,
    app_url: Option<String>,
    gc_urls: Vec<String>,
    labels: serde_json::Map<String, Value>,
    pub_rooms: Vec<String>,
}

impl Ctx {
    async fn new(args: &Args, common: &[String], total: usize) -> Result<Self> {
        let pub_rooms = fleet::pub_rooms(args)?;
        let users = fleet::load_users(args.req("users")?, &pub_rooms)?.len();
        let per_user = match args.get::<usize>("per-user", 0)? {
            0 => total.div_ceil(users).max(1),
            k => k,
        };
        let n_workers = match args.get::<usize>("workers", 0)? {
            0 => total.div_ceil(PER_WORKER).max(1),
            w => w,
        };
        eprintln!("{users} users, {per_user} socket(s) per user, {n_workers} worker process(es)");
        let workers =
            Workers::spawn(common, n_workers, per_user, args.get("inflight", 500)?).await?;
        let mut labels = serde_json::Map::new();
        for kv in args.list::<String>("label")? {
            if let Some((k, v)) = kv.split_once('=') {
                labels.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
        Ok(Ctx {
            workers,
            profile_cmd: args.str("profile-cmd").map(str::to_owned),
            server_pids: args.list("server-pids")?,
            app_pid: args.str("app-pid").map(str::to_owned),
            valkey_pid: args.str("valkey-pid").map(str::to_owned),
            app_url: args.str("app").map(|s| s.trim_end_matches('/').to_owned()),
            gc_urls: args.list("gc-urls")?,
            labels,
            pub_rooms,
        })
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

    /// The load generator itself: this process and its workers.
    fn client(&self) -> Result<Sample> {
        let mut pids = self.workers.pids();
        pids.push("self".into());
        procstat::sample_all(&pids)
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

    /// Starts the profiler command, if any, for the window called `tag`.
    fn start_profile(&self, tag: &str) -> Option<tokio::process::Child> {
        let cmd = self.profile_cmd.as_ref()?.replace("{tag}", tag);
        match tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .kill_on_drop(true)
            .spawn()
        {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warning: cannot start the profiler: {e}");
                None
            }
        }
    }

    /// Stops the profiler with SIGINT (perf then writes its data) and waits for it.
    async fn stop_profile(&self, child: Option<tokio::process::Child>) {
        let Some(mut child) = child else { return };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on the pid of a child we started and have not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
        }
        if tokio::time::timeout(Duration::from_secs(120), child.wait())
            .await
            .is_err()
        {
            eprintln!("warning: the profiler did not stop within 120 s");
        }
    }

    /// Waits until `want` sockets are connected or gave up; returns the time it took, whether
    /// all of them got there, and the last counters.
    async fn wait_connected(
        &mut self,
        want: usize,
        limit: Duration,
    ) -> Result<(Duration, bool, Stats)> {
        let t0 = Instant::now();
        let mut last_log = Instant::now();
        loop {
            let s = self.workers.stats(false).await?;
            let (c, g) = (s.connected as usize, s.gave_up as usize);
            if c + g >= want {
                return Ok((t0.elapsed(), c >= want, s));
            }
            if t0.elapsed() > limit {
                return Ok((t0.elapsed(), false, s));
            }
            if last_log.elapsed() > Duration::from_secs(10) {
                eprintln!("  ... {c}/{want} connected, {g} gave up");
                last_log = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

fn side_json(a: Option<Sample>, b: Option<Sample>, window_s: f64) -> Value {
    match (a, b) {
        (Some(a), Some(b)) => cpu_json(&a.since(&b), window_s),
        _ => Value::Null,
    }
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

async fn idle(ctx: &mut Ctx, args: &Args) -> Result<()> {
    let levels: Vec<usize> = args.list("levels")?;
    if levels.is_empty() {
        return Err("missing --levels".into());
    }
    let settle = Duration::from_secs_f64(args.get("settle-s", 5.0)?);
    let limit = Duration::from_secs_f64(args.get("level-timeout-s", 600.0)?);
    let idle_for = Duration::from_secs_f64(args.get("idle-s", 0.0)?);
    ctx.gc().await;
    let base = ctx.server()?;
    eprintln!("S1: server RSS before any socket: {} KiB", base.rss_kib);
    let mut have = 0;
    for &level in &levels {
        if level <= have {
            continue;
        }
        let before = ctx.server()?;
        let app0 = ctx.side(&ctx.app_pid);
        ctx.workers.connect(have, level, Duration::ZERO).await?;
        let (took, complete, s) = ctx.wait_connected(level, limit).await?;
        have = level;
        let window = took.as_secs_f64();
        let connect_cpu = ctx.server()?.since(&before);
        let app_cpu = side_json(ctx.side(&ctx.app_pid), app0, window);
        tokio::time::sleep(settle).await;
        let mut row = rss_row(ctx, &base, &format!("(of {level}) in {window:.1}s")).await?;
        row.extend(json_fields(json!({
            "level": level,
            "complete": complete,
            "gave_up": s.gave_up,
            "connect_s": round(window, 2),
            "connect_cpu": cpu_json(&connect_cpu, window),
            "server_cpu_us_per_connect": us_per(connect_cpu.cpu_s(), (level - levels.iter().copied().filter(|l| *l < level).max().unwrap_or(0)) as u64),
            "app_cpu": app_cpu,
            "failures": s.failures,
        })));
        ctx.emit(Value::Object(row));
    }
    if !idle_for.is_zero() {
        // The same sockets after a long idle spell: what a connect leaves behind for a while
        // (the app answers' caches, presence's batches) is gone, what a socket holds stays.
        tokio::time::sleep(idle_for).await;
        let secs = idle_for.as_secs();
        let mut row = rss_row(ctx, &base, &format!("idle for {secs}s")).await?;
        row.extend(json_fields(json!({ "level": have, "idle_s": secs })));
        ctx.emit(Value::Object(row));
    }
    Ok(())
}

/// The server's RSS over `base` once it has collected garbage, per connected socket: printed
/// with `what` and returned as an S1 row's fields.
async fn rss_row(
    ctx: &mut Ctx,
    base: &Sample,
    what: &str,
) -> Result<serde_json::Map<String, Value>> {
    ctx.gc().await;
    let now = ctx.server()?;
    let connected = ctx.workers.stats(false).await?.connected;
    let delta = now.rss_kib.saturating_sub(base.rss_kib);
    let per_socket = delta as f64 / connected.max(1) as f64;
    eprintln!(
        "S1: {connected} sockets {what}, RSS {} KiB (+{delta} KiB, {per_socket:.2} KiB/socket)",
        now.rss_kib
    );
    Ok(json_fields(json!({
        "scenario": "S1",
        "sockets": connected,
        "rss_base_kib": base.rss_kib,
        "rss_kib": now.rss_kib,
        "rss_kib_per_socket": if connected > 0 { json!(round(per_socket, 2)) } else { Value::Null },
    })))
}

/// The fields of a `json!({...})` object.
fn json_fields(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(fields) => fields,
        _ => serde_json::Map::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// S2: fan-out

struct Publisher {
    write: tokio::net::tcp::OwnedWriteHalf,
    replies: Arc<std::sync::atomic::AtomicU64>,
    prefix: String,
    payload_pad: String,
    seq: u64,
    /// Members of each published room (from the workers' last counters).
    members: Vec<u64>,
    /// Sockets connected (from the workers' last counters), when publishing to everyone.
    everyone: Option<u64>,
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
        let replies = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = replies.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(read);
            while let Ok(v) = resp::read_value(&mut r).await {
                if let resp::Value::Error(e) = v {
                    eprintln!("valkey error: {}", String::from_utf8_lossy(&e));
                }
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Ok(Publisher {
            write,
            replies,
            prefix: prefix.to_owned(),
            payload_pad: "x".repeat(payload_bytes.saturating_sub(130)),
            seq: 0,
            members: Vec::new(),
            everyone: None,
            expected: 0,
            published: 0,
            buf: Vec::new(),
        })
    }

    /// Queues one `message:new` to `room` (index `r`) in the emitter format, stamped now; to
    /// every socket instead when publishing to everyone.
    fn queue(&mut self, room: &str, r: usize) -> Result<()> {
        let room = if self.everyone.is_some() { "" } else { room };
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
        self.expected += match self.everyone {
            Some(connected) => connected,
            None => self.members.get(r).copied().unwrap_or(0),
        };
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
    stats: Stats,
    expected: u64,
    published: u64,
    server: Sample,
    app: Option<Sample>,
    valkey: Option<Sample>,
    client: Sample,
}

async fn snap(ctx: &mut Ctx, p: &mut Publisher) -> Result<Snap> {
    let stats = ctx.workers.stats(true).await?;
    p.members.clone_from(&stats.room_members);
    p.everyone = p.everyone.map(|_| stats.connected);
    Ok(Snap {
        at: Instant::now(),
        expected: p.expected,
        published: p.published,
        stats,
        server: ctx.server()?,
        app: ctx.side(&ctx.app_pid),
        valkey: ctx.side(&ctx.valkey_pid),
        client: ctx.client()?,
    })
}

struct PhaseResult {
    p99_us: u64,
    p50_us: u64,
    delivered_per_s: f64,
    expected_per_s: f64,
    publish_rate: f64,
    saturated: bool,
}

/// Publishes at `rate`/s round-robin over the rooms for `warmup + dur`, measuring the `dur`
/// window; then waits for stragglers.
async fn phase(
    ctx: &mut Ctx,
    p: &mut Publisher,
    phase_name: &str,
    rate: f64,
    warmup: Duration,
    dur: Duration,
    next_room: &mut usize,
) -> Result<PhaseResult> {
    let rooms = ctx.pub_rooms.clone();
    // Room sizes as they are now (also refreshed at the window's start).
    let stats = ctx.workers.stats(false).await?;
    p.members = stats.room_members;
    p.everyone = p.everyone.map(|_| stats.connected);
    let t0 = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut start: Option<Snap> = None;
    let mut profiler = None;
    loop {
        tick.tick().await;
        let el = t0.elapsed();
        if start.is_none() && el >= warmup {
            start = Some(snap(ctx, p).await?);
            if phase_name == "fixed" {
                profiler = ctx.start_profile("S2-fixed");
            }
        }
        if el >= warmup + dur {
            break;
        }
        let due = (rate * el.as_secs_f64()) as u64;
        let mut batch = 0;
        while sent < due && batch < 2000 {
            let r = *next_room % rooms.len();
            p.queue(&rooms[r], r)?;
            *next_room += 1;
            sent += 1;
            batch += 1;
        }
        p.flush().await?;
    }
    let end = snap(ctx, p).await?;
    ctx.stop_profile(profiler).await;
    let start = start.ok_or("phase too short")?;
    let window = end.at.duration_since(start.at).as_secs_f64();
    let delivered = end.stats.delivered - start.stats.delivered;
    let expected = end.expected - start.expected;
    let published = end.published - start.published;
    let server = end.server.since(&start.server);
    let client = end.client.since(&start.client);
    let lat = match (&end.stats.latency, &start.stats.latency) {
        (Some(e), Some(s)) => e.since(s),
        _ => Snapshot::empty(),
    };
    let delivered_per_s = delivered as f64 / window;
    let expected_per_s = expected as f64 / window;
    let publish_rate = published as f64 / window;
    let saturated = delivered_per_s < 0.9 * expected_per_s || publish_rate < 0.9 * rate;
    // Stragglers: wait until deliveries stop (at most 10 s) so the next phase starts clean.
    let mut last = end.stats.delivered;
    let drain0 = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let d = ctx.workers.stats(false).await?.delivered;
        if d == last || drain0.elapsed() > Duration::from_secs(10) {
            break;
        }
        last = d;
    }
    let scenario = if p.everyone.is_some() { "S4" } else { "S2" };
    eprintln!(
        "{scenario} {phase_name} rate {rate:.0}/s: delivered {delivered_per_s:.0}/s of {expected_per_s:.0}/s, server {:.2} µs/msg, p50 {} µs p99 {} µs{}",
        if delivered > 0 { server.cpu_s() * 1e6 / delivered as f64 } else { 0.0 },
        lat.quantile(0.5).unwrap_or(0),
        lat.quantile(0.99).unwrap_or(0),
        if saturated { " (saturated)" } else { "" }
    );
    ctx.emit(json!({
        "scenario": scenario,
        "phase": phase_name,
        "rate": rate,
        "window_s": round(window, 3),
        "publish_rate": round(publish_rate, 1),
        "delivered": delivered,
        "delivered_per_s": round(delivered_per_s, 1),
        "expected_per_s": round(expected_per_s, 1),
        "delivery_ratio": if expected > 0 { json!(round(delivered as f64 / expected as f64, 4)) } else { Value::Null },
        "saturated": saturated,
        "sockets": end.stats.connected,
        "dropped_sockets": end.stats.dropped,
        "server_cpu_us_per_msg": us_per(server.cpu_s(), delivered),
        "server_user_us_per_msg": us_per(server.user_s, delivered),
        "server_sys_us_per_msg": us_per(server.sys_s, delivered),
        "server_cpu": cpu_json(&server, window),
        "client_cpu": cpu_json(&client, window),
        "app_cpu": side_json(end.app, start.app, window),
        "valkey_cpu": side_json(end.valkey, start.valkey, window),
        "server_rss_kib": end.server.rss_kib,
        "latency": latency_json(&lat),
    }));
    Ok(PhaseResult {
        p99_us: lat.quantile(0.99).unwrap_or(0),
        p50_us: lat.quantile(0.5).unwrap_or(0),
        delivered_per_s,
        expected_per_s,
        publish_rate,
        saturated,
    })
}

async fn fanout(ctx: &mut Ctx, args: &Args) -> Result<()> {
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
    let everyone = args.str("everyone").is_some_and(|v| v == "true");
    if everyone {
        p.everyone = Some(0);
    }
    let scenario = if everyone { "S4" } else { "S2" };

    ctx.workers.connect(0, sockets, Duration::ZERO).await?;
    let (took, complete, s) = ctx
        .wait_connected(sockets, Duration::from_secs(600))
        .await?;
    let connected = s.connected;
    let sizes = s.room_members.clone();
    let mean_room = sizes.iter().sum::<u64>() as f64 / sizes.len().max(1) as f64;
    eprintln!(
        "S2: {connected}/{sockets} sockets in {:.1}s; {} published rooms, {mean_room:.1} members on average",
        took.as_secs_f64(),
        sizes.len()
    );
    if !complete || connected == 0 {
        return Err(format!("only {connected}/{sockets} sockets connected").into());
    }
    // Let the connect burst's work (and the servers' GC) settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut next_room = 0usize;
    let mut fixed_rate: Option<f64> = match fixed.as_str() {
        "auto" => None,
        v => Some(
            v.parse::<f64>()
                .map_err(|e| format!("--fixed-rate {v:?}: {e}"))?,
        ),
    };
    if let Some(r) = fixed_rate.filter(|r| *r > 0.0) {
        phase(ctx, &mut p, "fixed", r, warmup, fixed_s, &mut next_room).await?;
    }
    let mut best: Option<(f64, f64)> = None; // (delivered/s, rate)
                                             // The best step whose p99 stayed within `interactive_p99` (a chat message late by more
                                             // than that is noticed).
    let interactive_p99 = args.get::<u64>("interactive-p99-ms", 50)? * 1000;
    let mut best_interactive: Option<(f64, f64)> = None;
    if ramp {
        for &rate in &rates {
            let r = phase(ctx, &mut p, "ramp", rate, warmup, step, &mut next_room).await?;
            if best.is_none_or(|(d, _)| r.delivered_per_s > d) {
                best = Some((r.delivered_per_s, rate));
            }
            if !r.saturated
                && r.p99_us <= interactive_p99
                && best_interactive.is_none_or(|(d, _)| r.delivered_per_s > d)
            {
                best_interactive = Some((r.delivered_per_s, rate));
            }
            if r.p50_us > 1_000_000 {
                eprintln!("S2: median latency above 1 s at {rate:.0}/s: stopping the ramp");
                break;
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
            phase(ctx, &mut p, "fixed", r, warmup, fixed_s, &mut next_room).await?;
        }
    }
    let end = ctx.workers.stats(false).await?;
    ctx.emit(json!({
        "scenario": scenario,
        "phase": "summary",
        "sockets": connected,
        "connect_s": round(took.as_secs_f64(), 2),
        "rooms": sizes.len(),
        "mean_room_size": round(mean_room, 2),
        "max_delivered_per_s": best.map(|b| round(b.0, 1)),
        "max_at_rate": best.map(|b| b.1),
        "interactive_p99_ms": interactive_p99 / 1000,
        "max_interactive_delivered_per_s": best_interactive.map(|b| round(b.0, 1)),
        "max_interactive_at_rate": best_interactive.map(|b| b.1),
        "fixed_rate": fixed_rate,
        "fixed_rate_auto": auto_rate,
        "replies": p.replies.load(std::sync::atomic::Ordering::Relaxed),
        "unstamped": end.unstamped,
        "dropped_sockets": end.dropped,
        "failures": end.failures,
    }));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// S3: connect storm

async fn storm(ctx: &mut Ctx, args: &Args) -> Result<()> {
    let sockets: usize = args.get("sockets", 20_000)?;
    let waves: usize = args.get("waves", 1)?;
    let pause = Duration::from_secs_f64(args.get("pause-s", 2.0)?);
    let limit = Duration::from_secs_f64(args.get("storm-timeout-s", 180.0)?);
    let spread = Duration::from_secs_f64(args.get("spread-s", 1.0)?);
    for wave in 1..=waves {
        if wave > 1 {
            ctx.workers.close_all().await?;
            // Let the servers process the disconnects outside the measured window.
            tokio::time::sleep(pause).await;
        }
        ctx.workers.reset().await?;
        ctx.reset_app_stats().await;
        let s0 = ctx.workers.stats(true).await?;
        let server0 = ctx.server()?;
        let app0 = ctx.side(&ctx.app_pid);
        let client0 = ctx.client()?;
        let profiler = if wave == 1 {
            ctx.start_profile("S3-wave1")
        } else {
            None
        };
        ctx.workers.connect(0, sockets, spread).await?;
        let (took, complete, _) = ctx.wait_connected(sockets, limit).await?;
        let server = ctx.server()?.since(&server0);
        ctx.stop_profile(profiler).await;
        let app = side_json(ctx.side(&ctx.app_pid), app0, took.as_secs_f64());
        let client = ctx.client()?.since(&client0);
        let calls = ctx.app_stats().await;
        let s = ctx.workers.stats(true).await?;
        let ct = match (&s.connect_time, &s0.connect_time) {
            (Some(e), Some(b)) => e.since(b),
            _ => Snapshot::empty(),
        };
        let connected = s.connected;
        let window = took.as_secs_f64();
        eprintln!(
            "S3 wave {wave}: {connected}/{sockets} in {window:.2}s, server {:.0} µs/connect, app calls {}",
            if connected > 0 { server.cpu_s() * 1e6 / connected as f64 } else { 0.0 },
            calls.as_ref().map_or("?".into(), Value::to_string)
        );
        ctx.emit(json!({
            "scenario": "S3",
            "wave": wave,
            "sockets": connected,
            "complete": complete,
            "all_in_rooms_s": round(window, 3),
            "connect_ms": {"p50": ct.quantile(0.5), "p99": ct.quantile(0.99), "max": ct.max()},
            "app_calls": calls,
            "server_cpu_us_per_connect": us_per(server.cpu_s(), connected),
            "server_user_us_per_connect": us_per(server.user_s, connected),
            "server_sys_us_per_connect": us_per(server.sys_s, connected),
            "server_cpu": cpu_json(&server, window),
            "app_cpu": app,
            "client_cpu": cpu_json(&client, window),
            "retries": s.retries,
            "gave_up": s.gave_up,
            "failures": s.failures,
        }));
    }
    Ok(())
}
