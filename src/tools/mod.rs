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
pub mod tool;
pub mod workflow;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

use crate::error::GatewayError;
pub use tool::{
    PROTOCOL, Progress, Registry, Silent, Tool, ToolContext, ToolOutput, no_arguments, normalise,
    truncate,
};

/// The standard tool set, in `list_tools` order.
pub fn standard() -> Registry {
    let mut tools: Vec<Arc<dyn Tool>> = vec![Arc::new(chat::Chat)];
    tools.extend(workflow::tools());
    tools.push(Arc::new(challenge::Challenge));
    tools.extend(info::tools());
    tools.extend(provider_tools::tools());
    Registry::from_tools(tools)
}

/// The standard tool set, built once for every surface.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(standard);
    &REGISTRY
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

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    #[test]
    fn names_are_normalised_and_every_tool_is_listed() {
        let registry = standard();
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
        let registry = standard();
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
