//! State diffs: the [`ConnectionState`] trait a state struct derives, and
//! the `STATE` message that carries changed fields, as values.
//!
//! Both sides use this module: the server writes diffs with
//! [`StateWriter`] (through the derived `write_diff`), the client session
//! applies them with [`apply_state`]. The server-side handle that owns a
//! live connection's value and queues diffs on release is
//! [`crate::state::StateHandle`]; keeping the two apart lets the outbox and
//! the client session use the wire form without the handle.
//!
//! Wire format of `STATE` (kind `0x20`), see `docs/PROTOCOL.md`:
//! `[0x20, n, (field_index: u8, len: u32 LE, archive[len]) x n]`.

use crate::envelope::KIND_STATE;
use crate::error::{DecodeError, EncodeError};
use crate::wire::{AlignedBuf, Wire};

/// Most fields a state struct may have (field indexes are one byte).
pub const MAX_STATE_FIELDS: usize = 255;

/// A per-connection state struct. Derive it; do not implement by hand.
///
/// Every field must be [`Wire`] (archivable), `PartialEq` (to find what
/// changed) and `Clone` (the value at lock time is kept to diff against).
pub trait ConnectionState: Clone + 'static {
    /// Field names, indexed by field index (declaration order).
    const FIELDS: &'static [&'static str];

    /// Writes every field that differs from `before`, or every field when
    /// `before` is `None` (the initial state).
    fn write_diff(&self, before: Option<&Self>, w: &mut StateWriter) -> Result<(), EncodeError>;

    /// Applies one received field to this (client-side mirror) value.
    fn apply_field(&mut self, index: u8, archive: &[u8]) -> Result<(), DecodeError>;
}

/// Builds one `STATE` message from changed fields. Used by derived code.
#[derive(Debug, Default)]
pub struct StateWriter {
    msg: Vec<u8>,
    scratch: AlignedBuf,
    count: u8,
}

impl StateWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Clears the writer for a new message.
    pub fn reset(&mut self) {
        self.msg.clear();
        self.count = 0;
    }

    /// Appends field `index` with `value`.
    pub fn field<T: Wire>(&mut self, index: u8, value: &T) -> Result<(), EncodeError> {
        if self.msg.is_empty() {
            self.msg.extend_from_slice(&[KIND_STATE, 0]);
        }
        value.encode_into(&mut self.scratch)?;
        let len = u32::try_from(self.scratch.len()).map_err(|_| EncodeError("state field larger than 4 GiB".into()))?;
        self.msg.push(index);
        self.msg.extend_from_slice(&len.to_le_bytes());
        self.msg.extend_from_slice(&self.scratch);
        self.count += 1;
        self.msg[1] = self.count;
        Ok(())
    }

    /// The message, or `None` if no field was written (nothing changed).
    pub fn message(&self) -> Option<&[u8]> {
        (self.count > 0).then_some(&self.msg[..])
    }

    /// Number of fields written.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no field was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A malformed `STATE` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed state message: {0}")]
pub struct StateFormatError(pub &'static str);

/// Splits the body of a `STATE` message (after the kind byte) into
/// `(field index, archive bytes)` pairs. Validates the framing, not the archives.
pub fn parse_state(body: &[u8]) -> Result<Vec<(u8, &[u8])>, StateFormatError> {
    let (&n, mut rest) = body.split_first().ok_or(StateFormatError("empty"))?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if rest.len() < 5 {
            return Err(StateFormatError("field header truncated"));
        }
        let index = rest[0];
        let len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        rest = &rest[5..];
        if rest.len() < len {
            return Err(StateFormatError("field archive truncated"));
        }
        out.push((index, &rest[..len]));
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(StateFormatError("trailing bytes"));
    }
    Ok(out)
}

/// Applies a `STATE` message body to a mirror, field by field.
pub fn apply_state<S: ConnectionState>(state: &mut S, body: &[u8]) -> Result<(), DecodeError> {
    let mut buf = AlignedBuf::new();
    for (index, archive) in parse_state(body).map_err(|e| DecodeError(e.to_string()))? {
        state.apply_field(index, crate::wire::align_into(&mut buf, archive))?;
    }
    Ok(())
}
