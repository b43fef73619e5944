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
//!
//! A provider keeps a [`BreakerSet`]: one provider-wide breaker, which only transport failures
//! (connect refused, DNS, TLS, connect timeout) count against, and one breaker per upstream
//! model, which the upstream answering badly for that model counts against. A call needs the
//! permission of both, so one failing model fences only itself. The per-model table is
//! bounded ([`MAX_MODEL_BREAKERS`]).

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

/// Most per-model breakers one [`BreakerSet`] keeps. Model names can come from clients
/// (`<provider>/<anything>`), so the table must not grow with them: only breakers that hold
/// information (failures counted, or not closed) are kept, and at the cap a closed one is
/// evicted first; when every kept breaker is open, a further model's failures go untracked
/// until one closes (its calls still fail and are recorded, they just cannot fence it).
pub const MAX_MODEL_BREAKERS: usize = 256;

/// Which breaker of a [`BreakerSet`] a transition or refusal concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The provider-wide breaker: transport failures (connect refused, TLS, connect timeout).
    Provider,
    /// One model's breaker: HTTP 5xx, 429, request timeouts, broken answers of that model.
    Model(String),
}

impl Scope {
    /// The model, for a model scope.
    pub fn model(&self) -> Option<&str> {
        match self {
            Self::Provider => None,
            Self::Model(m) => Some(m),
        }
    }

    /// `provider` or `model`, as recorded in events.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Model(_) => "model",
        }
    }
}

/// What a finished call says about its dependency, as reported to a [`BreakerSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered properly (or with a client error, which proves it is up).
    Success,
    /// The connection could not be made: counts against the provider-wide breaker only.
    TransportFailure,
    /// The upstream answered, badly, for this model: counts against the model's breaker;
    /// the transport is fine.
    ModelFailure,
    /// The caller went away: says nothing.
    Abandoned,
}

/// Which breakers of a [`BreakerSet`] let a call through as their half-open probe; handed
/// back with the call's outcome so only a probe frees its breaker's probe slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Probes {
    /// The provider-wide breaker's probe.
    pub provider: bool,
    /// The model breaker's probe.
    pub model: bool,
}

/// The answer to [`BreakerSet::allow_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetPermit {
    /// The call may go ahead. Transitions it caused (a breaker half-opened) are listed.
    Granted {
        /// Which breakers' probe this call is.
        probes: Probes,
        /// Transitions to record.
        transitions: Vec<(Scope, Transition)>,
    },
    /// Refused by the breaker of `scope`.
    Rejected {
        /// Which breaker refused.
        scope: Scope,
        /// Time until that breaker lets a probe through.
        retry_in: Duration,
    },
}

/// One model breaker as shown in `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelBreakerSnapshot {
    /// The upstream model id.
    pub model: String,
    /// Its breaker.
    #[serde(flatten)]
    pub breaker: BreakerSnapshot,
}

/// A provider's breakers: one provider-wide (transport) and one per model, all with the same
/// settings. A call needs both its provider's and its model's permission. See
/// [`MAX_MODEL_BREAKERS`] for how the per-model table stays bounded.
#[derive(Debug, Clone)]
pub struct BreakerSet {
    /// Threshold and cool-down of every breaker in the set.
    settings: BreakerSettings,
    /// Fences the whole provider when connections fail.
    provider: Breaker,
    /// Per upstream model id; only breakers that are not "closed with zero failures".
    models: std::collections::HashMap<String, Breaker>,
    /// Bound on `models`.
    max_models: usize,
}

impl BreakerSet {
    /// A set with every breaker closed, keeping at most `max_models` model breakers.
    pub fn new(settings: BreakerSettings, max_models: usize) -> Self {
        Self {
            settings,
            provider: Breaker::new(settings),
            models: std::collections::HashMap::new(),
            max_models: max_models.max(1),
        }
    }

    /// The provider-wide breaker's state.
    pub fn provider_state(&self) -> BreakerState {
        self.provider.state()
    }

    /// The worse of the provider-wide and `model`'s breaker states.
    pub fn state_for(&self, model: &str) -> BreakerState {
        let model_state = self
            .models
            .get(model)
            .map_or(BreakerState::Closed, Breaker::state);
        match (self.provider.state(), model_state) {
            (BreakerState::Open, _) | (_, BreakerState::Open) => BreakerState::Open,
            (BreakerState::HalfOpen, _) | (_, BreakerState::HalfOpen) => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Whether any breaker of the set is not closed.
    pub fn any_open(&self) -> bool {
        self.provider.state() != BreakerState::Closed
            || self
                .models
                .values()
                .any(|b| b.state() != BreakerState::Closed)
    }

    /// The provider-wide breaker for `/health`.
    pub fn provider_snapshot_at(&self, now: Instant) -> BreakerSnapshot {
        self.provider.snapshot_at(now)
    }

    /// Every tracked model breaker (failures counted, or not closed), by model name.
    pub fn model_snapshots_at(&self, now: Instant) -> Vec<ModelBreakerSnapshot> {
        let mut out: Vec<_> = self
            .models
            .iter()
            .map(|(model, b)| ModelBreakerSnapshot {
                model: model.clone(),
                breaker: b.snapshot_at(now),
            })
            .collect();
        out.sort_by(|a, b| a.model.cmp(&b.model));
        out
    }

    /// Model breakers kept now.
    pub fn tracked_models(&self) -> usize {
        self.models.len()
    }

    /// What [`BreakerSet::allow_at`] would answer for `model`, without changing state:
    /// `Some((scope, retry_in))` when the call would be refused.
    pub fn peek(&self, model: &str, now: Instant) -> Option<(Scope, Duration)> {
        if let Permit::Rejected { retry_in } = self.provider.peek(now) {
            return Some((Scope::Provider, retry_in));
        }
        match self.models.get(model).map(|b| b.peek(now)) {
            Some(Permit::Rejected { retry_in }) => Some((Scope::Model(model.to_owned()), retry_in)),
            _ => None,
        }
    }

    /// Asks to call `model` at `now`: the provider-wide breaker first, then the model's.
    pub fn allow_at(&mut self, model: &str, now: Instant) -> SetPermit {
        if let Some((scope, retry_in)) = self.peek(model, now) {
            return SetPermit::Rejected { scope, retry_in };
        }
        let mut transitions = Vec::new();
        let provider = self.provider.allow_at(now);
        if let Some(t) = provider.transition() {
            transitions.push((Scope::Provider, t));
        }
        let model_permit = match self.models.get_mut(model) {
            Some(b) => b.allow_at(now),
            None => Permit::Granted,
        };
        if let Some(t) = model_permit.transition() {
            transitions.push((Scope::Model(model.to_owned()), t));
        }
        SetPermit::Granted {
            probes: Probes {
                provider: provider.is_probe(),
                model: model_permit.is_probe(),
            },
            transitions,
        }
    }

    /// Reports how a call to `model` (admitted with `probes`) ended; returns the
    /// transitions it caused.
    pub fn report_at(
        &mut self,
        model: &str,
        outcome: Outcome,
        probes: Probes,
        now: Instant,
    ) -> Vec<(Scope, Transition)> {
        let mut out = Vec::new();
        let mut push = |scope: Scope, t: Option<Transition>| {
            if let Some(t) = t {
                out.push((scope, t));
            }
        };
        match outcome {
            Outcome::Success => {
                push(Scope::Provider, self.provider.on_success());
                if let Some(b) = self.models.get_mut(model) {
                    push(Scope::Model(model.to_owned()), b.on_success());
                    if b.state() == BreakerState::Closed {
                        // Closed with no failures holds nothing worth a table entry.
                        self.models.remove(model);
                    }
                }
            }
            Outcome::TransportFailure => {
                push(Scope::Provider, self.provider.on_failure_at(now));
                if let Some(b) = self.models.get_mut(model).filter(|_| probes.model) {
                    // Says nothing about the model: its probe may be tried again.
                    b.on_abandoned();
                }
            }
            Outcome::ModelFailure => {
                // The upstream answered: the transport is fine.
                push(Scope::Provider, self.provider.on_success());
                if let Some(b) = self.model_entry(model) {
                    push(Scope::Model(model.to_owned()), b.on_failure_at(now));
                }
            }
            Outcome::Abandoned => {
                if probes.provider {
                    self.provider.on_abandoned();
                }
                if let Some(b) = self.models.get_mut(model).filter(|_| probes.model) {
                    b.on_abandoned();
                }
            }
        }
        out
    }

    /// `model`'s breaker, created if there is room (evicting a closed one at the cap).
    fn model_entry(&mut self, model: &str) -> Option<&mut Breaker> {
        if !self.models.contains_key(model) && self.models.len() >= self.max_models {
            let closed = self
                .models
                .iter()
                .filter(|(_, b)| b.state() == BreakerState::Closed)
                .min_by_key(|(_, b)| b.consecutive_failures)
                .map(|(k, _)| k.clone());
            self.models.remove(&closed?);
        }
        Some(
            self.models
                .entry(model.to_owned())
                .or_insert_with(|| Breaker::new(self.settings)),
        )
    }
}

#[cfg(test)]
mod tests;
