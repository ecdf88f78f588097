//! The ring backend: HardLight's own minimal thread-per-core io_uring loop,
//! a second home for the same sans-I/O core (see docs/ARCHITECTURE.md,
//! "Backends").
//!
//! - `reactor`: one ring per shard thread, one `io_uring_enter` per pass;
//! - `wake`: the ready queues and the eventfd path for remote wake-ups;
//! - `timers`: user-space timers consulted once per pass;
//! - `bufring`: the provided receive buffers multishot receives take;
//! - `io`: one connection's socket, buffers and in-flight operations;
//! - `tls`: rustls between a wss:// socket and the core;
//! - `shard`: the loop and its tiny executor;
//! - `rpc`, `echo`: the per-connection drivers;
//! - `blocking`: the blocking pool behind `crate::rt::spawn_blocking`.

pub(crate) mod blocking;
mod bufring;
pub(crate) mod echo;
mod io;
mod reactor;
pub(crate) mod rpc;
mod shard;
pub(crate) mod timers;
mod tls;
pub(crate) mod wake;

use std::future::Future;
use std::sync::mpsc;
use std::sync::Arc;

use hardlight_core::connection::Mode;

pub(crate) use shard::ServeConn;
pub(crate) use wake::Remote;

use crate::error::ServerError;
use crate::shard::ShardParts;

/// A running ring shard, as the server handle sees it.
pub(crate) struct RingShard {
    pub(crate) remote: Arc<Remote>,
    pub(crate) thread: std::thread::JoinHandle<()>,
}

/// Starts ring shard `parts.index` on a thread of its own (pinned to `cpu`
/// if given); it reports on `ready` once it listens, or why it could not.
pub(crate) fn spawn<F, Fut>(
    parts: ShardParts<F>,
    cpu: Option<usize>,
    hook: Option<crate::ShardHook>,
    ready: mpsc::Sender<Result<(), ServerError>>,
    mode: Mode,
    serve: ServeConn<F, Fut>,
) -> Result<RingShard, ServerError>
where
    F: Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let index = parts.index;
    let remote =
        Remote::new().map_err(|e| ServerError::ShardStart { shard: index, reason: format!("eventfd: {e}") })?;
    let r = remote.clone();
    let thread = std::thread::Builder::new()
        .name(format!("hardlight-shard-{index}"))
        .spawn(move || {
            let fail = |reason: String| {
                let _ = ready.send(Err(ServerError::ShardStart { shard: index, reason }));
            };
            if let Some(cpu) = cpu {
                if let Err(e) = pin_to(cpu) {
                    return fail(format!("cannot pin to CPU {cpu}: {e}"));
                }
            }
            let reactor = match reactor::Reactor::new() {
                Ok(r) => r,
                Err(e) => return fail(format!("io_uring: {e}")),
            };
            let listener = match shard::bind(parts.addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready.send(Err(ServerError::Bind { addr: parts.addr, source: e }));
                    return;
                }
            };
            if let Some(hook) = hook {
                hook(index);
            }
            let _ = ready.send(Ok(()));
            drop(ready);
            shard::run(parts, listener, r, reactor, mode, serve);
            blocking::shutdown();
        })
        .map_err(|e| ServerError::ShardStart { shard: index, reason: e.to_string() })?;
    Ok(RingShard { remote, thread })
}

/// Pins the calling thread to `cpu`.
fn pin_to(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::other("CPU index out of range"));
    }
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it
    // (the index is checked above); sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
