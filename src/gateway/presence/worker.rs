//! The presence task: the only owner of this instance's presence state. Socket callbacks send
//! it [`Op`]s; it applies them in arrival order (so a socket's `setAway` then `setActive`
//! can never be reordered), copies them to Valkey in pipelined batches, ends grace periods,
//! sends heartbeats, reaps dead instances and broadcasts `presence:update` (collected over
//! `presence.batch_ms` by the [`Coalescer`], then sent per room with `broadcast_many`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Weak;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::coalesce::{Change, Coalescer, Order};
use super::local::{Contribution, Local, Status, Write};
use super::store::{Current, Outcome, SetReply, Store, StoreError};
use super::workspaces_of;
use engineio::Sid;
use relay::Relay;
use socketio::packet::Packet;
use socketio::{BroadcastTarget, Namespace, Socket};

/// Most operations applied (and sent to Valkey as one pipeline) at a time.
const BATCH: usize = 256;
/// How often an instance out of sync looks at the relay's link, so it syncs right after
/// Valkey comes back (the link is an atomic: this costs nothing).
const LINK_POLL: Duration = Duration::from_millis(100);

pub enum Op {
    Connect {
        socket: Weak<Socket>,
        user: String,
    },
    Set {
        sid: Sid,
        away: bool,
        workspaces: Vec<String>,
    },
    /// The socket's workspace rooms changed (it keeps its away/active state).
    Rooms {
        sid: Sid,
        workspaces: Vec<String>,
    },
    Disconnect {
        sid: Sid,
    },
    Stop(oneshot::Sender<()>),
}

pub struct Worker {
    pub ns: Weak<Namespace>,
    pub grace: Duration,
    pub heartbeat: Duration,
    pub local: Local,
    pub store: Option<Store>,
    /// Its link state says when Valkey is worth trying again.
    pub relay: Weak<Relay>,
    /// Valkey has every local socket under the current member and this instance is
    /// heartbeating; false while Valkey is unreachable (or not yet reached): then changes are
    /// computed from local memory and Valkey is rebuilt from it at the next heartbeat.
    pub synced: bool,
    /// The current member was registered in Valkey (so a resync must retire it).
    pub registered: bool,
    /// Own old members still to be reaped.
    pub retired: Vec<String>,
    /// Users whose status was broadcast from local memory while not synced, with the status
    /// and the workspaces told: after the resync those workspaces get Valkey's status if it
    /// differs from what was announced.
    pub announced: HashMap<String, (Status, BTreeSet<String>)>,
    /// A Valkey failure was logged; the next one is not, until presence is in sync again.
    pub failure_logged: bool,
    /// No resync before this: after a failed one, the next waits a heartbeat, so a Valkey
    /// that hangs costs one timeout per heartbeat, not one per change.
    pub next_attempt: Instant,
    /// `presence.batch_ms`: updates wait this long to go out together (zero: at once).
    pub batch: Duration,
    pub coalescer: Coalescer,
    /// When the open window closes.
    pub window_ends: Option<Instant>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A far deadline for the `select!` branch that is disabled when no grace period runs.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

impl Worker {
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ops = Vec::with_capacity(BATCH);
        loop {
            // Checked here too: under a steady stream of operations the first branch is
            // always ready and the window's own branch would never run.
            if self.window_ends.is_some_and(|t| t <= Instant::now()) {
                self.send_window().await;
            }
            let deadline = self.local.next_deadline().map(Instant::from_std);
            let window_ends = self.window_ends;
            tokio::select! {
                biased;
                n = rx.recv_many(&mut ops, BATCH) => {
                    if n == 0 {
                        return;
                    }
                    let mut stop = None;
                    let mut writes = Vec::new();
                    for op in ops.drain(..) {
                        match op {
                            Op::Stop(done) => stop = Some(done),
                            op => writes.extend(self.apply(op)),
                        }
                    }
                    self.flush(writes).await;
                    if let Some(done) = stop {
                        self.send_window().await;
                        self.leave().await;
                        let _ = done.send(());
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far)), if deadline.is_some() => {
                    let gone = self.local.expire(std::time::Instant::now());
                    let writes = gone.into_iter().map(|(w, c)| (w, Some(c))).collect();
                    self.flush(writes).await;
                }
                _ = tokio::time::sleep_until(window_ends.unwrap_or_else(far)), if window_ends.is_some() => {
                    self.send_window().await;
                }
                _ = beat.tick(), if self.store.is_some() => self.heartbeat().await,
                _ = tokio::time::sleep(LINK_POLL), if self.store.is_some() && !self.synced => {
                    self.try_resync().await;
                }
            }
        }
    }

    /// Applies one operation to local memory; returns the write to copy to Valkey.
    fn apply(&mut self, op: Op) -> Option<(Write, Option<Contribution>)> {
        match op {
            Op::Connect { socket, user } => {
                // Checked here, in queue order: a socket that disconnected before its
                // Connect was applied queued its Disconnect first, and must not come back.
                let socket = socket.upgrade().filter(|s| s.connected())?;
                let write = self.local.connect(socket.id, &user, workspaces_of(&socket));
                Some((write, None))
            }
            Op::Set {
                sid,
                away,
                workspaces,
            } => self.local.set(sid, away, workspaces).map(|w| (w, None)),
            Op::Rooms { sid, workspaces } => self.local.rooms(sid, workspaces).map(|w| (w, None)),
            Op::Disconnect { sid } => {
                let deadline = std::time::Instant::now() + self.grace;
                self.local.disconnect(sid, deadline, now_ms());
                None
            }
            Op::Stop(_) => None,
        }
    }

    /// Copies local changes to Valkey and broadcasts what it says changed; computes them
    /// from local memory when Valkey is off or unreachable.
    async fn flush(&mut self, writes: Vec<(Write, Option<Contribution>)>) {
        if writes.is_empty() {
            return;
        }
        // Valkey may be back: sync first, so as little as possible is decided from memory.
        if !self.synced {
            self.try_resync().await;
        }
        if self.synced {
            if let Some(store) = self.store.as_mut() {
                let only: Vec<Write> = writes.iter().map(|(w, _)| w.clone()).collect();
                match store.set(&only).await {
                    Ok(replies) => {
                        let mut lost = Vec::new();
                        for (reply, write) in replies.into_iter().zip(writes) {
                            match reply {
                                SetReply::Done(o) => {
                                    let order = o.seq.map_or(Order::Unknown, Order::Seq);
                                    self.told(o, false, order);
                                }
                                SetReply::Lost => lost.push(write),
                            }
                        }
                        if !lost.is_empty() {
                            // Claimed as dead: rebuild Valkey from local memory now (it
                            // includes these writes); only if that fails, tell locally.
                            tracing::warn!("presence: this instance was taken for dead; resyncing");
                            self.synced = false;
                            if !self.resync().await {
                                self.local_fallback(lost);
                            }
                        }
                        return;
                    }
                    Err(e) => self.failed(&e),
                }
            }
        }
        self.local_fallback(writes);
    }

    /// Status changes computed from this instance's sockets alone.
    fn local_fallback(&mut self, writes: Vec<(Write, Option<Contribution>)>) {
        let mut per_user: HashMap<String, (BTreeSet<String>, Option<u64>)> = HashMap::new();
        for (w, removed) in writes {
            let entry = per_user.entry(w.user).or_default();
            let c = w.value.as_ref().or(removed.as_ref());
            entry
                .0
                .extend(c.into_iter().flat_map(|c| c.workspaces.iter().cloned()));
            entry.1 = w.seen_ms.or(entry.1);
        }
        for (user, (mut targets, seen)) in per_user {
            let status = self.local.status(&user);
            if status != self.local.shown(&user) {
                targets.extend(self.local.workspaces(&user));
                if self.store.is_some() {
                    let told = self
                        .announced
                        .entry(user.clone())
                        .or_insert_with(|| (status, BTreeSet::new()));
                    told.0 = status;
                    told.1.extend(targets.iter().cloned());
                }
                // Without Valkey this instance is alone; during an outage, other instances
                // decide for themselves.
                let order = if self.store.is_none() {
                    Order::Alone
                } else {
                    Order::Unknown
                };
                let last_seen = seen.unwrap_or_else(now_ms);
                self.announce(&user, status, last_seen, targets, true, order);
            }
            self.local.set_shown(&user, status);
        }
    }

    /// Acts on what Valkey said about a user. `correcting`: during a resync, a user that was
    /// announced from local memory gets Valkey's status where it was announced, if it differs.
    fn told(&mut self, mut o: Outcome, correcting: bool, order: Order) {
        // Rooms first told about the user are told, whatever they saw of it before. (Split off
        // only for the coalescer: it merges them back into one packet per socket.)
        let fresh: BTreeSet<String> = o.targets.drain(..o.fresh.min(o.targets.len())).collect();
        if order != Order::Unknown && !correcting && !self.batch.is_zero() {
            self.announce(&o.user, o.status, o.last_seen, fresh, false, Order::Unknown);
        } else {
            o.targets.extend(fresh);
        }
        let mut targets: BTreeSet<String> = o.targets.into_iter().collect();
        if correcting {
            if let Some((status, workspaces)) = self.announced.remove(&o.user) {
                if status != o.status {
                    targets.extend(workspaces);
                }
            }
        }
        // A correction may go where the script did not announce anything.
        let order = if correcting { Order::Unknown } else { order };
        self.announce(&o.user, o.status, o.last_seen, targets, false, order);
        self.local.set_shown(&o.user, o.status);
    }

    /// Sends `presence:update` to the user's workspace rooms: on every instance, or only to
    /// this instance's sockets (`local_only`) when it was computed from local memory, which
    /// other instances must not take over their own view. With a window, it is collected and
    /// sent when the window closes.
    fn announce(
        &mut self,
        user: &str,
        status: Status,
        last_seen: u64,
        workspaces: BTreeSet<String>,
        local_only: bool,
        order: Order,
    ) {
        if workspaces.is_empty() {
            // An empty room list would mean "everyone".
            return;
        }
        if !self.batch.is_zero() {
            let change = Change {
                user: user.to_owned(),
                status,
                last_seen,
                order,
                local_only,
            };
            if self.coalescer.add(workspaces, &change) {
                self.window_ends = Some(Instant::now() + self.batch);
            }
            return;
        }
        let Some(ns) = self.ns.upgrade() else { return };
        let target = BroadcastTarget {
            rooms: workspaces
                .into_iter()
                .map(|w| format!("workspace:{w}"))
                .collect(),
            except: Vec::new(),
        };
        let update = json!({ "userId": user, "status": status.as_str(), "lastSeen": last_seen });
        if local_only {
            let packet = Packet::event(&ns.name, "presence:update", vec![update], Vec::new(), None);
            ns.deliver(&target, &[packet], None);
        } else {
            ns.emit_to(&target, "presence:update", vec![update]);
        }
        metrics::counter!(crate::metrics::names::PRESENCE_UPDATES, "status" => status.as_str())
            .increment(1);
    }

    /// Closes the window: reads the users' status now (see `coalesce.rs` for why), and sends
    /// each room's updates together.
    async fn send_window(&mut self) {
        self.window_ends = None;
        let window = self.coalescer.take();
        if window.is_empty() {
            return;
        }
        let mut current: HashMap<String, Current> = HashMap::new();
        let users = window.users_to_read();
        if let (Some(store), true, false) = (self.store.as_mut(), self.synced, users.is_empty()) {
            match store.current(&users).await {
                Ok(rows) => {
                    current.extend(
                        users
                            .into_iter()
                            .zip(rows)
                            .filter_map(|(u, c)| Some((u, c?))),
                    );
                }
                // The changes go out as decided; the next heartbeat checks on Valkey.
                Err(e) => self.failed(&e),
            }
        }
        let batches = self
            .coalescer
            .resolve(window, &current, std::time::Instant::now());
        let Some(ns) = self.ns.upgrade() else { return };
        for batch in batches {
            let target = BroadcastTarget {
                rooms: batch
                    .rooms
                    .iter()
                    .map(|w| format!("workspace:{w}"))
                    .collect(),
                except: Vec::new(),
            };
            let packets: Vec<Packet> = batch
                .updates
                .iter()
                .map(|u| {
                    metrics::counter!(crate::metrics::names::PRESENCE_UPDATES, "status" => u.status.as_str())
                        .increment(1);
                    let update = json!({ "userId": u.user, "status": u.status.as_str(), "lastSeen": u.last_seen });
                    Packet::event(&ns.name, "presence:update", vec![update], Vec::new(), None)
                })
                .collect();
            if batch.local_only {
                ns.deliver(&target, &packets, None);
            } else {
                ns.broadcast_many(&target, packets);
            }
        }
    }

    /// Resyncs when the relay is connected (while it knows Valkey is down, trying would only
    /// wait for timeouts) and the last failed attempt is a heartbeat old.
    async fn try_resync(&mut self) {
        if self.store.is_none()
            || Instant::now() < self.next_attempt
            || !self.relay.upgrade().is_some_and(|r| r.is_up())
        {
            return;
        }
        if !self.resync().await {
            self.next_attempt = Instant::now() + self.heartbeat;
        }
    }

    async fn heartbeat(&mut self) {
        if !self.synced {
            self.try_resync().await;
            return;
        }
        let Some(store) = self.store.as_mut() else {
            return;
        };
        match store.beat(false).await {
            Ok(beat) => {
                if !beat.alive {
                    tracing::warn!("presence: this instance was taken for dead; resyncing");
                    self.synced = false;
                    self.resync().await;
                }
                self.reap_claimed(beat.claimed).await;
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Valkey failed: work from local memory until a heartbeat gets through. Logged once per
    /// outage.
    fn failed(&mut self, e: &StoreError) {
        self.synced = false;
        if !self.failure_logged {
            self.failure_logged = true;
            tracing::warn!(error = %e, "presence: Valkey unavailable, using this instance's sockets only until it is back");
        }
    }

    /// Rebuilds this instance's part of Valkey from local memory under a new member, then
    /// reaps the old members (their sockets that are gone by now go offline; the others are
    /// already counted under the new member, so nobody flaps). Returns whether it worked.
    async fn resync(&mut self) -> bool {
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        let old = store.next_member();
        if self.registered {
            self.retired.push(old);
        }
        self.registered = false;
        let beat = match store.beat(true).await {
            Ok(b) => b,
            Err(e) => {
                self.failed(&e);
                return false;
            }
        };
        self.registered = true;
        let all = self.local.all();
        for chunk in all.chunks(BATCH) {
            let Some(store) = self.store.as_mut() else {
                return false;
            };
            match store.set(chunk).await {
                Ok(replies) => {
                    for reply in replies {
                        match reply {
                            SetReply::Done(o) => self.told(o, true, Order::Unknown),
                            SetReply::Lost => return false,
                        }
                    }
                }
                Err(e) => {
                    self.failed(&e);
                    return false;
                }
            }
        }
        while let Some(member) = self.retired.last().cloned() {
            let Some(store) = self.store.as_mut() else {
                return false;
            };
            if let Err(e) = store.retire(&member).await {
                self.failed(&e);
                return false;
            }
            if !self.reap(&member, now_ms(), true).await {
                return false;
            }
            self.retired.pop();
        }
        self.synced = true;
        self.failure_logged = false;
        self.announced.clear();
        tracing::info!(
            sockets = self.local.socket_count(),
            users = self.local.user_count(),
            "presence: in sync with Valkey"
        );
        self.reap_claimed(beat.claimed).await;
        true
    }

    async fn reap_claimed(&mut self, claimed: Vec<(String, u64)>) {
        for (member, last_seen) in claimed {
            tracing::info!(%member, "presence: a gateway instance stopped heartbeating; removing its sockets");
            self.reap(&member, last_seen, false).await;
        }
    }

    /// Removes every socket of a claimed member, broadcasting the users that change. On an
    /// error the claim lapses and a live instance (maybe this one) takes it over later.
    async fn reap(&mut self, member: &str, last_seen: u64, correcting: bool) -> bool {
        loop {
            let Some(store) = self.store.as_mut() else {
                return false;
            };
            match store.reap(member, last_seen).await {
                Ok((done, outcomes)) => {
                    for o in outcomes {
                        self.told(o, correcting, Order::Unknown);
                    }
                    if done {
                        return true;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %member, "presence: reaping interrupted");
                    return false;
                }
            }
        }
    }

    /// A clean shutdown: survivors reap this instance's sockets after the grace period, so
    /// users who reconnect elsewhere in time never show offline.
    async fn leave(&mut self) {
        if !self.synced {
            return;
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.leave(self.grace).await {
                tracing::warn!(error = %e, "presence: could not deregister; survivors will notice the missing heartbeats");
            }
        }
    }
}

/// Starts the task; the returned sender feeds it.
pub fn spawn(worker: Worker) -> (mpsc::UnboundedSender<Op>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(worker.run(rx));
    (tx, task)
}
