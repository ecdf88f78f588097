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
        rkyv::deserialize::<T, BoxedError>(archived).map_err(|e| DecodeError(e.to_string()))
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
        .map_err(|e| DecodeError(e.to_string()))
}

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
        assert!(!err.0.is_empty());
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
