//! The health board: what `/health` reports, written by the supervisor (per actor) and by
//! components (store, cache, providers, pipeline), read by the HTTP layer without a mailbox
//! hop so health answers even when an actor is stuck.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

/// Overall or per-component status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything works.
    Ok,
    /// Serving, but something is restarting or running on a fallback.
    Degraded,
    /// Something has given up; `/health` answers 503.
    Unhealthy,
}

/// Lifecycle state of one supervised actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorState {
    /// Started, answering pings.
    Running,
    /// Died or hung; a replacement is scheduled after a backoff.
    Restarting,
    /// Restarted too often within the window; the supervisor gave up.
    Failed,
    /// Being stopped during shutdown.
    Stopping,
    /// Stopped during shutdown.
    Stopped,
}

/// What `/health` shows for one actor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorHealth {
    /// Current lifecycle state.
    pub state: ActorState,
    /// Restarts since the process started.
    pub restarts: u32,
    /// Why it last died (panic message, fatal error, or "ping timed out").
    pub last_error: Option<String>,
    /// When it was last restarted, RFC 3339.
    pub last_restart_at: Option<String>,
}

/// What a component reports: a status and free-form detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentHealth {
    /// The component's own view of itself.
    pub status: Status,
    /// Detail for operators (counters, breaker state, last error).
    #[serde(flatten)]
    pub detail: Value,
}

/// The full health picture at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct HealthSnapshot {
    /// Worst of every actor and component.
    pub status: Status,
    /// Per actor, by name.
    pub actors: BTreeMap<String, ActorHealth>,
    /// Per component, by name.
    pub components: BTreeMap<String, ComponentHealth>,
}

/// Shared, cheaply cloned health table.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard {
    /// Actors and components, behind one lock; writes are rare, reads are short.
    inner: Arc<RwLock<Tables>>,
}

/// The two tables behind a [`HealthBoard`].
#[derive(Debug, Default)]
struct Tables {
    /// Per actor.
    actors: BTreeMap<String, ActorHealth>,
    /// Per component.
    components: BTreeMap<String, ComponentHealth>,
}

impl HealthBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Updates one actor's entry, creating it if needed.
    pub fn update_actor(&self, name: &str, f: impl FnOnce(&mut ActorHealth)) {
        let mut tables = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        let entry = tables.actors.entry(name.to_owned()).or_insert(ActorHealth {
            state: ActorState::Running,
            restarts: 0,
            last_error: None,
            last_restart_at: None,
        });
        f(entry);
    }

    /// Replaces one component's entry.
    pub fn set_component(&self, name: &str, status: Status, detail: Value) {
        let mut tables = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        tables
            .components
            .insert(name.to_owned(), ComponentHealth { status, detail });
    }

    /// One actor's entry.
    pub fn actor(&self, name: &str) -> Option<ActorHealth> {
        let tables = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        tables.actors.get(name).cloned()
    }

    /// The whole picture, with the overall status computed.
    pub fn snapshot(&self) -> HealthSnapshot {
        let tables = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let actor_status = tables.actors.values().map(|a| match a.state {
            ActorState::Running | ActorState::Stopped => Status::Ok,
            ActorState::Restarting | ActorState::Stopping => Status::Degraded,
            ActorState::Failed => Status::Unhealthy,
        });
        let component_status = tables.components.values().map(|c| c.status);
        let status = actor_status
            .chain(component_status)
            .max()
            .unwrap_or(Status::Ok);
        HealthSnapshot {
            status,
            actors: tables.actors.clone(),
            components: tables.components.clone(),
        }
    }
}

/// Formats a time as RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overall_status_is_the_worst() {
        let board = HealthBoard::new();
        board.update_actor("a", |_| {});
        assert_eq!(board.snapshot().status, Status::Ok);
        board.set_component("cache", Status::Degraded, json!({"l2": "down"}));
        assert_eq!(board.snapshot().status, Status::Degraded);
        board.update_actor("a", |a| a.state = ActorState::Failed);
        assert_eq!(board.snapshot().status, Status::Unhealthy);
    }
}
