//! This instance's own sockets, and each user's *part*: what their sockets here add to their
//! status. This is the authority for them: Valkey gets a copy of each part (rebuilt from here
//! after an outage), and while Valkey is off or unreachable the status is decided from here.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use engineio::sparse::ShrinkWhenSparse;
use engineio::Sid;

/// A user's overall status, as `presence:update` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl Status {
    const ALL: [Status; 3] = [Status::Online, Status::Away, Status::Offline];

    pub fn as_str(self) -> &'static str {
        ["online", "away", "offline"][self as usize]
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// What a user's sockets on one instance add up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Every one of those sockets is away.
    pub away: bool,
    /// The `workspace:<id>` rooms they are in: where the user's updates go.
    pub workspaces: Workspaces,
}

/// The ids of a socket's or a part's workspace rooms: sorted, each once, and no larger than
/// they are. Both are kept for as long as the socket or user is here: a `BTreeSet`'s node
/// took about 280 bytes for a user in one workspace, a collected `Vec` room for four.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workspaces(Box<[String]>);

impl Workspaces {
    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    pub fn to_set(&self) -> BTreeSet<String> {
        self.0.iter().cloned().collect()
    }
}

impl FromIterator<String> for Workspaces {
    fn from_iter<I: IntoIterator<Item = String>>(ids: I) -> Self {
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        Workspaces(ids.into_boxed_slice())
    }
}

/// A user's status after a change of a part, as Valkey (or memory) decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub user: String,
    pub status: Status,
    pub last_seen: u64,
    pub changed: bool,
    /// Orders the workspace entries written from this outcome (Valkey's clock, µs).
    pub version: u64,
    /// The workspaces of the user's sockets (on every instance, for Valkey), before and after.
    pub before: BTreeSet<String>,
    pub after: BTreeSet<String>,
}

/// A user's part changed: the copy to make in Valkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWrite {
    pub user: String,
    pub before: Option<Part>,
    pub after: Option<Part>,
    /// For `after: None`, when the user's last socket here disconnected (ms since the epoch):
    /// their `lastSeen` if that makes them offline.
    pub seen_ms: Option<u64>,
}

/// The status of a user who has only this part (`None`: no socket).
pub fn status_of(part: &Option<Part>) -> Status {
    match part {
        None => Status::Offline,
        Some(p) if p.away => Status::Away,
        Some(_) => Status::Online,
    }
}

impl UserWrite {
    /// The outcome from this instance's sockets alone.
    pub fn outcome_from_memory(&self, now_ms: u64) -> Outcome {
        let status = status_of;
        let workspaces = |p: &Option<Part>| p.as_ref().map(|p| p.workspaces.to_set());
        let after = status(&self.after);
        Outcome {
            user: self.user.clone(),
            status: after,
            last_seen: self
                .seen_ms
                .filter(|_| after == Status::Offline)
                .unwrap_or(now_ms),
            changed: after != status(&self.before),
            version: 0,
            before: workspaces(&self.before).unwrap_or_default(),
            after: workspaces(&self.after).unwrap_or_default(),
        }
    }
}

#[derive(Debug)]
struct LocalSocket {
    user: String,
    away: bool,
    workspaces: Workspaces,
    /// Disconnected: the end of its grace period (it counts until then), and when (ms).
    gone: Option<(Instant, u64)>,
}

#[derive(Debug, Default)]
struct LocalUser {
    sids: Vec<Sid>,
    /// The part last handed out (written to Valkey or decided from memory).
    sent: Option<Part>,
    last_gone_ms: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Local {
    sockets: HashMap<Sid, LocalSocket>,
    users: HashMap<String, LocalUser>,
    deadlines: BTreeSet<(Instant, Sid)>,
    /// Users whose part may have changed since [`Local::writes`] last looked.
    dirty: BTreeSet<String>,
}

impl Local {
    /// A socket connected, or came back within its grace period with the same id (connection
    /// state recovery): then it keeps its away/active state.
    pub fn connect(&mut self, sid: Sid, user: &str, workspaces: Workspaces) {
        if let Some(s) = self.sockets.get_mut(&sid) {
            if let Some((deadline, _)) = s.gone.take() {
                self.deadlines.remove(&(deadline, sid));
            }
            s.workspaces = workspaces;
            self.dirty.insert(s.user.clone());
            return;
        }
        let s = LocalSocket {
            user: user.to_owned(),
            away: false,
            workspaces,
            gone: None,
        };
        self.sockets.insert(sid, s);
        self.users
            .entry(user.to_owned())
            .or_default()
            .sids
            .push(sid);
        self.dirty.insert(user.to_owned());
    }

    /// `presence:setAway` / `setActive`, and room changes, of a connected socket.
    pub fn update(&mut self, sid: Sid, away: Option<bool>, workspaces: Option<Workspaces>) {
        if let Some(s) = self.sockets.get_mut(&sid).filter(|s| s.gone.is_none()) {
            s.away = away.unwrap_or(s.away);
            s.workspaces = workspaces.unwrap_or(std::mem::take(&mut s.workspaces));
            self.dirty.insert(s.user.clone());
        }
    }

    /// Starts a socket's grace period: it counts until `deadline`.
    pub fn disconnect(&mut self, sid: Sid, deadline: Instant, at_ms: u64) {
        if let Some(s) = self.sockets.get_mut(&sid) {
            if let Some((old, _)) = s.gone.replace((deadline, at_ms)) {
                self.deadlines.remove(&(old, sid));
            }
            self.deadlines.insert((deadline, sid));
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Removes the sockets whose grace period has ended by `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, sid)) = self.deadlines.first().filter(|(d, _)| *d <= now) {
            self.deadlines.remove(&(deadline, sid));
            let Some(s) = self.sockets.remove(&sid) else {
                continue;
            };
            if let Some(u) = self.users.get_mut(&s.user) {
                u.sids.retain(|x| *x != sid);
                u.last_gone_ms = u.last_gone_ms.max(s.gone.map(|(_, at)| at));
            }
            self.dirty.insert(s.user);
        }
        self.sockets.shrink_when_sparse();
    }

    /// The user's part: their sockets here, those in their grace period included.
    pub fn part(&self, user: &str) -> Option<Part> {
        let sids = &self.users.get(user)?.sids;
        let sockets: Vec<&LocalSocket> = sids.iter().filter_map(|s| self.sockets.get(s)).collect();
        (!sockets.is_empty()).then(|| Part {
            away: sockets.iter().all(|s| s.away),
            workspaces: sockets
                .iter()
                .flat_map(|s| s.workspaces.iter().cloned())
                .collect(),
        })
    }

    /// The parts that changed since the last call, now counted as handed out. Users left
    /// with no socket here are forgotten.
    pub fn writes(&mut self) -> Vec<UserWrite> {
        let mut out = Vec::new();
        for user in std::mem::take(&mut self.dirty) {
            let after = self.part(&user);
            let Some(u) = self.users.get_mut(&user) else {
                continue;
            };
            if u.sent != after {
                let seen_ms = after.is_none().then_some(u.last_gone_ms).flatten();
                let before = std::mem::replace(&mut u.sent, after.clone());
                out.push(UserWrite {
                    user: user.clone(),
                    before,
                    after,
                    seen_ms,
                });
            }
            if u.sids.is_empty() {
                self.users.remove(&user);
            }
        }
        self.users.shrink_when_sparse();
        out
    }

    /// Every part handed out, to copy them all to Valkey again (unchanged, as far as this
    /// instance knows).
    pub fn all(&self) -> Vec<UserWrite> {
        let part = |u: &LocalUser| u.sent.clone();
        let write = |(user, u): (&String, &LocalUser)| UserWrite {
            user: user.clone(),
            before: part(u),
            after: part(u),
            seen_ms: None,
        };
        self.users.iter().map(write).collect()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ws(ids: &[&str]) -> Workspaces {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn part(away: bool, ids: &[&str]) -> Option<Part> {
        Some(Part {
            away,
            workspaces: ids.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// (user, before, after) of each write.
    fn changes(l: &mut Local) -> Vec<(String, Option<Part>, Option<Part>)> {
        l.writes()
            .into_iter()
            .map(|w| (w.user, w.before, w.after))
            .collect()
    }

    #[test]
    fn a_part_is_active_while_any_socket_is_and_covers_all_their_workspaces() {
        let mut l = Local::default();
        let (a, b) = (Sid::generate(), Sid::generate());
        l.connect(a, "u", ws(&["w1"]));
        l.connect(b, "u", ws(&["w2"]));
        assert_eq!(
            changes(&mut l),
            vec![("u".into(), None, part(false, &["w1", "w2"]))]
        );
        l.update(a, Some(true), None);
        assert_eq!(changes(&mut l), vec![], "b is still active");
        l.update(b, Some(true), Some(ws(&["w2", "w3"])));
        assert_eq!(
            changes(&mut l),
            vec![(
                "u".into(),
                part(false, &["w1", "w2"]),
                part(true, &["w1", "w2", "w3"])
            )]
        );
        assert_eq!(l.all().len(), 1);
    }

    #[test]
    fn a_disconnected_socket_counts_until_its_grace_ends() {
        let mut l = Local::default();
        let a = Sid::generate();
        let t0 = Instant::now();
        l.connect(a, "u", ws(&["w1"]));
        l.writes();
        l.disconnect(a, t0 + Duration::from_secs(3), 42);
        l.update(a, Some(true), None);
        l.expire(t0 + Duration::from_secs(2));
        assert_eq!(changes(&mut l), vec![], "no change while in grace");
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(3)));
        l.expire(t0 + Duration::from_secs(3));
        let w = l.writes();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].after.clone(), w[0].seen_ms), (None, Some(42)));
        assert_eq!(
            (l.next_deadline(), l.all().len(), l.socket_count()),
            (None, 0, 0)
        );
    }

    #[test]
    fn coming_back_within_grace_cancels_the_removal_and_keeps_away() {
        let mut l = Local::default();
        let a = Sid::generate();
        let t0 = Instant::now();
        l.connect(a, "u", ws(&["w1"]));
        l.update(a, Some(true), None);
        l.writes();
        l.disconnect(a, t0 + Duration::from_secs(3), 1);
        l.connect(a, "u", ws(&["w1", "w2"]));
        l.expire(t0 + Duration::from_secs(10));
        assert_eq!(
            changes(&mut l),
            vec![("u".into(), part(true, &["w1"]), part(true, &["w1", "w2"]))]
        );
        assert_eq!(l.socket_count(), 1);
    }

    #[test]
    fn a_flap_between_two_looks_writes_nothing() {
        let mut l = Local::default();
        let a = Sid::generate();
        l.connect(a, "u", ws(&["w1"]));
        l.writes();
        l.update(a, Some(true), None);
        l.update(a, Some(false), None);
        assert_eq!(changes(&mut l), vec![]);
        l.update(Sid::generate(), Some(true), None);
        assert_eq!(changes(&mut l), vec![], "unknown sockets are ignored");
    }

    #[test]
    fn outcomes_from_memory() {
        let w = |before, after, seen_ms| UserWrite {
            user: "u".into(),
            before,
            after,
            seen_ms,
        };
        let o = w(part(false, &["w1"]), None, Some(7)).outcome_from_memory(9);
        assert_eq!(
            (o.status, o.changed, o.last_seen),
            (Status::Offline, true, 7)
        );
        assert_eq!((o.before.len(), o.after.len()), (1, 0));
        let o = w(part(false, &["w1"]), part(true, &["w1"]), None).outcome_from_memory(9);
        assert_eq!((o.status, o.changed, o.last_seen), (Status::Away, true, 9));
        let o = w(part(true, &[]), part(true, &["w2"]), None).outcome_from_memory(9);
        assert_eq!((o.status, o.changed), (Status::Away, false));
    }

    #[test]
    fn status_names() {
        for s in [Status::Online, Status::Away, Status::Offline] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("busy"), None);
    }
}
