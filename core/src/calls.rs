//! Call-id tracking: which of the 256 ids are live on a connection.
//!
//! The server uses [`CallTable`] to refuse a request that reuses a live id
//! (answering `DuplicateCallId` rather than staying silent); the client uses
//! [`IdAllocator`] to hand out free ids. Both are fixed-size bitsets: no
//! allocation, O(1) per operation.

/// The set of live call ids on one connection.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallTable {
    live: [u64; 4],
    count: u16,
}

impl CallTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self { live: [0; 4], count: 0 }
    }

    /// Marks `id` live. Returns false (and changes nothing) if it already was.
    pub fn begin(&mut self, id: u8) -> bool {
        let (w, b) = ((id >> 6) as usize, 1u64 << (id & 63));
        if self.live[w] & b != 0 {
            return false;
        }
        self.live[w] |= b;
        self.count += 1;
        true
    }

    /// Marks `id` finished. Returns false if it was not live.
    pub fn finish(&mut self, id: u8) -> bool {
        let (w, b) = ((id >> 6) as usize, 1u64 << (id & 63));
        if self.live[w] & b == 0 {
            return false;
        }
        self.live[w] &= !b;
        self.count -= 1;
        true
    }

    /// Whether `id` is live.
    pub fn is_live(&self, id: u8) -> bool {
        self.live[(id >> 6) as usize] & (1u64 << (id & 63)) != 0
    }

    /// Number of live ids (0 to 256).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no call is live.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Hands out call ids on the client side.
///
/// Allocation is round-robin from the last id handed out, so a just-freed id
/// is the last to be reused; a late response to a timed-out call is then less
/// likely to be confused with a new call (the id stays reserved until its
/// response arrives anyway; see the client's documentation).
#[derive(Debug, Default, Clone)]
pub struct IdAllocator {
    table: CallTable,
    next: u8,
}

impl IdAllocator {
    /// All 256 ids free.
    pub const fn new() -> Self {
        Self { table: CallTable::new(), next: 0 }
    }

    /// Takes a free id, or `None` when all 256 are in flight.
    pub fn allocate(&mut self) -> Option<u8> {
        if self.table.len() == crate::limits::MAX_CALLS_IN_FLIGHT {
            return None;
        }
        loop {
            let id = self.next;
            self.next = self.next.wrapping_add(1);
            if self.table.begin(id) {
                return Some(id);
            }
        }
    }

    /// Returns `id` to the pool. Returns false if it was not allocated.
    pub fn release(&mut self, id: u8) -> bool {
        self.table.finish(id)
    }

    /// Ids currently allocated.
    pub fn in_flight(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_refuses_duplicates_and_counts() {
        let mut t = CallTable::new();
        assert!(t.begin(0));
        assert!(t.begin(255));
        assert!(!t.begin(255));
        assert_eq!(t.len(), 2);
        assert!(t.finish(255));
        assert!(!t.finish(255));
        assert!(t.begin(255));
        for id in 1..=254u8 {
            assert!(t.begin(id));
        }
        assert_eq!(t.len(), 256);
        assert!(!t.begin(77));
    }

    #[test]
    fn allocator_hands_out_all_256_then_none() {
        let mut a = IdAllocator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..256 {
            assert!(seen.insert(a.allocate().unwrap()));
        }
        assert_eq!(a.allocate(), None);
        assert!(a.release(42));
        assert_eq!(a.allocate(), Some(42));
        assert_eq!(a.in_flight(), 256);
        assert!(a.release(42));
        assert_eq!(a.in_flight(), 255);
    }

    #[test]
    fn allocator_is_round_robin() {
        let mut a = IdAllocator::new();
        let x = a.allocate().unwrap();
        a.release(x);
        let y = a.allocate().unwrap();
        assert_ne!(x, y, "a just-freed id should not be reused first");
    }
}
