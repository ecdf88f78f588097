//! The server's per-topic event history: offsets, bounded retention (count
//! and age), and what to replay for a resume position. Time is an input.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetched::UNSYNCED_EPOCH;
use super::wire::{Gap, Position, ResumePoint, MAX_TOPIC_LEN, MISSED_UNKNOWN};
use crate::events::EncodedEvent;

/// Default number of events kept per topic for resume.
pub const DEFAULT_HISTORY_EVENTS: usize = 1024;
/// Default age after which a topic's events are no longer kept for resume:
/// the reconnect window a client is promised (its backoff cap is far lower).
pub const DEFAULT_HISTORY_AGE: Duration = Duration::from_secs(120);
/// Default number of topics with a history; past it, the topic emitted to
/// least recently is forgotten (its subscribers get a gap notice on resume,
/// because the topic then starts a new epoch).
pub const DEFAULT_HISTORY_TOPICS: usize = 10_000;

/// Bounds on the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Most events kept per topic.
    pub max_events: usize,
    /// Events older than this are dropped.
    pub max_age: Duration,
    /// Most topics with a history.
    pub max_topics: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self { max_events: DEFAULT_HISTORY_EVENTS, max_age: DEFAULT_HISTORY_AGE, max_topics: DEFAULT_HISTORY_TOPICS }
    }
}

struct Log {
    epoch: u64,
    /// The last offset given out (0: none yet).
    head: u64,
    /// Retained events, oldest first: offset, emit time, framed TOPIC_EVENT.
    entries: VecDeque<(u64, Instant, EncodedEvent)>,
    /// The history-wide sequence number of each retained event (parallel
    /// to `entries`).
    seqs: VecDeque<u64>,
    touched: Instant,
    /// History sequence when the log was created.
    created_seq: u64,
    /// Highest sequence number of an event of this topic no longer retained.
    dropped_seq: u64,
}

/// What a resuming connection gets for one topic.
#[derive(Debug, Default)]
pub struct Replay {
    /// Sent first when the history does not cover everything missed.
    pub gap: Option<Gap>,
    /// The retained events after the client's position, in order.
    pub events: Vec<EncodedEvent>,
    /// The topic's head: live events up to it are covered by this replay.
    pub head: Option<Position>,
    /// Only for a broker cache ([`TopicHistory::broker_cache`]): this
    /// server's copy does not cover the position, so the answer must come
    /// from the broker's log ([`super::Fetched`]); nothing else is set.
    pub fetch: bool,
}

/// Every topic's offsets and retained events (one per server, or per broker
/// stream). Offsets start at 1 in each epoch; a topic's epoch is the
/// history's random base plus a creation counter, so a restarted server
/// (new base) or a forgotten and re-created topic (new counter) can never
/// hand out a position that an old one also named.
pub struct TopicHistory {
    /// A copy of the broker's logs ([`Self::broker_cache`]), not the
    /// source of positions.
    cache: bool,
    base_epoch: u64,
    created: u64,
    /// Topic events positioned so far, all topics (the resume point).
    seq: u64,
    /// `seq` when a topic was last forgotten (topic bound).
    forgotten_seq: u64,
    limits: HistoryLimits,
    logs: HashMap<Arc<str>, Log>,
}

impl TopicHistory {
    /// An empty history whose epochs derive from `base_epoch` (random per
    /// server start).
    pub fn new(base_epoch: u64, limits: HistoryLimits) -> Self {
        Self { cache: false, base_epoch, created: 0, seq: 0, forgotten_seq: 0, limits, logs: HashMap::new() }
    }

    /// A history that is a bounded copy of a broker's per-topic logs: the
    /// broker gives positions ([`Self::insert`]); a replay this copy does
    /// not cover asks for the broker's log ([`Replay::fetch`]). `base`
    /// (random per server start) only tells resume points of this server
    /// from another's.
    pub fn broker_cache(base: u64, limits: HistoryLimits) -> Self {
        Self { cache: true, ..Self::new(base, limits) }
    }

    /// Whether this is a broker cache.
    pub fn is_cache(&self) -> bool {
        self.cache
    }

    /// The resume point now: every event positioned so far is before it.
    pub fn point(&self) -> ResumePoint {
        ResumePoint { base: self.base_epoch, seq: self.seq }
    }

    /// Topics with a history.
    pub fn topics(&self) -> usize {
        self.logs.len()
    }

    /// Events retained for `topic`.
    pub fn retained(&self, topic: &str) -> usize {
        self.logs.get(topic).map_or(0, |l| l.entries.len())
    }

    fn log(&mut self, topic: &Arc<str>, now: Instant) -> &mut Log {
        if !self.logs.contains_key(topic) {
            if self.logs.len() >= self.limits.max_topics.max(1) {
                // O(topics), only when a new topic arrives at the bound.
                if let Some(oldest) = self.logs.iter().min_by_key(|(_, l)| l.touched).map(|(k, _)| k.clone()) {
                    self.logs.remove(&oldest);
                    self.forgotten_seq = self.seq;
                }
            }
            self.created += 1;
            // Epoch 0 is never given out (`UNKNOWN_POSITION`, `UNSYNCED_EPOCH`).
            let epoch = if self.cache { UNSYNCED_EPOCH } else { self.base_epoch.wrapping_add(self.created).max(1) };
            let log = Log {
                epoch,
                head: 0,
                entries: VecDeque::new(),
                seqs: VecDeque::new(),
                touched: now,
                created_seq: self.seq,
                dropped_seq: 0,
            };
            self.logs.insert(topic.clone(), log);
        }
        let limits = self.limits;
        let log = self.logs.get_mut(topic).expect("inserted above");
        while log.entries.front().is_some_and(|(_, at, _)| now.saturating_duration_since(*at) > limits.max_age) {
            log.entries.pop_front();
            log.dropped_seq = log.seqs.pop_front().unwrap_or(log.dropped_seq);
        }
        log
    }

    /// Gives `topic`'s next event its position and keeps it. Returns the
    /// position and the framed `TOPIC_EVENT`, or `None` for a topic name
    /// longer than [`MAX_TOPIC_LEN`] (such events carry no position).
    pub fn append(
        &mut self,
        topic: &Arc<str>,
        now: Instant,
        ty: u16,
        archive: &[u8],
    ) -> Option<(Position, EncodedEvent)> {
        if topic.len() > MAX_TOPIC_LEN {
            return None;
        }
        let max_events = self.limits.max_events;
        self.seq += 1;
        let seq = self.seq;
        let log = self.log(topic, now);
        log.head += 1;
        log.touched = now;
        let position = Position { epoch: log.epoch, offset: log.head };
        let framed = EncodedEvent::positioned(ty, topic, position, archive);
        if max_events > 0 {
            if log.entries.len() >= max_events {
                log.entries.pop_front();
                log.dropped_seq = log.seqs.pop_front().unwrap_or(log.dropped_seq);
            }
            log.entries.push_back((log.head, now, framed.clone()));
            log.seqs.push_back(seq);
        } else {
            log.dropped_seq = seq;
        }
        Some((position, framed))
    }

    /// Keeps `topic`'s event at position `at` (given by the broker), framed
    /// as `framed`. Returns whether it is new here, i.e. whether to route
    /// it to the shards: an offset at or below the head is a duplicate, an
    /// older epoch a stale life. A newer epoch restarts the topic's log; a
    /// hole (events this server never got) restarts the retained range at
    /// `at`, so that a replay never skips silently over the hole. Broker
    /// epochs grow with time (`docs/PROTOCOL.md`), hence "older" and "newer".
    pub fn insert(&mut self, topic: &Arc<str>, at: Position, now: Instant, framed: EncodedEvent) -> bool {
        if topic.len() > MAX_TOPIC_LEN || at.epoch == UNSYNCED_EPOCH || at.offset == 0 {
            return false;
        }
        let (max_events, max_age) = (self.limits.max_events, self.limits.max_age);
        let seq = self.seq + 1;
        let log = self.log(topic, now);
        // An older epoch is a stale life, unless the topic has been silent
        // here longer than its broker life lasts (an idle topic's keys
        // expire): then it is a new life from a broker whose clock went
        // back, and refusing it would drop the topic for good.
        let idle = now.saturating_duration_since(log.touched) > max_age;
        let restart = if log.epoch == UNSYNCED_EPOCH || at.epoch > log.epoch || (at.epoch < log.epoch && idle) {
            log.epoch = at.epoch;
            true
        } else if at.epoch < log.epoch || at.offset <= log.head {
            return false;
        } else {
            at.offset > log.head + 1
        };
        if restart {
            log.entries.clear();
            log.seqs.clear();
            // Clients whose resume point is before this event missed the
            // events before it that never reached this server.
            log.dropped_seq = seq;
        }
        log.head = at.offset;
        log.touched = now;
        if max_events > 0 {
            if log.entries.len() >= max_events {
                log.entries.pop_front();
                log.dropped_seq = log.seqs.pop_front().unwrap_or(log.dropped_seq);
            }
            log.entries.push_back((at.offset, now, framed));
            log.seqs.push_back(seq);
        } else {
            log.dropped_seq = seq;
        }
        self.seq = seq;
        true
    }

    /// The position of `topic`'s last event known here, if any.
    pub fn head(&self, topic: &str) -> Option<Position> {
        self.logs.get(topic).filter(|l| l.epoch != UNSYNCED_EPOCH).map(|l| Position { epoch: l.epoch, offset: l.head })
    }

    /// What a connection that last saw `from` in `topic` must get before
    /// live events: nothing (and no gap) for `None` (a fresh subscription),
    /// else the retained events after `from`, preceded by a gap notice when
    /// the history does not reach back to `from` or `from` is of another
    /// epoch. `head` is where live delivery continues.
    pub fn replay(&mut self, topic: &Arc<str>, from: Option<Position>, now: Instant) -> Replay {
        if topic.len() > MAX_TOPIC_LEN {
            return Replay::default();
        }
        let cache = self.cache;
        let log = self.log(topic, now);
        let head = Position { epoch: log.epoch, offset: log.head };
        let first = log.entries.front().map_or(log.head + 1, |(o, _, _)| *o);
        let from = if cache { from.filter(|p| p.epoch != UNSYNCED_EPOCH) } else { from };
        if cache && log.epoch == UNSYNCED_EPOCH && from.is_none() {
            // A new subscription before any event of the topic reached this
            // server: no position to announce, and every event routed from
            // now on is for it (asking the broker where the topic stands
            // would skip the events published before the answer).
            return Replay::default();
        }
        if cache {
            let covered = log.epoch != UNSYNCED_EPOCH
                && from.is_none_or(|p| p.epoch == log.epoch && p.offset + 1 >= first && p.offset <= log.head);
            if !covered {
                return Replay { fetch: true, ..Replay::default() };
            }
        }
        let Some(from) = from else {
            return Replay { head: Some(head), ..Replay::default() };
        };
        let (gap, after) = if from.epoch != log.epoch || from.offset > log.head {
            // Another life of the topic (or a position this one never gave).
            let missed = MISSED_UNKNOWN;
            (
                Some(Gap {
                    topic: topic.to_string(),
                    position: Position { epoch: log.epoch, offset: first - 1 },
                    missed,
                }),
                first - 1,
            )
        } else if from.offset + 1 < first {
            let missed = first - 1 - from.offset;
            (
                Some(Gap {
                    topic: topic.to_string(),
                    position: Position { epoch: log.epoch, offset: first - 1 },
                    missed,
                }),
                first - 1,
            )
        } else {
            (None, from.offset)
        };
        let events = log.entries.iter().filter(|(o, _, _)| *o > after).map(|(_, _, e)| e.clone()).collect();
        Replay { gap, events, head: Some(head), fetch: false }
    }
}

impl TopicHistory {
    /// What a connection that has no position in `topic` must get, given
    /// the client's last resume point `since`: every event of the topic
    /// after that point. It starts with a `GAP`: 0 missed (an announcement
    /// of where the client starts) when the history covers everything
    /// since the point, else a count-unknown gap (the point is of another
    /// history, or events of the topic after it are gone).
    pub fn replay_since(&mut self, topic: &Arc<str>, since: ResumePoint, now: Instant) -> Replay {
        if topic.len() > MAX_TOPIC_LEN {
            return Replay::default();
        }
        let (base, forgotten_seq, cache) = (self.base_epoch, self.forgotten_seq, self.cache);
        let log = self.log(topic, now);
        if cache && log.epoch == UNSYNCED_EPOCH {
            // No event of the topic reached this server since its copy
            // began. With this server's point, and no topic forgotten since,
            // nothing was missed here: a new subscription. Otherwise (another
            // server's point) the broker says where the topic stands, and
            // the client hears that it may have missed events.
            if since.base == base && forgotten_seq <= since.seq {
                return Replay::default();
            }
            return Replay { fetch: true, ..Replay::default() };
        }
        let head = Position { epoch: log.epoch, offset: log.head };
        let lost = since.base != base
            || log.dropped_seq > since.seq
            || (log.created_seq > since.seq && forgotten_seq > since.seq);
        let missed = if lost { MISSED_UNKNOWN } else { 0 };
        let first = log.seqs.iter().position(|&q| q > since.seq).unwrap_or(log.seqs.len());
        let start = log.entries.get(first).map_or(log.head, |(o, _, _)| o - 1);
        let gap = Gap { topic: topic.to_string(), position: Position { epoch: log.epoch, offset: start }, missed };
        let events = log.entries.iter().skip(first).map(|(_, _, e)| e.clone()).collect();
        Replay { gap: Some(gap), events, head: Some(head), fetch: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(r: &Replay) -> Vec<u64> {
        r.events
            .iter()
            .map(|e| {
                let msg = &e.frame()[2..];
                super::super::wire::parse_topic_event(&msg[1..]).unwrap().position.offset
            })
            .collect()
    }

    fn history(max_events: usize, max_age: Duration, max_topics: usize) -> TopicHistory {
        TopicHistory::new(1000, HistoryLimits { max_events, max_age, max_topics })
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let l = HistoryLimits::default();
        assert_eq!((l.max_events, l.max_age, l.max_topics), (1024, Duration::from_secs(120), 10_000));
    }

    #[test]
    fn offsets_count_from_one_and_replay_sends_what_was_missed_in_order() {
        let (mut h, t0, t) = (history(8, Duration::from_secs(60), 4), Instant::now(), Arc::from("t"));
        let fresh = h.replay(&t, None, t0);
        assert!(fresh.gap.is_none() && fresh.events.is_empty());
        let epoch = fresh.head.unwrap().epoch;
        for i in 1..=5 {
            assert_eq!(h.append(&t, t0, 1, b"x").unwrap().0, Position { epoch, offset: i });
        }
        let r = h.replay(&t, Some(Position { epoch, offset: 2 }), t0);
        assert!(r.gap.is_none());
        assert_eq!(offsets(&r), [3, 4, 5]);
        assert_eq!(r.head, Some(Position { epoch, offset: 5 }));
        assert!(h.replay(&t, Some(Position { epoch, offset: 5 }), t0).events.is_empty(), "up to date");
    }

    #[test]
    fn the_count_bound_turns_an_old_position_into_a_counted_gap() {
        let (mut h, t0, t) = (history(3, Duration::from_secs(60), 4), Instant::now(), Arc::from("t"));
        for _ in 0..10 {
            h.append(&t, t0, 1, b"x");
        }
        assert_eq!(h.retained("t"), 3);
        let epoch = h.replay(&t, None, t0).head.unwrap().epoch;
        let r = h.replay(&t, Some(Position { epoch, offset: 4 }), t0);
        let gap = r.gap.as_ref().unwrap();
        assert_eq!((gap.missed, gap.position.offset), (3, 7), "5, 6 and 7 are gone");
        assert_eq!(offsets(&r), [8, 9, 10]);
    }

    #[test]
    fn the_age_bound_drops_old_events() {
        let (mut h, t0, t) = (history(100, Duration::from_secs(10), 4), Instant::now(), Arc::from("t"));
        h.append(&t, t0, 1, b"x");
        h.append(&t, t0 + Duration::from_secs(5), 1, b"x");
        let epoch = h.replay(&t, None, t0).head.unwrap().epoch;
        let r = h.replay(&t, Some(Position { epoch, offset: 0 }), t0 + Duration::from_secs(11));
        assert_eq!(r.gap.as_ref().map(|g| g.missed), Some(1));
        assert_eq!(offsets(&r), [2]);
        let r = h.replay(&t, Some(Position { epoch, offset: 0 }), t0 + Duration::from_secs(16));
        assert_eq!(r.gap.as_ref().map(|g| (g.missed, g.position.offset)), Some((2, 2)));
        assert!(r.events.is_empty());
    }

    #[test]
    fn another_epoch_is_a_gap_of_unknown_size_then_everything_retained() {
        let (mut h, t0, t) = (history(8, Duration::from_secs(60), 4), Instant::now(), Arc::from("t"));
        h.append(&t, t0, 1, b"x");
        h.append(&t, t0, 1, b"x");
        let r = h.replay(&t, Some(Position { epoch: 7, offset: 40 }), t0);
        assert_eq!(r.gap.as_ref().map(|g| (g.missed, g.position.offset)), Some((MISSED_UNKNOWN, 0)));
        assert_eq!(offsets(&r), [1, 2]);
        let epoch = r.head.unwrap().epoch;
        let future = h.replay(&t, Some(Position { epoch, offset: 99 }), t0);
        assert_eq!(future.gap.map(|g| g.missed), Some(MISSED_UNKNOWN), "a position never given out");
    }

    #[test]
    fn the_topic_bound_forgets_the_least_recent_topic_and_its_epoch() {
        let (mut h, t0) = (history(8, Duration::from_secs(60), 2), Instant::now());
        let (a, b, c) = (Arc::from("a"), Arc::from("b"), Arc::from("c"));
        let (pa, _) = h.append(&a, t0, 1, b"x").unwrap();
        h.append(&b, t0 + Duration::from_millis(1), 1, b"x");
        h.append(&c, t0 + Duration::from_millis(2), 1, b"x");
        assert_eq!(h.topics(), 2);
        let r = h.replay(&a, Some(pa), t0 + Duration::from_millis(3));
        assert_eq!(r.gap.map(|g| g.missed), Some(MISSED_UNKNOWN), "a was forgotten: a new epoch");
        assert_ne!(r.head.unwrap().epoch, pa.epoch);
    }

    #[test]
    fn replay_since_a_resume_point_covers_topics_without_a_position() {
        let (mut h, t0) = (history(3, Duration::from_secs(60), 4), Instant::now());
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        h.append(&a, t0, 1, b"x");
        let point = h.point();
        h.append(&b, t0, 1, b"x");
        h.append(&a, t0, 1, b"x");
        let r = h.replay_since(&a, point, t0);
        let g = r.gap.as_ref().unwrap();
        assert_eq!((g.missed, g.position.offset), (0, 1), "an announcement: a starts after offset 1");
        assert_eq!(offsets(&r), [2]);
        let r = h.replay_since(&b, point, t0);
        assert_eq!((r.gap.as_ref().unwrap().missed, offsets(&r)), (0, vec![1]));
        // Past the count bound, events after the point are gone: unknown.
        for _ in 0..3 {
            h.append(&a, t0, 1, b"x");
        }
        assert_eq!(h.replay_since(&a, point, t0).gap.unwrap().missed, MISSED_UNKNOWN);
        // Another history's point: unknown.
        let other = ResumePoint { base: 1, seq: 0 };
        assert_eq!(h.replay_since(&b, other, t0).gap.unwrap().missed, MISSED_UNKNOWN);
        // Nothing since the point: only the announcement of the head.
        let now = h.point();
        let r = h.replay_since(&b, now, t0);
        assert_eq!((r.gap.unwrap().position.offset, r.events.len()), (1, 0));
    }

    #[test]
    fn a_topic_name_over_the_bound_gets_no_position() {
        let mut h = history(8, Duration::from_secs(60), 2);
        let long: Arc<str> = "x".repeat(MAX_TOPIC_LEN + 1).into();
        assert!(h.append(&long, Instant::now(), 1, b"").is_none());
        assert_eq!(h.topics(), 0);
    }

    fn framed(t: &str, epoch: u64, offset: u64) -> EncodedEvent {
        EncodedEvent::positioned(1, t, Position { epoch, offset }, b"x")
    }

    fn cache(max_events: usize) -> TopicHistory {
        TopicHistory::broker_cache(1000, HistoryLimits { max_events, max_age: Duration::from_secs(60), max_topics: 4 })
    }

    #[test]
    fn a_broker_cache_keeps_broker_positions_and_drops_duplicates_and_stale_lives() {
        let (mut h, t0, t) = (cache(8), Instant::now(), Arc::from("t"));
        let at = |epoch, offset| Position { epoch, offset };
        assert_eq!(h.head("t"), None);
        assert!(h.insert(&t, at(50, 7), t0, framed("t", 50, 7)), "the first event sets the epoch and head");
        assert!(h.insert(&t, at(50, 8), t0, framed("t", 50, 8)));
        assert!(!h.insert(&t, at(50, 8), t0, framed("t", 50, 8)), "a duplicate is not routed");
        assert!(!h.insert(&t, at(50, 3), t0, framed("t", 50, 3)), "nor an old offset");
        assert!(!h.insert(&t, at(49, 9), t0, framed("t", 49, 9)), "nor an older life");
        assert_eq!((h.head("t"), h.retained("t")), (Some(at(50, 8)), 2));
        // Covered positions replay from the cache.
        let r = h.replay(&t, Some(at(50, 6)), t0);
        assert!(!r.fetch && r.gap.is_none());
        assert_eq!(offsets(&r), [7, 8]);
        // A hole: the retained range restarts after it, so a position in
        // the hole is not covered and must be asked of the broker.
        assert!(h.insert(&t, at(50, 12), t0, framed("t", 50, 12)));
        assert_eq!((h.head("t"), h.retained("t")), (Some(at(50, 12)), 1));
        assert!(h.replay(&t, Some(at(50, 8)), t0).fetch);
        assert!(!h.replay(&t, Some(at(50, 11)), t0).fetch);
        // A newer life restarts the log.
        assert!(h.insert(&t, at(60, 1), t0, framed("t", 60, 1)));
        // An older epoch after the topic was silent longer than a broker
        // life lasts (60 s here) is a new life from a clock that went back.
        let later = t0 + Duration::from_secs(61);
        let mut back = cache(8);
        back.insert(&t, at(60, 1), t0, framed("t", 60, 1));
        assert!(!back.insert(&t, at(55, 1), t0, framed("t", 55, 1)), "stale while the topic is live");
        assert!(back.insert(&t, at(55, 1), later, framed("t", 55, 1)));
        assert_eq!(back.head("t"), Some(at(55, 1)));
        assert_eq!((h.head("t"), h.retained("t")), (Some(at(60, 1)), 1));
        // The count bound still holds.
        for o in 2..=20 {
            h.insert(&t, at(60, o), t0, framed("t", 60, o));
        }
        assert_eq!(h.retained("t"), 8);
    }

    #[test]
    fn a_broker_cache_asks_the_broker_for_what_it_does_not_cover() {
        let (mut h, t0, t) = (cache(8), Instant::now(), Arc::from("t"));
        let at = |epoch, offset| Position { epoch, offset };
        // No head known yet: a new subscription takes every event from now
        // on, without an announcement.
        let fresh = h.replay(&t, None, t0);
        assert!(!fresh.fetch && fresh.gap.is_none() && fresh.head.is_none());
        assert!(!h.replay(&t, Some(at(UNSYNCED_EPOCH, 0)), t0).fetch);
        assert!(!h.replay_since(&t, h.point(), t0).fetch, "this server's point: nothing missed here");
        let elsewhere = ResumePoint { base: 7, seq: 3 };
        assert!(h.replay_since(&t, elsewhere, t0).fetch, "another server's point: the broker says where t stands");
        h.insert(&t, at(50, 5), t0, framed("t", 50, 5));
        assert_eq!(h.replay(&t, None, t0).head, Some(at(50, 5)), "a head is known now");
        assert!(h.replay(&t, Some(at(50, 3)), t0).fetch, "before the cached range");
        assert!(h.replay(&t, Some(at(50, 6)), t0).fetch, "after the cached head: this server is behind");
        assert!(h.replay(&t, Some(at(49, 5)), t0).fetch, "another life");
        let r = h.replay(&t, Some(at(50, 4)), t0);
        assert_eq!((r.fetch, offsets(&r)), (false, vec![5]));
        // The in-process history never asks.
        let mut own = history(8, Duration::from_secs(60), 4);
        assert!(!own.replay(&t, Some(at(49, 5)), t0).fetch);
    }
}
