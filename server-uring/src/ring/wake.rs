//! How a ring shard is woken: a local ready queue for wake-ups on the
//! shard's own thread, and a locked queue plus an eventfd for wake-ups from
//! any other thread.
//!
//! Every task on a ring shard (a connection, the event router) has one
//! [`TaskWaker`], an `Arc`, so its clones are counted in a `usize`; a
//! task's wakers are handed only to things that keep at most one clone
//! each (the call slots' `ReadySet`, the outbox, the shutdown signal, one
//! timer), never one per pending call (see docs/ARCHITECTURE.md, "Wakers and
//! glommio's 16-bit task count").
//!
//! The eventfd is written only when the shard is asleep (or about to be):
//! a busy shard pays one relaxed load per pass for remote wake-ups. The
//! `sleeping` flag lives under the same lock as the queue, which is what
//! rules out a lost wake-up: the loop sets it only after seeing the queue
//! empty, and a waker that pushes afterwards sees it and writes the
//! eventfd, whose read the loop keeps armed in the ring.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Wake;

/// Identifies a task on its shard (its slot index).
pub(crate) type Token = u32;

thread_local! {
    /// The shard this thread runs, as the address of its [`Remote`].
    static CURRENT: Cell<*const Remote> = const { Cell::new(std::ptr::null()) };
    /// Tasks woken on this thread, run on the loop's next pass.
    static LOCAL: RefCell<Vec<Token>> = const { RefCell::new(Vec::new()) };
}

/// Marks this thread as running the shard of `remote` (for the local path).
pub(crate) fn enter(remote: &Arc<Remote>) {
    CURRENT.with(|c| c.set(Arc::as_ptr(remote)));
}

/// Whether this thread runs a ring shard.
pub(crate) fn on_ring() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// Moves the tasks woken locally into `into`.
pub(crate) fn take_local(into: &mut Vec<Token>) {
    LOCAL.with(|l| into.append(&mut l.borrow_mut()));
}

/// Whether tasks were woken locally and not yet taken.
pub(crate) fn has_local() -> bool {
    LOCAL.with(|l| !l.borrow().is_empty())
}

struct Queue {
    tokens: Vec<Token>,
    sleeping: bool,
    stop: bool,
}

/// The part of a shard other threads can reach: its remote wake-up queue,
/// its eventfd and its stop request.
pub(crate) struct Remote {
    queue: Mutex<Queue>,
    pending: AtomicBool,
    eventfd: OwnedFd,
}

impl Remote {
    pub(crate) fn new() -> io::Result<Arc<Self>> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created above and is owned by nobody else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Arc::new(Self {
            queue: Mutex::new(Queue { tokens: Vec::new(), sleeping: false, stop: false }),
            pending: AtomicBool::new(false),
            eventfd,
        }))
    }

    pub(crate) fn eventfd(&self) -> RawFd {
        self.eventfd.as_raw_fd()
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; recover anyway.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn after_push(&self, wake: bool) {
        self.pending.store(true, Ordering::Release);
        if wake {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            let _ = unsafe { libc::write(self.eventfd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Queues `token` from another thread and wakes the shard if it sleeps.
    pub(crate) fn push(&self, token: Token) {
        let wake = {
            let mut q = self.lock();
            q.tokens.push(token);
            std::mem::take(&mut q.sleeping)
        };
        self.after_push(wake);
    }

    /// Asks the shard to shut down.
    pub(crate) fn stop(&self) {
        let wake = {
            let mut q = self.lock();
            q.stop = true;
            std::mem::take(&mut q.sleeping)
        };
        self.after_push(wake);
    }

    /// Moves remotely woken tasks into `into`; returns whether a stop was
    /// requested. One relaxed-cost load when nothing came.
    pub(crate) fn take(&self, into: &mut Vec<Token>) -> bool {
        if !self.pending.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut q = self.lock();
        into.append(&mut q.tokens);
        q.stop
    }

    /// Called by the loop before it blocks: returns false (do not block)
    /// if anything is queued, else records that the shard sleeps, so that
    /// the next [`Self::push`] writes the eventfd.
    pub(crate) fn prepare_sleep(&self) -> bool {
        let mut q = self.lock();
        if !q.tokens.is_empty() || q.stop {
            self.pending.store(true, Ordering::Release);
            return false;
        }
        q.sleeping = true;
        true
    }

    /// Called by the loop after it woke.
    pub(crate) fn woke(&self) {
        self.lock().sleeping = false;
    }
}

/// The waker of one task: queues its token on its shard, once until the
/// task runs.
pub(crate) struct TaskWaker {
    pub(crate) token: Token,
    queued: AtomicBool,
    shard: Arc<Remote>,
}

impl TaskWaker {
    pub(crate) fn new(token: Token, shard: Arc<Remote>) -> Arc<Self> {
        Arc::new(Self { token, queued: AtomicBool::new(false), shard })
    }

    /// The task is about to run: later wake-ups queue it again.
    pub(crate) fn clear(&self) {
        self.queued.store(false, Ordering::Release);
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return;
        }
        let local = CURRENT.with(|c| std::ptr::eq(c.get(), Arc::as_ptr(&self.shard)));
        if local {
            LOCAL.with(|l| l.borrow_mut().push(self.token));
        } else {
            self.shard.push(self.token);
        }
    }
}
