//! The registry's state: registered providers, the discovery cache with its TTL, and the
//! published [`Tables`]. [`RegistryHandle`] is cheap to clone; the actor, the dispatcher and
//! the HTTP layer share it, and the child factory captures it so a restart loses no
//! registration.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use super::tables::{ModelListing, RegistrySettings, Resolved, Tables};
use crate::provider::{ProviderError, ProviderHandle, RemoteModel};

/// Book-keeping behind the cache TTL.
#[derive(Debug, Default)]
struct CacheState {
    /// When discovery last completed for the current provider set; `None` = invalidated.
    refreshed_at: Option<Instant>,
    /// Discovered models per provider (kept across failed refreshes).
    discovered: HashMap<String, Vec<RemoteModel>>,
}

/// State shared by the registry actor and every dispatcher.
struct Shared {
    /// Settings.
    settings: RegistrySettings,
    /// Registered providers, in registration order.
    providers: Mutex<Vec<ProviderHandle>>,
    /// Discovery cache.
    cache: Mutex<CacheState>,
    /// Bumped by every registration and invalidation; a refresh that raced one does not
    /// mark the cache fresh.
    generation: AtomicU64,
    /// Single-flight for refreshes.
    refresh_lock: tokio::sync::Mutex<()>,
    /// The published tables.
    tables: RwLock<Arc<Tables>>,
}

/// Cheap-to-clone access to the registry's state. See the module docs.
#[derive(Clone)]
pub struct RegistryHandle {
    /// Everything, shared.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryHandle")
            .field("providers", &self.provider_names())
            .finish_non_exhaustive()
    }
}

impl RegistryHandle {
    /// An empty registry.
    pub fn new(settings: RegistrySettings) -> Self {
        let tables = Tables::build(&settings, &[], &HashMap::new());
        Self {
            shared: Arc::new(Shared {
                settings,
                providers: Mutex::new(Vec::new()),
                cache: Mutex::new(CacheState::default()),
                generation: AtomicU64::new(0),
                refresh_lock: tokio::sync::Mutex::new(()),
                tables: RwLock::new(Arc::new(tables)),
            }),
        }
    }

    /// Registers (or replaces, by name) a provider. Its built-in and configured models are
    /// resolvable at once; the discovery cache is invalidated.
    pub fn register(&self, provider: ProviderHandle) {
        {
            let mut providers = self
                .shared
                .providers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            providers.retain(|p| p.name() != provider.name());
            providers.push(provider);
        }
        self.invalidate();
    }

    /// Marks the discovery cache stale and republishes the tables.
    pub fn invalidate(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        self.lock_cache().refreshed_at = None;
        self.publish();
    }

    /// Whether the discovery cache is older than the TTL or invalidated.
    pub fn is_stale(&self) -> bool {
        match self.lock_cache().refreshed_at {
            Some(at) => at.elapsed() >= self.shared.settings.cache_ttl,
            None => true,
        }
    }

    /// The tables as published now.
    pub fn tables(&self) -> Arc<Tables> {
        self.shared
            .tables
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Registered provider names, in registration order.
    pub fn provider_names(&self) -> Vec<String> {
        self.providers()
            .iter()
            .map(|p| p.name().to_owned())
            .collect()
    }

    /// The registered provider called `name`.
    pub fn provider(&self, name: &str) -> Option<ProviderHandle> {
        self.providers().into_iter().find(|p| p.name() == name)
    }

    /// Runs discovery when the cache is stale.
    pub async fn ensure_fresh(&self) {
        if self.is_stale() {
            self.refresh().await;
        }
    }

    /// Asks every provider's `GET /models` (concurrently) and republishes. Providers whose
    /// discovery fails keep what they listed last time. Single-flight: a caller arriving
    /// during a refresh waits for it instead of starting another.
    pub async fn refresh(&self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        let _single = self.shared.refresh_lock.lock().await;
        if !self.is_stale() && self.shared.generation.load(Ordering::Acquire) == generation {
            // Someone refreshed while we waited.
            return;
        }
        let generation = self.shared.generation.load(Ordering::Acquire);
        let providers: Vec<_> = self
            .providers()
            .into_iter()
            .filter(|p| p.settings().discover_models)
            .collect();
        let results = futures_util::future::join_all(
            providers
                .iter()
                .map(|p| async move { (p.name().to_owned(), p.list_remote_models().await) }),
        )
        .await;
        {
            let mut cache = self.lock_cache();
            for (name, result) in results {
                match result {
                    Ok(models) => {
                        cache.discovered.insert(name, models);
                    }
                    Err(error) => {
                        tracing::debug!(provider = %name, %error, "model discovery failed");
                    }
                }
            }
            if self.shared.generation.load(Ordering::Acquire) == generation {
                cache.refreshed_at = Some(Instant::now());
            }
        }
        self.publish();
    }

    /// Resolves `model`, refreshing a stale catalog first if it is not known yet.
    pub async fn resolve(&self, model: &str) -> Result<Resolved, ProviderError> {
        if let Some(resolved) = self.tables().resolve(model) {
            return Ok(resolved);
        }
        self.ensure_fresh().await;
        self.tables()
            .resolve(model)
            .ok_or_else(|| ProviderError::UnknownModel {
                model: model.to_owned(),
            })
    }

    /// Every model by provider with its breaker state, refreshing a stale catalog first.
    pub async fn list_models(&self) -> Vec<ModelListing> {
        self.ensure_fresh().await;
        self.tables().listings()
    }

    fn providers(&self) -> Vec<ProviderHandle> {
        self.shared
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.shared
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Rebuilds the tables from the current providers and discoveries and swaps them in.
    fn publish(&self) {
        let providers = self.providers();
        let tables = {
            let cache = self.lock_cache();
            Tables::build(&self.shared.settings, &providers, &cache.discovered)
        };
        *self
            .shared
            .tables
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(tables);
    }
}
