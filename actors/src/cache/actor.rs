//! The supervised cache actor: what is policy and background work. It (re)connects to
//! Redis with backoff from [`crate::policy::retry`] (through [`CacheHandle::maintain_l2`]),
//! publishes the `cache` health component every `health_interval`, and answers [`Lookup`],
//! [`Store`] and [`Stats`] for callers that prefer messages — each delegates to the handle.
//! A restart loses nothing but its timers; the new instance opens a fresh Redis connection.

use actix::prelude::*;
use bytes::Bytes;

use super::handle::CacheHandle;
use super::key::CacheKey;
use super::settings::{ACTOR_NAME, CacheError, CacheSettings};
use super::types::{CacheHit, CacheStats, L2State, StoreOutcome};
use crate::health::HealthBoard;
use crate::pipeline::recorder::Recorder;
use crate::supervisor::{ChildSpec, Slot};

// ---------------------------------------------------------------------------------------
// Messages. Each delegates to the handle; the request path should use the handle directly.

/// Looks a key up (L1, then L2).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<CacheHit>, CacheError>")]
pub struct Lookup {
    /// The request's key.
    pub key: CacheKey,
    /// The resolved model, for the `cache.miss` event.
    pub model: String,
}

/// Stores a complete successful response.
#[derive(Debug, Message)]
#[rtype(result = "Result<StoreOutcome, CacheError>")]
pub struct Store {
    /// The request's key.
    pub key: CacheKey,
    /// The resolved model that produced it.
    pub model: String,
    /// The complete JSON response.
    pub body: Bytes,
}

/// Returns the current [`CacheStats`].
#[derive(Debug, Message)]
#[rtype(result = "Result<CacheStats, CacheError>")]
pub struct Stats;

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

impl Handler<Lookup> for Cache {
    type Result = ResponseFuture<Result<Option<CacheHit>, CacheError>>;

    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { Ok(handle.lookup(&msg.key, &msg.model).await) })
    }
}

impl Handler<Store> for Cache {
    type Result = ResponseFuture<Result<StoreOutcome, CacheError>>;

    fn handle(&mut self, msg: Store, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { Ok(handle.store(&msg.key, &msg.model, msg.body).await) })
    }
}

impl Handler<Stats> for Cache {
    type Result = Result<CacheStats, CacheError>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        Ok(self.handle.stats())
    }
}
