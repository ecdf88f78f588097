//! Frame header parsing (both roles, several size limits) and masking.
#![no_main]

use hardlight_core::frame::{self, Role, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for role in [Role::Server, Role::Client] {
        for max in [0usize, MAX_CONTROL_PAYLOAD, 1 << 20, usize::MAX] {
            match frame::parse_header(data, role, max) {
                Ok(Some(h)) => {
                    assert!(h.header_len <= data.len() && h.header_len <= MAX_HEADER_LEN);
                    assert!(h.payload_len <= max as u64);
                    assert!(h.payload_len >> 63 == 0);
                    if h.opcode.is_control() {
                        assert!(h.fin && h.payload_len <= MAX_CONTROL_PAYLOAD as u64);
                    }
                    assert_eq!(h.mask.is_some(), role == Role::Server);
                    // Writing the header back and parsing it gives the same frame
                    // (the written length encoding is the shortest one).
                    let mut again = Vec::new();
                    frame::write_header(&mut again, h.fin, h.opcode, h.payload_len as usize, h.mask);
                    let h2 = frame::parse_header(&again, role, max).unwrap().unwrap();
                    assert_eq!((h2.fin, h2.opcode, h2.mask, h2.payload_len), (h.fin, h.opcode, h.mask, h.payload_len));
                    assert!(h2.header_len <= h.header_len);
                }
                Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
    // Unmasking in two pieces equals unmasking at once.
    if data.len() > 5 {
        let mask = [data[0], data[1], data[2], data[3]];
        let body = &data[5..];
        let split = data[4] as usize % (body.len() + 1);
        let mut whole = body.to_vec();
        frame::apply_mask(&mut whole, mask);
        let mut pieces = body.to_vec();
        let (a, b) = pieces.split_at_mut(split);
        frame::apply_mask_at(a, mask, 0);
        frame::apply_mask_at(b, mask, split);
        assert_eq!(whole, pieces);
    }
});
