//! The time rules, driven with a fake clock.
use super::*;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn open_with(limits: Limits) -> ServerConnection {
    let mut c = ServerConnection::new(limits);
    feed(&mut c, UPGRADE.as_bytes());
    let Some(Event::Upgrade(req)) = c.poll_event() else { panic!("upgrade") };
    c.accept(&req);
    take_out(&mut c);
    c
}

fn pong() -> Vec<u8> {
    let mut f = Vec::new();
    frame::write_masked_frame(&mut f, true, Opcode::Pong, b"hl", [9, 8, 7, 6]);
    f
}

#[test]
fn no_time_rule_runs_before_the_upgrade() {
    let t0 = Instant::now();
    let mut c = ServerConnection::new(Limits::default());
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handle_timeout(t0 + 3600 * S), None);
    feed(&mut c, &UPGRADE.as_bytes()[..20]);
    assert_eq!(c.handle_timeout(t0 + 7200 * S), None, "the handshake timeout is the driver's");
    assert!(c.outbound().is_empty());
}

#[test]
fn ping_after_the_quiet_interval_then_4002_at_the_idle_timeout() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default()); // 20 s / 60 s
    assert_eq!(c.poll_timeout(), None, "nothing is anchored before the first handle_timeout");
    assert_eq!(c.handle_timeout(t0), None);
    assert_eq!(c.poll_timeout(), Some(t0 + 20 * S));
    assert_eq!(c.handle_timeout(t0 + 20 * S - ms(1)), None);
    assert!(c.outbound().is_empty());
    assert_eq!(c.handle_timeout(t0 + 20 * S), Some(TimerAction::Pinged));
    assert_eq!(frames(&take_out(&mut c)), vec![(Opcode::Ping, b"hl".to_vec())]);
    assert_eq!(c.poll_timeout(), Some(t0 + 60 * S), "one ping per silence, then the idle deadline");
    assert_eq!(c.handle_timeout(t0 + 40 * S), None, "no second ping");
    assert_eq!(c.handle_timeout(t0 + 60 * S - ms(1)), None);
    assert!(c.is_open());
    assert_eq!(c.handle_timeout(t0 + 60 * S), Some(TimerAction::Closing(CloseCode::IdleTimeout)));
    expect_close(&mut c, 4002);
    assert!(!c.is_open());
}

#[test]
fn a_peer_that_dies_right_after_a_pong_is_closed_one_idle_timeout_later() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default());
    c.handle_timeout(t0);
    assert_eq!(c.handle_timeout(t0 + 20 * S), Some(TimerAction::Pinged));
    take_out(&mut c);
    // The pong arrives a second later; the driver stamps it before parking.
    feed(&mut c, &pong());
    assert!(c.poll_event().is_none());
    assert_eq!(c.handle_timeout(t0 + 21 * S), None);
    assert_eq!(c.poll_timeout(), Some(t0 + 41 * S), "the silence restarts at the pong");
    assert_eq!(c.handle_timeout(t0 + 41 * S), Some(TimerAction::Pinged));
    take_out(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + 81 * S));
    assert_eq!(c.handle_timeout(t0 + 81 * S - ms(1)), None);
    assert_eq!(c.handle_timeout(t0 + 81 * S), Some(TimerAction::Closing(CloseCode::IdleTimeout)));
    expect_close(&mut c, 4002);
}

#[test]
fn activity_moves_deadlines_only_later_and_keeps_a_busy_peer_open() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default());
    c.handle_timeout(t0);
    let mut last = c.poll_timeout().unwrap();
    // A call every 7 s for 10 minutes: never a ping, never a close, and the
    // deadline a driver would re-arm for never moves earlier.
    for i in 1..=85u64 {
        let now = t0 + S * (7 * i as u32);
        feed(&mut c, &call_frame((i % 200) as u8, 0, &[]));
        let Some(Event::Call { id, .. }) = c.poll_event() else { panic!("call") };
        c.complete(id, &U64(i));
        assert_eq!(c.handle_timeout(now), None, "round {i}");
        let due = c.poll_timeout().unwrap();
        assert!(due >= last);
        assert_eq!(due, now + 20 * S);
        last = due;
        assert!(frames(&take_out(&mut c)).iter().all(|(op, _)| *op == Opcode::Binary));
    }
    assert!(c.is_open());
}

#[test]
fn keepalive_not_shorter_than_idle_means_no_ping() {
    let t0 = Instant::now();
    let mut c = open_with(Limits { keepalive_interval: 5 * S, idle_timeout: 5 * S, ..Limits::default() });
    c.handle_timeout(t0);
    assert_eq!(c.poll_timeout(), Some(t0 + 5 * S));
    assert_eq!(c.handle_timeout(t0 + 5 * S), Some(TimerAction::Closing(CloseCode::IdleTimeout)));
    let fs = frames(&take_out(&mut c));
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].0, Opcode::Close);
}

#[test]
fn huge_durations_disable_a_rule_instead_of_overflowing() {
    let t0 = Instant::now();
    let mut c = open_with(Limits {
        keepalive_interval: Duration::MAX,
        idle_timeout: Duration::MAX,
        message_timeout: Duration::MAX,
        ..Limits::default()
    });
    c.handle_timeout(t0);
    feed(&mut c, &[0x82]);
    assert_eq!(c.handle_timeout(t0 + S), None);
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handle_timeout(t0 + 1_000_000 * S), None);
    assert!(c.is_open());
}

#[test]
fn our_close_gives_up_on_a_silent_peer_after_the_close_timeout() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default());
    c.handle_timeout(t0);
    c.close(CloseCode::GoingAway, "bye");
    expect_close(&mut c, 1001);
    assert_eq!(c.handle_timeout(t0 + S), None, "anchors the close timeout");
    assert_eq!(c.poll_timeout(), Some(t0 + 3 * S));
    assert_eq!(c.handle_timeout(t0 + 3 * S - ms(1)), None);
    assert_eq!(c.handle_timeout(t0 + 3 * S), Some(TimerAction::GaveUp));
    assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::ByUs(CloseCode::GoingAway))));
    assert!(c.is_closed());
    assert!(c.outbound().is_empty());
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.handle_timeout(t0 + 100 * S), None);
}

#[test]
fn giving_up_drops_output_a_peer_never_read() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default());
    c.handle_timeout(t0);
    feed(&mut c, &call_frame(1, 0, &[]));
    assert!(matches!(c.poll_event(), Some(Event::Call { .. })));
    c.complete(1, &U64(1));
    c.close(CloseCode::SlowConsumer, "too slow");
    assert!(!c.outbound().is_empty(), "the peer reads nothing");
    c.handle_timeout(t0);
    assert_eq!(c.handle_timeout(t0 + 2 * S), Some(TimerAction::GaveUp));
    assert!(c.outbound().is_empty(), "a driver may close the socket at once");
    assert_eq!(c.held_bytes(), 0);
}

#[test]
fn a_close_started_by_a_time_rule_is_timed_from_that_instant() {
    let t0 = Instant::now();
    let mut c = open_with(Limits { close_timeout: 500 * ms(1), ..Limits::default() });
    c.handle_timeout(t0);
    c.handle_timeout(t0 + 20 * S);
    assert_eq!(c.handle_timeout(t0 + 60 * S), Some(TimerAction::Closing(CloseCode::IdleTimeout)));
    assert_eq!(c.poll_timeout(), Some(t0 + 60 * S + ms(500)));
    assert_eq!(c.handle_timeout(t0 + 60 * S + ms(500)), Some(TimerAction::GaveUp));
}

#[test]
fn shutdown_closes_1001_once_calls_finish() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default());
    c.handle_timeout(t0);
    feed(&mut c, &call_frame(1, 0, &[]));
    assert!(matches!(c.poll_event(), Some(Event::Call { id: 1, .. })));
    c.shutdown(5 * S);
    assert!(c.is_open(), "a call is still running");
    assert_eq!(c.handle_timeout(t0 + S), None);
    assert_eq!(c.poll_timeout(), Some(t0 + 6 * S), "the grace period ends 5 s after it was first seen");
    // A new call is refused; the running one completes, then the Close.
    feed(&mut c, &call_frame(2, 0, &[]));
    assert!(c.poll_event().is_none());
    c.complete(1, &U64(7));
    let fs = frames(&take_out(&mut c));
    assert!(matches!(decode_server(&fs[0].1), Ok(ServerMessage::CallError { id: 2, code: 6, .. })));
    assert!(matches!(decode_server(&fs[1].1), Ok(ServerMessage::Result { id: 1, ok: true, .. })));
    assert_eq!(fs[2].0, Opcode::Close);
    assert_eq!(u16::from_be_bytes([fs[2].1[0], fs[2].1[1]]), 1001);
    assert_eq!(fs.len(), 3);
    // With nothing in flight the Close goes at once.
    let mut c = open_with(Limits::default());
    c.shutdown(5 * S);
    expect_close(&mut c, 1001);
}

#[test]
fn shutdown_grace_expiry_closes_1001_with_calls_in_flight() {
    let t0 = Instant::now();
    let mut c = open_with(Limits::default());
    c.handle_timeout(t0);
    feed(&mut c, &call_frame(1, 0, &[]));
    assert!(matches!(c.poll_event(), Some(Event::Call { id: 1, .. })));
    c.shutdown(ms(100));
    assert_eq!(c.handle_timeout(t0), None);
    assert_eq!(c.poll_timeout(), Some(t0 + ms(100)));
    assert_eq!(c.handle_timeout(t0 + ms(99)), None);
    assert_eq!(c.handle_timeout(t0 + ms(100)), Some(TimerAction::Closing(CloseCode::GoingAway)));
    expect_close(&mut c, 1001);
    c.complete(1, &U64(1));
    assert!(c.outbound().is_empty(), "a late response never follows the Close");
}

#[test]
fn a_trickled_message_is_closed_4003_at_the_message_deadline() {
    let t0 = Instant::now();
    let mut c = open_with(Limits { message_timeout: 30 * S, ..Limits::default() });
    c.handle_timeout(t0);
    // A masked binary frame announcing 1000 bytes, then 10 of them.
    let mut wire = vec![0x82, 0xFE, 0x03, 0xE8, 1, 2, 3, 4];
    wire.extend_from_slice(&[0; 10]);
    feed(&mut c, &wire);
    assert!(c.poll_event().is_none());
    assert_eq!(c.held_bytes(), 10);
    assert_eq!(c.handle_timeout(t0 + S), None);
    assert_eq!(c.poll_timeout(), Some(t0 + 21 * S), "keepalive first (activity), the message at 31 s");
    // A byte a second: never idle, never complete.
    for s in 2..31u64 {
        feed(&mut c, &[0]);
        assert!(c.poll_event().is_none());
        assert_eq!(c.handle_timeout(t0 + S * s as u32), None, "at {s} s");
    }
    assert_eq!(c.held_bytes(), 39);
    assert_eq!(c.poll_timeout(), Some(t0 + 31 * S));
    feed(&mut c, &[0]);
    assert_eq!(c.handle_timeout(t0 + 31 * S), Some(TimerAction::Closing(CloseCode::MessageTimeout)));
    let out = take_out(&mut c);
    assert_eq!(u16::from_be_bytes([frames(&out)[0].1[0], frames(&out)[0].1[1]]), 4003);
    assert_eq!(c.held_bytes(), 0, "the partial message is let go at the close");
    // The rest of that frame is skipped, and the peer's Close still ends it.
    let mut rest = vec![0u8; 1000 - 40];
    frame::write_masked_frame(&mut rest, true, Opcode::Close, &4003u16.to_be_bytes(), [1, 2, 3, 4]);
    feed(&mut c, &rest);
    assert_eq!(c.poll_event(), Some(Event::Closed(CloseReason::ByUs(CloseCode::MessageTimeout))));
}

#[test]
fn a_frame_header_trickled_byte_by_byte_is_on_the_message_clock_too() {
    let t0 = Instant::now();
    let mut c = open_with(Limits { message_timeout: 10 * S, ..Limits::default() });
    c.handle_timeout(t0);
    feed(&mut c, &[0x82]);
    assert!(c.poll_event().is_none());
    c.handle_timeout(t0 + S);
    feed(&mut c, &[0xFE]);
    assert!(c.poll_event().is_none());
    assert_eq!(c.handle_timeout(t0 + 11 * S), Some(TimerAction::Closing(CloseCode::MessageTimeout)));
}

#[test]
fn steady_traffic_that_parks_mid_frame_is_not_a_stalled_message() {
    let t0 = Instant::now();
    let mut c = open_with(Limits { message_timeout: 5 * S, ..Limits::default() });
    c.handle_timeout(t0);
    // Each round completes a call and leaves the next one half-read.
    let call = call_frame(0, 0, &[0; 40]);
    let half = call.len() / 2;
    feed(&mut c, &call[..half]);
    for round in 1..=20u64 {
        let mut bytes = call[half..].to_vec();
        bytes.extend_from_slice(&call[..half]);
        feed(&mut c, &bytes);
        let Some(Event::Call { id, .. }) = c.poll_event() else { panic!("round {round}") };
        c.complete(id, &U64(round));
        assert!(c.poll_event().is_none());
        assert_eq!(c.handle_timeout(t0 + S * (3 * round as u32)), None, "round {round}");
        take_out(&mut c);
    }
    assert!(c.is_open());
    assert_eq!(c.stats().messages_received, 20);
}

#[test]
fn held_bytes_count_the_partial_message_and_unsent_output() {
    let mut c = open_with(Limits::default());
    assert_eq!(c.held_bytes(), 0);
    let call = call_frame(3, 0, &[5; 100]);
    feed(&mut c, &call[..50]);
    assert!(c.poll_event().is_none());
    let partial = c.held_bytes();
    assert_eq!(partial, 50 - 6, "payload bytes so far (the 6 header bytes are not held)");
    feed(&mut c, &call[50..]);
    assert!(matches!(c.poll_event(), Some(Event::Call { .. })));
    assert_eq!(c.held_bytes(), 0, "a delivered message is not held on the peer's account");
    c.complete(3, &U64(1));
    let out = c.outbound().len();
    assert!(out > 0);
    assert_eq!(c.held_bytes(), out);
    take_out(&mut c);
    assert_eq!(c.held_bytes(), 0);
}

#[test]
fn echo_mode_runs_the_same_time_rules() {
    let t0 = Instant::now();
    let mut c = echo::echo_open_with(Limits { message_timeout: 2 * S, ..Limits::default() });
    c.handle_timeout(t0);
    assert_eq!(c.handle_timeout(t0 + 20 * S), Some(TimerAction::Pinged));
    take_out(&mut c);
    feed(&mut c, &[0x81, 0x85]);
    assert_eq!(c.handle_timeout(t0 + 21 * S), None);
    assert_eq!(c.handle_timeout(t0 + 23 * S), Some(TimerAction::Closing(CloseCode::MessageTimeout)));
    expect_close(&mut c, 4003);
    assert_eq!(c.handle_timeout(t0 + 25 * S), Some(TimerAction::GaveUp));
    // Shutdown has no calls to wait for.
    let mut c = echo::echo_open();
    c.shutdown(5 * S);
    expect_close(&mut c, 1001);
}

#[test]
fn buffers_start_small_grow_with_traffic_and_shrink_back_after_a_quiet_keepalive_interval() {
    let t0 = Instant::now();
    let mut c = ServerConnection::new(Limits::default());
    assert_eq!(c.read_buf().len(), IDLE_READ_BUFFER, "a pending handshake reads into 1 KiB");
    // A handshake larger than the first buffer still arrives whole: the
    // buffer doubles while handshaking.
    let padded = UPGRADE.replace("\r\n\r\n", &format!("\r\nX-Pad: {}\r\n\r\n", "p".repeat(1500)));
    feed(&mut c, padded.as_bytes());
    let Some(Event::Upgrade(req)) = c.poll_event() else { panic!("upgrade after growth") };
    assert!(c.inbuf.len() >= padded.len() && c.inbuf.len() <= c.limits.max_handshake_size + 1);
    c.accept(&req);
    take_out(&mut c);
    assert_eq!(c.handle_timeout(t0), None);

    // A read that fills the buffer makes the next one full size.
    let batch: Vec<u8> = (0..40u8).flat_map(|id| call_frame(id, 0, &[7; 64])).collect();
    let n = {
        let buf = c.read_buf();
        let n = buf.len().min(batch.len());
        buf[..n].copy_from_slice(&batch[..n]);
        n
    };
    c.on_read(n);
    while let Some(ev) = c.poll_event() {
        if let Event::Call { id, .. } = ev {
            c.fail(id, CallErrorCode::UnknownMethod, "");
        }
    }
    assert_eq!(c.read_buf().len(), c.limits.read_buffer_size - c.in_end, "grown to read_buffer_size");
    feed(&mut c, &batch[n..]);
    while let Some(ev) = c.poll_event() {
        if let Event::Call { id, .. } = ev {
            c.fail(id, CallErrorCode::UnknownMethod, "");
        }
    }
    take_out(&mut c);

    // Quiet for the keepalive interval: the ping goes out, and the next
    // read_buf gives the large buffers back.
    assert_eq!(c.handle_timeout(t0 + ms(1)), None);
    assert_eq!(c.handle_timeout(t0 + 21 * S), Some(TimerAction::Pinged));
    take_out(&mut c);
    assert_eq!(c.read_buf().len(), IDLE_READ_BUFFER);
    assert!(c.out.capacity() <= IDLE_READ_BUFFER && c.scratch.capacity() <= IDLE_READ_BUFFER);
    // And the connection still works.
    feed(&mut c, &call_frame(3, 0, &[1; 8]));
    assert!(matches!(c.poll_event(), Some(Event::Call { id: 3, .. })));
}
