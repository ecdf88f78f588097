//! In-place storage for the futures of calls in flight on one connection,
//! each polled with a waker of its own.
//!
//! A call's future is polled once as soon as it is decoded; most handlers
//! finish right there. A future that is still pending must stay where it was
//! first polled (it is pinned), so it cannot be moved into a collection
//! afterwards. Boxing every call would allocate per message, which the hot
//! path must not do. Instead each connection keeps pages of slots indexed by
//! call id: a page is allocated the first time an id in it is used and then
//! reused for the life of the connection, so steady-state calls allocate
//! nothing. Pages hold 16 slots so that a connection using few ids keeps
//! little memory.
//!
//! # Why each slot has its own waker
//!
//! A call future is never polled with the connection task's waker. glommio
//! 0.9 counts a task's wakers in an `AtomicI16` and checks for overflow only
//! after incrementing, so code that lets every pending call keep a clone of
//! the task's waker (a blocking-pool wait keeps one per poll, a timer one per
//! registration) wraps that count with a few hundred calls in flight: the
//! task header's assertion fires in handlers, and a later drop on a count of
//! 0 frees the task while it is still referenced (a use-after-free). Here
//! each slot owns a [`Waker`] backed by an `Arc` (a `usize` count that
//! cannot wrap in practice); waking it sets the slot's bit in a
//! [`ReadySet`] and wakes the connection task through one
//! [`AtomicWaker`], which holds at most one clone of the task's waker
//! however many calls are pending and however often they are polled. The
//! same bits let [`CallSlots::poll_ready`] poll only the calls that were
//! woken instead of every pending one on each pass.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;
use hardlight_core::calls::CallTable;

const PAGE: usize = 16;
const PAGES: usize = 256 / PAGE;

/// One call slot: the pinned future, if any, and the waker it is polled with.
struct Slot<F> {
    fut: Option<F>,
    waker: Waker,
}

type Page<F> = Box<[Slot<F>; PAGE]>;

/// Which call slots were woken since the connection task last looked, and
/// the one clone of the connection task's waker that a slot's wake-up uses.
///
/// Shared (through `Arc`) with every slot waker, which may be woken from any
/// thread (a blocking-pool worker, a tokio task, another shard).
#[derive(Default)]
pub(crate) struct ReadySet {
    bits: [AtomicU64; 4],
    task: AtomicWaker,
}

impl ReadySet {
    /// Marks slot `id` ready and wakes the connection task.
    fn mark(&self, id: u8) {
        self.bits[id as usize / 64].fetch_or(1 << (id % 64), Ordering::AcqRel);
        self.task.wake();
    }

    /// Takes the bits of word `w` (slots `64 * w ..`), clearing them.
    fn take(&self, w: usize) -> u64 {
        // Cheap check first: most passes find nothing woken.
        if self.bits[w].load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.bits[w].swap(0, Ordering::AcqRel)
    }
}

/// The waker of one call slot.
struct SlotWaker {
    id: u8,
    ready: Arc<ReadySet>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.ready.mark(self.id);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.mark(self.id);
    }
}

/// Pinned storage for up to 256 call futures, keyed by call id.
pub(crate) struct CallSlots<F> {
    pages: [Option<Page<F>>; PAGES],
    live: CallTable,
    ready: Arc<ReadySet>,
}

impl<F: Future> CallSlots<F> {
    pub(crate) fn new() -> Self {
        Self { pages: [const { None }; PAGES], live: CallTable::new(), ready: Arc::default() }
    }

    /// Number of futures stored.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Records the connection task's waker, to be woken when any stored call
    /// is. Clones it only when it changed, and keeps at most one clone.
    pub(crate) fn register(&self, task: &Waker) {
        self.ready.task.register(task);
    }

    /// Stores `fut` under `id` and polls it once in place, with the slot's
    /// own waker. Returns its output if it finished (the slot is then empty
    /// again).
    pub(crate) fn start(&mut self, id: u8, fut: F) -> Option<F::Output> {
        let page_index = id as usize / PAGE;
        let ready = &self.ready;
        let page = self.pages[page_index].get_or_insert_with(|| {
            // Allocated once per page per connection, with its 16 wakers.
            Box::new(std::array::from_fn(|i| Slot {
                fut: None,
                waker: Waker::from(Arc::new(SlotWaker { id: (page_index * PAGE + i) as u8, ready: ready.clone() })),
            }))
        });
        let slot = &mut page[id as usize % PAGE];
        debug_assert!(slot.fut.is_none(), "slot {id} reused while live");
        slot.fut = Some(fut);
        self.live.begin(id);
        self.poll_slot(id)
    }

    /// Polls the stored futures that were woken since the last pass; calls
    /// `done` for each that finished. Call [`Self::register`] first, so that
    /// a wake-up during this pass wakes the task again.
    pub(crate) fn poll_ready(&mut self, mut done: impl FnMut(u8, F::Output)) {
        for w in 0..4 {
            let mut bits = self.ready.take(w);
            while bits != 0 {
                let id = (w * 64) as u8 + bits.trailing_zeros() as u8;
                bits &= bits - 1;
                // A wake-up can outlive its call (a waker kept by a finished
                // future's I/O): skip slots that are no longer live.
                if self.live.is_live(id) {
                    if let Some(out) = self.poll_slot(id) {
                        done(id, out);
                    }
                }
            }
        }
    }

    fn poll_slot(&mut self, id: u8) -> Option<F::Output> {
        let page = self.pages[id as usize / PAGE].as_mut()?;
        let slot = &mut page[id as usize % PAGE];
        let fut = slot.fut.as_mut()?;
        let mut cx = Context::from_waker(&slot.waker);
        // SAFETY: the future lives inside a boxed page that is never moved out
        // of, reallocated or freed while any of its slots is occupied (pages
        // are only dropped with `self`, which drops the futures in place
        // first). The future itself is never moved after this point: it
        // leaves its slot only by being dropped in place (`slot.fut = None`).
        let pinned = unsafe { Pin::new_unchecked(fut) };
        match pinned.poll(&mut cx) {
            Poll::Ready(out) => {
                slot.fut = None;
                self.live.finish(id);
                Some(out)
            }
            Poll::Pending => None,
        }
    }

    /// Drops call `id`'s future in place, if one is stored (the call was
    /// cancelled or its deadline passed; the core already answered it).
    pub(crate) fn cancel(&mut self, id: u8) {
        if !self.live.finish(id) {
            return;
        }
        if let Some(page) = self.pages[id as usize / PAGE].as_mut() {
            page[id as usize % PAGE].fut = None;
        }
    }

    /// Drops every stored future (in place).
    pub(crate) fn clear(&mut self) {
        for page in self.pages.iter_mut().flatten() {
            for slot in page.iter_mut() {
                slot.fut = None;
            }
        }
        self.live = CallTable::new();
        for w in 0..4 {
            self.ready.take(w);
        }
    }
}

impl<F> Drop for CallSlots<F> {
    fn drop(&mut self) {
        // Drop futures in place before their pages are freed (the default
        // order would also do this, but say it explicitly for the SAFETY
        // argument above).
        for page in self.pages.iter_mut().flatten() {
            for slot in page.iter_mut() {
                slot.fut = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;

    /// A future that stays pending until `go` is set, keeping a clone of
    /// every waker it is polled with (like glommio's blocking-pool wait).
    struct Gate {
        go: Rc<Cell<bool>>,
        polls: Rc<Cell<u32>>,
        kept: Rc<RefCell<Vec<Waker>>>,
    }
    impl Future for Gate {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls.set(self.polls.get() + 1);
            if self.go.get() {
                Poll::Ready(self.polls.get())
            } else {
                self.kept.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The connection task's waker in these tests: counts its wake-ups, and
    /// its `Arc` count is the number of live clones.
    #[derive(Default)]
    struct TaskWaker {
        wakes: AtomicU64,
    }
    impl Wake for TaskWaker {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn gate(go: &Rc<Cell<bool>>, kept: &Rc<RefCell<Vec<Waker>>>) -> (Gate, Rc<Cell<u32>>) {
        let polls = Rc::new(Cell::new(0));
        (Gate { go: go.clone(), polls: polls.clone(), kept: kept.clone() }, polls)
    }

    #[test]
    fn only_woken_calls_are_polled_again() {
        let task = Arc::new(TaskWaker::default());
        let task_waker = Waker::from(task.clone());
        let kept = Rc::new(RefCell::new(Vec::new()));
        let mut s = CallSlots::new();
        s.register(&task_waker);
        let (go_a, go_b) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
        let (a, polls_a) = gate(&go_a, &kept);
        let (b, polls_b) = gate(&go_b, &kept);
        assert_eq!(s.start(3, a), None);
        assert_eq!(s.start(200, b), None);
        assert_eq!(s.len(), 2);

        // Nothing woken: a pass polls nothing.
        let mut done = Vec::new();
        s.poll_ready(|id, v| done.push((id, v)));
        assert_eq!((polls_a.get(), polls_b.get()), (1, 1));

        // Wake call 200 through the waker it kept: the task is woken once,
        // and only that call is polled.
        go_b.set(true);
        kept.borrow()[1].wake_by_ref();
        assert_eq!(task.wakes.load(Ordering::Relaxed), 1);
        s.register(&task_waker);
        s.poll_ready(|id, v| done.push((id, v)));
        assert_eq!(done, vec![(200, 2)]);
        assert_eq!((polls_a.get(), s.len()), (1, 1));

        // A stale wake-up for a finished call is ignored.
        kept.borrow()[1].wake_by_ref();
        s.register(&task_waker);
        s.poll_ready(|id, v| done.push((id, v)));
        assert_eq!(done.len(), 1);
        assert_eq!(polls_a.get(), 1);
    }

    #[test]
    fn the_task_waker_is_cloned_once_however_many_calls_pend() {
        let task = Arc::new(TaskWaker::default());
        let task_waker = Waker::from(task.clone());
        let kept = Rc::new(RefCell::new(Vec::new()));
        let go = Rc::new(Cell::new(false));
        let mut s = CallSlots::new();
        s.register(&task_waker);
        for id in 0..=255u8 {
            assert_eq!(s.start(id, gate(&go, &kept).0), None);
        }
        // Many passes, each waking every pending call (each poll keeps one
        // more waker clone, as glommio's blocking-pool wait does).
        for _ in 0..200 {
            for w in kept.borrow().iter().rev().take(256) {
                w.wake_by_ref();
            }
            s.register(&task_waker);
            s.poll_ready(|_, _| panic!("nothing is ready"));
        }
        assert!(kept.borrow().len() > 50_000, "the calls kept {} wakers", kept.borrow().len());
        // `task` and `task_waker` are ours; the ready set holds at most one
        // more (a wake-up takes it out until the next registration).
        let held = Arc::strong_count(&task) - 2;
        assert!(held <= 1, "the slots hold {held} clones of the task's waker");
        go.set(true);
        for w in kept.borrow().iter().rev().take(256) {
            w.wake_by_ref();
        }
        let mut n = 0;
        s.poll_ready(|_, _| n += 1);
        assert_eq!((n, s.len()), (256, 0));
    }

    #[test]
    fn clear_drops_pending_calls_and_forgets_their_wake_ups() {
        let kept = Rc::new(RefCell::new(Vec::new()));
        let go = Rc::new(Cell::new(false));
        let mut s = CallSlots::new();
        let (g, polls) = gate(&go, &kept);
        assert_eq!(s.start(7, g), None);
        kept.borrow()[0].wake_by_ref();
        s.clear();
        assert_eq!(s.len(), 0);
        s.poll_ready(|_, _| panic!("cleared"));
        assert_eq!(polls.get(), 1);
        assert_eq!(Rc::strong_count(&go), 1, "the future was dropped");
    }
}
