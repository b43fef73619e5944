//! The tool registry: every tool exai serves, one list and one implementation, independent of
//! the surface that calls it. `/ws` dispatches through it today; the MCP surface reuses it.
//!
//! A tool is a [`Tool`]: a name, a description, a JSON input schema, a check of its arguments
//! (run before a call takes an in-flight slot) and the call itself, which gets a
//! [`ToolContext`] — the shared services, a [`Progress`] reporter and a cancellation flag —
//! never a socket. Cancellation is by dropping the call's future (the surface aborts its
//! task, which drops any upstream request or child process); the flag additionally stops
//! blocking file reads that run on their own thread.
//!
//! - `chat` lives in [`chat`];
//! - the step-driven tools (`analyze`, `debug`, … , `docgen`) and their engine in [`workflow`];
//! - the final steps of `consensus` and `precommit` in [`consensus`] and [`precommit`];
//! - `challenge` in [`challenge`];
//! - `glm_web_search` and `kimi_chat_with_tools` in [`provider_tools`];
//! - `listmodels`, `version`, `status`, `provider_capabilities`, `activity`, `health` in
//!   [`info`];
//! - threads by `continuation_id` in [`conversation`], argument checks in [`args`].

pub mod args;
pub mod challenge;
pub mod chat;
pub mod consensus;
pub mod conversation;
pub mod info;
pub mod precommit;
pub mod provider_tools;
pub mod workflow;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::files::Cancellation;
use crate::surface::SurfaceState;

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
    /// The shared services: chat path, registry, conversations, files, recorder, health.
    pub services: &'a SurfaceState,
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
        args::validate(&self.input_schema(), args)
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

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// The standard tool set.
    pub fn new() -> Self {
        let mut tools: Vec<Arc<dyn Tool>> = vec![Arc::new(chat::Chat)];
        tools.extend(workflow::tools());
        tools.push(Arc::new(challenge::Challenge));
        tools.extend(info::tools());
        tools.extend(provider_tools::tools());
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

/// Runs one tool call on any transport: `work` bounded by `timeout`, with `tick` called
/// every `every` while it runs (when `ticking`). An error from `tick` (the client went away)
/// ends the call with that error.
pub(crate) async fn run_bounded(
    work: LocalBoxFuture<'_, Result<ToolOutput, GatewayError>>,
    timeout: Duration,
    every: Duration,
    ticking: bool,
    mut tick: impl FnMut() -> Result<(), GatewayError>,
) -> Result<ToolOutput, GatewayError> {
    tokio::pin!(work);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            result = &mut work => return result,
            () = &mut deadline => return Err(GatewayError::Timeout(timeout)),
            _ = ticker.tick(), if ticking => tick()?,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_every_tool_is_listed() {
        let registry = Registry::new();
        assert_eq!(normalise("chat_EXAI-WS"), "chat");
        assert_eq!(normalise("ListModels_EXAI-WS"), "listmodels");
        assert_eq!(normalise(" version "), "version");
        assert_eq!(normalise("list_models"), "listmodels");
        assert!(registry.find("codereview_EXAI-WS").is_some());
        assert!(matches!(
            registry.prepare("nope", &Map::new()),
            Err(GatewayError::ToolNotFound(_))
        ));
        let names = registry.names();
        for tool in [
            "chat",
            "analyze",
            "debug",
            "codereview",
            "refactor",
            "secaudit",
            "planner",
            "tracer",
            "testgen",
            "consensus",
            "thinkdeep",
            "docgen",
            "precommit",
            "challenge",
            "listmodels",
            "version",
            "status",
            "provider_capabilities",
            "activity",
            "health",
            "glm_web_search",
            "kimi_chat_with_tools",
        ] {
            assert!(names.contains(&tool), "{tool} missing from {names:?}");
        }
        for entry in registry.listing().as_array().into_iter().flatten() {
            assert_eq!(entry["inputSchema"]["type"], "object", "{entry}");
        }
    }

    #[test]
    fn the_tool_docs_name_every_tool_and_argument() {
        let docs = include_str!("../../docs/tools.md");
        let readme = include_str!("../../README.md");
        let registry = Registry::new();
        for entry in registry.listing().as_array().into_iter().flatten() {
            let name = entry["name"].as_str().unwrap_or_default();
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/tools.md lacks {name}"
            );
            assert!(
                readme
                    .lines()
                    .any(|l| l.starts_with(&format!("| `{name}` |"))),
                "README lacks a line for {name}"
            );
            let props = entry["inputSchema"]["properties"].as_object().cloned();
            for prop in props.unwrap_or_default().keys() {
                assert!(
                    docs.contains(&format!("`{prop}`")),
                    "docs/tools.md lacks {name}.{prop}"
                );
            }
        }
    }
}
