//! An optional observer of a connection's calls and close, for metrics.
//!
//! The core is where every call's fate is decided: some calls never reach
//! the driver (a disabled or unknown method, a duplicate id, a call during
//! shutdown are answered here), and every reply is framed here. So the one
//! place that sees all of them is the core, and a driver that wants per
//! method counts attaches a [`CallObserver`] with
//! [`ServerConnection::observe`]. Without one (the default) each hook is a
//! single branch on a `None`.

use std::rc::Rc;

use super::{CloseReason, ServerConnection};
use crate::error::CallErrorCode;

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The handler's output was sent.
    Ok,
    /// The handler returned the application's error type.
    AppError,
    /// A protocol-level call error was sent with this code.
    Failed(CallErrorCode),
    /// The handler finished after the connection began closing: no reply
    /// could be sent.
    Dropped,
}

/// Told of each call's start and end on one connection, and of its close.
/// Every call the core accepts as live gets exactly one [`Self::started`]
/// and one [`Self::finished`]; a call refused before it became live (a
/// duplicate id) gets only [`Self::refused`].
pub trait CallObserver {
    /// Call `id` of `method` became live.
    fn started(&self, id: u8, method: u16);
    /// Call `id` ended (its reply or error was framed, or dropped because
    /// the connection was closing).
    fn finished(&self, id: u8, outcome: CallOutcome);
    /// A call of `method` was refused with `code` without becoming live.
    fn refused(&self, method: u16, code: CallErrorCode);
    /// The connection ended for `reason` (reported once, as
    /// [`super::Event::Closed`] is delivered).
    fn closed(&self, reason: &CloseReason);
}

/// A connection's observer slot (a newtype so that the connection stays `Debug`).
#[derive(Default)]
pub(super) struct Observer(Option<Rc<dyn CallObserver>>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Observer(attached)" } else { "Observer(none)" })
    }
}

impl ServerConnection {
    /// Attaches `observer`; it sees every call from now on.
    pub fn observe(&mut self, observer: Rc<dyn CallObserver>) {
        self.observer = Observer(Some(observer));
    }

    pub(super) fn observe_start(&self, id: u8, method: u16) {
        if let Some(o) = &self.observer.0 {
            o.started(id, method);
        }
    }

    pub(super) fn observe_end(&self, id: u8, outcome: CallOutcome) {
        if let Some(o) = &self.observer.0 {
            o.finished(id, outcome);
        }
    }

    pub(super) fn observe_refused(&self, method: u16, code: CallErrorCode) {
        if let Some(o) = &self.observer.0 {
            o.refused(method, code);
        }
    }

    pub(super) fn observe_closed(&self, reason: &CloseReason) {
        if let Some(o) = &self.observer.0 {
            o.closed(reason);
        }
    }
}
