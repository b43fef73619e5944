//! The provider-specific tools: `glm_web_search` (GLM's web-search API, `POST
//! {base}/web_search`, through the configured GLM provider) and `kimi_chat_with_tools`
//! (`messages`, `tools` and `tool_choice` passed through to a Kimi model). Each says plainly
//! when its provider is not configured.

use std::sync::Arc;

use exai_actors::provider::{ProviderHandle, ProviderKind};
use exai_actors::registry::catalog;
use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use super::args::Args;
use super::tool::{Tool, ToolContext, ToolOutput};
use crate::error::GatewayError;
use crate::state::SurfaceState;

/// Results GLM's web search returns at most.
pub const MAX_SEARCH_RESULTS: u64 = 50;
/// Results asked for by default.
pub const DEFAULT_SEARCH_RESULTS: u64 = 10;
/// GLM's default search engine.
const DEFAULT_SEARCH_ENGINE: &str = "search-prime";

/// The provider-specific tools, in `list_tools` order.
pub fn tools() -> Vec<Arc<dyn Tool>> {
    vec![Arc::new(GlmWebSearch), Arc::new(KimiChatWithTools)]
}

/// The first configured provider of `kind`.
fn provider_of(state: &SurfaceState, kind: ProviderKind) -> Option<ProviderHandle> {
    let registry = state.chat.dispatcher().registry();
    registry
        .provider_names()
        .into_iter()
        .filter_map(|name| registry.provider(&name))
        .find(|p| p.settings().kind == kind)
}

/// The error of a tool whose provider is missing.
fn not_configured(tool: &str, kind: &str, env: &str) -> GatewayError {
    GatewayError::Unavailable(format!(
        "{tool} needs a {kind} provider, and none is configured: set {env} or add a \
         [[providers]] entry with kind = \"{}\"",
        kind.to_ascii_lowercase()
    ))
}

/// `glm_web_search`.
pub struct GlmWebSearch;

impl Tool for GlmWebSearch {
    fn name(&self) -> &'static str {
        "glm_web_search"
    }

    fn description(&self) -> &'static str {
        "Web search through GLM's native web-search API (the configured GLM provider); \
         returns the provider's JSON results."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "search_query": { "type": "string", "description": "What to search for" },
                "count": { "type": "integer", "minimum": 1, "maximum": MAX_SEARCH_RESULTS, "default": DEFAULT_SEARCH_RESULTS },
                "search_recency_filter": { "type": "string",
                    "enum": ["oneDay", "oneWeek", "oneMonth", "oneYear", "noLimit", "all"] },
                "search_domain_filter": { "type": "string", "description": "Only results from this domain" },
                "search_engine": { "type": "string", "default": DEFAULT_SEARCH_ENGINE }
            },
            "required": ["search_query"]
        })
    }

    fn call<'a>(
        &'a self,
        ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>> {
        Box::pin(async move {
            let a = Args(&args);
            let query = a.required_str("search_query")?;
            let provider = provider_of(ctx.services, ProviderKind::Glm).ok_or_else(|| {
                not_configured("glm_web_search", "GLM", "GLM_API_KEY (or ZHIPUAI_API_KEY)")
            })?;
            let mut body = json!({
                "search_query": query,
                "search_engine": a.str("search_engine").unwrap_or(DEFAULT_SEARCH_ENGINE),
                "count": a.u64("count").unwrap_or(DEFAULT_SEARCH_RESULTS).clamp(1, MAX_SEARCH_RESULTS),
                "search_recency_filter": a.str("search_recency_filter").unwrap_or("noLimit"),
                "request_id": ctx.request_id,
            });
            if let Some(domain) = a.str("search_domain_filter") {
                body["search_domain_filter"] = json!(domain);
            }
            let answer = provider
                .post_json("web_search", "web_search", &body)
                .await?;
            Ok(ToolOutput {
                text: String::from_utf8_lossy(&answer).into_owned(),
                metadata: json!({ "provider": provider.name() }),
                provider: Some(provider.name().to_owned()),
                ..ToolOutput::default()
            })
        })
    }
}

/// `kimi_chat_with_tools`.
pub struct KimiChatWithTools;

impl Tool for KimiChatWithTools {
    fn name(&self) -> &'static str {
        "kimi_chat_with_tools"
    }

    fn description(&self) -> &'static str {
        "A Kimi chat completion with OpenAI-style tools and tool_choice passed through; \
         returns the provider's JSON response, tool_calls included."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "messages": { "type": ["array", "string"],
                              "description": "OpenAI messages (strings are user messages)" },
                "tools": { "type": "array", "items": { "type": "object" }, "description": "OpenAI tool definitions" },
                "tool_choice": { "type": ["string", "object"], "description": "auto, none, required, or a named function" },
                "model": { "type": "string", "description": "A Kimi model; default the provider's first" },
                "temperature": { "type": "number", "minimum": 0, "maximum": 1 },
                "max_tokens": { "type": "integer", "minimum": 1 }
            },
            "required": ["messages"]
        })
    }

    fn call<'a>(
        &'a self,
        ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>> {
        Box::pin(kimi_chat(ctx, args))
    }
}

/// `messages` as OpenAI messages: strings become user messages.
fn messages(value: &Value) -> Result<Vec<Value>, GatewayError> {
    let items: Vec<Value> = match value {
        Value::String(s) => vec![Value::String(s.clone())],
        Value::Array(a) => a.clone(),
        _ => {
            return Err(GatewayError::validation(
                "messages",
                "must be a list or a string",
            ));
        }
    };
    if items.is_empty() {
        return Err(GatewayError::validation("messages", "must not be empty"));
    }
    items
        .into_iter()
        .map(|m| match m {
            Value::String(s) => Ok(json!({ "role": "user", "content": s })),
            Value::Object(o) if o.get("role").is_some_and(Value::is_string) => Ok(Value::Object(o)),
            _ => Err(GatewayError::validation(
                "messages",
                "each message must be a string or an object with a role",
            )),
        })
        .collect()
}

async fn kimi_chat(
    ctx: ToolContext<'_>,
    args: Map<String, Value>,
) -> Result<ToolOutput, GatewayError> {
    let a = Args(&args);
    let state = ctx.services;
    let provider = provider_of(state, ProviderKind::Kimi).ok_or_else(|| {
        not_configured(
            "kimi_chat_with_tools",
            "Kimi",
            "KIMI_API_KEY (or MOONSHOT_API_KEY)",
        )
    })?;
    let messages = messages(a.get("messages").unwrap_or(&Value::Null))?;
    let model = match a.str("model").map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => {
            let resolved = state.chat.dispatcher().resolve(m).await?;
            let kimi = resolved
                .targets
                .first()
                .is_some_and(|t| t.provider.settings().kind == ProviderKind::Kimi);
            if !kimi {
                return Err(GatewayError::validation(
                    "model",
                    format!("{m:?} is not served by a Kimi provider"),
                ));
            }
            m.to_owned()
        }
        None => {
            let id = provider
                .settings()
                .models
                .first()
                .cloned()
                .or_else(|| {
                    catalog::for_kind(ProviderKind::Kimi)
                        .next()
                        .map(|m| m.id.to_owned())
                })
                .unwrap_or_default();
            format!("{}/{id}", provider.name())
        }
    };
    let mut body = json!({ "model": model, "messages": messages });
    for field in ["tools", "tool_choice", "temperature", "max_tokens"] {
        if let Some(v) = a.get(field) {
            body[field] = v.clone();
        }
    }
    let answer = state.chat.complete(body, false).await?;
    let provider_name = answer.provider.as_deref().map(str::to_owned);
    Ok(ToolOutput {
        text: String::from_utf8_lossy(&answer.body).into_owned(),
        metadata: json!({
            "model": answer.model,
            "provider": provider_name,
            "cache": answer.cache.as_str(),
        }),
        model: Some(answer.model),
        provider: provider_name,
        cache: Some(answer.cache.as_str()),
    })
}
