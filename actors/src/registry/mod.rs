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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use crate::policy::breaker::BreakerState;
use crate::provider::{ProviderError, ProviderHandle, RemoteModel};
use crate::supervisor::{ChildSpec, Slot};
use catalog::Capabilities;
use dispatch::Dispatcher;

/// Default catalog cache TTL (`REGISTRY_CACHE_TTL`).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default bound on provider calls per request across a fallback chain.
pub const DEFAULT_MAX_ATTEMPTS: usize = 3;
/// The model name that means "the configured default".
pub const AUTO_MODEL: &str = "auto";
/// The supervisor child name of the registry.
pub const CHILD_NAME: &str = "registry";
/// How often the actor checks whether the catalog went stale (and refreshes it if so).
const BACKGROUND_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How the registry resolves and caches.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// How long discovered models are trusted before `GET /models` is asked again.
    pub cache_ttl: Duration,
    /// What `auto` means; `None` picks the first model of the first registered provider.
    pub default_model: Option<String>,
    /// Model → models to try next, in order, when it fails retryably or its breaker is open.
    pub fallbacks: HashMap<String, Vec<String>>,
    /// Provider calls per request across the whole chain (each call may itself retry).
    pub max_attempts: usize,
    /// Configured aliases (`EXAI_MODEL_ALIASES`, `[registry.aliases]`): name → model. They
    /// win over catalog names; an unknown `claude-*` name falls back to `default_model`.
    pub aliases: HashMap<String, String>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            cache_ttl: DEFAULT_CACHE_TTL,
            default_model: None,
            fallbacks: HashMap::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            aliases: HashMap::new(),
        }
    }
}

/// Where a catalog entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// exai's built-in catalog.
    Builtin,
    /// The provider's configured `models`.
    Configured,
    /// The provider's `GET /models`.
    Discovered,
}

/// One model served by one provider, as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelListing {
    /// The model id clients use (and that is sent upstream).
    pub id: String,
    /// Serving provider.
    pub provider: String,
    /// Provider kind (`kimi`, `glm`, `openai`, `openai_compatible`).
    pub provider_kind: String,
    /// Other names that resolve to it.
    pub aliases: Vec<String>,
    /// Context window in tokens, when known.
    pub context_window: Option<u64>,
    /// Output limit in tokens, when known.
    pub max_output_tokens: Option<u64>,
    /// What it can do (all false when unknown).
    pub capabilities: Capabilities,
    /// Where the entry came from.
    pub source: ModelSource,
    /// The breaker state of this model at this provider now (the worse of the provider-wide
    /// and the model's breaker).
    pub status: BreakerState,
    /// Served by a simulated provider (the demo's mock upstream).
    pub simulated: bool,
}

/// One way to serve a request: a provider and the model id to send it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The provider.
    pub provider: ProviderHandle,
    /// Upstream model id.
    pub upstream_model: String,
}

/// The result of resolving a model name.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The canonical model name (after alias and `auto` resolution).
    pub model: String,
    /// Providers serving it, in preference order.
    pub targets: Vec<Target>,
}

impl Resolved {
    /// The preferred provider's name.
    pub fn provider(&self) -> Option<&str> {
        self.targets.first().map(|t| t.provider.name())
    }
}

/// Immutable resolution tables, swapped whole on every change.
#[derive(Debug, Default)]
pub struct Tables {
    /// Lower-cased id or alias → (canonical id, targets).
    routes: HashMap<String, (String, Vec<Target>)>,
    /// Registered providers by name, for `<provider>/<model>`.
    providers: HashMap<String, ProviderHandle>,
    /// Every entry, for listings.
    entries: Vec<(ModelListing, ProviderHandle)>,
    /// Canonical default model.
    default_model: Option<String>,
    /// Lower-cased model → chain.
    fallbacks: HashMap<String, Vec<String>>,
    /// Call bound across a chain.
    max_attempts: usize,
    /// Lower-cased configured alias → model name.
    aliases: HashMap<String, String>,
    /// The configured default model, where unknown `claude-*` names go.
    claude_default: Option<String>,
}

/// The prefix of the names Claude Code and the Anthropic SDKs ask for.
const CLAUDE_PREFIX: &str = "claude-";

/// `name` without a trailing `-YYYYMMDD` snapshot date (`claude-sonnet-4-5-20250929` →
/// `claude-sonnet-4-5`), so an alias of the undated name covers its snapshots.
fn undated(name: &str) -> Option<&str> {
    let (base, date) = name.rsplit_once('-')?;
    (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

impl Tables {
    /// Resolves `model` without waiting: a configured alias (one hop), exact id or catalog
    /// alias (any case), `<provider>/<model>` for a registered provider, or `auto`; an
    /// unknown `claude-*` name resolves to the configured default model, when there is one.
    pub fn resolve(&self, model: &str) -> Option<Resolved> {
        let lower = model.to_ascii_lowercase();
        let name = self
            .aliases
            .get(&lower)
            .or_else(|| self.aliases.get(undated(&lower)?))
            .map_or(model, String::as_str);
        if let Some(found) = self.resolve_name(name) {
            return Some(found);
        }
        let claude = name.len() > CLAUDE_PREFIX.len()
            && name[..CLAUDE_PREFIX.len()].eq_ignore_ascii_case(CLAUDE_PREFIX);
        match &self.claude_default {
            Some(default) if claude => self.resolve_name(default),
            _ => None,
        }
    }

    /// [`Tables::resolve`] without configured aliases and the `claude-*` fallback.
    fn resolve_name(&self, model: &str) -> Option<Resolved> {
        if model.eq_ignore_ascii_case(AUTO_MODEL) {
            let default = self.default_model.as_deref()?;
            if default.eq_ignore_ascii_case(AUTO_MODEL) {
                return None;
            }
            return self.resolve_name(default);
        }
        let found = self
            .routes
            .get(model)
            .or_else(|| self.routes.get(&model.to_ascii_lowercase()));
        if let Some((id, targets)) = found {
            return Some(Resolved {
                model: id.clone(),
                targets: targets.clone(),
            });
        }
        let (provider, upstream) = model.split_once('/')?;
        let handle = self.providers.get(provider)?;
        Some(Resolved {
            model: model.to_owned(),
            targets: vec![Target {
                provider: handle.clone(),
                upstream_model: upstream.to_owned(),
            }],
        })
    }

    /// The fallback chain configured for `model` (as asked, or its canonical id).
    pub fn fallbacks(&self, asked: &str, canonical: &str) -> &[String] {
        self.fallbacks
            .get(&asked.to_ascii_lowercase())
            .or_else(|| self.fallbacks.get(&canonical.to_ascii_lowercase()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Provider calls allowed per request.
    pub fn max_attempts(&self) -> usize {
        self.max_attempts.max(1)
    }

    /// Every entry with the breaker state that decides its calls now (its provider's or
    /// its own, whichever is worse).
    pub fn listings(&self) -> Vec<ModelListing> {
        self.entries
            .iter()
            .map(|(listing, handle)| ModelListing {
                status: handle.breaker_state_for(&listing.id),
                ..listing.clone()
            })
            .collect()
    }

    /// Builds tables from the providers in registration order and their discoveries.
    fn build(
        settings: &RegistrySettings,
        providers: &[ProviderHandle],
        discovered: &HashMap<String, Vec<RemoteModel>>,
    ) -> Self {
        let mut tables = Tables {
            max_attempts: settings.max_attempts,
            fallbacks: settings
                .fallbacks
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            aliases: settings
                .aliases
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            claude_default: settings.default_model.clone(),
            ..Tables::default()
        };
        for handle in providers {
            let s = handle.settings();
            tables.providers.insert(s.name.clone(), handle.clone());
            let mut seen = HashSet::new();
            let mut add = |tables: &mut Tables, listing: ModelListing| {
                if !seen.insert(listing.id.to_ascii_lowercase()) {
                    return;
                }
                let target = Target {
                    provider: handle.clone(),
                    upstream_model: listing.id.clone(),
                };
                for name in std::iter::once(&listing.id).chain(listing.aliases.iter()) {
                    let (_, targets) = tables
                        .routes
                        .entry(name.to_ascii_lowercase())
                        .or_insert_with(|| (listing.id.clone(), Vec::new()));
                    targets.push(target.clone());
                }
                tables.entries.push((listing, handle.clone()));
            };
            let base = ModelListing {
                id: String::new(),
                provider: s.name.clone(),
                provider_kind: s.kind.as_str().to_owned(),
                aliases: Vec::new(),
                context_window: None,
                max_output_tokens: None,
                capabilities: Capabilities::default(),
                source: ModelSource::Builtin,
                status: BreakerState::Closed,
                simulated: s.simulated,
            };
            let from_catalog = |id: &str, source: ModelSource| match catalog::find(id) {
                Some(m) if m.kind == s.kind || source != ModelSource::Builtin => ModelListing {
                    id: m.id.to_owned(),
                    aliases: m.aliases.iter().map(|a| (*a).to_owned()).collect(),
                    context_window: Some(m.context_window),
                    max_output_tokens: Some(m.max_output_tokens),
                    capabilities: m.capabilities,
                    source,
                    ..base.clone()
                },
                _ => ModelListing {
                    id: id.to_owned(),
                    source,
                    ..base.clone()
                },
            };
            for m in catalog::for_kind(s.kind) {
                add(&mut tables, from_catalog(m.id, ModelSource::Builtin));
            }
            for id in &s.models {
                add(&mut tables, from_catalog(id, ModelSource::Configured));
            }
            for remote in discovered.get(&s.name).into_iter().flatten() {
                let mut listing = from_catalog(&remote.id, ModelSource::Discovered);
                if listing.context_window.is_none() {
                    listing.context_window = remote.context_window;
                }
                add(&mut tables, listing);
            }
        }
        tables.default_model = settings
            .default_model
            .clone()
            .or_else(|| tables.entries.first().map(|(l, _)| l.id.clone()));
        for (alias, target) in &settings.aliases {
            for (listing, _) in &mut tables.entries {
                if listing.id.eq_ignore_ascii_case(target) && !listing.aliases.contains(alias) {
                    listing.aliases.push(alias.clone());
                }
            }
        }
        tables
    }
}

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

    /// The dispatcher reading this registry's tables.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(self.clone())
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
mod tests {
    use super::*;
    use crate::health::HealthBoard;
    use crate::pipeline::recorder::Recorder;
    use crate::provider::{ProviderKind, ProviderSettings};

    fn provider(name: &str, kind: ProviderKind, models: &[&str]) -> ProviderHandle {
        let mut s = ProviderSettings::new(name, kind);
        s.base_url = "http://127.0.0.1:9/v1".into();
        s.models = models.iter().map(|m| (*m).to_owned()).collect();
        ProviderHandle::new(s, Recorder::new("t", 10), HealthBoard::new())
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn tables(settings: RegistrySettings, providers: &[ProviderHandle]) -> Tables {
        Tables::build(&settings, providers, &HashMap::new())
    }

    #[test]
    fn builtin_entries_follow_the_provider_kind() {
        let t = tables(
            RegistrySettings::default(),
            &[
                provider("kimi", ProviderKind::Kimi, &[]),
                provider("glm", ProviderKind::Glm, &[]),
            ],
        );
        let r = t.resolve("kimi-k2");
        assert_eq!(
            r.as_ref().map(|r| r.model.as_str()),
            Some("kimi-k2-0905-preview")
        );
        assert_eq!(r.as_ref().and_then(Resolved::provider), Some("kimi"));
        assert_eq!(
            t.resolve("GLM")
                .and_then(|r| r.provider().map(str::to_owned))
                .as_deref(),
            Some("glm")
        );
        assert!(t.resolve("gpt-4o").is_none());
    }

    #[test]
    fn auto_means_the_default_or_the_first_model() {
        let p = provider("local", ProviderKind::OpenaiCompatible, &["llama3", "qwen"]);
        let t = tables(RegistrySettings::default(), std::slice::from_ref(&p));
        assert_eq!(
            t.resolve("auto").map(|r| r.model).as_deref(),
            Some("llama3")
        );
        let t = tables(
            RegistrySettings {
                default_model: Some("qwen".into()),
                ..RegistrySettings::default()
            },
            &[p],
        );
        assert_eq!(t.resolve("AUTO").map(|r| r.model).as_deref(), Some("qwen"));
    }

    #[test]
    fn a_configured_catalog_model_keeps_its_metadata_and_several_providers_share_a_name() {
        let a = provider("a", ProviderKind::OpenaiCompatible, &["glm-4.5-air"]);
        let b = provider("b", ProviderKind::Glm, &[]);
        let t = tables(RegistrySettings::default(), &[a, b]);
        let r = t.resolve("glm-air");
        let providers: Vec<_> = r
            .map(|r| {
                r.targets
                    .iter()
                    .map(|t| t.provider.name().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            providers,
            vec!["a", "b"],
            "registration order is preference order"
        );
        let listing = t.listings();
        let entry = listing
            .iter()
            .find(|m| m.provider == "a" && m.id == "glm-4.5-air");
        assert_eq!(entry.map(|e| e.source), Some(ModelSource::Configured));
        assert_eq!(entry.and_then(|e| e.context_window), Some(131_072));
    }

    #[test]
    fn provider_prefix_routes_any_model_to_that_provider() {
        let t = tables(
            RegistrySettings::default(),
            &[provider("ollama", ProviderKind::OpenaiCompatible, &[])],
        );
        let r = t.resolve("ollama/llama3.1:8b");
        assert_eq!(
            r.as_ref().map(|r| r.targets[0].upstream_model.as_str()),
            Some("llama3.1:8b")
        );
        assert!(t.resolve("other/llama3").is_none());
    }

    #[test]
    fn configured_aliases_win_and_unknown_claude_names_take_the_default() {
        let p = provider("local", ProviderKind::OpenaiCompatible, &["llama3", "qwen"]);
        let mut aliases = HashMap::new();
        aliases.insert("Claude-Sonnet-4-5".to_owned(), "qwen".to_owned());
        aliases.insert("llama3".to_owned(), "qwen".to_owned());
        let settings = RegistrySettings {
            aliases,
            ..RegistrySettings::default()
        };
        let t = tables(settings.clone(), std::slice::from_ref(&p));
        let model = |t: &Tables, m: &str| t.resolve(m).map(|r| r.model);
        assert_eq!(model(&t, "claude-sonnet-4-5").as_deref(), Some("qwen"));
        assert_eq!(
            model(&t, "claude-sonnet-4-5-20250929").as_deref(),
            Some("qwen"),
            "a dated snapshot name takes its undated alias"
        );
        assert_eq!(
            model(&t, "llama3").as_deref(),
            Some("qwen"),
            "a configured alias wins"
        );
        assert_eq!(model(&t, "claude-haiku-4-5"), None, "no default configured");
        let listing = t.listings();
        assert!(
            listing
                .iter()
                .any(|m| m.id == "qwen" && m.aliases.contains(&"llama3".to_owned()))
        );
        let t = tables(
            RegistrySettings {
                default_model: Some("llama3".into()),
                ..settings
            },
            &[p],
        );
        assert_eq!(
            t.resolve("claude-haiku-4-5")
                .map(|r| r.targets[0].upstream_model.clone())
                .as_deref(),
            Some("llama3"),
            "the fallback skips configured aliases"
        );
        assert_eq!(model(&t, "gpt-x"), None, "only claude-* names fall back");
    }

    #[test]
    fn fallback_chains_match_case_insensitively() {
        let mut fallbacks = HashMap::new();
        fallbacks.insert("Kimi-K2".to_owned(), vec!["glm".to_owned()]);
        let t = tables(
            RegistrySettings {
                fallbacks,
                ..RegistrySettings::default()
            },
            &[],
        );
        assert_eq!(
            t.fallbacks("kimi-k2", "kimi-k2-0905-preview"),
            ["glm".to_owned()]
        );
        assert!(t.fallbacks("other", "other").is_empty());
    }
}
