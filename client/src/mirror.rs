//! The read-only mirror of a connection's server-side state.

use std::sync::Arc;

use hardlight_core::{CallError, ConnectionState, DecodeError};
use tokio::sync::watch;

use crate::shared::Shared;

/// A read-only, always-current view of the connection's server-side state.
///
/// Clients never write state: the server owns it and pushes changes, which
/// the core's [`hardlight_core::session::ClientSession`] applies in order.
pub struct StateMirror<S> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: watch::Receiver<u64>,
    pub(crate) _state: std::marker::PhantomData<fn() -> S>,
}

impl<S: ConnectionState + Default> StateMirror<S> {
    /// The current value: `S::default()` with every field the server sent
    /// applied. Fails if a field does not validate as its declared type
    /// (client and server disagree on the state struct).
    pub fn get(&self) -> Result<S, DecodeError> {
        self.shared.lock().session.state::<S>()
    }

    /// Waits for the next change (state, feature set, or close), then
    /// returns the current value. Returns `Err(Disconnected)` once the
    /// connection has closed.
    pub async fn changed(&mut self) -> Result<S, CallError> {
        if self.rx.changed().await.is_err() || self.shared.close_reason().is_some() {
            return Err(CallError::Disconnected(self.shared.disconnect_reason()));
        }
        self.get().map_err(|e| CallError::InvalidResponse(e.0))
    }
}
