//! Stopping a running server from outside: a cloneable trigger, and the
//! ready-made SIGTERM/SIGINT path every deployment needs.
//!
//! [`ServerHandle::shutdown`] blocks and consumes the handle, which is right
//! for a test or a program that decides itself when to stop, but a
//! deployment stops when its supervisor says so (systemd, Kubernetes and
//! Docker send SIGTERM, a terminal sends SIGINT). [`ShutdownTrigger`] lets
//! any thread start the graceful shutdown while the main thread sits in
//! [`ServerHandle::join`]; [`ServerHandle::run_until_signal`] wires the two
//! signals to it.
//!
//! Signals are caught with `signal-hook` rather than tokio's `signal`: the
//! shards are glommio executors, not a tokio runtime, and tokio exists in
//! this crate only behind the optional `broker` feature; `signal-hook`
//! needs no runtime (a handler that only writes to a self-pipe, read by one
//! plain thread), and glommio already depends on it, so it adds no crate.

use std::sync::{Arc, Mutex};

use futures::channel::oneshot;

use crate::{ServerError, ServerHandle};

/// The signals [`ServerHandle::run_until_signal`] turns into a graceful
/// shutdown: SIGTERM (what supervisors send) and SIGINT (Ctrl-C).
pub const SHUTDOWN_SIGNALS: [i32; 2] = [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT];

/// Starts a server's graceful shutdown from anywhere, without waiting for it.
///
/// Cheap to clone, `Send` and `Sync`: hand it to a signal handler, an admin
/// endpoint or a test. Firing it more than once, or after the server
/// stopped, does nothing. Whoever holds the [`ServerHandle`] waits for the
/// drain with [`ServerHandle::join`].
#[derive(Clone)]
pub struct ShutdownTrigger {
    /// One stopper per shard; taken (emptied) by the first shutdown.
    stops: Arc<Mutex<Vec<Stopper>>>,
}

/// How to tell one shard to stop, per backend.
pub(crate) enum Stopper {
    /// A glommio shard's accept loop waits on this.
    Glommio(oneshot::Sender<()>),
    /// A ring shard's loop is told through its remote wake-up path.
    Ring(Arc<crate::ring::Remote>),
}

impl Stopper {
    fn stop(self) {
        match self {
            Self::Glommio(s) => {
                let _ = s.send(());
            }
            Self::Ring(r) => r.stop(),
        }
    }
}

impl ShutdownTrigger {
    pub(crate) fn new(stops: Vec<Stopper>) -> Self {
        Self { stops: Arc::new(Mutex::new(stops)) }
    }

    /// Begins the graceful shutdown and returns at once: every shard stops
    /// accepting (new connections are refused), connections stop starting
    /// calls (`ShuttingDown`), calls in flight get the grace period, then
    /// every client gets Close 1001.
    pub fn shutdown(&self) {
        let stops = std::mem::take(&mut *self.stops.lock().unwrap_or_else(|e| e.into_inner()));
        for s in stops {
            s.stop();
        }
    }

    /// Whether the shutdown has been started.
    pub fn is_triggered(&self) -> bool {
        self.stops.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

impl std::fmt::Debug for ShutdownTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShutdownTrigger").field("triggered", &self.is_triggered()).finish()
    }
}

impl ServerHandle {
    /// Serves until SIGTERM or SIGINT arrives, then shuts down gracefully
    /// (stop accepting, let calls in flight finish within the grace period,
    /// Close 1001 to every client) and returns the signal that stopped it,
    /// or `None` if the server stopped for another reason (a
    /// [`ShutdownTrigger`] fired elsewhere, a shard failed).
    ///
    /// A second signal while draining ends the process at once, the way the
    /// signal would have without this handler (so a second Ctrl-C still
    /// works). The handlers are removed before this returns.
    ///
    /// ```no_run
    /// # fn run(server: hardlight_server::ServerHandle) {
    /// server.run_until_signal().expect("signal handlers install");
    /// // main returns: exit status 0 after a graceful drain.
    /// # }
    /// ```
    pub fn run_until_signal(self) -> Result<Option<i32>, ServerError> {
        let mut signals = signal_hook::iterator::Signals::new(SHUTDOWN_SIGNALS).map_err(ServerError::Signals)?;
        let closer = signals.handle();
        let trigger = self.shutdown_trigger();
        let grace = self.grace;
        let watcher = std::thread::Builder::new()
            .name("hardlight-signals".into())
            .spawn(move || {
                let mut first = None;
                for sig in signals.forever() {
                    if first.is_none() {
                        tracing::info!(
                            signal = signal_name(sig),
                            ?grace,
                            "shutting down gracefully; signal again to exit now"
                        );
                        first = Some(sig);
                        trigger.shutdown();
                    } else {
                        tracing::warn!(signal = signal_name(sig), "second signal while draining; exiting now");
                        // Restores the default action and raises the signal.
                        let _ = signal_hook::low_level::emulate_default_handler(sig);
                    }
                }
                first
            })
            .map_err(ServerError::Signals)?;
        self.join();
        closer.close();
        Ok(watcher.join().unwrap_or(None))
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGINT => "SIGINT",
        _ => "signal",
    }
}
