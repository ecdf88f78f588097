//! `STATE` message bodies: framing, then each field's archive as a client
//! mirror would decode it.
#![no_main]

use hardlight_core::state_diff::parse_state;
use hardlight_core::wire::{align_into, AlignedBuf, Wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = parse_state(data) {
        let used: usize = fields.iter().map(|(_, a)| 5 + a.len()).sum();
        assert_eq!(used + 1, data.len(), "framing accounts for every byte");
        assert_eq!(fields.len(), data[0] as usize);
        let mut buf = AlignedBuf::new();
        for (index, archive) in fields {
            let bytes = align_into(&mut buf, archive);
            match index % 3 {
                0 => drop(u64::decode(bytes)),
                1 => drop(String::decode(bytes)),
                _ => drop(Option::<Vec<String>>::decode(bytes)),
            }
        }
    }
});
