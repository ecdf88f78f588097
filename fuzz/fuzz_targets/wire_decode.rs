//! Archive validation (`Wire::decode`, depth-limited bytecheck) of a
//! representative input struct and of a recursive type, on arbitrary bytes
//! copied to an aligned buffer as the receive paths do.
#![no_main]

use hardlight_core::wire::{align_into, encode, AlignedBuf, Wire};
use hardlight_fuzz::{Node, Sample};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = AlignedBuf::new();
    let bytes = align_into(&mut buf, data);
    if let Ok(s) = Sample::decode(bytes) {
        // A value that validated re-encodes and decodes to itself (NaN aside).
        if !s.ratio.is_nan() {
            let again = encode(&s).unwrap();
            assert_eq!(Sample::decode(&again).unwrap(), s);
        }
    }
    let _ = Node::decode(bytes);
    let _ = Node::decode_with_depth(bytes, 4);
});
