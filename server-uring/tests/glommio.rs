//! The end-to-end suites again, on the glommio backend (`Backend::Glommio`;
//! every other test binary runs on the default, the ring): real sockets on
//! 127.0.0.1, the real client. This binary includes the other suites as its
//! modules; `common::backend()` sees the `glommio` crate in its module path
//! and every server they start runs on glommio.

// Each included suite declares its own `mod common`, as it does in its own
// binary; the copies are identical.
#![allow(clippy::duplicate_mod)]

#[path = "call_context.rs"]
mod call_context;
#[path = "e2e.rs"]
mod e2e;
#[path = "echo.rs"]
mod echo;
#[path = "events.rs"]
mod events;
#[path = "metrics.rs"]
mod metrics;
#[path = "pending.rs"]
mod pending;
#[path = "reconnect.rs"]
mod reconnect;
#[path = "robust.rs"]
mod robust;
#[path = "session.rs"]
mod session;
#[path = "timers.rs"]
mod timers;
