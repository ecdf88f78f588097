//! In-place storage for the futures of calls in flight on one connection.
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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hardlight_core::calls::CallTable;

const PAGE: usize = 16;
const PAGES: usize = 256 / PAGE;

type Page<F> = Box<[Option<F>; PAGE]>;

/// Pinned storage for up to 256 call futures, keyed by call id.
pub(crate) struct CallSlots<F> {
    pages: [Option<Page<F>>; PAGES],
    live: CallTable,
}

impl<F: Future> CallSlots<F> {
    pub(crate) fn new() -> Self {
        Self { pages: [const { None }; PAGES], live: CallTable::new() }
    }

    /// Number of futures stored.
    pub(crate) fn len(&self) -> usize {
        self.live.len()
    }

    /// Stores `fut` under `id` and polls it once in place. Returns its output
    /// if it finished (the slot is then empty again).
    pub(crate) fn start(&mut self, id: u8, fut: F, cx: &mut Context<'_>) -> Option<F::Output> {
        let page = self.pages[id as usize / PAGE].get_or_insert_with(|| Box::new([const { None }; PAGE]));
        let slot = &mut page[id as usize % PAGE];
        debug_assert!(slot.is_none(), "slot {id} reused while live");
        *slot = Some(fut);
        self.live.begin(id);
        self.poll_slot(id, cx)
    }

    /// Polls every stored future once; calls `done` for each that finished.
    pub(crate) fn poll_all(&mut self, cx: &mut Context<'_>, mut done: impl FnMut(u8, F::Output)) {
        if self.live.is_empty() {
            return;
        }
        for id in 0..=255u8 {
            if self.live.is_live(id) {
                if let Some(out) = self.poll_slot(id, cx) {
                    done(id, out);
                }
            }
        }
    }

    fn poll_slot(&mut self, id: u8, cx: &mut Context<'_>) -> Option<F::Output> {
        let page = self.pages[id as usize / PAGE].as_mut()?;
        let slot = &mut page[id as usize % PAGE];
        let fut = slot.as_mut()?;
        // SAFETY: the future lives inside a boxed page that is never moved out
        // of, reallocated or freed while any of its slots is occupied (pages
        // are only dropped with `self`, which drops the futures in place
        // first). The future itself is never moved after this point: it
        // leaves its slot only by being dropped in place (`*slot = None`).
        let pinned = unsafe { Pin::new_unchecked(fut) };
        match pinned.poll(cx) {
            Poll::Ready(out) => {
                *slot = None;
                self.live.finish(id);
                Some(out)
            }
            Poll::Pending => None,
        }
    }

    /// Drops every stored future (in place).
    pub(crate) fn clear(&mut self) {
        for page in self.pages.iter_mut().flatten() {
            for slot in page.iter_mut() {
                *slot = None;
            }
        }
        self.live = CallTable::new();
    }
}

impl<F> Drop for CallSlots<F> {
    fn drop(&mut self) {
        // Drop futures in place before their pages are freed (the default
        // order would also do this, but say it explicitly for the SAFETY
        // argument above).
        for page in self.pages.iter_mut().flatten() {
            for slot in page.iter_mut() {
                *slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    struct Yield {
        polls: Rc<Cell<u32>>,
        ready_after: u32,
    }
    impl Future for Yield {
        type Output = u32;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
            let n = self.polls.get() + 1;
            self.polls.set(n);
            if n >= self.ready_after {
                Poll::Ready(n)
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn immediate_and_pending_futures() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut s = CallSlots::new();
        let p = Rc::new(Cell::new(0));
        assert_eq!(s.start(3, Yield { polls: p.clone(), ready_after: 1 }, &mut cx), Some(1));
        assert_eq!(s.len(), 0);
        let q = Rc::new(Cell::new(0));
        assert_eq!(s.start(200, Yield { polls: q.clone(), ready_after: 3 }, &mut cx), None);
        assert_eq!(s.len(), 1);
        let mut got = Vec::new();
        s.poll_all(&mut cx, |id, v| got.push((id, v)));
        assert!(got.is_empty());
        s.poll_all(&mut cx, |id, v| got.push((id, v)));
        assert_eq!(got, vec![(200, 3)]);
        assert_eq!(s.len(), 0);
    }
}
