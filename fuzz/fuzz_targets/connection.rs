//! The whole server connection state machine fed arbitrary bytes after a
//! valid upgrade, in both modes, in arbitrary read sizes. It must never
//! panic, and its output must stay well-formed.
//!
//! Input: byte 0 picks the mode (bit 0), a small message limit (bit 1) and
//! the read size (bits 2..); the rest is the client's byte stream.
#![no_main]

use hardlight_core::connection::{CloseReason, Event, Mode};
use hardlight_core::frame::{self, Opcode};
use hardlight_core::limits::Limits;
use hardlight_fuzz::{check_output, drive, open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else { return };
    let mode = if ctl & 1 == 0 { Mode::Rpc } else { Mode::Echo };
    let limits = if ctl & 2 != 0 { Limits { max_message_size: 64, ..Limits::default() } } else { Limits::default() };
    let chunk = match ctl >> 2 {
        0 => usize::MAX,
        n => n as usize,
    };
    let mut c = open(mode, limits);
    let (out, closed) = drive(&mut c, stream, chunk);
    check_output(&out);
    if let Some(CloseReason::ByUs(code)) = closed {
        assert!([1001, 1002, 1003, 1007, 1009, 4000].contains(&code.as_u16()), "close code {code:?}");
    }
    if c.is_open() {
        assert!(closed.is_none());
        assert!(c.poll_event().is_none());
    } else if !c.is_closed() {
        // Waiting for the peer's Close after ours: it is never echoed.
        let mut close = Vec::new();
        frame::write_masked_frame(&mut close, true, Opcode::Close, &[0x03, 0xe8], [1, 2, 3, 4]);
        let (out, _) = drive(&mut c, &close, usize::MAX);
        assert!(out.is_empty());
    }
    let was_closed = c.is_closed();
    c.on_read(0);
    let mut finals = 0;
    while let Some(ev) = c.poll_event() {
        assert!(matches!(ev, Event::Closed(_)));
        finals += 1;
    }
    assert_eq!(finals, usize::from(!was_closed));
    assert!(c.is_closed());
});
