//! How the application makes one handler per connection.

use std::any::Any;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use hardlight_core::handshake::UpgradeRequest;
use hardlight_core::{ConnectionState, Features, Outbox, Service, StateHandle};

use crate::events::ConnectionEvents;

/// What a connection factory knows about a new connection.
#[derive(Debug)]
pub struct ConnectContext<'a> {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The upgrade request: path, headers, cookies.
    pub request: &'a UpgradeRequest,
    /// Index of the shard (executor) that owns the connection.
    pub shard: usize,
    pub(crate) outbox: &'a Rc<Outbox>,
    pub(crate) events: &'a ConnectionEvents,
    /// The state handle made by [`Self::state`], for
    /// [`crate::CallContext::state`].
    pub(crate) state: RefCell<Option<Rc<dyn Any>>>,
}

impl ConnectContext<'_> {
    /// Creates this connection's state with its initial value. The client
    /// receives the whole initial state right after the upgrade; afterwards
    /// only changed fields. Handlers reach it through
    /// [`crate::CallContext::state`], or keep the returned handle.
    pub fn state<S: ConnectionState>(&self, initial: S) -> StateHandle<S> {
        let handle = StateHandle::new(initial, self.outbox.clone());
        // Registered with the shard so `Emitter::to_matching` can select
        // recipients by state.
        self.events.attach_state(Rc::new(handle.clone()));
        *self.state.borrow_mut() = Some(Rc::new(handle.clone()));
        handle
    }

    /// This connection's events: topic subscriptions, direct sends, its
    /// slow-consumer policy, and the server-wide emitter.
    pub fn events(&self) -> ConnectionEvents {
        self.events.clone()
    }

    /// This connection's feature set (every method enabled unless changed).
    /// Restrict it here from headers or cookies, and keep the handle in the
    /// handler to change it later (e.g. after authentication).
    pub fn features(&self) -> Features {
        Features::new(self.outbox.clone())
    }
}

/// The application's refusal of a connection, sent as an HTTP response
/// before the upgrade completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status, for example 401 or 403.
    pub status: u16,
    /// Body text explaining what to do.
    pub reason: String,
}

impl Refusal {
    /// A refusal with this status and reason.
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Self { status, reason: reason.into() }
    }
}

/// Makes the per-connection service. Shared by all shards, so it must be
/// `Send + Sync`; the services it makes live on one shard and need not be.
pub trait ConnectionFactory: Send + Sync + 'static {
    /// The service type each connection runs.
    type Service: Service + 'static;

    /// Called once per upgrade request, after protocol validation and before
    /// the 101 response. Returning `Err` refuses the connection.
    fn connect(&self, ctx: &ConnectContext<'_>) -> Result<Self::Service, Refusal>;
}

impl<F, S> ConnectionFactory for F
where
    F: Fn(&ConnectContext<'_>) -> Result<S, Refusal> + Send + Sync + 'static,
    S: Service + 'static,
{
    type Service = S;

    fn connect(&self, ctx: &ConnectContext<'_>) -> Result<S, Refusal> {
        self(ctx)
    }
}
