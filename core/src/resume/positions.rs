//! The client's side of resume: the last position per topic, duplicate and
//! gap detection on every positioned event, and the `RESUME` request.

use std::collections::HashMap;

use super::wire::{encode_resume, Gap, Position, ResumePoint, MAX_RESUME_TOPICS, MISSED_UNKNOWN, UNKNOWN_POSITION};

/// Default number of topics a client tracks positions for: as many as one
/// `RESUME` can name. Events of further topics are delivered, and the next
/// reconnect reports a gap notice without a topic for them.
pub const DEFAULT_MAX_TRACKED_TOPICS: usize = MAX_RESUME_TOPICS;

/// The application's notice that events were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapNotice {
    /// The topic, or `None` for "topics beyond the tracked bound"
    /// ([`DEFAULT_MAX_TRACKED_TOPICS`]), which could not be resumed.
    pub topic: Option<String>,
    /// Events missed, when known.
    pub missed: Option<u64>,
}

/// What to do with a positioned event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// The next event of its topic: deliver it.
    Deliver,
    /// Already delivered (at or before the topic's position): drop it.
    Duplicate,
    /// Events are missing before this one: report the notice, then deliver.
    GapThenDeliver(GapNotice),
}

/// Last position per topic (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct Positions {
    map: HashMap<String, Position>,
    max: usize,
    overflowed: bool,
    /// The last resume point the server sent.
    since: Option<ResumePoint>,
}

impl Positions {
    /// Tracks at most `max` topics.
    pub fn new(max: usize) -> Self {
        Self { map: HashMap::new(), max, overflowed: false, since: None }
    }

    /// The position of `topic`, if tracked.
    pub fn get(&self, topic: &str) -> Option<Position> {
        self.map.get(topic).copied()
    }

    /// Topics tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no topic is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Applies an event at `at` in `topic`.
    pub fn on_event(&mut self, topic: &str, at: Position) -> Received {
        let Some(last) = self.map.get_mut(topic) else {
            if self.map.len() >= self.max {
                self.overflowed = true;
            } else {
                self.map.insert(topic.to_string(), at);
            }
            return Received::Deliver;
        };
        let verdict = if last.epoch != at.epoch {
            Received::GapThenDeliver(GapNotice { topic: Some(topic.to_string()), missed: None })
        } else if at.offset <= last.offset {
            return Received::Duplicate;
        } else if at.offset > last.offset + 1 {
            Received::GapThenDeliver(GapNotice {
                topic: Some(topic.to_string()),
                missed: Some(at.offset - last.offset - 1),
            })
        } else {
            Received::Deliver
        };
        *last = at;
        verdict
    }

    /// Applies the server's `GAP`: the topic continues from its position.
    /// A `GAP` of 0 missed only announces the position (sent when the
    /// connection subscribes): no notice.
    pub fn on_gap(&mut self, gap: &Gap) -> Option<GapNotice> {
        if gap.position == UNKNOWN_POSITION {
            // The server does not know where this client stands: the next
            // event of the topic starts a new position, without a second notice.
            self.map.remove(&gap.topic);
        } else if self.map.contains_key(&gap.topic) || self.map.len() < self.max {
            self.map.insert(gap.topic.clone(), gap.position);
        } else {
            self.overflowed = true;
        }
        (gap.missed != 0).then(|| GapNotice {
            topic: Some(gap.topic.clone()),
            missed: (gap.missed != MISSED_UNKNOWN).then_some(gap.missed),
        })
    }

    /// The server's `RESUME_POINT`: named in the next `RESUME`. The
    /// initial point of a connection counts only on the first one: on a
    /// reconnect, the replay of what was missed since the older point may
    /// still be on its way, and only the point after it covers it.
    pub fn on_point(&mut self, point: ResumePoint, initial: bool) {
        if !initial || self.since.is_none() {
            self.since = Some(point);
        }
    }

    /// The point the next `RESUME` names.
    pub fn since(&self) -> Option<ResumePoint> {
        self.since
    }

    /// The `RESUME` message for a new connection, and a notice for the
    /// topics that could not be tracked since the last one, if any.
    pub fn resume_message(&mut self) -> (Vec<u8>, Option<GapNotice>) {
        let mut out = Vec::new();
        encode_resume(&mut out, self.since, self.map.iter().map(|(t, p)| (t.as_str(), *p)));
        let lost = std::mem::take(&mut self.overflowed).then_some(GapNotice { topic: None, missed: None });
        (out, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: u64 = 5;
    fn at(offset: u64) -> Position {
        Position { epoch: E, offset }
    }

    #[test]
    fn in_order_duplicate_and_gap() {
        let mut p = Positions::new(4);
        assert_eq!(p.on_event("t", at(3)), Received::Deliver, "first event of a topic");
        assert_eq!(p.on_event("t", at(4)), Received::Deliver);
        assert_eq!(p.on_event("t", at(4)), Received::Duplicate);
        assert_eq!(p.on_event("t", at(2)), Received::Duplicate);
        assert_eq!(
            p.on_event("t", at(9)),
            Received::GapThenDeliver(GapNotice { topic: Some("t".into()), missed: Some(4) })
        );
        assert_eq!(
            p.on_event("t", Position { epoch: 6, offset: 1 }),
            Received::GapThenDeliver(GapNotice { topic: Some("t".into()), missed: None })
        );
        assert_eq!(p.get("t"), Some(Position { epoch: 6, offset: 1 }));
    }

    #[test]
    fn a_server_gap_moves_the_position() {
        let mut p = Positions::new(4);
        p.on_event("t", at(1));
        let n = p.on_gap(&Gap { topic: "t".into(), position: at(10), missed: 8 });
        assert_eq!(n, Some(GapNotice { topic: Some("t".into()), missed: Some(8) }));
        assert_eq!(p.on_event("t", at(11)), Received::Deliver);
        let n = p.on_gap(&Gap { topic: "t".into(), position: at(0), missed: MISSED_UNKNOWN });
        assert_eq!(n.unwrap().missed, None);
        assert_eq!(p.on_gap(&Gap { topic: "u".into(), position: at(4), missed: 0 }), None, "an announcement");
        assert_eq!(p.get("u"), Some(at(4)));
        assert_eq!(
            p.on_event("u", at(6)),
            Received::GapThenDeliver(GapNotice { topic: Some("u".into()), missed: Some(1) })
        );
    }

    #[test]
    fn a_gap_at_the_unknown_position_reports_the_loss_once_and_forgets_the_position() {
        let mut p = Positions::new(4);
        p.on_event("t", at(3));
        let n = p.on_gap(&Gap { topic: "t".into(), position: UNKNOWN_POSITION, missed: MISSED_UNKNOWN });
        assert_eq!(n, Some(GapNotice { topic: Some("t".into()), missed: None }));
        assert_eq!(p.get("t"), None, "the server did not know where the client stood");
        let next = Position { epoch: 9, offset: 40 };
        assert_eq!(p.on_event("t", next), Received::Deliver, "no second notice for the same loss");
        assert_eq!(p.get("t"), Some(next));
    }

    #[test]
    fn the_tracked_bound_is_reported_as_a_gap_at_the_next_resume() {
        assert_eq!(DEFAULT_MAX_TRACKED_TOPICS, MAX_RESUME_TOPICS);
        let mut p = Positions::new(1);
        p.on_event("a", at(1));
        assert_eq!(p.on_event("b", at(1)), Received::Deliver, "delivered, untracked");
        assert_eq!(p.len(), 1);
        let (msg, lost) = p.resume_message();
        assert_eq!(msg[17], 1, "one entry");
        assert_eq!(lost, Some(GapNotice { topic: None, missed: None }));
        assert_eq!(p.resume_message().1, None, "reported once");
    }
}
