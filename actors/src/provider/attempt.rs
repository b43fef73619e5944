//! One call's admission and one attempt's bookkeeping: a caller waiting for a concurrency
//! slot is counted while it waits ([`QueueGuard`]), and an admitted attempt reports its
//! outcome to the breakers exactly once ([`AttemptGuard`]); a failed, retried or cancelled
//! attempt also records a `provider.attempt` event (a successful one is part of its call's
//! `request` event).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::call::{AttemptOutcome, Usage};
use super::error::ProviderError;
use super::shared::Shared;
use crate::policy::breaker::{Outcome, Probes};

/// Counts a caller waiting for a slot; uncounts it however the wait ends.
pub(super) struct QueueGuard<'a> {
    /// The counter.
    pub(super) queued: &'a AtomicUsize,
    /// Callers already waiting when this one arrived.
    pub(super) position: usize,
}

impl<'a> QueueGuard<'a> {
    pub(super) fn enter(queued: &'a AtomicUsize) -> Self {
        let position = queued.fetch_add(1, Ordering::AcqRel);
        Self { queued, position }
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted attempt: reports its outcome to the breaker exactly once — as cancelled if
/// the caller dropped it first — and records a `provider.attempt` unless it succeeded.
pub(super) struct AttemptGuard {
    /// The provider's shared state.
    pub(super) shared: Arc<Shared>,
    /// Upstream model id.
    pub(super) model: String,
    /// 1-based attempt number.
    pub(super) attempt: u32,
    /// Whether this is a streaming attempt.
    pub(super) stream: bool,
    /// Which breakers let this through as their half-open probe.
    pub(super) probes: Probes,
    /// When the attempt began.
    pub(super) started: Instant,
    /// Set once the outcome is reported.
    pub(super) done: bool,
}

impl AttemptGuard {
    pub(super) fn succeeded(
        mut self,
        status: Option<u16>,
        ttft: Option<Duration>,
        usage: Option<Usage>,
    ) {
        self.done = true;
        let h = &*self.shared;
        h.report(&self.model, Outcome::Success, self.probes);
        h.counters.succeeded.fetch_add(1, Ordering::Relaxed);
        // The call's `request` event has the rest (status, time to first chunk).
        let _ = (status, ttft);
        h.attempt_succeeded(usage);
    }

    /// The attempt failed; `retried` says whether another attempt follows.
    pub(super) fn failed(mut self, error: &ProviderError, ttft: Option<Duration>, retried: bool) {
        self.done = true;
        let h = &*self.shared;
        // A client error proves the upstream is up; see `ProviderError::breaker_outcome`.
        h.report(&self.model, error.breaker_outcome(), self.probes);
        h.record_attempt(
            &self.model,
            self.attempt,
            self.stream,
            self.started.elapsed(),
            ttft,
            if retried {
                AttemptOutcome::Retried(error)
            } else {
                AttemptOutcome::Failed(error)
            },
        );
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let h = &*self.shared;
        if self.probes != Probes::default() {
            h.report(&self.model, Outcome::Abandoned, self.probes);
        }
        h.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        h.record_attempt(
            &self.model,
            self.attempt,
            self.stream,
            self.started.elapsed(),
            None,
            AttemptOutcome::Cancelled,
        );
    }
}
