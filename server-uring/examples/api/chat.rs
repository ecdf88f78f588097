//! The chat service shared by the chat server and client examples.

/// One chat message, as persisted and as pushed to subscribers.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Position in the server's log, from 1.
    pub seq: u64,
    /// The thread it was posted to.
    pub thread: String,
    /// Who posted it.
    pub user: String,
    /// The text.
    pub text: String,
}

/// Per-connection state: who the user is and which threads they joined
/// (only those may be posted to).
#[derive(Debug, Clone, Default, PartialEq, Eq, hardlight::ConnectionState)]
pub struct ChatState {
    /// The name given at `join`.
    pub user: String,
    /// Threads this connection receives messages from.
    pub threads: Vec<String>,
}

/// Why a chat call failed.
#[hardlight::wire]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    /// Post only to threads you joined.
    NotJoined,
    /// Messages are limited to this many bytes.
    TooLong(u32),
    /// The message could not be persisted; it was not sent.
    Storage(String),
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotJoined => f.write_str("join the thread first"),
            Self::TooLong(max) => write!(f, "message longer than {max} bytes"),
            Self::Storage(e) => write!(f, "could not store the message: {e}"),
        }
    }
}

/// A multi-thread chat.
#[hardlight::rpc(events(ChatMessage))]
pub trait Chat {
    /// Joins `thread` as `user`; returns the thread's persisted history.
    async fn join(&self, user: String, thread: String) -> Vec<ChatMessage>;
    /// Stops receiving `thread`.
    async fn leave(&self, thread: String);
    /// Persists the message, then pushes it to every connection following
    /// `thread` on every core (and, with a broker, on every chat server).
    /// Returns its sequence number on this server's log.
    async fn send_message(&self, thread: String, text: String) -> Result<u64, ChatError>;
    /// The persisted history of `thread`. A read, so `#[idempotent]`:
    /// reconnecting clients opened with the schema (the Rust client with
    /// `ClientConfig::schema`, the generated TypeScript module) send it
    /// again after a drop instead of failing it.
    #[idempotent]
    async fn history(&self, thread: String) -> Vec<ChatMessage>;
}
