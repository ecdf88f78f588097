// Items the README's Rust snippets refer to, so that each snippet compiles
// as a doc-test of the `hardlight` crate (facade/src/lib.rs includes the
// README under cfg(doctest)). Each snippet pulls this file in with one
// hidden line; keep it free of inner doc comments (`//!`), which `include!`
// does not accept.

#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterError {
    Underflow { current: u64 },
}

#[hardlight::rpc]
pub trait Counter {
    async fn increment(&self, amount: u64) -> u64;
    async fn decrement(&self, amount: u64) -> Result<u64, CounterError>;
    async fn get(&self) -> u64;
}

pub struct Handler {
    pub value: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Counter for Handler {
    async fn increment(&self, amount: u64) -> u64 {
        self.value.fetch_add(amount, std::sync::atomic::Ordering::Relaxed) + amount
    }
    async fn decrement(&self, amount: u64) -> Result<u64, CounterError> {
        let current = self.value.load(std::sync::atomic::Ordering::Relaxed);
        current.checked_sub(amount).ok_or(CounterError::Underflow { current })
    }
    async fn get(&self) -> u64 {
        self.value.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub thread: String,
    pub user: String,
    pub text: String,
}

#[derive(Clone, Default, PartialEq, hardlight::ConnectionState)]
pub struct ChatState {
    pub threads: Vec<String>,
}

#[hardlight::rpc(events(ChatMessage))]
pub trait Chat {
    async fn send(&self, thread: String, text: String) -> u64;
}

/// A factory for snippets that only need one to exist.
pub fn factory(_: &hardlight::server::ConnectContext<'_>) -> Result<CounterService<Handler>, hardlight::server::Refusal> {
    Ok(CounterService::new(Handler { value: Default::default() }))
}
