//! Error and close codes that travel on the wire, and the errors a caller sees.
//!
//! Every way a call or a connection can fail has exactly one code here, so a
//! port in another language can map them one to one (see `docs/PROTOCOL.md`).

use std::fmt;

/// Why the server refused or failed one call. Sent in a `CALL_ERROR` envelope;
/// the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CallErrorCode {
    /// The method id is not in the service's method table.
    UnknownMethod = 1,
    /// The input archive failed validation or did not match the method's input type.
    InvalidInput = 2,
    /// The call id is already in use by a call that has not been answered yet.
    DuplicateCallId = 3,
    /// The handler panicked while running this call; no output exists.
    HandlerPanicked = 4,
    /// The method exists but is not enabled for this connection's feature set.
    MethodDisabled = 5,
    /// The server is shutting down and does not start new calls.
    ShuttingDown = 6,
    /// The handler's output could not be encoded.
    EncodeFailed = 7,
    /// The client cancelled the call (`CANCEL`); the handler was dropped
    /// where it stood. Frees the call id on both sides.
    Cancelled = 8,
    /// The deadline the client sent with the call (`CALL_DEADLINE`) passed
    /// before the handler finished; the handler was dropped.
    DeadlineExceeded = 9,
}

impl CallErrorCode {
    /// Decodes a wire byte; unknown codes are kept as `None` so that newer
    /// servers can add codes without breaking older clients' parsing.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::UnknownMethod,
            2 => Self::InvalidInput,
            3 => Self::DuplicateCallId,
            4 => Self::HandlerPanicked,
            5 => Self::MethodDisabled,
            6 => Self::ShuttingDown,
            7 => Self::EncodeFailed,
            8 => Self::Cancelled,
            9 => Self::DeadlineExceeded,
            _ => return None,
        })
    }

    /// A short description suitable for logs and error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::UnknownMethod => "unknown method",
            Self::InvalidInput => "input failed validation",
            Self::DuplicateCallId => "call id already in flight",
            Self::HandlerPanicked => "handler panicked",
            Self::MethodDisabled => "method disabled for this connection",
            Self::ShuttingDown => "server shutting down",
            Self::EncodeFailed => "server could not encode the output",
            Self::Cancelled => "cancelled by the client",
            Self::DeadlineExceeded => "deadline exceeded before the handler finished",
        }
    }
}

impl fmt::Display for CallErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// WebSocket close codes HardLight sends, standard ones and its own 4xxx range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1000: normal closure.
    Normal,
    /// 1001: the server is shutting down.
    GoingAway,
    /// 1002: the peer broke the WebSocket framing rules.
    ProtocolError,
    /// 1003: the peer sent a text frame; HardLight is binary only.
    UnsupportedData,
    /// 1007: a close frame carried invalid UTF-8 in its reason.
    InvalidPayload,
    /// 1008: policy violation (for example an Origin not allowed).
    PolicyViolation,
    /// 1009: a message exceeded the size limit.
    MessageTooBig,
    /// 1011: the server hit an internal error.
    InternalError,
    /// 4000: a binary message was not a valid HardLight envelope.
    MalformedEnvelope,
    /// 4001: the peer fell too far behind reading its outbound queue.
    SlowConsumer,
    /// 4002: nothing arrived from the peer within the idle timeout, not
    /// even a pong to the server's keepalive pings.
    IdleTimeout,
    /// 4003: a message (or frame) the peer began did not arrive in full
    /// within the message timeout.
    MessageTimeout,
    /// 4004: the shard's budget for bytes held in partial messages and
    /// outbound queues ran out, and this connection's growth took it there.
    OverBudget,
    /// Any other code received from a peer.
    Other(u16),
}

impl CloseCode {
    /// The numeric code on the wire.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::UnsupportedData => 1003,
            Self::InvalidPayload => 1007,
            Self::PolicyViolation => 1008,
            Self::MessageTooBig => 1009,
            Self::InternalError => 1011,
            Self::MalformedEnvelope => 4000,
            Self::SlowConsumer => 4001,
            Self::IdleTimeout => 4002,
            Self::MessageTimeout => 4003,
            Self::OverBudget => 4004,
            Self::Other(c) => c,
        }
    }

    /// Maps a received numeric code back to the enum.
    pub fn from_u16(c: u16) -> Self {
        match c {
            1000 => Self::Normal,
            1001 => Self::GoingAway,
            1002 => Self::ProtocolError,
            1003 => Self::UnsupportedData,
            1007 => Self::InvalidPayload,
            1008 => Self::PolicyViolation,
            1009 => Self::MessageTooBig,
            1011 => Self::InternalError,
            4000 => Self::MalformedEnvelope,
            4001 => Self::SlowConsumer,
            4002 => Self::IdleTimeout,
            4003 => Self::MessageTimeout,
            4004 => Self::OverBudget,
            other => Self::Other(other),
        }
    }
}

/// What a client sees when a call does not produce the method's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The server answered the call with a protocol-level error.
    #[error("server rejected the call: {code}{}", if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Rejected {
        /// Which rule the call broke.
        code: CallErrorCode,
        /// Server-supplied detail, possibly empty.
        detail: String,
    },
    /// The server sent an error code this client does not know.
    #[error("server rejected the call with unknown error code {0}")]
    UnknownErrorCode(u8),
    /// The connection closed before the response arrived; the call may or may
    /// not have run on the server.
    #[error("connection closed before the call was answered: {0}")]
    Disconnected(String),
    /// No response arrived within the per-call timeout. The call may still run
    /// on the server; its id stays reserved until the server answers.
    #[error("call timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// All 256 call ids were in flight and this many calls were already
    /// waiting for one; the call was not sent. Retry later, or give the
    /// load more connections.
    #[error("too many calls waiting for a free call id (limit {0}); the call was not sent")]
    TooManyWaiting(usize),
    /// The call would be larger than the message size limit the server
    /// announced, so it was not sent (the server would have closed the
    /// connection with 1009). The connection stays open; send less per call.
    #[error("call of {size} bytes exceeds the server's message size limit of {limit} bytes; not sent")]
    TooLarge {
        /// The call message's size: envelope header plus input archive.
        size: usize,
        /// The server's announced limit.
        limit: usize,
    },
    /// The input could not be encoded.
    #[error("could not encode the call input: {0}")]
    Encode(String),
    /// The response did not validate as the method's output type; client and
    /// server probably disagree on the service definition.
    #[error("response failed validation (client and server service definitions differ?): {0}")]
    InvalidResponse(String),
}

/// A received archive failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("archive failed validation: {0}")]
pub struct DecodeError(pub String);

/// A value could not be serialized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value could not be encoded: {0}")]
pub struct EncodeError(pub String);
