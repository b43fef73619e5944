//! Builds the request path's actors from configuration: one provider per configured
//! provider, the registry they register with, and the response cache. Start-up adds their
//! child specs to the supervisor and hands the handles to the client surfaces.
//!
//! Everything a restart must keep lives in the handles built here (the child factories
//! capture them), so a restarted provider, registry or cache loses nothing that matters.

use std::collections::HashMap;

use exai_actors::cache::{CacheHandle, CacheSettings, ResponseCache};
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::provider::{Provider, ProviderError, ProviderHandle, ProviderSettings};
use exai_actors::registry::dispatch::Dispatcher;
use exai_actors::registry::{Registry, RegistryHandle, RegistrySettings};
use exai_actors::supervisor::ChildSpec;

use crate::config::Config;

/// What start-up failed to build.
#[derive(Debug, thiserror::Error)]
pub enum GatewayBuildError {
    /// A provider could not be created.
    #[error("providers: {0}")]
    Provider(#[from] ProviderError),
    /// The cache could not be created.
    #[error("cache: {0}")]
    Cache(#[from] exai_actors::cache::CacheError),
}

/// The providers, registry and cache, built and registered, not yet supervised.
pub struct Gateway {
    /// The registry every provider is registered with.
    pub registry: RegistryHandle,
    /// The provider handles, in configuration order.
    pub providers: Vec<ProviderHandle>,
    /// The cache, when enabled.
    pub cache: Option<ResponseCache>,
    /// Supervisor children: each provider, the registry, the cache.
    children: Vec<ChildSpec>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("providers", &self.providers.len())
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds everything from `config`.
    pub fn build(
        config: &Config,
        recorder: &Recorder,
        health: &HealthBoard,
    ) -> Result<Self, GatewayBuildError> {
        let registry = RegistryHandle::new(registry_settings(config));
        let mut children = Vec::new();
        let mut providers = Vec::new();
        for p in &config.providers {
            let handle = ProviderHandle::new(
                provider_settings(p, config),
                recorder.clone(),
                health.clone(),
            )?;
            registry.register(handle.clone());
            children.push(Provider::child_spec(&handle).0);
            providers.push(handle);
        }
        children.push(Registry::child_spec(&registry).0);
        let cache = if config.cache.enabled {
            let cache =
                ResponseCache::new(cache_settings(config), recorder.clone(), health.clone())?;
            children.push(cache.child_spec());
            Some(cache)
        } else {
            None
        };
        Ok(Self {
            registry,
            providers,
            cache,
            children,
        })
    }

    /// The supervisor children (taken once).
    pub fn take_children(&mut self) -> Vec<ChildSpec> {
        std::mem::take(&mut self.children)
    }

    /// The dispatcher over the registry.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(self.registry.clone())
    }

    /// The cache's request-path handle, when enabled.
    pub fn cache_handle(&self) -> Option<CacheHandle> {
        self.cache.as_ref().map(ResponseCache::handle)
    }

    /// Marks start-up registration complete: the catalog is rebuilt once more so nobody
    /// keeps a list built while providers were still registering.
    pub fn startup_complete(&self) {
        self.registry.invalidate();
    }
}

/// Registry settings from configuration.
pub fn registry_settings(config: &Config) -> RegistrySettings {
    let r = &config.registry;
    RegistrySettings {
        cache_ttl: r.cache_ttl,
        default_model: r.default_model.clone(),
        fallbacks: r
            .fallback
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect::<HashMap<_, _>>(),
        max_attempts: (r.max_attempts as usize).max(1),
        aliases: r.aliases.clone().into_iter().collect(),
    }
}

/// One configured provider with the upstream limits shared by all.
pub fn provider_settings(p: &ProviderSettings, config: &Config) -> ProviderSettings {
    ProviderSettings {
        max_body_bytes: config.upstream.max_bytes,
        sse_max_event_bytes: config.upstream.sse_max_event_bytes,
        ..p.clone()
    }
}

/// Cache settings from configuration.
pub fn cache_settings(config: &Config) -> CacheSettings {
    let c = &config.cache;
    CacheSettings {
        l1_capacity_bytes: c.l1_capacity_bytes,
        l1_ttl: c.ttl,
        l2_ttl: c.l2_ttl,
        max_response_bytes: c.max_response_bytes,
        redis_url: c.redis_url.clone(),
        redis_op_timeout: c.redis_timeout,
        ..CacheSettings::default()
    }
}
