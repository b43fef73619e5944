//! Process lifecycle flags shared by the health routes and the shutdown sequence.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Liveness and readiness as the routes report them.
#[derive(Debug)]
pub struct Lifecycle {
    /// When the application was built.
    started: Instant,
    /// Set once start-up has finished (store migrated, actors started).
    started_up: AtomicBool,
    /// Set as the first step of shutdown; readiness and liveness then answer 503.
    shutting_down: AtomicBool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// Flags for a process that is starting.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            started_up: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Seconds since start.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Marks start-up as complete.
    pub fn mark_started(&self) {
        self.started_up.store(true, Ordering::SeqCst);
    }

    /// Whether start-up is complete.
    pub fn is_started(&self) -> bool {
        self.started_up.load(Ordering::SeqCst)
    }

    /// Begins shutdown; returns false if it had already begun.
    pub fn begin_shutdown(&self) -> bool {
        !self.shutting_down.swap(true, Ordering::SeqCst)
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}
