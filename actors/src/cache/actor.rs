//! The supervised cache actor: what is policy and background work. It (re)connects to
//! Redis with backoff from [`crate::policy::retry`] (through [`CacheHandle::maintain_l2`]),
//! and publishes the `cache` health component every `health_interval`. The request path uses
//! [`CacheHandle`] directly; the actor takes no messages beyond the supervisor's.
//! A restart loses nothing but its timers; the new instance opens a fresh Redis connection.

use actix::prelude::*;

use super::handle::CacheHandle;
use super::settings::{ACTOR_NAME, CacheError, CacheSettings};
use super::types::L2State;
use crate::health::HealthBoard;
use crate::pipeline::recorder::Recorder;
use crate::supervisor::{ChildSpec, Slot};

/// Builds the cache: the shared state, its handle, and the supervisor child spec.
pub struct ResponseCache {
    /// The handle every request path clones.
    handle: CacheHandle,
    /// Where the supervised actor's address is published.
    slot: Slot<Cache>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("handle", &self.handle)
            .finish()
    }
}

impl ResponseCache {
    /// Builds the cache. Redis, if configured, is connected by the actor once it starts;
    /// until then (and whenever Redis is down) the cache runs on L1 alone.
    pub fn new(
        settings: CacheSettings,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Result<Self, CacheError> {
        let handle = CacheHandle::new(settings, recorder, health)?;
        Ok(Self {
            handle,
            slot: Slot::new(),
        })
    }

    /// The handle for the request path.
    pub fn handle(&self) -> CacheHandle {
        self.handle.clone()
    }

    /// Where the supervised actor's current address is published.
    pub fn slot(&self) -> Slot<Cache> {
        self.slot.clone()
    }

    /// The supervisor child (named [`ACTOR_NAME`]); every restart reuses the same state.
    pub fn child_spec(&self) -> ChildSpec {
        let handle = self.handle.clone();
        ChildSpec::new(ACTOR_NAME, self.slot.clone(), move || {
            Cache::new(handle.clone())
        })
    }
}

/// The supervised cache actor. See the module docs.
pub struct Cache {
    /// The shared state it maintains and delegates to.
    handle: CacheHandle,
}

impl Cache {
    /// An instance over `handle`'s state (called by the child factory on each start).
    pub fn new(handle: CacheHandle) -> Self {
        Self { handle }
    }
}

impl Actor for Cache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handle.publish_health();
        let interval = self.handle.settings().health_interval;
        ctx.run_interval(interval, |act, _| act.handle.publish_health());
        if self.handle.l2_state() != L2State::Disabled {
            ctx.spawn(actix::fut::wrap_future(self.handle.clone().maintain_l2()));
        }
    }
}

crate::supervised_child!(Cache);
