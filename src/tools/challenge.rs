//! `challenge`: no model call. It hands the statement back wrapped in instructions to
//! re-examine it critically instead of agreeing by reflex.

use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use super::args::Args;
use super::tool::{Tool, ToolContext, ToolOutput};
use crate::error::GatewayError;

/// The `challenge` tool.
pub struct Challenge;

/// The instructions that wrap the statement.
fn wrap(statement: &str) -> String {
    format!(
        "Re-examine this before you respond; do not simply agree:\n\n\"{statement}\"\n\n\
         Check it against what you actually know and what the code or evidence shows. If it \
         is wrong, incomplete or misleading, say exactly where and why. If it holds up, say \
         what makes it hold. Keep to the point and state your conclusion plainly."
    )
}

impl Tool for Challenge {
    fn name(&self) -> &'static str {
        "challenge"
    }

    fn description(&self) -> &'static str {
        "Makes you reassess a statement critically instead of agreeing by reflex; no model \
         call."
    }

    fn input_schema(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "prompt": { "type": "string", "description": "The statement to question" }
            },
            "required": ["prompt"]
        })
    }

    fn call<'a>(
        &'a self,
        _ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>> {
        Box::pin(async move {
            let statement = Args(&args).required_str("prompt")?;
            Ok(ToolOutput::json(&json!({
                "status": "challenge_created",
                "original_statement": statement,
                "challenge_prompt": wrap(statement),
                "instructions": "Follow the challenge_prompt: reassess the statement and \
                                 answer with your reasoning, agreeing only where it holds.",
            })))
        })
    }
}
