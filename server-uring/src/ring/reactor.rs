//! One io_uring per shard thread, and the one `io_uring_enter` per loop
//! pass.
//!
//! The ring is created on the shard's thread with COOP_TASKRUN (completions
//! are run when the thread next enters the kernel, instead of interrupting
//! it), TASKRUN_FLAG (the kernel says when such work waits, so an enter
//! that only submits adds GETEVENTS only then) and SINGLE_ISSUER (only this
//! thread submits). A kernel that refuses the flags gets a plain ring.
//!
//! Each submission's `user_data` is `(op << 32) | token`: the operation
//! kind and the task (connection) it belongs to.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::wake::Token;

/// Submission queue entries per ring; the completion queue is 4x.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// What a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Recv,
    Send,
    Accept,
    Wake,
    Cancel,
}

impl Op {
    fn code(self) -> u64 {
        match self {
            Op::Recv => 1,
            Op::Send => 2,
            Op::Accept => 3,
            Op::Wake => 4,
            Op::Cancel => 5,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            1 => Op::Recv,
            2 => Op::Send,
            3 => Op::Accept,
            4 => Op::Wake,
            5 => Op::Cancel,
            _ => return None,
        })
    }
}

pub(crate) fn user_data(op: Op, token: Token) -> u64 {
    (op.code() << 32) | token as u64
}

/// One completion, copied out of the ring.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    pub(crate) op: Op,
    pub(crate) token: Token,
    pub(crate) result: i32,
    pub(crate) more: bool,
}

/// A shard's ring.
pub(crate) struct Reactor {
    ring: IoUring,
    /// Where the armed eventfd read lands; boxed so it never moves while
    /// the read is in flight, and never freed (see `Drop`).
    wake_buf: Box<u64>,
    /// Completions of this pass; reused.
    pub(crate) completions: Vec<Completion>,
    /// io_uring_enter calls made (for tests and measurements).
    pub(crate) enters: u64,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(RING_ENTRIES * 4)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .build(RING_ENTRIES)
            .or_else(|e| {
                tracing::warn!(error = %e, "io_uring refused COOP_TASKRUN/SINGLE_ISSUER; using a plain ring");
                IoUring::builder().setup_cqsize(RING_ENTRIES * 4).build(RING_ENTRIES)
            })?;
        Ok(Self { ring, wake_buf: Box::new(0), completions: Vec::with_capacity(256), enters: 0 })
    }

    /// Queues `entry`, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every buffer `entry` points to must stay valid and unmoved until its
    /// completion has been reaped.
    pub(crate) unsafe fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: the caller guarantees the entry's buffers outlive it.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full: hand what is queued to the kernel (rare: 1024 entries).
            self.enters += 1;
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!(error = %e, "io_uring submit failed");
                    return;
                }
            }
        }
    }

    /// Arms a multishot accept on `listener`.
    pub(crate) fn accept(&mut self, listener: RawFd) {
        let e = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, 0));
        // SAFETY: a multishot accept points to no buffer.
        unsafe { self.push(e) };
    }

    /// Arms the read of the shard's eventfd.
    pub(crate) fn arm_wake(&mut self, eventfd: RawFd) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let e = opcode::Read::new(types::Fd(eventfd), buf.cast(), 8).build().user_data(user_data(Op::Wake, 0));
        // SAFETY: `wake_buf` is boxed, owned by the reactor and freed only
        // after the ring is closed (field order in `Drop`).
        unsafe { self.push(e) };
    }

    /// Asks the kernel to cancel the operation `(op, token)`.
    pub(crate) fn cancel(&mut self, op: Op, token: Token) {
        let e = opcode::AsyncCancel::new(user_data(op, token)).build().user_data(user_data(Op::Cancel, token));
        // SAFETY: a cancel points to no buffer.
        unsafe { self.push(e) };
    }

    /// The pass's one enter: submits what is queued and, if `wait`, blocks
    /// until a completion arrives or `timeout` passes. Skipped entirely
    /// when there is nothing to submit, nothing to wait for and no kernel
    /// work pending.
    pub(crate) fn enter(&mut self, wait: bool, timeout: Option<Duration>) {
        let queued = !self.ring.submission().is_empty();
        let taskrun = self.ring.submission().taskrun();
        if !wait && !queued && !taskrun {
            return;
        }
        self.enters += 1;
        let r = match (wait, timeout) {
            (true, Some(t)) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            (true, None) => self.ring.submit_and_wait(1),
            (false, _) => self.ring.submit(),
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => tracing::error!(error = %e, "io_uring_enter failed"),
            }
        }
    }

    /// Copies every completion out of the ring into `self.completions`.
    pub(crate) fn reap(&mut self) {
        self.completions.clear();
        for cqe in self.ring.completion() {
            let ud = cqe.user_data();
            let Some(op) = Op::from_code(ud >> 32) else { continue };
            self.completions.push(Completion {
                op,
                token: ud as u32,
                result: cqe.result(),
                more: cqueue::more(cqe.flags()),
            });
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // The kernel tears a closed ring's requests down asynchronously, so
        // the armed eventfd read may outlive `ring`: its 8-byte buffer is
        // leaked (once per shard per server) rather than freed under it.
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
    }
}
