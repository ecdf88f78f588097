//! A small pool of threads for blocking work started from a ring shard
//! (`crate::rt::spawn_blocking`), with a bounded queue.
//!
//! Each ring shard gets its own pool the first time a handler asks for it.
//! A job's result is handed back through an `AtomicWaker` holding the one
//! waker of the waiting future (a call slot's waker, which wakes the
//! connection through the shard's remote queue and eventfd). When the
//! queue is full the future keeps its job and waits for a worker to take
//! one: the pool never grows past its bound and never fails a job.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures::task::AtomicWaker;

/// Worker threads per ring shard.
pub const DEFAULT_BLOCKING_THREADS: usize = 4;
/// Jobs queued (not yet running) per ring shard before callers wait.
pub const DEFAULT_BLOCKING_QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

struct State {
    jobs: VecDeque<Job>,
    /// Futures waiting for room in `jobs`, one waker each.
    waiting: VecDeque<Waker>,
    closed: bool,
}

/// A pool: `threads` workers sharing a queue of at most `capacity` jobs.
pub(crate) struct Pool {
    state: Mutex<State>,
    work: Condvar,
    capacity: usize,
}

impl Pool {
    pub(crate) fn new(threads: usize, capacity: usize, name: &str) -> Arc<Self> {
        let pool = Arc::new(Self {
            state: Mutex::new(State { jobs: VecDeque::new(), waiting: VecDeque::new(), closed: false }),
            work: Condvar::new(),
            capacity: capacity.max(1),
        });
        for i in 0..threads.max(1) {
            let p = pool.clone();
            let spawned = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || p.work());
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a blocking-pool thread");
            }
        }
        pool
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn work(&self) {
        loop {
            let (job, room) = {
                let mut s = self.lock();
                loop {
                    if let Some(job) = s.jobs.pop_front() {
                        break (job, s.waiting.pop_front());
                    }
                    if s.closed {
                        return;
                    }
                    s = self.work.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            };
            if let Some(w) = room {
                w.wake();
            }
            job();
        }
    }

    /// Queues `job`, or hands it back if the queue is full (the waker is
    /// then woken when a worker takes a job).
    fn try_push(&self, job: Job, waker: &Waker) -> Result<(), Job> {
        let mut s = self.lock();
        if s.jobs.len() >= self.capacity {
            s.waiting.push_back(waker.clone());
            return Err(job);
        }
        s.jobs.push_back(job);
        drop(s);
        self.work.notify_one();
        Ok(())
    }

    /// Lets the workers exit once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }
}

thread_local! {
    static POOL: RefCell<Option<Arc<Pool>>> = const { RefCell::new(None) };
}

/// This shard's pool, started on first use.
fn pool() -> Arc<Pool> {
    POOL.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| Pool::new(DEFAULT_BLOCKING_THREADS, DEFAULT_BLOCKING_QUEUE, "hardlight-blocking"))
            .clone()
    })
}

/// Closes this shard's pool (at shard exit).
pub(crate) fn shutdown() {
    if let Some(p) = POOL.with(|p| p.borrow_mut().take()) {
        p.close();
    }
}

struct Shared<R> {
    result: Mutex<Option<std::thread::Result<R>>>,
    waker: AtomicWaker,
}

/// A job on the pool; resolves to its result (a panic in the job is
/// resumed in the awaiting handler, which the server answers as
/// `HandlerPanicked`).
pub(crate) struct Blocking<R> {
    job: Option<Job>,
    shared: Arc<Shared<R>>,
    pool: Arc<Pool>,
}

/// Runs `f` on this shard's pool.
pub(crate) fn spawn<F, R>(f: F) -> Blocking<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    spawn_on(pool(), f)
}

pub(crate) fn spawn_on<F, R>(pool: Arc<Pool>, f: F) -> Blocking<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let shared = Arc::new(Shared { result: Mutex::new(None), waker: AtomicWaker::new() });
    let s = shared.clone();
    let job: Job = Box::new(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(f));
        *s.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        s.waker.wake();
    });
    Blocking { job: Some(job), shared, pool }
}

impl<R> Future for Blocking<R> {
    type Output = R;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        let this = self.get_mut();
        this.shared.waker.register(cx.waker());
        if let Some(job) = this.job.take() {
            if let Err(job) = this.pool.try_push(job, cx.waker()) {
                this.job = Some(job);
                return Poll::Pending;
            }
        }
        match this.shared.result.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(Ok(r)) => Poll::Ready(r),
            Some(Err(panic)) => std::panic::resume_unwind(panic as Box<dyn Any + Send>),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_makes_callers_wait_and_every_job_still_runs() {
        // One worker, room for two queued jobs, twenty jobs at once.
        let pool = Pool::new(1, 2, "test-blocking");
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let jobs: Vec<_> = (0..20u64)
            .map(|i| {
                let g = gate.clone();
                spawn_on(pool.clone(), move || {
                    let (m, c) = &*g;
                    let mut open = m.lock().unwrap();
                    while !*open {
                        open = c.wait(open).unwrap();
                    }
                    i * 2
                })
            })
            .collect();
        let all = futures::future::join_all(jobs);
        let waiter = std::thread::spawn(move || futures::executor::block_on(all));
        std::thread::sleep(std::time::Duration::from_millis(50));
        // While the worker is stuck, the queue holds at most its bound.
        assert!(pool.lock().jobs.len() <= 2, "queue grew past its bound");
        let (m, c) = &*gate;
        *m.lock().unwrap() = true;
        c.notify_all();
        let got = waiter.join().unwrap();
        assert_eq!(got, (0..20u64).map(|i| i * 2).collect::<Vec<_>>());
        pool.close();
    }
}
