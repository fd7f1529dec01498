//! The presence task: the only owner of this instance's presence state. It takes the socket
//! changes the callbacks queued, applies them to [`Local`], copies the parts that changed to
//! Valkey and announces what Valkey answers (without Valkey, what memory says), ends grace
//! periods, heartbeats, removes the entries of claimed members one batch per turn (so
//! heartbeats and changes keep flowing meanwhile), and sends the [`Window`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::time::{Instant, MissedTickBehavior};

use super::local::{status_of, Local, Outcome, UserWrite};
use super::queue::{ChangeQueue, SocketChanges};
use super::store::{Store, StoreError, WorkspaceWrites};
use super::window::{Update, Window};
use super::workspaces_of;
use crate::config::PresenceSettings;
use crate::metrics::names::PRESENCE_UPDATES;
use engineio::Sid;
use relay::Relay;
use socketio::packet::Packet;
use socketio::{BroadcastTarget, Namespace};

/// Most parts copied to Valkey in one pipeline.
const PIPELINE: usize = 256;
/// How often an instance out of sync looks at the relay's link, so it resyncs right after
/// Valkey comes back (the link is an atomic: this costs nothing).
const LINK_POLL: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Worker {
    ns: Weak<Namespace>,
    queue: Arc<ChangeQueue>,
    grace: Duration,
    heartbeat: Duration,
    batch: Duration,
    store: Option<Store>,
    /// Its link says when Valkey is worth trying again.
    relay: Weak<Relay>,
    local: Local,
    window: Window,
    window_ends: Option<Instant>,
    /// Valkey has every part here under the current member, and this instance heartbeats.
    /// False while Valkey is unreachable (or not reached yet): then memory decides.
    synced: bool,
    /// No resync before this: after a failed one the next waits a heartbeat, so a Valkey
    /// that hangs costs one timeout per heartbeat, not one per change.
    next_attempt: Option<Instant>,
    failure_logged: bool,
    /// Members whose entries to remove (dead instances', this instance's previous one), and
    /// the `lastSeen` of their users.
    claims: BTreeMap<String, u64>,
    /// Kept when writing them fails, and written after the resync (older versions lose).
    workspace_writes: WorkspaceWrites,
    /// Users announced from memory while Valkey was unreachable, and the rooms told: after the
    /// resync those rooms get Valkey's status (other instances' sockets count again).
    told_from_memory: HashMap<String, BTreeSet<String>>,
}

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_millis() as u64)
}

/// Sleeps until `t`, or forever without one.
async fn until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Where a user's update goes: every workspace of theirs, before and after, when their status
/// changed; else the workspaces none of their sockets was in before (new to the user).
fn targets(o: &Outcome) -> BTreeSet<String> {
    match o.changed {
        true => o.before.union(&o.after).cloned().collect(),
        false => o.after.difference(&o.before).cloned().collect(),
    }
}

impl Worker {
    pub fn new(
        cfg: &PresenceSettings,
        ns: Weak<Namespace>,
        queue: Arc<ChangeQueue>,
        store: Option<Store>,
        relay: Weak<Relay>,
    ) -> Worker {
        let (grace, heartbeat, batch) = (cfg.grace(), cfg.heartbeat(), cfg.batch());
        Worker {
            ns,
            queue,
            grace,
            heartbeat,
            batch,
            store,
            relay,
            ..Default::default()
        }
    }

    pub async fn run(mut self) {
        let queue = self.queue.clone();
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // Checked here too: under a steady stream of changes the first branch is always
            // ready and the window's own branch would never run.
            if self.window_ends.is_some_and(|t| t <= Instant::now()) {
                self.send_window().await;
            }
            let grace_ends = self.local.next_deadline().map(Instant::from_std);
            let reap = self.synced && !self.claims.is_empty();
            // Heartbeats and timers first: a stream of changes must not starve them (an
            // instance too busy to heartbeat would be taken for dead).
            tokio::select! {
                biased;
                _ = beat.tick(), if self.store.is_some() => self.heartbeat().await,
                () = until(grace_ends) => {
                    self.local.expire(std::time::Instant::now());
                    self.flush().await;
                }
                () = until(self.window_ends) => self.send_window().await,
                () = queue.ready() => {
                    let (changes, stop) = queue.take();
                    for (sid, c) in changes {
                        self.apply(sid, c);
                    }
                    self.flush().await;
                    if let Some(done) = stop {
                        self.shut_down().await;
                        let _ = done.send(());
                        return;
                    }
                }
                () = tokio::time::sleep(LINK_POLL), if self.store.is_some() && !self.synced => {
                    self.try_resync().await;
                }
                () = std::future::ready(()), if reap => self.reap_step().await,
            }
        }
    }

    fn apply(&mut self, sid: Sid, c: SocketChanges) {
        if let Some((socket, user)) = c.connected {
            // Checked now: a socket gone already has its disconnect merged here or queued.
            if let Some(socket) = socket.upgrade().filter(|s| s.connected()) {
                self.local.connect(sid, &user, workspaces_of(&socket));
            }
        }
        if c.away.is_some() || c.workspaces.is_some() {
            self.local.update(sid, c.away, c.workspaces);
        }
        if let Some((at, at_ms)) = c.disconnected {
            self.local.disconnect(sid, at + self.grace, at_ms);
        }
    }

    async fn flush(&mut self) {
        let writes = self.local.writes();
        if !writes.is_empty() && self.store.is_some() && !self.synced {
            // Valkey may be back: the resync copies every part, these included.
            self.try_resync().await;
            if self.synced {
                return;
            }
        }
        self.copy(&writes).await;
    }

    /// Copies parts to Valkey and acts on its answers; what it does not confirm (all, when
    /// out of sync) is decided from memory, and corrected after the resync. Returns whether
    /// everything went through.
    async fn copy(&mut self, writes: &[UserWrite]) -> bool {
        let mut confirmed = 0;
        while self.synced && confirmed < writes.len() {
            let chunk = &writes[confirmed..writes.len().min(confirmed + PIPELINE)];
            let Some(store) = self.store.as_mut() else {
                break;
            };
            let member = store.member();
            let answers = match store.write(chunk).await {
                Ok(answers) => answers,
                Err(e) => {
                    self.failed(&e);
                    break;
                }
            };
            let mut unlisted = Vec::new();
            for (w, answer) in chunk.iter().zip(answers) {
                match answer {
                    Ok(o) if w.after.is_none() => {
                        unlisted.push((member.clone(), w.user.clone()));
                        self.on_outcome(o, false);
                    }
                    Ok(o) => self.on_outcome(o, false),
                    Err(e) => {
                        self.failed(&e);
                        self.on_outcome(w.outcome_from_memory(now_ms()), true);
                    }
                }
            }
            confirmed += chunk.len();
            self.settle(unlisted).await;
        }
        for w in &writes[confirmed..] {
            self.on_outcome(w.outcome_from_memory(now_ms()), true);
        }
        self.synced && confirmed == writes.len()
    }

    /// Acts on what Valkey (or, `from_memory`, this instance alone) says about a user:
    /// workspace entries to write, rooms to tell.
    fn on_outcome(&mut self, o: Outcome, from_memory: bool) {
        let rooms = targets(&o);
        if from_memory && self.store.is_some() && !rooms.is_empty() {
            let told = self.told_from_memory.entry(o.user.clone()).or_default();
            told.extend(rooms.iter().cloned());
        }
        if !from_memory {
            let listed = o
                .after
                .iter()
                .filter(|ws| o.changed || !o.before.contains(*ws));
            let entries = listed.map(|ws| (ws, Some(o.status)));
            let unlisted = o.before.difference(&o.after).map(|ws| (ws, None));
            for (ws, status) in entries.chain(unlisted) {
                let key = (ws.clone(), o.user.clone());
                let entry = self.workspace_writes.entry(key).or_insert((0, None));
                if o.version >= entry.0 {
                    *entry = (o.version, status);
                }
            }
        }
        let update = Update {
            user: o.user,
            status: o.status,
            last_seen: o.last_seen,
        };
        self.announce(rooms, update, from_memory);
    }

    /// Queues an update for the rooms: it goes out when the window closes.
    fn announce(&mut self, rooms: BTreeSet<String>, update: Update, local_only: bool) {
        if self.window.add(rooms, update, local_only) {
            self.window_ends = Some(Instant::now() + self.batch);
        }
    }

    /// Writes what follows answers: users leaving a member's list, workspace entries. A user
    /// left on a list by a failure is removed again with the member, harmlessly.
    async fn settle(&mut self, unlisted: Vec<(String, String)>) -> bool {
        if unlisted.is_empty() && self.workspace_writes.is_empty() {
            return true;
        }
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        let result = store.settle(&unlisted, &self.workspace_writes).await;
        match result {
            Ok(()) => self.workspace_writes.clear(),
            Err(e) => self.failed(&e),
        }
        self.synced
    }

    /// Closes the window: reads the users' status now (see `window.rs` for why), and sends
    /// each room's updates together.
    async fn send_window(&mut self) {
        self.window_ends = None;
        let window = std::mem::take(&mut self.window);
        let users = window.users_to_read();
        let read = match self.store.as_mut() {
            Some(store) if self.synced && !users.is_empty() => store.read(&users).await,
            _ => Ok(HashMap::new()),
        };
        // Unreadable: the updates go out as decided; the next heartbeat checks on Valkey.
        let current = read.unwrap_or_else(|e| {
            self.failed(&e);
            HashMap::new()
        });
        let Some(ns) = self.ns.upgrade() else {
            return;
        };
        for batch in window.resolve(&current) {
            let rooms = batch
                .rooms
                .iter()
                .map(|w| format!("workspace:{w}"))
                .collect();
            let target = BroadcastTarget {
                rooms,
                except: Vec::new(),
            };
            let packet = |u: &Update| {
                metrics::counter!(PRESENCE_UPDATES, "status" => u.status.as_str()).increment(1);
                let update = json!({ "userId": u.user, "status": u.status.as_str(), "lastSeen": u.last_seen });
                Packet::event(&ns.name, "presence:update", vec![update], Vec::new(), None)
            };
            let packets: Vec<Packet> = batch.updates.iter().map(packet).collect();
            if batch.local_only {
                ns.deliver(&target, &packets);
            } else {
                ns.broadcast_many(&target, packets);
            }
        }
    }

    async fn heartbeat(&mut self) {
        let Some(store) = self.store.as_mut().filter(|_| self.synced) else {
            return self.try_resync().await;
        };
        match store.beat().await {
            Ok(Some(claims)) => {
                for (member, _) in &claims {
                    tracing::info!(%member, "presence: a gateway instance stopped heartbeating; removing its sockets");
                }
                self.claims.extend(claims);
            }
            Ok(None) => {
                tracing::warn!("presence: this instance was taken for dead; resyncing");
                self.synced = false;
                self.try_resync().await;
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Removes one batch of the first claimed member's users, announcing their changes. On an
    /// error the claim lapses, and a live instance (maybe this one) takes it over later.
    async fn reap_step(&mut self) {
        let claim = self
            .claims
            .first_key_value()
            .map(|(m, seen)| (m.clone(), *seen));
        let (Some(claim), Some(store)) = (claim, self.store.as_mut()) else {
            return;
        };
        match store.reap(&claim).await {
            Ok(None) => drop(self.claims.remove(&claim.0)),
            Ok(Some(answers)) => {
                let mut unlisted = Vec::new();
                for (user, answer) in answers {
                    // Unlisted even when refused (a broken entry must not be tried forever),
                    // but not when Valkey lost the script: then nothing was done.
                    if !matches!(answer, Err(StoreError::NoScript)) {
                        unlisted.push((claim.0.clone(), user));
                    }
                    match answer {
                        Ok(o) => self.on_outcome(o, false),
                        Err(e) => self.failed(&e),
                    }
                }
                self.settle(unlisted).await;
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Resyncs when the relay is connected (while it knows Valkey is down, trying would only
    /// wait for timeouts) and the last failed attempt is a heartbeat old.
    async fn try_resync(&mut self) {
        let waiting = self.next_attempt.is_some_and(|t| Instant::now() < t);
        if waiting || !self.relay.upgrade().is_some_and(|r| r.is_up()) {
            return;
        }
        if !self.resync().await {
            self.next_attempt = Some(Instant::now() + self.heartbeat);
        }
    }

    /// Joins as a new member and copies every part under it; the previous member's entries
    /// are then removed (by `reap_step`): those of sockets still here count under the new
    /// member already, so nobody flaps; those of sockets gone meanwhile go offline.
    async fn resync(&mut self) -> bool {
        let Some(store) = self.store.as_mut() else {
            return false;
        };
        match store.join().await {
            Ok(claims) => self.claims.extend(claims),
            Err(e) => {
                self.failed(&e);
                return false;
            }
        }
        self.synced = true;
        // Pending changes are copied with the rest (removed users go with the previous member).
        self.local.writes();
        if !self.copy(&self.local.all()).await || !self.settle(Vec::new()).await {
            return false;
        }
        for (user, rooms) in std::mem::take(&mut self.told_from_memory) {
            // The status is replaced by Valkey's when the window closes.
            let status = status_of(&self.local.part(&user));
            let update = Update {
                user,
                status,
                last_seen: now_ms(),
            };
            self.announce(rooms, update, false);
        }
        self.failure_logged = false;
        let sockets = self.local.socket_count();
        tracing::info!(sockets, "presence: in sync with Valkey");
        true
    }

    /// Valkey failed. A call it refused (a key of another type, say) is logged and skipped:
    /// the entry is broken, the rest goes on. Otherwise (no answer; or Valkey restarted and
    /// lost the scripts) memory decides until a resync gets through; logged once per outage.
    fn failed(&mut self, e: &StoreError) {
        if let StoreError::Reply(_) | StoreError::Parse(_) = e {
            return tracing::warn!(error = %e, "presence: Valkey refused a write; skipped");
        }
        self.synced = false;
        if !std::mem::replace(&mut self.failure_logged, true) {
            tracing::warn!(error = %e, "presence: Valkey unavailable, using this instance's sockets only until it is back");
        }
    }

    /// The end of a clean shutdown: what is collected goes out, and survivors remove this
    /// instance's users after the grace period, unless they reconnected elsewhere.
    async fn shut_down(&mut self) {
        self.send_window().await;
        self.settle(Vec::new()).await;
        if let Some(store) = self.store.as_mut().filter(|_| self.synced) {
            if let Err(e) = store.leave(self.grace).await {
                tracing::warn!(error = %e, "presence: could not deregister; survivors will notice the missing heartbeats");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::local::Status;
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_change_goes_everywhere_and_news_only_where_new() {
        let mut o = Outcome {
            user: "u".into(),
            status: Status::Online,
            last_seen: 1,
            changed: true,
            version: 1,
            before: set(&["w1", "w2"]),
            after: set(&["w2", "w3"]),
        };
        assert_eq!(targets(&o), set(&["w1", "w2", "w3"]));
        o.changed = false;
        assert_eq!(targets(&o), set(&["w3"]));
    }
}
