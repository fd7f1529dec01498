//! The local room index of a namespace: which sockets are in which room, both ways, so a
//! broadcast finds its recipients and a leaving socket leaves every room at once.
//!
//! Each room keeps its members' handles (`M`, the namespace's `Arc<Socket>`), so a broadcast
//! builds its recipient list in one pass over the room, without looking every member up again
//! in the namespace's socket map.

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use engineio::sparse::ShrinkWhenSparse;
use engineio::Sid;

/// Room names are shared between the index's two maps (and every socket in the room).
pub type Room = Arc<str>;

/// A room member's handle (the namespace's `Arc<Socket>`, or a bare id): the index finds a
/// member by the id the handle carries.
pub trait Member: Clone {
    fn sid(&self) -> &Sid;
}

impl Member for Sid {
    fn sid(&self) -> &Sid {
        self
    }
}

/// A member in a room's set, hashed and compared by its id: the handle alone is the entry,
/// 8 bytes for an `Arc` where a map from id to handle took 32.
struct ById<M>(M);

impl<M: Member> Hash for ById<M> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.sid().hash(state);
    }
}

impl<M: Member> PartialEq for ById<M> {
    fn eq(&self, other: &Self) -> bool {
        self.0.sid() == other.0.sid()
    }
}

impl<M: Member> Eq for ById<M> {}

/// Lookups by id: `Sid`'s hash is the one [`ById`] hashes with.
impl<M: Member> Borrow<Sid> for ById<M> {
    fn borrow(&self) -> &Sid {
        self.0.sid()
    }
}

/// A room's members. Most rooms have one (a socket's own room, a user with one tab, a direct
/// conversation with one side online): those keep it inline instead of in a hash set of
/// their own.
enum Members<M> {
    One(M),
    /// Boxed, so that an entry of the index's map stays two words whatever its room: most
    /// rooms of an instance have one member here (a user's own, a DM), and every room pays
    /// for the map's entry size (32 bytes instead of 64).
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<ById<M>>>),
    /// The last member left (the room is about to be dropped from the index).
    Gone,
}

impl<M: Member> Members<M> {
    /// Adds `member`; false if it was there already.
    fn insert(&mut self, member: M) -> bool {
        match self {
            Members::One(only) if only.sid() == member.sid() => false,
            Members::Many(set) => set.insert(ById(member)),
            Members::Gone => {
                *self = Members::One(member);
                true
            }
            Members::One(..) => {
                // A second member: the room grows into a set.
                let mut set = HashSet::with_capacity(2);
                if let Members::One(first) = std::mem::replace(self, Members::Gone) {
                    set.insert(ById(first));
                }
                set.insert(ById(member));
                *self = Members::Many(Box::new(set));
                true
            }
        }
    }

    /// Removes `sid`; false if it was not there.
    fn remove(&mut self, sid: &Sid) -> bool {
        match self {
            Members::One(only) if only.sid() == sid => {
                *self = Members::Gone;
                true
            }
            Members::One(..) | Members::Gone => false,
            Members::Many(set) => {
                let removed = set.remove(sid);
                set.shrink_when_sparse();
                removed
            }
        }
    }

    fn contains(&self, sid: &Sid) -> bool {
        match self {
            Members::One(only) => only.sid() == sid,
            Members::Many(set) => set.contains(sid),
            Members::Gone => false,
        }
    }

    fn len(&self) -> usize {
        match self {
            Members::One(..) => 1,
            Members::Many(set) => set.len(),
            Members::Gone => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn iter(&self) -> impl Iterator<Item = &M> {
        let (one, many) = match self {
            Members::One(member) => (Some(member), None),
            Members::Many(set) => (None, Some(set.iter().map(|m| &m.0))),
            Members::Gone => (None, None),
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

impl<M: Member> RoomIndex<M> {
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
        // Room by room, the socket's list would double its capacity as it grows: a socket's
        // own room then nine membership rooms would hold 16 slots for 10.
        idx.rooms_of
            .entry(sid)
            .or_default()
            .reserve_exact(rooms.len());
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
                Entry::Occupied(mut set) => set.get_mut().insert(member.clone()),
                Entry::Vacant(slot) => {
                    slot.insert(Members::One(member.clone()));
                    true
                }
            };
            if added {
                idx.rooms_of.entry(sid).or_default().push(room);
            }
        }
        match idx.rooms_of.get_mut(&sid) {
            Some(list) if list.is_empty() => {
                idx.rooms_of.remove(&sid);
            }
            // Rooms it was in already took none of the reserved slots.
            Some(list) => list.shrink_to_fit(),
            None => {}
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
                        .is_some_and(|member| member.sid().as_str() == &***room);
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
            .flat_map(|m| m.iter().map(|member| *member.sid()))
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
            for member in set.iter() {
                let sid = member.sid();
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
        let mut m = Members::One(a);
        assert!(!m.insert(a), "already there");
        assert!(m.insert(b));
        assert_eq!(m.len(), 2);
        assert!(m.contains(&a) && m.contains(&b));
        assert!(m.remove(&a));
        assert!(!m.remove(&a));
        assert_eq!(m.iter().copied().collect::<Vec<_>>(), [b]);
        let mut one = Members::One(a);
        assert!(!one.remove(&b));
        assert!(one.remove(&a));
        assert!(one.is_empty() && one.iter().next().is_none());
        assert!(one.insert(b) && one.contains(&b));
    }

    #[test]
    fn an_entry_of_the_room_map_is_two_words_for_socket_members() {
        // A member as the namespace keeps it (a handle) and the room's name (a fat pointer).
        let entry = std::mem::size_of::<(Room, Members<std::sync::Arc<Sid>>)>();
        assert_eq!(entry, 32);
    }

    #[test]
    fn a_socket_s_room_list_holds_no_spare_slots_and_goes_with_its_last_room() {
        let idx = RoomIndex::default();
        let a = Sid::generate();
        join(&idx, a, &[a.as_str()]);
        let nine: Vec<String> = (0..9).map(|i| format!("room:{i}")).collect();
        idx.join(a, &a, &nine);
        idx.join(a, &a, &nine[..2]);
        let capacity = idx.read().rooms_of.get(&a).map(Vec::capacity);
        assert_eq!(capacity, Some(10));
        assert_eq!(idx.rooms_of(a).len(), 10);
        let b = Sid::generate();
        idx.join(b, &b, &[] as &[&str]);
        assert!(!idx.read().rooms_of.contains_key(&b), "no list for no room");
        idx.leave_all(a);
        assert!(idx.read().rooms_of.is_empty());
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
