//! The `#[hardlight::rpc]` attribute macro.
//!
//! A HardLight service is declared as a trait of `async fn`s. The macro keeps
//! the trait and generates, next to it, everything the server driver and the
//! client need to speak the protocol for it. For
//!
//! ```ignore
//! #[hardlight::rpc]
//! pub trait Counter {
//!     /// Adds `amount`, returns the new value.
//!     async fn increment(&self, amount: u32) -> u32;
//!     async fn get(&self) -> u32;
//!     async fn divide(&self, a: u32, b: u32) -> Result<u32, MathError>;
//! }
//! ```
//!
//! it emits:
//!
//! - **the trait**, as written, with `#[allow(async_fn_in_trait)]`. Handlers
//!   run on the server's single-threaded (thread-per-core) executor, so their
//!   futures carry no `Send` bound.
//! - **`CounterMethod`**, a `#[repr(u16)]` enum of the methods in declaration
//!   order (`Increment = 0, Get = 1, Divide = 2`) with `ALL`, `NAMES`,
//!   `id`, `from_id`, `name` and `Display`. The method id is the method's
//!   position in the trait: it is what travels in every call envelope, so
//!   client and server must be built from the same trait, and **reordering
//!   or inserting methods is a breaking protocol change** (append new methods
//!   at the end). The id is a `u16` because that is the envelope's field
//!   width: two bytes per call instead of a method name, and 65 536 methods
//!   is more than any one service needs.
//! - **one input struct per method**, `CounterIncrementInput { amount }`,
//!   `CounterGetInput {}`, ..., deriving rkyv's `Archive`, `Serialize` and
//!   `Deserialize` (through the crate's `rkyv` re-export). A call's input is
//!   always one archived struct, so every method's arguments are validated
//!   by the same bytecheck pass, and adding a field is visible in one place.
//!   The structs derive nothing else, so argument types need only be
//!   archivable. **Output aliases** `CounterIncrementOutput = u32`, ... name
//!   each method's declared return type.
//! - **`CounterReply`**, one variant per method holding its finished output,
//!   implementing `Reply`. Outputs written as `Result<T, E>` travel split:
//!   `Ok(t)` is archived as `T` and flagged as output, `Err(e)` is archived as
//!   `E` and flagged as an application error, so the server never archives
//!   a `Result` and a client in another language sees two plain types. The
//!   check is *syntactic*: the return type's last path segment is `Result`
//!   with exactly two type arguments. A type alias (`type Res = Result<u32,
//!   MyError>`) or a one-argument alias such as `io::Result<T>` hides this;
//!   such an output is sent whole as a plain output, which works as long as
//!   the `Result` itself is archivable, but the error then arrives inside
//!   the output rather than as an application error.
//! - **`CounterService<T>`**, a newtype over any `T: Counter`, implementing
//!   `Service`. Its `call` matches the method id and decodes (validates
//!   and deserializes) the input *synchronously*, before returning the
//!   handler's future. The driver reads calls into a reused receive buffer
//!   and must be free to parse the next message while this call runs; an
//!   owned, decoded input is also what lets calls on one connection run
//!   concurrently. A bad id is `Rejection::UnknownMethod` and bad bytes
//!   are `Rejection::InvalidInput`, both reported before any handler code
//!   runs.
//! - **`CounterClient<C>`**, generic over any `Caller` (a client
//!   connection), with one `async fn` per method taking the arguments by
//!   value and returning `Result<Output, CallError>`, where `Output` is the
//!   declared return type: `divide` returns
//!   `Result<Result<u32, MathError>, CallError>`, keeping transport failures
//!   and the application's own errors apart. The trait method's doc comments
//!   are copied onto it. Its futures are `Send` whenever the argument types
//!   are, because the `Caller`'s futures are.
//!
//! - **`CounterMethod::SCHEMA`** and **`CounterMethod::FINGERPRINT`**, the
//!   service's schema computed at compile time: each method's position,
//!   name, argument names and types and output type, and each event type,
//!   hashed (FNV-1a, `const fn`) into one `u64`. Types are hashed as written
//!   in the trait, plus the shape `#[hardlight::wire]` gives them (their
//!   name, fields and archived size and alignment; rkyv's public API does
//!   not expose an archived type's field layout, so a type that derives
//!   rkyv's traits by hand contributes only its name). The generated
//!   `Service` carries it (`Service::SCHEMA`); a client opened with
//!   `ClientConfig::schema(&CounterMethod::SCHEMA)` sends the fingerprint in
//!   the upgrade and a server of another schema refuses it with HTTP 400
//!   naming both fingerprints (docs/PROTOCOL.md, section 2).
//! - With **`#[rpc(events(ChatMessage, Typing))]`**, an `Event` impl for
//!   each listed type whose `TYPE` is its position in the list
//!   (`ChatMessage` is 0, `Typing` 1). Ids by position cannot collide within
//!   a service, a type listed twice is a macro error, and the list is part
//!   of the fingerprint, so client and server agree on every id. The server
//!   emits only declared types. A type can be an event of one service per
//!   crate (a second `events(...)` naming it is a conflicting `Event` impl);
//!   append new event types at the end, as with methods.
//!
//! Every path in the generated code goes through one crate path, `::hardlight`
//! by default; `#[rpc(crate = "::hardlight_core")]` (or any path where
//! `hardlight_core`'s root items are reachable) overrides it.
//!
//! The macro checks what it can see: methods must be `async`, take `&self`,
//! have plain identifier arguments of owned types and no generics; the trait
//! may contain nothing else. Each argument and output type also gets a
//! compile-time assertion that it implements `Wire`, whose error message
//! (`` `X` cannot be sent over HardLight ``) points at the offending type.

use proc_macro::TokenStream;

mod expand;
mod gen;
mod model;
mod reflect;
mod state;
mod wire;

/// Turns a trait of `async fn`s into a HardLight service definition.
///
/// Put it on a trait whose methods are all `async fn name(&self, arg: Type,
/// ...) -> Output`, with owned, archivable argument and output types (put
/// `#[hardlight::wire]` on your own types). The
/// trait is kept as written; alongside it the macro generates, for a trait
/// `Name`, `NameMethod` (the method ids), `Name<Method>Input` structs and
/// `Name<Method>Output` aliases, `NameReply`, `NameService<T>` (the server
/// side, for any `T: Name`) and `NameClient<C>` (the client side, for any
/// `hardlight::protocol::service::Caller`). The generated items get the trait's visibility.
/// See the crate documentation for what each one does.
///
/// ```ignore
/// #[hardlight::rpc]
/// pub trait Counter {
///     /// Adds `amount`, returns the new value.
///     async fn increment(&self, amount: u32) -> u32;
///     async fn divide(&self, a: u32, b: u32) -> Result<u32, MathError>;
/// }
///
/// // Server side: hand `CounterService::new(MyCounter::default())` to the server.
/// // Client side:
/// let counter = CounterClient::new(connection);
/// let n: u32 = counter.increment(5).await?;
/// let q: Result<u32, MathError> = counter.divide(6, 3).await?;
/// ```
///
/// Method ids are positions in the trait: append new methods at the end.
///
/// # Arguments
///
/// - `events(A, B, ...)`: the event types the server pushes for this
///   service; each one's wire id is its position in the list. Only these
///   types can be emitted, and they are part of the schema fingerprint.
/// - `crate = "path"`: where HardLight's items are, `::hardlight` by default.
///   Use `#[rpc(crate = "::hardlight_core")]` when depending on the core
///   crate directly, or a re-exporting path of your own.
#[proc_macro_attribute]
pub fn rpc(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::rpc(attr.into(), item.into()).into()
}

/// Makes a struct or enum a HardLight wire type: an argument, output, error,
/// event or state field.
///
/// It adds rkyv's `Archive`, `Serialize` and `Deserialize` derives through
/// HardLight's re-export of rkyv (so no `use hardlight::rkyv` and no
/// `#[rkyv(crate = ...)]` line are needed) and keeps every other attribute
/// and derive of the type as written. It also gives the type a shape (its
/// name, its fields' names and types in order, and the size and alignment
/// of its archived form) that `#[hardlight::rpc]` folds into the service's
/// fingerprint, so a client built against a changed type is refused at
/// connect time instead of misreading bytes.
///
/// ```ignore
/// #[hardlight::wire]
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct ChatMessage {
///     pub user: String,
///     pub text: String,
/// }
///
/// #[hardlight::wire]
/// #[derive(Debug)]
/// pub enum CounterError {
///     Underflow { value: u64 },
///     Closed,
/// }
/// ```
///
/// Types that derive rkyv's traits by hand work everywhere too; they only
/// contribute their name (as written in the trait) to the fingerprint.
///
/// # Arguments
///
/// - `crate = "path"`: where HardLight's items are, `::hardlight` by default.
#[proc_macro_attribute]
pub fn wire(attr: TokenStream, item: TokenStream) -> TokenStream {
    wire::wire(attr.into(), item.into()).into()
}

/// Derives `hardlight::ConnectionState` for a struct with named fields.
///
/// Each field is one unit of change: when a handler's state guard drops,
/// every field that differs (`PartialEq`) from its value at lock time is
/// archived and sent to the client, and no other field. Field indexes are
/// declaration order, so append new fields at the end. Field types must be
/// archivable (`Wire`), `PartialEq` and `Clone`. Use
/// `#[hardlight(crate = "::hardlight_core")]` to change the crate path.
///
/// ```ignore
/// #[derive(Clone, Default, hardlight::ConnectionState)]
/// pub struct ChatState {
///     pub user: Option<String>,
///     pub threads: Vec<u32>,
/// }
/// ```
#[proc_macro_derive(ConnectionState, attributes(hardlight))]
pub fn derive_connection_state(item: TokenStream) -> TokenStream {
    state::derive(item.into()).into()
}
