//! The chaos mode of the workers (RELIABILITY.md): sockets that behave like socket.io-client
//! 4.8 with connection state recovery, and write down everything a checker needs to prove that
//! no recoverable message was lost or delivered twice.
//!
//! Each slot is one browser tab: it connects over WebSocket with its user's cookies (the
//! session's, and nginx's `sio_affinity` as a browser that polled first has it), answers
//! heartbeats, and when its connection ends it reconnects with socket.io-client's backoff
//! (1 s doubling to 5 s, ±50 %, never giving up), sending `{pid, offset}` in its CONNECT so the
//! server can restore it; refused with `Auth unavailable`, it tries again after 2-5 s as the
//! deploy kit's client snippet does (over a new connection, where the snippet reuses its
//! Engine.IO connection). `recovered` means the CONNECT reply carried the pid it asked for.
//! Some slots also send `message:send` with an acknowledgement.
//!
//! Checked traffic is `message:new` whose content is `ck <src> <seq> <room> <sent_ms>`: `src`
//! is `e<k>` for a publisher on the emitter, `c<slot>` for a slot's own sends. The record file
//! gets one line per fact, times in Unix milliseconds:
//!
//!   R <slot> <room,room>                 the checked rooms the slot's user is in
//!   C <slot> <t> new|recovered|fresh <sid>   a CONNECT answered (fresh: recovery was asked, not granted)
//!   D <slot> <t> <why>                   the connection ended
//!   M <slot> <t> <src> <seq> <room> <offset|->   a checked message arrived (`-`: without offset)
//!   S <slot> <t> <seq> <room> ok|err|unknown     the slot's own send and its ack
//!
//! `tests/node/chaos/check.mjs` reads these files with the publishers' own records.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_bench::args::Args;
use gateway_bench::ws::{self, Kind, WsClient, WsError};
use gateway_bench::Result;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fleet::{self, Fail, Shared};

/// Unix time in milliseconds (shared with the Node side, which uses `Date.now()`).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The record file (see the module docs); lines from all slots of this worker, buffered.
struct Recorder(Option<Mutex<BufWriter<File>>>);

impl Recorder {
    fn open(path: Option<&str>) -> Result<Self> {
        Ok(Recorder(match path {
            None => None,
            Some(p) => Some(Mutex::new(BufWriter::with_capacity(
                1 << 16,
                File::create(p).map_err(|e| format!("cannot create {p}: {e}"))?,
            ))),
        }))
    }

    fn line(&self, args: std::fmt::Arguments<'_>) {
        if let Some(w) = &self.0 {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let _ = w.write_fmt(args);
            let _ = w.write_all(b"\n");
        }
    }

    fn flush(&self) {
        if let Some(w) = &self.0 {
            let _ = w.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }
}

/// What the coordinator asks of one slot.
const CTL_NONE: u8 = 0;
/// Reset the TCP connection (a network failure); the slot reconnects and recovers.
const CTL_DROP: u8 = 1;
/// Close like `socket.close()` (Socket.IO DISCONNECT, then the connection) and stop.
const CTL_LEAVE: u8 = 2;

#[derive(Default)]
struct SlotCtl {
    cmd: AtomicU8,
    wake: Notify,
}

/// The chaos state of one worker process.
pub struct Chaos {
    sh: Arc<Shared>,
    rec: Recorder,
    /// Slots that send: those with `slot % senders_one_in == 0`, each about every `send_every`.
    senders_one_in: usize,
    send_every: Option<Duration>,
    sending: AtomicBool,
    slots: Mutex<Vec<(usize, Arc<SlotCtl>)>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Each slot's last send sequence, kept when its task ends: a slot that starts again (a
    /// new tab) goes on from there, so its messages' ids `c<slot>:<seq>` stay unique.
    last_seq: Mutex<HashMap<usize, u64>>,
    connecting: AtomicUsize,
    sessions_new: AtomicU64,
    sessions_recovered: AtomicU64,
    sessions_fresh: AtomicU64,
    checked: AtomicU64,
    unlogged: AtomicU64,
    other_events: AtomicU64,
    sends: AtomicU64,
    acks_ok: AtomicU64,
    acks_err: AtomicU64,
    acks_unknown: AtomicU64,
    /// Largest publish-to-receive delay (ms) of a checked message since the last `stats`.
    max_latency_ms: AtomicU64,
}

impl Chaos {
    pub fn new(sh: Arc<Shared>, args: &Args) -> Result<Self> {
        let every: f64 = args.get("send-every-s", 0.0)?;
        Ok(Chaos {
            sh,
            rec: Recorder::open(args.str("record"))?,
            senders_one_in: args.get::<usize>("senders-one-in", 10)?.max(1),
            send_every: (every > 0.0).then(|| Duration::from_secs_f64(every)),
            sending: AtomicBool::new(true),
            slots: Mutex::default(),
            tasks: Mutex::default(),
            last_seq: Mutex::default(),
            connecting: AtomicUsize::new(0),
            sessions_new: AtomicU64::new(0),
            sessions_recovered: AtomicU64::new(0),
            sessions_fresh: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            other_events: AtomicU64::new(0),
            sends: AtomicU64::new(0),
            acks_ok: AtomicU64::new(0),
            acks_err: AtomicU64::new(0),
            acks_unknown: AtomicU64::new(0),
            max_latency_ms: AtomicU64::new(0),
        })
    }

    /// Starts slots `ids`, each after a random delay below `spread`.
    pub fn spawn(self: &Arc<Self>, ids: impl Iterator<Item = usize>, spread: Duration) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget slots whose task ended (they left): a slot may start again.
        let mut k = 0;
        while k < tasks.len() {
            if tasks[k].is_finished() {
                tasks.swap_remove(k);
                slots.swap_remove(k);
            } else {
                k += 1;
            }
        }
        for i in ids {
            let ctl = Arc::new(SlotCtl::default());
            slots.push((i, ctl.clone()));
            tasks.push(tokio::spawn(slot_task(self.clone(), i, ctl, spread)));
        }
    }

    /// Sends `cmd` to the slots `pick` selects; returns how many.
    fn command(&self, cmd: u8, pick: impl Fn(usize) -> bool) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for (i, ctl) in slots.iter() {
            if pick(*i) {
                ctl.cmd.store(cmd, Ordering::Release);
                ctl.wake.notify_one();
                n += 1;
            }
        }
        n
    }

    /// `{"cmd":"drop"|"leave", "all":true}` or `{"slots":[...]}`.
    pub fn control(&self, cmd: &Value) -> Value {
        let code = match cmd["cmd"].as_str() {
            Some("drop") => CTL_DROP,
            _ => CTL_LEAVE,
        };
        let n = if cmd["all"].as_bool() == Some(true) {
            self.command(code, |_| true)
        } else {
            let wanted: std::collections::HashSet<usize> = cmd["slots"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_u64().map(|x| x as usize))
                        .collect()
                })
                .unwrap_or_default();
            self.command(code, |i| wanted.contains(&i))
        };
        json!({"ok": true, "slots": n})
    }

    pub fn set_sending(&self, on: bool) {
        self.sending.store(on, Ordering::Release);
    }

    pub fn flush(&self) {
        self.rec.flush();
    }

    /// Stops every slot at once (no close handshake) and waits for the tasks.
    pub async fn stop(&self) {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.rec.flush();
    }

    pub fn stats_json(&self) -> Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "slots": self.slots.lock().unwrap_or_else(|e| e.into_inner()).len(),
            "connecting": self.connecting.load(Ordering::Relaxed),
            "sessions_new": n(&self.sessions_new),
            "sessions_recovered": n(&self.sessions_recovered),
            "sessions_fresh": n(&self.sessions_fresh),
            "checked": n(&self.checked),
            "unlogged": n(&self.unlogged),
            "other_events": n(&self.other_events),
            "sends": n(&self.sends),
            "acks_ok": n(&self.acks_ok),
            "acks_err": n(&self.acks_err),
            "acks_unknown": n(&self.acks_unknown),
            "max_latency_ms": self.max_latency_ms.swap(0, Ordering::Relaxed),
        })
    }
}

/// A small per-slot random source (xorshift), seeded from the slot and the clock.
struct Rng(u64);

impl Rng {
    fn new(i: usize) -> Self {
        Rng((i as u64 ^ now_ms().rotate_left(17)).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// socket.io-client's reconnection delay for its `attempt`-th try (0-based): 1 s × 2^attempt,
/// ±50 %, at most 5 s (engine.io-client's Backoff with its defaults).
fn backoff(attempt: u32, rng: &mut Rng) -> Duration {
    let ms = 1000f64 * 2f64.powi(attempt.min(8) as i32);
    let r = rng.unit();
    let deviation = (r * 0.5 * ms).floor();
    let ms = if ((r * 10.0).floor() as u64) & 1 == 0 {
        ms - deviation
    } else {
        ms + deviation
    };
    Duration::from_millis(ms.min(5000.0) as u64)
}

/// What a slot remembers across connections, as socket.io-client does.
struct SlotState {
    pid: Option<String>,
    offset: Option<String>,
    /// Index into the targets; moves on after a failed attempt (a load balancer would try
    /// another instance; with one target, nginx, it stays).
    target: usize,
    seq: u64,
    /// The checked room this slot sends to.
    send_room: Option<String>,
}

/// An open Socket.IO connection and what came with its CONNECT reply.
struct Conn {
    ws: WsClient,
    sid: String,
    pid: Option<String>,
    /// Events that arrived before the CONNECT reply (a recovery's missed packets), in order.
    early: Vec<Vec<u8>>,
    /// pingInterval + pingTimeout of the open packet: socket.io-client closes the connection
    /// when no ping came for that long (a frozen server).
    ping_limit: Duration,
}

/// Longest wait for the CONNECT reply. socket.io-client sets none (its `timeout` covers the
/// Engine.IO connection); the server closes a session without a namespace after its own
/// connect timeout (45 s by default), so this only ends a wait the server forgot.
const CONNECT_REPLY_LIMIT: Duration = Duration::from_secs(60);

/// The Engine.IO connection (within `connect_timeout`, as socket.io-client's `timeout`), then
/// the Socket.IO CONNECT and its reply.
async fn open(sh: &Shared, i: usize, st: &SlotState) -> Result<Conn, Fail> {
    let (ws, ping_limit) = tokio::time::timeout(sh.connect_timeout, open_engine(sh, i, st))
        .await
        .map_err(|_| Fail::Timeout)??;
    tokio::time::timeout(CONNECT_REPLY_LIMIT, connect(ws, ping_limit, st))
        .await
        .map_err(|_| Fail::Timeout)?
}

/// TCP, the WebSocket upgrade and the Engine.IO open packet; returns the connection and
/// pingInterval + pingTimeout.
async fn open_engine(sh: &Shared, i: usize, st: &SlotState) -> Result<(WsClient, Duration), Fail> {
    let user = sh.user(i);
    let target = &sh.targets[st.target % sh.targets.len()];
    let src = sh.sources[i % sh.sources.len()];
    let stream = ws::connect_tcp(Some(src), target.addr)
        .await
        .map_err(Fail::Tcp)?;
    // A browser also sends the affinity cookie nginx gave it (deploy/nginx.conf): one per user,
    // so its reconnects go to the same instance while it lives.
    let cookie = format!("{}; sio_affinity=u{}", user.cookie, i / sh.per_user);
    let mut ws = WsClient::handshake(stream, &target.host, &sh.sio_path, &[("Cookie", &cookie)])
        .await
        .map_err(Fail::at("the upgrade answer"))?;
    let ping_limit = loop {
        let (k, p) = ws.next().await.map_err(Fail::at("the open packet"))?;
        match k {
            Kind::Text if ws.payload(&p).first() == Some(&b'0') => {
                let open: Value =
                    serde_json::from_slice(&ws.payload(&p)[1..]).unwrap_or(Value::Null);
                let ms = |k: &str, d: u64| open[k].as_u64().unwrap_or(d);
                break Duration::from_millis(
                    ms("pingInterval", 25_000) + ms("pingTimeout", 20_000),
                );
            }
            Kind::Close => return Err(Fail::ClosedBefore("the open packet")),
            _ => {}
        }
    };
    Ok((ws, ping_limit))
}

/// The CONNECT (with `{pid, offset}` once the slot has a pid: socket.io-client leaves the
/// offset out while it has none) and its reply.
async fn connect(mut ws: WsClient, ping_limit: Duration, st: &SlotState) -> Result<Conn, Fail> {
    let connect = match (&st.pid, &st.offset) {
        (Some(pid), Some(offset)) => format!("40{}", json!({"pid": pid, "offset": offset})),
        (Some(pid), None) => format!("40{}", json!({ "pid": pid })),
        (None, _) => "40".to_owned(),
    };
    ws.send_text(connect.as_bytes()).await?;
    let mut early = Vec::new();
    loop {
        // Pongs answered below go out before each wait: a CONNECT answered slowly (the app
        // slow in a storm) must not cost the connection its heartbeat.
        ws.flush().await.map_err(Fail::at("the CONNECT reply"))?;
        let (k, p) = ws.next().await.map_err(Fail::at("the CONNECT reply"))?;
        if k == Kind::Close {
            return Err(Fail::ClosedBefore("the CONNECT reply"));
        }
        if k != Kind::Text {
            continue;
        }
        let b = ws.payload(&p);
        if let Some(body) = b.strip_prefix(b"40") {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let sid = v["sid"].as_str().unwrap_or("?").to_owned();
            let pid = v["pid"].as_str().map(str::to_owned);
            return Ok(Conn {
                ws,
                sid,
                pid,
                early,
                ping_limit,
            });
        }
        if b.starts_with(b"44") {
            return Err(Fail::connect_error(b));
        }
        if b.starts_with(b"42") {
            early.push(b.to_vec());
        } else if b == b"2" {
            ws.queue_text(b"3");
        } else if b == b"1" {
            return Err(Fail::ClosedBefore("the CONNECT reply"));
        }
    }
}

/// Why a connection ended.
enum End {
    /// Reset on purpose ([`CTL_DROP`]).
    Dropped,
    /// Closed on purpose ([`CTL_LEAVE`]): the slot stops.
    Left,
    /// The server or the network ended it.
    Lost(String),
}

/// Counts a slot as connecting while it lives (also when its task is aborted).
struct Connecting<'a>(&'a AtomicUsize);

impl<'a> Connecting<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Connecting(c)
    }
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn slot_task(ch: Arc<Chaos>, i: usize, ctl: Arc<SlotCtl>, spread: Duration) {
    let sh = ch.sh.clone();
    let mut rng = Rng::new(i);
    let rooms = sh.pub_rooms_of(i);
    ch.rec.line(format_args!("R {i} {}", rooms.join(",")));
    let mut st = SlotState {
        pid: None,
        offset: None,
        target: i / 100,
        seq: ch
            .last_seq
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&i)
            .copied()
            .unwrap_or(0),
        send_room: rooms.first().map(|r| (*r).to_owned()),
    };
    if !spread.is_zero() {
        tokio::time::sleep(spread.mul_f64(rng.unit())).await;
    }
    // Failed attempts since the last connection (socket.io-client's backoff.attempts).
    let mut attempt = 0u32;
    loop {
        let connecting = Connecting::new(&ch.connecting);
        let Ok(permit) = sh.sem.acquire().await else {
            return;
        };
        let r = open(&sh, i, &st).await;
        drop(permit);
        let fail = match r {
            Ok(conn) => {
                drop(connecting);
                let kind = match (&st.pid, &conn.pid) {
                    (None, _) => {
                        ch.sessions_new.fetch_add(1, Ordering::Relaxed);
                        "new"
                    }
                    (Some(a), Some(b)) if a == b => {
                        ch.sessions_recovered.fetch_add(1, Ordering::Relaxed);
                        "recovered"
                    }
                    _ => {
                        ch.sessions_fresh.fetch_add(1, Ordering::Relaxed);
                        "fresh"
                    }
                };
                ch.rec
                    .line(format_args!("C {i} {} {kind} {}", now_ms(), conn.sid));
                if conn.pid.is_some() {
                    st.pid = conn.pid.clone();
                }
                let end = {
                    let _guard = fleet::ConnectedGuard::new(&sh, i);
                    serve(&ch, i, &mut st, conn, &ctl).await
                };
                let why = match &end {
                    End::Dropped => "dropped".to_owned(),
                    End::Left => "left".to_owned(),
                    End::Lost(w) => w.clone(),
                };
                ch.rec.line(format_args!("D {i} {} {why}", now_ms()));
                if matches!(end, End::Left) {
                    return;
                }
                // socket.io-client waits its first backoff delay before reconnecting.
                if wait(&ctl, backoff(0, &mut rng)).await {
                    return;
                }
                attempt = 1;
                continue;
            }
            Err(f) => f,
        };
        sh.fail(&fail.kind());
        if matches!(fail, Fail::InvalidSession) {
            sh.gave_up.fetch_add(1, Ordering::Relaxed);
            return;
        }
        sh.retries.fetch_add(1, Ordering::Relaxed);
        st.target += 1;
        let delay = if matches!(fail, Fail::AuthUnavailable) {
            // socket.io-client does not retry a server's refusal; the deploy kit's client
            // snippet (deploy/README.md) connects again after 2-5 s.
            Duration::from_millis(2000 + (rng.unit() * 3000.0) as u64)
        } else {
            backoff(attempt, &mut rng)
        };
        attempt += 1;
        if wait(&ctl, delay).await {
            return;
        }
    }
}

/// Sleeps `d`; true when the slot was told to leave meanwhile.
async fn wait(ctl: &SlotCtl, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return false,
            () = ctl.wake.notified() => {
                if ctl.cmd.swap(CTL_NONE, Ordering::AcqRel) == CTL_LEAVE {
                    return true;
                }
            }
        }
    }
}

/// Reads one connection until it ends: heartbeats, checked messages, acks, the slot's sends.
async fn serve(ch: &Chaos, i: usize, st: &mut SlotState, conn: Conn, ctl: &SlotCtl) -> End {
    let Conn {
        mut ws,
        early,
        ping_limit,
        ..
    } = conn;
    let mut ping_due = Instant::now() + ping_limit;
    let mut pending: Vec<(u64, u64, String)> = Vec::new(); // (ack id, seq, room)
    for e in &early {
        on_event(ch, i, st, &e[2..]);
    }
    let sender = ch.send_every.is_some() && i % ch.senders_one_in == 0 && st.send_room.is_some();
    let mut rng = Rng::new(i ^ 0x5bd1);
    let period = ch.send_every.unwrap_or(Duration::from_secs(3600));
    let mut next_send = Instant::now() + period.mul_f64(rng.unit());
    let end = loop {
        if let Err(e) = ws.flush().await {
            break End::Lost(format!("write: {e}"));
        }
        let deadline = Some(if sender {
            next_send.min(ping_due)
        } else {
            ping_due
        });
        let got = tokio::select! {
            r = ws.next_until(deadline) => r,
            () = ctl.wake.notified() => {
                match ctl.cmd.swap(CTL_NONE, Ordering::AcqRel) {
                    CTL_DROP => {
                        ws.abort();
                        break End::Dropped;
                    }
                    CTL_LEAVE => {
                        ws.queue_text(b"41");
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
                        break End::Left;
                    }
                    _ => continue,
                }
            }
        };
        let (k, p) = match got {
            Ok(Some(m)) => m,
            Ok(None) if Instant::now() >= ping_due => {
                // socket.io-client's "ping timeout": it closes and reconnects.
                break End::Lost("ping timeout".into());
            }
            Ok(None) => {
                next_send = Instant::now() + period.mul_f64(0.5 + rng.unit());
                if ch.sending.load(Ordering::Acquire) {
                    if let Some(room) = st.send_room.clone() {
                        st.seq += 1;
                        ch.last_seq
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(i, st.seq);
                        let ack = st.seq;
                        let content = format!("ck c{i} {} {room} {}", st.seq, now_ms());
                        let channel = room.strip_prefix("channel:").unwrap_or(&room);
                        let msg = format!(
                            "42{ack}{}",
                            json!(["message:send", {"channelId": channel, "content": content}])
                        );
                        ws.queue_text(msg.as_bytes());
                        ch.sends.fetch_add(1, Ordering::Relaxed);
                        pending.push((ack, st.seq, room));
                    }
                }
                continue;
            }
            Err(WsError::Closed) => break End::Lost("closed".into()),
            Err(e) => break End::Lost(format!("{e}")),
        };
        match k {
            Kind::Close => break End::Lost("close frame".into()),
            Kind::Binary => {}
            Kind::Text => {
                let b = ws.payload(&p);
                match b {
                    b"2" => {
                        ping_due = Instant::now() + ping_limit;
                        ws.queue_text(b"3");
                    }
                    b"1" => break End::Lost("engine close".into()),
                    _ if b.starts_with(b"42") => {
                        let body = b[2..].to_vec();
                        on_event(ch, i, st, &body);
                    }
                    _ if b.starts_with(b"43") => {
                        let body = &b[2..];
                        let digits = body.iter().take_while(|c| c.is_ascii_digit()).count();
                        let id: u64 = std::str::from_utf8(&body[..digits])
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        if let Some(k) = pending.iter().position(|(a, _, _)| *a == id) {
                            let (_, seq, room) = pending.swap_remove(k);
                            let v: Value =
                                serde_json::from_slice(&body[digits..]).unwrap_or(Value::Null);
                            let ok = v[0]["ok"].as_bool() == Some(true);
                            if ok {
                                ch.acks_ok.fetch_add(1, Ordering::Relaxed);
                            } else {
                                ch.acks_err.fetch_add(1, Ordering::Relaxed);
                            }
                            let result = if ok { "ok" } else { "err" };
                            ch.rec
                                .line(format_args!("S {i} {} {seq} {room} {result}", now_ms()));
                        }
                    }
                    _ if b.starts_with(b"41") => break End::Lost("server disconnect".into()),
                    _ => {}
                }
            }
        }
    };
    for (_, seq, room) in pending {
        ch.acks_unknown.fetch_add(1, Ordering::Relaxed);
        ch.rec
            .line(format_args!("S {i} {} {seq} {room} unknown", now_ms()));
    }
    end
}

/// One EVENT packet's JSON (after `42`): remember its offset as socket.io-client does, and
/// record it when it is checked traffic.
fn on_event(ch: &Chaos, i: usize, st: &mut SlotState, body: &[u8]) {
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(body) else {
        ch.other_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // socket.io-client keeps the last argument of every event as the offset once it has a pid.
    let offset = match items.last() {
        Some(Value::String(s)) if items.len() > 1 && is_offset(s) => Some(s.clone()),
        _ => None,
    };
    if st.pid.is_some() {
        if let Some(Value::String(s)) = items.last() {
            if items.len() > 1 {
                st.offset = Some(s.clone());
            }
        }
    }
    let content = (items.first().and_then(Value::as_str) == Some("message:new"))
        .then(|| items.get(1).and_then(|m| m["content"].as_str()))
        .flatten();
    let Some(ck) = content.and_then(|c| c.strip_prefix("ck ")) else {
        ch.other_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut parts = ck.split(' ');
    let (Some(src), Some(seq), Some(room), Some(sent)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        ch.other_events.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let now = now_ms();
    if let Ok(sent) = sent.parse::<u64>() {
        ch.max_latency_ms
            .fetch_max(now.saturating_sub(sent), Ordering::Relaxed);
    }
    ch.checked.fetch_add(1, Ordering::Relaxed);
    ch.sh.delivered.fetch_add(1, Ordering::Relaxed);
    if offset.is_none() {
        ch.unlogged.fetch_add(1, Ordering::Relaxed);
    }
    ch.rec.line(format_args!(
        "M {i} {now} {src} {seq} {room} {}",
        offset.as_deref().unwrap_or("-")
    ));
}

/// An offset as the gateway sends it: a Valkey stream id `<ms>-<seq>` with the recovery log in
/// one partition, or with several a frontier `<ms>~<field>_<field>...` in base 36 (the checker
/// reads the message's own id out of it).
fn is_offset(s: &str) -> bool {
    if let Some((newest, fields)) = s.split_once('~') {
        let base36 = |c: u8| c.is_ascii_digit() || c.is_ascii_lowercase();
        return !newest.is_empty()
            && newest.bytes().all(base36)
            && fields.bytes().all(|c| base36(c) || c == b'.' || c == b'_');
    }
    s.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_socket_io_client() {
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let d0 = backoff(0, &mut rng).as_millis();
            assert!((500..=1500).contains(&d0), "{d0}");
            let d1 = backoff(1, &mut rng).as_millis();
            assert!((1000..=3000).contains(&d1), "{d1}");
            let d5 = backoff(5, &mut rng).as_millis();
            assert!(d5 <= 5000, "{d5}");
        }
    }

    #[test]
    fn offsets() {
        assert!(is_offset("1700000000000-0"));
        assert!(is_offset("m4cl8ghn~0__v7.11_0.1"));
        assert!(!is_offset("M4~0"));
        assert!(!is_offset("~0"));
        assert!(!is_offset("abc-1"));
        assert!(!is_offset("-1"));
        assert!(!is_offset("17"));
    }
}
