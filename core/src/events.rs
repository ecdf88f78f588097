//! Events: typed messages the server pushes to chosen connections.
//!
//! An event is encoded once per emit into a shared, already framed message
//! ([`EncodedEvent`]); every shard and every recipient writes those same
//! bytes. Each connection queues events in its [`crate::outbox::Outbox`],
//! bounded by [`EventLimits`]; a connection that does not read fast enough
//! either loses its oldest queued events (and is told how many, with an
//! `EVENTS_DROPPED` message before the next event it does get) or is closed
//! with code 4001, per [`SlowConsumerPolicy`].
//!
//! Wire formats (see `docs/PROTOCOL.md`):
//! - `EVENT` (kind `0x30`): `[0x30, event type: u16 LE, archive...]`
//! - `EVENTS_DROPPED` (kind `0x31`): `[0x31, count: u32 LE]`

use std::sync::Arc;

use crate::envelope::{KIND_EVENT, KIND_EVENTS_DROPPED};
use crate::error::EncodeError;
use crate::frame::{self, Opcode};
use crate::wire::{AlignedBuf, Wire};

/// Length of the event envelope header before the archive.
pub const EVENT_HEADER_LEN: usize = 3;

/// Default number of events one connection may have queued.
pub const DEFAULT_MAX_QUEUED_EVENTS: usize = 1024;

/// Default bytes of events one connection may have queued.
pub const DEFAULT_MAX_QUEUED_EVENT_BYTES: usize = 1 << 20;

/// A type the server can push.
///
/// Do not implement it by hand: declare the service's event types with the
/// service, `#[hardlight::rpc(events(ChatMessage, Typing))]`, which gives
/// each one its position in that list as `TYPE`, so two event types of one
/// service can never share an id, and folds them into the service's schema
/// fingerprint. The server emits only declared types (at their declared
/// id), and a client built from the same trait routes by the same ids.
pub trait Event: Wire + 'static {
    /// The event type id on the wire: the type's position in `events(...)`.
    const TYPE: u16;
}

/// What happens to a connection whose event queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// Drop the oldest queued events and tell the client how many were lost.
    /// The default: a slow client degrades only itself and always knows.
    #[default]
    DropOldest,
    /// Close the connection with code 4001 (slow consumer).
    Disconnect,
}

/// Bounds on one connection's queued events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Most events queued.
    pub max_events: usize,
    /// Most bytes of events queued.
    pub max_bytes: usize,
    /// What to do when either bound is exceeded.
    pub policy: SlowConsumerPolicy,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_MAX_QUEUED_EVENTS,
            max_bytes: DEFAULT_MAX_QUEUED_EVENT_BYTES,
            policy: SlowConsumerPolicy::default(),
        }
    }
}

/// An event encoded once and framed as a server-to-client WebSocket message,
/// shared by every recipient (cheap to clone, `Send`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    frame: Arc<[u8]>,
    ty: u16,
}

impl EncodedEvent {
    /// Encodes `event` into a framed `EVENT` message.
    pub fn new<E: Event>(event: &E) -> Result<Self, EncodeError> {
        let mut scratch = AlignedBuf::new();
        event.encode_into(&mut scratch)?;
        Ok(Self::from_archive(E::TYPE, &scratch))
    }

    /// Frames an already encoded archive as event type `ty`.
    pub fn from_archive(ty: u16, archive: &[u8]) -> Self {
        let mut f = Vec::with_capacity(frame::MAX_HEADER_LEN + EVENT_HEADER_LEN + archive.len());
        frame::write_header(&mut f, true, Opcode::Binary, EVENT_HEADER_LEN + archive.len(), None);
        f.push(KIND_EVENT);
        f.extend_from_slice(&ty.to_le_bytes());
        f.extend_from_slice(archive);
        Self { frame: f.into(), ty }
    }

    /// Frames an archive as a `TOPIC_EVENT` of `topic` at `position` (for
    /// clients that opted in to resume; see [`crate::resume`]). `topic` must
    /// be at most [`crate::resume::MAX_TOPIC_LEN`] bytes.
    pub fn positioned(ty: u16, topic: &str, position: crate::resume::Position, archive: &[u8]) -> Self {
        let mut msg = Vec::with_capacity(crate::resume::wire_header_len(topic) + archive.len());
        crate::resume::encode_topic_event_header(&mut msg, ty, topic, position);
        msg.extend_from_slice(archive);
        let mut f = Vec::with_capacity(frame::MAX_HEADER_LEN + msg.len());
        frame::write_frame(&mut f, Opcode::Binary, &msg);
        Self { frame: f.into(), ty }
    }

    /// The event type id.
    pub fn event_type(&self) -> u16 {
        self.ty
    }

    /// The whole framed message.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// The event's archive: the framed message without its WebSocket header
    /// and `EVENT` envelope header.
    pub fn archive(&self) -> &[u8] {
        // Server frames are unmasked: 2, 4 or 10 header bytes by length form.
        let header_len = match self.frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let msg = &self.frame[header_len..];
        match msg[0] {
            KIND_EVENT => &msg[EVENT_HEADER_LEN..],
            crate::envelope::KIND_TOPIC_EVENT => {
                let topic_len = msg[crate::resume::TOPIC_EVENT_FIXED_LEN - 1] as usize;
                &msg[crate::resume::TOPIC_EVENT_FIXED_LEN + topic_len..]
            }
            _ => &[],
        }
    }
}

/// Splits the body of an `EVENT` message (after the kind byte) into its type and archive.
pub fn parse_event(body: &[u8]) -> Option<(u16, &[u8])> {
    (body.len() >= 2).then(|| (u16::from_le_bytes([body[0], body[1]]), &body[2..]))
}

/// Frames an `EVENTS_DROPPED` message.
pub fn write_events_dropped(out: &mut Vec<u8>, count: u32) {
    let mut msg = [0u8; 5];
    msg[0] = KIND_EVENTS_DROPPED;
    msg[1..].copy_from_slice(&count.to_le_bytes());
    frame::write_frame(out, Opcode::Binary, &msg);
}

/// Parses the body of an `EVENTS_DROPPED` message.
pub fn parse_events_dropped(body: &[u8]) -> Option<u32> {
    (body.len() == 4).then(|| u32::from_le_bytes([body[0], body[1], body[2], body[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode_server, ServerMessage};

    #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    #[rkyv(crate = rkyv)]
    struct Ping {
        n: u32,
    }
    impl Event for Ping {
        const TYPE: u16 = 0x0102;
    }

    #[test]
    fn event_envelope_round_trip() {
        let e = EncodedEvent::new(&Ping { n: 9 }).unwrap();
        let h = frame::parse_header(e.frame(), frame::Role::Client, usize::MAX).unwrap().unwrap();
        let msg = &e.frame()[h.header_len..];
        assert_eq!(&msg[..3], &[0x30, 0x02, 0x01]);
        let ServerMessage::Other { kind: KIND_EVENT, body } = decode_server(msg).unwrap() else { panic!() };
        let (ty, archive) = parse_event(body).unwrap();
        assert_eq!(ty, 0x0102);
        let mut buf = AlignedBuf::new();
        assert_eq!(Ping::decode(crate::wire::align_into(&mut buf, archive)).unwrap(), Ping { n: 9 });
    }

    #[test]
    fn archive_is_the_bytes_after_both_headers_for_every_length_form() {
        for len in [0usize, 1, 122, 123, 200, 65_532, 65_533, 70_000] {
            let archive: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let e = EncodedEvent::from_archive(9, &archive);
            assert_eq!(e.archive(), &archive[..], "archive of {len} bytes");
            assert_eq!(e.event_type(), 9);
            let p = EncodedEvent::positioned(9, "topic", crate::resume::Position { epoch: 1, offset: 2 }, &archive);
            assert_eq!(p.archive(), &archive[..], "positioned archive of {len} bytes");
        }
    }

    #[test]
    fn dropped_notice_round_trip() {
        let mut out = Vec::new();
        write_events_dropped(&mut out, 70_000);
        assert_eq!(out, vec![0x82, 5, 0x31, 0x70, 0x11, 0x01, 0x00]);
        assert_eq!(parse_events_dropped(&out[3..]), Some(70_000));
        assert_eq!(parse_events_dropped(&out[3..6]), None);
    }
}
