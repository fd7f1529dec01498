//! `presence:update`s collected over a short window (`presence.batch_ms`), per workspace room.
//!
//! Under a connect storm every user of a workspace comes online within seconds and each
//! update goes to every member: sent one by one, that costs a frame, a write and a wake per
//! recipient per update. Collected, a room's updates go out together (each recipient gets
//! them in one queueing, one flush), and a user's changes within the window shrink to the
//! last one. What is sent is the user's status in Valkey when the window closes, not when the
//! change was decided: a window delays an update, so another instance's later one could
//! otherwise arrive first and be followed by this older one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::local::Status;

/// The `presence:update` payload for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub user: String,
    pub status: Status,
    pub last_seen: u64,
}

/// Updates to send together to the sockets in any of `rooms` (workspace ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub rooms: Vec<String>,
    pub updates: Vec<Update>,
    /// Decided from this instance's memory (no Valkey, or it is unreachable): for this
    /// instance's sockets only, as the status is not read from Valkey either.
    pub local_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    status: Status,
    last_seen: u64,
    local_only: bool,
}

/// Room → user → that user's last update for the room in this window.
#[derive(Debug, Default)]
pub struct Window {
    rooms: BTreeMap<String, BTreeMap<String, Pending>>,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Adds an update for `rooms`; returns true when it opened the window.
    pub fn add(&mut self, rooms: BTreeSet<String>, update: Update, local_only: bool) -> bool {
        let opened = self.is_empty() && !rooms.is_empty();
        let pending = Pending {
            status: update.status,
            last_seen: update.last_seen,
            local_only,
        };
        for room in rooms {
            self.rooms
                .entry(room)
                .or_default()
                .insert(update.user.clone(), pending);
        }
        opened
    }

    /// Users whose status is to be read from Valkey before sending.
    pub fn users_to_read(&self) -> Vec<String> {
        let users: BTreeSet<&String> = self
            .rooms
            .values()
            .flat_map(|users| users.iter().filter(|(_, p)| !p.local_only).map(|(u, _)| u))
            .collect();
        users.into_iter().cloned().collect()
    }

    /// What the window sends, given the users' `(status, lastSeen)` in Valkey now (missing when
    /// unreadable: then the update as decided). Each user's update goes once to all the rooms
    /// it is for (a socket in two of them gets it once).
    pub fn resolve(self, current: &HashMap<String, (Status, u64)>) -> Vec<Batch> {
        let mut per_update: BTreeMap<(String, Status, u64, bool), Vec<String>> = BTreeMap::new();
        for (room, users) in self.rooms {
            for (user, p) in users {
                let (status, last_seen) = current
                    .get(&user)
                    .filter(|_| !p.local_only)
                    .copied()
                    .unwrap_or((p.status, p.last_seen));
                per_update
                    .entry((user, status, last_seen, p.local_only))
                    .or_default()
                    .push(room.clone());
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

    fn rooms(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn update(user: &str, status: Status, last_seen: u64) -> Update {
        Update {
            user: user.into(),
            status,
            last_seen,
        }
    }

    #[test]
    fn a_window_sends_each_users_last_update_once_per_room_set() {
        let mut w = Window::default();
        assert!(w.add(rooms(&["w1"]), update("a", Status::Online, 1), false));
        assert!(!w.add(rooms(&["w1"]), update("b", Status::Online, 2), false));
        w.add(rooms(&["w1"]), update("a", Status::Away, 3), false);
        w.add(rooms(&["w1", "w2"]), update("c", Status::Online, 4), false);
        assert_eq!(w.users_to_read(), vec!["a", "b", "c"]);
        assert_eq!(
            w.resolve(&HashMap::new()),
            vec![
                Batch {
                    rooms: vec!["w1".into()],
                    updates: vec![update("a", Status::Away, 3), update("b", Status::Online, 2)],
                    local_only: false,
                },
                Batch {
                    rooms: vec!["w1".into(), "w2".into()],
                    updates: vec![update("c", Status::Online, 4)],
                    local_only: false,
                },
            ]
        );
    }

    #[test]
    fn valkeys_status_wins_except_for_updates_decided_from_memory() {
        let mut w = Window::default();
        w.add(rooms(&["w1"]), update("a", Status::Away, 5), false);
        w.add(rooms(&["w2"]), update("b", Status::Offline, 6), true);
        assert_eq!(w.users_to_read(), vec!["a"]);
        let current = HashMap::from([
            ("a".to_string(), (Status::Online, 8)),
            ("b".to_string(), (Status::Online, 9)),
        ]);
        let out = w.resolve(&current);
        assert_eq!(out[0].updates, vec![update("a", Status::Online, 8)]);
        assert_eq!(
            (out[1].updates.clone(), out[1].local_only),
            (vec![update("b", Status::Offline, 6)], true)
        );
    }

    #[test]
    fn an_empty_room_list_opens_nothing() {
        let mut w = Window::default();
        assert!(!w.add(BTreeSet::new(), update("a", Status::Online, 1), false));
        assert!(w.is_empty() && w.resolve(&HashMap::new()).is_empty());
    }
}
