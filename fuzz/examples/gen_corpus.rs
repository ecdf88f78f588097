//! Writes the seed corpus (fuzz/corpus/<target>/) from valid messages.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus`

use std::fs;
use std::path::Path;

use hardlight_core::envelope;
use hardlight_core::error::CallErrorCode;
use hardlight_core::feature_set::FeatureSet;
use hardlight_core::frame::{self, Opcode};
use hardlight_core::state_diff::StateWriter;
use hardlight_core::wire::encode;
use hardlight_fuzz::{chain, Sample, UPGRADE};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn masked(fin: bool, op: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    frame::write_masked_frame(&mut f, fin, op, payload, [0x11, 0x22, 0x33, 0x44]);
    f
}

fn main() {
    let input = encode(&Sample::example()).unwrap();
    let mut call = Vec::new();
    envelope::encode_call(&mut call, 7, 2, &input);

    // envelope
    write("envelope", "call", &call);
    write("envelope", "call_empty_input", &envelope::call_header(255, 0));
    let mut ok = envelope::result_header(3, true).to_vec();
    ok.extend_from_slice(&encode(&42u64).unwrap());
    write("envelope", "result_ok", &ok);
    let mut err = envelope::call_error_header(9, CallErrorCode::DuplicateCallId).to_vec();
    err.extend_from_slice(b"call id is already in flight");
    write("envelope", "call_error", &err);

    // frame_header
    let mut h = Vec::new();
    frame::write_header(&mut h, true, Opcode::Binary, 5, Some([1, 2, 3, 4]));
    write("frame_header", "small_masked", &h);
    let mut h = Vec::new();
    frame::write_header(&mut h, false, Opcode::Text, 70_000, Some([1, 2, 3, 4]));
    write("frame_header", "len64_text", &h);
    let mut h = Vec::new();
    frame::write_header(&mut h, true, Opcode::Ping, 125, None);
    write("frame_header", "ping_unmasked", &h);
    write("frame_header", "close_payload", &masked(true, Opcode::Close, &[0x03, 0xe8, b'b', b'y', b'e']));

    // connection: control byte, then frames.
    let mut calls = vec![0u8];
    calls.extend(masked(true, Opcode::Binary, &call));
    calls.extend(masked(true, Opcode::Ping, b"p"));
    let mut frag = Vec::new();
    envelope::encode_call(&mut frag, 1, 3, &encode(&5u64).unwrap());
    calls.extend(masked(false, Opcode::Binary, &frag[..3]));
    calls.extend(masked(true, Opcode::Ping, b"between"));
    calls.extend(masked(true, Opcode::Continuation, &frag[3..]));
    calls.extend(masked(true, Opcode::Close, &[0x03, 0xe8]));
    write("connection", "rpc_calls", &calls);
    let mut echo = vec![1u8 | (3 << 2)];
    echo.extend(masked(false, Opcode::Text, "κό".as_bytes()));
    echo.extend(masked(true, Opcode::Continuation, "σμε".as_bytes()));
    echo.extend(masked(true, Opcode::Binary, &[0, 1, 2, 255]));
    echo.extend(masked(true, Opcode::Close, &[0x0b, 0xb8, b'o', b'k']));
    write("connection", "echo_text_fragments", &echo);
    let mut bad = vec![1u8];
    bad.extend(masked(false, Opcode::Text, b"abc"));
    bad.extend(masked(true, Opcode::Continuation, &[0xed, 0xa0, 0x80]));
    write("connection", "echo_invalid_utf8", &bad);
    let mut big = vec![2u8];
    big.extend(masked(true, Opcode::Binary, &[1; 100]));
    write("connection", "rpc_too_big", &big);

    // handshake
    write("handshake", "hl1", UPGRADE.as_bytes());
    write("handshake", "plain", UPGRADE.replace("Sec-WebSocket-Protocol: hl/1\r\n", "").as_bytes());
    write(
        "handshake",
        "cookies_and_path",
        UPGRADE
            .replace("GET / ", "GET /rpc?x=1 ")
            .replace("\r\n\r\n", "\r\nCookie: a=1; token=abc\r\nSec-WebSocket-Protocol: chat, hl/2\r\n\r\n")
            .as_bytes(),
    );
    write("handshake", "post", UPGRADE.replacen("GET", "POST", 1).as_bytes());

    // state_message: bodies after the kind byte.
    let mut w = StateWriter::new();
    w.field(0, &7u64).unwrap();
    w.field(1, &"alice".to_string()).unwrap();
    w.field(2, &Some(vec!["a".to_string(), "b".to_string()])).unwrap();
    write("state_message", "three_fields", &w.message().unwrap()[1..]);
    let mut w = StateWriter::new();
    w.field(3, &9u64).unwrap();
    write("state_message", "one_field", &w.message().unwrap()[1..]);

    // features_message: bodies after the kind byte.
    for (name, set) in [
        ("ten_two_enabled", FeatureSet::only(10, [0, 9])),
        ("all_70", FeatureSet::all(70)),
        ("none_3", FeatureSet::none(3)),
    ] {
        let mut out = Vec::new();
        set.encode(&mut out);
        write("features_message", name, &out[1..]);
    }

    // wire_decode
    write("wire_decode", "sample", &input);
    write("wire_decode", "node_chain_8", &encode(&chain(8)).unwrap());
    write("wire_decode", "node_chain_100", &encode(&chain(100)).unwrap());
}
