//! Connection state: server-owned, per-connection values that reach the
//! client by themselves.
//!
//! The application's state struct derives [`ConnectionState`]
//! (`#[derive(hardlight::ConnectionState)]`). Handlers change it through
//! [`StateHandle::lock`]; when the [`StateGuard`] drops, the fields that
//! differ from their values at lock time are encoded into one `STATE`
//! message (and only those fields) and queued on the connection's
//! [`Outbox`], in guard-release order, ahead of any call response written
//! after it. The client applies them to a read-only mirror.
//!
//! The trait and the wire form live in [`crate::state_diff`]; this module is
//! the handle and its guard.

use std::cell::{RefCell, RefMut};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use crate::error::EncodeError;
use crate::outbox::Outbox;
use crate::state_diff::{ConnectionState, StateWriter};

/// The server-side handle to one connection's state. Cheap to clone; all
/// clones share the value. Not `Send`: it lives on the connection's shard.
pub struct StateHandle<S> {
    inner: Rc<StateInner<S>>,
}

struct StateInner<S> {
    value: RefCell<S>,
    outbox: Rc<Outbox>,
}

impl<S> Clone for StateHandle<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<S: ConnectionState> StateHandle<S> {
    /// Creates the state for a connection and queues the full initial state,
    /// which the client receives right after the upgrade.
    pub fn new(initial: S, outbox: Rc<Outbox>) -> Self {
        let mut w = StateWriter::new();
        match initial.write_diff(None, &mut w) {
            Ok(()) => {
                if let Some(msg) = w.message() {
                    outbox.push_message(msg);
                }
            }
            Err(e) => tracing_log(&e),
        }
        Self { inner: Rc::new(StateInner { value: RefCell::new(initial), outbox }) }
    }

    /// Locks the state for change. When the guard drops, the fields that
    /// changed are sent to the client.
    ///
    /// # Panics
    ///
    /// If the state is already locked: some call holds a guard across an
    /// `.await`. Guards must be dropped before awaiting (scope them in a
    /// block); holding one would stall every other call that touches the
    /// state. Clippy catches this with `await_holding_invalid_type` when
    /// `hardlight_core::state::StateGuard` is listed in `clippy.toml`
    /// (see `docs/ARCHITECTURE.md`).
    #[track_caller]
    pub fn lock(&self) -> StateGuard<'_, S> {
        let value = self.inner.value.try_borrow_mut().unwrap_or_else(|_| held_across_await());
        let before = value.clone();
        StateGuard { value: Some(value), before: Some(before), outbox: &self.inner.outbox }
    }

    /// A copy of the current value.
    ///
    /// # Panics
    ///
    /// If a guard from [`Self::lock`] is alive: some call holds it across
    /// an `.await` (see [`Self::lock`]); the message says so.
    #[track_caller]
    pub fn get(&self) -> S {
        self.read(S::clone)
    }

    /// Reads the current value without copying it.
    ///
    /// # Panics
    ///
    /// If a guard from [`Self::lock`] is alive, with the same message as a
    /// second `lock()` (see there).
    #[track_caller]
    pub fn read<R>(&self, f: impl FnOnce(&S) -> R) -> R {
        f(&self.inner.value.try_borrow().unwrap_or_else(|_| held_across_await()))
    }

    /// Reads the current value, or returns `None` while it is locked. For
    /// code that must not panic when a guard is alive (event routing by
    /// state skips such a connection); handlers want [`Self::read`].
    pub fn try_read<R>(&self, f: impl FnOnce(&S) -> R) -> Option<R> {
        self.inner.value.try_borrow().ok().map(|v| f(&v))
    }
}

/// Exclusive access to the connection's state. Dropping it sends the
/// changed fields to the client. Do not hold it across `.await`.
#[must_use = "dropping the guard at once publishes nothing; bind it and change fields"]
pub struct StateGuard<'a, S: ConnectionState> {
    value: Option<RefMut<'a, S>>,
    before: Option<S>,
    outbox: &'a Outbox,
}

impl<S: ConnectionState> Deref for StateGuard<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.value.as_ref().expect("value present until drop")
    }
}

impl<S: ConnectionState> DerefMut for StateGuard<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.value.as_mut().expect("value present until drop")
    }
}

impl<S: ConnectionState> Drop for StateGuard<'_, S> {
    fn drop(&mut self) {
        let (Some(value), Some(before)) = (self.value.take(), self.before.take()) else {
            return;
        };
        self.outbox.with_state_writer(|w| match value.write_diff(Some(&before), w) {
            Ok(()) => {}
            Err(e) => tracing_log(&e),
        });
        drop(value);
    }
}

/// The one message for every state access while a guard is alive. The only
/// way a guard can be alive when another access runs (the state lives on
/// one thread) is a call holding it across an `.await`, so that is what the
/// message names, instead of `RefCell`'s "already mutably borrowed".
#[track_caller]
#[cold]
fn held_across_await() -> ! {
    panic!(
        "connection state is already locked: a StateGuard is held across an .await; \
         drop the guard before awaiting (list `hardlight_core::state::StateGuard` under \
         `await-holding-invalid-types` in clippy.toml to catch this at compile time)"
    )
}

fn tracing_log(e: &EncodeError) {
    // core has no logging dependency; surface encode failures on stderr,
    // they mean a state field cannot be archived, a programming error.
    eprintln!("hardlight: could not encode connection state: {e}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode_server, ServerMessage, KIND_STATE};
    use crate::error::DecodeError;
    use crate::state_diff::{apply_state, parse_state};
    use crate::wire::Wire;

    /// What `#[derive(ConnectionState)]` generates, written out.
    #[derive(Clone, Debug, Default, PartialEq)]
    struct Chat {
        user: Option<String>,
        threads: Vec<u32>,
        unread: u64,
    }

    impl ConnectionState for Chat {
        const FIELDS: &'static [&'static str] = &["user", "threads", "unread"];
        fn write_diff(&self, before: Option<&Self>, w: &mut StateWriter) -> Result<(), EncodeError> {
            if before.is_none_or(|b| b.user != self.user) {
                w.field(0, &self.user)?;
            }
            if before.is_none_or(|b| b.threads != self.threads) {
                w.field(1, &self.threads)?;
            }
            if before.is_none_or(|b| b.unread != self.unread) {
                w.field(2, &self.unread)?;
            }
            Ok(())
        }
        fn apply_field(&mut self, index: u8, archive: &[u8]) -> Result<(), DecodeError> {
            match index {
                0 => self.user = Wire::decode(archive)?,
                1 => self.threads = Wire::decode(archive)?,
                2 => self.unread = Wire::decode(archive)?,
                other => return Err(DecodeError(format!("unknown state field {other}"))),
            }
            Ok(())
        }
    }

    fn messages(outbox: &Outbox) -> Vec<Vec<u8>> {
        outbox.take_messages_for_test()
    }

    #[test]
    fn initial_state_carries_every_field() {
        let outbox = Rc::new(Outbox::new(0));
        let _h = StateHandle::new(Chat { unread: 3, ..Default::default() }, outbox.clone());
        let msgs = messages(&outbox);
        assert_eq!(msgs.len(), 1);
        let ServerMessage::Other { kind: KIND_STATE, body } = decode_server(&msgs[0]).unwrap() else { panic!() };
        let fields: Vec<u8> = parse_state(body).unwrap().iter().map(|(i, _)| *i).collect();
        assert_eq!(fields, vec![0, 1, 2]);
        let mut mirror = Chat::default();
        apply_state(&mut mirror, body).unwrap();
        assert_eq!(mirror.unread, 3);
    }

    #[test]
    fn only_changed_fields_travel_in_release_order() {
        let outbox = Rc::new(Outbox::new(0));
        let h = StateHandle::new(Chat::default(), outbox.clone());
        let mut mirror = Chat::default();
        for m in messages(&outbox) {
            apply_state(&mut mirror, &m[1..]).unwrap();
        }
        {
            let mut g = h.lock();
            g.threads.push(7);
        }
        {
            let mut g = h.lock();
            g.unread = 9;
            g.user = Some("ada".into());
        }
        {
            // Changed and changed back: nothing to send.
            let mut g = h.lock();
            g.unread = 100;
            g.unread = 9;
        }
        let msgs = messages(&outbox);
        assert_eq!(msgs.len(), 2, "no message for a lock that changed nothing");
        let first: Vec<u8> = parse_state(&msgs[0][1..]).unwrap().iter().map(|(i, _)| *i).collect();
        assert_eq!(first, vec![1], "only `threads` changed");
        let second: Vec<u8> = parse_state(&msgs[1][1..]).unwrap().iter().map(|(i, _)| *i).collect();
        assert_eq!(second, vec![0, 2]);
        for m in &msgs {
            apply_state(&mut mirror, &m[1..]).unwrap();
        }
        assert_eq!(mirror, h.get());
    }

    #[test]
    #[should_panic(expected = "already locked")]
    fn double_lock_is_loud() {
        let h = StateHandle::new(Chat::default(), Rc::new(Outbox::new(0)));
        let _a = h.lock();
        let _b = h.lock();
    }

    /// `read` and `get` while a guard is alive (a guard held across an
    /// `.await` by another call) panic with the lock's message, naming the
    /// cause, not `RefCell`'s; `try_read` answers `None`.
    #[test]
    fn read_and_get_under_a_live_guard_name_the_cause() {
        let h = StateHandle::new(Chat::default(), Rc::new(Outbox::new(0)));
        let guard = h.lock();
        for (what, attempt) in [
            ("read", Box::new(|| drop(h.read(|s| s.user.clone()))) as Box<dyn Fn()>),
            ("get", Box::new(|| drop(h.get()))),
            ("lock", Box::new(|| drop(h.lock()))),
        ] {
            let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt)).unwrap_err();
            let msg = err
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| err.downcast_ref::<&str>().copied())
                .unwrap_or_default();
            assert!(msg.contains("a StateGuard is held across an .await"), "{what}: {msg}");
            assert!(!msg.contains("borrowed"), "{what}: {msg}");
        }
        assert_eq!(h.try_read(|s| s.unread), None);
        drop(guard);
        assert_eq!(h.read(|s| s.unread), 0);
        assert_eq!(h.try_read(|s| s.unread), Some(0));
    }

    #[test]
    fn malformed_state_messages_are_errors() {
        assert!(parse_state(&[]).is_err());
        assert!(parse_state(&[1, 0, 5, 0]).is_err());
        assert!(parse_state(&[1, 0, 9, 0, 0, 0, 1]).is_err());
        assert!(parse_state(&[0, 1]).is_err(), "trailing bytes");
        let mut mirror = Chat::default();
        assert!(apply_state(&mut mirror, &[1, 9, 0, 0, 0, 0]).is_err(), "unknown field index");
    }
}
