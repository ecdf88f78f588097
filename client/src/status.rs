//! What the application can watch about a connection's transport.

/// Where a [`crate::Connection`] is. Watch it with
/// [`crate::Connection::watch_status`]; wait for the end with
/// [`crate::Connection::closed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Opening the first transport (TCP, upgrade, initial state, on-connect hook).
    Connecting,
    /// Ready: calls go out at once.
    Connected,
    /// The transport dropped; waiting `attempt`'s backoff delay or opening a
    /// new one. Calls wait or fail per [`crate::ClientConfig::wait_while_disconnected`].
    Reconnecting {
        /// Failed attempts since the last ready transport (0: the first retry).
        attempt: u32,
    },
    /// Closed for good (the application closed it, the server closed it and
    /// reconnect is off, or the first connection failed).
    Closed,
}
