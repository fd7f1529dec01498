//! Coalescing of `presence:update` over a short window (`presence.batch_ms`).
//!
//! Under a connect storm every user of a workspace comes online within seconds and each
//! update goes to every member: sending them one by one costs a frame, a write and a wake
//! per recipient per update. Collected for a window, a room's updates go out together (each
//! recipient gets them in one queueing, one flush), a user's changes within the window shrink
//! to the last one, and a flap that ends where this instance last left the room is dropped.
//!
//! What clients see must not change beyond that, with several instances announcing the same
//! user. Two rules keep it so:
//! - What is sent is the user's status in Valkey when the window closes, not when the change
//!   was decided: a window delays an update, so another instance's later update could
//!   otherwise arrive first and be overwritten by an older one.
//! - A change is dropped only when the script's announcement counter proves that every
//!   announcement of the user since this instance's last update to that room was this
//!   instance's, and no other member announced the user recently enough to still be sending
//!   (its window plus a margin for a slow Valkey): then the room's clients saw exactly that
//!   last update, and the status now equals it. Anything unproven is sent, and a room first
//!   told about the user is always told.
//!
//! Instances running a script from before the counter do not count their announcements: while
//! a rolling upgrade mixes both, a flap could be dropped although one of them spoke in between.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::local::Status;
use super::store::{Current, Seq};

/// Beyond its window, how late another instance may still send an update it decided (a slow
/// Valkey read before sending: the store's call timeout, and some slack).
const FOREIGN_MARGIN_MS: u64 = 3_000;
/// What this instance last sent to a room about a user is forgotten after this long without
/// news (a bound on memory; forgetting only means the next flap there is sent).
const SENT_TTL: Duration = Duration::from_secs(600);
/// How often forgotten entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How an announcement relates to other instances' announcements of the same user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// There is no other instance (Valkey off): what this instance sent is what clients saw.
    Alone,
    /// Made by this instance through the script, at this place in the user's history.
    Seq(Seq),
    /// Anything else: a reaper's, a resync correction, one computed from memory during an
    /// outage. Sent as it is and never dropped.
    Unknown,
}

/// One announcement: `user` is `status` (since `last_seen`) for the given rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub user: String,
    pub status: Status,
    pub last_seen: u64,
    pub order: Order,
    /// Computed from this instance's memory: for its own sockets only.
    pub local_only: bool,
}

/// The `presence:update` payload for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub user: String,
    pub status: Status,
    pub last_seen: u64,
}

/// Updates to send together to the sockets in any of `rooms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rooms: Vec<String>,
    pub updates: Vec<Update>,
    pub local_only: bool,
}

/// A user's last change in one room during the window.
#[derive(Debug, Clone)]
struct Pending {
    status: Status,
    last_seen: u64,
    local_only: bool,
    alone: bool,
    /// Counter of the last announcement, when it was this instance's.
    version: Option<u64>,
    /// When the window's first announcement was made, and the latest time another member
    /// announced the user (Valkey's clock, ms).
    first_at_ms: u64,
    foreign_ms: u64,
    /// Every announcement since the last update sent here is accounted for (consecutive
    /// counters, all this instance's).
    chained: bool,
}

/// What this instance last sent (or proved clients already saw) in a room about a user.
#[derive(Debug, Clone, Copy)]
struct Sent {
    status: Status,
    /// The user's announcement counter it reflects (`None`: not known, or no Valkey).
    version: Option<u64>,
    at: Instant,
}

/// The changes of one window, taken out of the [`Coalescer`] to be sent.
#[derive(Debug, Default)]
pub struct Window {
    rooms: BTreeMap<String, BTreeMap<String, Pending>>,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Users whose current status should be read from Valkey before sending.
    pub fn users_to_read(&self) -> Vec<String> {
        let users: BTreeSet<&String> = self
            .rooms
            .values()
            .flat_map(|m| m.iter())
            .filter(|(_, p)| !p.local_only && !p.alone)
            .map(|(u, _)| u)
            .collect();
        users.into_iter().cloned().collect()
    }
}

#[derive(Debug)]
pub struct Coalescer {
    window: Window,
    sent: HashMap<(String, String), Sent>,
    /// How long before a window's first announcement another member's must be to rule it out.
    quiet_ms: u64,
    swept: Instant,
}

impl Coalescer {
    pub fn new(batch: Duration) -> Coalescer {
        Coalescer {
            window: Window::default(),
            sent: HashMap::new(),
            quiet_ms: (batch.as_millis() as u64).saturating_add(FOREIGN_MARGIN_MS),
            swept: Instant::now(),
        }
    }

    /// Collects a change for `rooms` (workspace ids). Returns true when it opened the window.
    pub fn add(&mut self, rooms: impl IntoIterator<Item = String>, change: &Change) -> bool {
        let opened = self.window.is_empty();
        for room in rooms {
            let key = (room, change.user.clone());
            let sent = self.sent.get(&key).copied();
            let users = self.window.rooms.entry(key.0).or_default();
            let prev = users.get(&change.user);
            // The counter this announcement must follow for the chain to stay unbroken.
            let (base_chained, base_version) = match prev {
                Some(p) => (p.chained, p.version),
                None => (sent.is_some(), sent.and_then(|s| s.version)),
            };
            let (chained, version, at_ms, foreign_ms) = match change.order {
                Order::Alone => (base_chained, None, 0, 0),
                Order::Seq(s) => (
                    base_chained
                        && base_version.is_some_and(|v| v.checked_add(1) == Some(s.version)),
                    Some(s.version),
                    s.at_ms,
                    s.foreign_ms,
                ),
                Order::Unknown => (false, None, 0, 0),
            };
            let next = Pending {
                status: change.status,
                last_seen: change.last_seen,
                local_only: change.local_only,
                alone: change.order == Order::Alone,
                version,
                first_at_ms: prev.map_or(at_ms, |p| p.first_at_ms),
                foreign_ms: prev.map_or(foreign_ms, |p| p.foreign_ms.max(foreign_ms)),
                // Sent from memory to this instance's sockets only: the other instances'
                // clients were not told (unless there are none).
                chained: chained && (!change.local_only || change.order == Order::Alone),
            };
            users.insert(change.user.clone(), next);
        }
        opened && !self.window.is_empty()
    }

    /// Closes the window.
    pub fn take(&mut self) -> Window {
        std::mem::take(&mut self.window)
    }

    /// Decides what a closed window sends, given the users' status in Valkey now (`current`,
    /// missing when it could not be read), and remembers it. Each user's update goes once to
    /// all the rooms it is for (a socket in two of them gets it once).
    pub fn resolve(
        &mut self,
        window: Window,
        current: &HashMap<String, Current>,
        now: Instant,
    ) -> Vec<Batch> {
        if now.duration_since(self.swept) >= SWEEP_EVERY {
            self.swept = now;
            self.sent.retain(|_, s| now.duration_since(s.at) < SENT_TTL);
        }
        // (user, status, lastSeen, local_only) → rooms.
        let mut per_update: BTreeMap<(String, Status, u64, bool), Vec<String>> = BTreeMap::new();
        for (room, users) in window.rooms {
            for (user, p) in users {
                let key = (room.clone(), user);
                // Valkey's status, unless it is older than the change (Valkey lost its data).
                let truth = (!p.local_only && !p.alone)
                    .then(|| current.get(&key.1))
                    .flatten()
                    .filter(|c| p.version.is_none_or(|v| c.version >= v));
                let (status, last_seen) =
                    truth.map_or((p.status, p.last_seen), |c| (c.status, c.last_seen));
                let sent = self.sent.get(&key);
                let seen_already = p.chained
                    && sent.is_some_and(|s| s.status == status)
                    && (p.alone
                        || truth.is_some_and(|c| {
                            Some(c.version) == p.version
                                && p.foreign_ms.saturating_add(self.quiet_ms) < p.first_at_ms
                        }));
                let version = truth.map(|c| c.version);
                if seen_already {
                    self.sent.insert(
                        key,
                        Sent {
                            status,
                            version,
                            at: now,
                        },
                    );
                    continue;
                }
                if (p.local_only && !p.alone) || status == Status::Offline {
                    // Remote clients did not get it / nothing left to dedupe against.
                    self.sent.remove(&key);
                } else {
                    self.sent.insert(
                        key.clone(),
                        Sent {
                            status,
                            version,
                            at: now,
                        },
                    );
                }
                per_update
                    .entry((key.1, status, last_seen, p.local_only))
                    .or_default()
                    .push(key.0);
            }
        }
        let mut per_rooms: BTreeMap<(Vec<String>, bool), Vec<Update>> = BTreeMap::new();
        for ((user, status, last_seen, local_only), rooms) in per_update {
            per_rooms
                .entry((rooms, local_only))
                .or_default()
                .push(Update {
                    user,
                    status,
                    last_seen,
                });
        }
        per_rooms
            .into_iter()
            .map(|((rooms, local_only), updates)| Batch {
                rooms,
                updates,
                local_only,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 10_000;

    fn change(user: &str, status: Status, last_seen: u64, order: Order) -> Change {
        Change {
            user: user.into(),
            status,
            last_seen,
            order,
            local_only: false,
        }
    }

    fn seq(version: u64, at_ms: u64) -> Order {
        Order::Seq(Seq {
            version,
            at_ms,
            foreign_ms: 0,
        })
    }

    fn rooms(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn current(entries: &[(&str, Status, u64, u64)]) -> HashMap<String, Current> {
        entries
            .iter()
            .map(|(u, status, last_seen, version)| {
                (
                    u.to_string(),
                    Current {
                        status: *status,
                        last_seen: *last_seen,
                        version: *version,
                    },
                )
            })
            .collect()
    }

    /// Closes the window with `cur` as Valkey's state.
    fn flush(c: &mut Coalescer, cur: &HashMap<String, Current>) -> Vec<Batch> {
        let w = c.take();
        c.resolve(w, cur, Instant::now())
    }

    fn update(user: &str, status: Status, last_seen: u64) -> Update {
        Update {
            user: user.into(),
            status,
            last_seen,
        }
    }

    #[test]
    fn a_window_sends_each_users_last_change_once_per_room_set() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        assert!(c.add(rooms(&["w1"]), &change("a", Status::Online, 1, seq(1, ME))));
        assert!(!c.add(rooms(&["w1"]), &change("b", Status::Online, 2, seq(1, ME))));
        assert!(!c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 3, seq(2, ME + 1))
        ));
        c.add(
            rooms(&["w1", "w2"]),
            &change("c", Status::Online, 4, seq(1, ME)),
        );
        let cur = current(&[
            ("a", Status::Away, 3, 2),
            ("b", Status::Online, 2, 1),
            ("c", Status::Online, 4, 1),
        ]);
        assert_eq!(c.window.users_to_read(), rooms(&["a", "b", "c"]));
        let out = flush(&mut c, &cur);
        assert_eq!(
            out,
            vec![
                Batch {
                    rooms: rooms(&["w1"]),
                    updates: vec![update("a", Status::Away, 3), update("b", Status::Online, 2)],
                    local_only: false,
                },
                Batch {
                    rooms: rooms(&["w1", "w2"]),
                    updates: vec![update("c", Status::Online, 4)],
                    local_only: false,
                },
            ]
        );
        assert!(c.window.is_empty());
        assert!(flush(&mut c, &cur).is_empty());
    }

    #[test]
    fn a_flap_of_this_instance_alone_is_dropped() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        c.add(rooms(&["w1"]), &change("a", Status::Online, 1, seq(1, ME)));
        assert_eq!(
            flush(&mut c, &current(&[("a", Status::Online, 1, 1)])).len(),
            1
        );
        // online → away → online within the next window: nothing to send.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 5, seq(2, ME + 5)),
        );
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 6, seq(3, ME + 6)),
        );
        assert!(flush(&mut c, &current(&[("a", Status::Online, 6, 3)])).is_empty());
        // It was accounted for: the next change follows on from version 3.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 7, seq(4, ME + 7)),
        );
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 8, seq(5, ME + 8)),
        );
        assert!(flush(&mut c, &current(&[("a", Status::Online, 8, 5)])).is_empty());
        // A real change is sent with the last lastSeen.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 9, seq(6, ME + 9)),
        );
        let out = flush(&mut c, &current(&[("a", Status::Away, 9, 6)]));
        assert_eq!(out[0].updates, vec![update("a", Status::Away, 9)]);
    }

    #[test]
    fn without_valkey_a_flap_is_dropped_too() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        let alone = |status, t| Change {
            local_only: true,
            ..change("a", status, t, Order::Alone)
        };
        c.add(rooms(&["w1"]), &alone(Status::Online, 1));
        let out = flush(&mut c, &HashMap::new());
        assert_eq!(out[0].updates, vec![update("a", Status::Online, 1)]);
        assert!(out[0].local_only);
        // A lone instance's own view is the clients' view.
        c.add(rooms(&["w1"]), &alone(Status::Away, 2));
        c.add(rooms(&["w1"]), &alone(Status::Online, 3));
        assert!(flush(&mut c, &HashMap::new()).is_empty());
    }

    #[test]
    fn a_flap_is_sent_when_another_instance_announced_in_between() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        c.add(rooms(&["w1"]), &change("a", Status::Online, 1, seq(1, ME)));
        flush(&mut c, &current(&[("a", Status::Online, 1, 1)]));
        // Version 3 is someone else's: the room may have seen their `away` last.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 5, seq(2, ME + 5)),
        );
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 7, seq(4, ME + 7)),
        );
        let out = flush(&mut c, &current(&[("a", Status::Online, 7, 4)]));
        assert_eq!(out[0].updates, vec![update("a", Status::Online, 7)]);
    }

    #[test]
    fn a_flap_is_sent_when_another_instance_announced_recently() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        c.add(rooms(&["w1"]), &change("a", Status::Online, 1, seq(1, ME)));
        flush(&mut c, &current(&[("a", Status::Online, 1, 1)]));
        // Consecutive, but another member announced the user 1 s before: it may still be
        // sending what it read (maybe this window's `away`).
        let recent = |v, at| {
            Order::Seq(Seq {
                version: v,
                at_ms: at,
                foreign_ms: ME - 1_000,
            })
        };
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 5, recent(2, ME + 5)),
        );
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 6, recent(3, ME + 6)),
        );
        assert_eq!(
            flush(&mut c, &current(&[("a", Status::Online, 6, 3)])).len(),
            1
        );
        // Long enough ago: dropped.
        let old = |v, at| {
            Order::Seq(Seq {
                version: v,
                at_ms: at,
                foreign_ms: ME - 5_000,
            })
        };
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 8, old(4, ME + 8)),
        );
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 9, old(5, ME + 9)),
        );
        assert!(flush(&mut c, &current(&[("a", Status::Online, 9, 5)])).is_empty());
    }

    #[test]
    fn valkeys_status_wins_over_the_pending_one() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        c.add(rooms(&["w1"]), &change("a", Status::Away, 5, seq(2, ME)));
        // Another instance made `a` online (version 3) while this window was open.
        let out = flush(&mut c, &current(&[("a", Status::Online, 8, 3)]));
        assert_eq!(out[0].updates, vec![update("a", Status::Online, 8)]);
        // Unreadable: the decided change is sent.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 9, seq(4, ME + 9)),
        );
        let out = flush(&mut c, &HashMap::new());
        assert_eq!(out[0].updates, vec![update("a", Status::Away, 9)]);
        // Valkey lost its data (older counter): the decided change is sent.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 10, seq(5, ME + 10)),
        );
        let out = flush(&mut c, &current(&[("a", Status::Offline, 1, 0)]));
        assert_eq!(out[0].updates, vec![update("a", Status::Online, 10)]);
    }

    #[test]
    fn nothing_unproven_is_dropped() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        // Nothing sent here before: the room's view is unknown.
        c.add(rooms(&["w1"]), &change("a", Status::Online, 1, seq(5, ME)));
        assert_eq!(
            flush(&mut c, &current(&[("a", Status::Online, 1, 5)])).len(),
            1
        );
        // A reaper's (or a correction's) announcement in the chain.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 2, Order::Unknown),
        );
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Online, 3, seq(7, ME + 3)),
        );
        assert_eq!(
            flush(&mut c, &current(&[("a", Status::Online, 3, 7)])).len(),
            1
        );
        // From memory during an outage: only local clients were told, so no baseline after.
        let local = Change {
            local_only: true,
            ..change("a", Status::Away, 4, Order::Unknown)
        };
        c.add(rooms(&["w1"]), &local);
        let out = flush(&mut c, &HashMap::new());
        assert!(out[0].local_only);
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Away, 5, seq(9, ME + 5)),
        );
        assert_eq!(
            flush(&mut c, &current(&[("a", Status::Away, 5, 9)])).len(),
            1
        );
        // After offline nothing is kept either.
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Offline, 6, seq(10, ME + 6)),
        );
        flush(&mut c, &current(&[("a", Status::Offline, 6, 10)]));
        c.add(
            rooms(&["w1"]),
            &change("a", Status::Offline, 7, seq(11, ME + 7)),
        );
        assert_eq!(
            flush(&mut c, &current(&[("a", Status::Offline, 7, 11)])).len(),
            1
        );
    }

    #[test]
    fn rooms_are_deduped_separately() {
        let mut c = Coalescer::new(Duration::from_millis(250));
        c.add(rooms(&["w1"]), &change("a", Status::Online, 1, seq(1, ME)));
        flush(&mut c, &current(&[("a", Status::Online, 1, 1)]));
        // w2 was never told about `a`: it gets the update, w1 does not.
        c.add(
            rooms(&["w1", "w2"]),
            &change("a", Status::Away, 2, seq(2, ME + 2)),
        );
        c.add(
            rooms(&["w1", "w2"]),
            &change("a", Status::Online, 3, seq(3, ME + 3)),
        );
        let out = flush(&mut c, &current(&[("a", Status::Online, 3, 3)]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rooms, rooms(&["w2"]));
        assert_eq!(out[0].updates, vec![update("a", Status::Online, 3)]);
    }
}
