//! `chat`: one turn with a model, streamed or not, continuing a thread by `continuation_id`,
//! with `files` (their text, read under the file roots) and `images` (paths under the roots or
//! data URLs, sent as OpenAI `image_url` content parts).
//!
//! It goes through the shared chat path ([`crate::service::ChatService`]), the same one
//! `/v1/chat/completions` uses. The helpers that read files and images are shared with the
//! workflow tools.

use std::time::Instant;

use exai_actors::registry::catalog;
use futures_util::StreamExt as _;
use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use super::tool::{Tool, ToolContext, ToolOutput};
use crate::error::GatewayError;
use crate::files::{Cancellation, FileRoots, Gathered};
use crate::service::{content_of, delta_of};

/// Largest `max_tokens` accepted.
pub const MAX_TOKENS_LIMIT: u64 = 1_000_000;
/// Longest `continuation_id`.
pub const CONTINUATION_ID_MAX: usize = 128;
/// Images one call may carry.
pub const MAX_IMAGES: usize = 10;

/// The `chat` tool.
pub struct Chat;

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
    /// The accepted spellings.
    pub const NAMES: &'static [&'static str] = &["minimal", "low", "medium", "high", "max"];

    /// Parses a `thinking_mode` value.
    pub fn parse(s: &str) -> Option<Self> {
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
    pub fn reasoning_effort(self) -> &'static str {
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
    /// Files whose text goes with the prompt.
    pub files: Vec<String>,
    /// Images: paths under the roots or data URLs.
    pub images: Vec<String>,
}

impl Tool for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn description(&self) -> &'static str {
        "Chat with a model: general questions, brainstorming, second opinions. Multi-turn \
         with continuation_id; files and images are read under EXAI_FILE_ROOTS."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "prompt": { "type": "string", "description": "Your message" },
                "system_prompt": { "type": "string", "description": "Optional system message" },
                "model": { "type": "string", "description": "Model name or alias; 'auto' picks the default" },
                "temperature": { "type": "number", "minimum": 0, "maximum": 1 },
                "max_tokens": { "type": "integer", "minimum": 1 },
                "thinking_mode": { "type": "string", "enum": ThinkingMode::NAMES },
                "stream": { "type": "boolean", "description": "Stream the answer as stream_chunk frames" },
                "continuation_id": { "type": "string", "description": "Continue an earlier conversation" },
                "files": { "type": "array", "items": { "type": "string" },
                           "description": "Files or directories (under EXAI_FILE_ROOTS) whose text goes with the prompt" },
                "images": { "type": "array", "items": { "type": "string" }, "maxItems": MAX_IMAGES,
                            "description": "Image paths (under EXAI_FILE_ROOTS) or data: URLs" }
            },
            "required": ["prompt"]
        })
    }

    fn validate(&self, args: &Map<String, Value>) -> Result<(), GatewayError> {
        chat_args(args).map(|_| ())
    }

    fn call<'a>(
        &'a self,
        ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>> {
        Box::pin(async move { chat(chat_args(&args)?, &ctx).await })
    }
}

/// A `continuation_id` argument, checked.
pub fn continuation_id(args: &Map<String, Value>) -> Result<Option<String>, GatewayError> {
    match args.get("continuation_id").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::String(id))
            if !id.is_empty()
                && id.len() <= CONTINUATION_ID_MAX
                && id.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
                }) =>
        {
            Ok(Some(id.clone()))
        }
        Some(_) => Err(GatewayError::validation(
            "continuation_id",
            format!("must be 1-{CONTINUATION_ID_MAX} characters of A-Z a-z 0-9 _ - . :"),
        )),
    }
}
/// Validates `chat`'s arguments, naming the first bad one. Unknown arguments are ignored
/// (older clients send extras).
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
    let continuation_id = continuation_id(args)?;
    let list = |name: &str| -> Result<Vec<String>, GatewayError> {
        match get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| GatewayError::validation(name, "must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(GatewayError::validation(name, "must be a list of strings")),
        }
    };
    let files = list("files")?;
    let images = list("images")?;
    if images.len() > MAX_IMAGES {
        return Err(GatewayError::validation(
            "images",
            format!("at most {MAX_IMAGES} images per call"),
        ));
    }
    Ok(ChatArgs {
        prompt,
        system_prompt: string("system_prompt")?,
        model,
        temperature,
        max_tokens,
        thinking_mode,
        stream,
        continuation_id,
        files,
        images,
    })
}

/// `chat`: one turn, streamed or not, continuing a thread when asked.
async fn chat(args: ChatArgs, ctx: &ToolContext<'_>) -> Result<ToolOutput, GatewayError> {
    let state = ctx.services;
    let started = Instant::now();
    let budget = state.files.max_bytes();
    let gathered = gather(ctx, "files", &args.files, budget).await?;
    let left = budget.saturating_sub(gathered.bytes);
    let (images, _) = image_parts(ctx, "images", &args.images, left).await?;
    let text = if gathered.files.is_empty() && gathered.notes.is_empty() {
        args.prompt.clone()
    } else {
        format!("{}\n\n{}", args.prompt, gathered.render())
    };
    let mut messages = Vec::new();
    if let Some(system) = &args.system_prompt {
        messages.push(json!({ "role": "system", "content": system }));
    }
    if let Some(thread) = &args.continuation_id {
        messages.extend(state.conversations.history(thread));
    }
    messages.push(json!({ "role": "user", "content": user_content(text, images) }));
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
                ctx.progress.chunk(&delta);
                text.push_str(&delta);
            }
        }
        ctx.progress.complete();
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
        .unwrap_or_else(super::conversation::ConversationStore::new_id);
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

/// A user message's `content`: the text alone, or text and `image_url` parts.
pub fn user_content(text: String, images: Vec<Value>) -> Value {
    if images.is_empty() {
        return Value::String(text);
    }
    let mut parts = vec![json!({ "type": "text", "text": text })];
    parts.extend(images);
    Value::Array(parts)
}

/// Reads the text of `paths` (argument `argument`) on a blocking thread, within `budget`.
pub async fn gather(
    ctx: &ToolContext<'_>,
    argument: &'static str,
    paths: &[String],
    budget: usize,
) -> Result<Gathered, GatewayError> {
    if paths.is_empty() {
        return Ok(Gathered::default());
    }
    let roots: FileRoots = ctx.services.files.clone();
    let paths = paths.to_vec();
    let cancel: Cancellation = ctx.cancel.clone();
    tokio::task::spawn_blocking(move || roots.gather(argument, &paths, budget, &cancel))
        .await
        .map_err(|e| GatewayError::Internal(format!("file reader failed: {e}")))?
}

/// `image_url` content parts for `images` (argument `argument`): data URLs as given, paths
/// read under the roots within `budget`. Returns the parts and the bytes read.
pub async fn image_parts(
    ctx: &ToolContext<'_>,
    argument: &'static str,
    images: &[String],
    budget: usize,
) -> Result<(Vec<Value>, usize), GatewayError> {
    let mut parts = Vec::with_capacity(images.len());
    let mut used = 0usize;
    for image in images {
        let url = if image.starts_with("data:") {
            if !image.starts_with("data:image/") || !image.contains(";base64,") {
                return Err(GatewayError::validation(
                    argument,
                    "a data URL must be data:image/<type>;base64,<data>",
                ));
            }
            image.clone()
        } else {
            let roots = ctx.services.files.clone();
            let raw = image.clone();
            let left = budget.saturating_sub(used);
            let (url, n) =
                tokio::task::spawn_blocking(move || roots.image_data_url(argument, &raw, left))
                    .await
                    .map_err(|e| GatewayError::Internal(format!("file reader failed: {e}")))??;
            used += n;
            url
        };
        parts.push(json!({ "type": "image_url", "image_url": { "url": url } }));
    }
    Ok((parts, used))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn chat_arguments_are_validated_by_name() {
        let bad = |v: Value| match chat_args(&args(v)) {
            Err(GatewayError::Validation { param, .. }) => param,
            other => format!("{other:?}"),
        };
        assert_eq!(bad(json!({})), "prompt");
        assert_eq!(bad(json!({"prompt": 1})), "prompt");
        assert_eq!(
            bad(json!({"prompt": "hi", "temperature": 1.5})),
            "temperature"
        );
        assert_eq!(bad(json!({"prompt": "hi", "max_tokens": 0})), "max_tokens");
        assert_eq!(
            bad(json!({"prompt": "hi", "thinking_mode": "huge"})),
            "thinking_mode"
        );
        assert_eq!(
            bad(json!({"prompt": "hi", "continuation_id": "a b"})),
            "continuation_id"
        );
        assert_eq!(bad(json!({"prompt": "hi", "files": "a.txt"})), "files");
        assert_eq!(bad(json!({"prompt": "hi", "images": [1]})), "images");
        let ok = chat_args(&args(
            json!({"prompt": "hi", "stream": true, "files": ["a"]}),
        ))
        .unwrap();
        assert!(ok.stream);
        assert_eq!(ok.files, vec!["a".to_owned()]);
    }
}
