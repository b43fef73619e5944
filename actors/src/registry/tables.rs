//! The registry's published resolution tables: how a model name, alias, `<provider>/<model>`
//! or `auto` maps to the providers serving it, what the catalog lists, and the fallback
//! chains. [`Tables`] are immutable and swapped whole by the
//! [`RegistryHandle`](super::handle::RegistryHandle) on every change, so the hot path reads
//! them without waiting.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use super::catalog::{self, Capabilities};
use crate::policy::breaker::BreakerState;
use crate::provider::{ProviderHandle, RemoteModel};

/// Default catalog cache TTL (`REGISTRY_CACHE_TTL`).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default bound on provider calls per request across a fallback chain.
pub const DEFAULT_MAX_ATTEMPTS: usize = 3;
/// The model name that means "the configured default".
pub const AUTO_MODEL: &str = "auto";
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
    pub(super) fn build(
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
