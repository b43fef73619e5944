//! The retry and backoff policy: the one place that decides how long to wait before trying
//! again, for upstream calls, store flushes and actor restarts alike.
//!
//! It wraps the `backoff` crate, which is flagged unmaintained (RUSTSEC-2025-0012); no other
//! module names it, so replacing it is a change to this file alone.

// The one place allowed to name the backoff crate (see clippy.toml and deny.toml).
#![allow(clippy::disallowed_types)]

use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff as _;

/// How delays grow between attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound for any single delay.
    pub max: Duration,
    /// Growth factor between consecutive delays.
    pub multiplier: f64,
    /// Relative jitter: a delay `d` becomes a random value in `d * (1 ± jitter)`.
    pub jitter: f64,
}

impl RetryPolicy {
    /// A policy with the given bounds, doubling, and ±20 % jitter.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.2,
        }
    }

    /// Starts a fresh sequence of delays.
    pub fn start(&self) -> Backoff {
        Backoff {
            inner: ExponentialBackoff {
                current_interval: self.initial,
                initial_interval: self.initial,
                randomization_factor: self.jitter.clamp(0.0, 1.0),
                multiplier: self.multiplier.max(1.0),
                max_interval: self.max,
                // Callers bound attempts themselves; the sequence itself never ends.
                max_elapsed_time: None,
                ..ExponentialBackoff::default()
            },
        }
    }

    /// The delay before retry number `attempt` (0-based), with jitter, without keeping state.
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let mut seq = self.start();
        let mut delay = self.initial;
        for _ in 0..=attempt.min(64) {
            delay = seq.next_delay();
        }
        delay
    }
}

/// One running sequence of delays.
#[derive(Debug)]
pub struct Backoff {
    /// The wrapped implementation.
    inner: ExponentialBackoff,
}

impl Backoff {
    /// The next delay. Never ends; callers cap the number of attempts.
    pub fn next_delay(&mut self) -> Duration {
        self.inner.next_backoff().unwrap_or(self.inner.max_interval)
    }

    /// Starts again from the initial delay, after a success.
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

/// The wait a server asked for in a `Retry-After` header: delta-seconds only (HTTP dates are
/// rare from model APIs and are treated as absent). Capped at `cap`.
pub fn parse_retry_after(value: &str, cap: Duration) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_bounds() {
        let policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut seq = policy.start();
        let delays: Vec<_> = (0..10).map(|_| seq.next_delay()).collect();
        for d in &delays {
            assert!(
                *d >= Duration::from_millis(80),
                "{d:?} below initial minus jitter"
            );
            assert!(
                *d <= Duration::from_millis(2400),
                "{d:?} above max plus jitter"
            );
        }
        assert!(delays[4] > delays[0], "delays must grow: {delays:?}");
    }

    #[test]
    fn reset_starts_over() {
        let policy = RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut seq = policy.start();
        for _ in 0..6 {
            seq.next_delay();
        }
        seq.reset();
        assert!(seq.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn retry_after_parses_seconds_and_caps() {
        let cap = Duration::from_secs(30);
        assert_eq!(parse_retry_after("2", cap), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.5 ", cap),
            Some(Duration::from_millis(500))
        );
        assert_eq!(parse_retry_after("3600", cap), Some(cap));
        assert_eq!(parse_retry_after("-1", cap), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap),
            None
        );
    }
}
