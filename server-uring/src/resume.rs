//! Resume on the server: the server-wide topic history
//! ([`hardlight_core::resume::TopicHistory`]) behind a mutex shared by every
//! shard and emitter; each resuming connection's rules are the core's
//! [`hardlight_core::resume::ConnectionResume`].
//!
//! Why delivery is exactly-once: an emit takes the history lock, gives the
//! event its offset, and hands it to every shard's inbox before releasing
//! the lock, so each shard sees a topic's events in offset order. A replay
//! runs on the connection's shard under the same lock and records the head
//! it covered; every live event at or below that mark is still in (or has
//! passed through) the inbox and is skipped, every later one is delivered.
//!
//! With a broker the same holds with the broker's positions: the bridge
//! thread inserts each event it receives into the cache and hands it to the
//! shards under the lock ([`crate::Emitter`]'s `route_positioned`), and a
//! replay the cache does not cover waits for the broker's log (see
//! `hardlight_core::resume::ConnectionResume::fetched`).

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use hardlight_core::resume::{HistoryLimits, TopicHistory};

/// The history every shard and emitter of one server share.
pub(crate) type SharedHistory = Arc<Mutex<TopicHistory>>;

fn random_base() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A history whose epochs start from a random base, so that a restarted
/// server's positions never match the old one's.
pub(crate) fn new_history(limits: HistoryLimits) -> SharedHistory {
    Arc::new(Mutex::new(TopicHistory::new(random_base(), limits)))
}

/// With a broker: a cache of the broker's per-topic logs, which give the
/// positions ([`TopicHistory::broker_cache`]).
#[cfg_attr(not(feature = "broker"), allow(dead_code))]
pub(crate) fn new_cache(limits: HistoryLimits) -> SharedHistory {
    Arc::new(Mutex::new(TopicHistory::broker_cache(random_base(), limits)))
}

/// Locks the history; a panic elsewhere while it was held leaves it
/// consistent (every method completes its update before returning).
pub(crate) fn lock(history: &Mutex<TopicHistory>) -> MutexGuard<'_, TopicHistory> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}
