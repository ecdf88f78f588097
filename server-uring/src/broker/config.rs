//! How a server reaches the broker (split from `mod.rs`): the settings,
//! their defaults, and keeping credentials out of logs.

use std::time::Duration;

/// Default prefix of the Redis channel of a topic: topic `chat:general`
/// travels on channel `hardlight:chat:general`.
pub const DEFAULT_CHANNEL_PREFIX: &str = "hardlight:";

/// Default capacity of the queue from emitters to the bridge.
pub const DEFAULT_BROKER_QUEUE: usize = 4096;

/// Default time a resuming connection waits for the broker's log of a
/// topic while the bridge has no connection (a server just started, or
/// Redis briefly away), before it gets a gap notice of unknown size
/// instead. Long enough for a bridge's first connection and a short
/// outage; short enough that a client is not left without events for long.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_secs(2);

/// How a server reaches the broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `redis://[user:password@]host:port[/db]` (Redis 6 or later: the
    /// bridge speaks RESP3).
    pub url: String,
    /// Prepended to a topic to name its channel. Servers that should share
    /// events must use the same prefix.
    pub channel_prefix: String,
    /// Capacity of the queue from emitters to the bridge: topic events not
    /// yet accepted by the broker (it is slow or unreachable). When it is
    /// full, `Emitter::to_topic` fails with `EmitError::BrokerBacklog` and
    /// the refusal is counted in `BrokerStats::queue_full`.
    pub queue_capacity: usize,
    /// First reconnect delay after the connection is lost; doubled after
    /// each failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between reconnect attempts.
    pub backoff_max: Duration,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on the broker's answer to a command; past it the connection is
    /// treated as lost.
    pub response_timeout: Duration,
    /// How long a resuming connection's replay waits for the broker's log
    /// while there is no broker connection ([`DEFAULT_FETCH_WAIT`]).
    pub fetch_wait: Duration,
}

impl BrokerConfig {
    /// Defaults: prefix `hardlight:`, queue of 4096, backoff 100 ms doubling
    /// to 5 s, 1 s to connect, 2 s per command, replays wait 2 s for a
    /// broker connection.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            channel_prefix: DEFAULT_CHANNEL_PREFIX.to_string(),
            queue_capacity: DEFAULT_BROKER_QUEUE,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(2),
            fetch_wait: DEFAULT_FETCH_WAIT,
        }
    }

    /// Sets how long a replay waits for the broker's log without a broker
    /// connection before it becomes a gap notice.
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.fetch_wait = wait;
        self
    }

    /// Sets the channel prefix.
    pub fn channel_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.channel_prefix = prefix.into();
        self
    }

    /// Sets the reconnect backoff bounds.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_min);
        self
    }

    /// Sets the emitter-to-bridge queue capacity.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }
}

/// `url` without its user and password, for logs and errors.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::prepare;
    use super::*;
    use crate::ServerError;

    #[test]
    fn credentials_stay_out_of_logs() {
        assert_eq!(redact("redis://user:secret@10.0.0.1:6379/0"), "redis://***@10.0.0.1:6379/0");
        assert_eq!(redact("redis://:secret@host"), "redis://***@host");
        assert_eq!(redact("redis://127.0.0.1:6390"), "redis://127.0.0.1:6390");
        let Err(ServerError::Config(e)) = prepare(BrokerConfig::new("redis://u:secret@host:port"), Default::default())
        else {
            panic!()
        };
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let c = BrokerConfig::new("redis://x");
        assert_eq!((c.queue_capacity, c.fetch_wait), (DEFAULT_BROKER_QUEUE, DEFAULT_FETCH_WAIT));
        assert_eq!((DEFAULT_BROKER_QUEUE, DEFAULT_FETCH_WAIT), (4096, Duration::from_secs(2)));
        assert_eq!(c.channel_prefix, DEFAULT_CHANNEL_PREFIX);
    }

    #[test]
    fn backoff_bounds_are_sane() {
        let c = BrokerConfig::new("redis://x").backoff(Duration::ZERO, Duration::ZERO);
        assert!(c.backoff_min > Duration::ZERO && c.backoff_max >= c.backoff_min);
    }
}
