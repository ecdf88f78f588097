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

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use hardlight_core::resume::{HistoryLimits, TopicHistory};

/// The history every shard and emitter of one server share.
pub(crate) type SharedHistory = Arc<Mutex<TopicHistory>>;

/// A history whose epochs start from a random base, so that a restarted
/// server's positions never match the old one's.
pub(crate) fn new_history(limits: HistoryLimits) -> SharedHistory {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    Arc::new(Mutex::new(TopicHistory::new(h.finish(), limits)))
}

/// Locks the history; a panic elsewhere while it was held leaves it
/// consistent (every method completes its update before returning).
pub(crate) fn lock(history: &Mutex<TopicHistory>) -> MutexGuard<'_, TopicHistory> {
    history.lock().unwrap_or_else(|p| p.into_inner())
}
