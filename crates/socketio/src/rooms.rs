//! The local room index of a namespace: which sockets are in which room, both ways, so a
//! broadcast finds its recipients and a leaving socket leaves every room at once.
//!
//! Each room keeps its members' handles (`M`, the namespace's `Arc<Socket>`), so a broadcast
//! builds its recipient list in one pass over the room, without looking every member up again
//! in the namespace's socket map.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use engineio::sparse::ShrinkWhenSparse;
use engineio::Sid;

/// Room names are shared between the index's two maps (and every socket in the room).
pub type Room = Arc<str>;

/// A room's members. Most rooms have one (a socket's own room, a user with one tab, a direct
/// conversation with one side online): those keep it inline instead of in a hash map of
/// their own, which costs about 300 bytes.
enum Members<M> {
    One(Sid, M),
    Many(HashMap<Sid, M>),
}

impl<M> Members<M> {
    /// Adds `sid`; false if it was there already.
    fn insert(&mut self, sid: Sid, member: M) -> bool {
        match self {
            Members::One(only, _) if *only == sid => false,
            Members::Many(map) => match map.entry(sid) {
                Entry::Vacant(slot) => {
                    slot.insert(member);
                    true
                }
                Entry::Occupied(_) => false,
            },
            Members::One(..) => {
                // A second member: the room grows into a map.
                let mut map = HashMap::with_capacity(2);
                if let Members::One(only, first) =
                    std::mem::replace(self, Members::Many(HashMap::new()))
                {
                    map.insert(only, first);
                }
                map.insert(sid, member);
                *self = Members::Many(map);
                true
            }
        }
    }

    /// Removes `sid`; false if it was not there.
    fn remove(&mut self, sid: &Sid) -> bool {
        match self {
            Members::One(only, _) if only == sid => {
                *self = Members::Many(HashMap::new());
                true
            }
            Members::One(..) => false,
            Members::Many(map) => {
                let removed = map.remove(sid).is_some();
                map.shrink_when_sparse();
                removed
            }
        }
    }

    fn contains(&self, sid: &Sid) -> bool {
        match self {
            Members::One(only, _) => only == sid,
            Members::Many(map) => map.contains_key(sid),
        }
    }

    fn len(&self) -> usize {
        match self {
            Members::One(..) => 1,
            Members::Many(map) => map.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> impl Iterator<Item = (&Sid, &M)> {
        let (one, many) = match self {
            Members::One(sid, member) => (Some((sid, member)), None),
            Members::Many(map) => (None, Some(map.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

struct Index<M> {
    members: HashMap<Room, Members<M>>,
    rooms_of: HashMap<Sid, Vec<Room>>,
}

pub struct RoomIndex<M = Sid> {
    inner: RwLock<Index<M>>,
}

impl<M> Default for RoomIndex<M> {
    fn default() -> Self {
        RoomIndex {
            inner: RwLock::new(Index {
                members: HashMap::new(),
                rooms_of: HashMap::new(),
            }),
        }
    }
}

/// What joining or leaving changed, so a relay can follow a room's first and last member.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoomChanges {
    pub created: Vec<Room>,
    pub deleted: Vec<Room>,
}

impl<M: Clone> RoomIndex<M> {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index<M>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index<M>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts `sid` (whose handle is `member`) in `rooms`.
    pub fn join<S: AsRef<str>>(&self, sid: Sid, member: &M, rooms: &[S]) -> RoomChanges {
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
            let added = match idx.members.entry(room.clone()) {
                Entry::Occupied(mut set) => set.get_mut().insert(sid, member.clone()),
                Entry::Vacant(slot) => {
                    slot.insert(Members::One(sid, member.clone()));
                    true
                }
            };
            if added {
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
            idx.members.shrink_when_sparse();
        }
        if let Some(list) = idx.rooms_of.get_mut(&sid) {
            list.retain(|r| &**r != room);
            if list.is_empty() {
                idx.rooms_of.remove(&sid);
                idx.rooms_of.shrink_when_sparse();
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
        idx.rooms_of.shrink_when_sparse();
        idx.members.shrink_when_sparse();
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
                        .is_some_and(|(sid, _)| sid.as_str() == &***room);
                !own
            })
            .count()
    }

    pub fn contains_room(&self, room: &str) -> bool {
        self.read().members.contains_key(room)
    }

    /// The members in any of `rooms` and in none of `except`, each once, in one pass. With no
    /// `rooms` it is every socket: `all` lists them, given the excluded ids, and is called
    /// after this index's lock is released (the namespace takes its socket map's lock first).
    pub fn select<R: AsRef<str>, E: AsRef<str>>(
        &self,
        rooms: &[R],
        except: &[E],
        all: impl FnOnce(&HashSet<Sid>) -> Vec<M>,
    ) -> Vec<M> {
        let idx = self.read();
        let excluded: HashSet<Sid> = except
            .iter()
            .filter_map(|r| idx.members.get(r.as_ref()))
            .flat_map(|m| m.iter().map(|(sid, _)| *sid))
            .collect();
        if rooms.is_empty() {
            drop(idx);
            return all(&excluded);
        }
        let sets: Vec<&Members<M>> = rooms
            .iter()
            .filter_map(|r| idx.members.get(r.as_ref()))
            .collect();
        let mut out = Vec::with_capacity(sets.iter().map(|s| s.len()).sum());
        for (i, set) in sets.iter().enumerate() {
            for (sid, member) in set.iter() {
                // Once: a member of an earlier room (or of the same room listed twice) was taken.
                if excluded.contains(sid) || sets[..i].iter().any(|s| s.contains(sid)) {
                    continue;
                }
                out.push(member.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index whose members are their own ids, as in the tests below.
    fn join(idx: &RoomIndex, sid: Sid, rooms: &[&str]) -> RoomChanges {
        idx.join(sid, &sid, rooms)
    }

    fn sorted(mut v: Vec<Sid>) -> Vec<Sid> {
        v.sort();
        v
    }

    #[test]
    fn a_room_grows_from_one_member_and_empties() {
        let (a, b) = (Sid::generate(), Sid::generate());
        let mut m = Members::One(a, a);
        assert!(!m.insert(a, a), "already there");
        assert!(m.insert(b, b));
        assert_eq!(m.len(), 2);
        assert!(m.contains(&a) && m.contains(&b));
        assert!(m.remove(&a));
        assert!(!m.remove(&a));
        assert_eq!(m.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [b]);
        let mut one = Members::One(a, a);
        assert!(!one.remove(&b));
        assert!(one.remove(&a));
        assert!(one.is_empty() && one.iter().next().is_none());
    }

    #[test]
    fn join_leave_select() {
        let idx = RoomIndex::default();
        let (a, b, c) = (Sid::generate(), Sid::generate(), Sid::generate());
        assert_eq!(join(&idx, a, &["r1", "r2"]).created.len(), 2);
        assert!(join(&idx, b, &["r1"]).created.is_empty());
        join(&idx, c, &["r2"]);
        let none = |_: &HashSet<Sid>| Vec::new();
        let got = sorted(idx.select(&["r1", "r2"], &[] as &[&str], none));
        assert_eq!(
            got,
            sorted(vec![a, b, c]),
            "a socket in two rooms is selected once"
        );
        assert_eq!(idx.select(&["r1"], &["r2"], none), vec![b]);
        assert_eq!(idx.leave(b, "r1").deleted.len(), 0);
        assert_eq!(idx.leave_all(a).deleted, vec![Arc::from("r1")]);
        assert!(!idx.contains_room("r1"));
        assert_eq!(idx.rooms_of(c), vec![Arc::from("r2")]);
        assert!(idx.is_member(c, "r2") && !idx.is_member(c, "r1"));
    }

    #[test]
    fn select_dedupes_excepts_and_hands_all_the_excluded() {
        let idx = RoomIndex::default();
        let (a, b, c, d) = (
            Sid::generate(),
            Sid::generate(),
            Sid::generate(),
            Sid::generate(),
        );
        join(&idx, a, &["r1", "r2", "r3"]);
        join(&idx, b, &["r2", "r3", "x"]);
        join(&idx, c, &["r3"]);
        join(&idx, d, &["x"]);
        let none = |_: &HashSet<Sid>| Vec::new();
        // Three overlapping rooms, one listed twice, and an unknown room: each member once.
        let got = idx.select(&["r1", "r2", "r2", "nope", "r3"], &[] as &[&str], none);
        assert_eq!(sorted(got), sorted(vec![a, b, c]));
        // A member of an except room is left out even if it is in several target rooms.
        let got = idx.select(&["r1", "r2", "r3"], &["x", "nope"], none);
        assert_eq!(sorted(got), sorted(vec![a, c]));
        assert!(idx.select(&["nope"], &[] as &[&str], none).is_empty());
        // No rooms: `all` decides, with the excluded ids.
        let got = idx.select(&[] as &[&str], &["x"], |excluded| {
            [a, b, c, d]
                .into_iter()
                .filter(|s| !excluded.contains(s))
                .collect()
        });
        assert_eq!(sorted(got), sorted(vec![a, c]));
    }

    #[test]
    fn shared_rooms_leave_out_own_id_rooms() {
        let idx = RoomIndex::default();
        let (a, b) = (Sid::generate(), Sid::generate());
        join(&idx, a, &[a.as_str(), "channel:1", "user:1"]);
        join(&idx, b, &[b.as_str(), "channel:1"]);
        assert_eq!(idx.shared_rooms(), 2);
        idx.leave_all(a);
        assert_eq!(idx.shared_rooms(), 1);
    }
}
