//! The informational tools, none of which calls a model: `listmodels`, `version`, `status`,
//! `provider_capabilities`, `activity` (the last events of this daemon, from the event store)
//! and `health` (the `/health` document).

use std::collections::BTreeMap;
use std::sync::Arc;

use exai_actors::pipeline::store::EventQuery;
use exai_actors::provider::ProviderKind;
use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use super::args::Args;
use super::tool::{Tool, ToolContext, ToolOutput, no_arguments};
use crate::error::GatewayError;
use crate::state::SurfaceState;

/// Events `activity` returns by default.
pub const ACTIVITY_DEFAULT_LIMIT: u64 = 50;
/// Most events `activity` returns.
pub const ACTIVITY_MAX_LIMIT: u64 = 1000;
/// Store pages `activity` scans at most while filtering (each up to 1000 events).
const ACTIVITY_MAX_PAGES: usize = 5;

/// The informational tools, in `list_tools` order.
pub fn tools() -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(Info::ListModels),
        Arc::new(Info::Version),
        Arc::new(Info::Status),
        Arc::new(Info::ProviderCapabilities),
        Arc::new(Info::Activity),
        Arc::new(Info::Health),
    ]
}

/// One informational tool.
#[derive(Debug, Clone, Copy)]
pub enum Info {
    /// `listmodels`.
    ListModels,
    /// `version`.
    Version,
    /// `status`.
    Status,
    /// `provider_capabilities`.
    ProviderCapabilities,
    /// `activity`.
    Activity,
    /// `health`.
    Health,
}

impl Tool for Info {
    fn name(&self) -> &'static str {
        match self {
            Self::ListModels => "listmodels",
            Self::Version => "version",
            Self::Status => "status",
            Self::ProviderCapabilities => "provider_capabilities",
            Self::Activity => "activity",
            Self::Health => "health",
        }
    }

    fn description(&self) -> &'static str {
        match self {
            Self::ListModels => "Models by provider, with status and context windows.",
            Self::Version => "exai version, protocol and tool list.",
            Self::Status => "Providers, breakers, cache and metrics pipeline, in short.",
            Self::ProviderCapabilities => {
                "Per provider: its models, context windows, streaming and tool support, \
                 provider-specific tools and breaker state."
            }
            Self::Activity => {
                "The last events of this daemon (client calls, failed upstream attempts, breakers, \
                 restarts), newest first, filterable by type, source, outcome and text."
            }
            Self::Health => "The /health document: overall status, actors and components.",
        }
    }

    fn input_schema(&self) -> Value {
        match self {
            Self::Activity => json!({
                "type": "object",
                "properties": {
                    "limit": { "type": "integer", "minimum": 1, "maximum": ACTIVITY_MAX_LIMIT,
                               "description": "How many events (default 50)" },
                    "type": { "type": "string",
                              "description": "Event type, e.g. request; a trailing * matches a prefix (provider.*)" },
                    "source": { "type": "string", "description": "Recording component: ws, provider, cache, supervisor, …" },
                    "ok": { "type": "boolean", "description": "Only successful (true) or failed (false) events" },
                    "contains": { "type": "string", "description": "Only events whose JSON contains this text" },
                    "since_ms": { "type": "integer", "minimum": 0, "description": "Only events at or after this unix time (ms)" }
                }
            }),
            _ => no_arguments(),
        }
    }

    fn call<'a>(
        &'a self,
        ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>> {
        let state = ctx.services;
        let tools = ctx.tools;
        Box::pin(async move {
            match self {
                Self::ListModels => Ok(list_models(state).await),
                Self::Version => Ok(ToolOutput::json(&json!({
                    "name": "exai",
                    "version": env!("CARGO_PKG_VERSION"),
                    "protocol": super::tool::PROTOCOL,
                    "tools": tools.names(),
                }))),
                Self::Status => Ok(status(state)),
                Self::ProviderCapabilities => Ok(provider_capabilities(state).await),
                Self::Activity => activity(state, Args(&args)).await,
                Self::Health => Ok(ToolOutput::json(&state.health_document().1)),
            }
        })
    }
}

/// `listmodels`: models grouped by provider, with breaker status and context windows.
async fn list_models(state: &SurfaceState) -> ToolOutput {
    let listings = state.chat.dispatcher().registry().list_models().await;
    let mut by_provider: BTreeMap<String, Value> = BTreeMap::new();
    let total = listings.len();
    for m in listings {
        let entry = by_provider.entry(m.provider.clone()).or_insert_with(|| {
            json!({
                "provider": m.provider,
                "kind": m.provider_kind,
                "status": m.status,
                "simulated": m.simulated,
                "models": [],
            })
        });
        if let Some(models) = entry.get_mut("models").and_then(Value::as_array_mut) {
            models.push(json!({
                "id": m.id,
                "aliases": m.aliases,
                "context_window": m.context_window,
                "max_output_tokens": m.max_output_tokens,
                "capabilities": m.capabilities,
                "source": m.source,
            }));
        }
    }
    let providers: Vec<Value> = by_provider.into_values().collect();
    ToolOutput::json(&json!({ "total": total, "providers": providers }))
}

/// `status`: providers, breakers, cache, pipeline and sessions, in short.
fn status(state: &SurfaceState) -> ToolOutput {
    let registry = state.chat.dispatcher().registry();
    let providers: Vec<Value> = registry
        .provider_names()
        .into_iter()
        .filter_map(|name| registry.provider(&name))
        .map(|p| {
            json!({
                "name": p.name(),
                "breaker": p.breaker_state(),
                "in_flight": p.in_flight(),
                "queued": p.queued(),
                "simulated": p.settings().simulated,
            })
        })
        .collect();
    let cache = match state.chat.cache() {
        Some(cache) => {
            let s = cache.stats();
            json!({
                "enabled": true,
                "l2": cache.l2_state().as_str(),
                "hit_ratio": s.hit_ratio,
                "hits": s.hits,
                "misses": s.misses,
                "entries": s.entries,
                "bytes": s.bytes,
            })
        }
        None => json!({ "enabled": false }),
    };
    let health = state.health.snapshot();
    ToolOutput::json(&json!({
        "status": health.status,
        "providers": providers,
        "cache": cache,
        "pipeline": state.recorder.stats(),
        "components": health.components.iter().map(|(name, c)| (name.clone(), json!(c.status))).collect::<Map<String, Value>>(),
        "ws": {
            "connections": state.ws_connections(),
            "calls_in_flight": state.ws_calls_in_flight(),
        },
        "v1": { "in_flight": state.v1_in_flight() },
    }))
}

/// The exai tools that need a provider of `kind`.
fn provider_specific_tools(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Glm => &["glm_web_search"],
        ProviderKind::Kimi => &["kimi_chat_with_tools"],
        ProviderKind::Openai | ProviderKind::OpenaiCompatible | ProviderKind::Anthropic => &[],
    }
}

/// `provider_capabilities`: per provider, what it serves and supports.
async fn provider_capabilities(state: &SurfaceState) -> ToolOutput {
    let registry = state.chat.dispatcher().registry();
    let listings = registry.list_models().await;
    let providers: Vec<Value> = registry
        .provider_names()
        .into_iter()
        .filter_map(|name| registry.provider(&name))
        .map(|p| {
            let settings = p.settings();
            let models: Vec<Value> = listings
                .iter()
                .filter(|m| m.provider == p.name())
                .map(|m| {
                    json!({
                        "id": m.id,
                        "context_window": m.context_window,
                        "max_output_tokens": m.max_output_tokens,
                        "vision": m.capabilities.vision,
                        "tools": m.capabilities.tools,
                        "thinking": m.capabilities.thinking,
                        "source": m.source,
                    })
                })
                .collect();
            // Every kind speaks the OpenAI dialect, streaming included; function calling is
            // a model property, known for catalogued models.
            let tools = listings
                .iter()
                .any(|m| m.provider == p.name() && m.capabilities.tools);
            json!({
                "name": p.name(),
                "kind": settings.kind,
                "base_url": settings.display_base_url(),
                "simulated": settings.simulated,
                "configured": true,
                "streaming": true,
                "tools": tools,
                "web_search": settings.kind == ProviderKind::Glm,
                "exai_tools": provider_specific_tools(settings.kind),
                "breaker": p.breaker_state(),
                "in_flight": p.in_flight(),
                "models": models,
            })
        })
        .collect();
    ToolOutput::json(&json!({ "providers": providers }))
}

/// `activity`: recent events from the event store (what the flusher has written: events
/// reach it within the flush interval), newest first, filtered.
async fn activity(state: &SurfaceState, args: Args<'_>) -> Result<ToolOutput, GatewayError> {
    let Some(store) = state.history.as_ref() else {
        return Err(GatewayError::Unavailable(
            "activity needs the event store, which this server was built without".to_owned(),
        ));
    };
    let limit = usize::try_from(args.u64("limit").unwrap_or(ACTIVITY_DEFAULT_LIMIT))
        .unwrap_or(usize::MAX)
        .min(ACTIVITY_MAX_LIMIT as usize);
    let (exact, prefix) = match args.str("type") {
        Some(t) if t.ends_with('*') => (None, Some(t.trim_end_matches('*').to_owned())),
        Some(t) => (Some(t.to_owned()), None),
        None => (None, None),
    };
    let source = args.str("source");
    let ok = args.get("ok").and_then(Value::as_bool);
    let contains = args.str("contains");
    let since = args.get("since_ms").and_then(Value::as_i64);
    let mut out: Vec<Value> = Vec::new();
    let mut before = None;
    let mut scanned = 0usize;
    for _ in 0..ACTIVITY_MAX_PAGES {
        let query = EventQuery {
            kind: exact.clone(),
            before,
            limit: Some(ACTIVITY_MAX_LIMIT as usize),
        };
        let page = store
            .events(&query)
            .await
            .map_err(|e| GatewayError::Unavailable(format!("event store: {e}")))?;
        let mut older_than_since = false;
        for event in &page.events {
            scanned += 1;
            if since.is_some_and(|s| event.ts < s) {
                older_than_since = true;
                break;
            }
            if event.instance != state.instance
                || prefix
                    .as_deref()
                    .is_some_and(|p| !event.kind.starts_with(p))
                || source.is_some_and(|s| event.source != s)
                || ok.is_some_and(|want| event.ok() != want)
            {
                continue;
            }
            let value = serde_json::to_value(event).unwrap_or(Value::Null);
            if contains.is_some_and(|c| !value.to_string().contains(c)) {
                continue;
            }
            out.push(value);
            if out.len() >= limit {
                break;
            }
        }
        match page.next_cursor.as_deref().map(uuid::Uuid::parse_str) {
            Some(Ok(cursor)) if out.len() < limit && !older_than_since => before = Some(cursor),
            _ => break,
        }
    }
    Ok(ToolOutput::json(&json!({
        "instance": state.instance,
        "count": out.len(),
        "scanned": scanned,
        "events": out,
    })))
}
