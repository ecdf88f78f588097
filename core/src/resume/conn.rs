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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::history::TopicHistory;
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
        }
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
            let mark = from.or_else(|| h.replay(topic, None, now).head);
            if let Some(mark) = mark {
                self.marks.insert(topic.clone(), mark);
            }
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
        self.send(topic, r, outbox);
    }

    fn send(&mut self, topic: &Arc<str>, r: super::history::Replay, outbox: &Outbox) {
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
        let mut r = h.replay(topic, from, now);
        if r.gap.is_none() && announce {
            r.gap = from.or(r.head).map(|position| Gap { topic: topic.to_string(), position, missed: 0 });
        }
        self.send(topic, r, outbox);
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
        if let Some(&position) = self.marks.get(topic) {
            push_gap(outbox, &Gap { topic: topic.to_string(), position, missed: super::wire::MISSED_UNKNOWN });
        }
    }

    /// Whether a live event at `at` in `topic` goes to this connection (and
    /// if so, it becomes the mark).
    pub fn admit(&mut self, topic: &Arc<str>, at: Position) -> bool {
        if self.held {
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
    use crate::resume::{parse_topic_event, HistoryLimits};

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
}
