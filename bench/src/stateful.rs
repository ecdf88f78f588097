//! A service whose every call changes the connection's state, for loadgen's
//! `state` scenario: the cost of a call that sends a STATE message before
//! its response, and a check that the protocol's order holds under load.

use hardlight::StateHandle;

/// The connection's state: one field that every call changes.
#[derive(Clone, Debug, Default, PartialEq, hardlight::ConnectionState)]
pub struct LastCall {
    /// `(calls << 8) | call`: the number of `touch` calls so far on this
    /// connection (from 1) and the `call` byte of the latest. It changes on
    /// every call, so every call sends a STATE message; 0 is the initial state.
    pub last: u64,
}

impl LastCall {
    /// The `call` byte of a STATE value, or `None` for the initial state.
    pub fn call_of(last: u64) -> Option<u8> {
        (last != 0).then_some(last as u8)
    }
}

/// One method that records the call in the connection's state.
#[hardlight::rpc]
pub trait Stateful {
    /// Records `call` (the client passes the call's own id) in the state and
    /// returns true. The STATE message carrying it precedes the response.
    async fn touch(&self, call: u8) -> bool;
}

/// The handler: the connection's state handle.
pub struct StatefulHandler {
    /// This connection's state.
    pub state: StateHandle<LastCall>,
}

impl Stateful for StatefulHandler {
    async fn touch(&self, call: u8) -> bool {
        let mut s = self.state.lock();
        let calls = (s.last >> 8) + 1;
        s.last = (calls << 8) | call as u64;
        true
    }
}
