//! The broker's answer when a server's cache of a topic's log
//! ([`super::TopicHistory::broker_cache`]) does not cover a resuming
//! connection's position, and what each waiting connection gets from it
//! (split from `history.rs`: the cache keeps, this answers).

use super::history::Replay;
use super::wire::{Gap, Position, MISSED_UNKNOWN};
use crate::events::EncodedEvent;

/// The epoch of a broker cache's topic that has seen no event from the
/// broker yet (broker epochs are never 0: see `docs/PROTOCOL.md`).
pub const UNSYNCED_EPOCH: u64 = 0;

/// What the broker's log held for one topic when this server asked: the
/// answer to every connection whose replay of the topic waited for it.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The topic's current epoch in the broker ([`UNSYNCED_EPOCH`]: the
    /// broker holds no life of the topic; it expired, was never emitted
    /// to, or the broker lost its data).
    pub epoch: u64,
    /// The events start after this offset: the position asked for when
    /// its epoch was the broker's, else 0 (everything retained).
    pub after: u64,
    /// The last offset the broker gave out in `epoch`.
    pub head: u64,
    /// The retained events after `after`, ascending and contiguous up to
    /// `head`: offset and framed `TOPIC_EVENT`.
    pub events: Vec<(u64, EncodedEvent)>,
}

impl Fetched {
    /// What a connection that last saw `from` (`None`: a new subscription,
    /// it starts at the broker's head) gets from this answer, or `None`
    /// when the answer does not reach back to `from` (the connection
    /// waits for the answer to its own, later request).
    pub fn replay_for(&self, topic: &str, from: Option<Position>) -> Option<Replay> {
        let head = Position { epoch: self.epoch, offset: self.head };
        let first = self.events.first().map_or(self.head + 1, |(o, _)| *o);
        let gap = |missed| Gap {
            topic: topic.to_string(),
            position: Position { epoch: self.epoch, offset: first - 1 },
            missed,
        };
        let all = || self.events.iter().map(|(_, e)| e.clone()).collect();
        let from = match from {
            Some(p) if p.epoch != UNSYNCED_EPOCH => p,
            // A new subscription: it starts at the head (announced by the
            // caller), or, with no life of the topic in the broker, at its
            // first event.
            _ => {
                let head = (self.epoch != UNSYNCED_EPOCH).then_some(head);
                return Some(Replay { head, ..Replay::default() });
            }
        };
        if self.epoch == UNSYNCED_EPOCH {
            // The broker has no life of the topic: whatever followed `from`
            // is gone. The client keeps its place until the next life.
            let gap = Gap { topic: topic.to_string(), position: from, missed: MISSED_UNKNOWN };
            return Some(Replay { gap: Some(gap), head: Some(from), ..Replay::default() });
        }
        if from.epoch != self.epoch || from.offset > self.head {
            // Another life of the topic, or a position never given out.
            return (self.after == 0).then(|| Replay {
                gap: Some(gap(MISSED_UNKNOWN)),
                events: all(),
                head: Some(head),
                fetch: false,
            });
        }
        if from.offset < self.after {
            return None;
        }
        let gap = (from.offset + 1 < first).then(|| gap(first - 1 - from.offset));
        let events = self.events.iter().filter(|(o, _)| *o > from.offset).map(|(_, e)| e.clone()).collect();
        Some(Replay { gap, events, head: Some(head), fetch: false })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(t: &str, epoch: u64, offset: u64) -> EncodedEvent {
        EncodedEvent::positioned(1, t, Position { epoch, offset }, b"x")
    }

    fn offsets(r: &Replay) -> Vec<u64> {
        r.events
            .iter()
            .map(|e| super::super::wire::parse_topic_event(&e.frame()[3..]).unwrap().position.offset)
            .collect()
    }

    #[test]
    fn the_broker_answer_replays_counts_what_it_lost_or_waits_for_a_later_answer() {
        let f = Fetched { epoch: 50, after: 3, head: 9, events: (6..=9).map(|o| (o, framed("t", 50, o))).collect() };
        let at = |epoch, offset| Position { epoch, offset };
        let r = f.replay_for("t", Some(at(50, 6))).unwrap();
        assert_eq!((r.gap.is_none(), offsets(&r), r.head), (true, vec![7, 8, 9], Some(at(50, 9))));
        let r = f.replay_for("t", Some(at(50, 3))).unwrap();
        let g = r.gap.as_ref().unwrap();
        assert_eq!((g.missed, g.position), (2, at(50, 5)), "4 and 5 were trimmed by the broker");
        assert_eq!(offsets(&r), [6, 7, 8, 9]);
        assert!(f.replay_for("t", Some(at(50, 2))).is_none(), "before what was asked: wait for the own answer");
        assert!(f.replay_for("t", Some(at(49, 2))).is_none(), "another life, and the answer is not everything");
        let r = f.replay_for("t", None).unwrap();
        assert_eq!((r.gap.is_none(), r.events.len(), r.head), (true, 0, Some(at(50, 9))), "a new subscription");
        let everything = Fetched { after: 0, ..f.clone() };
        let r = everything.replay_for("t", Some(at(49, 2))).unwrap();
        assert_eq!(r.gap.as_ref().map(|g| (g.missed, g.position)), Some((MISSED_UNKNOWN, at(50, 5))));
        assert_eq!(offsets(&r), [6, 7, 8, 9]);
        let r = everything.replay_for("t", Some(at(50, 12))).unwrap();
        assert_eq!(r.gap.map(|g| g.missed), Some(MISSED_UNKNOWN), "a position the broker never gave");
        // The broker holds no life of the topic (expired, or restarted
        // without persistence): an unknown gap at the client's place.
        let none = Fetched::default();
        let r = none.replay_for("t", Some(at(50, 4))).unwrap();
        assert_eq!(r.gap.map(|g| (g.missed, g.position)), Some((MISSED_UNKNOWN, at(50, 4))));
        let r = none.replay_for("t", None).unwrap();
        assert!(r.gap.is_none() && r.head.is_none(), "a new subscription of a topic never emitted to");
    }
}
