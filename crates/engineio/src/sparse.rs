//! Hash tables keep the capacity of their peak: a table that once held 10,000 sessions keeps
//! memory for 10,000 after they are gone, so the process never returns to its idle size.
//! Tables that follow the number of connections shrink once they are mostly empty.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

/// Below this capacity shrinking is not worth a reallocation.
const MIN_CAPACITY: usize = 64;

/// Shrinks a table to twice its length once it is less than a quarter full. Growing doubles
/// and shrinking halves at least twice over, so a table going up and down around one size
/// does not reallocate on every change.
pub trait ShrinkWhenSparse {
    fn shrink_when_sparse(&mut self);
}

fn is_sparse(len: usize, capacity: usize) -> bool {
    capacity > MIN_CAPACITY && len.saturating_mul(4) < capacity
}

impl<K: Eq + Hash, V, S: BuildHasher> ShrinkWhenSparse for HashMap<K, V, S> {
    fn shrink_when_sparse(&mut self) {
        if is_sparse(self.len(), self.capacity()) {
            self.shrink_to(self.len() * 2);
        }
    }
}

impl<T: Eq + Hash, S: BuildHasher> ShrinkWhenSparse for HashSet<T, S> {
    fn shrink_when_sparse(&mut self) {
        if is_sparse(self.len(), self.capacity()) {
            self.shrink_to(self.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_emptied_after_a_peak_gives_its_capacity_back() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let peak = m.capacity();
        for i in 0..9_990 {
            m.remove(&i);
            m.shrink_when_sparse();
        }
        assert!(
            m.capacity() < 100,
            "capacity {} after a peak of {peak}",
            m.capacity()
        );
        assert_eq!(m.len(), 10);
    }

    #[test]
    fn a_table_around_one_size_keeps_its_capacity() {
        let mut s: HashSet<u32> = (0..1000).collect();
        let cap = s.capacity();
        for round in 0..100 {
            let v = 5000 + round;
            s.insert(v);
            s.remove(&v);
            s.shrink_when_sparse();
        }
        // (a removal may leave a tombstone that takes one slot of capacity, no reallocation)
        assert!(s.capacity() + 8 >= cap, "{} of {cap}", s.capacity());
        for i in 0..900 {
            s.remove(&i);
            s.shrink_when_sparse();
        }
        assert!(s.capacity() < cap / 2);
        assert_eq!(s.len(), 100);
    }

    #[test]
    fn small_tables_are_left_alone() {
        let mut m: HashMap<u32, ()> = (0..50).map(|i| (i, ())).collect();
        let cap = m.capacity();
        m.clear();
        m.shrink_when_sparse();
        assert_eq!(m.capacity(), cap);
    }
}
