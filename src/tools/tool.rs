//! What a tool is and what it gets: the [`Tool`] trait, the [`ToolContext`] of a call, its
//! [`ToolOutput`], the [`Progress`] reporter, and the [`Registry`] a surface looks tools up
//! in (by any of the names clients use). Which tools exist is decided in [`crate::tools`].

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::files::Cancellation;
use crate::state::SurfaceState;

/// Protocol name reported by `version`.
pub const PROTOCOL: &str = "exai-ws";
/// Longest client-chosen tool name repeated in errors.
const MAX_NAME_IN_ERRORS: usize = 64;
/// Suffixes some clients append to tool names (`chat_EXAI-WS`), compared lower-cased.
const NAME_SUFFIXES: &[&str] = &[
    "_exai-ws", "-exai-ws", "_exai_ws", "_exaiws", "_exai", "-exai",
];
/// Other names clients use for a tool.
const ALIASES: &[(&str, &str)] = &[("list_models", "listmodels")];

/// What a running tool may tell its caller before it finishes. Surfaces decide what reaches
/// the client (`/ws` sends stream frames only to calls identified by `request_id`).
pub trait Progress {
    /// A piece of the answer, as it is produced.
    fn chunk(&self, text: &str);
    /// The streamed answer is complete.
    fn complete(&self);
}

/// A reporter that drops everything.
pub struct Silent;

impl Progress for Silent {
    fn chunk(&self, _: &str) {}
    fn complete(&self) {}
}

/// What a tool call gets.
pub struct ToolContext<'a> {
    /// The shared services: chat path, conversations, files, recorder, health.
    pub services: &'a SurfaceState,
    /// The registry the call came through (`version` lists its names).
    pub tools: &'a Registry,
    /// The call's id (for logs and upstream correlation).
    pub request_id: &'a str,
    /// Where partial output goes.
    pub progress: &'a dyn Progress,
    /// Set when the call is cancelled.
    pub cancel: Cancellation,
}

/// What a tool produced.
#[derive(Debug, Clone, Default)]
pub struct ToolOutput {
    /// The text output.
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

impl ToolOutput {
    /// A plain text output.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// A JSON document as the text output.
    pub fn json(value: &Value) -> Self {
        Self::text(value.to_string())
    }

    /// The `outputs` list of a reply.
    pub fn outputs(&self) -> Value {
        json!([{ "type": "text", "text": self.text }])
    }
}

/// One tool. See the module docs.
pub trait Tool: Send + Sync {
    /// The canonical name.
    fn name(&self) -> &'static str;
    /// One paragraph for `list_tools`.
    fn description(&self) -> &'static str;
    /// The JSON schema of the arguments (an object schema).
    fn input_schema(&self) -> Value;
    /// Checks the arguments before the call takes a slot. The default checks the schema.
    fn validate(&self, args: &Map<String, Value>) -> Result<(), GatewayError> {
        super::args::validate(&self.input_schema(), args)
    }
    /// Runs the call.
    fn call<'a>(
        &'a self,
        ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>>;
}

/// Every tool, in `list_tools` order.
#[derive(Clone)]
pub struct Registry {
    /// The tools.
    tools: Arc<[Arc<dyn Tool>]>,
    /// `list_tools`' `tools`, built once.
    listing: Arc<Value>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| t.name()))
            .finish()
    }
}

impl Registry {
    /// A registry of `tools`, in `list_tools` order ([`crate::tools::standard`] is exai's set).
    pub fn from_tools(tools: Vec<Arc<dyn Tool>>) -> Self {
        let listing = Value::Array(
            tools
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name(),
                        "description": t.description(),
                        "inputSchema": t.input_schema(),
                    })
                })
                .collect(),
        );
        Self {
            tools: tools.into(),
            listing: Arc::new(listing),
        }
    }

    /// The `tools` of `list_tools_res`: `[{name, description, inputSchema}]`.
    pub fn listing(&self) -> &Value {
        &self.listing
    }

    /// Canonical names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.tools.iter().map(|t| t.name()).collect()
    }

    /// The tool a client-sent name means (`chat_EXAI-WS`, `Chat`, `list_models`, …).
    pub fn find(&self, name: &str) -> Option<Arc<dyn Tool>> {
        let wanted = normalise(name);
        self.tools.iter().find(|t| t.name() == wanted).cloned()
    }

    /// The tool for `name`, with `args` checked.
    pub fn prepare(
        &self,
        name: &str,
        args: &Map<String, Value>,
    ) -> Result<Arc<dyn Tool>, GatewayError> {
        let tool = self.find(name).ok_or_else(|| {
            GatewayError::ToolNotFound(truncate(name, MAX_NAME_IN_ERRORS).to_owned())
        })?;
        tool.validate(args)?;
        Ok(tool)
    }
}

/// `chat_EXAI-WS`, `Chat` and `chat` all name `chat`; aliases map to their tool.
pub fn normalise(name: &str) -> String {
    let mut lower = name.trim().to_ascii_lowercase();
    for suffix in NAME_SUFFIXES {
        if let Some(stripped) = lower.strip_suffix(suffix) {
            lower = stripped.to_owned();
            break;
        }
    }
    match ALIASES.iter().find(|(alias, _)| *alias == lower) {
        Some((_, canonical)) => (*canonical).to_owned(),
        None => lower,
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The schema of a tool without arguments.
pub fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}
