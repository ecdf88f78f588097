//! Test-only: counts the clones of a connection task's waker that stay alive
//! between polls (see `slots.rs` for why that number must stay small).
//!
//! In unit-test builds every connection future is wrapped in [`Census`]. It
//! polls the connection with a relay waker (an `Arc`), so the clones that
//! the connection's code keeps (in sockets, timers, the outbox, the call
//! slots' ready set, ...) show up in the relay's strong count; after each
//! poll the count of retained clones is folded into [`max_retained`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

static MAX_RETAINED: AtomicUsize = AtomicUsize::new(0);

/// The most clones of one connection task's waker seen alive after a poll,
/// over every connection served so far in this process.
pub(crate) fn max_retained() -> usize {
    MAX_RETAINED.load(Ordering::Relaxed)
}

/// Starts a new count (the test runs one backend after the other).
pub(crate) fn reset() {
    MAX_RETAINED.store(0, Ordering::Relaxed);
}

/// Forwards wake-ups to the executor's waker for the task.
struct Relay {
    target: Mutex<Waker>,
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.target.lock().unwrap().wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.target.lock().unwrap().wake_by_ref();
    }
}

/// A future polled through a counted relay waker.
pub(crate) struct Census<F> {
    inner: Pin<Box<F>>,
    relay: Option<Arc<Relay>>,
}

impl<F> Census<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner: Box::pin(inner), relay: None }
    }
}

impl<F: Future> Future for Census<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let relay = match &self.relay {
            Some(r) => {
                let mut target = r.target.lock().unwrap();
                if !target.will_wake(cx.waker()) {
                    *target = cx.waker().clone();
                }
                drop(target);
                r.clone()
            }
            None => {
                let r = Arc::new(Relay { target: Mutex::new(cx.waker().clone()) });
                self.relay = Some(r.clone());
                r
            }
        };
        let waker = Waker::from(relay);
        let out = self.inner.as_mut().poll(&mut Context::from_waker(&waker));
        drop(waker);
        if let Some(r) = &self.relay {
            // Minus the one `self.relay` holds.
            let retained = Arc::strong_count(r) - 1;
            MAX_RETAINED.fetch_max(retained, Ordering::Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    //! The bound, on the real server: glommio and ring shards, real sockets,
    //! the real client, handlers pending on the blocking pool and timers.
    use std::time::Duration;

    use hardlight_client::Connection;

    use crate::{rt, Backend, ConnectContext, Refusal, Server};

    #[hardlight::rpc]
    trait Pend {
        async fn blocking(&self, v: u64) -> u64;
        async fn ticks(&self, n: u32, v: u64) -> u64;
    }
    struct H;
    impl Pend for H {
        async fn blocking(&self, v: u64) -> u64 {
            rt::spawn_blocking(move || v + 1).await
        }
        async fn ticks(&self, n: u32, v: u64) -> u64 {
            for _ in 0..n {
                rt::sleep(Duration::from_millis(1)).await;
            }
            v
        }
    }

    /// Upper bound on live clones of one connection task's waker: the call
    /// slots' ready set, the outbox, the shutdown signal, the socket's read
    /// and write sources and the connection's timers each keep at most one.
    const BOUND: usize = 8;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn live_task_waker_clones_stay_bounded_with_256_pending_calls() {
        for backend in [Backend::Glommio, Backend::Ring] {
            super::reset();
            pending_calls_on(backend).await;
        }
    }

    async fn pending_calls_on(backend: Backend) {
        let server = Server::builder("127.0.0.1:0".parse().unwrap())
            .unpinned(1)
            .backend(backend)
            .serve(|_: &ConnectContext<'_>| Ok::<_, Refusal>(PendService::new(H)))
            .unwrap();
        let url = format!("ws://{}", server.local_addr());
        let conns = [Connection::connect(&url).await.unwrap(), Connection::connect(&url).await.unwrap()];
        for _round in 0..2 {
            let mut tasks = Vec::new();
            for conn in &conns {
                for i in 0..256u64 {
                    let c = PendClient::new(conn.clone());
                    tasks.push(tokio::spawn(async move {
                        if i % 2 == 0 {
                            c.blocking(i).await.unwrap() == i + 1
                        } else {
                            c.ticks(50, i).await.unwrap() == i
                        }
                    }));
                }
            }
            for t in tasks {
                assert!(t.await.unwrap(), "a call got a wrong answer");
            }
        }
        let max = super::max_retained();
        assert!(max >= 2, "{backend:?}: the census saw the connection's own wakers ({max}): is it wired in?");
        assert!(max <= BOUND, "{backend:?}: a connection task kept {max} clones of its waker (bound {BOUND})");
        drop(conns);
        server.shutdown();
    }
}
