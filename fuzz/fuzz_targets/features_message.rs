//! `FEATURES` message bodies.
#![no_main]

use hardlight_core::feature_set::FeatureSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = FeatureSet::decode(data) {
        // Only canonical encodings decode: encoding gives the same bytes back.
        let mut out = Vec::new();
        set.encode(&mut out);
        assert_eq!(&out[1..], data);
        for id in set.enabled() {
            assert!((id as usize) < set.method_count() && set.is_enabled(id));
        }
    }
});
