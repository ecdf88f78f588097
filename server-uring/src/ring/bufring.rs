//! The shard's provided-buffer ring: the receive buffers a multishot
//! receive takes from (io_uring's IORING_REGISTER_PBUF_RING).
//!
//! Why: a one-shot receive that finds no data arms a poll on the socket
//! and tears it down again when the data comes, once per message; a
//! multishot receive stays armed for the connection's life and posts one
//! completion per arrival. The kernel cannot know ahead of time which
//! connection will receive, so it picks a buffer from this shared pool
//! for each completion, names it in the completion (its buffer id), and
//! the loop copies the bytes into the connection's core and gives the
//! buffer back at once (see `super::io`, "multishot receive"). The pool
//! is bounded: when it is empty the kernel ends a multishot receive with
//! ENOBUFS (no data is lost; the bytes stay in the socket) and the
//! connection arms a new one on its next round.
//!
//! # The lifetime rule
//!
//! The kernel may write into any buffer it holds (every one not named by
//! a completion reaped and not yet given back) while any multishot
//! receive is armed, so the memory is freed only after the ring has no
//! armed receive left and the group is unregistered; otherwise it is
//! leaked (see `super::reactor::Reactor`'s `Drop`).

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Buffers in a shard's pool (a power of two, as the kernel requires).
/// The pool bounds what one pass can take from the sockets (and so what a
/// connection whose core is full can have spilled: see `super::io`);
/// a pass with more arrivals than buffers ends some receives with ENOBUFS
/// and those connections arm again, as a one-shot receive would. 256 did
/// as well as 1024 in the stop-19 sitting (results/2026-12-02) at a
/// quarter of the memory.
pub(crate) const RECV_BUFFERS: u16 = 256;
/// Bytes per buffer: a small message takes one buffer until the end of
/// its pass's reaping, a large one arrives in 4 KiB pieces (one
/// completion each). With [`RECV_BUFFERS`], 1 MiB per shard.
pub(crate) const RECV_BUFFER_SIZE: u32 = 4096;
/// The buffer group id the multishot receives name (one group per ring).
pub(crate) const GROUP: u16 = 0;

/// Distance between the starts of two buffers: a cache line more than a
/// buffer, so that the first lines of consecutive buffers (all a small
/// message touches) do not all fall in the same cache set, as they would
/// at a page-multiple stride.
fn stride(size: u32) -> usize {
    size as usize + 64
}

/// A registered pool of receive buffers. Dropping one without
/// [`Self::unregister`] leaks its memory (module doc).
pub(crate) struct BufRing {
    /// The ring of buffer descriptors the kernel reads (page aligned).
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// The buffers themselves, `RECV_BUFFERS` x `RECV_BUFFER_SIZE` bytes.
    bufs: NonNull<u8>,
    bufs_layout: Layout,
    /// Our copy of the ring's tail (the kernel reads the shared one).
    tail: u16,
    /// Buffers (a power of two) and bytes per buffer.
    count: u16,
    size: u32,
}

impl BufRing {
    /// Allocates `count` buffers (a power of two) of `size` bytes and
    /// registers them with `ring` as group [`GROUP`]. Fails on kernels
    /// before 5.19 (no buffer rings) or when memory cannot be had; the
    /// caller then receives one-shot.
    pub(crate) fn register_with(ring: &IoUring, count: u16, size: u32) -> std::io::Result<Self> {
        if !count.is_power_of_two() || size == 0 {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let n = count as usize;
        let entries_layout = Layout::from_size_align(n * std::mem::size_of::<BufRingEntry>(), 4096)
            .map_err(|_| std::io::Error::other("buffer ring layout"))?;
        let bufs_layout =
            Layout::from_size_align(n * stride(size), 4096).map_err(|_| std::io::Error::other("buffer layout"))?;
        // SAFETY: both layouts have a non-zero size.
        let entries = NonNull::new(unsafe { alloc::alloc_zeroed(entries_layout) }.cast::<BufRingEntry>())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        // SAFETY: as above; zeroed so that no byte the kernel has not
        // written is ever uninitialised memory.
        let Some(bufs) = NonNull::new(unsafe { alloc::alloc_zeroed(bufs_layout) }) else {
            // SAFETY: allocated just above with this layout.
            unsafe { alloc::dealloc(entries.as_ptr().cast(), entries_layout) };
            return Err(std::io::ErrorKind::OutOfMemory.into());
        };
        let mut me = Self { entries, entries_layout, bufs, bufs_layout, tail: 0, count, size };
        for bid in 0..count {
            me.put(bid);
        }
        me.publish();
        // SAFETY: `entries` is page aligned, holds `count` entries and
        // lives until `unregister` or a leak (module doc).
        let r = unsafe { ring.submitter().register_buf_ring_with_flags(entries.as_ptr() as u64, count, GROUP, 0) };
        if let Err(e) = r {
            // SAFETY: the kernel refused the ring, so it holds no pointer
            // into either allocation.
            unsafe { me.free() };
            return Err(e);
        }
        Ok(me)
    }

    /// The first `len` bytes of buffer `bid`, which a reaped completion
    /// named. Valid until [`Self::give_back`] for that id.
    pub(crate) fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.size as usize, "the kernel names a buffer it was given");
        // SAFETY: in bounds (checked above); the kernel wrote these bytes
        // before posting the completion and does not touch the buffer again
        // until it is given back.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(bid as usize * stride(self.size)), len) }
    }

    /// Gives buffer `bid` back to the kernel.
    pub(crate) fn give_back(&mut self, bid: u16) {
        self.put(bid);
        self.publish();
    }

    fn put(&mut self, bid: u16) {
        assert!(bid < self.count, "only the pool's own buffers go back");
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `slot` < count; the kernel reads only entries between its
        // head and the published tail, and this one is past it.
        let e = unsafe { &mut *self.entries.as_ptr().add(slot) };
        // SAFETY: `bid` < count, so the address is inside `bufs`.
        e.set_addr(unsafe { self.bufs.as_ptr().add(bid as usize * stride(self.size)) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries put so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field
        // (the kernel's layout); it is only ever written here, atomically,
        // with release order so the entries are seen before the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// Unregisters the group and frees the memory.
    ///
    /// # Safety
    /// No multishot receive may be armed on `ring` (module doc).
    pub(crate) unsafe fn unregister(self, ring: &IoUring) {
        if ring.submitter().unregister_buf_ring(GROUP).is_err() {
            // The kernel may still hold the pointers: keep the memory.
            self.leak();
            return;
        }
        // SAFETY: no receive is armed (the caller) and the group is gone.
        unsafe { self.free() };
    }

    /// Keeps the memory allocated for good (the kernel may still write
    /// into it). `BufRing` has no `Drop`: only `unregister` frees.
    pub(crate) fn leak(self) {}

    /// # Safety
    /// The kernel must hold no pointer into the pool.
    unsafe fn free(self) {
        // SAFETY: allocated in `register` with these layouts, freed once
        // (`self` is consumed).
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            alloc::dealloc(self.bufs.as_ptr(), self.bufs_layout);
        }
    }
}
