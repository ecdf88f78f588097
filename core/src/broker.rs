//! The payload HardLight servers exchange through a message broker (Redis)
//! so that a topic event emitted on one server reaches subscribers on every
//! server, at the same position everywhere. Not part of the client
//! protocol: only servers of one deployment read it.
//!
//! Layout (see `docs/PROTOCOL.md`, "Broker bridge"), integers little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 2 | magic `68 6C` (`"hl"`) |
//! | 2 | 1 | format version, `2` |
//! | 3 | 8 | origin id: the publishing server's bridge, u64 |
//! | 11 | 2 | event type, u16 |
//! | 13 | 8 | epoch of the topic's position, u64 |
//! | 21 | 8 | offset of the topic's position, u64 |
//! | 29 | rest | the event's rkyv archive, exactly as in an `EVENT` message |
//!
//! The publisher writes only the first 13 bytes ([`encode_broker_prefix`])
//! and the archive: the broker itself inserts the position, in the same
//! atomic step that numbers the event and stores it in the topic's log, so
//! that every server sees one order and one numbering of each topic.
//! Version 2 replaced version 1 (no position), whose events every server
//! numbered on its own; the two cannot be mixed in one deployment.

use crate::events::EncodedEvent;
use crate::resume::Position;

/// First two bytes of every broker payload.
pub const BROKER_MAGIC: [u8; 2] = *b"hl";

/// The payload format version this crate writes and reads.
pub const BROKER_FORMAT_VERSION: u8 = 2;

/// Bytes the publisher writes before the archive (magic, version, origin,
/// event type); the broker appends the position after them.
pub const BROKER_PREFIX_LEN: usize = 13;

/// Bytes before the archive in a positioned payload.
pub const BROKER_HEADER_LEN: usize = BROKER_PREFIX_LEN + 16;

/// A broker payload, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerMessage<'a> {
    /// The publishing bridge's origin id.
    pub origin: u64,
    /// The event type.
    pub event_type: u16,
    /// The topic position the broker gave the event.
    pub position: Position,
    /// The event's archive.
    pub archive: &'a [u8],
}

impl BrokerMessage<'_> {
    /// The event, framed for clients that do not resume (one copy of the archive).
    pub fn to_event(&self) -> EncodedEvent {
        EncodedEvent::from_archive(self.event_type, self.archive)
    }

    /// The event framed as a `TOPIC_EVENT` of `topic` at its position, for
    /// clients that resume.
    pub fn to_positioned(&self, topic: &str) -> EncodedEvent {
        EncodedEvent::positioned(self.event_type, topic, self.position, self.archive)
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
    #[error(
        "broker payload format version {0} is not supported (this build reads {BROKER_FORMAT_VERSION}); \
         every server sharing a broker prefix must run a release with the same broker format"
    )]
    Version(u8),
}

/// Writes what the publisher sends for `event` from bridge `origin` into
/// `out` (cleared first): magic, version, origin and type. The broker
/// appends the position and the archive.
pub fn encode_broker_prefix(out: &mut Vec<u8>, origin: u64, event: &EncodedEvent) {
    out.clear();
    out.extend_from_slice(&BROKER_MAGIC);
    out.push(BROKER_FORMAT_VERSION);
    out.extend_from_slice(&origin.to_le_bytes());
    out.extend_from_slice(&event.event_type().to_le_bytes());
}

/// Writes the whole positioned payload, as the broker stores and publishes
/// it (the broker builds it itself; this is for tests and tools).
pub fn encode_broker_message(out: &mut Vec<u8>, origin: u64, position: Position, event: &EncodedEvent) {
    let archive = event.archive();
    encode_broker_prefix(out, origin, event);
    out.reserve(16 + archive.len());
    out.extend_from_slice(&position.epoch.to_le_bytes());
    out.extend_from_slice(&position.offset.to_le_bytes());
    out.extend_from_slice(archive);
}

/// Splits a payload read from the broker. The archive is not validated
/// here: the receiving clients validate every event archive, as they do for
/// events from their own server.
pub fn decode_broker_message(payload: &[u8]) -> Result<BrokerMessage<'_>, BrokerDecodeError> {
    if payload.len() >= 3 && payload[..2] == BROKER_MAGIC && payload[2] != BROKER_FORMAT_VERSION {
        return Err(BrokerDecodeError::Version(payload[2]));
    }
    if payload.len() < BROKER_HEADER_LEN {
        return Err(BrokerDecodeError::Truncated(payload.len()));
    }
    if payload[..2] != BROKER_MAGIC {
        return Err(BrokerDecodeError::BadMagic);
    }
    let u64_at = |i: usize| u64::from_le_bytes(payload[i..i + 8].try_into().expect("8 bytes"));
    let origin = u64_at(3);
    let event_type = u16::from_le_bytes([payload[11], payload[12]]);
    let position = Position { epoch: u64_at(13), offset: u64_at(21) };
    Ok(BrokerMessage { origin, event_type, position, archive: &payload[BROKER_HEADER_LEN..] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_magic_version_origin_type_position_archive() {
        let event = EncodedEvent::from_archive(0x0102, &[0xAA, 0xBB]);
        let mut out = vec![0xFF; 3];
        let at = Position { epoch: 0x0A0B, offset: 7 };
        encode_broker_message(&mut out, 0x1122_3344_5566_7788, at, &event);
        let mut want = vec![0x68, 0x6C, 0x02, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x02, 0x01];
        want.extend_from_slice(&[0x0B, 0x0A, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0xAA, 0xBB]);
        assert_eq!(out, want);
        let m = decode_broker_message(&out).unwrap();
        assert_eq!(
            m,
            BrokerMessage { origin: 0x1122_3344_5566_7788, event_type: 0x0102, position: at, archive: &[0xAA, 0xBB] }
        );
        assert_eq!(m.to_event(), event, "re-framed byte for byte as the publisher framed it");
        assert_eq!(m.to_positioned("t"), EncodedEvent::positioned(0x0102, "t", at, &[0xAA, 0xBB]));
        let mut prefix = Vec::new();
        encode_broker_prefix(&mut prefix, 0x1122_3344_5566_7788, &event);
        assert_eq!(prefix, out[..BROKER_PREFIX_LEN], "the publisher's part is the payload's first 13 bytes");
    }

    #[test]
    fn large_archives_round_trip() {
        let archive: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let event = EncodedEvent::from_archive(7, &archive);
        let mut out = Vec::new();
        encode_broker_message(&mut out, 1, Position { epoch: 1, offset: 1 }, &event);
        assert_eq!(out.len(), BROKER_HEADER_LEN + archive.len());
        assert_eq!(decode_broker_message(&out).unwrap().to_event(), event);
    }

    #[test]
    fn foreign_short_or_old_payloads_are_refused() {
        assert_eq!(decode_broker_message(b""), Err(BrokerDecodeError::Truncated(0)));
        assert_eq!(decode_broker_message(&[b'h', b'l', 2, 0, 0]), Err(BrokerDecodeError::Truncated(5)));
        assert_eq!(decode_broker_message(b"{\"json\": \"message\", \"long\": 1}"), Err(BrokerDecodeError::BadMagic));
        // A version-1 payload (no position) from an older server.
        assert_eq!(decode_broker_message(b"hl\x01abcdefgh\x01\x00"), Err(BrokerDecodeError::Version(1)));
        let mut empty = vec![b'h', b'l', 2];
        empty.extend_from_slice(&[0; 26]);
        assert!(decode_broker_message(&empty).unwrap().archive.is_empty());
    }
}
