//! The byte layouts of `TOPIC_EVENT`, `GAP` and `RESUME`, and their bounds.
//! Every parser here takes untrusted bytes and fails with a typed error or
//! `None`, never a panic, and allocates at most what the bounds allow.

use crate::envelope::{KIND_GAP, KIND_RESUME, KIND_RESUME_POINT, KIND_TOPIC_EVENT};

/// Upgrade request header by which a client opts in to resume: the server
/// then sends it topic events as `TOPIC_EVENT` (with their position) instead
/// of `EVENT`, and expects `RESUME` as its first message. Value: `1`.
pub const RESUME_HEADER: &str = "hardlight-resume";

/// The same opt-in as an offered WebSocket subprotocol, for web pages: the
/// browser's WebSocket API lets a page choose only the URL and the offered
/// subprotocols, so it cannot send [`RESUME_HEADER`]. The server reads it
/// when the header is absent and never selects it. A page cannot read the
/// `101`'s headers either, so the acknowledgement is in the stream: on a
/// connection that resumes, the initial `RESUME_POINT` arrives before the
/// initial state and feature set (docs/PROTOCOL.md sections 2 and 9.1).
pub const RESUME_PROTOCOL: &str = "hl-resume.1";

/// Most topics one `RESUME` may name. A larger request is refused (the
/// connection closes with 4000): the server holds each position until the
/// connection subscribes, so the count bounds its memory per connection.
pub const MAX_RESUME_TOPICS: usize = 64;

/// Longest topic name, in bytes, that a `RESUME`, `TOPIC_EVENT` or `GAP`
/// can carry (a u8 length). Events of longer topics are sent as plain
/// `EVENT`s, without a position.
pub const MAX_TOPIC_LEN: usize = 255;

/// `missed` value of a `GAP` whose count is not known (another epoch).
pub const MISSED_UNKNOWN: u64 = u64::MAX;

/// The position of a `GAP` sent when the server does not know where the
/// client stands in the topic (it had received nothing of it here): epoch
/// 0, which no history or broker gives out. The client reports the loss and
/// forgets its position for the topic; the next event sets a new one.
pub const UNKNOWN_POSITION: Position = Position { epoch: 0, offset: 0 };

/// Where a client stands in one topic: the last event it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic history's epoch.
    pub epoch: u64,
    /// The last offset received (0: none yet in this epoch).
    pub offset: u64,
}

/// A `TOPIC_EVENT` message, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicEvent<'a> {
    /// Event type id.
    pub ty: u16,
    /// The topic.
    pub topic: &'a str,
    /// Its position in the topic.
    pub position: Position,
    /// The event's archive.
    pub archive: &'a [u8],
}

/// A `GAP` message: the client missed events of `topic` that the server can
/// no longer send; it continues from `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: String,
    /// Where the client stands after the gap: the next event is `offset + 1`.
    pub position: Position,
    /// Events missed, or [`MISSED_UNKNOWN`].
    pub missed: u64,
}

/// A point in one server history's life: its random base and a sequence
/// number counting every topic event it positioned. A client holds the
/// last one the server sent it (`RESUME_POINT`, after each replay) and
/// names it in its next `RESUME`: events of topics for which the client has
/// no position yet (a subscription whose first event or announcement it
/// never received) are replayed from there, so that none is lost silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResumePoint {
    /// The history's base epoch.
    pub base: u64,
    /// Topic events positioned before this point.
    pub seq: u64,
}

/// A parsed `RESUME`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResumeRequest {
    /// The last resume point the client received, if any.
    pub since: Option<ResumePoint>,
    /// The last position per topic, in the client's order.
    pub positions: Vec<(String, Position)>,
}

/// Writes a whole `RESUME_POINT` message. `initial`: the point at the
/// upgrade, which a client adopts only if it has none (its first
/// connection); otherwise the point after a replay, which it always adopts.
pub fn encode_resume_point(out: &mut Vec<u8>, point: ResumePoint, initial: bool) {
    out.push(KIND_RESUME_POINT);
    out.extend_from_slice(&point.base.to_le_bytes());
    out.extend_from_slice(&point.seq.to_le_bytes());
    out.push(initial as u8);
}

/// Parses a `RESUME_POINT` body (after the kind byte): the point and
/// whether it is the initial one.
pub fn parse_resume_point(body: &[u8]) -> Option<(ResumePoint, bool)> {
    if body.len() != 17 || body[16] > 1 {
        return None;
    }
    Some((ResumePoint { base: u64_at(body, 0)?, seq: u64_at(body, 8)? }, body[16] == 1))
}

/// Why a `RESUME` message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The message ended early.
    #[error("RESUME truncated: the topic list ends inside entry {0}")]
    Truncated(usize),
    /// More topics than [`MAX_RESUME_TOPICS`].
    #[error("RESUME names {0} topics; at most {MAX_RESUME_TOPICS} are accepted (send the most recent ones)")]
    TooManyTopics(usize),
    /// An empty topic name.
    #[error("RESUME entry {0} has an empty topic name")]
    EmptyTopic(usize),
    /// A topic name that is not UTF-8.
    #[error("RESUME entry {0} has a topic name that is not UTF-8")]
    NotUtf8(usize),
    /// Bytes after the last entry.
    #[error("RESUME has {0} bytes after its last entry")]
    TrailingBytes(usize),
}

/// Length of a `TOPIC_EVENT` header before the topic name.
pub const TOPIC_EVENT_FIXED_LEN: usize = 1 + 2 + 8 + 8 + 1;

/// Length of a whole `TOPIC_EVENT` header for `topic`.
pub fn wire_header_len(topic: &str) -> usize {
    TOPIC_EVENT_FIXED_LEN + topic.len()
}

/// Writes a `TOPIC_EVENT` header (everything before the archive) into `out`.
/// `topic` must be at most [`MAX_TOPIC_LEN`] bytes (the caller checks).
pub fn encode_topic_event_header(out: &mut Vec<u8>, ty: u16, topic: &str, position: Position) {
    debug_assert!(topic.len() <= MAX_TOPIC_LEN);
    out.push(KIND_TOPIC_EVENT);
    out.extend_from_slice(&ty.to_le_bytes());
    out.extend_from_slice(&position.epoch.to_le_bytes());
    out.extend_from_slice(&position.offset.to_le_bytes());
    out.push(topic.len() as u8);
    out.extend_from_slice(topic.as_bytes());
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a `TOPIC_EVENT` body (after the kind byte).
pub fn parse_topic_event(body: &[u8]) -> Option<TopicEvent<'_>> {
    let ty = u16::from_le_bytes([*body.first()?, *body.get(1)?]);
    let epoch = u64_at(body, 2)?;
    let offset = u64_at(body, 10)?;
    let len = *body.get(18)? as usize;
    let topic = std::str::from_utf8(body.get(19..19 + len)?).ok()?;
    Some(TopicEvent { ty, topic, position: Position { epoch, offset }, archive: &body[19 + len..] })
}

/// Writes a whole `GAP` message into `out`.
pub fn encode_gap(out: &mut Vec<u8>, gap: &Gap) {
    let topic = &gap.topic.as_bytes()[..gap.topic.len().min(MAX_TOPIC_LEN)];
    out.push(KIND_GAP);
    out.extend_from_slice(&gap.position.epoch.to_le_bytes());
    out.extend_from_slice(&gap.position.offset.to_le_bytes());
    out.extend_from_slice(&gap.missed.to_le_bytes());
    out.push(topic.len() as u8);
    out.extend_from_slice(topic);
}

/// Parses a `GAP` body (after the kind byte).
pub fn parse_gap(body: &[u8]) -> Option<Gap> {
    let epoch = u64_at(body, 0)?;
    let offset = u64_at(body, 8)?;
    let missed = u64_at(body, 16)?;
    let len = *body.get(24)? as usize;
    if body.len() != 25 + len {
        return None;
    }
    let topic = std::str::from_utf8(&body[25..]).ok()?.to_string();
    Some(Gap { topic, position: Position { epoch, offset }, missed })
}

/// Writes a whole `RESUME` message: at most [`MAX_RESUME_TOPICS`] entries
/// are written (the caller reports the rest as gaps), topics longer than
/// [`MAX_TOPIC_LEN`] are skipped. Returns how many entries were written.
pub fn encode_resume<'a>(
    out: &mut Vec<u8>,
    since: Option<ResumePoint>,
    entries: impl IntoIterator<Item = (&'a str, Position)>,
) -> usize {
    out.push(KIND_RESUME);
    let since = since.unwrap_or(ResumePoint { base: 0, seq: 0 });
    out.extend_from_slice(&since.base.to_le_bytes());
    out.extend_from_slice(&since.seq.to_le_bytes());
    let count_at = out.len();
    out.push(0);
    let mut n = 0;
    for (topic, p) in entries.into_iter().filter(|(t, _)| !t.is_empty() && t.len() <= MAX_TOPIC_LEN) {
        if n == MAX_RESUME_TOPICS {
            break;
        }
        out.push(topic.len() as u8);
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&p.epoch.to_le_bytes());
        out.extend_from_slice(&p.offset.to_le_bytes());
        n += 1;
    }
    out[count_at] = n as u8;
    n
}

/// Parses a `RESUME` body (after the kind byte).
pub fn parse_resume(body: &[u8]) -> Result<ResumeRequest, ResumeError> {
    let base = u64_at(body, 0).ok_or(ResumeError::Truncated(0))?;
    let seq = u64_at(body, 8).ok_or(ResumeError::Truncated(0))?;
    let since = (base != 0 || seq != 0).then_some(ResumePoint { base, seq });
    let count = *body.get(16).ok_or(ResumeError::Truncated(0))? as usize;
    if count > MAX_RESUME_TOPICS {
        return Err(ResumeError::TooManyTopics(count));
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 17;
    for i in 0..count {
        let len = *body.get(at).ok_or(ResumeError::Truncated(i))? as usize;
        if len == 0 {
            return Err(ResumeError::EmptyTopic(i));
        }
        let name = body.get(at + 1..at + 1 + len).ok_or(ResumeError::Truncated(i))?;
        let topic = std::str::from_utf8(name).map_err(|_| ResumeError::NotUtf8(i))?;
        at += 1 + len;
        let epoch = u64_at(body, at).ok_or(ResumeError::Truncated(i))?;
        let offset = u64_at(body, at + 8).ok_or(ResumeError::Truncated(i))?;
        at += 16;
        out.push((topic.to_string(), Position { epoch, offset }));
    }
    if at != body.len() {
        return Err(ResumeError::TrailingBytes(body.len() - at));
    }
    Ok(ResumeRequest { since, positions: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_event_bytes() {
        let mut m = Vec::new();
        encode_topic_event_header(&mut m, 7, "ab", Position { epoch: 0x0102, offset: 3 });
        m.extend_from_slice(b"xyz");
        assert_eq!(m, [0x32, 7, 0, 2, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2, b'a', b'b', b'x', b'y', b'z']);
        let e = parse_topic_event(&m[1..]).unwrap();
        assert_eq!((e.ty, e.topic, e.position.offset, e.archive), (7, "ab", 3, &b"xyz"[..]));
        for cut in 0..21 {
            assert!(parse_topic_event(&m[1..cut.max(1)]).is_none() || cut >= 21, "cut at {cut}");
        }
    }

    #[test]
    fn gap_bytes_and_malformed_gaps() {
        let gap = Gap { topic: "t".into(), position: Position { epoch: 9, offset: 4 }, missed: MISSED_UNKNOWN };
        let mut m = Vec::new();
        encode_gap(&mut m, &gap);
        assert_eq!(m.len(), 1 + 25 + 1);
        assert_eq!(m[0], 0x33);
        assert_eq!(&m[17..25], &[0xff; 8]);
        assert_eq!(parse_gap(&m[1..]), Some(gap));
        assert_eq!(parse_gap(&m[1..26]), None, "topic cut off");
        let mut long = m.clone();
        long.push(0);
        assert_eq!(parse_gap(&long[1..]), None, "trailing bytes");
    }

    #[test]
    fn resume_round_trip_and_the_topic_bound() {
        let p = Position { epoch: 1, offset: 2 };
        let since = Some(ResumePoint { base: 3, seq: 4 });
        let mut m = Vec::new();
        assert_eq!(encode_resume(&mut m, since, [("a", p), ("", p), ("b", p)]), 2);
        assert_eq!(m[..21], [0x08, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 1, b'a', 1]);
        let req = parse_resume(&m[1..]).unwrap();
        assert_eq!(req, ResumeRequest { since, positions: vec![("a".to_string(), p), ("b".to_string(), p)] });
        let names: Vec<String> = (0..MAX_RESUME_TOPICS + 5).map(|i| format!("t{i}")).collect();
        let mut m = Vec::new();
        assert_eq!(encode_resume(&mut m, None, names.iter().map(|n| (n.as_str(), p))), MAX_RESUME_TOPICS);
        let req = parse_resume(&m[1..]).unwrap();
        assert_eq!((req.since, req.positions.len()), (None, MAX_RESUME_TOPICS));
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(encode_resume(&mut Vec::new(), None, [(long.as_str(), p)]), 0, "too long to name");
        let mut m = Vec::new();
        encode_resume_point(&mut m, ResumePoint { base: 1, seq: 2 }, true);
        assert_eq!(m, [0x34, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(parse_resume_point(&m[1..]), Some((ResumePoint { base: 1, seq: 2 }, true)));
        assert_eq!(parse_resume_point(&m[2..]), None);
        m[17] = 2;
        assert_eq!(parse_resume_point(&m[1..]), None, "unknown flags");
    }

    /// The byte examples of docs/PROTOCOL.md section 4, which the
    /// TypeScript client's test (clients/ts/test/resume.test.mjs) checks
    /// too: both encoders agree with the document, so with each other.
    #[test]
    fn protocol_md_examples_byte_for_byte() {
        let unhex = |s: &str| -> Vec<u8> { s.split(' ').map(|b| u8::from_str_radix(b, 16).unwrap()).collect() };
        let mut m = Vec::new();
        encode_resume(&mut m, Some(ResumePoint { base: 5, seq: 7 }), [("t", Position { epoch: 9, offset: 4 })]);
        assert_eq!(
            m,
            unhex("08 05 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00 01 01 74 09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00")
        );
        let mut empty = Vec::new();
        encode_resume(&mut empty, None, []);
        assert_eq!(empty, [&[0x08][..], &[0; 17]].concat(), "08 and 17 zero bytes");
        let mut gap = Vec::new();
        encode_gap(
            &mut gap,
            &Gap { topic: "t".into(), position: Position { epoch: 9, offset: 4 }, missed: MISSED_UNKNOWN },
        );
        assert_eq!(gap, unhex("33 09 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 FF FF FF FF FF FF FF FF 01 74"));
    }

    #[test]
    fn malformed_resume_requests_are_typed_errors() {
        let r = |rest: &[u8]| {
            let mut b = vec![0u8; 16];
            b.extend_from_slice(rest);
            parse_resume(&b)
        };
        assert_eq!(parse_resume(&[]), Err(ResumeError::Truncated(0)));
        assert_eq!(parse_resume(&[0; 16]), Err(ResumeError::Truncated(0)), "no count");
        assert_eq!(r(&[65]), Err(ResumeError::TooManyTopics(65)));
        assert_eq!(r(&[1, 0]), Err(ResumeError::EmptyTopic(0)));
        assert_eq!(r(&[1, 2, b'a']), Err(ResumeError::Truncated(0)));
        assert_eq!(r(&[1, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), Err(ResumeError::NotUtf8(0)));
        assert_eq!(r(&[1, 1, b'a', 0, 0, 0]), Err(ResumeError::Truncated(0)));
        assert_eq!(r(&[0, 9]), Err(ResumeError::TrailingBytes(1)));
        assert_eq!(r(&[0]), Ok(ResumeRequest::default()));
    }
}
