//! The local room index of a namespace: which sockets are in which room, both ways, so a
//! broadcast finds its recipients and a leaving socket leaves every room at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::engineio::Sid;

/// Room names are shared between the index's two maps (and every socket in the room).
pub type Room = Arc<str>;

#[derive(Default)]
struct Index {
    members: HashMap<Room, HashSet<Sid>>,
    rooms_of: HashMap<Sid, Vec<Room>>,
}

#[derive(Default)]
pub struct RoomIndex {
    inner: RwLock<Index>,
}

/// What joining or leaving changed, so a relay can follow a room's first and last member.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoomChanges {
    pub created: Vec<Room>,
    pub deleted: Vec<Room>,
}

impl RoomIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn join<S: AsRef<str>>(&self, sid: Sid, rooms: &[S]) -> RoomChanges {
        let mut changes = RoomChanges::default();
        let mut idx = self.write();
        for name in rooms {
            let name = name.as_ref();
            let room: Room = match idx.members.get_key_value(name) {
                Some((k, _)) => k.clone(),
                None => {
                    let r: Room = Arc::from(name);
                    changes.created.push(r.clone());
                    r
                }
            };
            if idx.members.entry(room.clone()).or_default().insert(sid) {
                idx.rooms_of.entry(sid).or_default().push(room);
            }
        }
        changes
    }

    pub fn leave(&self, sid: Sid, room: &str) -> RoomChanges {
        let mut changes = RoomChanges::default();
        let mut idx = self.write();
        let emptied = match idx.members.get_mut(room) {
            Some(set) => set.remove(&sid) && set.is_empty(),
            None => return changes,
        };
        if emptied {
            if let Some((k, _)) = idx.members.remove_entry(room) {
                changes.deleted.push(k);
            }
        }
        if let Some(list) = idx.rooms_of.get_mut(&sid) {
            list.retain(|r| &**r != room);
            if list.is_empty() {
                idx.rooms_of.remove(&sid);
            }
        }
        changes
    }

    pub fn leave_all(&self, sid: Sid) -> RoomChanges {
        let mut changes = RoomChanges::default();
        let mut idx = self.write();
        let Some(rooms) = idx.rooms_of.remove(&sid) else {
            return changes;
        };
        for room in rooms {
            if let Some(set) = idx.members.get_mut(&room) {
                set.remove(&sid);
                if set.is_empty() {
                    idx.members.remove(&room);
                    changes.deleted.push(room);
                }
            }
        }
        changes
    }

    pub fn rooms_of(&self, sid: Sid) -> Vec<Room> {
        self.read().rooms_of.get(&sid).cloned().unwrap_or_default()
    }

    pub fn is_member(&self, sid: Sid, room: &str) -> bool {
        self.read()
            .members
            .get(room)
            .is_some_and(|m| m.contains(&sid))
    }

    pub fn all_rooms(&self) -> Vec<Room> {
        self.read().members.keys().cloned().collect()
    }

    /// Rooms other than the sockets' own id rooms (each socket is alone in the room named by
    /// its id): the rooms an operator thinks of, for the `rooms` gauge.
    pub fn shared_rooms(&self) -> usize {
        let idx = self.read();
        idx.members
            .iter()
            .filter(|(room, members)| {
                let own = members.len() == 1
                    && members
                        .iter()
                        .next()
                        .is_some_and(|sid| sid.as_str() == &***room);
                !own
            })
            .count()
    }

    pub fn contains_room(&self, room: &str) -> bool {
        self.read().members.contains_key(room)
    }

    /// The sockets in any of `rooms` (every socket when `rooms` is empty, given as `all`) and
    /// in none of `except`, each once.
    pub fn select<R: AsRef<str>, E: AsRef<str>>(
        &self,
        rooms: &[R],
        except: &[E],
        all: impl FnOnce() -> Vec<Sid>,
    ) -> Vec<Sid> {
        let idx = self.read();
        let excluded: HashSet<Sid> = except
            .iter()
            .filter_map(|r| idx.members.get(r.as_ref()))
            .flatten()
            .copied()
            .collect();
        let mut out: Vec<Sid> = if rooms.is_empty() {
            drop(idx);
            all()
        } else if rooms.len() == 1 {
            idx.members
                .get(rooms[0].as_ref())
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        } else {
            let mut seen = HashSet::new();
            rooms
                .iter()
                .filter_map(|r| idx.members.get(r.as_ref()))
                .flatten()
                .filter(|sid| seen.insert(**sid))
                .copied()
                .collect()
        };
        if !excluded.is_empty() {
            out.retain(|sid| !excluded.contains(sid));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_select() {
        let idx = RoomIndex::default();
        let (a, b, c) = (Sid::generate(), Sid::generate(), Sid::generate());
        assert_eq!(idx.join(a, &["r1", "r2"]).created.len(), 2);
        assert!(idx.join(b, &["r1"]).created.is_empty());
        idx.join(c, &["r2"]);
        let mut got = idx.select(&["r1", "r2"], &[] as &[&str], Vec::new);
        got.sort();
        let mut want = vec![a, b, c];
        want.sort();
        assert_eq!(got, want, "a socket in two rooms is selected once");
        assert_eq!(idx.select(&["r1"], &["r2"], Vec::new), vec![b]);
        assert_eq!(idx.leave(b, "r1").deleted.len(), 0);
        assert_eq!(idx.leave_all(a).deleted, vec![Arc::from("r1")]);
        assert!(!idx.contains_room("r1"));
        assert_eq!(idx.rooms_of(c), vec![Arc::from("r2")]);
        assert!(idx.is_member(c, "r2") && !idx.is_member(c, "r1"));
    }

    #[test]
    fn shared_rooms_leave_out_own_id_rooms() {
        let idx = RoomIndex::default();
        let (a, b) = (Sid::generate(), Sid::generate());
        idx.join(a, &[a.as_str(), "channel:1", "user:1"]);
        idx.join(b, &[b.as_str(), "channel:1"]);
        assert_eq!(idx.shared_rooms(), 2);
        idx.leave_all(a);
        assert_eq!(idx.shared_rooms(), 1);
    }
}
