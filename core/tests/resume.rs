//! Resume rules on the core alone, in the style of `pair.rs`: the server's
//! topic history and one connection's `ConnectionResume` on one side, a
//! `ClientSession` on the other, messages moved by hand through in-memory
//! queues, time simulated. A cut drops whatever was still in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hardlight_core::envelope::{decode_client, ClientMessage};
use hardlight_core::resume::{parse_resume, ConnectionResume, GapNotice, HistoryLimits, TopicHistory};
use hardlight_core::session::{ClientSession, SessionEvent};
use hardlight_core::{EventLimits, Outbox, SlowConsumerPolicy};

struct World {
    history: TopicHistory,
    now: Instant,
    topic: Arc<str>,
    /// The server's side of the current transport, if one is open.
    conn: Option<(ConnectionResume, Outbox)>,
    client: ClientSession,
    received: Vec<u64>,
    gaps: Vec<GapNotice>,
}

impl World {
    fn new(limits: HistoryLimits) -> Self {
        let mut client = ClientSession::new();
        client.enable_resume();
        Self {
            history: TopicHistory::new(1 << 32, limits),
            now: Instant::now(),
            topic: "t".into(),
            conn: None,
            client,
            received: Vec::new(),
            gaps: Vec::new(),
        }
    }

    /// Opens a transport: the server subscribes the connection at connect
    /// (held), the client's first message (RESUME) releases it.
    fn connect(&mut self) {
        let (mut r, outbox) = (ConnectionResume::new(), Outbox::new(0));
        outbox.open();
        r.opened(&self.history, &outbox);
        r.subscribed(&self.topic, &mut self.history, self.now, &outbox);
        self.client.reopen(true);
        self.conn = Some((r, outbox));
        // The initial resume point comes with the initial state: the client
        // is not ready without it.
        self.pump(usize::MAX);
    }

    /// The client's first message reaches the server.
    fn first_message(&mut self) {
        assert!(self.client.features().is_none() || self.client.is_ready());
        let msg = self.client.poll_transmit().expect("RESUME queued first");
        let Ok(ClientMessage::Resume { body }) = decode_client(&msg) else { panic!("not a RESUME: {msg:?}") };
        let req = parse_resume(body).unwrap();
        let (r, outbox) = self.conn.as_mut().unwrap();
        r.release(req, &mut self.history, self.now, outbox);
        self.client.release();
    }

    fn emit(&mut self, n: u64) {
        let (at, framed) = self.history.append(&self.topic, self.now, 0, &n.to_le_bytes()).unwrap();
        if let Some((r, outbox)) = self.conn.as_mut() {
            if r.admit(&self.topic, at) {
                outbox.push_event(&framed);
            }
        }
    }

    /// Delivers up to `max` queued messages to the client.
    fn pump(&mut self, max: usize) {
        let Some((_, outbox)) = &self.conn else { return };
        let msgs = outbox.take_messages_for_test();
        let (now, later) = msgs.split_at(max.min(msgs.len()));
        for m in now {
            self.client.handle_message(m).unwrap();
        }
        for m in later {
            outbox.push_message(m);
        }
        while let Some(e) = self.client.poll_event() {
            match e {
                SessionEvent::Event { archive, .. } => {
                    self.received.push(u64::from_le_bytes(archive[..8].try_into().unwrap()))
                }
                SessionEvent::Gap(g) => self.gaps.push(g),
                _ => {}
            }
        }
    }

    fn cut(&mut self) {
        self.conn = None;
        self.client.handle_disconnect("cut");
    }
}

fn limits(max_events: usize, max_age: Duration) -> HistoryLimits {
    HistoryLimits { max_events, max_age, ..HistoryLimits::default() }
}

/// While the client is away: events 0..3, then 11 s, then 3..5; then it
/// reconnects and everything queued is delivered.
fn away_past_an_age(w: &mut World) {
    for n in 0..3 {
        w.emit(n);
    }
    w.now += Duration::from_secs(11);
    for n in 3..5 {
        w.emit(n);
    }
    w.connect();
    w.first_message();
    w.pump(usize::MAX);
}

#[test]
fn a_cut_mid_stream_then_resume_delivers_each_event_once_in_order() {
    let mut w = World::new(HistoryLimits::default());
    w.connect();
    w.first_message();
    for n in 0..10 {
        w.emit(n);
    }
    w.pump(4);
    w.cut(); // 4..10 were in flight: lost with the transport
    for n in 10..20 {
        w.emit(n);
    }
    w.connect();
    w.first_message();
    w.pump(usize::MAX);
    for n in 20..25 {
        w.emit(n);
    }
    w.pump(usize::MAX);
    assert_eq!(w.received, (0..25).collect::<Vec<_>>());
    assert!(w.gaps.is_empty());
    assert_eq!(w.client.duplicates_dropped(), 0);
}

#[test]
fn events_emitted_while_held_come_once_through_the_replay() {
    let mut w = World::new(HistoryLimits::default());
    w.connect();
    w.first_message();
    w.emit(0);
    w.pump(usize::MAX);
    w.cut();
    w.connect();
    w.emit(1); // held: not sent live
    w.emit(2);
    w.first_message(); // replays 1 and 2
    w.emit(3);
    w.pump(usize::MAX);
    assert_eq!(w.received, [0, 1, 2, 3]);
    // A replayed copy that reaches the client again is dropped, not delivered.
    let (at, framed) = (w.client.position("t").unwrap(), w.history.append(&w.topic, w.now, 0, &9u64.to_le_bytes()));
    let dup = w.history.replay(&w.topic, Some(hardlight_core::resume::Position { offset: at.offset - 1, ..at }), w.now);
    let copy = &dup.events[0].frame()[2..];
    w.client.handle_message(copy).unwrap();
    assert_eq!(w.client.duplicates_dropped(), 1);
    drop(framed);
}

#[test]
fn past_the_count_bound_the_client_gets_a_counted_gap_then_what_is_left() {
    let mut w = World::new(limits(5, Duration::from_secs(60)));
    w.connect();
    w.first_message();
    for n in 0..3 {
        w.emit(n);
    }
    w.pump(usize::MAX);
    w.cut();
    for n in 3..23 {
        w.emit(n);
    }
    w.connect();
    w.first_message();
    w.pump(usize::MAX);
    assert_eq!(w.gaps, [GapNotice { topic: Some("t".into()), missed: Some(15) }]);
    assert_eq!(w.received, [0, 1, 2, 18, 19, 20, 21, 22]);
}

#[test]
fn past_the_age_bound_the_client_gets_a_counted_gap() {
    let mut w = World::new(limits(1000, Duration::from_secs(10)));
    w.connect();
    w.first_message();
    w.emit(100);
    w.pump(usize::MAX);
    w.cut();
    away_past_an_age(&mut w);
    assert_eq!(w.gaps, [GapNotice { topic: Some("t".into()), missed: Some(3) }]);
    assert_eq!(w.received, [100, 3, 4]);
}

/// The hole the resume point closes: a client cut before it received
/// anything of a topic has no position in it, yet it misses nothing
/// silently. Within the history it gets the events since its resume point;
/// past the history, a gap (count unknown: it never had a position).
#[test]
fn a_topic_without_a_position_resumes_from_the_resume_point() {
    for (max_age, want_gap, want) in [(60, None, vec![0, 1, 2, 3, 4]), (10, Some(None), vec![3, 4])] {
        let mut w = World::new(limits(1000, Duration::from_secs(max_age)));
        w.connect();
        w.first_message();
        w.cut(); // the announcement and the resume point after the replay were in flight
        away_past_an_age(&mut w);
        let gaps: Vec<_> = w.gaps.iter().map(|g| g.missed).collect();
        assert_eq!(gaps, want_gap.into_iter().collect::<Vec<_>>(), "max age {max_age}");
        assert_eq!(w.received, want, "max age {max_age}");
    }
}

#[test]
fn a_server_restarted_without_its_history_gives_a_gap_of_unknown_size() {
    let mut w = World::new(HistoryLimits::default());
    w.connect();
    w.first_message();
    w.emit(0);
    w.pump(usize::MAX);
    w.cut();
    w.emit(1); // lost with the old server
    w.history = TopicHistory::new(7 << 40, HistoryLimits::default());
    w.connect();
    w.first_message();
    w.emit(2);
    w.pump(usize::MAX);
    assert_eq!(w.gaps, [GapNotice { topic: Some("t".into()), missed: None }]);
    assert_eq!(w.received, [0, 2]);
}

#[test]
fn events_the_server_dropped_for_a_slow_reader_are_a_gap_too() {
    let mut w = World::new(HistoryLimits::default());
    w.connect();
    w.first_message();
    let (_, outbox) = w.conn.as_ref().unwrap();
    outbox.set_event_limits(EventLimits {
        max_events: 2,
        max_bytes: usize::MAX,
        policy: SlowConsumerPolicy::DropOldest,
    });
    for n in 0..5 {
        w.emit(n);
    }
    w.pump(usize::MAX);
    assert_eq!(w.received, [3, 4]);
    assert_eq!(w.gaps, [GapNotice { topic: Some("t".into()), missed: Some(3) }]);
}
