//! Event resume: per-topic positions, the server's bounded per-topic
//! history, the client's last-position bookkeeping, and the three messages
//! that carry them (`TOPIC_EVENT`, `GAP`, `RESUME`). Byte layouts are in
//! `docs/PROTOCOL.md`, section "Resume".
//!
//! The guarantee: a client that opted in (upgrade header
//! [`RESUME_HEADER`], or the offered subprotocol [`RESUME_PROTOCOL`] from a
//! web page) receives every event of each topic it is subscribed to
//! exactly once and in order across reconnects, as long as the server still
//! holds the events it missed ([`HistoryLimits`]); otherwise it receives an
//! explicit gap notice naming the topic and, where known, how many events
//! it missed. Never a silent loss. With a broker, the broker gives the
//! positions and keeps the events ([`TopicHistory::broker_cache`],
//! [`Fetched`]), so the same holds across the servers sharing it.
//!
//! A position is `(epoch, offset)`: offsets count a topic's events from 1
//! within one epoch; an epoch is one life of one topic's history (a server
//! restart, or the history forgetting the topic, starts a new one), so a
//! position from another epoch can never be mistaken for a place in this
//! one.

mod conn;
mod fetched;
mod history;
mod positions;
mod wire;

pub use conn::ConnectionResume;
pub use fetched::{Fetched, UNSYNCED_EPOCH};
pub use history::{
    HistoryLimits, Replay, TopicHistory, DEFAULT_HISTORY_AGE, DEFAULT_HISTORY_EVENTS, DEFAULT_HISTORY_TOPICS,
};
pub use positions::{GapNotice, Positions, Received, DEFAULT_MAX_TRACKED_TOPICS};
pub use wire::{
    encode_gap, encode_resume, encode_resume_point, encode_topic_event_header, parse_gap, parse_resume,
    parse_resume_point, parse_topic_event, wire_header_len, Gap, Position, ResumeError, ResumePoint, ResumeRequest,
    TopicEvent, MAX_RESUME_TOPICS, MAX_TOPIC_LEN, MISSED_UNKNOWN, RESUME_HEADER, RESUME_PROTOCOL,
    TOPIC_EVENT_FIXED_LEN, UNKNOWN_POSITION,
};
