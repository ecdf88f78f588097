//! The server's side of one resuming connection: per-topic marks, the hold
//! until the first message, and the replays. Sans-I/O: the caller passes
//! the history (in the server, behind a lock shared by every shard and
//! emitter) and the time.
//!
//! Why this is exactly-once: an emit takes the history lock, gives the
//! event its offset, and hands it to every shard's inbox before releasing
//! the lock, so each shard sees a topic's events in offset order. A replay
//! runs on the connection's shard under the same lock and records the head
//! it covered; every live event at or below that mark is still in (or has
//! passed through) the inbox and is skipped, every later one is delivered.
//! While a connection is held (it opted in and its `RESUME` has not arrived
//! yet) live events are skipped too: the replay at release sends them.
//!
//! With a broker, the history is a cache of the broker's logs and a replay
//! it does not cover is *deferred*: the topic stays held for this
//! connection (live events of it skipped, its mark kept), the caller asks
//! the broker ([`ConnectionResume::take_fetches`]) and hands the answer to
//! [`ConnectionResume::fetched`]. Still exactly-once: the answer is read
//! after every event routed to the shards before it reached the broker
//! (one connection carries both, in order), and is handed to the shard
//! through the same inbox, so every live event skipped while deferred is at
//! or below the answer's head, and every later one above it is delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::fetched::{Fetched, UNSYNCED_EPOCH};
use super::history::{Replay, TopicHistory};
use super::wire::{encode_gap, encode_resume_point, Gap, Position, ResumePoint, ResumeRequest, MAX_RESUME_TOPICS};
use crate::outbox::Outbox;

/// Queues a `GAP` in order with the events; never dropped by the
/// slow-consumer policy (a notice of loss must not be lost).
fn push_gap(outbox: &Outbox, gap: &Gap) {
    let mut msg = Vec::new();
    encode_gap(&mut msg, gap);
    outbox.push_message(&msg);
}

/// One resuming connection's state on the server.
#[derive(Debug)]
pub struct ConnectionResume {
    /// Opted in, `RESUME` not yet taken.
    held: bool,
    /// Positions from `RESUME` for topics not subscribed yet (at most
    /// `MAX_RESUME_TOPICS`), applied when the connection subscribes.
    pending: HashMap<Arc<str>, Position>,
    /// Per subscribed topic: the last position this connection was given
    /// (or that a replay covered).
    marks: HashMap<Arc<str>, Position>,
    /// The client's last resume point, from its `RESUME`.
    since: Option<ResumePoint>,
    /// Topics that lost events (see [`Self::lost`]) while held: reported
    /// after their replay.
    lost_while_held: std::collections::HashSet<Arc<str>>,
    /// Topics whose replay waits for the broker's log: the position it
    /// starts after (`None`: at the head) and, for a topic the client named
    /// no position for, the missed count to announce where it starts with
    /// (0, or unknown for a client that came from another server).
    deferred: HashMap<Arc<str>, (Option<Position>, Option<u64>)>,
    /// Requests for the broker's log not yet taken by the caller.
    fetches: Vec<(Arc<str>, Option<Position>)>,
}

impl Default for ConnectionResume {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectionResume {
    /// A connection that opted in: held until [`Self::release`].
    pub fn new() -> Self {
        Self {
            held: true,
            pending: HashMap::new(),
            marks: HashMap::new(),
            since: None,
            lost_while_held: std::collections::HashSet::new(),
            deferred: HashMap::new(),
            fetches: Vec::new(),
        }
    }

    /// Topics whose replay now waits for the broker's log, with the
    /// position each starts after: the caller asks the broker once per
    /// topic and hands every answer to [`Self::fetched`].
    pub fn take_fetches(&mut self) -> Vec<(Arc<str>, Option<Position>)> {
        std::mem::take(&mut self.fetches)
    }

    /// Whether `topic`'s replay waits for the broker.
    pub fn is_deferred(&self, topic: &str) -> bool {
        self.deferred.contains_key(topic)
    }

    /// The broker's answer for `topic` (`None`: it could not be asked, the
    /// link is down): the deferred replay is sent, or, where the broker no
    /// longer has what the client missed, a gap notice (counted when the
    /// epoch is the client's). Returns whether the topic was resolved; an
    /// answer that does not reach back to this connection's position
    /// leaves it waiting for the answer to its own request.
    ///
    /// The answer may reach this connection's shard after live events newer
    /// than its head (a shard whose inbox was full when it was sent gets it
    /// later): whatever this server's cache holds after the answer's head
    /// then follows from the cache, as in any replay, so nothing is skipped
    /// whenever the answer arrives.
    pub fn fetched(
        &mut self,
        topic: &Arc<str>,
        answer: Option<&Fetched>,
        h: &mut TopicHistory,
        now: Instant,
        outbox: &Outbox,
    ) -> bool {
        let Some(&(from, announce)) = self.deferred.get(topic) else {
            return false;
        };
        let r = match answer {
            Some(f) => match f.replay_for(topic, from) {
                Some(r) => r,
                None => return false,
            },
            None => match from.filter(|p| p.epoch != UNSYNCED_EPOCH) {
                Some(position) => Replay {
                    gap: Some(Gap { topic: topic.to_string(), position, missed: super::wire::MISSED_UNKNOWN }),
                    head: Some(position),
                    ..Replay::default()
                },
                None => Replay::default(),
            },
        };
        self.deferred.remove(topic);
        self.finish(topic, r, from, announce, outbox);
        if let Some(&mark) = self.marks.get(topic).filter(|m| m.epoch != UNSYNCED_EPOCH) {
            let more = h.replay(topic, Some(mark), now);
            if !more.fetch && more.gap.is_none() {
                self.send(topic, more, outbox);
            }
        }
        true
    }

    fn defer(&mut self, topic: &Arc<str>, from: Option<Position>, announce: Option<u64>) {
        let from = from.filter(|p| p.epoch != UNSYNCED_EPOCH);
        self.marks.entry(topic.clone()).or_insert(Position { epoch: UNSYNCED_EPOCH, offset: 0 });
        self.deferred.insert(topic.clone(), (from, announce));
        self.fetches.push((topic.clone(), from));
    }

    /// Sends a replay; with `announce` (a missed count), the client named no position for
    /// the topic, so it first learns where it starts: a `GAP` with 0
    /// missed.
    fn finish(
        &mut self,
        topic: &Arc<str>,
        mut r: Replay,
        from: Option<Position>,
        announce: Option<u64>,
        outbox: &Outbox,
    ) {
        if let (None, Some(missed)) = (&r.gap, announce) {
            let at = from.filter(|p| p.epoch != UNSYNCED_EPOCH).or(r.head);
            r.gap = at.map(|position| Gap { topic: topic.to_string(), position, missed });
        }
        self.send(topic, r, outbox);
    }

    /// The connection is open: queues the initial resume point, which a
    /// client on its first connection adopts (and waits for before it
    /// counts as ready), so that even a subscription whose first event it
    /// never received is covered by its next resume.
    pub fn opened(&self, h: &TopicHistory, outbox: &Outbox) {
        let mut msg = Vec::new();
        encode_resume_point(&mut msg, h.point(), true);
        outbox.push_message(&msg);
    }

    /// Whether live events wait for the first message.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The connection subscribed to `topic`: replay from the client's
    /// position for it (if its `RESUME` named one), or mark the head.
    pub fn subscribed(&mut self, topic: &Arc<str>, h: &mut TopicHistory, now: Instant, outbox: &Outbox) {
        if self.marks.contains_key(topic) {
            return;
        }
        let from = self.pending.remove(topic);
        if self.held {
            // Replayed at release, from the client's position or from here.
            // (A broker cache that has not seen the topic has no head yet:
            // the unsynced epoch stands for "from the head" at release.)
            let mark = from.or_else(|| h.replay(topic, None, now).head);
            self.marks.insert(topic.clone(), mark.unwrap_or(Position { epoch: UNSYNCED_EPOCH, offset: 0 }));
        } else if let (None, Some(since)) = (from, self.since) {
            self.replay_since(h, topic, since, now, outbox);
        } else {
            let announce = from.is_none();
            self.replay(h, topic, from, announce, now, outbox);
        }
    }

    /// A topic the client named no position for, after a reconnect: every
    /// event since the client's last resume point (see
    /// [`TopicHistory::replay_since`]).
    fn replay_since(
        &mut self,
        h: &mut TopicHistory,
        topic: &Arc<str>,
        since: ResumePoint,
        now: Instant,
        outbox: &Outbox,
    ) {
        let r = h.replay_since(topic, since, now);
        if r.fetch {
            self.defer(topic, None, Some(super::wire::MISSED_UNKNOWN));
            return;
        }
        self.send(topic, r, outbox);
    }

    fn send(&mut self, topic: &Arc<str>, r: Replay, outbox: &Outbox) {
        if let Some(gap) = &r.gap {
            push_gap(outbox, gap);
        }
        for e in &r.events {
            outbox.push_event(e);
        }
        if let Some(head) = r.head {
            self.marks.insert(topic.clone(), head);
        }
    }

    /// The connection unsubscribed from `topic`.
    pub fn unsubscribed(&mut self, topic: &str) {
        self.marks.remove(topic);
        self.deferred.remove(topic);
    }

    /// Sends what the connection missed since `from` (none: it starts at
    /// the head). With `announce`, the client did not name a position for
    /// the topic, so it first learns where it starts: a `GAP` with 0
    /// missed. Without that, a client that received nothing of a topic
    /// before a cut would have no position to resume from.
    fn replay(
        &mut self,
        h: &mut TopicHistory,
        topic: &Arc<str>,
        from: Option<Position>,
        announce: bool,
        now: Instant,
        outbox: &Outbox,
    ) {
        let r = h.replay(topic, from, now);
        let announce = announce.then_some(0);
        if r.fetch {
            self.defer(topic, from, announce);
            return;
        }
        self.finish(topic, r, from, announce, outbox);
    }

    /// The connection's first message arrived with these positions: replay
    /// every subscribed topic from the client's position (or from where it
    /// subscribed), keep the others for a later subscription.
    pub fn release(&mut self, req: ResumeRequest, h: &mut TopicHistory, now: Instant, outbox: &Outbox) {
        if !self.held {
            return;
        }
        self.held = false;
        self.since = req.since;
        let mut named = std::collections::HashSet::new();
        for (topic, p) in req.positions.into_iter().take(MAX_RESUME_TOPICS) {
            let topic: Arc<str> = topic.into();
            match self.marks.get_mut(&topic) {
                Some(mark) => {
                    *mark = p;
                    named.insert(topic);
                }
                None => {
                    self.pending.insert(topic, p);
                }
            }
        }
        let topics: Vec<(Arc<str>, Position)> = self.marks.iter().map(|(t, p)| (t.clone(), *p)).collect();
        for (topic, mark) in topics {
            let lost = self.lost_while_held.remove(&topic);
            match self.since {
                Some(since) if !named.contains(&topic) => self.replay_since(h, &topic, since, now, outbox),
                _ => {
                    let announce = !named.contains(&topic);
                    self.replay(h, &topic, Some(mark), announce, now, outbox);
                }
            }
            if lost {
                self.held = false;
                self.lost(&topic, outbox);
            }
        }
        // Everything up to here is in the outbox: the client's next resume
        // may start from this point.
        let mut msg = Vec::new();
        encode_resume_point(&mut msg, h.point(), false);
        outbox.push_message(&msg);
    }

    /// Events of `topic` were lost before they got a position here (the
    /// broker was unreachable, so other servers' events never arrived):
    /// the client gets a gap notice of unknown size at its current place
    /// in the topic, or, while held, right after the topic's replay.
    pub fn lost(&mut self, topic: &Arc<str>, outbox: &Outbox) {
        if self.held {
            if self.marks.contains_key(topic) {
                self.lost_while_held.insert(topic.clone());
            }
            return;
        }
        if self.deferred.contains_key(topic) {
            // The broker's answer, read after the loss, says what is gone.
            return;
        }
        // Without a position here (a subscription that has received nothing
        // yet) the notice names the unknown position: the client forgets
        // its own and takes the next event's, after reporting the loss.
        let position = self.marks.get(topic).copied().unwrap_or(super::wire::UNKNOWN_POSITION);
        push_gap(outbox, &Gap { topic: topic.to_string(), position, missed: super::wire::MISSED_UNKNOWN });
    }

    /// Whether a live event at `at` in `topic` goes to this connection (and
    /// if so, it becomes the mark).
    pub fn admit(&mut self, topic: &Arc<str>, at: Position) -> bool {
        if self.held || self.deferred.contains_key(topic) {
            return false;
        }
        match self.marks.get_mut(topic) {
            Some(m) if m.epoch == at.epoch && at.offset <= m.offset => false,
            Some(m) => {
                *m = at;
                true
            }
            None => {
                self.marks.insert(topic.clone(), at);
                true
            }
        }
    }

    /// Topics with a mark (for tests).
    #[cfg(test)]
    fn marked(&self) -> std::collections::HashSet<Arc<str>> {
        self.marks.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EncodedEvent;
    use crate::resume::{parse_topic_event, Fetched, HistoryLimits};

    fn drained(outbox: &Outbox) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        for msg in outbox.take_messages_for_test() {
            let offset = match msg[0] {
                0x32 => parse_topic_event(&msg[1..]).unwrap().position.offset,
                0x34 => crate::resume::parse_resume_point(&msg[1..]).unwrap().0.seq,
                _ => u64::from_le_bytes(msg[9..17].try_into().unwrap()),
            };
            out.push((msg[0], offset));
        }
        out
    }

    #[test]
    fn held_then_released_replays_from_the_client_position_and_skips_covered_live_events() {
        let mut history = TopicHistory::new(0, HistoryLimits::default());
        let (t, now): (Arc<str>, _) = ("t".into(), Instant::now());
        let mut positions = Vec::new();
        for _ in 0..5 {
            positions.push(history.append(&t, now, 1, b"x").unwrap().0);
        }
        let outbox = Outbox::new(0);
        let mut r = ConnectionResume::new();
        r.subscribed(&t, &mut history, now, &outbox);
        assert!(!r.admit(&t, positions[4]), "held: live events wait for the replay");
        let req = ResumeRequest { since: None, positions: vec![("t".into(), positions[1])] };
        r.release(req, &mut history, now, &outbox);
        assert_eq!(
            drained(&outbox),
            [(0x32, 3), (0x32, 4), (0x32, 5), (0x34, 5)],
            "no announcement: the client named t"
        );
        assert!(!r.admit(&t, positions[4]), "covered by the replay");
        let (p6, _) = history.append(&t, now, 1, b"x").unwrap();
        assert!(r.admit(&t, p6));
        r.lost(&t, &outbox);
        let gap = crate::resume::parse_gap(&outbox.take_messages_for_test()[0][1..]).unwrap();
        assert_eq!((gap.position, gap.missed), (p6, crate::resume::MISSED_UNKNOWN), "at the client's place");
        assert_eq!(r.marked(), std::collections::HashSet::from([t.clone()]));
        // A topic subscribed after release, with no position from the
        // client: it learns where it starts (a GAP of 0), then live events.
        let u: Arc<str> = "u".into();
        history.append(&u, now, 1, b"x");
        r.subscribed(&u, &mut history, now, &outbox);
        assert_eq!(drained(&outbox), [(0x33, 1)]);
    }

    #[test]
    fn a_replay_the_broker_cache_does_not_cover_waits_for_the_broker_answer() {
        let mut cache = TopicHistory::broker_cache(0, HistoryLimits::default());
        let (t, now): (Arc<str>, _) = ("t".into(), Instant::now());
        let at = |offset| Position { epoch: 50, offset };
        let ev = |o| EncodedEvent::positioned(1, "t", at(o), b"x");
        cache.insert(&t, at(9), now, ev(9));
        let outbox = Outbox::new(0);
        let mut r = ConnectionResume::new();
        // The client was at 5 on another server; this one has only 9.
        r.release(ResumeRequest { since: None, positions: vec![("t".into(), at(5))] }, &mut cache, now, &outbox);
        r.subscribed(&t, &mut cache, now, &outbox);
        assert_eq!(drained(&outbox), [(0x34, 1)], "nothing of t yet");
        assert!(r.is_deferred("t"));
        assert_eq!(r.take_fetches(), vec![(t.clone(), Some(at(5)))]);
        assert!(r.take_fetches().is_empty(), "asked once");
        assert!(!r.admit(&t, at(10)), "live events wait while deferred");
        r.lost(&t, &outbox);
        assert!(drained(&outbox).is_empty(), "the answer tells what is lost");
        // An answer from after a later position does not resolve it.
        let late = Fetched { epoch: 50, after: 8, head: 10, events: vec![(9, ev(9)), (10, ev(10))] };
        assert!(!r.fetched(&t, Some(&late), &mut cache, now, &outbox));
        let answer = Fetched { epoch: 50, after: 5, head: 10, events: (6..=10).map(|o| (o, ev(o))).collect() };
        // The answer reaches the shard late: live events 10 and 11 passed
        // (skipped while deferred); 11 follows from the cache.
        cache.insert(&t, at(10), now, ev(10));
        cache.insert(&t, at(11), now, ev(11));
        assert!(!r.admit(&t, at(11)));
        assert!(r.fetched(&t, Some(&answer), &mut cache, now, &outbox));
        assert_eq!(drained(&outbox), [(0x32, 6), (0x32, 7), (0x32, 8), (0x32, 9), (0x32, 10), (0x32, 11)], "no gap");
        assert!(!r.admit(&t, at(11)), "covered by the answer and the cache");
        assert!(r.admit(&t, at(12)));
        assert!(!r.fetched(&t, Some(&answer), &mut cache, now, &outbox), "resolved once");
    }

    #[test]
    fn a_failed_broker_request_is_an_unknown_gap_and_a_new_subscription_takes_every_event_from_now_on() {
        let mut cache = TopicHistory::broker_cache(0, HistoryLimits::default());
        let (t, u, now): (Arc<str>, Arc<str>, _) = ("t".into(), "u".into(), Instant::now());
        let outbox = Outbox::new(0);
        let mut r = ConnectionResume::new();
        r.subscribed(&u, &mut cache, now, &outbox);
        let p = Position { epoch: 50, offset: 5 };
        r.release(ResumeRequest { since: None, positions: vec![("t".into(), p)] }, &mut cache, now, &outbox);
        r.subscribed(&t, &mut cache, now, &outbox);
        assert_eq!(r.take_fetches(), vec![(t.clone(), Some(p))], "only the named position asks the broker");
        assert_eq!(drained(&outbox), [(0x34, 0)], "no announcement for u: no position is known here");
        assert!(r.admit(&u, Position { epoch: 70, offset: 1 }), "u takes the first event routed after it");
        assert!(r.fetched(&t, None, &mut cache, now, &outbox));
        let gap = crate::resume::parse_gap(&outbox.take_messages_for_test()[0][1..]).unwrap();
        assert_eq!((gap.position, gap.missed), (p, crate::resume::MISSED_UNKNOWN));
        // A client that comes from another server with no position for a
        // topic this server never saw: the broker says where it stands.
        let mut moved = ConnectionResume::new();
        moved.subscribed(&u, &mut cache, now, &outbox);
        let other = ResumePoint { base: 9, seq: 4 };
        moved.release(ResumeRequest { since: Some(other), positions: vec![] }, &mut cache, now, &outbox);
        assert_eq!(moved.take_fetches(), vec![(u.clone(), None)]);
        let head = Fetched { epoch: 70, after: 0, head: 3, events: vec![] };
        drained(&outbox);
        assert!(moved.fetched(&u, Some(&head), &mut cache, now, &outbox));
        let gap = crate::resume::parse_gap(&outbox.take_messages_for_test()[0][1..]).unwrap();
        let unknown = crate::resume::MISSED_UNKNOWN;
        assert_eq!((gap.position, gap.missed), (Position { epoch: 70, offset: 3 }, unknown), "may have missed some");
        assert!(!moved.admit(&u, Position { epoch: 70, offset: 3 }));
        assert!(moved.admit(&u, Position { epoch: 70, offset: 4 }));
    }
}
