//! Who a broadcast goes to.

/// Who a broadcast goes to: sockets in any of `rooms` (all when empty) and in none of `except`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastTarget {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
}

impl BroadcastTarget {
    pub fn room(room: impl Into<String>) -> Self {
        BroadcastTarget {
            rooms: vec![room.into()],
            except: Vec::new(),
        }
    }
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except.push(room.into());
        self
    }
}
