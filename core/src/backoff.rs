//! Reconnect delays: exponential backoff with jitter, as a pure function of
//! the attempt number and a jitter sample, so that every client of the
//! protocol (and its tests) computes the same schedule.

use std::time::Duration;

/// Default delay before the first reconnect attempt.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Default cap on any one delay: a client away for long retries this often.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Default growth factor per failed attempt.
pub const DEFAULT_BACKOFF_MULTIPLIER: u32 = 2;
/// Default share of each delay that is randomised (0.5: the delay is drawn
/// from [d/2, d]), so that clients cut at the same moment (a server
/// restart) do not all come back in the same millisecond.
pub const DEFAULT_BACKOFF_JITTER: f64 = 0.5;

/// The reconnect schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before attempt 0.
    pub initial: Duration,
    /// Cap on every delay.
    pub max: Duration,
    /// Growth per attempt.
    pub multiplier: u32,
    /// Randomised share of each delay, 0.0 (none) to 1.0 (full jitter).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            multiplier: DEFAULT_BACKOFF_MULTIPLIER,
            jitter: DEFAULT_BACKOFF_JITTER,
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt `attempt` (0-based), given a
    /// uniform sample `sample` in [0, 1): `d = min(initial * multiplier^attempt, max)`,
    /// then `d * (1 - jitter * sample)`. Never more than `max`, never
    /// negative, no overflow at any attempt number.
    pub fn delay(&self, attempt: u32, sample: f64) -> Duration {
        let factor = (self.multiplier.max(1) as f64).powi(attempt.min(64) as i32);
        let base = (self.initial.as_secs_f64() * factor).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0) * sample.clamp(0.0, 1.0);
        Duration::from_secs_f64((base * (1.0 - jitter)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_defaults() {
        let b = Backoff::default();
        assert_eq!(
            (b.initial, b.max, b.multiplier, b.jitter),
            (Duration::from_millis(100), Duration::from_secs(10), 2, 0.5)
        );
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        let ms: Vec<u128> = (0..9).map(|a| b.delay(a, 0.7).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(10), "no overflow");
    }

    #[test]
    fn jitter_draws_from_the_stated_share_below_the_delay() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(1, 0.5).as_millis(), 150);
        assert!(b.delay(1, 0.999_999).as_millis() >= 100);
        assert!(b.delay(30, 0.999).as_millis() >= 5000 && b.delay(30, 0.0) == Duration::from_secs(10));
        let full = Backoff { jitter: 1.0, ..b };
        assert!(full.delay(3, 0.999_9) < Duration::from_millis(1));
        assert_eq!(b.delay(1, 7.0), b.delay(1, 1.0), "a sample outside [0, 1) is clamped");
    }
}
