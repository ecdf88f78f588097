//! The payload HardLight servers exchange through a message broker (Redis
//! pub/sub) so that a topic event emitted on one server reaches subscribers
//! on every server. Not part of the client protocol: only servers of one
//! deployment read it.
//!
//! Layout (see `docs/PROTOCOL.md`, "Broker bridge"), integers little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | magic `68 6C` (`"hl"`) |
//! | 2 | 1 | format version, `1` |
//! | 3 | 8 | origin id: the publishing server's bridge, u64 |
//! | 11 | 2 | event type, u16 |
//! | 13 | rest | the event's rkyv archive, exactly as in an `EVENT` message |

use crate::events::EncodedEvent;

/// First two bytes of every broker payload.
pub const BROKER_MAGIC: [u8; 2] = *b"hl";

/// The payload format version this crate writes and reads.
pub const BROKER_FORMAT_VERSION: u8 = 1;

/// Bytes before the archive.
pub const BROKER_HEADER_LEN: usize = 13;

/// A broker payload, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerMessage<'a> {
    /// The publishing bridge's origin id.
    pub origin: u64,
    /// The event type.
    pub event_type: u16,
    /// The event's archive.
    pub archive: &'a [u8],
}

impl BrokerMessage<'_> {
    /// The event, framed for clients (one copy of the archive).
    pub fn to_event(&self) -> EncodedEvent {
        EncodedEvent::from_archive(self.event_type, self.archive)
    }
}

/// Why a payload read from the broker was not a HardLight event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BrokerDecodeError {
    /// Shorter than the header.
    #[error("broker payload of {0} bytes is shorter than the {BROKER_HEADER_LEN}-byte header")]
    Truncated(usize),
    /// Does not start with the magic bytes.
    #[error("broker payload does not start with the HardLight magic")]
    BadMagic,
    /// A format version this build does not read.
    #[error("broker payload format version {0} is not supported (this build reads {BROKER_FORMAT_VERSION})")]
    Version(u8),
}

/// Writes the payload for `event` from bridge `origin` into `out` (cleared first).
pub fn encode_broker_message(out: &mut Vec<u8>, origin: u64, event: &EncodedEvent) {
    let archive = event.archive();
    out.clear();
    out.reserve(BROKER_HEADER_LEN + archive.len());
    out.extend_from_slice(&BROKER_MAGIC);
    out.push(BROKER_FORMAT_VERSION);
    out.extend_from_slice(&origin.to_le_bytes());
    out.extend_from_slice(&event.event_type().to_le_bytes());
    out.extend_from_slice(archive);
}

/// Splits a payload read from the broker. The archive is not validated
/// here: the receiving clients validate every event archive, as they do for
/// events from their own server.
pub fn decode_broker_message(payload: &[u8]) -> Result<BrokerMessage<'_>, BrokerDecodeError> {
    if payload.len() < BROKER_HEADER_LEN {
        return Err(BrokerDecodeError::Truncated(payload.len()));
    }
    if payload[..2] != BROKER_MAGIC {
        return Err(BrokerDecodeError::BadMagic);
    }
    if payload[2] != BROKER_FORMAT_VERSION {
        return Err(BrokerDecodeError::Version(payload[2]));
    }
    let origin = u64::from_le_bytes(payload[3..11].try_into().expect("8 bytes"));
    let event_type = u16::from_le_bytes([payload[11], payload[12]]);
    Ok(BrokerMessage { origin, event_type, archive: &payload[BROKER_HEADER_LEN..] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_magic_version_origin_type_archive() {
        let event = EncodedEvent::from_archive(0x0102, &[0xAA, 0xBB]);
        let mut out = vec![0xFF; 3];
        encode_broker_message(&mut out, 0x1122_3344_5566_7788, &event);
        assert_eq!(out, vec![0x68, 0x6C, 0x01, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x02, 0x01, 0xAA, 0xBB]);
        let m = decode_broker_message(&out).unwrap();
        assert_eq!(m, BrokerMessage { origin: 0x1122_3344_5566_7788, event_type: 0x0102, archive: &[0xAA, 0xBB] });
        assert_eq!(m.to_event(), event, "re-framed byte for byte as the publisher framed it");
    }

    #[test]
    fn large_archives_round_trip() {
        let archive: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let event = EncodedEvent::from_archive(7, &archive);
        let mut out = Vec::new();
        encode_broker_message(&mut out, 1, &event);
        assert_eq!(out.len(), BROKER_HEADER_LEN + archive.len());
        assert_eq!(decode_broker_message(&out).unwrap().to_event(), event);
    }

    #[test]
    fn foreign_or_short_payloads_are_refused() {
        assert_eq!(decode_broker_message(b""), Err(BrokerDecodeError::Truncated(0)));
        assert_eq!(decode_broker_message(b"hl\x01abcdefgh\x01"), Err(BrokerDecodeError::Truncated(12)));
        assert_eq!(decode_broker_message(b"{\"json\": \"message\"}"), Err(BrokerDecodeError::BadMagic));
        assert_eq!(decode_broker_message(b"hl\x02abcdefgh\x01\x00"), Err(BrokerDecodeError::Version(2)));
        let empty = decode_broker_message(b"hl\x01abcdefgh\x01\x00").unwrap();
        assert!(empty.archive.is_empty());
    }
}
