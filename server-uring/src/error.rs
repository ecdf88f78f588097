//! Errors starting or running the server.

use std::net::SocketAddr;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another socket (often a stale server process) holds the address.
    /// glommio binds with SO_REUSEPORT, which would otherwise let a second
    /// server share the port silently and receive half the connections.
    #[error("address {0} is already in use (is another server still running?)")]
    AddressInUse(SocketAddr),
    /// Binding or configuring the listener failed.
    #[error("could not bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration asks for something impossible.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// A shard's executor could not start (io_uring unavailable, CPU not
    /// online, memlock limit too low, ...).
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart {
        /// Shard index.
        shard: usize,
        /// What glommio reported.
        reason: String,
    },
    /// The signal handlers of [`crate::ServerHandle::run_until_signal`]
    /// could not be installed (or their thread could not start).
    #[error("cannot install the SIGTERM/SIGINT handlers: {0}")]
    Signals(std::io::Error),
}
