//! Round trips through the code `#[hardlight::rpc]` generates, with no
//! sockets: a test `Caller` serves each call in-process through the generated
//! `Service` and `Reply`, exactly the steps the server driver takes.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures::channel::oneshot;
use futures::executor::block_on;
use hardlight::protocol::service::{Caller, RawReply, Rejection, Reply};
use hardlight::protocol::wire::AlignedBuf;
use hardlight::rkyv::{Archive, Deserialize, Serialize};
use hardlight::{CallError, CallErrorCode, Service, Wire};

/// The application error of `Counter::divide`.
#[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
#[rkyv(crate = hardlight::rkyv)]
pub enum MathError {
    /// Division by zero.
    DivByZero,
}

/// A counter service.
#[hardlight::rpc]
pub trait Counter {
    /// Adds `amount`, returns the new value.
    async fn increment(&self, amount: u32) -> u32;
    /// The current value.
    async fn get(&self) -> u32;
    /// `a / b`, or `DivByZero`.
    async fn divide(&self, a: u32, b: u32) -> Result<u32, MathError>;
    /// Formats a label and some numbers.
    async fn describe(&self, label: String, values: Vec<u64>) -> String;
    /// Sets the counter to zero.
    async fn reset(&self);
}

#[derive(Default)]
struct MyCounter {
    value: AtomicU32,
}

impl Counter for MyCounter {
    async fn increment(&self, amount: u32) -> u32 {
        self.value.fetch_add(amount, Ordering::SeqCst) + amount
    }

    async fn get(&self) -> u32 {
        self.value.load(Ordering::SeqCst)
    }

    async fn divide(&self, a: u32, b: u32) -> Result<u32, MathError> {
        a.checked_div(b).ok_or(MathError::DivByZero)
    }

    async fn describe(&self, label: String, values: Vec<u64>) -> String {
        format!("{label}: {} values, sum {}", values.len(), values.iter().sum::<u64>())
    }

    async fn reset(&self) {
        self.value.store(0, Ordering::SeqCst);
    }
}

/// A second service in the same module, for concurrency: `wait` finishes only
/// once `open` has run.
#[hardlight::rpc]
pub trait Gate {
    /// Waits for `open` and returns its value.
    async fn wait(&self) -> u64;
    /// Releases `wait` with `value`; `false` if it was already released.
    async fn open(&self, value: u64) -> bool;
}

struct MyGate {
    tx: Mutex<Option<oneshot::Sender<u64>>>,
    rx: Mutex<Option<oneshot::Receiver<u64>>>,
}

impl MyGate {
    fn new() -> Self {
        let (tx, rx) = oneshot::channel();
        Self { tx: Mutex::new(Some(tx)), rx: Mutex::new(Some(rx)) }
    }
}

impl Gate for MyGate {
    async fn wait(&self) -> u64 {
        let rx = self.rx.lock().unwrap().take().expect("wait called twice");
        rx.await.expect("gate dropped")
    }

    async fn open(&self, value: u64) -> bool {
        let tx = self.tx.lock().unwrap().take();
        tx.is_some_and(|tx| tx.send(value).is_ok())
    }
}

/// Serves calls in-process, as the server driver would: `Service::call`, await
/// the future, `Reply::encode`. Rejections become the `CallError` a real
/// client reports for a `CALL_ERROR` envelope.
struct Local<S> {
    service: S,
}

const MAX_DEPTH: usize = 64;

async fn serve<S: Service>(service: &S, method: u16, input: AlignedBuf) -> Result<RawReply, CallError> {
    let future = service
        .call(method, &input, MAX_DEPTH)
        .map_err(|r| CallError::Rejected { code: r.code(), detail: r.detail() })?;
    // The future owns its decoded input: the driver may drop or reuse the buffer.
    drop(input);
    let reply = future.await;
    let mut payload = AlignedBuf::new();
    let ok = reply
        .encode(&mut payload)
        .map_err(|e| CallError::Rejected { code: CallErrorCode::EncodeFailed, detail: e.0 })?;
    Ok(RawReply { ok, payload })
}

// `Caller` futures must be `Send`; that is only known for concrete handler
// types (their async fn futures leak auto traits), hence one impl per service.
impl Caller for Local<CounterService<MyCounter>> {
    fn call_raw(&self, method: u16, input: AlignedBuf) -> impl Future<Output = Result<RawReply, CallError>> + Send {
        serve(&self.service, method, input)
    }
}

impl Caller for Local<GateService<MyGate>> {
    fn call_raw(&self, method: u16, input: AlignedBuf) -> impl Future<Output = Result<RawReply, CallError>> + Send {
        serve(&self.service, method, input)
    }
}

fn counter_client() -> CounterClient<Local<CounterService<MyCounter>>> {
    CounterClient::new(Local { service: CounterService::new(MyCounter::default()) })
}

fn assert_send<F: Send>(f: F) -> F {
    f
}

#[test]
fn typed_results_come_back_for_each_method() {
    let client = counter_client();
    block_on(async {
        assert_eq!(client.increment(5).await, Ok(5));
        assert_eq!(client.increment(7).await, Ok(12));
        assert_eq!(client.get().await, Ok(12));
        assert_eq!(client.divide(12, 4).await, Ok(Ok(3)));
        assert_eq!(
            client.describe("primes".to_string(), vec![2, 3, 5, 7]).await,
            Ok("primes: 4 values, sum 17".to_string())
        );
        assert_eq!(client.describe(String::new(), Vec::new()).await, Ok(": 0 values, sum 0".to_string()));
        assert_eq!(client.reset().await, Ok(()));
        assert_eq!(client.get().await, Ok(0));
    });
    // The handler's state is the one the service wraps.
    assert_eq!(client.caller().service.0.value.load(Ordering::SeqCst), 0);
}

#[test]
fn application_errors_arrive_typed() {
    let client = counter_client();
    let result: Result<Result<u32, MathError>, CallError> = block_on(client.divide(1, 0));
    assert_eq!(result, Ok(Err(MathError::DivByZero)));
}

#[test]
fn result_outputs_are_sent_split_and_plain_outputs_whole() {
    let mut buf = AlignedBuf::new();
    assert!(!CounterReply::Divide(Err(MathError::DivByZero)).encode(&mut buf).unwrap());
    assert_eq!(MathError::decode(&buf).unwrap(), MathError::DivByZero);
    assert!(CounterReply::Divide(Ok(9)).encode(&mut buf).unwrap());
    assert_eq!(u32::decode(&buf).unwrap(), 9);
    assert!(CounterReply::Describe("x".into()).encode(&mut buf).unwrap());
    assert_eq!(String::decode(&buf).unwrap(), "x");
    assert!(CounterReply::Reset(()).encode(&mut buf).unwrap());
}

#[test]
fn client_futures_are_send() {
    let client = counter_client();
    let value = block_on(assert_send(client.describe("a".into(), vec![1])));
    assert_eq!(value, Ok("a: 1 values, sum 1".to_string()));
    assert_eq!(block_on(assert_send(client.divide(4, 2))), Ok(Ok(2)));
}

#[test]
fn method_table_is_in_declaration_order() {
    assert_eq!(CounterMethod::NAMES, &["increment", "get", "divide", "describe", "reset"]);
    assert_eq!(
        CounterMethod::ALL,
        &[
            CounterMethod::Increment,
            CounterMethod::Get,
            CounterMethod::Divide,
            CounterMethod::Describe,
            CounterMethod::Reset
        ]
    );
    for (i, m) in CounterMethod::ALL.iter().enumerate() {
        assert_eq!(usize::from(m.id()), i);
        assert_eq!(CounterMethod::from_id(m.id()), Some(*m));
        assert_eq!(m.name(), CounterMethod::NAMES[i]);
        assert_eq!(m.to_string(), CounterMethod::NAMES[i]);
    }
    assert_eq!(CounterMethod::Divide as u16, 2);
    assert_eq!(CounterMethod::from_id(5), None);
    assert_eq!(CounterMethod::from_id(u16::MAX), None);
    assert_eq!(GateMethod::NAMES, &["wait", "open"]);
    assert_eq!(<CounterService<MyCounter> as Service>::METHOD_NAMES, CounterMethod::NAMES);
}

#[test]
fn unknown_method_is_rejected_before_running() {
    let service = CounterService::new(MyCounter::default());
    let input = hardlight::protocol::wire::encode(&CounterGetInput {}).unwrap();
    assert_eq!(service.call(5, &input, MAX_DEPTH).err(), Some(Rejection::UnknownMethod(5)));
    assert_eq!(service.call(u16::MAX, &input, MAX_DEPTH).err(), Some(Rejection::UnknownMethod(u16::MAX)));

    // Through a client connection it is the protocol error, not a panic.
    let client = counter_client();
    let err = block_on(client.caller().call_raw(99, input)).unwrap_err();
    assert!(matches!(err, CallError::Rejected { code: CallErrorCode::UnknownMethod, .. }), "{err}");
}

#[test]
fn garbage_or_truncated_input_is_rejected() {
    let service = CounterService::new(MyCounter::default());
    let is_invalid = |method: CounterMethod, bytes: &[u8]| {
        let mut buf = AlignedBuf::new();
        buf.extend_from_slice(bytes);
        matches!(service.call(method.id(), &buf, MAX_DEPTH).err(), Some(Rejection::InvalidInput(_)))
    };
    // Too short to hold the argument.
    assert!(is_invalid(CounterMethod::Increment, &[]));
    assert!(is_invalid(CounterMethod::Divide, &[1, 0, 0, 0]));
    // A string whose relative pointer points far outside the buffer.
    assert!(is_invalid(CounterMethod::Describe, &[0xff; 32]));
    // A real input, truncated: the root and the string are cut.
    let input = CounterDescribeInput { label: "a label longer than inline".into(), values: vec![1, 2, 3] };
    let bytes = hardlight::protocol::wire::encode(&input).unwrap();
    assert!(!is_invalid(CounterMethod::Describe, &bytes));
    assert!(is_invalid(CounterMethod::Describe, &bytes[..bytes.len() / 2]));
    // The input of another method does not validate as this one's.
    let small = hardlight::protocol::wire::encode(&CounterIncrementInput { amount: 1 }).unwrap();
    assert!(is_invalid(CounterMethod::Describe, &small));
    // Nothing ran.
    assert_eq!(service.0.value.load(Ordering::SeqCst), 0);

    let client = counter_client();
    let err = block_on(client.caller().call_raw(CounterMethod::Divide.id(), AlignedBuf::new())).unwrap_err();
    assert!(matches!(err, CallError::Rejected { code: CallErrorCode::InvalidInput, .. }), "{err}");
}

#[test]
fn input_is_decoded_before_the_future_is_returned() {
    let service = CounterService::new(MyCounter::default());
    let mut buf = hardlight::protocol::wire::encode(&CounterIncrementInput { amount: 41 }).unwrap();
    let future = service.call(CounterMethod::Increment.id(), &buf, MAX_DEPTH).unwrap();
    // The driver reuses its receive buffer for the next message while the call
    // runs: this only compiles because the future does not borrow `buf`.
    CounterIncrementInput { amount: 1000 }.encode_into(&mut buf).unwrap();
    let reply = block_on(future);
    assert!(matches!(reply, CounterReply::Increment(41)));
}

#[test]
fn calls_run_concurrently() {
    let client = GateClient::new(Local { service: GateService::new(MyGate::new()) });
    let mut cx = Context::from_waker(Waker::noop());
    let mut wait = pin!(client.wait());
    let mut open = pin!(client.open(7));
    // `wait` is parked on the gate; a serialized implementation would never
    // get to `open`.
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    assert_eq!(open.as_mut().poll(&mut cx), Poll::Ready(Ok(true)));
    assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
    // Two server futures at once on the same service, interleaved by hand.
    let service = GateService::new(MyGate::new());
    let wait_in = hardlight::protocol::wire::encode(&GateWaitInput {}).unwrap();
    let open_in = hardlight::protocol::wire::encode(&GateOpenInput { value: 9 }).unwrap();
    let mut wait = pin!(service.call(GateMethod::Wait.id(), &wait_in, MAX_DEPTH).unwrap());
    let mut open = pin!(service.call(GateMethod::Open.id(), &open_in, MAX_DEPTH).unwrap());
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    assert!(matches!(open.as_mut().poll(&mut cx), Poll::Ready(GateReply::Open(true))));
    assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(GateReply::Wait(9))));
}

#[test]
fn generated_types_are_nameable() {
    let input = CounterDivideInput { a: 6, b: 3 };
    let bytes = hardlight::protocol::wire::encode(&input).unwrap();
    let back = CounterDivideInput::decode(&bytes).unwrap();
    assert_eq!((back.a, back.b), (6, 3));
    let output: CounterDivideOutput = Err(MathError::DivByZero);
    assert_eq!(output, Err(MathError::DivByZero));
    let unit: CounterResetOutput = ();
    assert_eq!(unit, ());
    let described: CounterDescribeOutput = String::from("s");
    assert_eq!(described.len(), 1);
}

/// The crate path can be overridden: here the generated code uses
/// `hardlight_core` directly, as a crate without the facade would.
mod core_path {
    use hardlight_core::{Rejection, Service};

    #[hardlight::rpc(crate = "::hardlight_core")]
    pub trait Echo {
        async fn echo(&self, text: String) -> String;
    }

    struct Upper;

    impl Echo for Upper {
        async fn echo(&self, text: String) -> String {
            text.to_uppercase()
        }
    }

    #[test]
    fn overridden_crate_path_works() {
        let service = EchoService::new(Upper);
        let input = hardlight_core::wire::encode(&EchoEchoInput { text: "hi".into() }).unwrap();
        let reply = futures::executor::block_on(service.call(0, &input, 8).unwrap());
        assert!(matches!(reply, EchoReply::Echo(s) if s == "HI"));
        assert_eq!(service.call(1, &input, 8).err(), Some(Rejection::UnknownMethod(1)));
    }
}
