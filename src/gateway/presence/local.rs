//! This instance's own sockets as presence sees them. It is the authority for them: Valkey
//! gets a copy (and is rebuilt from it after an outage), and while Valkey is off or
//! unreachable the status is computed from here alone.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Instant;

use engineio::Sid;

/// A user's overall status, as `presence:update` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Online,
    Away,
    Offline,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Away => "away",
            Status::Offline => "offline",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "online" => Some(Status::Online),
            "away" => Some(Status::Away),
            "offline" => Some(Status::Offline),
            _ => None,
        }
    }
}

/// What one socket contributes to its user's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub away: bool,
    /// Ids of the `workspace:<id>` rooms the socket is in: where its user's updates go.
    pub workspaces: Vec<String>,
}

/// One change of a socket to copy to Valkey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub sid: Sid,
    pub user: String,
    /// `None` removes the socket.
    pub value: Option<Contribution>,
    /// For a removal: when the socket disconnected (ms since the epoch), which becomes the
    /// user's `lastSeen` if they go offline; `None` means now.
    pub seen_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gone {
    deadline: Instant,
    at_ms: u64,
}

#[derive(Debug)]
struct LocalSocket {
    user: String,
    contribution: Contribution,
    /// Disconnected and waiting out the grace period; it still counts until then.
    gone: Option<Gone>,
}

#[derive(Debug)]
struct LocalUser {
    sids: HashSet<Sid>,
    /// The status this instance last saw for the user (from Valkey or from here): the
    /// baseline of what counts as a change when Valkey cannot be asked.
    shown: Status,
}

#[derive(Debug, Default)]
pub struct Local {
    sockets: HashMap<Sid, LocalSocket>,
    users: HashMap<String, LocalUser>,
    deadlines: BTreeSet<(Instant, Sid)>,
}

impl Local {
    /// A socket connected, or came back within its grace period with the same id (connection
    /// state recovery): then it keeps its away/active state.
    pub fn connect(&mut self, sid: Sid, user: &str, workspaces: Vec<String>) -> Write {
        if let Some(s) = self.sockets.get_mut(&sid) {
            if let Some(g) = s.gone.take() {
                self.deadlines.remove(&(g.deadline, sid));
            }
            s.contribution.workspaces = workspaces;
            return Write {
                sid,
                user: s.user.clone(),
                value: Some(s.contribution.clone()),
                seen_ms: None,
            };
        }
        let contribution = Contribution {
            away: false,
            workspaces,
        };
        self.sockets.insert(
            sid,
            LocalSocket {
                user: user.to_owned(),
                contribution: contribution.clone(),
                gone: None,
            },
        );
        self.users
            .entry(user.to_owned())
            .or_insert_with(|| LocalUser {
                sids: HashSet::new(),
                shown: Status::Offline,
            })
            .sids
            .insert(sid);
        Write {
            sid,
            user: user.to_owned(),
            value: Some(contribution),
            seen_ms: None,
        }
    }

    /// `presence:setAway` / `presence:setActive`; `None` for a socket that is not connected.
    pub fn set(&mut self, sid: Sid, away: bool, workspaces: Vec<String>) -> Option<Write> {
        let s = self.sockets.get_mut(&sid).filter(|s| s.gone.is_none())?;
        s.contribution = Contribution { away, workspaces };
        Some(Write {
            sid,
            user: s.user.clone(),
            value: Some(s.contribution.clone()),
            seen_ms: None,
        })
    }

    /// A socket's workspaces changed; `None` for a socket that is not connected, or when they
    /// are the same.
    pub fn rooms(&mut self, sid: Sid, workspaces: Vec<String>) -> Option<Write> {
        let s = self.sockets.get_mut(&sid).filter(|s| s.gone.is_none())?;
        if s.contribution.workspaces == workspaces {
            return None;
        }
        s.contribution.workspaces = workspaces;
        Some(Write {
            sid,
            user: s.user.clone(),
            value: Some(s.contribution.clone()),
            seen_ms: None,
        })
    }

    /// Starts a socket's grace period. Returns false for an unknown socket.
    pub fn disconnect(&mut self, sid: Sid, deadline: Instant, at_ms: u64) -> bool {
        let Some(s) = self.sockets.get_mut(&sid) else {
            return false;
        };
        if let Some(g) = s.gone.replace(Gone { deadline, at_ms }) {
            self.deadlines.remove(&(g.deadline, sid));
        }
        self.deadlines.insert((deadline, sid));
        true
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// Removes the sockets whose grace period has ended by `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(Write, Contribution)> {
        let mut out = Vec::new();
        while let Some(&(deadline, sid)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.remove(&(deadline, sid));
            let Some(s) = self.sockets.remove(&sid) else {
                continue;
            };
            if let Some(u) = self.users.get_mut(&s.user) {
                u.sids.remove(&sid);
            }
            let seen_ms = s.gone.map(|g| g.at_ms);
            out.push((
                Write {
                    sid,
                    user: s.user,
                    value: None,
                    seen_ms,
                },
                s.contribution,
            ));
        }
        out
    }

    /// The user's status from this instance's sockets alone.
    pub fn status(&self, user: &str) -> Status {
        let mut status = Status::Offline;
        for sid in self.users.get(user).map(|u| &u.sids).into_iter().flatten() {
            match self.sockets.get(sid) {
                Some(s) if !s.contribution.away => return Status::Online,
                Some(_) => status = Status::Away,
                None => {}
            }
        }
        status
    }

    /// The workspaces of the user's sockets here.
    pub fn workspaces(&self, user: &str) -> BTreeSet<String> {
        self.users
            .get(user)
            .map(|u| &u.sids)
            .into_iter()
            .flatten()
            .filter_map(|sid| self.sockets.get(sid))
            .flat_map(|s| s.contribution.workspaces.iter().cloned())
            .collect()
    }

    pub fn shown(&self, user: &str) -> Status {
        self.users.get(user).map_or(Status::Offline, |u| u.shown)
    }

    /// Records the status last seen for a user. Users with no socket here are forgotten:
    /// their status is the business of the instances that have their sockets.
    pub fn set_shown(&mut self, user: &str, status: Status) {
        if let Some(u) = self.users.get_mut(user) {
            u.shown = status;
            if u.sids.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Every socket here (including those in their grace period), to copy them all to Valkey.
    pub fn all(&self) -> Vec<Write> {
        self.sockets
            .iter()
            .map(|(sid, s)| Write {
                sid: *sid,
                user: s.user.clone(),
                value: Some(s.contribution.clone()),
                seen_ms: None,
            })
            .collect()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ws(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn status_is_online_while_any_socket_is_active() {
        let mut l = Local::default();
        let (a, b) = (Sid::generate(), Sid::generate());
        assert_eq!(l.status("u"), Status::Offline);
        l.connect(a, "u", ws(&["w1"]));
        l.connect(b, "u", ws(&["w2"]));
        assert_eq!(l.status("u"), Status::Online);
        assert!(l.set(a, true, ws(&["w1"])).is_some());
        assert_eq!(l.status("u"), Status::Online);
        assert!(l.set(b, true, ws(&["w2"])).is_some());
        assert_eq!(l.status("u"), Status::Away);
        assert_eq!(l.workspaces("u"), ws(&["w1", "w2"]).into_iter().collect());
    }

    #[test]
    fn a_disconnected_socket_counts_until_its_grace_ends() {
        let mut l = Local::default();
        let a = Sid::generate();
        let t0 = Instant::now();
        l.connect(a, "u", ws(&["w1"]));
        assert!(l.disconnect(a, t0 + Duration::from_secs(3), 42));
        assert_eq!(l.status("u"), Status::Online);
        assert!(
            l.set(a, true, vec![]).is_none(),
            "no state change while gone"
        );
        assert!(l.expire(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_secs(3)));
        let gone = l.expire(t0 + Duration::from_secs(3));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0.value, None);
        assert_eq!(gone[0].0.seen_ms, Some(42));
        assert_eq!(gone[0].1.workspaces, ws(&["w1"]));
        assert_eq!(l.status("u"), Status::Offline);
        assert_eq!(l.next_deadline(), None);
        l.set_shown("u", Status::Offline);
        assert_eq!(l.user_count(), 0);
    }

    #[test]
    fn coming_back_within_grace_cancels_the_removal_and_keeps_away() {
        let mut l = Local::default();
        let a = Sid::generate();
        let t0 = Instant::now();
        l.connect(a, "u", ws(&["w1"]));
        l.set(a, true, ws(&["w1"]));
        l.disconnect(a, t0 + Duration::from_secs(3), 1);
        let w = l.connect(a, "u", ws(&["w1", "w2"]));
        assert_eq!(w.value.map(|c| c.away), Some(true));
        assert!(l.expire(t0 + Duration::from_secs(10)).is_empty());
        assert_eq!(l.status("u"), Status::Away);
        assert_eq!(l.socket_count(), 1);
    }

    #[test]
    fn status_names() {
        for s in [Status::Online, Status::Away, Status::Offline] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("busy"), None);
    }
}
