//! The client side of a connection at message level, with no I/O: call ids
//! and the calls waiting for one, replies and call errors matched to their
//! calls, the mirror of the server's state and feature set, events and drop
//! notices.
//!
//! A driver (the tokio client, a test pair, a port) owns the transport: it
//! opens the WebSocket, hands every binary message from the server to
//! [`ClientSession::handle_message`], sends what [`ClientSession::poll_transmit`]
//! returns, and delivers what [`ClientSession::poll_event`] returns to the
//! application. Every rule about what those messages mean lives here, so
//! that every client of the protocol behaves alike.
//!
//! ```
//! use hardlight_core::session::{ClientSession, SessionEvent};
//!
//! let mut session = ClientSession::new();
//! let call = session.start_call(0, b"input").unwrap();
//! let sent = session.poll_transmit().unwrap();       // a CALL envelope for the socket
//! assert_eq!(sent[0], hardlight_core::envelope::KIND_CALL);
//!
//! // The server answers call id sent[1] with RESULT_OK and an (empty) archive.
//! session.handle_message(&[hardlight_core::envelope::KIND_RESULT_OK, sent[1]]).unwrap();
//! match session.poll_event() {
//!     Some(SessionEvent::Reply { call: c, result }) => assert!(c == call && result.unwrap().ok),
//!     other => panic!("{other:?}"),
//! }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::calls::IdAllocator;
use crate::envelope::{self, ServerMessage};
use crate::error::{CallError, CallErrorCode, DecodeError};
use crate::feature_set::FeatureSet;
use crate::limits::MAX_CALLS_IN_FLIGHT;
use crate::service::RawReply;
use crate::state_diff::{parse_state, ConnectionState};
use crate::wire::AlignedBuf;

/// Default bound on calls waiting for a free call id (all 256 in flight).
/// A call beyond it fails at once with [`CallError::TooManyWaiting`] rather
/// than growing the queue without bound.
pub const DEFAULT_MAX_WAITING_CALLS: usize = 16 * 1024;

/// Identifies one call of a [`ClientSession`] for its whole life, from
/// [`ClientSession::start_call`] to its [`SessionEvent::Reply`]. Unlike a
/// call id, a token is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallToken(u64);

impl CallToken {
    /// The token's number (unique within its session).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// What the session tells its driver, in the order the server's messages
/// said it.
#[derive(Debug)]
pub enum SessionEvent {
    /// A call ended: the server's reply, its call error, or `Disconnected`.
    Reply {
        /// The call, as returned by [`ClientSession::start_call`].
        call: CallToken,
        /// The reply, or why there is none.
        result: Result<RawReply, CallError>,
    },
    /// One or more state fields changed ([`ClientSession::state`] has them).
    StateChanged,
    /// The feature set changed ([`ClientSession::features`]).
    FeaturesChanged,
    /// An event the server pushed: its type and archive.
    Event {
        /// The event type (`Event::TYPE`).
        ty: u16,
        /// The event's archive, to be validated as the type's Rust type
        /// (shared, so that a driver can hand it to several listeners
        /// without copying).
        archive: Arc<[u8]>,
    },
    /// The server dropped `count` events for this connection (it read too
    /// slowly); they were never sent.
    EventsDropped {
        /// Events dropped since the previous notice.
        count: u32,
    },
    /// The connection ended; every call still open failed with
    /// `Disconnected`, and no further event follows.
    Closed {
        /// Why, in words.
        reason: String,
    },
}

/// A message from the server that broke the protocol. The session ignores
/// it (the connection stays usable); the driver should log it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The envelope could not be parsed.
    #[error("malformed envelope from the server: {0}")]
    Envelope(#[from] envelope::EnvelopeError),
    /// A STATE message was malformed.
    #[error("malformed state message from the server: {0}")]
    State(&'static str),
    /// A FEATURES message was malformed.
    #[error("malformed features message from the server: {0}")]
    Features(&'static str),
    /// A LIMITS message was malformed.
    #[error("malformed limits message from the server")]
    Limits,
    /// An EVENT or EVENTS_DROPPED message was malformed.
    #[error("malformed event message from the server")]
    Event,
    /// A reply named a call id that has no call in flight.
    #[error("reply for call id {0}, which has no call in flight")]
    UnexpectedReply(u8),
}

/// A call that has no id yet.
struct Waiting {
    call: CallToken,
    method: u16,
    input: Vec<u8>,
    timeout: Option<Duration>,
}

/// The client side of one connection (see the module docs).
pub struct ClientSession {
    ids: IdAllocator,
    /// The call waiting on each id in flight. `None` for a free id, and for
    /// an id whose call was abandoned: it stays reserved until the server
    /// answers, because the server still holds it live and would refuse its
    /// reuse with `DuplicateCallId`.
    in_flight: Vec<Option<CallToken>>,
    waiting: VecDeque<Waiting>,
    max_waiting: usize,
    next_token: u64,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<SessionEvent>,
    fields: Vec<Option<Vec<u8>>>,
    features: Option<FeatureSet>,
    events_dropped: u64,
    closed: Option<String>,
    /// What the server announced in its LIMITS message, if it did.
    limits: Option<envelope::AnnouncedLimits>,
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientSession {
    /// A session with the default bound on waiting calls.
    pub fn new() -> Self {
        Self::with_max_waiting(DEFAULT_MAX_WAITING_CALLS)
    }

    /// A session that lets at most `max_waiting` calls wait for a call id.
    pub fn with_max_waiting(max_waiting: usize) -> Self {
        Self {
            ids: IdAllocator::new(),
            in_flight: vec![None; MAX_CALLS_IN_FLIGHT],
            waiting: VecDeque::new(),
            max_waiting,
            next_token: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            fields: Vec::new(),
            features: None,
            events_dropped: 0,
            closed: None,
            limits: None,
        }
    }

    /// Starts a call of `method` with the encoded `input`.
    ///
    /// With a free call id, the CALL message is queued for
    /// [`Self::poll_transmit`] at once. With all 256 ids in flight the call
    /// waits (in order) for one to be freed by a reply; the driver's
    /// timeout, if any, ends the wait through [`Self::abandon`].
    ///
    /// Fails with `Disconnected` once the session has closed, with
    /// `TooLarge` when the call would exceed the message size limit the
    /// server announced (the server would close the connection with 1009
    /// for it; the call is not sent and the connection stays open), and
    /// with `TooManyWaiting` when the wait queue is full.
    pub fn start_call(&mut self, method: u16, input: &[u8]) -> Result<CallToken, CallError> {
        self.start_call_within(method, input, None)
    }

    /// [`Self::start_call`] with the caller's time limit, which travels to
    /// the server as the call's deadline (`CALL_DEADLINE`) when the server
    /// announced it accepts one: the server then drops the handler and
    /// answers `DeadlineExceeded` once `timeout` has passed, counted from
    /// when it reads the call. A call that waited for a free id carries its
    /// whole `timeout` (the session has no clock); the driver's own timeout
    /// and [`Self::abandon`], which sends `CANCEL`, end it on time anyway.
    pub fn start_call_within(
        &mut self,
        method: u16,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<CallToken, CallError> {
        if let Some(reason) = &self.closed {
            return Err(CallError::Disconnected(reason.clone()));
        }
        let trailer = if self.deadline_ms(timeout).is_some() { envelope::DEADLINE_TRAILER_LEN } else { 0 };
        let size = envelope::CALL_HEADER_LEN + input.len() + trailer;
        if let Some(l) = self.limits.filter(|l| size > l.max_message_size as usize) {
            return Err(CallError::TooLarge { size, limit: l.max_message_size as usize });
        }
        let call = CallToken(self.next_token);
        match self.ids.allocate() {
            Some(id) if self.waiting.is_empty() => self.send(id, call, method, input, timeout),
            id => {
                // Waiting calls go first: an id freed just now belongs to them.
                if let Some(id) = id {
                    self.ids.release(id);
                }
                if self.waiting.len() >= self.max_waiting {
                    return Err(CallError::TooManyWaiting(self.max_waiting));
                }
                self.waiting.push_back(Waiting { call, method, input: input.to_vec(), timeout });
            }
        }
        self.next_token += 1;
        Ok(call)
    }

    fn send(&mut self, id: u8, call: CallToken, method: u16, input: &[u8], timeout: Option<Duration>) {
        self.in_flight[id as usize] = Some(call);
        let mut msg = Vec::with_capacity(envelope::CALL_HEADER_LEN + input.len() + envelope::DEADLINE_TRAILER_LEN);
        match self.deadline_ms(timeout) {
            Some(ms) => envelope::encode_call_deadline(&mut msg, id, method, input, ms),
            None => envelope::encode_call(&mut msg, id, method, input),
        }
        self.transmit.push_back(msg);
    }

    /// The deadline to send for `timeout`, in whole milliseconds rounded up
    /// (at least 1, at most `u32::MAX`), if the server accepts deadlines.
    fn deadline_ms(&self, timeout: Option<Duration>) -> Option<u32> {
        let t = timeout.filter(|_| self.accepts_deadline_and_cancel())?;
        let ms = t.as_nanos().div_ceil(1_000_000).max(1);
        Some(u32::try_from(ms).unwrap_or(u32::MAX))
    }

    /// Whether the server announced that it accepts `CALL_DEADLINE` and `CANCEL`.
    pub fn accepts_deadline_and_cancel(&self) -> bool {
        self.limits.is_some_and(|l| l.accepts_deadline_and_cancel())
    }

    /// Gives up on `call` (the caller timed out or went away). A call still
    /// waiting for an id is forgotten; a call already sent keeps its id
    /// reserved until the server's answer, which is then discarded, and,
    /// when the server accepts it, a `CANCEL` is queued so the server drops
    /// the handler and answers at once (`Cancelled`). No
    /// [`SessionEvent::Reply`] is produced for an abandoned call. Returns
    /// whether the call was still open.
    pub fn abandon(&mut self, call: CallToken) -> bool {
        if let Some(pos) = self.waiting.iter().position(|w| w.call == call) {
            self.waiting.remove(pos);
            return true;
        }
        match self.in_flight.iter().position(|slot| *slot == Some(call)) {
            Some(id) => {
                self.in_flight[id] = None;
                if self.closed.is_none() && self.accepts_deadline_and_cancel() {
                    self.transmit.push_back(envelope::encode_cancel(id as u8).to_vec());
                }
                true
            }
            None => false,
        }
    }

    /// The next message to send to the server, as a binary WebSocket
    /// message. Send them in the order returned.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next thing the application should learn, in the server's order.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Handles one binary message from the server. A malformed message, or
    /// one of a kind this version does not know, is reported as an error
    /// and otherwise ignored: the connection stays usable.
    pub fn handle_message(&mut self, msg: &[u8]) -> Result<(), SessionError> {
        if self.closed.is_some() {
            return Ok(());
        }
        match envelope::decode_server(msg)? {
            ServerMessage::Result { id, ok, payload } => {
                let mut buf = AlignedBuf::with_capacity(payload.len());
                buf.extend_from_slice(payload);
                self.finish(id, Ok(RawReply { ok, payload: buf }))?;
            }
            ServerMessage::CallError { id, code, detail } => {
                let detail = String::from_utf8_lossy(detail).into_owned();
                let err = match CallErrorCode::from_u8(code) {
                    Some(code) => CallError::Rejected { code, detail },
                    None => CallError::UnknownErrorCode(code),
                };
                self.finish(id, Err(err))?;
            }
            ServerMessage::Other { kind: envelope::KIND_STATE, body } => {
                let changed = parse_state(body).map_err(|e| SessionError::State(e.0))?;
                for (index, archive) in changed {
                    let i = index as usize;
                    if self.fields.len() <= i {
                        self.fields.resize(i + 1, None);
                    }
                    self.fields[i] = Some(archive.to_vec());
                }
                self.events.push_back(SessionEvent::StateChanged);
            }
            ServerMessage::Other { kind: envelope::KIND_FEATURES, body } => {
                let set = FeatureSet::decode(body).map_err(|e| SessionError::Features(e.0))?;
                self.features = Some(set);
                self.events.push_back(SessionEvent::FeaturesChanged);
            }
            ServerMessage::Other { kind: envelope::KIND_LIMITS, body } => {
                let limits = envelope::AnnouncedLimits::parse(body).ok_or(SessionError::Limits)?;
                // 0 would mean "no message fits": treat it as not announced.
                self.limits = (limits.max_message_size > 0).then_some(limits);
            }
            ServerMessage::Other { kind: envelope::KIND_EVENT, body } => {
                let (ty, archive) = crate::events::parse_event(body).ok_or(SessionError::Event)?;
                self.events.push_back(SessionEvent::Event { ty, archive: Arc::from(archive) });
            }
            ServerMessage::Other { kind: envelope::KIND_EVENTS_DROPPED, body } => {
                let count = crate::events::parse_events_dropped(body).ok_or(SessionError::Event)?;
                self.events_dropped += count as u64;
                self.events.push_back(SessionEvent::EventsDropped { count });
            }
            // decode_server returns only the kinds matched above.
            ServerMessage::Other { .. } => {}
        }
        Ok(())
    }

    /// Frees `id`, reports the call's result unless it was abandoned, and
    /// hands the id to the first waiting call.
    fn finish(&mut self, id: u8, result: Result<RawReply, CallError>) -> Result<(), SessionError> {
        if !self.ids.release(id) {
            return Err(SessionError::UnexpectedReply(id));
        }
        if let Some(call) = self.in_flight[id as usize].take() {
            self.events.push_back(SessionEvent::Reply { call, result });
        }
        if let Some(w) = self.waiting.pop_front() {
            let id = self.ids.allocate().expect("an id was just freed");
            self.send(id, w.call, w.method, &w.input, w.timeout);
        }
        Ok(())
    }

    /// The connection ended (the server's Close, a transport error, or the
    /// application closing it). Every open call, sent or waiting, fails with
    /// `Disconnected(reason)`, then [`SessionEvent::Closed`] is reported.
    /// Later calls fail at once. Only the first reason counts.
    pub fn handle_close(&mut self, reason: impl Into<String>) {
        if self.closed.is_some() {
            return;
        }
        let reason = reason.into();
        self.closed = Some(reason.clone());
        self.transmit.clear();
        for slot in self.in_flight.iter_mut() {
            if let Some(call) = slot.take() {
                self.events
                    .push_back(SessionEvent::Reply { call, result: Err(CallError::Disconnected(reason.clone())) });
            }
        }
        for w in std::mem::take(&mut self.waiting) {
            self.events
                .push_back(SessionEvent::Reply { call: w.call, result: Err(CallError::Disconnected(reason.clone())) });
        }
        self.events.push_back(SessionEvent::Closed { reason });
    }

    /// Why the session closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Whether the server's initial feature set has arrived (it follows the
    /// initial state right behind the upgrade, so both are in).
    pub fn is_ready(&self) -> bool {
        self.features.is_some()
    }

    /// Call ids taken: calls sent and not answered, abandoned ones included.
    pub fn in_flight(&self) -> usize {
        self.ids.in_flight()
    }

    /// Calls waiting for a free call id.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The connection's state as the server last described it:
    /// `S::default()` with every field the server sent applied. Fails if a
    /// field does not validate as its declared type (client and server
    /// disagree on the state struct).
    pub fn state<S: ConnectionState + Default>(&self) -> Result<S, DecodeError> {
        let mut state = S::default();
        let mut buf = AlignedBuf::new();
        for (i, field) in self.fields.iter().enumerate() {
            if let Some(archive) = field {
                state.apply_field(i as u8, crate::wire::align_into(&mut buf, archive))?;
            }
        }
        Ok(state)
    }

    /// The latest archive of state field `index`, as the server sent it
    /// (for tools and tests that do not have the state's Rust type).
    pub fn state_field(&self, index: u8) -> Option<&[u8]> {
        self.fields.get(index as usize)?.as_deref()
    }

    /// The limits the server announced (`LIMITS`, right after the 101);
    /// `None` from a server that predates the announcement.
    pub fn server_limits(&self) -> Option<envelope::AnnouncedLimits> {
        self.limits
    }

    /// The methods the server lets this connection call, as last announced.
    pub fn features(&self) -> Option<&FeatureSet> {
        self.features.as_ref()
    }

    /// Events the server reported dropping for this connection, in total.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{KIND_CALL, KIND_CALL_ERROR, KIND_RESULT_OK};

    fn sent(s: &mut ClientSession) -> Vec<(u8, u16, Vec<u8>)> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|m| {
                assert_eq!(m[0], KIND_CALL);
                (m[1], u16::from_le_bytes([m[2], m[3]]), m[envelope::CALL_HEADER_LEN..].to_vec())
            })
            .collect()
    }

    fn replies(s: &mut ClientSession) -> Vec<(CallToken, Result<RawReply, CallError>)> {
        std::iter::from_fn(|| s.poll_event())
            .filter_map(|e| match e {
                SessionEvent::Reply { call, result } => Some((call, result)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replies_reach_their_calls_in_any_order() {
        let mut s = ClientSession::new();
        let a = s.start_call(1, b"a").unwrap();
        let b = s.start_call(2, b"b").unwrap();
        let out = sent(&mut s);
        assert_eq!(out.len(), 2);
        assert_ne!(out[0].0, out[1].0, "distinct ids");
        assert_eq!((out[0].1, out[1].2.as_slice()), (1, &b"b"[..]));
        s.handle_message(&[KIND_RESULT_OK, out[1].0, 7]).unwrap();
        s.handle_message(&[KIND_CALL_ERROR, out[0].0, CallErrorCode::MethodDisabled as u8, b'x']).unwrap();
        let r = replies(&mut s);
        assert_eq!(r[0].0, b);
        assert_eq!(&r[0].1.as_ref().unwrap().payload[..], &[7]);
        assert_eq!(r[1].0, a);
        assert_eq!(
            r[1].1.as_ref().unwrap_err(),
            &CallError::Rejected { code: CallErrorCode::MethodDisabled, detail: "x".into() }
        );
        assert_eq!(s.in_flight(), 0);
    }

    #[test]
    fn the_257th_call_waits_for_a_free_id_and_goes_out_when_one_frees() {
        let mut s = ClientSession::new();
        for _ in 0..256 {
            s.start_call(0, b"").unwrap();
        }
        let first = sent(&mut s);
        assert_eq!(first.len(), 256);
        let late = s.start_call(9, b"late").unwrap();
        assert!(s.poll_transmit().is_none(), "no id free: the call waits");
        assert_eq!(s.waiting(), 1);
        s.handle_message(&[KIND_RESULT_OK, first[17].0]).unwrap();
        let out = sent(&mut s);
        assert_eq!(out, vec![(first[17].0, 9, b"late".to_vec())], "sent on the freed id");
        s.handle_message(&[KIND_RESULT_OK, first[17].0, 1]).unwrap();
        let r = replies(&mut s);
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].0, late);
    }

    #[test]
    fn an_abandoned_call_keeps_its_id_until_the_reply_which_is_discarded() {
        let mut s = ClientSession::new();
        let a = s.start_call(0, b"").unwrap();
        let id = sent(&mut s)[0].0;
        assert!(s.abandon(a));
        assert_eq!(s.in_flight(), 1, "the server still holds the id live");
        for _ in 0..255 {
            s.start_call(0, b"").unwrap();
        }
        assert!(sent(&mut s).iter().all(|(i, _, _)| *i != id), "the reserved id is not reused");
        s.handle_message(&[KIND_RESULT_OK, id]).unwrap();
        assert!(replies(&mut s).is_empty(), "no reply for an abandoned call");
        assert_eq!(s.in_flight(), 255);
        assert!(!s.abandon(a), "already gone");
    }

    #[test]
    fn a_waiting_call_can_be_abandoned_and_the_queue_is_bounded() {
        let mut s = ClientSession::with_max_waiting(2);
        for _ in 0..256 {
            s.start_call(0, b"").unwrap();
        }
        let ids = sent(&mut s);
        let w1 = s.start_call(1, b"").unwrap();
        let w2 = s.start_call(2, b"").unwrap();
        assert_eq!(s.start_call(3, b""), Err(CallError::TooManyWaiting(2)));
        assert!(s.abandon(w1));
        s.handle_message(&[KIND_RESULT_OK, ids[0].0]).unwrap();
        assert_eq!(sent(&mut s)[0].1, 2, "the abandoned call never goes out");
        let _ = w2;
    }

    #[test]
    fn close_fails_every_open_call_once_and_later_calls_at_once() {
        let mut s = ClientSession::new();
        for _ in 0..257 {
            s.start_call(0, b"").unwrap();
        }
        s.handle_close("server closed the connection: 1001");
        s.handle_close("a second reason is ignored");
        let mut failed = 0;
        let mut closed = 0;
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::Reply { result: Err(CallError::Disconnected(r)), .. } => {
                    assert!(r.contains("1001"));
                    failed += 1
                }
                SessionEvent::Closed { .. } => closed += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((failed, closed), (257, 1));
        assert!(matches!(s.start_call(0, b""), Err(CallError::Disconnected(_))));
    }

    #[test]
    fn state_features_events_and_drop_notices_are_reported_in_order() {
        let mut s = ClientSession::new();
        assert!(!s.is_ready());
        let mut w = crate::state_diff::StateWriter::new();
        w.field(1, &42u64).unwrap();
        s.handle_message(w.message().unwrap()).unwrap();
        let mut f = Vec::new();
        FeatureSet::only(3, [2]).encode(&mut f);
        s.handle_message(&f).unwrap();
        let mut ev = vec![envelope::KIND_EVENT];
        ev.extend_from_slice(&7u16.to_le_bytes());
        ev.extend_from_slice(b"arch");
        s.handle_message(&ev).unwrap();
        let mut dropped = vec![envelope::KIND_EVENTS_DROPPED];
        dropped.extend_from_slice(&5u32.to_le_bytes());
        s.handle_message(&dropped).unwrap();
        // An unknown kind is reported and changes nothing.
        assert_eq!(
            s.handle_message(&[0x7f, 1, 2]),
            Err(SessionError::Envelope(envelope::EnvelopeError::UnknownKind(0x7f)))
        );
        let got: Vec<String> = std::iter::from_fn(|| s.poll_event()).map(|e| format!("{e:?}")).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with("StateChanged") && got[1].starts_with("FeaturesChanged"));
        assert!(got[2].contains("ty: 7") && got[3].contains("count: 5"), "{got:?}");
        assert!(s.is_ready());
        assert!(s.features().unwrap().is_enabled(2) && !s.features().unwrap().is_enabled(1));
        assert_eq!(s.events_dropped(), 5);
        assert_eq!(s.fields[1].as_deref().map(|a| a.len()), Some(8));
    }

    #[test]
    fn a_call_over_the_announced_limit_is_refused_without_being_sent() {
        let mut s = ClientSession::new();
        s.start_call(0, &[0; 100]).unwrap();
        sent(&mut s);
        s.handle_message(&envelope::AnnouncedLimits { max_message_size: 64, flags: 0 }.encode()).unwrap();
        assert_eq!(s.server_limits().map(|l| l.max_message_size), Some(64));
        assert_eq!(s.start_call(0, &[0; 61]), Err(CallError::TooLarge { size: 65, limit: 64 }));
        assert!(s.poll_transmit().is_none(), "nothing sent");
        s.start_call(0, &[0; 60]).unwrap();
        assert_eq!(sent(&mut s).len(), 1, "a call at the limit goes out");
        assert_eq!(s.handle_message(&[envelope::KIND_LIMITS, 1]), Err(SessionError::Limits));
    }

    #[test]
    fn malformed_and_unexpected_messages_are_errors_that_change_nothing() {
        let mut s = ClientSession::new();
        assert!(matches!(s.handle_message(&[]), Err(SessionError::Envelope(_))));
        assert_eq!(s.handle_message(&[KIND_RESULT_OK, 9]), Err(SessionError::UnexpectedReply(9)));
        assert!(matches!(s.handle_message(&[envelope::KIND_STATE, 1]), Err(SessionError::State(_))));
        assert!(matches!(s.handle_message(&[envelope::KIND_FEATURES]), Err(SessionError::Features(_))));
        assert_eq!(s.handle_message(&[envelope::KIND_EVENT, 1]), Err(SessionError::Event));
        assert!(s.poll_event().is_none());
        assert!(!s.is_ready());
    }
}
