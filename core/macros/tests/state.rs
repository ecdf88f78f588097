//! `#[derive(ConnectionState)]` through the real generated code, sans I/O.

use std::rc::Rc;

use hardlight::protocol::outbox::Outbox;
use hardlight::protocol::state_diff::{apply_state, parse_state};
use hardlight::{ConnectionState, StateHandle};

#[derive(Clone, Debug, Default, PartialEq, hardlight::ConnectionState)]
struct Chat {
    user: Option<String>,
    threads: Vec<u32>,
    unread: u64,
}

#[test]
fn derived_state_sends_only_changed_fields_and_mirrors_exactly() {
    assert_eq!(Chat::FIELDS, &["user", "threads", "unread"]);
    let outbox = Rc::new(Outbox::new(0));
    let state = StateHandle::new(Chat::default(), outbox.clone());
    let mut mirror = Chat::default();
    let initial = outbox.take_messages_for_test();
    assert_eq!(parse_state(&initial[0][1..]).unwrap().len(), 3, "initial state: every field");
    apply_state(&mut mirror, &initial[0][1..]).unwrap();

    state.lock().unread = 4;
    {
        let mut g = state.lock();
        g.user = Some("ada".into());
        g.threads.extend([1, 2]);
    }
    let msgs = outbox.take_messages_for_test();
    let indexes: Vec<Vec<u8>> =
        msgs.iter().map(|m| parse_state(&m[1..]).unwrap().into_iter().map(|(i, _)| i).collect()).collect();
    assert_eq!(indexes, vec![vec![2], vec![0, 1]]);
    for m in &msgs {
        apply_state(&mut mirror, &m[1..]).unwrap();
    }
    assert_eq!(mirror, state.get());
}

#[test]
fn unknown_field_index_is_an_error_not_a_panic() {
    let mut mirror = Chat::default();
    assert!(mirror.apply_field(9, &[]).is_err());
}
