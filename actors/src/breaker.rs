//! The circuit breaker: the one place that decides whether a failing dependency (an upstream
//! provider, the metrics store) is tried again (STYLE §5).
//!
//! A pure state machine with no I/O, no clock of its own and no locking, so it can be unit
//! tested with made-up instants and embedded wherever the caller keeps shared state (usually
//! `Arc<Mutex<Breaker>>`, so an actor restart keeps it):
//!
//! ```text
//!   closed ──(failure_threshold consecutive failures)──▶ open
//!   open ──(cool_down elapsed; the next allow() is the single probe)──▶ half_open
//!   half_open ──(probe succeeded)──▶ closed
//!   half_open ──(probe failed)──▶ open (cool-down starts again)
//! ```
//!
//! Every method that can change the state returns the [`Transition`] it caused, so the caller
//! records the matching `breaker.opened` / `breaker.half_opened` / `breaker.closed` event and
//! updates its health component. The breaker itself records nothing.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Default number of consecutive failures that opens the breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default time an open breaker waits before letting one probe through.
pub const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(30);

/// When the breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures (in the closed state) that open the breaker. At least 1.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a single probe is allowed through. This is also
    /// how long a probe may stay unanswered before another probe is allowed, so a probe whose
    /// caller vanished without reporting cannot wedge the breaker half-open forever.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            cool_down: DEFAULT_COOL_DOWN,
        }
    }
}

/// The breaker's state, as shown in `/health` and on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow normally; consecutive failures are counted.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe call is in flight; everything else is refused until it reports.
    HalfOpen,
}

impl BreakerState {
    /// The state's name as serialised (`closed`, `open`, `half_open`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl std::fmt::Display for BreakerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change the caller should record as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// closed → open, or half_open → open after a failed probe.
    Opened,
    /// open → half_open: the cool-down ended and a probe was let through.
    HalfOpened,
    /// half_open → closed: the probe succeeded.
    Closed,
}

impl Transition {
    /// The event type to record for this transition.
    pub const fn event_kind(self) -> &'static str {
        match self {
            Self::Opened => "breaker.opened",
            Self::HalfOpened => "breaker.half_opened",
            Self::Closed => "breaker.closed",
        }
    }

    /// The state the breaker is in after this transition.
    pub const fn to_state(self) -> BreakerState {
        match self {
            Self::Opened => BreakerState::Open,
            Self::HalfOpened => BreakerState::HalfOpen,
            Self::Closed => BreakerState::Closed,
        }
    }
}

/// The answer to [`Breaker::allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Closed: go ahead.
    Granted,
    /// The cool-down ended and this call is the single half-open probe. Its outcome decides
    /// the next state; the caller must report it (success, failure or abandoned).
    /// `transition` is `Some(HalfOpened)` when this call moved the breaker out of `open`.
    Probe {
        /// The transition this call caused, to be recorded.
        transition: Option<Transition>,
    },
    /// Open, or half-open with the probe still in flight: do not call.
    Rejected {
        /// Time until a probe may be let through (zero while a probe is in flight).
        retry_in: Duration,
    },
}

impl Permit {
    /// Whether the call may proceed.
    pub const fn is_allowed(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }

    /// Whether this call is the half-open probe.
    pub const fn is_probe(&self) -> bool {
        matches!(self, Self::Probe { .. })
    }

    /// The transition caused by this call, if any.
    pub const fn transition(&self) -> Option<Transition> {
        match self {
            Self::Probe { transition } => *transition,
            _ => None,
        }
    }
}

/// A read-only view for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Consecutive failures counted in the closed state.
    pub consecutive_failures: u32,
    /// How many times the breaker has opened since it was created.
    pub times_opened: u64,
    /// While open: milliseconds until a probe is allowed.
    pub retry_in_ms: Option<u64>,
}

/// The state machine. See the module docs.
#[derive(Debug, Clone)]
pub struct Breaker {
    /// Threshold and cool-down.
    settings: BreakerSettings,
    /// Current state.
    state: BreakerState,
    /// Failures in a row while closed.
    consecutive_failures: u32,
    /// When the breaker last opened (start of the cool-down).
    opened_at: Option<Instant>,
    /// When the current half-open probe was let through.
    probe_started: Option<Instant>,
    /// Times opened since creation.
    times_opened: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings: BreakerSettings {
                failure_threshold: settings.failure_threshold.max(1),
                cool_down: settings.cool_down,
            },
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            probe_started: None,
            times_opened: 0,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> BreakerSettings {
        self.settings
    }

    /// Current state, without advancing time: an open breaker whose cool-down has ended
    /// reports `open` until the next [`Breaker::allow`] lets the probe through.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call made at `now` would be refused, without changing anything. Used to
    /// skip a provider in a fallback chain without consuming the probe.
    pub fn would_reject(&self, now: Instant) -> bool {
        !self.peek(now).is_allowed()
    }

    /// A view for `/health`.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.snapshot_at(Instant::now())
    }

    /// A view for `/health` as of `now`.
    pub fn snapshot_at(&self, now: Instant) -> BreakerSnapshot {
        let retry_in_ms = match (self.state, self.opened_at) {
            (BreakerState::Open, Some(at)) => {
                let left = (at + self.settings.cool_down).saturating_duration_since(now);
                Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
            }
            _ => None,
        };
        BreakerSnapshot {
            state: self.state,
            consecutive_failures: self.consecutive_failures,
            times_opened: self.times_opened,
            retry_in_ms,
        }
    }

    /// Asks to make a call now.
    pub fn allow(&mut self) -> Permit {
        self.allow_at(Instant::now())
    }

    /// Asks to make a call at `now`. Moves open → half_open when the cool-down has ended.
    pub fn allow_at(&mut self, now: Instant) -> Permit {
        let permit = self.peek(now);
        if let Permit::Probe { transition } = permit {
            self.probe_started = Some(now);
            if transition.is_some() {
                self.state = BreakerState::HalfOpen;
            }
        }
        permit
    }

    /// What [`Breaker::allow_at`] would answer at `now`, without changing state.
    pub fn peek(&self, now: Instant) -> Permit {
        match self.state {
            BreakerState::Closed => Permit::Granted,
            BreakerState::Open => {
                let until = self
                    .opened_at
                    .map_or(now, |at| at + self.settings.cool_down);
                if now >= until {
                    Permit::Probe {
                        transition: Some(Transition::HalfOpened),
                    }
                } else {
                    Permit::Rejected {
                        retry_in: until - now,
                    }
                }
            }
            BreakerState::HalfOpen => match self.probe_started {
                // The probe's caller vanished without reporting: let another probe through.
                Some(at) if now.saturating_duration_since(at) < self.settings.cool_down => {
                    Permit::Rejected {
                        retry_in: Duration::ZERO,
                    }
                }
                _ => Permit::Probe { transition: None },
            },
        }
    }

    /// Reports a successful call (the dependency answered).
    pub fn on_success(&mut self) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = 0;
                None
            }
            BreakerState::HalfOpen => {
                self.state = BreakerState::Closed;
                self.consecutive_failures = 0;
                self.opened_at = None;
                self.probe_started = None;
                Some(Transition::Closed)
            }
            // A late answer from a call admitted before the breaker opened proves little;
            // the probe decides.
            BreakerState::Open => None,
        }
    }

    /// Reports a failed call now.
    pub fn on_failure(&mut self) -> Option<Transition> {
        self.on_failure_at(Instant::now())
    }

    /// Reports a failed call at `now`.
    pub fn on_failure_at(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= self.settings.failure_threshold {
                    self.open(now);
                    Some(Transition::Opened)
                } else {
                    None
                }
            }
            BreakerState::HalfOpen => {
                self.open(now);
                Some(Transition::Opened)
            }
            // Late failures of calls admitted before opening must not extend the cool-down.
            BreakerState::Open => None,
        }
    }

    /// Reports that a call ended without saying anything about the dependency's health (the
    /// caller cancelled it). If it was the probe, the next call may probe instead.
    pub fn on_abandoned(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probe_started = None;
        }
    }

    /// Enters the open state at `now`.
    fn open(&mut self, now: Instant) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.probe_started = None;
        self.consecutive_failures = 0;
        self.times_opened += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cool_down_ms: u64) -> Breaker {
        Breaker::new(BreakerSettings {
            failure_threshold: threshold,
            cool_down: Duration::from_millis(cool_down_ms),
        })
    }

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let mut b = breaker(3, 1000);
        let t = Instant::now();
        assert_eq!(b.allow_at(t), Permit::Granted);
        assert_eq!(b.on_failure_at(t), None);
        assert_eq!(b.on_failure_at(t), None);
        assert_eq!(b.on_failure_at(t), Some(Transition::Opened));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.snapshot_at(t).times_opened, 1);
        assert!(
            matches!(b.allow_at(t), Permit::Rejected { retry_in } if retry_in == Duration::from_secs(1))
        );
    }

    #[test]
    fn success_resets_the_failure_count() {
        let mut b = breaker(3, 1000);
        let t = Instant::now();
        b.on_failure_at(t);
        b.on_failure_at(t);
        assert_eq!(b.on_success(), None);
        b.on_failure_at(t);
        b.on_failure_at(t);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.on_failure_at(t), Some(Transition::Opened));
    }

    #[test]
    fn half_opens_after_cool_down_with_a_single_probe_then_closes() {
        let mut b = breaker(1, 100);
        let t = Instant::now();
        assert_eq!(b.on_failure_at(t), Some(Transition::Opened));
        assert!(!b.allow_at(t + Duration::from_millis(99)).is_allowed());
        let probe = b.allow_at(t + Duration::from_millis(100));
        assert_eq!(
            probe,
            Permit::Probe {
                transition: Some(Transition::HalfOpened)
            }
        );
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Only one probe at a time.
        assert_eq!(
            b.allow_at(t + Duration::from_millis(101)),
            Permit::Rejected {
                retry_in: Duration::ZERO
            }
        );
        assert_eq!(b.on_success(), Some(Transition::Closed));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allow_at(t + Duration::from_millis(102)), Permit::Granted);
    }

    #[test]
    fn failed_probe_reopens_and_restarts_the_cool_down() {
        let mut b = breaker(1, 100);
        let t = Instant::now();
        b.on_failure_at(t);
        let t2 = t + Duration::from_millis(150);
        assert!(b.allow_at(t2).is_probe());
        assert_eq!(b.on_failure_at(t2), Some(Transition::Opened));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow_at(t2 + Duration::from_millis(50)).is_allowed());
        assert!(b.allow_at(t2 + Duration::from_millis(100)).is_probe());
        assert_eq!(b.snapshot_at(t2).times_opened, 2);
    }

    #[test]
    fn abandoned_probe_frees_the_slot() {
        let mut b = breaker(1, 100);
        let t = Instant::now();
        b.on_failure_at(t);
        let t2 = t + Duration::from_millis(100);
        assert!(b.allow_at(t2).is_probe());
        assert!(!b.allow_at(t2).is_allowed());
        b.on_abandoned();
        assert_eq!(b.allow_at(t2), Permit::Probe { transition: None });
    }

    #[test]
    fn unreported_probe_expires_after_the_cool_down() {
        let mut b = breaker(1, 100);
        let t = Instant::now();
        b.on_failure_at(t);
        let t2 = t + Duration::from_millis(100);
        assert!(b.allow_at(t2).is_probe());
        assert!(!b.allow_at(t2 + Duration::from_millis(99)).is_allowed());
        assert!(b.allow_at(t2 + Duration::from_millis(100)).is_probe());
    }

    #[test]
    fn late_outcomes_while_open_change_nothing() {
        let mut b = breaker(1, 100);
        let t = Instant::now();
        b.on_failure_at(t);
        assert_eq!(b.on_failure_at(t + Duration::from_millis(90)), None);
        assert_eq!(b.on_success(), None);
        assert_eq!(b.state(), BreakerState::Open);
        // The late failure did not extend the cool-down.
        assert!(b.allow_at(t + Duration::from_millis(100)).is_probe());
    }

    #[test]
    fn would_reject_does_not_consume_the_probe() {
        let mut b = breaker(1, 100);
        let t = Instant::now();
        b.on_failure_at(t);
        assert!(b.would_reject(t));
        let later = t + Duration::from_millis(100);
        assert!(!b.would_reject(later));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.allow_at(later).is_probe());
        assert!(b.would_reject(later));
    }

    #[test]
    fn state_and_transitions_serialise_as_documented() {
        assert_eq!(
            serde_json::to_string(&BreakerState::HalfOpen)
                .ok()
                .as_deref(),
            Some("\"half_open\"")
        );
        assert_eq!(Transition::Opened.event_kind(), "breaker.opened");
        assert_eq!(Transition::HalfOpened.event_kind(), "breaker.half_opened");
        assert_eq!(Transition::Closed.event_kind(), "breaker.closed");
        assert_eq!(Transition::HalfOpened.to_state(), BreakerState::HalfOpen);
    }

    #[test]
    fn zero_threshold_is_treated_as_one() {
        let mut b = breaker(0, 100);
        assert_eq!(b.on_failure_at(Instant::now()), Some(Transition::Opened));
    }
}
