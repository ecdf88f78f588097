//! Runtime services for handlers that work on either backend.
//!
//! A handler runs on its connection's shard, inside whichever loop that
//! shard runs (glommio or the ring, `crate::Backend`). glommio's own
//! `glommio::timer::sleep` and `glommio::executor().spawn_blocking` panic on
//! a ring shard; these functions pick the right implementation for the
//! shard they are called on. tokio's timers and tasks do not run inside
//! handlers on either backend (no tokio runtime drives them there).

use std::time::Duration;

pub use crate::ring::blocking::{DEFAULT_BLOCKING_QUEUE, DEFAULT_BLOCKING_THREADS};

/// Waits `duration` on the shard's timers.
pub async fn sleep(duration: Duration) {
    if crate::ring::wake::on_ring() {
        crate::ring::timers::Timer::after(duration).await
    } else {
        glommio::timer::sleep(duration).await
    }
}

/// Runs `f` on a thread where it may block, and resolves to its result.
///
/// On a glommio shard this is glommio's blocking pool. On a ring shard it
/// is the shard's own pool of [`DEFAULT_BLOCKING_THREADS`] threads with a
/// queue of [`DEFAULT_BLOCKING_QUEUE`] jobs; when the queue is full the
/// caller waits for room (nothing is dropped). A panic in `f` resumes in
/// the awaiting handler, which the server answers as `HandlerPanicked`.
pub async fn spawn_blocking<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if crate::ring::wake::on_ring() {
        crate::ring::blocking::spawn(f).await
    } else {
        glommio::executor().spawn_blocking(f).await
    }
}
