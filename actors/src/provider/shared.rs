//! The state every clone of a [`ProviderHandle`](super::ProviderHandle) and every incarnation
//! of the provider actor share: settings, slots, breakers, counters, and the recording of
//! what happened (attempt events, breaker transitions, the health component).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::call::{ATTEMPT_EVENT, AttemptOutcome, EVENT_SOURCE, Usage, health_component};
use super::error::ProviderError;
use super::settings::ProviderSettings;
use crate::health::{HealthBoard, Status};
use crate::pipeline::recorder::Recorder;
use crate::pipeline::request::CallContext;
use crate::policy::breaker::{BreakerSet, Outcome, Probes, Scope, Transition};
use crate::policy::failure_log::FailureLog;

/// Counters kept per provider for `/health`.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Calls made (each may have several attempts).
    pub(super) calls: AtomicU64,
    /// Upstream attempts.
    pub(super) attempts: AtomicU64,
    /// Calls that succeeded.
    pub(super) succeeded: AtomicU64,
    /// Calls that failed.
    pub(super) failed: AtomicU64,
    /// Retries made.
    pub(super) retries: AtomicU64,
    /// Calls refused for lack of capacity.
    pub(super) over_capacity: AtomicU64,
    /// Calls refused by an open breaker (the provider's or a model's).
    pub(super) breaker_rejected: AtomicU64,
    /// Attempts abandoned by their caller.
    pub(super) cancelled: AtomicU64,
    /// Prompt tokens reported.
    pub(super) prompt_tokens: AtomicU64,
    /// Completion tokens reported.
    pub(super) completion_tokens: AtomicU64,
}

impl Counters {
    pub(super) fn json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "calls": get(&self.calls),
            "attempts": get(&self.attempts),
            "succeeded": get(&self.succeeded),
            "failed": get(&self.failed),
            "retries": get(&self.retries),
            "over_capacity": get(&self.over_capacity),
            "breaker_rejected": get(&self.breaker_rejected),
            "cancelled": get(&self.cancelled),
            "prompt_tokens": get(&self.prompt_tokens),
            "completion_tokens": get(&self.completion_tokens),
        })
    }
}

/// State shared by every clone of a handle and by every incarnation of the provider actor.
pub(super) struct Shared {
    /// Unique per handle; keys the per-thread client table.
    pub(super) id: u64,
    /// Provider name, shared with results and errors.
    pub(super) name: Arc<str>,
    /// Its settings (the key inside is a `SecretString`).
    pub(super) settings: ProviderSettings,
    /// `<base>/chat/completions` (`<base>/messages` for `anthropic`), parsed once.
    pub(super) completions_url: reqwest::Url,
    /// `<base>/models`.
    pub(super) models_url: reqwest::Url,
    /// The key's header(s), marked sensitive so they never print.
    pub(super) headers: HeaderMap,
    /// Concurrency slots.
    pub(super) slots: Arc<Semaphore>,
    /// Callers waiting for a slot.
    pub(super) queued: AtomicUsize,
    /// The circuit breakers: provider-wide and per model.
    pub(super) breaker: Mutex<BreakerSet>,
    /// Counters for `/health`.
    pub(super) counters: Counters,
    /// Where `provider.attempt` and `breaker.*` events go.
    pub(super) recorder: Recorder,
    /// Where the `provider:<name>` component is published.
    pub(super) health: HealthBoard,
    /// Quiet logging of failure streaks.
    pub(super) failures: Mutex<FailureLog>,
    /// Mirror of `failures.is_failing()`, so a success needs no lock while healthy.
    pub(super) failing: AtomicBool,
}

impl Shared {
    pub(super) fn lock_breaker(&self) -> std::sync::MutexGuard<'_, BreakerSet> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls holding a concurrency slot now.
    pub(super) fn in_flight(&self) -> usize {
        let max = self
            .settings
            .max_concurrency
            .clamp(1, Semaphore::MAX_PERMITS);
        max.saturating_sub(self.slots.available_permits())
    }

    /// Calls waiting for a slot now.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Publishes the `provider:<name>` health component: breakers, slots and counters.
    /// Degraded while any of its breakers is not closed. `breaker` is the provider-wide one;
    /// `model_breakers` lists each model breaker that has counted failures or is not closed.
    pub(super) fn publish_health(&self) {
        let s = self;
        let now = Instant::now();
        let (breaker, model_breakers, any_open) = {
            let set = self.lock_breaker();
            (
                set.provider_snapshot_at(now),
                set.model_snapshots_at(now),
                set.any_open(),
            )
        };
        let status = if any_open {
            Status::Degraded
        } else {
            Status::Ok
        };
        let model_breakers: Vec<Value> = model_breakers
            .into_iter()
            .map(|m| {
                json!({
                    "model": m.model,
                    "state": m.breaker.state,
                    "failures": m.breaker.consecutive_failures,
                    "times_opened": m.breaker.times_opened,
                    "retry_after_ms": m.breaker.retry_in_ms,
                })
            })
            .collect();
        s.health.set_component(
            &health_component(&s.name),
            status,
            json!({
                "kind": s.settings.kind,
                "base_url": s.settings.display_base_url(),
                "simulated": s.settings.simulated,
                "breaker": breaker,
                "model_breakers": model_breakers,
                "in_flight": self.in_flight(),
                "queued": self.queued(),
                "max_concurrency": s.settings.max_concurrency,
                "max_queue": s.settings.max_queue,
                "counters": s.counters.json(),
            }),
        );
    }

    /// The error of a call refused by the breaker of `scope`.
    pub(super) fn breaker_open(&self, scope: Scope, retry_in: Duration) -> ProviderError {
        ProviderError::BreakerOpen {
            provider: self.name.to_string(),
            model: scope.model().map(str::to_owned),
            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Reports how an attempt on `model` ended to the breakers and records what changed.
    pub(super) fn report(&self, model: &str, outcome: Outcome, probes: Probes) {
        let transitions = self
            .lock_breaker()
            .report_at(model, outcome, probes, Instant::now());
        self.on_transitions(transitions);
    }

    /// Records breaker transitions as events (with `provider` and `model`; `model` is null
    /// for the provider-wide breaker), logs each once and republishes health.
    pub(super) fn on_transitions(&self, transitions: Vec<(Scope, Transition)>) {
        if transitions.is_empty() {
            return;
        }
        let s = self;
        for (scope, transition) in transitions {
            let state = transition.to_state();
            let model = scope.model();
            s.recorder.record(
                EVENT_SOURCE,
                transition.event_kind(),
                json!({
                    "provider": &*s.name,
                    "model": model,
                    "scope": scope.as_str(),
                    "state": state,
                    "simulated": s.settings.simulated,
                }),
            );
            match transition {
                Transition::Opened => {
                    tracing::warn!(provider = %s.name, model, "circuit breaker opened");
                }
                Transition::HalfOpened | Transition::Closed => {
                    tracing::info!(provider = %s.name, model, state = %state, "circuit breaker changed");
                }
            }
        }
        self.publish_health();
    }

    /// Counts a successful attempt's usage and tells the failure log.
    pub(super) fn attempt_succeeded(&self, usage: Option<Usage>) {
        if let Some(usage) = usage {
            self.counters
                .prompt_tokens
                .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
            self.counters
                .completion_tokens
                .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        }
        if self.failing.load(Ordering::Relaxed) {
            let mut log = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            log.success();
            self.failing.store(log.is_failing(), Ordering::Relaxed);
        }
    }

    /// Records the `provider.attempt` event of a failed, retried or cancelled attempt and
    /// feeds the failure log (a cancellation says nothing about the upstream).
    pub(super) fn record_attempt(
        &self,
        model: &str,
        attempt: u32,
        stream: bool,
        latency: Duration,
        ttft: Option<Duration>,
        outcome: AttemptOutcome<'_>,
    ) {
        let (status, error_kind) = match outcome {
            AttemptOutcome::Retried(e) | AttemptOutcome::Failed(e) => {
                (e.upstream_status(), e.kind())
            }
            AttemptOutcome::Cancelled => (None, "cancelled"),
        };
        let context = CallContext::current();
        self.recorder.record(
            EVENT_SOURCE,
            ATTEMPT_EVENT,
            json!({
                "provider": &*self.name,
                "model": model,
                "attempt": attempt,
                "outcome": outcome.label(),
                "ok": false,
                "status": status,
                "error_kind": error_kind,
                "latency_ms": latency.as_secs_f64() * 1000.0,
                "ttft_ms": ttft.map(|t| t.as_secs_f64() * 1000.0),
                "stream": stream,
                "request_id": context.as_ref().map(|c| c.request_id()),
                "simulated": self.settings.simulated,
            }),
        );
        if let AttemptOutcome::Retried(error) | AttemptOutcome::Failed(error) = outcome {
            tracing::debug!(provider = %self.name, model, attempt, %error, "upstream attempt failed");
            let mut log = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            log.failure(error);
            self.failing.store(log.is_failing(), Ordering::Relaxed);
        }
    }
}
