//! The registry actor: which providers exist, which models each serves, aliases, the default
//! model and the fallback chains.
//!
//! Providers [`Register`] at start-up (the app sends [`StartupComplete`] once all have).
//! [`Resolve`] maps a model name, alias, `<provider>/<model>` or `auto` to its candidates;
//! [`ListModels`] returns the merged catalog with each model's breaker state.
//!
//! The catalog merges the built-in entries ([`crate::registry::catalog`]) for each provider's kind,
//! its configured models and what its `GET /models` discovered. Discovery results are cached
//! for the TTL (`REGISTRY_CACHE_TTL`, default 300 s). Every registration invalidates the
//! cache, and [`StartupComplete`] invalidates it once more, so a caller that listed models
//! while start-up was still registering cannot freeze a partial list.
//!
//! The hot path never waits here: the resolved tables are published as an immutable
//! `Arc<Tables>` that [`dispatch::Dispatcher`] reads directly, and every registration or
//! refresh swaps in a new one. All state lives in [`RegistryHandle`]'s `Arc`, which the
//! child factory captures, so a restart loses no registration.

pub mod catalog;
pub mod dispatch;
mod handle;
mod tables;

use std::time::Duration;

use actix::prelude::*;

use crate::provider::{ProviderError, ProviderHandle};
use crate::supervisor::{ChildSpec, Slot};

pub use handle::RegistryHandle;
pub use tables::{
    AUTO_MODEL, DEFAULT_CACHE_TTL, DEFAULT_MAX_ATTEMPTS, ModelListing, ModelSource,
    RegistrySettings, Resolved, Tables, Target,
};

/// The supervisor child name of the registry.
pub const CHILD_NAME: &str = "registry";
/// How often the actor checks whether the catalog went stale (and refreshes it if so).
const BACKGROUND_CHECK_INTERVAL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Messages.

/// Adds (or replaces, by name) a provider.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ProviderError>")]
pub struct Register {
    /// The provider's handle.
    pub provider: ProviderHandle,
}

/// Start-up has registered every provider: invalidate once more and refresh in the
/// background.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), ProviderError>")]
pub struct StartupComplete;

/// Maps a model name to its candidates.
#[derive(Debug, Message)]
#[rtype(result = "Result<Resolved, ProviderError>")]
pub struct Resolve {
    /// Model id, alias, `<provider>/<model>` or `auto`.
    pub model: String,
}

/// Lists every model by provider.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ModelListing>, ProviderError>")]
pub struct ListModels;

// ---------------------------------------------------------------------------------------
// The actor.

/// The registry. See the module docs.
pub struct Registry {
    /// All state, shared with dispatchers; survives restarts.
    handle: RegistryHandle,
}

impl Registry {
    /// An actor over `handle`.
    pub fn new(handle: RegistryHandle) -> Self {
        Self { handle }
    }

    /// The child spec (named [`CHILD_NAME`]) and the slot its address is published in.
    pub fn child_spec(handle: &RegistryHandle) -> (ChildSpec, Slot<Registry>) {
        let slot = Slot::new();
        let captured = handle.clone();
        let spec = ChildSpec::new(CHILD_NAME, slot.clone(), move || {
            Registry::new(captured.clone())
        });
        (spec, slot)
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Discover at once, then keep the dispatcher's tables fresh in the background so
        // callers rarely pay for discovery. Each check is one lock when nothing is stale.
        let handle = self.handle.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            handle.ensure_fresh().await
        }));
        ctx.run_interval(BACKGROUND_CHECK_INTERVAL, |actor, ctx| {
            if actor.handle.is_stale() {
                let handle = actor.handle.clone();
                ctx.spawn(actix::fut::wrap_future(async move {
                    handle.ensure_fresh().await
                }));
            }
        });
    }
}

crate::supervised_child!(Registry);

impl Handler<Register> for Registry {
    type Result = Result<(), ProviderError>;

    fn handle(&mut self, msg: Register, _: &mut Self::Context) -> Self::Result {
        self.handle.register(msg.provider);
        Ok(())
    }
}

impl Handler<StartupComplete> for Registry {
    type Result = Result<(), ProviderError>;

    fn handle(&mut self, _: StartupComplete, ctx: &mut Self::Context) -> Self::Result {
        self.handle.invalidate();
        let handle = self.handle.clone();
        ctx.spawn(actix::fut::wrap_future(
            async move { handle.refresh().await },
        ));
        Ok(())
    }
}

impl Handler<Resolve> for Registry {
    type Result = ResponseFuture<Result<Resolved, ProviderError>>;

    fn handle(&mut self, msg: Resolve, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { handle.resolve(&msg.model).await })
    }
}

impl Handler<ListModels> for Registry {
    type Result = ResponseFuture<Result<Vec<ModelListing>, ProviderError>>;

    fn handle(&mut self, _: ListModels, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { Ok(handle.list_models().await) })
    }
}

#[cfg(test)]
mod tests;
