//! What the load generator sends and how it recognises the answers.
//!
//! A [`Scenario`] names a workload on the command line; its [`Workload`]
//! gives the engine one request *template* (the payload of one WebSocket
//! message, encoded once) and a classifier for received messages. The
//! engine copies the template per request and patches only the call id byte
//! (and, for workloads that want it, an 8-byte send timestamp), so the hot
//! path never serializes anything.
//!
//! # Adding a scenario
//!
//! Adding a scenario is one new [`Scenario`] variant plus its arm in
//! [`Scenario::workload`] returning a [`Workload`]. The two in
//! `crate::pushed` use every hook the engine has:
//!
//! - **`state`** (a call that changes connection state): the call's id is
//!   patched into its input too ([`RequestTemplate::id_also_at`]); the server
//!   puts it in the STATE message it sends before the result. The STATE
//!   message classifies as [`Delivery::State`] and the result as
//!   [`Delivery::Reply`]; with [`Workload::state_precedes_reply`] the engine
//!   counts every reply whose STATE had not arrived first.
//! - **`fanout`** (one emit, N subscribers, latency to each delivery):
//!   [`Workload::sends`] is false for every connection but the emitter,
//!   subscribe messages go in [`Workload::setup_messages`],
//!   [`RequestTemplate::stamp_at`] makes every emit carry its intended send
//!   time, and each pushed event classifies as [`Delivery::Stamped`]: the
//!   engine records `now - stamp` for every delivery on every connection.
//!   Latency and the rate then count deliveries, not calls, and the
//!   emitter's own result is a [`Delivery::Ack`] (frees the id, not timed).

use hardlight::protocol::envelope::{self, ServerMessage};
use hardlight::protocol::wire;
use hardlight_bench::{BenchAddInput, BenchEcho64Input, BenchEchoInput, BenchMethod, Payload64, ECHO_SIZE};

/// The HardLight subprotocol offered in the upgrade.
pub const HL_SUBPROTOCOL: &str = hardlight::protocol::handshake::SUBPROTOCOL;

/// A workload by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// `Bench::echo64`: a fixed 64-byte payload, the allocation-free path.
    Echo64,
    /// `Bench::echo` with `size` bytes.
    Echo {
        /// Bytes echoed.
        size: usize,
    },
    /// `Bench::add`: the smallest call.
    Add,
    /// Plain binary WebSocket messages of `size` bytes, no envelope, no
    /// subprotocol: any WebSocket echo server.
    RawEcho {
        /// Message size in bytes (at least 1: byte 0 carries the sequence id).
        size: usize,
    },
    /// `Stateful::touch`: every call changes the connection's state, so a
    /// STATE message precedes every response (checked per call).
    State,
    /// `Fan::emit` on connection 0, delivered as an event to every other
    /// connection (subscribed to the topic): deliveries/s and emit-to-delivery latency.
    Fanout,
}

impl Scenario {
    /// Parses a name from the command line; `size` applies to `echo` and `raw-echo`.
    pub fn parse(name: &str, size: Option<usize>) -> Result<Self, String> {
        let s = match name {
            "echo64" => Self::Echo64,
            "echo" => Self::Echo { size: size.unwrap_or(ECHO_SIZE) },
            "add" => Self::Add,
            "raw-echo" | "raw" => Self::RawEcho { size: size.unwrap_or(ECHO_SIZE) },
            "state" => Self::State,
            "fanout" => Self::Fanout,
            other => return Err(format!("unknown scenario `{other}` (echo64, echo, add, raw-echo, state, fanout)")),
        };
        match s {
            Self::RawEcho { size: 0 } => Err("raw-echo needs --size of at least 1 (byte 0 carries the id)".into()),
            Self::Echo { size } | Self::RawEcho { size } if size > 16 << 20 => {
                Err(format!("--size {size} is larger than the 16 MiB this tool buffers"))
            }
            s => Ok(s),
        }
    }

    /// A short name for tables and directory names: `echo64`, `echo-1024`, `add`, `raw-echo-64`.
    pub fn name(&self) -> String {
        match self {
            Self::Echo64 => "echo64".into(),
            Self::Echo { size } => format!("echo-{size}"),
            Self::Add => "add".into(),
            Self::RawEcho { size } => format!("raw-echo-{size}"),
            Self::State => "state".into(),
            Self::Fanout => "fanout".into(),
        }
    }

    /// Builds the workload.
    pub fn workload(&self) -> Box<dyn Workload> {
        match self {
            Self::Echo64 => {
                let payload = Payload64 { bytes: pattern::<ECHO_SIZE>() };
                let input = wire::encode(&BenchEcho64Input { payload }).expect("encode echo64 input");
                let expected = wire::encode(&payload).expect("encode echo64 output");
                Box::new(HlCall::new(BenchMethod::Echo64.id(), &input, &expected))
            }
            Self::Echo { size } => {
                let data: Vec<u8> = (0..*size).map(|i| (i * 7 + 3) as u8).collect();
                let expected = wire::encode(&data).expect("encode echo output");
                let input = wire::encode(&BenchEchoInput { data }).expect("encode echo input");
                Box::new(HlCall::new(BenchMethod::Echo.id(), &input, &expected))
            }
            Self::Add => {
                let input = wire::encode(&BenchAddInput { a: 40, b: 2 }).expect("encode add input");
                let expected = wire::encode(&42u64).expect("encode add output");
                Box::new(HlCall::new(BenchMethod::Add.id(), &input, &expected))
            }
            Self::RawEcho { size } => Box::new(RawEcho::new(*size)),
            Self::State => Box::new(crate::pushed::StateCall::new()),
            Self::Fanout => Box::new(crate::pushed::FanOut::new()),
        }
    }
}

fn pattern<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    b
}

/// One request message, encoded once.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// The unmasked message payload.
    pub payload: Vec<u8>,
    /// Offset of the call id byte in `payload`.
    pub id_at: usize,
    /// Offset of an 8-byte little-endian intended-send timestamp (ns since the
    /// run's start), for workloads whose answers arrive without an id.
    pub stamp_at: Option<usize>,
    /// A second offset that gets the call id (`state`: the server echoes it
    /// in the STATE message, so each STATE can be matched to its call).
    pub id_also_at: Option<usize>,
}

/// What one received binary message means to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The answer to request `id`, as expected.
    Reply {
        /// Call id.
        id: u8,
    },
    /// An answer to `id` whose bytes differ from what the workload expects.
    Mismatch {
        /// Call id.
        id: u8,
    },
    /// Request `id` failed (a HardLight call error or application error).
    Failed {
        /// Call id.
        id: u8,
        /// The envelope's error code (0 for an application error).
        code: u8,
    },
    /// The answer to request `id`, to free the id without timing it (fanout:
    /// the emitter's result; the deliveries are what is timed).
    Ack {
        /// Call id.
        id: u8,
    },
    /// A STATE message naming call `id`, which must arrive before that
    /// call's reply (see [`Workload::state_precedes_reply`]).
    State {
        /// Call id.
        id: u8,
    },
    /// A delivery that carries its own intended send time (fanout events).
    Stamped {
        /// Intended send time, ns since the run's start.
        stamp_ns: u64,
    },
    /// A message that neither completes nor times anything.
    Ignore,
    /// A message that breaks the protocol; the connection is dropped.
    Protocol,
}

/// A workload: the request template and how to read answers.
pub trait Workload: Send + Sync {
    /// Name for output.
    fn name(&self) -> String;
    /// Subprotocol offered in the upgrade and required in the 101, if any.
    fn subprotocol(&self) -> Option<&'static str>;
    /// The request sent over and over.
    fn template(&self) -> RequestTemplate;
    /// Classifies a complete received binary message.
    fn classify(&self, payload: &[u8]) -> Delivery;
    /// Whether connection `index` of `connections` sends requests (fanout:
    /// only the emitter does; everyone else only receives).
    fn sends(&self, index: usize, connections: usize) -> bool {
        let _ = (index, connections);
        true
    }
    /// Whether every reply must be preceded by a [`Delivery::State`] naming
    /// its call; replies without one are counted as `state_late`.
    fn state_precedes_reply(&self) -> bool {
        false
    }
    /// Messages sent once on connection `index` right after the upgrade
    /// (fanout: subscribe). Their answers must classify as `Ignore`.
    fn setup_messages(&self, index: usize) -> Vec<Vec<u8>> {
        let _ = index;
        Vec::new()
    }
}

/// A HardLight call with a fixed input and a fixed expected output.
pub struct HlCall {
    method: u16,
    payload: Vec<u8>,
    expected: Vec<u8>,
}

impl HlCall {
    /// `input` and `expected` are archives.
    pub fn new(method: u16, input: &[u8], expected: &[u8]) -> Self {
        let mut payload = Vec::with_capacity(envelope::CALL_HEADER_LEN + input.len());
        envelope::encode_call(&mut payload, 0, method, input);
        Self { method, payload, expected: expected.to_vec() }
    }
}

impl Workload for HlCall {
    fn name(&self) -> String {
        BenchMethod::from_id(self.method)
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| format!("method-{}", self.method))
    }

    fn subprotocol(&self) -> Option<&'static str> {
        Some(HL_SUBPROTOCOL)
    }

    fn template(&self) -> RequestTemplate {
        RequestTemplate { payload: self.payload.clone(), id_at: 1, stamp_at: None, id_also_at: None }
    }

    #[inline]
    fn classify(&self, payload: &[u8]) -> Delivery {
        match envelope::decode_server(payload) {
            Ok(ServerMessage::Result { id, ok: true, payload }) => {
                if payload == self.expected.as_slice() {
                    Delivery::Reply { id }
                } else {
                    Delivery::Mismatch { id }
                }
            }
            Ok(ServerMessage::Result { id, ok: false, .. }) => Delivery::Failed { id, code: 0 },
            Ok(ServerMessage::CallError { id, code, .. }) => Delivery::Failed { id, code },
            Ok(ServerMessage::Other { .. }) => Delivery::Ignore,
            Err(_) => Delivery::Protocol,
        }
    }
}

/// Plain binary echo: byte 0 is the id, the rest a fixed pattern.
pub struct RawEcho {
    payload: Vec<u8>,
}

impl RawEcho {
    /// A message of `size` bytes (at least 1).
    pub fn new(size: usize) -> Self {
        let payload = (0..size.max(1)).map(|i| (i * 13 + 5) as u8).collect();
        Self { payload }
    }
}

impl Workload for RawEcho {
    fn name(&self) -> String {
        format!("raw-echo-{}", self.payload.len())
    }

    fn subprotocol(&self) -> Option<&'static str> {
        None
    }

    fn template(&self) -> RequestTemplate {
        RequestTemplate { payload: self.payload.clone(), id_at: 0, stamp_at: None, id_also_at: None }
    }

    #[inline]
    fn classify(&self, payload: &[u8]) -> Delivery {
        match payload.split_first() {
            Some((&id, rest)) if rest == &self.payload[1..] => Delivery::Reply { id },
            Some((&id, _)) => Delivery::Mismatch { id },
            None => Delivery::Protocol,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hardlight::protocol::envelope::{decode_client, result_header, ClientMessage};

    #[test]
    fn names_and_parsing() {
        assert_eq!(Scenario::parse("echo64", None).unwrap(), Scenario::Echo64);
        assert_eq!(Scenario::parse("echo", Some(1024)).unwrap().name(), "echo-1024");
        assert_eq!(Scenario::parse("raw-echo", None).unwrap().name(), "raw-echo-64");
        assert!(Scenario::parse("raw-echo", Some(0)).is_err());
        assert_eq!(Scenario::parse("state", None).unwrap().name(), "state");
        assert_eq!(Scenario::parse("fanout", None).unwrap(), Scenario::Fanout);
        assert!(Scenario::parse("nope", None).is_err());
    }

    #[test]
    fn hl_templates_are_calls_and_replies_classify() {
        for s in [Scenario::Echo64, Scenario::Echo { size: 100 }, Scenario::Add] {
            let w = s.workload();
            assert_eq!(w.subprotocol(), Some("hl/1"));
            let t = w.template();
            match decode_client(&t.payload).unwrap() {
                ClientMessage::Call { id, timeout_ms, .. } => assert_eq!((id, timeout_ms), (0, None)),
                other => panic!("expected a call, got {other:?}"),
            }
            assert_eq!(t.id_at, 1);
            // Build the reply the server would send for call 9.
            let mut reply = result_header(9, true).to_vec();
            let expected = match &s {
                Scenario::Echo64 => wire::encode(&Payload64 { bytes: pattern::<ECHO_SIZE>() }).unwrap().to_vec(),
                Scenario::Echo { size } => {
                    wire::encode(&(0..*size).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>()).unwrap().to_vec()
                }
                _ => wire::encode(&42u64).unwrap().to_vec(),
            };
            reply.extend_from_slice(&expected);
            assert_eq!(w.classify(&reply), Delivery::Reply { id: 9 }, "{}", s.name());
            let mut bad = reply.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(w.classify(&bad), Delivery::Mismatch { id: 9 });
            assert_eq!(w.classify(&[0x12, 9, 1, b'x']), Delivery::Failed { id: 9, code: 1 });
            assert_eq!(w.classify(&[0x20, 1]), Delivery::Ignore);
            assert_eq!(w.classify(&[0x01]), Delivery::Protocol);
        }
    }

    #[test]
    fn raw_echo_reads_id_from_byte_zero() {
        let w = Scenario::RawEcho { size: 16 }.workload();
        assert_eq!(w.subprotocol(), None);
        let mut t = w.template().payload;
        t[0] = 77;
        assert_eq!(w.classify(&t), Delivery::Reply { id: 77 });
        t[5] ^= 0xff;
        assert_eq!(w.classify(&t), Delivery::Mismatch { id: 77 });
        assert_eq!(w.classify(&[]), Delivery::Protocol);
    }
}
