//! Service schemas and their fingerprint, checked in the upgrade.
//!
//! `#[hardlight::rpc]` computes, at compile time, a [`Schema`] for each
//! service: every method's name and position, and a stable hash of each
//! argument, output, error and event type (the type as written in the trait,
//! plus, for types declared with `#[hardlight::wire]`, the type's name,
//! every field's name and type, and the size and alignment of its archived
//! form). The [`Schema::fingerprint`] folds them together.
//!
//! A generated client sends the fingerprint in the [`SCHEMA_HEADER`] of its
//! upgrade request; a server whose service has another fingerprint refuses
//! the upgrade with HTTP 400 and a body naming both fingerprints and the
//! server's methods and events ([`check_request`]), exactly like a wrong
//! `hl/` version. A request without the header (a port in another
//! language, a tool) is accepted: the check is for clients that can know.
//! Nothing is added to a call's bytes. See `docs/PROTOCOL.md`, section 2.

use std::any::TypeId;
use std::fmt;

use crate::handshake::UpgradeRequest;

/// The upgrade request header that carries a client's schema fingerprint:
/// 16 lowercase hexadecimal digits.
pub const SCHEMA_HEADER: &str = "hardlight-schema";

/// Browsers cannot set headers on a WebSocket upgrade, only the list of
/// subprotocols: a page sends its fingerprint as one more offered token,
/// `hl-schema.` followed by the 16 hexadecimal digits. The server never
/// selects it; it is read only when [`SCHEMA_HEADER`] is absent.
pub const SCHEMA_PROTOCOL_PREFIX: &str = "hl-schema.";

/// One method as the fingerprint sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSchema {
    /// The method's name as written in the trait.
    pub name: &'static str,
    /// Hash of the method's position, name, argument names and types, and
    /// output type.
    pub hash: u64,
    /// Marked `#[idempotent]` in the trait: a reconnecting client opened
    /// with this schema sends a call of it again when the connection
    /// dropped before the answer (any other call fails with
    /// `Disconnected` rather than risk running twice). Not part of
    /// `hash`: it is the client's retry policy, not the wire, so a server
    /// and client that differ only in it still agree.
    pub idempotent: bool,
}

/// One event type a service declares (`#[rpc(events(...))]`).
#[derive(Debug, Clone, Copy)]
pub struct EventSchema {
    /// The type as written in the attribute.
    pub name: &'static str,
    /// Its wire id: the position in the `events(...)` list.
    pub id: u16,
    /// Hash of the type as written and its `#[hardlight::wire]` shape.
    pub hash: u64,
    /// The Rust type, so that a server or client can refuse an event type
    /// the service does not declare.
    pub type_id: fn() -> TypeId,
}

/// What the client and the server of one service must agree on.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// The trait's name (for messages; not part of the fingerprint, so a
    /// renamed trait with the same methods and types still matches).
    pub service: &'static str,
    /// Methods in id order.
    pub methods: &'static [MethodSchema],
    /// Event types in id order.
    pub events: &'static [EventSchema],
    /// The hash of every method and event hash, in order.
    pub fingerprint: u64,
}

impl Schema {
    /// The declared event type with id `id`.
    pub fn event(&self, id: u16) -> Option<&EventSchema> {
        self.events.get(usize::from(id))
    }

    /// Whether `E` is the event type declared with id `id`.
    pub fn declares_event<E: 'static>(&self, id: u16) -> bool {
        self.event(id).is_some_and(|e| (e.type_id)() == TypeId::of::<E>())
    }

    /// The name of the declared event type `E`, or `None` if not declared.
    pub fn event_named<E: 'static>(&self) -> Option<&EventSchema> {
        self.events.iter().find(|e| (e.type_id)() == TypeId::of::<E>())
    }
}

/// Fingerprints print as 16 lowercase hexadecimal digits, as in the header.
pub fn format_fingerprint(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

/// Why an upgrade was refused for its schema fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaMismatch {
    /// The header is not 16 hexadecimal digits.
    Malformed(String),
    /// The client was built from another service definition.
    Different {
        /// What the client sent.
        client: u64,
        /// This server's fingerprint.
        server: u64,
        /// This server's trait name.
        service: &'static str,
        /// This server's methods and events with their hashes, for the
        /// reader to compare with the client's `<Trait>Method::SCHEMA`.
        listing: String,
    },
}

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(v) => {
                write!(f, "malformed {SCHEMA_HEADER} header {v:?}: expected 16 hexadecimal digits")
            }
            Self::Different { client, server, service, listing } => write!(
                f,
                "schema mismatch: the client was built from another version of the service (client fingerprint \
                 {}, this server's `{service}` has {}); rebuild the client from the server's #[hardlight::rpc] \
                 trait. Server schema: {listing}",
                format_fingerprint(*client),
                format_fingerprint(*server),
            ),
        }
    }
}

impl std::error::Error for SchemaMismatch {}

/// The server's side of the rule: a request without [`SCHEMA_HEADER`]
/// passes; one with it must carry `server`'s fingerprint. The refusal is
/// sent as HTTP 400 with the error's text as body.
pub fn check_request(req: &UpgradeRequest, server: &Schema) -> Result<(), SchemaMismatch> {
    let offered = req
        .headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .flat_map(|(_, v)| v.split(','))
        .find_map(|t| t.trim().strip_prefix(SCHEMA_PROTOCOL_PREFIX));
    let Some(value) = req.header(SCHEMA_HEADER).or(offered) else { return Ok(()) };
    let value = value.trim();
    let client = (value.len() == 16)
        .then(|| u64::from_str_radix(value, 16).ok())
        .flatten()
        .ok_or_else(|| SchemaMismatch::Malformed(value.to_string()))?;
    if client == server.fingerprint {
        return Ok(());
    }
    Err(SchemaMismatch::Different {
        client,
        server: server.fingerprint,
        service: server.service,
        listing: listing(server),
    })
}

/// `methods: a#1f2e3d4c, b#...; events: E#...`, hashes cut to 8 digits.
fn listing(schema: &Schema) -> String {
    let items = |it: &mut dyn Iterator<Item = (&str, u64)>| {
        it.map(|(n, h)| format!("{n}#{:08x}", h >> 32)).collect::<Vec<_>>().join(", ")
    };
    let methods = items(&mut schema.methods.iter().map(|m| (m.name, m.hash)));
    let events = items(&mut schema.events.iter().map(|e| (e.name, e.hash)));
    format!("methods: {methods}; events: {}", if events.is_empty() { "none" } else { &events })
}

/// 64-bit FNV-1a offset basis: the hash of nothing.
pub const HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `bytes`, continuing from `hash`. A `const fn`, so that
/// fingerprints are computed at compile time; stable across builds,
/// platforms and compiler versions (it depends only on the bytes).
pub const fn hash_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Folds `value` (little-endian) into `hash`.
pub const fn mix(hash: u64, value: u64) -> u64 {
    hash_bytes(hash, &value.to_le_bytes())
}

/// The shape of a type that `#[hardlight::wire]` did not declare: nothing
/// beyond what the `#[rpc]` trait writes. Generated code brings this trait
/// into scope and reads `<T>::__HARDLIGHT_SHAPE`; a `#[hardlight::wire]`
/// type has an inherent constant of that name, which Rust resolves before
/// any trait's, so such types contribute their full shape and every other
/// archivable type still works.
#[doc(hidden)]
pub trait DefaultShape {
    /// No shape beyond the type's name as written.
    const __HARDLIGHT_SHAPE: u64 = 0;
}

impl<T: ?Sized> DefaultShape for T {}

/// The archived size and alignment of `T`, folded into `hash`. Used by
/// `#[hardlight::wire]`.
#[doc(hidden)]
pub const fn mix_archived_layout<T: rkyv::Archive>(hash: u64) -> u64 {
    let h = mix(hash, std::mem::size_of::<T::Archived>() as u64);
    mix(h, std::mem::align_of::<T::Archived>() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_request;

    const METHODS: &[MethodSchema] = &[MethodSchema { name: "get", hash: 0x1122_3344_5566_7788, idempotent: false }];
    const SCHEMA: Schema = Schema { service: "Counter", methods: METHODS, events: &[], fingerprint: 0xabcd };

    fn request(extra: &str) -> UpgradeRequest {
        let r = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: hl/1\r\n{extra}\r\n"
        );
        parse_request(r.as_bytes(), 8192, 64).unwrap().unwrap().0
    }

    #[test]
    fn no_header_passes_and_a_matching_one_passes() {
        assert_eq!(check_request(&request(""), &SCHEMA), Ok(()));
        assert_eq!(check_request(&request("HardLight-Schema: 000000000000ABCD\r\n"), &SCHEMA), Ok(()));
    }

    #[test]
    fn another_fingerprint_is_refused_naming_both_and_the_servers_methods() {
        let err = check_request(&request("HardLight-Schema: 0000000000000001\r\n"), &SCHEMA).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("schema mismatch"), "{text}");
        assert!(text.contains("client fingerprint 0000000000000001"), "{text}");
        assert!(text.contains("`Counter` has 000000000000abcd"), "{text}");
        assert!(text.contains("methods: get#11223344; events: none"), "{text}");
    }

    #[test]
    fn browsers_send_the_fingerprint_as_an_offered_subprotocol() {
        let ok = "Sec-WebSocket-Protocol: hl-schema.000000000000abcd\r\n";
        assert_eq!(check_request(&request(ok), &SCHEMA), Ok(()));
        let other = "Sec-WebSocket-Protocol: hl.1, hl-schema.0000000000000002\r\n";
        assert!(matches!(check_request(&request(other), &SCHEMA), Err(SchemaMismatch::Different { client: 2, .. })));
        let bad = "Sec-WebSocket-Protocol: hl-schema.xyz\r\n";
        assert!(matches!(check_request(&request(bad), &SCHEMA), Err(SchemaMismatch::Malformed(_))));
    }

    #[test]
    fn malformed_header_is_refused() {
        for bad in ["abc", "zzzzzzzzzzzzzzzz", "00000000000000001"] {
            let err = check_request(&request(&format!("HardLight-Schema: {bad}\r\n")), &SCHEMA).unwrap_err();
            assert!(matches!(err, SchemaMismatch::Malformed(_)), "{bad}");
            assert!(err.to_string().contains("16 hexadecimal digits"));
        }
    }

    #[test]
    fn hash_is_fnv1a() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(hash_bytes(HASH_START, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_bytes(HASH_START, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash_bytes(HASH_START, b"foobar"), 0x8594_4171_f739_67e8);
    }

    struct Declared;
    impl Declared {
        #[allow(dead_code)]
        const __HARDLIGHT_SHAPE: u64 = 42;
    }

    #[test]
    fn inherent_shape_wins_over_the_default() {
        #[allow(unused_imports)]
        use DefaultShape as _;
        assert_eq!(<Declared>::__HARDLIGHT_SHAPE, 42);
        assert_eq!(<u32>::__HARDLIGHT_SHAPE, 0);
        assert_eq!(<Vec<Declared>>::__HARDLIGHT_SHAPE, 0);
    }
}
