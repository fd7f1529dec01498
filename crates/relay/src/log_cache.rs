//! The recovery log as restores read it: one contiguous stretch of decoded entries per
//! partition of a namespace's log, read from Valkey once per instance instead of once per
//! restored socket.
//!
//! A failover's storm restores thousands of sockets whose gaps cover the same stretch of the
//! log. Read per socket, that stretch crossed from Valkey and was decoded once per socket: at
//! 5,000 sockets Valkey spent its time serving the same pages again, the claims waited behind
//! them, and half the restores gave up (fresh sessions). Here a restore reads what the stretch
//! lacks (older entries before it, newer ones after it), then picks its packets from memory.
//!
//! Why a stretch is complete: stream ids only grow (the log is appended with `*` ids), so once
//! `(from, to]` was read, no entry can appear inside it later. A restore always reads past
//! `to` (what was appended since), so it never misses what came after the last read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::wire::RemoteBroadcast;
use socketio::recovery::Offset;

/// One log entry: its id and the broadcast, `None` when it cannot be read (a restore whose gap
/// holds one is refused: it may have been for that socket).
pub type Entry = (Offset, Option<Arc<RemoteBroadcast>>);

/// Entries read from Valkey per request.
pub const PAGE: usize = 500;
/// Most log entries one restore may need; past it the client gets a fresh session.
pub const MAX_GAP: usize = 20_000;
/// Most entries kept per partition (older ones are dropped first); more than [`MAX_GAP`], so a
/// restore's own gap is never dropped while it reads.
const MAX_KEPT: usize = 50_000;
/// A stretch unused this long is dropped (it only holds memory), at its next use or by
/// [`Stretch::forget_if_idle`].
const IDLE: Duration = Duration::from_secs(30);

/// Reads the log: up to `count` entries with `after < id`, and `id <= until` when given, in
/// order. `None` when the log cannot be read.
pub trait LogReader {
    fn read(
        &mut self,
        after: Offset,
        until: Option<Offset>,
        count: usize,
    ) -> impl std::future::Future<Output = Option<Vec<Entry>>> + Send;
}

/// What is known of one partition of a log: every entry with `from < id <= to`.
#[derive(Default)]
pub struct Stretch {
    from: Option<Offset>,
    entries: VecDeque<Entry>,
    used: Option<Instant>,
}

impl Stretch {
    /// Drops from memory the entries older than `oldest` (those of no use to a restore: the
    /// recovery window is past them). Only memory: a later gap that starts before them reads
    /// them again from the log, like any entry before the stretch.
    pub fn forget_before(&mut self, oldest: Offset) {
        while self.entries.front().is_some_and(|e| e.0 < oldest) {
            if let Some((id, _)) = self.entries.pop_front() {
                self.from = Some(id);
            }
        }
    }

    /// Drops everything when no restore used the stretch for [`IDLE`]. Called now and then:
    /// after a storm or a load ends no restore comes to drop it, and its entries, decoded
    /// throughout the load, would pin the memory around them for good.
    pub fn forget_if_idle(&mut self) {
        if self.used.is_some_and(|t| t.elapsed() > IDLE) {
            *self = Stretch::default();
        }
    }

    fn to(&self, from: Offset) -> Offset {
        self.entries.back().map_or(from, |e| e.0)
    }

    /// The entries after `offset` up to the end of the log, reading from `reader` only what
    /// is not known yet. `None` when the log cannot be read or the gap is over [`MAX_GAP`].
    pub async fn gap(&mut self, reader: &mut impl LogReader, offset: Offset) -> Option<&[Entry]> {
        self.forget_if_idle();
        self.used = Some(Instant::now());
        let from = match self.from {
            Some(from) if offset >= from => from,
            Some(from) => {
                let older = read_all(reader, offset, Some(from), MAX_GAP).await?;
                for entry in older.into_iter().rev() {
                    self.entries.push_front(entry);
                }
                offset
            }
            None => offset,
        };
        self.from = Some(from);
        // What was appended since the last read: all of it is in this restore's gap, so
        // more than MAX_GAP fails the restore, and the stretch (which cannot be completed
        // cheaply) starts again at the next one.
        let Some(newer) = read_all(reader, self.to(from), None, MAX_GAP).await else {
            *self = Stretch::default();
            return None;
        };
        self.entries.extend(newer);
        while self.entries.len() > MAX_KEPT {
            if let Some((id, _)) = self.entries.pop_front() {
                self.from = Some(id);
            }
        }
        if self.from.is_some_and(|f| offset < f) {
            return None;
        }
        let entries = self.entries.make_contiguous();
        let start = entries.partition_point(|e| e.0 <= offset);
        let gap = &entries[start..];
        (gap.len() <= MAX_GAP).then_some(gap)
    }
}

/// Reads every entry in `(after, until]` (or to the end), page by page; `None` past `limit`.
async fn read_all(
    reader: &mut impl LogReader,
    mut after: Offset,
    until: Option<Offset>,
    limit: usize,
) -> Option<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let page = reader.read(after, until, PAGE).await?;
        let n = page.len();
        if let Some(last) = page.last() {
            after = last.0;
        }
        out.extend(page);
        if out.len() > limit {
            return None;
        }
        if n < PAGE {
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socketio::packet::Packet;
    use socketio::BroadcastTarget;

    /// A log in memory, counting what was read from it.
    struct Model {
        log: Vec<Entry>,
        read: usize,
        fail: bool,
    }

    impl LogReader for Model {
        async fn read(
            &mut self,
            after: Offset,
            until: Option<Offset>,
            count: usize,
        ) -> Option<Vec<Entry>> {
            if self.fail {
                return None;
            }
            let page: Vec<Entry> = self
                .log
                .iter()
                .filter(|e| e.0 > after && until.is_none_or(|u| e.0 <= u))
                .take(count)
                .cloned()
                .collect();
            self.read += page.len();
            Some(page)
        }
    }

    fn entry(ms: u64) -> Entry {
        let b = RemoteBroadcast {
            uid: String::new(),
            offset: None,
            nsp: "/".to_owned(),
            packet: Packet::event("/", "e", vec![], vec![], None),
            target: BroadcastTarget::default(),
        };
        (Offset(ms, 0), Some(Arc::new(b)))
    }

    fn model(n: u64) -> Model {
        Model {
            log: (1..=n).map(entry).collect(),
            read: 0,
            fail: false,
        }
    }

    fn ids(gap: &[Entry]) -> Vec<u64> {
        gap.iter().map(|e| e.0 .0).collect()
    }

    #[tokio::test]
    async fn restores_of_one_stretch_read_it_once() {
        let (mut log, mut s) = (model(1200), Stretch::default());
        let gap = s.gap(&mut log, Offset(200, 0)).await.map(ids);
        assert_eq!(gap, Some((201..=1200).collect()));
        assert_eq!(log.read, 1000);
        // Later offsets, an older one, then entries appended meanwhile.
        assert_eq!(
            s.gap(&mut log, Offset(700, 0)).await.map(|g| g.len()),
            Some(500)
        );
        assert_eq!(
            s.gap(&mut log, Offset(100, 0)).await.map(|g| g.len()),
            Some(1100)
        );
        assert_eq!(log.read, 1100, "only the 100 older entries were read again");
        log.log.extend([entry(1201), entry(1202)]);
        let gap = s.gap(&mut log, Offset(1199, 0)).await.map(ids);
        assert_eq!(
            gap,
            Some(vec![1200, 1201, 1202]),
            "what was appended is read"
        );
        assert_eq!(log.read, 1102);
    }

    #[tokio::test]
    async fn a_gap_over_the_limit_or_an_unreadable_log_gives_none() {
        let (mut log, mut s) = (model(MAX_GAP as u64 + 10), Stretch::default());
        assert!(s.gap(&mut log, Offset(0, 0)).await.is_none(), "too long");
        assert!(
            s.gap(&mut log, Offset(10, 0)).await.is_some(),
            "exactly the limit"
        );
        log.fail = true;
        assert!(s.gap(&mut log, Offset(10, 0)).await.is_none());
        log.fail = false;
        log.log.push(entry(MAX_GAP as u64 + 11));
        let gap = s
            .gap(&mut log, Offset(MAX_GAP as u64 + 9, 0))
            .await
            .map(ids);
        let last = MAX_GAP as u64;
        assert_eq!(
            gap,
            Some(vec![last + 10, last + 11]),
            "complete after a failed read"
        );
    }

    #[tokio::test]
    async fn what_is_kept_is_bounded_and_a_dropped_stretch_is_read_again() {
        let (mut log, mut s) = (model(10), Stretch::default());
        assert!(s.gap(&mut log, Offset(0, 0)).await.is_some());
        // The log grows by 10,000 entries between restores of recent sockets.
        let mut newest = 10;
        for _ in 0..6 {
            log.log.extend((newest + 1..=newest + 10_000).map(entry));
            newest += 10_000;
            let gap = s.gap(&mut log, Offset(newest - 5, 0)).await.map(ids);
            assert_eq!(gap, Some((newest - 4..=newest).collect()));
        }
        assert_eq!(s.entries.len(), MAX_KEPT, "the oldest were dropped");
        assert_eq!(log.read, 60_010, "each entry read once");
        // Older than what is kept: read again.
        let offset = newest - MAX_GAP as u64;
        assert_eq!(
            s.gap(&mut log, Offset(offset, 0)).await.map(|g| g.len()),
            Some(MAX_GAP)
        );
        assert_eq!(log.read, 60_010, "still kept");
        let gap = s.gap(&mut log, Offset(5, 0)).await;
        assert!(gap.is_none(), "a gap over the limit");
    }

    #[tokio::test]
    async fn entries_past_the_window_leave_memory_and_are_read_again_if_asked_for() {
        let (mut log, mut s) = (model(1000), Stretch::default());
        assert_eq!(
            s.gap(&mut log, Offset(0, 0)).await.map(|g| g.len()),
            Some(1000)
        );
        s.forget_before(Offset(901, 0));
        assert_eq!(
            s.entries.len(),
            100,
            "only the entries from 901 on are kept"
        );
        let read = log.read;
        let gap = s.gap(&mut log, Offset(950, 0)).await.map(ids);
        assert_eq!(gap, Some((951..=1000).collect()));
        assert_eq!(log.read, read, "nothing read again");
        // An older offset (the Valkey log may still hold it) reads the dropped part again.
        let gap = s.gap(&mut log, Offset(10, 0)).await.map(|g| g.len());
        assert_eq!(gap, Some(990));
        assert_eq!(log.read, read + 890, "only the dropped part is read again");
    }

    #[tokio::test]
    async fn an_idle_stretch_is_dropped_without_waiting_for_a_restore() {
        let (mut log, mut s) = (model(100), Stretch::default());
        assert!(s.gap(&mut log, Offset(0, 0)).await.is_some());
        s.forget_if_idle();
        assert_eq!(s.entries.len(), 100, "just used: kept");
        s.used = Instant::now().checked_sub(IDLE + Duration::from_secs(1));
        s.forget_if_idle();
        assert!(s.entries.is_empty() && s.from.is_none(), "idle: dropped");
    }

    #[tokio::test]
    async fn a_tail_over_the_limit_starts_the_stretch_again() {
        let (mut log, mut s) = (model(10), Stretch::default());
        assert!(s.gap(&mut log, Offset(5, 0)).await.is_some());
        log.log.extend((11..=MAX_GAP as u64 + 20).map(entry));
        assert!(s.gap(&mut log, Offset(7, 0)).await.is_none());
        let gap = s
            .gap(&mut log, Offset(MAX_GAP as u64 + 18, 0))
            .await
            .map(ids);
        let last = MAX_GAP as u64 + 20;
        assert_eq!(gap, Some(vec![last - 1, last]));
    }
}
