//! A shard-local, one-shot broadcast: "this shard is shutting down".
//!
//! Every connection task on a shard must notice shutdown even while it is
//! parked on its socket. Each connection registers its waker under a key;
//! firing wakes them all. Single-threaded (shard-local), so no atomics.

use std::cell::{Cell, RefCell};
use std::task::Waker;

#[derive(Default)]
pub(crate) struct LocalSignal {
    fired: Cell<bool>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl LocalSignal {
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Reserves a waker slot for one listener.
    pub(crate) fn subscribe(&self) -> usize {
        if let Some(k) = self.free.borrow_mut().pop() {
            return k;
        }
        let mut w = self.wakers.borrow_mut();
        w.push(None);
        w.len() - 1
    }

    /// Records the waker to wake for slot `key`; clones only when it changed.
    pub(crate) fn register(&self, key: usize, waker: &Waker) {
        let mut w = self.wakers.borrow_mut();
        match &mut w[key] {
            Some(old) if old.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    pub(crate) fn unsubscribe(&self, key: usize) {
        self.wakers.borrow_mut()[key] = None;
        self.free.borrow_mut().push(key);
    }

    /// Fires the signal and wakes every registered listener.
    pub(crate) fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self.wakers.borrow_mut().iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }
}
