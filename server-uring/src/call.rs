//! What a handler can learn about the call it is running, without handles
//! passed through its constructor: [`CallContext::current`].
//!
//! The driver wraps every call's future in [`InCall`], which makes the
//! call's context current on the shard's thread for the duration of each
//! poll of that future (and restores what was current before). A handler
//! therefore sees its own call's context however many calls of the same
//! connection or shard are interleaved. Work the handler hands to another
//! task (`glommio::spawn_local`, `rt::spawn_blocking`) runs outside any call
//! and sees `None`: take what it needs first.

use std::any::Any;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hardlight_core::{ConnectionState, Features, StateHandle};

use crate::events::ConnectionEvents;

/// The connection a call arrived on: the same for all its calls.
pub(crate) struct ConnInfo {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) shard: usize,
    pub(crate) method_names: &'static [&'static str],
    pub(crate) features: Features,
    pub(crate) events: ConnectionEvents,
    /// The `StateHandle<S>` the factory created, if it made one.
    pub(crate) state: Option<Rc<dyn Any>>,
}

thread_local! {
    /// The context of the call being polled on this thread, or null: a
    /// pointer into the [`InCall`] being polled, valid for that poll only
    /// (set and restored around it), so that the per-poll cost is two
    /// `Cell` writes rather than a reference count and a borrow.
    static CURRENT: Cell<*const CallContext> = const { Cell::new(std::ptr::null()) };
    /// Per-thread (per-shard) connection counter, for connection ids.
    static NEXT_CONNECTION: Cell<u64> = const { Cell::new(0) };
}

/// A new connection id: unique within the server process, stable for the
/// connection's life. The shard index is in the top 16 bits, so an id also
/// says which core serves the connection.
pub(crate) fn next_connection_id(shard: usize) -> u64 {
    let n = NEXT_CONNECTION.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    ((shard as u64) << 48) | (n & ((1 << 48) - 1))
}

/// The call a handler is running: its id and method, the connection it came
/// on (id, peer, shard), the client's deadline, and the connection's state,
/// feature and event handles.
///
/// ```no_run
/// use hardlight::server::CallContext;
///
/// # async fn handler() {
/// if let Some(call) = CallContext::current() {
///     tracing::debug!(method = call.method_name(), peer = %call.peer(), "serving");
///     if call.remaining().is_some_and(|left| left.as_millis() < 5) {
///         return; // not worth starting: the client gives up in under 5 ms
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct CallContext {
    conn: Rc<ConnInfo>,
    id: u8,
    method: u16,
    deadline: Option<Instant>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("id", &self.id)
            .field("method", &self.method_name())
            .field("connection_id", &self.conn.id)
            .field("peer", &self.conn.peer)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl CallContext {
    /// The call whose handler is running on this thread, or `None` outside
    /// a handler (including in tasks a handler spawned).
    pub fn current() -> Option<CallContext> {
        let ptr = CURRENT.with(Cell::get);
        // SAFETY: a non-null pointer was set by `InCall::poll` on this thread
        // to its own `cx`, which lives (pinned, unmoved) until that poll
        // returns, and is reset before it returns (also by unwinding); this
        // call runs inside that poll, since nothing else runs on the thread
        // meanwhile and the pointer is thread-local.
        unsafe { ptr.as_ref() }.cloned()
    }

    /// The call id (0 to 255), unique among the connection's calls in flight.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The method's id (its position in the service trait).
    pub fn method(&self) -> u16 {
        self.method
    }

    /// The method's name as written in the service trait.
    pub fn method_name(&self) -> &'static str {
        self.conn.method_names.get(self.method as usize).copied().unwrap_or("?")
    }

    /// The connection's id: unique within this server process for its
    /// lifetime (the shard index in the top 16 bits).
    pub fn connection_id(&self) -> u64 {
        self.conn.id
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.conn.peer
    }

    /// The shard (core) serving the connection.
    pub fn shard(&self) -> usize {
        self.conn.shard
    }

    /// When the client gives up on this call: the timeout it sent
    /// (`CALL_DEADLINE`) counted from when the server read the call. At
    /// that instant the server answers `DeadlineExceeded` and drops the
    /// handler. `None` when the client sent no deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left until [`Self::deadline`] (zero once it passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The connection's state, if the factory created one of type `S`
    /// (`ConnectContext::state`). The same handle the factory returned.
    pub fn state<S: ConnectionState>(&self) -> Option<StateHandle<S>> {
        self.conn.state.as_ref()?.downcast_ref::<StateHandle<S>>().cloned()
    }

    /// The connection's feature set.
    pub fn features(&self) -> Features {
        self.conn.features.clone()
    }

    /// The connection's events: subscriptions, direct sends, the emitter.
    pub fn events(&self) -> ConnectionEvents {
        self.conn.events.clone()
    }
}

/// A call's future, polled with its [`CallContext`] current.
pub(crate) struct InCall<F> {
    cx: CallContext,
    fut: F,
}

impl<F> InCall<F> {
    pub(crate) fn new(conn: &Rc<ConnInfo>, id: u8, method: u16, timeout: Option<Duration>, fut: F) -> Self {
        // One clock read, only for calls that carry a deadline.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        Self { cx: CallContext { conn: conn.clone(), id, method, deadline }, fut }
    }
}

/// Restores the previously current call when a poll ends, even by unwinding.
struct Restore(*const CallContext);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl<F: Future> Future for InCall<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of
        // `self` and `InCall` has no `Drop` impl or `Unpin` impl that would
        // let it move; `cx` (the call context) is not pinned and only cloned.
        let this = unsafe { self.get_unchecked_mut() };
        let _restore = Restore(CURRENT.with(|c| c.replace(&this.cx)));
        // SAFETY: see above; `this.fut` stays where it is for `self`'s life.
        unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx)
    }
}
