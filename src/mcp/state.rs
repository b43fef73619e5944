//! The MCP surface's own state: sessions and calls in flight, published as the `mcp` health
//! component.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use exai_actors::health::{HealthBoard, Status};
use serde_json::json;

use super::protocol::{SESSION_VERSIONS, STATELESS_VERSIONS};
use super::session::SessionStore;
use crate::config::Config;

/// How often expired sessions are swept and the health component refreshed.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// The health component of the MCP surface.
pub const HEALTH_COMPONENT: &str = "mcp";

/// The MCP surface's own state: sessions and calls in flight. Registered as
/// `web::Data<McpState>`; the tools and their limits are the [`crate::state::SurfaceState`]'s.
#[derive(Debug)]
pub struct McpState {
    /// Sessions of the handshake era.
    pub sessions: SessionStore,
    /// MCP calls running now.
    in_flight: AtomicUsize,
    /// Where the `mcp` component is published.
    health: HealthBoard,
}

impl McpState {
    /// The state for `config`. Must run inside an actix `System` (it spawns the sweep).
    pub fn new(
        config: &Config,
        recorder: exai_actors::pipeline::recorder::Recorder,
        health: HealthBoard,
    ) -> Arc<Self> {
        let state = Arc::new(Self {
            sessions: SessionStore::new(
                config.server.mcp_session_ttl,
                config.server.mcp_max_sessions,
                recorder,
            ),
            in_flight: AtomicUsize::new(0),
            health,
        });
        state.publish();
        // Expired sessions leave the count (and record their close) even when nothing asks.
        let weak = Arc::downgrade(&state);
        actix_rt::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(state) => state.publish(),
                    None => return,
                }
            }
        });
        state
    }

    /// MCP calls running now.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Publishes the `mcp` health component: sessions and calls in flight.
    pub fn publish(&self) {
        self.health.set_component(
            HEALTH_COMPONENT,
            Status::Ok,
            json!({
                "sessions": self.sessions.len(),
                "calls_in_flight": self.calls_in_flight(),
                "versions": SESSION_VERSIONS.iter().chain(STATELESS_VERSIONS).collect::<Vec<_>>(),
            }),
        );
    }

    /// Counts a call in flight until the returned guard drops.
    pub fn call_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.publish();
        InFlight(self.clone())
    }
}

/// One MCP call in flight.
#[derive(Debug)]
pub struct InFlight(Arc<McpState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.publish();
    }
}
