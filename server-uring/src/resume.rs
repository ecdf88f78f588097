//! Resume on the server: the server-wide topic history
//! ([`hardlight_core::resume::TopicHistory`], behind a mutex shared by every
//! shard and emitter) and each resuming connection's per-topic marks.
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
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hardlight_core::resume::{HistoryLimits, Position, TopicHistory, MAX_RESUME_TOPICS};
use hardlight_core::{EncodedEvent, Outbox};

/// The history every shard and emitter of one server share.
pub(crate) type SharedHistory = Arc<Mutex<TopicHistory>>;

/// A history whose epochs start from a random base, so that a restarted
/// server's positions never match the old one's.
pub(crate) fn new_history(limits: HistoryLimits) -> SharedHistory {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    Arc::new(Mutex::new(TopicHistory::new(h.finish(), limits)))
}

/// Locks the history; a panic elsewhere while it was held leaves it
/// consistent (every method completes its update before returning).
pub(crate) fn lock(history: &Mutex<TopicHistory>) -> MutexGuard<'_, TopicHistory> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}

/// One resuming connection's state.
#[derive(Debug)]
pub(crate) struct ResumeState {
    /// Opted in, `RESUME` not yet taken.
    held: bool,
    /// Positions from `RESUME` for topics not subscribed yet (at most
    /// `MAX_RESUME_TOPICS`), applied when the connection subscribes.
    pending: HashMap<Arc<str>, Position>,
    /// Per subscribed topic: the last position this connection was given
    /// (or that a replay covered).
    marks: HashMap<Arc<str>, Position>,
}

impl ResumeState {
    pub(crate) fn new() -> Self {
        Self { held: true, pending: HashMap::new(), marks: HashMap::new() }
    }

    /// The connection subscribed to `topic`.
    pub(crate) fn subscribed(&mut self, topic: &Arc<str>, history: &Mutex<TopicHistory>, outbox: &Outbox) {
        if self.marks.contains_key(topic) {
            return;
        }
        let from = self.pending.remove(topic);
        let mut h = lock(history);
        if self.held {
            // Replayed at release, from the client's position or from here.
            let mark = from.or_else(|| h.replay(topic, None, Instant::now()).head);
            if let Some(mark) = mark {
                self.marks.insert(topic.clone(), mark);
            }
        } else {
            self.replay(&mut h, topic, from, outbox);
        }
    }

    /// The connection unsubscribed from `topic`.
    pub(crate) fn unsubscribed(&mut self, topic: &str) {
        self.marks.remove(topic);
    }

    fn replay(&mut self, h: &mut TopicHistory, topic: &Arc<str>, from: Option<Position>, outbox: &Outbox) {
        let r = h.replay(topic, from, Instant::now());
        if let Some(gap) = &r.gap {
            outbox.push_event(&EncodedEvent::gap(gap));
        }
        for e in &r.events {
            outbox.push_event(e);
        }
        if let Some(head) = r.head {
            self.marks.insert(topic.clone(), head);
        }
    }

    /// The connection's first message arrived with these positions: replay
    /// every subscribed topic from the client's position (or from where it
    /// subscribed), keep the others for a later subscription.
    pub(crate) fn release(
        &mut self,
        positions: Vec<(String, Position)>,
        history: &Mutex<TopicHistory>,
        outbox: &Outbox,
    ) {
        if !self.held {
            return;
        }
        self.held = false;
        for (topic, p) in positions.into_iter().take(MAX_RESUME_TOPICS) {
            let topic: Arc<str> = topic.into();
            match self.marks.get_mut(&topic) {
                Some(mark) => *mark = p,
                None => {
                    self.pending.insert(topic, p);
                }
            }
        }
        let mut h = lock(history);
        let topics: Vec<(Arc<str>, Position)> = self.marks.iter().map(|(t, p)| (t.clone(), *p)).collect();
        for (topic, mark) in topics {
            self.replay(&mut h, &topic, Some(mark), outbox);
        }
    }

    /// Whether a live event at `at` in `topic` goes to this connection (and
    /// if so, it becomes the mark).
    pub(crate) fn admit(&mut self, topic: &Arc<str>, at: Position) -> bool {
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
    pub(crate) fn marked(&self) -> std::collections::HashSet<Arc<str>> {
        self.marks.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardlight_core::resume::parse_topic_event;

    fn drained(outbox: &Outbox) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        for msg in outbox.take_messages_for_test() {
            let offset = match msg[0] {
                0x32 => parse_topic_event(&msg[1..]).unwrap().position.offset,
                _ => u64::from_le_bytes(msg[9..17].try_into().unwrap()),
            };
            out.push((msg[0], offset));
        }
        out
    }

    #[test]
    fn held_then_released_replays_from_the_client_position_and_skips_covered_live_events() {
        let history = new_history(HistoryLimits::default());
        let t: Arc<str> = "t".into();
        let mut positions = Vec::new();
        for _ in 0..5 {
            positions.push(lock(&history).append(&t, Instant::now(), 1, b"x").unwrap().0);
        }
        let outbox = Outbox::new(0);
        let mut r = ResumeState::new();
        r.subscribed(&t, &history, &outbox);
        assert!(!r.admit(&t, positions[4]), "held: live events wait for the replay");
        r.release(vec![("t".into(), positions[1])], &history, &outbox);
        assert_eq!(drained(&outbox), [(0x32, 3), (0x32, 4), (0x32, 5)]);
        assert!(!r.admit(&t, positions[4]), "covered by the replay");
        let (p6, _) = lock(&history).append(&t, Instant::now(), 1, b"x").unwrap();
        assert!(r.admit(&t, p6));
        assert_eq!(r.marked(), std::collections::HashSet::from([t]));
    }
}
