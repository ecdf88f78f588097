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

use super::bufring::{self, BufRing};
use super::wake::Token;

/// Submission queue entries per ring; the completion queue is 4x.
pub(crate) const RING_ENTRIES: u32 = 1024;

/// What a completion is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Recv,
    /// A multishot receive into the shard's buffer ring.
    RecvMulti,
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
            Op::RecvMulti => 6,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            1 => Op::Recv,
            2 => Op::Send,
            3 => Op::Accept,
            4 => Op::Wake,
            5 => Op::Cancel,
            6 => Op::RecvMulti,
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
    /// The provided buffer holding a multishot receive's bytes; it must be
    /// given back ([`Reactor::give_back`]) once they are copied out.
    pub(crate) buffer: Option<u16>,
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
    /// The receive buffer pool; `None` where the kernel has no buffer
    /// rings (connections then receive one-shot into their own buffers).
    bufs: Option<BufRing>,
    /// Multishot receives armed and not yet ended (their last completion
    /// has no MORE flag): the pool may be freed only at zero.
    multishots: usize,
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Self> {
        Self::with_pool(bufring::RECV_BUFFERS, bufring::RECV_BUFFER_SIZE)
    }

    /// A ring whose receive pool has `count` buffers of `size` bytes.
    pub(crate) fn with_pool(count: u16, size: u32) -> io::Result<Self> {
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
        let bufs = match BufRing::register_with(&ring, count, size) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::info!(error = %e, "no provided-buffer ring; receiving one-shot");
                None
            }
        };
        Ok(Self { ring, wake_buf: Box::new(0), completions: Vec::with_capacity(256), enters: 0, bufs, multishots: 0 })
    }

    /// Whether connections can use multishot receives.
    pub(crate) fn has_buffers(&self) -> bool {
        self.bufs.is_some()
    }

    /// The bytes of a multishot receive's completion.
    pub(crate) fn received(&self, c: &Completion) -> &[u8] {
        match (c.buffer, &self.bufs) {
            (Some(bid), Some(bufs)) if c.result > 0 => bufs.get(bid, c.result as usize),
            _ => &[],
        }
    }

    /// Gives a completion's provided buffer back to the kernel.
    pub(crate) fn give_back(&mut self, c: &Completion) {
        if let (Some(bid), Some(bufs)) = (c.buffer, self.bufs.as_mut()) {
            bufs.give_back(bid);
        }
    }

    /// Arms a multishot receive on `fd` for task `token`: completions (op
    /// [`Op::RecvMulti`]) carry a buffer of the pool until one comes
    /// without MORE. Needs [`Self::has_buffers`].
    pub(crate) fn recv_multi(&mut self, fd: RawFd, token: Token) {
        let e =
            opcode::RecvMulti::new(types::Fd(fd), bufring::GROUP).build().user_data(user_data(Op::RecvMulti, token));
        // SAFETY: the receive writes only into the pool's buffers, which
        // outlive every armed receive (`multishots`, `Drop`).
        unsafe { self.push(e) };
        self.multishots += 1;
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
            let more = cqueue::more(cqe.flags());
            if op == Op::RecvMulti && !more {
                self.multishots -= 1;
            }
            self.completions.push(Completion {
                op,
                token: ud as u32,
                result: cqe.result(),
                more,
                buffer: cqueue::buffer_select(cqe.flags()),
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
        // The receive pool likewise, unless no multishot receive is armed
        // (the shard's teardown waits for their last completions).
        if let Some(bufs) = self.bufs.take() {
            if self.multishots == 0 {
                // SAFETY: no multishot receive is armed on this ring.
                unsafe { bufs.unregister(&self.ring) };
            } else {
                bufs.leak();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    /// Enters and reaps until `want` completions arrived (or 2 s passed).
    fn collect(r: &mut Reactor, want: usize) -> Vec<(Completion, Vec<u8>)> {
        let mut got = Vec::new();
        let limit = std::time::Instant::now() + Duration::from_secs(2);
        while got.len() < want && std::time::Instant::now() < limit {
            r.enter(true, Some(Duration::from_millis(50)));
            r.reap();
            for c in r.completions.clone() {
                got.push((c, r.received(&c).to_vec()));
            }
        }
        got
    }

    #[test]
    fn a_dry_pool_ends_a_multishot_receive_with_enobufs_and_loses_no_byte() {
        let mut r = Reactor::with_pool(4, 64).expect("ring");
        assert!(r.has_buffers(), "this kernel (>= 5.19) has provided-buffer rings");
        let pairs: Vec<(UnixStream, UnixStream)> = (0..5).map(|_| UnixStream::pair().unwrap()).collect();
        for (i, (rx, _)) in pairs.iter().enumerate() {
            r.recv_multi(rx.as_raw_fd(), i as Token);
        }
        r.enter(false, None);
        for (i, (_, tx)) in pairs.iter().enumerate() {
            (&*tx).write_all(format!("msg-{i}").as_bytes()).unwrap();
        }
        // Four buffers for five arrivals: four carry bytes (and stay armed),
        // the fifth ends without MORE, ENOBUFS, its bytes still in the socket.
        let got = collect(&mut r, 5);
        assert_eq!(got.len(), 5, "{got:?}");
        let dry: Vec<_> = got.iter().filter(|(c, _)| c.result == -libc::ENOBUFS).collect();
        assert_eq!(dry.len(), 1, "{got:?}");
        assert!(!dry[0].0.more && dry[0].0.buffer.is_none());
        let mut bids = Vec::new();
        for (c, bytes) in got.iter().filter(|(c, _)| c.result > 0) {
            assert!(c.more, "a receive that got a buffer stays armed");
            assert_eq!(c.op, Op::RecvMulti);
            assert_eq!(bytes, format!("msg-{}", c.token).as_bytes());
            bids.push(c.buffer.expect("a buffer id"));
        }
        bids.sort_unstable();
        bids.dedup();
        assert_eq!(bids.len(), 4, "each arrival in a buffer of its own");
        assert_eq!(r.multishots, 4);
        // Buffers given back, the dry one re-armed: its bytes arrive.
        for (c, _) in &got {
            r.give_back(c);
        }
        let token = dry[0].0.token;
        r.recv_multi(pairs[token as usize].0.as_raw_fd(), token);
        let again = collect(&mut r, 1);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1, format!("msg-{token}").as_bytes());
        r.give_back(&again[0].0);
        // Cancelled, every receive ends (no MORE) and the pool may be freed.
        for t in 0..5 {
            r.cancel(Op::RecvMulti, t);
        }
        let ends = collect(&mut r, 10);
        let ended = ends.iter().filter(|(c, _)| c.op == Op::RecvMulti && !c.more).count();
        assert_eq!(ended, 5, "{ends:?}");
        assert_eq!(r.multishots, 0);
    }
}
