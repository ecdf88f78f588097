//! The connection's queue of server-originated messages (state changes,
//! feature-set changes, events) and the ordering rules that tie it to call
//! responses: whatever a call queued is on the wire before that call's
//! answer, a disabled method is refused before its input is decoded, and a
//! client that reads events too slowly under the disconnect policy is
//! closed (4001).

use std::rc::Rc;

use super::{Phase, ServerConnection};
use crate::error::{CallErrorCode, CloseCode};
use crate::outbox::Outbox;

/// The attached outbox and the service's method table.
#[derive(Debug)]
pub(super) struct Attached {
    outbox: Rc<Outbox>,
    method_names: &'static [&'static str],
}

impl ServerConnection {
    /// Attaches the connection's outbox (the one its state, feature and
    /// event handles write to) and the service's method names. From then
    /// on the connection drains it before every call response and error,
    /// refuses calls to methods the feature set disables
    /// (`MethodDisabled`, or `UnknownMethod` past the table) without
    /// delivering them, and [`Self::flush_outbox`] moves the rest out.
    ///
    /// Attach it when accepting the upgrade, after the connection factory
    /// queued the initial state, and call [`Self::flush_outbox`] so the
    /// initial state and feature set follow the 101 at once.
    pub fn attach_outbox(&mut self, outbox: Rc<Outbox>, method_names: &'static [&'static str]) {
        self.outbox = Some(Attached { outbox, method_names });
    }

    /// Moves queued messages into the outbound bytes while they are under
    /// `max_outbound_bytes` (the rest waits in the outbox, where the event
    /// bound applies), or closes the connection with 4001 if the outbox
    /// overflowed under the disconnect policy.
    ///
    /// The driver calls it once per round, before writing: the outbox is
    /// also filled from outside the connection's calls (the shard's event
    /// router, other tasks), which wake the driver through
    /// [`Outbox::register`].
    pub fn flush_outbox(&mut self) {
        let Some(a) = &self.outbox else { return };
        if self.phase != Phase::Open {
            return;
        }
        if a.outbox.overflowed() {
            self.close(CloseCode::SlowConsumer, "too slow reading events");
            return;
        }
        let pending = self.out.len() - self.out_start;
        a.outbox.drain_to(&mut self.out, pending, self.limits.max_outbound_bytes);
    }

    /// Before a response: everything queued, whatever the backlog.
    pub(super) fn drain_outbox_all(&mut self) {
        if let Some(a) = &self.outbox {
            a.outbox.drain_to(&mut self.out, 0, usize::MAX);
        }
    }

    /// Why a call to `method` is refused by the feature set, if it is.
    pub(super) fn refusal(&self, method: u16) -> Option<(CallErrorCode, String)> {
        let a = self.outbox.as_ref()?;
        if a.outbox.is_enabled(method) {
            return None;
        }
        Some(match a.method_names.get(method as usize) {
            Some(name) => {
                (CallErrorCode::MethodDisabled, format!("method `{name}` is not enabled for this connection"))
            }
            None => (CallErrorCode::UnknownMethod, format!("no method with id {method}")),
        })
    }
}
