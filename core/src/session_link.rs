//! The session across transports: reconnect rules (what happens to calls
//! when the transport drops, which may be sent again), the held state while
//! a new transport runs its on-connect hook, and resume bookkeeping (the
//! last position per topic, duplicates dropped, gaps reported).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{CallToken, ClientSession, SessionError, SessionEvent, Waiting};
use crate::calls::IdAllocator;
use crate::error::CallError;
use crate::resume::{self, GapNotice, Positions, Received};

/// Where the session's transport is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Connected and ready: calls go out at once.
    Up,
    /// A new transport is open but not yet ready (its on-connect hook is
    /// running): application calls wait; [`ClientSession::start_priority_call`]
    /// goes out.
    Held,
    /// The transport dropped; a reconnect follows.
    Down(String),
}

/// Per-session reconnect rules and resume state.
#[derive(Debug, Default)]
pub(super) struct Rules {
    /// Calls made while down wait for the reconnect (true) or fail at once.
    wait_while_down: bool,
    /// Methods the application marked idempotent: sent again after a drop.
    idempotent: HashSet<u16>,
    /// Method, input and time limit of each idempotent call in flight.
    resend: HashMap<CallToken, (u16, Vec<u8>, Option<Duration>)>,
    /// Resume positions, when the session resumes.
    positions: Option<Positions>,
    /// Duplicates dropped (events already delivered, replayed again).
    duplicates: u64,
    /// Since [`ClientSession::reopen`]: the state fields are the old
    /// transport's, to be replaced whole by the new initial state.
    stale_state: bool,
    /// Since reopen: the feature set is the old transport's.
    pub(super) stale_features: bool,
    /// A resuming transport is not ready before its initial resume point.
    pub(super) awaiting_point: bool,
}

impl Rules {
    pub(super) fn remember(&mut self, call: CallToken, method: u16, input: &[u8], timeout: Option<Duration>) {
        if self.idempotent.contains(&method) {
            self.resend.insert(call, (method, input.to_vec(), timeout));
        }
    }

    pub(super) fn forget(&mut self, call: CallToken) {
        if !self.resend.is_empty() {
            self.resend.remove(&call);
        }
    }
}

impl ClientSession {
    /// Tracks topic positions so that a reconnect resumes events (the
    /// transport must send [`resume::RESUME_HEADER`] `: 1` and, if the
    /// server answers it, send what [`Self::reopen`] queues first).
    pub fn enable_resume(&mut self) {
        self.rules.positions.get_or_insert_with(|| Positions::new(resume::DEFAULT_MAX_TRACKED_TOPICS));
    }

    /// Whether calls made while the transport is down wait for the
    /// reconnect (within the driver's timeout) instead of failing at once
    /// with `Disconnected`. Default: fail at once.
    pub fn set_wait_while_disconnected(&mut self, wait: bool) {
        self.rules.wait_while_down = wait;
    }

    /// Marks `method` idempotent: a call of it that was in flight when the
    /// transport dropped is sent again on the next one instead of failing.
    /// No other call is ever sent twice.
    pub fn set_idempotent(&mut self, method: u16) {
        self.rules.idempotent.insert(method);
    }

    /// The transport's state.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Positioned events dropped as duplicates so far.
    pub fn duplicates_dropped(&self) -> u64 {
        self.rules.duplicates
    }

    /// The resume position of `topic`, if tracked.
    pub fn position(&self, topic: &str) -> Option<resume::Position> {
        self.rules.positions.as_ref()?.get(topic)
    }

    /// An application call while not [`Link::Up`].
    pub(super) fn hold(
        &mut self,
        method: u16,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<CallToken, CallError> {
        if let Link::Down(reason) = &self.link {
            if !self.rules.wait_while_down {
                return Err(CallError::Disconnected(reason.clone()));
            }
        }
        if self.waiting.len() >= self.max_waiting {
            return Err(CallError::TooManyWaiting(self.max_waiting));
        }
        let call = CallToken(self.next_token);
        self.next_token += 1;
        self.waiting.push_back(Waiting { call, method, input: input.to_vec(), timeout });
        Ok(call)
    }

    /// A call that goes out while [`Link::Held`] (the on-connect hook's
    /// calls, e.g. re-authentication), ahead of the application's waiting
    /// calls. Fails with `Disconnected` while down.
    pub fn start_priority_call(
        &mut self,
        method: u16,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<CallToken, CallError> {
        match &self.link {
            Link::Up => self.start_call_within(method, input, timeout),
            Link::Down(reason) => Err(CallError::Disconnected(reason.clone())),
            Link::Held => {
                let call = CallToken(self.next_token);
                let id = self.ids.allocate().ok_or(CallError::TooManyWaiting(0))?;
                self.next_token += 1;
                self.send(id, call, method, input, timeout);
                Ok(call)
            }
        }
    }

    /// The transport dropped and the driver will reconnect. Calls sent on
    /// it fail with `Disconnected` (the server may or may not have run
    /// them), except idempotent ones, which go back to the front of the
    /// queue; waiting calls stay queued if calls wait while disconnected,
    /// else fail. Then [`SessionEvent::Disconnected`].
    pub fn handle_disconnect(&mut self, reason: impl Into<String>) {
        if self.closed.is_some() || matches!(self.link, Link::Down(_)) {
            return;
        }
        let reason = reason.into();
        self.transmit.clear();
        let mut again = Vec::new();
        for slot in self.in_flight.iter_mut() {
            let Some(call) = slot.take() else { continue };
            match self.rules.resend.remove(&call) {
                Some((method, input, timeout)) => again.push(Waiting { call, method, input, timeout }),
                None => self
                    .events
                    .push_back(SessionEvent::Reply { call, result: Err(CallError::Disconnected(reason.clone())) }),
            }
        }
        self.rules.resend.clear();
        self.ids = IdAllocator::new();
        again.sort_by_key(|w| w.call);
        if !self.rules.wait_while_down {
            for w in std::mem::take(&mut self.waiting) {
                self.events.push_back(SessionEvent::Reply {
                    call: w.call,
                    result: Err(CallError::Disconnected(reason.clone())),
                });
            }
        }
        for w in again.into_iter().rev() {
            self.waiting.push_front(w);
        }
        self.link = Link::Down(reason.clone());
        self.events.push_back(SessionEvent::Disconnected { reason });
    }

    /// A new transport is open. What the old one said is replaced by what
    /// the new one says: the first state message replaces every field (not
    /// merged: no stale field survives; if the server sends no state, the
    /// feature set that follows clears them), the feature set is replaced,
    /// limits are forgotten; [`Self::is_ready`] is false until the new
    /// feature set arrives. The link is [`Link::Held`], and with resume
    /// enabled and `server_resumes` (the server answered the opt-in header)
    /// the `RESUME` request is queued as the first message.
    pub fn reopen(&mut self, server_resumes: bool) {
        if self.closed.is_some() {
            return;
        }
        self.transmit.clear();
        self.rules.stale_state = true;
        self.rules.stale_features = true;
        self.limits = None;
        self.link = Link::Held;
        self.rules.awaiting_point = server_resumes && self.rules.positions.is_some();
        if let Some(positions) = self.rules.positions.as_mut().filter(|_| server_resumes) {
            let (msg, lost) = positions.resume_message();
            self.transmit.push_back(msg);
            if let Some(notice) = lost {
                self.events.push_back(SessionEvent::Gap(notice));
            }
        }
    }

    /// The new transport is ready (its on-connect hook succeeded): waiting
    /// calls go out, in order, as ids allow.
    pub fn release(&mut self) {
        if self.link != Link::Held {
            return;
        }
        self.link = Link::Up;
        while !self.waiting.is_empty() {
            let Some(id) = self.ids.allocate() else { break };
            let w = self.waiting.pop_front().expect("not empty");
            self.send(id, w.call, w.method, &w.input, w.timeout);
        }
    }

    pub(super) fn replace_stale_state(&mut self) {
        if std::mem::take(&mut self.rules.stale_state) {
            self.fields.clear();
        }
    }

    pub(super) fn on_topic_event(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let ev = resume::parse_topic_event(body).ok_or(SessionError::Event)?;
        let verdict = match self.rules.positions.as_mut() {
            Some(p) => p.on_event(ev.topic, ev.position),
            None => Received::Deliver,
        };
        match verdict {
            Received::Duplicate => {
                self.rules.duplicates += 1;
                return Ok(());
            }
            Received::GapThenDeliver(notice) => self.events.push_back(SessionEvent::Gap(notice)),
            Received::Deliver => {}
        }
        self.events.push_back(SessionEvent::Event { ty: ev.ty, archive: std::sync::Arc::from(ev.archive) });
        Ok(())
    }

    pub(super) fn on_resume_point(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let (point, initial) = resume::parse_resume_point(body).ok_or(SessionError::Event)?;
        if let Some(p) = self.rules.positions.as_mut() {
            p.on_point(point, initial);
        }
        if initial {
            self.rules.awaiting_point = false;
        }
        Ok(())
    }

    pub(super) fn on_gap(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let gap = resume::parse_gap(body).ok_or(SessionError::Event)?;
        let notice = match self.rules.positions.as_mut() {
            Some(p) => p.on_gap(&gap),
            None => (gap.missed != 0).then(|| GapNotice {
                topic: Some(gap.topic.clone()),
                missed: (gap.missed != resume::MISSED_UNKNOWN).then_some(gap.missed),
            }),
        };
        if let Some(notice) = notice {
            self.events.push_back(SessionEvent::Gap(notice));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{KIND_CALL, KIND_RESULT_OK};
    use crate::resume::{encode_gap, encode_topic_event_header, Gap, Position};

    fn sent(s: &mut ClientSession) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }
    fn events(s: &mut ClientSession) -> Vec<String> {
        std::iter::from_fn(|| s.poll_event()).map(|e| format!("{e:?}")).collect()
    }
    fn topic_event(topic: &str, epoch: u64, offset: u64, archive: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        encode_topic_event_header(&mut m, 1, topic, Position { epoch, offset });
        m.extend_from_slice(archive);
        m
    }

    #[test]
    fn a_drop_fails_sent_calls_once_and_resends_only_idempotent_ones() {
        let mut s = ClientSession::new();
        s.set_idempotent(7);
        s.start_call(1, b"pay").unwrap();
        s.start_call(7, b"get").unwrap();
        sent(&mut s);
        s.handle_disconnect("cut");
        let ev = events(&mut s);
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert!(ev[0].contains("Disconnected(\"cut\")") && ev[1].starts_with("Disconnected"));
        assert_eq!(s.in_flight(), 0);
        assert_eq!(s.waiting(), 1, "the idempotent call waits for the next transport");
        s.reopen(false);
        assert!(sent(&mut s).is_empty(), "held: nothing goes out before release");
        s.release();
        let out = sent(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0][0], &out[0][2..]), (KIND_CALL, &[7u8, 0, b'g', b'e', b't'][..]));
    }

    #[test]
    fn calls_while_down_fail_at_once_or_wait_per_policy() {
        let mut s = ClientSession::new();
        s.reopen(false);
        s.release();
        s.handle_disconnect("gone");
        assert_eq!(s.start_call(1, b""), Err(CallError::Disconnected("gone".into())));
        s.set_wait_while_disconnected(true);
        let call = s.start_call(1, b"x").unwrap();
        assert!(sent(&mut s).is_empty());
        s.reopen(false);
        let hook = s.start_priority_call(2, b"token", None).unwrap();
        let out = sent(&mut s);
        assert_eq!(out.len(), 1, "only the hook's call goes out while held");
        s.handle_message(&[KIND_RESULT_OK, out[0][1]]).unwrap();
        assert!(sent(&mut s).is_empty(), "the reply does not release waiting calls");
        assert!(events(&mut s).iter().any(|e| e.contains(&format!("{hook:?}"))));
        s.release();
        assert_eq!(sent(&mut s).len(), 1);
        assert!(s.abandon(call));
    }

    #[test]
    fn reopen_forgets_the_old_state_and_features() {
        let mut s = ClientSession::new();
        let mut w = crate::state_diff::StateWriter::new();
        w.field(0, &1u64).unwrap();
        s.handle_message(w.message().unwrap()).unwrap();
        let mut f = Vec::new();
        crate::FeatureSet::only(2, [0]).encode(&mut f);
        s.handle_message(&f).unwrap();
        assert!(s.is_ready() && s.state_field(0).is_some());
        s.handle_disconnect("cut");
        s.reopen(true);
        assert!(!s.is_ready(), "not ready until the new feature set");
        assert!(sent(&mut s).is_empty(), "no RESUME without enable_resume");
        let mut w = crate::state_diff::StateWriter::new();
        w.field(1, &2u64).unwrap();
        s.handle_message(w.message().unwrap()).unwrap();
        assert!(s.state_field(0).is_none() && s.state_field(1).is_some(), "replaced, not merged");
        s.handle_message(&f).unwrap();
        assert!(s.is_ready() && s.state_field(1).is_some(), "later messages merge again");
        // A server with no state for the new connection: the features clear the old fields.
        s.handle_disconnect("cut");
        s.reopen(true);
        s.handle_message(&f).unwrap();
        assert!(s.is_ready() && s.state_field(1).is_none());
    }

    #[test]
    fn positioned_events_drop_duplicates_report_gaps_and_resume_from_the_last() {
        let mut s = ClientSession::new();
        s.enable_resume();
        s.reopen(true);
        let mut empty = vec![crate::envelope::KIND_RESUME];
        empty.extend_from_slice(&[0; 17]);
        assert_eq!(sent(&mut s), vec![empty], "an empty RESUME first");
        s.release();
        for o in [1, 2, 2, 5] {
            s.handle_message(&topic_event("t", 9, o, &[o as u8])).unwrap();
        }
        let ev = events(&mut s);
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert!(ev[2].contains("missed: Some(2)"), "{ev:?}");
        assert_eq!(s.duplicates_dropped(), 1);
        let mut gap = Vec::new();
        encode_gap(&mut gap, &Gap { topic: "t".into(), position: Position { epoch: 10, offset: 3 }, missed: u64::MAX });
        s.handle_message(&gap).unwrap();
        assert!(events(&mut s)[0].contains("missed: None"));
        s.handle_disconnect("cut");
        s.reopen(true);
        let resume = sent(&mut s);
        let req = crate::resume::parse_resume(&resume[0][1..]).unwrap();
        assert_eq!(req.positions, vec![("t".into(), Position { epoch: 10, offset: 3 })]);
        assert_eq!(s.handle_message(&[crate::envelope::KIND_TOPIC_EVENT, 1]), Err(SessionError::Event));
    }
}
