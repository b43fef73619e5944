//! The tools `/ws` serves: `chat`, `listmodels`, `version` and `status` — their schemas for
//! `list_tools`, name normalisation (`chat_EXAI-WS` → `chat`), argument validation (done
//! before a call takes a slot) and execution.
//!
//! `chat` goes through the shared chat path ([`crate::chat::ChatService`]), the same one
//! `/v1/chat/completions` uses, and keeps conversation threads by `continuation_id`.

use std::collections::BTreeMap;
use std::time::Instant;

use exai_actors::catalog;
use futures_util::StreamExt as _;
use serde_json::{Map, Value, json};

use super::protocol::{stream_chunk, stream_complete};
use crate::chat::{content_of, delta_of};
use crate::error::GatewayError;
use crate::surface::SurfaceState;

/// Protocol name reported by `version`.
pub const PROTOCOL: &str = "exai-ws";
/// Largest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: u64 = 1_000_000;
/// Longest `continuation_id`.
pub const CONTINUATION_ID_MAX: usize = 128;
/// Suffixes some clients append to tool names (`chat_EXAI-WS`), compared lower-cased.
const NAME_SUFFIXES: &[&str] = &[
    "_exai-ws", "-exai-ws", "_exai_ws", "_exaiws", "_exai", "-exai",
];

/// A validated tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    /// `chat`.
    Chat(ChatArgs),
    /// `listmodels`.
    ListModels,
    /// `version`.
    Version,
    /// `status`.
    Status,
}

impl Tool {
    /// The canonical tool name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Chat(_) => "chat",
            Self::ListModels => "listmodels",
            Self::Version => "version",
            Self::Status => "status",
        }
    }
}

/// How hard a thinking model should think.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingMode {
    /// Barely.
    Minimal,
    /// A little.
    Low,
    /// Moderately.
    Medium,
    /// A lot.
    High,
    /// As much as it can.
    Max,
}

impl ThinkingMode {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "minimal" => Some(Self::Minimal),
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "max" => Some(Self::Max),
            _ => None,
        }
    }

    /// The OpenAI `reasoning_effort` it maps to.
    fn reasoning_effort(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High | Self::Max => "high",
        }
    }
}

/// Validated `chat` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatArgs {
    /// The user's message.
    pub prompt: String,
    /// A system message sent first.
    pub system_prompt: Option<String>,
    /// Model name or alias; `auto` when absent.
    pub model: String,
    /// Sampling temperature, 0–1.
    pub temperature: Option<f64>,
    /// Completion length bound.
    pub max_tokens: Option<u64>,
    /// Reasoning effort for thinking models.
    pub thinking_mode: Option<ThinkingMode>,
    /// Stream the answer as `stream_chunk`s.
    pub stream: bool,
    /// Thread to continue.
    pub continuation_id: Option<String>,
}

/// What a tool produced.
#[derive(Debug, Clone, Default)]
pub struct ToolOutput {
    /// The `outputs[0].text`.
    pub text: String,
    /// `metadata` of the reply.
    pub metadata: Value,
    /// Resolved model, for the event.
    pub model: Option<String>,
    /// Answering provider, for the event.
    pub provider: Option<String>,
    /// Cache outcome, for the event.
    pub cache: Option<&'static str>,
}

/// `chat_EXAI-WS`, `Chat` and `chat` all name `chat`.
pub fn normalise(name: &str) -> String {
    let mut lower = name.trim().to_ascii_lowercase();
    for suffix in NAME_SUFFIXES {
        if let Some(stripped) = lower.strip_suffix(suffix) {
            lower = stripped.to_owned();
            break;
        }
    }
    lower
}

/// Validates a call: the tool exists and its arguments are well-formed.
pub fn prepare(name: &str, arguments: &Map<String, Value>) -> Result<Tool, GatewayError> {
    match normalise(name).as_str() {
        "chat" => chat_args(arguments).map(Tool::Chat),
        "listmodels" | "list_models" => Ok(Tool::ListModels),
        "version" => Ok(Tool::Version),
        "status" => Ok(Tool::Status),
        _ => Err(GatewayError::ToolNotFound(
            super::protocol::truncate(name, super::protocol::MAX_LOGGED_NAME).to_owned(),
        )),
    }
}

/// The `tools` of `list_tools_res`.
pub fn list() -> Value {
    json!([
        {
            "name": "chat",
            "description": "Chat with a model: general questions, brainstorming, second opinions. \
                            Multi-turn with continuation_id.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "prompt": { "type": "string", "description": "Your message" },
                    "system_prompt": { "type": "string", "description": "Optional system message" },
                    "model": { "type": "string", "description": "Model name or alias; 'auto' picks the default" },
                    "temperature": { "type": "number", "minimum": 0, "maximum": 1 },
                    "max_tokens": { "type": "integer", "minimum": 1 },
                    "thinking_mode": { "type": "string", "enum": ["minimal", "low", "medium", "high", "max"] },
                    "stream": { "type": "boolean", "description": "Stream the answer as stream_chunk frames" },
                    "continuation_id": { "type": "string", "description": "Continue an earlier conversation" }
                },
                "required": ["prompt"]
            }
        },
        {
            "name": "listmodels",
            "description": "Models by provider, with status and context windows.",
            "inputSchema": { "type": "object", "properties": {} }
        },
        {
            "name": "version",
            "description": "exai version and protocol.",
            "inputSchema": { "type": "object", "properties": {} }
        },
        {
            "name": "status",
            "description": "Providers, breakers, cache and metrics pipeline, in short.",
            "inputSchema": { "type": "object", "properties": {} }
        }
    ])
}

/// Validates `chat`'s arguments, naming the first bad one. Unknown arguments are ignored
/// (older clients send extras such as `files`).
fn chat_args(args: &Map<String, Value>) -> Result<ChatArgs, GatewayError> {
    let get = |name: &str| args.get(name).filter(|v| !v.is_null());
    let string = |name: &str| -> Result<Option<String>, GatewayError> {
        match get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(GatewayError::validation(name, "must be a string")),
        }
    };
    let prompt = match string("prompt")? {
        Some(p) if !p.trim().is_empty() => p,
        Some(_) => return Err(GatewayError::validation("prompt", "must not be empty")),
        None => return Err(GatewayError::validation("prompt", "is required")),
    };
    let model = match string("model")? {
        Some(m) if m.trim().is_empty() => {
            return Err(GatewayError::validation("model", "must not be empty"));
        }
        Some(m) => m.trim().to_owned(),
        None => "auto".to_owned(),
    };
    let temperature = match get("temperature") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Some(t),
            Some(_) => {
                return Err(GatewayError::validation(
                    "temperature",
                    "must be between 0 and 1",
                ));
            }
            None => return Err(GatewayError::validation("temperature", "must be a number")),
        },
    };
    let max_tokens = match get("max_tokens") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TOKENS_LIMIT).contains(&n) => Some(n),
            _ => {
                return Err(GatewayError::validation(
                    "max_tokens",
                    format!("must be an integer from 1 to {MAX_TOKENS_LIMIT}"),
                ));
            }
        },
    };
    let thinking_mode = match string("thinking_mode")? {
        None => None,
        Some(m) => Some(ThinkingMode::parse(&m).ok_or_else(|| {
            GatewayError::validation(
                "thinking_mode",
                "must be one of minimal, low, medium, high, max",
            )
        })?),
    };
    let stream = match get("stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(GatewayError::validation("stream", "must be a boolean")),
    };
    let continuation_id = match string("continuation_id")? {
        None => None,
        Some(id)
            if !id.is_empty()
                && id.len() <= CONTINUATION_ID_MAX
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
                }) =>
        {
            Some(id)
        }
        Some(_) => {
            return Err(GatewayError::validation(
                "continuation_id",
                format!("must be 1-{CONTINUATION_ID_MAX} characters of A-Z a-z 0-9 _ - . :"),
            ));
        }
    };
    Ok(ChatArgs {
        prompt,
        system_prompt: string("system_prompt")?,
        model,
        temperature,
        max_tokens,
        thinking_mode,
        stream,
        continuation_id,
    })
}

/// Runs a validated tool. `emit` sends a frame to the client (stream chunks).
pub async fn run(
    tool: Tool,
    state: &SurfaceState,
    request_id: &str,
    emit: &dyn Fn(String),
) -> Result<ToolOutput, GatewayError> {
    match tool {
        Tool::Chat(args) => chat(args, state, request_id, emit).await,
        Tool::ListModels => list_models(state).await,
        Tool::Version => Ok(ToolOutput {
            text: json!({
                "name": "exai",
                "version": env!("CARGO_PKG_VERSION"),
                "protocol": PROTOCOL,
                "tools": ["chat", "listmodels", "version", "status"],
            })
            .to_string(),
            ..ToolOutput::default()
        }),
        Tool::Status => Ok(status(state)),
    }
}

/// `chat`: one turn, streamed or not, continuing a thread when asked.
async fn chat(
    args: ChatArgs,
    state: &SurfaceState,
    request_id: &str,
    emit: &dyn Fn(String),
) -> Result<ToolOutput, GatewayError> {
    let started = Instant::now();
    let mut messages = Vec::new();
    if let Some(system) = &args.system_prompt {
        messages.push(json!({ "role": "system", "content": system }));
    }
    if let Some(thread) = &args.continuation_id {
        messages.extend(state.conversations.history(thread));
    }
    messages.push(json!({ "role": "user", "content": args.prompt }));
    let mut body = json!({ "model": args.model, "messages": messages });
    if let Some(t) = args.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = args.max_tokens {
        body["max_tokens"] = json!(n);
    }
    // Only models known to think get a reasoning effort; others may reject the field.
    if let Some(mode) = args.thinking_mode
        && catalog::find(&args.model).is_some_and(|m| m.capabilities.thinking)
    {
        body["reasoning_effort"] = json!(mode.reasoning_effort());
    }
    // A continuation depends on its thread, which the cache key cannot see.
    let bypass = args.continuation_id.is_some();

    let (text, model, provider, cache, cache_age_ms) = if args.stream {
        let mut answer = state.chat.stream(body, bypass).await?;
        let mut text = String::new();
        while let Some(chunk) = answer.chunks.next().await {
            let chunk = chunk?;
            if let Some(delta) = delta_of(&chunk).filter(|d| !d.is_empty()) {
                emit(stream_chunk(request_id, &delta));
                text.push_str(&delta);
            }
        }
        emit(stream_complete(request_id));
        (
            text,
            answer.model,
            answer.provider,
            answer.cache,
            answer.cache_age_ms,
        )
    } else {
        let answer = state.chat.complete(body, bypass).await?;
        let text = content_of(&answer.body).ok_or_else(|| {
            GatewayError::ToolFailed("the model's answer has no text content".to_owned())
        })?;
        (
            text,
            answer.model,
            answer.provider,
            answer.cache,
            answer.cache_age_ms,
        )
    };

    let thread = args
        .continuation_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    state.conversations.append(&thread, &args.prompt, &text);
    let provider = provider.map(|p| p.to_string());
    Ok(ToolOutput {
        metadata: json!({
            "model": model,
            "provider": provider,
            "cache": cache.as_str(),
            "cache_age_ms": cache_age_ms,
            "continuation_id": thread,
            "latency_ms": started.elapsed().as_millis() as u64,
        }),
        text,
        model: Some(model),
        provider,
        cache: Some(cache.as_str()),
    })
}

/// `listmodels`: models grouped by provider, with breaker status and context windows.
async fn list_models(state: &SurfaceState) -> Result<ToolOutput, GatewayError> {
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
    Ok(ToolOutput {
        text: json!({ "total": total, "providers": providers }).to_string(),
        ..ToolOutput::default()
    })
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
    let text = json!({
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
    })
    .to_string();
    ToolOutput {
        text,
        ..ToolOutput::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(normalise("chat_EXAI-WS"), "chat");
        assert_eq!(normalise("ListModels_EXAI-WS"), "listmodels");
        assert_eq!(normalise(" version "), "version");
        assert!(matches!(
            prepare("nope", &Map::new()),
            Err(GatewayError::ToolNotFound(_))
        ));
    }

    #[test]
    fn chat_arguments_are_validated_by_name() {
        let bad = |v: Value| match prepare("chat", &args(v)) {
            Err(GatewayError::Validation { param, .. }) => param,
            other => format!("{other:?}"),
        };
        assert_eq!(bad(json!({})), "prompt");
        assert_eq!(bad(json!({"prompt": 1})), "prompt");
        assert_eq!(
            bad(json!({"prompt": "hi", "temperature": 1.5})),
            "temperature"
        );
        assert_eq!(
            bad(json!({"prompt": "hi", "temperature": "hot"})),
            "temperature"
        );
        assert_eq!(bad(json!({"prompt": "hi", "max_tokens": 0})), "max_tokens");
        assert_eq!(
            bad(json!({"prompt": "hi", "max_tokens": 1.5})),
            "max_tokens"
        );
        assert_eq!(
            bad(json!({"prompt": "hi", "thinking_mode": "huge"})),
            "thinking_mode"
        );
        assert_eq!(bad(json!({"prompt": "hi", "stream": "yes"})), "stream");
        assert_eq!(
            bad(json!({"prompt": "hi", "continuation_id": "a b"})),
            "continuation_id"
        );
        assert_eq!(bad(json!({"prompt": "hi", "model": ""})), "model");
        assert_eq!(
            bad(json!({"prompt": "hi", "system_prompt": []})),
            "system_prompt"
        );
        let ok = prepare(
            "chat_EXAI-WS",
            &args(json!({"prompt": "hi", "temperature": 0.5, "thinking_mode": "max", "stream": true, "files": []})),
        )
        .unwrap();
        assert!(matches!(ok, Tool::Chat(ChatArgs { stream: true, .. })));
    }
}
