//! The event fan-out service: connections subscribe to a topic, and an
//! event emitted to it reaches every subscriber on every shard.
//!
//! Shared by the `fanout` binary (which emits from a plain thread through
//! `ServerHandle::emitter()`) and loadgen's `fanout` scenario (which emits
//! through [`Fan::emit`] calls on one connection), so both measure the same
//! service and the same event.

use hardlight::server::ConnectionEvents;

/// The topic every subscriber joins.
pub const FAN_TOPIC: &str = "all";

/// The event: its sequence number and when it was emitted (ns, on a clock
/// the receiver shares: `CLOCK_MONOTONIC` in `fanout`, the load engine's own
/// clock in loadgen, which patches it into each [`Fan::emit`] call).
#[hardlight::wire]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    /// Sequence number.
    pub seq: u32,
    /// Emit time, ns.
    pub emitted_ns: u64,
}

/// Subscribe, and emit to subscribers. `Tick` is the service's one event
/// type (its wire id is its position in `events(...)`: 0).
#[hardlight::rpc(events(Tick))]
pub trait Fan {
    /// Subscribes this connection to `topic`.
    async fn subscribe(&self, topic: String);
    /// Emits `tick` to every subscriber of [`FAN_TOPIC`], on every shard;
    /// returns whether the emit was accepted (false: it could not be encoded
    /// or a shard's queue refused it).
    async fn emit(&self, tick: Tick) -> bool;
}

/// The handler: one per connection, holding that connection's event handle.
pub struct FanHandler {
    /// This connection's events (and through it, the server's emitter).
    pub events: ConnectionEvents,
}

impl Fan for FanHandler {
    async fn subscribe(&self, topic: String) {
        self.events.subscribe(&topic);
    }

    async fn emit(&self, tick: Tick) -> bool {
        self.events.emitter().to_topic(FAN_TOPIC, &tick).is_ok()
    }
}
