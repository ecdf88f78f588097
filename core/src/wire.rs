//! How typed values become archive bytes and back.
//!
//! Every method input, output, application error, state field and event is an
//! rkyv archive. Receiving always validates (bytecheck) with a bounded depth,
//! because the bytes come from the network. Archives must start at an address
//! aligned to [`ARCHIVE_ALIGN`]; the receive paths in this crate copy payloads
//! into reused aligned buffers so that no allocation happens per message.

use std::num::NonZeroUsize;

use rkyv::{
    api::high::{HighDeserializer, HighSerializer, HighValidator},
    bytecheck::CheckBytes,
    rancor::BoxedError,
    ser::allocator::ArenaHandle,
    util::AlignedVec,
    validation::{archive::ArchiveValidator, shared::SharedValidator, Validator},
    Archive, Deserialize, Serialize,
};

use crate::error::{DecodeError, EncodeError};
use crate::limits::DEFAULT_MAX_VALIDATION_DEPTH;

/// Alignment every archive is decoded at. 16 covers every primitive rkyv
/// archives (u128 included).
pub const ARCHIVE_ALIGN: usize = 16;

/// A byte buffer aligned for archive access; reused across messages.
pub type AlignedBuf = AlignedVec<ARCHIVE_ALIGN>;

/// A type that can cross the wire as an rkyv archive.
///
/// Implemented for every type that derives rkyv's `Archive`, `Serialize` and
/// `Deserialize` (with bytecheck, which rkyv's derive adds by default); put
/// `#[hardlight::wire]` on a struct or enum to get all three. The
/// bounds live here once, so generated code only has to say `T: Wire`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent over HardLight",
    label = "this type is not archivable",
    note = "put `#[hardlight::wire]` on its definition (or derive rkyv's `Archive`, `Serialize` and `Deserialize` with `#[rkyv(crate = hardlight::rkyv)]`); keep HashMap, Rc and Arc out of wire types"
)]
pub trait Wire: Sized {
    /// Replaces the contents of `buf` with the archive of `self`. `buf` is
    /// cleared first because archives are position-dependent; reusing it
    /// avoids an allocation per message.
    fn encode_into(&self, buf: &mut AlignedBuf) -> Result<(), EncodeError>;

    /// Validates `bytes` (exactly one archive, aligned to [`ARCHIVE_ALIGN`])
    /// and deserializes it.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with_depth(bytes, DEFAULT_MAX_VALIDATION_DEPTH)
    }

    /// [`Wire::decode`] with an explicit validation depth limit.
    fn decode_with_depth(bytes: &[u8], max_depth: usize) -> Result<Self, DecodeError>;
}

impl<T> Wire for T
where
    T: Archive + for<'a, 'b> Serialize<HighSerializer<&'b mut AlignedBuf, ArenaHandle<'a>, BoxedError>>,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>> + Deserialize<T, HighDeserializer<BoxedError>>,
{
    fn encode_into(&self, buf: &mut AlignedBuf) -> Result<(), EncodeError> {
        buf.clear();
        match rkyv::api::high::to_bytes_in::<_, BoxedError>(self, buf) {
            Ok(_) => Ok(()),
            Err(e) => {
                buf.clear();
                Err(EncodeError(e.to_string()))
            }
        }
    }

    fn decode_with_depth(bytes: &[u8], max_depth: usize) -> Result<Self, DecodeError> {
        let archived = access::<T>(bytes, max_depth)?;
        // rkyv's texts may name types; the value already validated, so this
        // only fails for a type whose `Deserialize` can refuse a valid archive.
        rkyv::deserialize::<T, BoxedError>(archived)
            .map_err(|_| DecodeError("the archive validated but could not be converted to its type".into()))
    }
}

/// Validates `bytes` as the archive of `T` and returns a reference into them,
/// without copying or deserializing.
pub fn access<T>(bytes: &[u8], max_depth: usize) -> Result<&T::Archived, DecodeError>
where
    T: Archive,
    T::Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>,
{
    if !(bytes.as_ptr() as usize).is_multiple_of(ARCHIVE_ALIGN) && !bytes.is_empty() {
        return Err(DecodeError(format!("archive not aligned to {ARCHIVE_ALIGN} bytes (receive path bug)")));
    }
    let mut validator =
        Validator::new(ArchiveValidator::with_max_depth(bytes, NonZeroUsize::new(max_depth)), SharedValidator::new());
    rkyv::api::access_with_context::<T::Archived, _, BoxedError>(bytes, &mut validator)
        .map_err(|e| validation_failure(bytes.len(), std::mem::size_of::<T::Archived>(), &e.to_string()))
}

/// Turns rkyv's validation error into a text that is safe to send to the
/// peer whose bytes failed.
///
/// rkyv's own texts print absolute addresses of the receive buffer
/// (`ptr 0x00007f...`), which would hand a client a server heap address (a
/// help against ASLR), and its derive's context lines name Rust types and
/// fields. So nothing of that text is passed on: it is only matched against
/// the kinds of failure bytecheck reports, and the peer gets a fixed phrase
/// for the kind, plus the sizes it needs to find its own mistake.
fn validation_failure(len: usize, root_size: usize, rkyv_text: &str) -> DecodeError {
    if len < root_size {
        return DecodeError(format!(
            "{len}-byte archive is too short: the root object of the expected type alone takes {root_size} bytes"
        ));
    }
    let kind = VALIDATION_KINDS
        .iter()
        .find(|(needle, _)| rkyv_text.contains(needle))
        .map_or("the bytes are not an archive of the expected type", |(_, phrase)| phrase);
    DecodeError(format!("{len}-byte archive does not validate: {kind}"))
}

/// Substrings of rkyv/bytecheck error texts, and the phrase sent instead.
/// Order matters: the first match wins.
const VALIDATION_KINDS: &[(&str, &str)] = &[
    ("depth", "objects nest deeper than the validation depth limit"),
    ("UTF-8", "a string is not valid UTF-8"),
    ("unaligned", "a relative pointer is not aligned for its target"),
    ("overran", "a relative pointer or length reaches outside the archive"),
    ("out of bounds", "a relative pointer or length reaches outside the archive"),
    ("overflow", "a relative pointer or length reaches outside the archive"),
    ("range", "objects overlap or are out of order"),
    ("shared pointer", "a shared pointer is invalid"),
    ("discriminant", "an enum tag is not one of the type's variants"),
    ("tag", "an enum tag is not one of the type's variants"),
    ("bool", "a bool is neither 0 nor 1"),
    ("char", "a char is not a Unicode scalar value"),
    ("nonzero", "a non-zero integer is zero"),
];

/// Encodes a value into a fresh buffer. Convenient off the hot path (clients, tests).
pub fn encode<T: Wire>(value: &T) -> Result<AlignedBuf, EncodeError> {
    let mut buf = AlignedBuf::new();
    value.encode_into(&mut buf)?;
    Ok(buf)
}

/// Copies `bytes` into `buf` (cleared first) so that they start aligned, and
/// returns the aligned view. `buf` is reused, so this allocates only to grow.
pub fn align_into<'b>(buf: &'b mut AlignedBuf, bytes: &[u8]) -> &'b [u8] {
    buf.clear();
    buf.extend_from_slice(bytes);
    &buf[..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
    #[rkyv(crate = rkyv)]
    struct Point {
        x: u64,
        name: String,
    }

    #[test]
    fn round_trip() {
        let p = Point { x: 7, name: "seven".into() };
        let bytes = encode(&p).unwrap();
        assert_eq!(Point::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn unaligned_bytes_are_reported_not_misread() {
        let p = Point { x: 7, name: "seven".into() };
        let bytes = encode(&p).unwrap();
        let mut shifted = AlignedBuf::new();
        shifted.push(0);
        shifted.extend_from_slice(&bytes);
        let err = Point::decode(&shifted[1..]).unwrap_err();
        assert!(err.0.contains("aligned"), "{err}");
        let mut buf = AlignedBuf::new();
        assert_eq!(Point::decode(align_into(&mut buf, &shifted[1..])).unwrap(), p);
    }

    #[test]
    fn truncated_or_garbage_archives_fail_validation() {
        let p = Point { x: 7, name: "seven".into() };
        let bytes = encode(&p).unwrap();
        let mut buf = AlignedBuf::new();
        for cut in 0..bytes.len() {
            // Never panics; either an error or (rarely) a value that validated.
            let _ = Point::decode(align_into(&mut buf, &bytes[..cut]));
        }
        // Corrupt the string's bytes into invalid UTF-8: validation must catch it.
        let long = encode(&Point { x: 7, name: "seventy-seven thousand".into() }).unwrap();
        let mut bad = long.to_vec();
        let at = bad.windows(5).position(|w| w == b"seven").unwrap();
        bad[at + 2] = 0xff;
        let err = Point::decode(align_into(&mut buf, &bad)).unwrap_err();
        assert!(err.0.contains("UTF-8"), "{err}");
    }

    /// rkyv's own texts print the receive buffer's absolute addresses
    /// (`ptr 0x00007f...`); the texts that reach a peer must not.
    #[test]
    fn validation_errors_name_the_problem_never_an_address_or_a_type() {
        let mut buf = AlignedBuf::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect();
            if let Err(e) = Point::decode(align_into(&mut buf, &bytes)) {
                assert!(!has_hex_address(&e.0), "{len} bytes: {e}");
                assert!(!e.0.contains("Point") && !e.0.contains("ptr"), "{len} bytes: {e}");
                assert!(e.0.starts_with(&format!("{len}-byte archive")), "{e}");
            }
        }
        let err = Point::decode(align_into(&mut buf, &[1, 2, 3])).unwrap_err();
        assert!(err.0.contains("too short"), "{err}");
    }

    /// The rule PROTOCOL.md section 5 states: bytes before the objects the
    /// root reaches are not read and do not change the value (rkyv reads the
    /// root from the end and validates only what it reaches).
    #[test]
    fn bytes_no_object_covers_are_ignored_not_decoded() {
        let p = Point { x: 41, name: "forty-one and some".into() };
        let canonical = encode(&p).unwrap();
        let mut buf = AlignedBuf::new();
        for prefix_len in [16usize, 64, 65536] {
            let mut padded = vec![0xA5u8; prefix_len];
            padded.extend_from_slice(&canonical);
            assert_eq!(Point::decode(align_into(&mut buf, &padded)).unwrap(), p, "{prefix_len}-byte prefix");
        }
        // Bytes after the root are not ignored: the root is read from the end.
        let mut trailing = canonical.to_vec();
        trailing.extend_from_slice(&[0; 16]);
        assert_ne!(Point::decode(align_into(&mut buf, &trailing)).ok(), Some(p));
    }

    /// `0x` followed by six or more hex digits: what a leaked address looks like.
    pub(crate) fn has_hex_address(text: &str) -> bool {
        let b = text.as_bytes();
        (0..b.len().saturating_sub(1)).any(|i| {
            b[i] == b'0' && b[i + 1] == b'x' && b[i + 2..].iter().take_while(|c| c.is_ascii_hexdigit()).count() >= 6
        })
    }

    #[test]
    fn unit_struct_round_trips() {
        #[derive(Archive, Serialize, Deserialize, Debug, PartialEq)]
        #[rkyv(crate = rkyv)]
        struct Empty {}
        let bytes = encode(&Empty {}).unwrap();
        assert_eq!(Empty::decode(&bytes).unwrap(), Empty {});
    }
}
