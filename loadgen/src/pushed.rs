//! Workloads in which the server sends more than the reply: `state` (a
//! STATE message before every response) and `fanout` (one emit, an event on
//! every subscriber).
//!
//! Both serve services from `hardlight_bench` (`stateful`, `fan`), which the
//! embedded server starts for these scenarios (`crate::server`). Requests
//! stay pre-encoded: where a request must carry something per call (the call
//! id for `state`, the send time for `fanout`), its offset in the archive
//! is found once by encoding the input with two different values and
//! seeing which bytes differ, so this code never assumes rkyv's layout.

use hardlight::protocol::envelope::{self, ServerMessage, CALL_HEADER_LEN, KIND_EVENT, KIND_STATE};
use hardlight::protocol::wire;
use hardlight::{Event, Wire};
use hardlight_bench::fan::{FanEmitInput, FanMethod, FanSubscribeInput, Tick, FAN_TOPIC};
use hardlight_bench::stateful::{LastCall, StatefulMethod, StatefulTouchInput};

use crate::scenario::{Delivery, RequestTemplate, Workload, HL_SUBPROTOCOL};

/// Where encodings of `a` and `b` differ: (first differing offset, length of
/// the differing run). Panics if they do not differ or differ in length,
/// which would be a bug in the caller's choice of values.
fn varying_bytes<T: Wire>(a: &T, b: &T) -> (Vec<u8>, usize, usize) {
    let (x, y) = (wire::encode(a).expect("encode"), wire::encode(b).expect("encode"));
    assert_eq!(x.len(), y.len(), "fixed-size inputs only");
    let first = x.iter().zip(y.iter()).position(|(p, q)| p != q).expect("the values differ");
    let last = x.iter().zip(y.iter()).rposition(|(p, q)| p != q).expect("the values differ");
    (x.to_vec(), first, last + 1 - first)
}

fn call(method: u16, input: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CALL_HEADER_LEN + input.len());
    envelope::encode_call(&mut m, 0, method, input);
    m
}

/// `state`: `Stateful::touch(call)` with the call's own id as `call`. The
/// server answers with a STATE message naming that id and then the result;
/// the engine checks, per call, that the STATE came first.
pub struct StateCall {
    payload: Vec<u8>,
    call_at: usize,
    ok: Vec<u8>,
}

impl StateCall {
    /// Encodes the call once.
    pub fn new() -> Self {
        let (input, at, len) = varying_bytes(&StatefulTouchInput { call: 0x5a }, &StatefulTouchInput { call: 0xa5 });
        assert_eq!(len, 1, "the call byte is one byte of the archive");
        Self {
            payload: call(StatefulMethod::Touch.id(), &input),
            call_at: CALL_HEADER_LEN + at,
            ok: wire::encode(&true).expect("encode bool").to_vec(),
        }
    }
}

impl Default for StateCall {
    fn default() -> Self {
        Self::new()
    }
}

/// The call id a STATE message of `LastCall` names, `None` for the initial
/// state or a message of another shape.
fn state_call(msg: &[u8]) -> Option<u8> {
    // kind, one field, field 0, archive length 8, the u64.
    let body = msg.strip_prefix(&[KIND_STATE, 1, 0][..])?;
    let (len, rest) = body.split_at_checked(4)?;
    if u32::from_le_bytes(len.try_into().ok()?) != 8 || rest.len() != 8 {
        return None;
    }
    let mut buf = hardlight::protocol::wire::AlignedBuf::new();
    let last = <u64 as Wire>::decode(wire::align_into(&mut buf, rest)).ok()?;
    LastCall::call_of(last)
}

impl Workload for StateCall {
    fn name(&self) -> String {
        "state".into()
    }

    fn subprotocol(&self) -> Option<&'static str> {
        Some(HL_SUBPROTOCOL)
    }

    fn template(&self) -> RequestTemplate {
        RequestTemplate { payload: self.payload.clone(), id_at: 1, stamp_at: None, id_also_at: Some(self.call_at) }
    }

    fn state_precedes_reply(&self) -> bool {
        true
    }

    fn classify(&self, payload: &[u8]) -> Delivery {
        if payload.first() == Some(&KIND_STATE) {
            return match state_call(payload) {
                Some(id) => Delivery::State { id },
                None => Delivery::Ignore,
            };
        }
        match envelope::decode_server(payload) {
            Ok(ServerMessage::Result { id, ok: true, payload }) if payload == self.ok.as_slice() => {
                Delivery::Reply { id }
            }
            Ok(ServerMessage::Result { id, ok: true, .. }) => Delivery::Mismatch { id },
            Ok(ServerMessage::Result { id, ok: false, .. }) => Delivery::Failed { id, code: 0 },
            Ok(ServerMessage::CallError { id, code, .. }) => Delivery::Failed { id, code },
            Ok(ServerMessage::Other { .. }) => Delivery::Ignore,
            Err(_) => Delivery::Protocol,
        }
    }
}

/// `fanout`: connection 0 calls `Fan::emit` with its send time in the tick;
/// every other connection subscribes to [`FAN_TOPIC`] first and then only
/// receives. Each event is timed on each receiver from the stamp it carries,
/// so latency and the rate count deliveries, not calls.
pub struct FanOut {
    emit: Vec<u8>,
    stamp_at: usize,
    subscribe: Vec<u8>,
    /// The event's archive length and the stamp's offset in it.
    event_len: usize,
    event_stamp_at: usize,
    accepted: Vec<u8>,
    refused: Vec<u8>,
}

impl FanOut {
    /// Encodes the emit and the subscribe call once.
    pub fn new() -> Self {
        let tick = |emitted_ns| Tick { seq: 0, emitted_ns };
        let (input, at, len) = varying_bytes(
            &FanEmitInput { tick: tick(0x0102_0304_0506_0708) },
            &FanEmitInput { tick: tick(!0x0102_0304_0506_0708) },
        );
        assert_eq!(len, 8, "the stamp is 8 bytes of the archive");
        let (event, event_at, _) = varying_bytes(&tick(0x0102_0304_0506_0708), &tick(!0x0102_0304_0506_0708));
        let sub = wire::encode(&FanSubscribeInput { topic: FAN_TOPIC.into() }).expect("encode subscribe");
        Self {
            emit: call(FanMethod::Emit.id(), &input),
            stamp_at: CALL_HEADER_LEN + at,
            subscribe: call(FanMethod::Subscribe.id(), &sub),
            event_len: event.len(),
            event_stamp_at: event_at,
            accepted: wire::encode(&true).expect("encode bool").to_vec(),
            refused: wire::encode(&false).expect("encode bool").to_vec(),
        }
    }
}

impl Default for FanOut {
    fn default() -> Self {
        Self::new()
    }
}

impl Workload for FanOut {
    fn name(&self) -> String {
        "fanout".into()
    }

    fn subprotocol(&self) -> Option<&'static str> {
        Some(HL_SUBPROTOCOL)
    }

    fn template(&self) -> RequestTemplate {
        RequestTemplate { payload: self.emit.clone(), id_at: 1, stamp_at: Some(self.stamp_at), id_also_at: None }
    }

    fn sends(&self, index: usize, _connections: usize) -> bool {
        index == 0
    }

    fn setup_messages(&self, index: usize) -> Vec<Vec<u8>> {
        if index == 0 {
            Vec::new()
        } else {
            vec![self.subscribe.clone()]
        }
    }

    fn classify(&self, payload: &[u8]) -> Delivery {
        if payload.first() == Some(&KIND_EVENT) {
            let ty = payload.get(1..3).map(|t| u16::from_le_bytes([t[0], t[1]]));
            if ty != Some(Tick::TYPE) {
                return Delivery::Ignore;
            }
            let archive = &payload[3..];
            if archive.len() != self.event_len {
                return Delivery::Protocol;
            }
            let s = &archive[self.event_stamp_at..self.event_stamp_at + 8];
            return Delivery::Stamped { stamp_ns: u64::from_le_bytes(s.try_into().expect("8 bytes")) };
        }
        match envelope::decode_server(payload) {
            // The subscribe call's answer (unit): nothing to count.
            Ok(ServerMessage::Result { ok: true, payload, .. })
                if payload != self.accepted.as_slice() && payload != self.refused.as_slice() =>
            {
                Delivery::Ignore
            }
            Ok(ServerMessage::Result { id, ok: true, payload }) if payload == self.accepted.as_slice() => {
                Delivery::Ack { id }
            }
            Ok(ServerMessage::Result { id, .. }) => Delivery::Failed { id, code: 0 },
            Ok(ServerMessage::CallError { id, code, .. }) => Delivery::Failed { id, code },
            Ok(ServerMessage::Other { .. }) => Delivery::Ignore,
            Err(_) => Delivery::Protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardlight::protocol::envelope::{decode_client, result_header, ClientMessage};

    #[test]
    fn state_call_carries_its_id_and_reads_state_messages() {
        let w = StateCall::new();
        let t = w.template();
        let Ok(ClientMessage::Call { method, input, .. }) = decode_client(&t.payload) else { panic!("a call") };
        assert_eq!(method, StatefulMethod::Touch.id());
        // Patching the byte at id_also_at sets the `call` argument.
        let mut p = t.payload.clone();
        p[t.id_also_at.unwrap()] = 77;
        let Ok(ClientMessage::Call { input: patched, .. }) = decode_client(&p) else { panic!("a call") };
        let mut buf = hardlight::protocol::wire::AlignedBuf::new();
        let got = <StatefulTouchInput as Wire>::decode(wire::align_into(&mut buf, patched)).unwrap();
        assert_eq!(got.call, 77);
        assert_eq!(input.len(), patched.len());
        // A STATE message for call 77 (the 3rd call) and the initial one.
        let state = |v: u64| {
            let mut m = vec![KIND_STATE, 1, 0, 8, 0, 0, 0];
            m.extend_from_slice(&wire::encode(&v).unwrap());
            m
        };
        assert_eq!(w.classify(&state((3 << 8) | 77)), Delivery::State { id: 77 });
        assert_eq!(w.classify(&state(0)), Delivery::Ignore);
        let mut ok = result_header(5, true).to_vec();
        ok.extend_from_slice(&wire::encode(&true).unwrap());
        assert_eq!(w.classify(&ok), Delivery::Reply { id: 5 });
        let mut no = result_header(5, true).to_vec();
        no.extend_from_slice(&wire::encode(&false).unwrap());
        assert_eq!(w.classify(&no), Delivery::Mismatch { id: 5 });
        assert!(w.state_precedes_reply());
    }

    #[test]
    fn fanout_stamps_the_emit_and_reads_the_stamp_of_each_event() {
        let w = FanOut::new();
        assert!(w.sends(0, 10) && !w.sends(1, 10));
        assert!(w.setup_messages(0).is_empty());
        let Ok(ClientMessage::Call { method, .. }) = decode_client(&w.setup_messages(3)[0]) else { panic!("a call") };
        assert_eq!(method, FanMethod::Subscribe.id());
        let t = w.template();
        let mut p = t.payload.clone();
        let at = t.stamp_at.unwrap();
        p[at..at + 8].copy_from_slice(&123_456_789u64.to_le_bytes());
        let Ok(ClientMessage::Call { input, .. }) = decode_client(&p) else { panic!("a call") };
        let mut buf = hardlight::protocol::wire::AlignedBuf::new();
        let got = <FanEmitInput as Wire>::decode(wire::align_into(&mut buf, input)).unwrap();
        assert_eq!(got.tick.emitted_ns, 123_456_789);
        // The event as the server frames it: kind, type, archive.
        let mut ev = vec![KIND_EVENT];
        ev.extend_from_slice(&Tick::TYPE.to_le_bytes());
        ev.extend_from_slice(&wire::encode(&Tick { seq: 4, emitted_ns: 987_654_321 }).unwrap());
        assert_eq!(w.classify(&ev), Delivery::Stamped { stamp_ns: 987_654_321 });
        // Answers: subscribe's unit is ignored; emit's `true` frees the id.
        let unit = wire::encode(&()).unwrap();
        assert_ne!(&unit[..], &wire::encode(&true).unwrap()[..]);
        let mut sub = result_header(0, true).to_vec();
        sub.extend_from_slice(&unit);
        assert_eq!(w.classify(&sub), Delivery::Ignore);
        let mut ack = result_header(9, true).to_vec();
        ack.extend_from_slice(&wire::encode(&true).unwrap());
        assert_eq!(w.classify(&ack), Delivery::Ack { id: 9 });
        let mut refused = result_header(9, true).to_vec();
        refused.extend_from_slice(&wire::encode(&false).unwrap());
        assert_eq!(w.classify(&refused), Delivery::Failed { id: 9, code: 0 });
    }
}
