//! The workflow tools' shared engine: client-driven steps, recorded in the conversation thread
//! of their `continuation_id`, and one expert call at the end.
//!
//! - While `next_step_required` is true, a step is recorded and answered at once with
//!   `pause_for_<tool>`: the step number, what to investigate next (the tool's own guidance)
//!   and the `continuation_id`. No model is called.
//! - On the final step, with `use_assistant_model` true and a confidence short of `certain`,
//!   the tool calls the expert model once: the tool's own system prompt, then every step's
//!   findings, issues and hypotheses in order, the tool's parameters, and the text of every
//!   `relevant_files` entry (read under the file roots, capped per call).
//! - Otherwise the final step returns the consolidated findings without a model call.
//!
//! The tools differ only in their [`Spec`] (in [`specs`]): name, role, system prompt,
//! guidance, completion status and tool-specific arguments. `consensus` and `precommit` add
//! their own final step ([`crate::tools::consensus`], [`crate::tools::precommit`]).

pub mod specs;
pub mod step;

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use super::conversation::ConversationStore;
use super::tool::{Tool, ToolContext, ToolOutput};
use crate::error::GatewayError;
use specs::Spec;
use step::{Collected, StepArgs, ask, materials, render_work, request, schema};

/// How a workflow tool ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// One expert call.
    Expert,
    /// Every listed model, each with its stance, then a synthesis.
    Consensus,
    /// `git diff` in `path`, then one expert call.
    Precommit,
}

/// One workflow tool.
pub struct Workflow {
    /// What makes it this tool.
    pub spec: &'static Spec,
    /// How it ends.
    pub finish: Finish,
}

/// Every workflow tool, in `list_tools` order.
pub fn tools() -> Vec<Arc<dyn Tool>> {
    specs::ALL
        .iter()
        .map(|spec| {
            let finish = match spec.name {
                "consensus" => Finish::Consensus,
                "precommit" => Finish::Precommit,
                _ => Finish::Expert,
            };
            Arc::new(Workflow { spec, finish }) as Arc<dyn Tool>
        })
        .collect()
}

impl Tool for Workflow {
    fn name(&self) -> &'static str {
        self.spec.name
    }

    fn description(&self) -> &'static str {
        self.spec.description
    }

    fn input_schema(&self) -> Value {
        schema(self.spec)
    }

    fn validate(&self, args: &Map<String, Value>) -> Result<(), GatewayError> {
        crate::tools::args::validate(&self.input_schema(), args)?;
        StepArgs::parse(args).map(|_| ())
    }

    fn call<'a>(
        &'a self,
        ctx: ToolContext<'a>,
        args: Map<String, Value>,
    ) -> LocalBoxFuture<'a, Result<ToolOutput, GatewayError>> {
        Box::pin(run(self, ctx, args))
    }
}

async fn run(
    tool: &Workflow,
    ctx: ToolContext<'_>,
    args: Map<String, Value>,
) -> Result<ToolOutput, GatewayError> {
    let spec = tool.spec;
    let step = StepArgs::parse(&args)?;
    // Every named path is checked on every step, before anything is recorded or read.
    let roots = ctx.services.files.clone();
    let named = [
        ("files_checked", step.files_checked.clone()),
        ("relevant_files", step.relevant_files.clone()),
        (
            "images",
            step.images
                .iter()
                .filter(|i| !i.starts_with("data:"))
                .cloned()
                .collect(),
        ),
    ];
    tokio::task::spawn_blocking(move || {
        named
            .iter()
            .try_for_each(|(argument, paths)| roots.check_all(argument, paths))
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("path check failed: {e}")))??;

    let store = &ctx.services.conversations;
    let thread = step
        .continuation_id
        .clone()
        .unwrap_or_else(ConversationStore::new_id);
    if let Some(from) = step.backtrack_from_step {
        store.backtrack(&thread, from);
    }
    store.record_step(
        &thread,
        spec.name,
        step.step_number,
        step.record(spec, &args),
    );
    let sticky: Map<String, Value> = spec
        .sticky
        .iter()
        .filter_map(|f| {
            args.get(*f)
                .filter(|v| !v.is_null())
                .map(|v| ((*f).to_owned(), v.clone()))
        })
        .collect();
    let collected = store.with(&thread, |t| {
        t.extras.extend(sticky);
        Collected {
            thread: thread.clone(),
            steps: t.steps.clone(),
            extras: t.extras.clone(),
            dropped: t.dropped_steps,
        }
    });

    if step.next_step_required {
        return Ok(pause(spec, &step, &collected));
    }
    let certain = step.confidence.as_deref() == Some("certain");
    if !step.use_assistant_model || certain {
        let reason = if certain {
            "confidence is certain: no expert validation needed"
        } else {
            "use_assistant_model is false"
        };
        return Ok(consolidated(spec, &step, &collected, reason));
    }
    let output = match tool.finish {
        Finish::Expert => expert(&ctx, spec, &step, &collected, None).await?,
        Finish::Precommit => {
            let changes = crate::tools::precommit::changes(&ctx, &collected.extras).await?;
            expert(&ctx, spec, &step, &collected, Some(changes)).await?
        }
        Finish::Consensus => crate::tools::consensus::finish(&ctx, spec, &step, &collected).await?,
    };
    Ok(output)
}

/// The `pause_for_<tool>` answer: recorded, no model call.
fn pause(spec: &Spec, step: &StepArgs, collected: &Collected) -> ToolOutput {
    let next = step.step_number + 1;
    let body = json!({
        "status": format!("pause_for_{}", spec.name),
        "tool": spec.name,
        "step_number": step.step_number,
        "total_steps": step.total_steps,
        "next_step_required": true,
        "continuation_id": collected.thread,
        "steps_recorded": collected.steps.len(),
        "required_actions": spec.guidance,
        "next_steps": format!(
            "Do the required actions, then call {} again with step_number {next}, your new \
             findings and continuation_id {}. Set next_step_required to false on the final \
             step{}.",
            spec.name,
            collected.thread,
            if spec.name == "consensus" { " (with models)" } else { "" }
        ),
        "progress": {
            "files_checked": count(&collected.steps, "files_checked"),
            "relevant_files": collected.relevant_files().len(),
            "issues_found": collected.issues().len(),
            "confidence": step.confidence,
        },
        "next_call": {
            "tool": spec.name,
            "arguments": {
                "step_number": next,
                "total_steps": step.total_steps.max(next),
                "next_step_required": next < step.total_steps,
                "continuation_id": collected.thread,
            }
        }
    });
    ToolOutput {
        metadata: json!({ "continuation_id": collected.thread, "status": body["status"] }),
        ..ToolOutput::json(&body)
    }
}

/// Distinct entries of a list field across steps.
fn count(steps: &[Value], field: &str) -> usize {
    let mut seen = std::collections::HashSet::new();
    for s in steps {
        for v in s[field].as_array().into_iter().flatten() {
            seen.insert(v.to_string());
        }
    }
    seen.len()
}

/// The final answer without a model call.
fn consolidated(spec: &Spec, step: &StepArgs, collected: &Collected, reason: &str) -> ToolOutput {
    let body = json!({
        "status": spec.completion_status,
        "tool": spec.name,
        "step_number": step.step_number,
        "total_steps": step.total_steps,
        "next_step_required": false,
        "continuation_id": collected.thread,
        "skip_expert_analysis": true,
        "expert_analysis": { "status": "skipped", "reason": reason },
        "consolidated": {
            "steps": collected.steps,
            "issues_found": collected.issues(),
            "relevant_files": collected.relevant_files(),
            "parameters": collected.extras,
            "dropped_steps": collected.dropped,
        },
    });
    ToolOutput {
        metadata: json!({ "continuation_id": collected.thread, "status": spec.completion_status }),
        ..ToolOutput::json(&body)
    }
}

/// The final step's one expert call, and its answer. `extra` is a further prompt section
/// (precommit's changes).
async fn expert(
    ctx: &ToolContext<'_>,
    spec: &Spec,
    step: &StepArgs,
    collected: &Collected,
    extra: Option<String>,
) -> Result<ToolOutput, GatewayError> {
    let budget = ctx.services.files.max_bytes();
    let extra_len = extra.as_ref().map_or(0, String::len);
    let (gathered, images) = materials(ctx, collected, budget.saturating_sub(extra_len)).await?;
    let mut user = render_work(spec, collected, &[]);
    if let Some(extra) = extra {
        user.push('\n');
        user.push_str(&extra);
    }
    if !gathered.files.is_empty() || !gathered.notes.is_empty() {
        user.push_str("\n## Relevant files\n");
        user.push_str(&gathered.render());
    }
    user.push_str(&format!("\n## Your task\n{}\n", spec.task));
    let answer = ask(
        ctx,
        request(&step.model, spec.system_prompt, user, images, step),
    )
    .await?;
    ctx.services.conversations.append(
        &collected.thread,
        &format!("[{}] {}", spec.name, step.step),
        &answer.content,
    );
    let body = json!({
        "status": spec.completion_status,
        "tool": spec.name,
        "step_number": step.step_number,
        "total_steps": step.total_steps,
        "next_step_required": false,
        "continuation_id": collected.thread,
        "steps_recorded": collected.steps.len(),
        "expert_analysis": {
            "status": "analysis_complete",
            "model": answer.model,
            "provider": answer.provider,
            "content": answer.content,
        },
        "files_read": gathered.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
        "notes": gathered.notes,
        "issues_found": collected.issues(),
    });
    Ok(ToolOutput {
        metadata: json!({
            "continuation_id": collected.thread,
            "status": spec.completion_status,
            "model": answer.model,
            "provider": answer.provider,
            "cache": answer.cache,
        }),
        model: Some(answer.model.clone()),
        provider: answer.provider.clone(),
        cache: Some(answer.cache),
        ..ToolOutput::json(&body)
    })
}
