//! Client and server guarantees, tested on the core alone: a
//! `ServerConnection` and a `ClientConnection` wired together over in-memory
//! byte queues, with no sockets and no runtime, so these run on any OS.
//!
//! The harness's server side is the smallest driver the core allows (the
//! glommio driver does the same steps around a socket): feed bytes, run each
//! call's future (polled once, then whenever the test releases it), flush
//! the outbox once a round, write. Every ordering rule under test (state
//! before the response, refusal of disabled methods, drop notices) is the
//! core's, not the harness's.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hardlight_core::client::{ClientConnection, ClientEvent, ClientRequest};
use hardlight_core::connection::{Event, ServerConnection};
use hardlight_core::limits::Limits;
use hardlight_core::session::{CallToken, ClientSession, SessionEvent};
use hardlight_core::state_diff::StateWriter;
use hardlight_core::{AlignedBuf, CallError, CallErrorCode, EncodeError, EncodedEvent, EventLimits, Outbox};
use hardlight_core::{Rejection, Reply, Service, SlowConsumerPolicy};

/// Method 0 answers with its input at once; method 1 answers with its input
/// once the test opens the gate; method 2 queues a state change, then
/// answers.
struct TestService {
    gate: Rc<Cell<bool>>,
    outbox: Rc<Outbox>,
    calls: Rc<Cell<u32>>,
}

struct Bytes(Vec<u8>);
impl Reply for Bytes {
    fn encode(&self, buf: &mut AlignedBuf) -> Result<bool, EncodeError> {
        buf.clear();
        buf.extend_from_slice(&self.0);
        Ok(true)
    }
}

struct Gated {
    gate: Rc<Cell<bool>>,
    value: Option<Vec<u8>>,
}
impl Future for Gated {
    type Output = Bytes;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Bytes> {
        if self.gate.get() {
            Poll::Ready(Bytes(self.value.take().unwrap()))
        } else {
            Poll::Pending
        }
    }
}

impl Service for TestService {
    type Reply = Bytes;
    const METHOD_NAMES: &'static [&'static str] = &["echo", "gated", "set_state"];

    fn call<'s>(
        &'s self,
        method: u16,
        input: &[u8],
        _max_depth: usize,
    ) -> Result<impl Future<Output = Bytes> + use<'s>, Rejection> {
        self.calls.set(self.calls.get() + 1);
        let open = Rc::new(Cell::new(true));
        match method {
            0 => Ok(Gated { gate: open, value: Some(input.to_vec()) }),
            1 => Ok(Gated { gate: self.gate.clone(), value: Some(input.to_vec()) }),
            2 => {
                let mut w = StateWriter::new();
                w.field(0, &(input.len() as u64)).unwrap();
                self.outbox.push_message(w.message().unwrap());
                Ok(Gated { gate: open, value: Some(input.to_vec()) })
            }
            m => Err(Rejection::UnknownMethod(m)),
        }
    }
}

type Pending = Pin<Box<dyn Future<Output = Bytes>>>;

/// A client and a server connected by two byte queues.
struct Pair {
    server: ServerConnection,
    /// Leaked so that call futures (which borrow the service) can be kept.
    service: &'static TestService,
    outbox: Rc<Outbox>,
    pending: Vec<(u8, Pending)>,
    client: ClientConnection,
    /// Everything the client was told, in order.
    seen: RefCell<VecDeque<ClientEvent>>,
    /// Simulated time: the driver hands it to the server before "parking".
    now: Instant,
    /// When set, bytes from the client are lost (a peer that died).
    cut: bool,
    /// Calls whose futures the server dropped on the core's `Event::Cancel`.
    dropped: Vec<u8>,
}

impl Pair {
    fn new() -> Self {
        Self::with(Limits::default(), EventLimits::default())
    }

    fn with(limits: Limits, events: EventLimits) -> Self {
        let outbox = Rc::new(Outbox::new(TestService::METHOD_NAMES.len()));
        outbox.set_event_limits(events);
        let service: &'static TestService = Box::leak(Box::new(TestService {
            gate: Rc::new(Cell::new(false)),
            outbox: outbox.clone(),
            calls: Rc::default(),
        }));
        let client = ClientConnection::new(&ClientRequest::new("pair.test"), [3; 16], 0x5eed, ClientSession::new());
        let mut pair = Self {
            server: ServerConnection::new(limits),
            service,
            outbox,
            pending: Vec::new(),
            client,
            seen: RefCell::default(),
            now: Instant::now(),
            cut: false,
            dropped: Vec::new(),
        };
        pair.drive();
        assert!(matches!(pair.next(), Some(ClientEvent::Connected)), "upgrade accepted");
        pair
    }

    /// Moves bytes both ways and runs calls until nothing changes.
    fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            self.client.flush_calls();
            if self.cut {
                let n = self.client.outbound().len();
                self.client.advance_outbound(n);
            }
            // Client to server, as much as the server's read buffer takes.
            while !self.client.outbound().is_empty() && self.server.wants_read() {
                let buf = self.server.read_buf();
                let n = buf.len().min(self.client.outbound().len());
                if n == 0 {
                    break;
                }
                buf[..n].copy_from_slice(&self.client.outbound()[..n]);
                self.server.on_read(n);
                self.client.advance_outbound(n);
                progress = true;
                self.serve_events();
            }
            self.serve_events();
            self.poll_pending();
            self.server.flush_outbox();
            // Server to client.
            if !self.server.outbound().is_empty() {
                let out = self.server.outbound().to_vec();
                self.server.advance_outbound(out.len());
                self.client.on_read(&out);
                progress = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.seen.borrow_mut().push_back(e);
            }
            if !progress {
                // About to park: the driver's duty is to hand the core the
                // clock (it stamps arrivals and applies due time rules).
                if self.server.handle_timeout(self.now).is_some() {
                    continue;
                }
                return;
            }
        }
        panic!("the pair did not settle");
    }

    fn serve_events(&mut self) {
        while let Some(ev) = self.server.poll_event() {
            match ev {
                Event::Upgrade(req) => {
                    self.server.accept(&req);
                    self.outbox.open();
                    self.server.attach_outbox(self.outbox.clone(), TestService::METHOD_NAMES);
                    self.server.flush_outbox();
                }
                Event::Cancel { id } => {
                    let before = self.pending.len();
                    self.pending.retain(|(p, _)| *p != id);
                    assert_eq!(self.pending.len(), before - 1, "Cancel names a running call");
                    self.dropped.push(id);
                }
                Event::Call { id, method, input, .. } => {
                    let service = self.service;
                    match service.call(method, input, 64) {
                        Ok(fut) => {
                            let fut: Pending = Box::pin(fut);
                            self.pending.push((id, fut));
                        }
                        Err(r) => self.server.fail(id, r.code(), &r.detail()),
                    }
                    self.poll_pending();
                }
                Event::Closed(_) | Event::HandshakeFailed(_) | Event::Message { .. } => {}
            }
        }
    }

    fn poll_pending(&mut self) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut i = 0;
        while i < self.pending.len() {
            if let Poll::Ready(reply) = self.pending[i].1.as_mut().poll(&mut cx) {
                let (id, _) = self.pending.swap_remove(i);
                self.server.complete(id, &reply);
            } else {
                i += 1;
            }
        }
    }

    /// Moves simulated time forward and lets both sides react.
    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.drive();
    }

    fn call(&mut self, method: u16, input: &[u8]) -> CallToken {
        self.client.session_mut().start_call(method, input).unwrap()
    }

    fn next(&self) -> Option<ClientEvent> {
        self.seen.borrow_mut().pop_front()
    }

    /// The replies seen so far, dropping other events.
    fn replies(&self) -> Vec<(CallToken, Result<Vec<u8>, CallError>)> {
        let mut out = Vec::new();
        while let Some(e) = self.next() {
            if let ClientEvent::Session(SessionEvent::Reply { call, result }) = e {
                out.push((call, result.map(|r| r.payload.to_vec())));
            }
        }
        out
    }

    /// The client's events, as short names, in order.
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = self.next() {
            out.push(match e {
                ClientEvent::Session(SessionEvent::Reply { result, .. }) => {
                    format!("reply:{}", result.map(|r| r.payload.len()).unwrap_or(usize::MAX))
                }
                ClientEvent::Session(SessionEvent::StateChanged) => "state".into(),
                ClientEvent::Session(SessionEvent::FeaturesChanged) => "features".into(),
                ClientEvent::Session(SessionEvent::Event { ty, .. }) => format!("event:{ty}"),
                ClientEvent::Session(SessionEvent::EventsDropped { count }) => format!("dropped:{count}"),
                ClientEvent::Session(SessionEvent::Closed { .. }) => "closed".into(),
                ClientEvent::Connected => "connected".into(),
                ClientEvent::Refused { status, .. } => format!("refused:{status}"),
            });
        }
        out
    }
}

#[test]
fn the_initial_feature_set_arrives_before_anything_else() {
    let pair = Pair::new();
    assert_eq!(pair.names(), vec!["features"]);
    assert!(pair.client.session().is_ready());
}

#[test]
fn replies_reach_their_calls_out_of_order() {
    let mut pair = Pair::new();
    pair.names();
    let slow = pair.call(1, b"slow");
    let fast = pair.call(0, b"fast");
    pair.drive();
    assert_eq!(pair.replies(), vec![(fast, Ok(b"fast".to_vec()))]);
    pair.service.gate.set(true);
    pair.drive();
    assert_eq!(pair.replies(), vec![(slow, Ok(b"slow".to_vec()))]);
}

#[test]
fn a_state_change_reaches_the_client_before_the_response_of_the_call_that_made_it() {
    let mut pair = Pair::new();
    pair.names();
    for n in 1..=5u64 {
        pair.call(2, &vec![0; n as usize]);
        pair.drive();
        assert_eq!(pair.names(), vec!["state".to_string(), format!("reply:{n}")]);
        let field = pair.client.session().state_field(0).map(|a| a.to_vec());
        assert_eq!(field.map(|a| u64::from_le_bytes(a.try_into().unwrap())), Some(n));
    }
}

#[test]
fn the_drop_notice_comes_before_the_next_event() {
    let limits = EventLimits { max_events: 2, policy: SlowConsumerPolicy::DropOldest, ..EventLimits::default() };
    let mut pair = Pair::with(Limits::default(), limits);
    pair.names();
    // Five events queued while the driver does not drain: three are dropped.
    for i in 0..5u8 {
        pair.outbox.push_event(&EncodedEvent::from_archive(9, &[i]));
    }
    pair.drive();
    assert_eq!(pair.names(), vec!["dropped:3", "event:9", "event:9"]);
    assert_eq!(pair.client.session().events_dropped(), 3);
}

#[test]
fn an_abandoned_call_keeps_its_id_until_a_server_without_cancel_answers() {
    let mut pair = Pair::new();
    pair.names();
    // As a server that predates CANCEL announces (no flags): the client
    // then never sends CANCEL and must keep the id until the late answer.
    let old = hardlight_core::envelope::AnnouncedLimits { max_message_size: 1 << 20, flags: 0 };
    pair.client.session_mut().handle_message(&old.encode()).unwrap();
    let gated = pair.call(1, b"late");
    pair.drive();
    pair.client.session_mut().abandon(gated);
    // The other 255 ids are used and answered many times over; the server
    // would answer DuplicateCallId if the abandoned id were reused.
    for _ in 0..4 {
        let calls: Vec<_> = (0..255).map(|_| pair.call(0, b"x")).collect();
        pair.drive();
        let replies = pair.replies();
        assert_eq!(replies.len(), 255);
        assert!(replies.iter().all(|(c, r)| calls.contains(c) && r.is_ok()), "no DuplicateCallId");
    }
    assert_eq!(pair.client.session().in_flight(), 1);
    pair.service.gate.set(true);
    pair.drive();
    assert!(pair.replies().is_empty(), "the late reply is discarded");
    assert_eq!(pair.client.session().in_flight(), 0);
}

#[test]
fn the_257th_call_waits_and_goes_out_when_an_id_frees() {
    let mut pair = Pair::new();
    pair.names();
    let held: Vec<_> = (0..256).map(|_| pair.call(1, b"h")).collect();
    let extra = pair.call(0, b"257th");
    pair.drive();
    assert_eq!(pair.service.calls.get(), 256, "the server saw only 256");
    assert_eq!(pair.client.session().waiting(), 1);
    pair.service.gate.set(true);
    pair.drive();
    let replies = pair.replies();
    assert_eq!(replies.len(), 257);
    assert!(held.iter().all(|h| replies.iter().any(|(c, _)| c == h)));
    assert_eq!(replies.iter().find(|(c, _)| *c == extra).unwrap().1, Ok(b"257th".to_vec()));
}

#[test]
fn a_disabled_method_is_refused_before_it_runs() {
    let mut pair = Pair::new();
    pair.names();
    pair.outbox.update_features(|f| {
        f.disable(0);
    });
    pair.drive();
    assert_eq!(pair.names(), vec!["features"]);
    assert!(!pair.client.session().features().unwrap().is_enabled(0));
    let c = pair.call(0, b"x");
    pair.drive();
    let replies = pair.replies();
    assert!(
        matches!(&replies[0], (t, Err(CallError::Rejected { code: CallErrorCode::MethodDisabled, .. })) if *t == c)
    );
    assert_eq!(pair.service.calls.get(), 0, "the handler never ran");
}

#[test]
fn closing_fails_every_open_call_and_later_calls_at_once() {
    let mut pair = Pair::new();
    pair.names();
    let open: Vec<_> = (0..3).map(|_| pair.call(1, b"p")).collect();
    pair.drive();
    pair.server.close(hardlight_core::CloseCode::GoingAway, "bye");
    pair.drive();
    let names = pair.names();
    assert_eq!(names.iter().filter(|n| n.starts_with("reply:")).count(), open.len());
    assert_eq!(names.last().map(String::as_str), Some("closed"));
    assert!(pair.client.is_closed());
    assert!(
        matches!(pair.client.session_mut().start_call(0, b""), Err(CallError::Disconnected(r)) if r.contains("1001"))
    );
}

fn short_timers() -> Limits {
    Limits { keepalive_interval: Duration::from_secs(20), idle_timeout: Duration::from_secs(60), ..Limits::default() }
}

#[test]
fn a_client_that_answers_pings_stays_connected_however_long_it_is_quiet() {
    let mut pair = Pair::with(short_timers(), EventLimits::default());
    pair.names();
    let start = pair.now;
    assert_eq!(pair.server.poll_timeout(), Some(start + Duration::from_secs(20)), "first ping due");
    for _ in 0..30 {
        pair.advance(Duration::from_secs(10));
    }
    assert!(pair.client.is_open(), "pongs count as activity");
    assert!(pair.server.stats().calls_received == 0);
    let c = pair.call(0, b"still here");
    pair.drive();
    assert_eq!(pair.replies(), vec![(c, Ok(b"still here".to_vec()))]);
}

#[test]
fn a_peer_that_stops_answering_is_closed_4002_at_the_idle_timeout() {
    let mut pair = Pair::with(short_timers(), EventLimits::default());
    pair.names();
    pair.cut = true;
    pair.advance(Duration::from_secs(20));
    assert!(pair.client.is_open(), "pinged at 20 s, not closed");
    assert_eq!(
        pair.server.poll_timeout(),
        Some(pair.now + Duration::from_secs(40)),
        "close due 60 s after the last byte"
    );
    pair.advance(Duration::from_millis(39_999));
    assert!(pair.client.is_open(), "not a moment early");
    pair.advance(Duration::from_millis(1));
    assert!(pair.client.is_closed());
    let names = pair.names();
    assert_eq!(names, vec!["closed"]);
    assert!(pair.client.session().close_reason().unwrap().contains("4002"));
}

#[test]
fn an_abandoned_call_is_cancelled_on_the_server_which_frees_its_id() {
    let mut p = Pair::new();
    assert!(p.client.session_mut().accepts_deadline_and_cancel(), "the server announced CANCEL");
    let gated = p.call(1, b"slow");
    p.drive();
    assert_eq!(p.pending.len(), 1, "the handler runs");
    assert!(p.client.session_mut().abandon(gated));
    assert_eq!(p.client.session_mut().in_flight(), 1, "reserved until the server answers");
    p.drive();
    assert!(p.pending.is_empty(), "CANCEL dropped the handler");
    assert_eq!(p.dropped.len(), 1);
    assert_eq!(p.client.session_mut().in_flight(), 0, "the server's Cancelled answer freed the id");
    assert!(p.replies().is_empty(), "no reply for an abandoned call");
    // The gate opening later changes nothing: the future is gone.
    p.service.gate.set(true);
    let next = p.call(0, b"after");
    p.drive();
    assert_eq!(p.replies(), vec![(next, Ok(b"after".to_vec()))]);
}

#[test]
fn a_call_past_its_deadline_is_dropped_and_answered_deadline_exceeded_at_that_instant() {
    let mut p = Pair::new();
    let call = p.client.session_mut().start_call_within(1, b"slow", Some(Duration::from_millis(100))).unwrap();
    p.drive();
    assert_eq!(p.pending.len(), 1);
    assert_eq!(p.server.poll_timeout(), Some(p.now + Duration::from_millis(100)), "the server's timer is the deadline");
    p.advance(Duration::from_millis(99));
    assert_eq!(p.pending.len(), 1, "not before its deadline");
    assert!(p.replies().is_empty());
    p.advance(Duration::from_millis(1));
    assert!(p.pending.is_empty(), "dropped at its deadline");
    match p.replies().as_slice() {
        [(c, Err(CallError::Rejected { code: CallErrorCode::DeadlineExceeded, .. }))] => assert_eq!(*c, call),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert_eq!(p.client.session_mut().in_flight(), 0);
}

#[test]
fn a_call_answered_before_its_deadline_leaves_no_timer_behind() {
    let mut p = Pair::new();
    let call = p.client.session_mut().start_call_within(0, b"fast", Some(Duration::from_millis(100))).unwrap();
    p.drive();
    assert_eq!(p.replies(), vec![(call, Ok(b"fast".to_vec()))]);
    // The next instant the server asks for is its keepalive, not the old deadline.
    assert!(p.server.poll_timeout().unwrap() > p.now + Duration::from_secs(1));
    // A CANCEL that crosses the answer is ignored: the id is not live.
    p.advance(Duration::from_millis(200));
    assert!(p.dropped.is_empty());
}
