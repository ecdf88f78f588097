//! The upgrade request parser, directly and through the connection.
#![no_main]

use hardlight_core::connection::{CloseReason, Event, Mode, ServerConnection};
use hardlight_core::handshake::{self, SUBPROTOCOL};
use hardlight_core::limits::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for sub in [Some(SUBPROTOCOL), None] {
        match handshake::parse_request_for(data, 8192, 64, sub) {
            Ok(Some((req, used))) => {
                assert!(used <= data.len() && used <= 8192);
                assert_eq!(req.protocol(), sub);
                let _ = req.cookies();
                let mut out = Vec::new();
                req.write_accept(&mut out);
                assert!(out.starts_with(b"HTTP/1.1 101 "));
            }
            Ok(None) => assert!(data.len() < 8192),
            Err(e) => {
                assert!([400, 405, 426, 431].contains(&e.status()), "{e}");
                let mut out = Vec::new();
                e.write_response(&mut out);
                assert!(out.starts_with(format!("HTTP/1.1 {} ", e.status()).as_bytes()));
            }
        }
    }
    for mode in [Mode::Rpc, Mode::Echo] {
        let mut c = ServerConnection::with_mode(Limits::default(), mode);
        let n = data.len().min(c.read_buf().len());
        c.read_buf()[..n].copy_from_slice(&data[..n]);
        if n > 0 {
            c.on_read(n); // 0 would mean end of stream
        }
        match c.poll_event() {
            None => assert!(c.outbound().is_empty() && c.wants_read()),
            Some(Event::Upgrade(req)) => {
                c.accept(&req);
                assert!(c.is_open());
            }
            Some(Event::HandshakeFailed(_)) => {
                assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::Refused)));
                assert!(c.outbound().starts_with(b"HTTP/1.1 4"));
            }
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
});
