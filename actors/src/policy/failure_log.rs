//! Quiet logging for repeated failures: log when the state changes, plus a periodic summary
//! while a failure persists, never once per attempt (DESIGN §1, rule 5).
//!
//! Every component with a retry loop (store flushes, Redis, upstream providers, listeners)
//! keeps one [`FailureLog`] per failing thing and reports each outcome to it.

use std::time::{Duration, Instant};

/// Default gap between two summary lines for a failure that persists.
pub const DEFAULT_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Tracks one thing that can fail repeatedly, and decides when a line is worth logging.
#[derive(Debug)]
pub struct FailureLog {
    /// What is failing, as it appears in log lines (`"store"`, `"redis"`, `"provider kimi"`).
    what: &'static str,
    /// Minimum gap between summary lines while the failure persists.
    summary_every: Duration,
    /// When the current failure streak began; `None` while healthy.
    failing_since: Option<Instant>,
    /// Failures in the current streak.
    failures: u64,
    /// Failures since the last line was logged, for the summary.
    since_last_line: u64,
    /// When the last line about this streak was logged.
    last_line: Option<Instant>,
}

/// What the caller should do after reporting an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// Nothing worth a log line.
    Quiet,
    /// The first failure after health: log it at warn/error.
    Failing,
    /// Still failing; log a summary line (`failures` in total, `recent` since the last line).
    StillFailing {
        failures: u64,
        recent: u64,
        for_secs: u64,
    },
    /// Healthy again after `failures` failures over `for_secs` seconds.
    Recovered { failures: u64, for_secs: u64 },
}

impl FailureLog {
    /// A tracker for `what`, summarising every [`DEFAULT_SUMMARY_EVERY`].
    pub fn new(what: &'static str) -> Self {
        Self::with_summary_every(what, DEFAULT_SUMMARY_EVERY)
    }

    /// A tracker with a custom summary interval.
    pub fn with_summary_every(what: &'static str, summary_every: Duration) -> Self {
        Self {
            what,
            summary_every,
            failing_since: None,
            failures: 0,
            since_last_line: 0,
            last_line: None,
        }
    }

    /// Whether a failure streak is in progress.
    pub fn is_failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// Failures in the current streak.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Records a failure and logs if this is a state change or a summary is due.
    pub fn failure(&mut self, error: &dyn std::fmt::Display) -> Transition {
        let now = Instant::now();
        self.failures += 1;
        self.since_last_line += 1;
        let transition = match (self.failing_since, self.last_line) {
            (None, _) => {
                self.failing_since = Some(now);
                Transition::Failing
            }
            (Some(since), Some(last)) if now.duration_since(last) >= self.summary_every => {
                Transition::StillFailing {
                    failures: self.failures,
                    recent: self.since_last_line,
                    for_secs: now.duration_since(since).as_secs(),
                }
            }
            _ => Transition::Quiet,
        };
        match &transition {
            Transition::Failing => {
                tracing::warn!(component = self.what, error = %error, "{} is failing", self.what);
            }
            Transition::StillFailing {
                failures,
                recent,
                for_secs,
            } => {
                tracing::warn!(
                    component = self.what,
                    error = %error,
                    failures,
                    recent,
                    for_secs,
                    "{} still failing", self.what
                );
            }
            _ => {}
        }
        if transition != Transition::Quiet {
            self.last_line = Some(now);
            self.since_last_line = 0;
        }
        transition
    }

    /// Records a success, logging once if it ends a failure streak.
    pub fn success(&mut self) -> Transition {
        let Some(since) = self.failing_since.take() else {
            return Transition::Quiet;
        };
        let transition = Transition::Recovered {
            failures: self.failures,
            for_secs: since.elapsed().as_secs(),
        };
        tracing::info!(
            component = self.what,
            failures = self.failures,
            for_secs = since.elapsed().as_secs(),
            "{} recovered",
            self.what
        );
        self.failures = 0;
        self.since_last_line = 0;
        self.last_line = None;
        transition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_on_change_and_summary_only() {
        let mut log = FailureLog::with_summary_every("store", Duration::from_millis(30));
        assert_eq!(log.failure(&"down"), Transition::Failing);
        for _ in 0..100 {
            assert_eq!(log.failure(&"down"), Transition::Quiet);
        }
        std::thread::sleep(Duration::from_millis(40));
        match log.failure(&"down") {
            Transition::StillFailing {
                failures, recent, ..
            } => {
                assert_eq!(failures, 102);
                assert_eq!(recent, 101);
            }
            other => panic!("expected a summary, got {other:?}"),
        }
        assert!(matches!(
            log.success(),
            Transition::Recovered { failures: 102, .. }
        ));
        assert_eq!(log.success(), Transition::Quiet);
        assert_eq!(log.failure(&"down"), Transition::Failing);
    }
}
