//! The counter service shared by the server and client examples.

/// Errors the counter reports to callers, typed on both sides.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterError {
    /// The counter would go below zero.
    Underflow {
        /// The value before the refused decrement.
        current: u64,
    },
}

impl std::fmt::Display for CounterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Underflow { current } => write!(f, "cannot go below zero (counter is {current})"),
        }
    }
}

/// A counter shared by every connection.
#[hardlight::rpc]
pub trait Counter {
    /// Adds `amount` and returns the new value.
    async fn increment(&self, amount: u64) -> u64;
    /// Subtracts `amount` and returns the new value; refuses to go below zero.
    async fn decrement(&self, amount: u64) -> Result<u64, CounterError>;
    /// Returns the current value.
    async fn get(&self) -> u64;
}
