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

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use serde_json::{Map, Value, json};

use super::args::Args;
use super::chat::{ThinkingMode, continuation_id, gather, image_parts, user_content};
use super::conversation::ConversationStore;
use super::{Tool, ToolContext, ToolOutput};
use crate::chat::content_of;
use crate::error::GatewayError;
use crate::files::Gathered;
use specs::Spec;

/// The confidence levels, lowest first.
pub const CONFIDENCE: &[&str] = &[
    "exploring",
    "low",
    "medium",
    "high",
    "very_high",
    "almost_certain",
    "certain",
];
/// Images one step may name.
const MAX_IMAGES: usize = 10;

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

/// The arguments every workflow tool takes.
#[derive(Debug, Clone)]
pub struct StepArgs {
    /// What this step does.
    pub step: String,
    /// 1-based.
    pub step_number: u64,
    /// The current estimate.
    pub total_steps: u64,
    /// More steps follow.
    pub next_step_required: bool,
    /// What this step found.
    pub findings: String,
    /// Files examined.
    pub files_checked: Vec<String>,
    /// Files that matter; their text goes to the expert.
    pub relevant_files: Vec<String>,
    /// Functions, classes, modules that matter.
    pub relevant_context: Vec<String>,
    /// Issues, each `{severity, description}` (or any object).
    pub issues_found: Vec<Value>,
    /// How sure the client is.
    pub confidence: Option<String>,
    /// The current theory.
    pub hypothesis: Option<String>,
    /// Forget this step and later ones first.
    pub backtrack_from_step: Option<u64>,
    /// Call the expert model at the end.
    pub use_assistant_model: bool,
    /// Expert model.
    pub model: String,
    /// The thread.
    pub continuation_id: Option<String>,
    /// Images: paths under the roots or data URLs.
    pub images: Vec<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Reasoning effort.
    pub thinking_mode: Option<ThinkingMode>,
}

impl StepArgs {
    /// Reads schema-checked arguments.
    pub fn parse(args: &Map<String, Value>) -> Result<Self, GatewayError> {
        let a = Args(args);
        let step_number = a.u64("step_number").unwrap_or(1);
        let total_steps = a.u64("total_steps").unwrap_or(step_number).max(step_number);
        let images = a.strings("images");
        if images.len() > MAX_IMAGES {
            return Err(GatewayError::validation(
                "images",
                format!("at most {MAX_IMAGES} images per step"),
            ));
        }
        if let Some(back) = a.u64("backtrack_from_step")
            && back > step_number
        {
            return Err(GatewayError::validation(
                "backtrack_from_step",
                "must not be later than step_number",
            ));
        }
        Ok(Self {
            step: a.required_str("step")?.to_owned(),
            step_number,
            total_steps,
            next_step_required: a.bool_or("next_step_required", false),
            findings: a.str("findings").unwrap_or_default().to_owned(),
            files_checked: a.strings("files_checked"),
            relevant_files: a.strings("relevant_files"),
            relevant_context: a.strings("relevant_context"),
            issues_found: a
                .get("issues_found")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            confidence: a.str("confidence").map(str::to_owned),
            hypothesis: a.str("hypothesis").map(str::to_owned),
            backtrack_from_step: a.u64("backtrack_from_step"),
            use_assistant_model: a.bool_or("use_assistant_model", true),
            model: a
                .str("model")
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .unwrap_or("auto")
                .to_owned(),
            continuation_id: continuation_id(args)?,
            images,
            temperature: a.f64("temperature"),
            thinking_mode: a.str("thinking_mode").and_then(ThinkingMode::parse),
        })
    }

    /// This step's record in the thread.
    fn record(&self, spec: &Spec, args: &Map<String, Value>) -> Value {
        let mut record = json!({
            "step_number": self.step_number,
            "step": self.step,
            "findings": self.findings,
            "files_checked": self.files_checked,
            "relevant_files": self.relevant_files,
            "relevant_context": self.relevant_context,
            "issues_found": self.issues_found,
            "confidence": self.confidence,
            "hypothesis": self.hypothesis,
            "images": self.images,
        });
        for field in spec.per_step {
            if let Some(v) = args.get(*field).filter(|v| !v.is_null()) {
                record[*field] = v.clone();
            }
        }
        record
    }
}

/// The input schema of a workflow tool: the common arguments, then its own.
pub fn schema(spec: &Spec) -> Value {
    let mut properties = json!({
        "step": { "type": "string", "description": spec.step_hint },
        "step_number": { "type": "integer", "minimum": 1, "description": "1-based index of this step" },
        "total_steps": { "type": "integer", "minimum": 1, "description": "Current estimate of the number of steps" },
        "next_step_required": { "type": "boolean", "description": "true while more steps follow; false on the final step" },
        "findings": { "type": "string", "description": "What this step found: evidence, not plans" },
        "files_checked": { "type": "array", "items": { "type": "string" }, "description": "Files examined so far (under EXAI_FILE_ROOTS)" },
        "relevant_files": { "type": "array", "items": { "type": "string" }, "description": "Files that matter; their text goes to the expert on the final step" },
        "relevant_context": { "type": "array", "items": { "type": "string" }, "description": "Functions, classes or modules that matter" },
        "issues_found": { "type": "array", "items": { "type": "object" }, "description": "Issues as {severity, description}" },
        "confidence": { "type": "string", "enum": CONFIDENCE, "description": "certain skips the expert call" },
        "hypothesis": { "type": "string", "description": "The current theory" },
        "backtrack_from_step": { "type": "integer", "minimum": 1, "description": "Discard this step and later ones before recording this one" },
        "use_assistant_model": { "type": "boolean", "default": true, "description": "false: no model call; the final step returns the consolidated findings" },
        "model": { "type": "string", "description": "Expert model or alias; 'auto' picks the default" },
        "continuation_id": { "type": "string", "description": "The thread of earlier steps (returned by step 1)" },
        "images": { "type": "array", "items": { "type": "string" }, "maxItems": MAX_IMAGES, "description": "Image paths (under EXAI_FILE_ROOTS) or data: URLs" },
        "temperature": { "type": "number", "minimum": 0, "maximum": 1 },
        "thinking_mode": { "type": "string", "enum": ThinkingMode::NAMES }
    });
    if let (Some(all), Value::Object(own)) = (properties.as_object_mut(), (spec.fields)()) {
        all.extend(own);
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": ["step", "step_number", "total_steps", "next_step_required", "findings"],
    })
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
        super::args::validate(&self.input_schema(), args)?;
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

/// Everything the final step has: the steps in order and the sticky arguments.
pub struct Collected {
    /// The thread.
    pub thread: String,
    /// Step records, in step order.
    pub steps: Vec<Value>,
    /// Tool-specific arguments from every step, later ones winning.
    pub extras: Map<String, Value>,
    /// Steps the thread had to drop.
    pub dropped: usize,
}

impl Collected {
    /// Every `relevant_files` entry across the steps, first mention first.
    pub fn relevant_files(&self) -> Vec<String> {
        self.distinct_strings("relevant_files")
    }

    /// Every image across the steps, first mention first.
    pub fn images(&self) -> Vec<String> {
        self.distinct_strings("images")
    }

    /// The strings of the array field `field` across the steps, first mention first.
    fn distinct_strings(&self, field: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for step in &self.steps {
            for f in step[field].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str()
                    && !out.iter().any(|o| o == f)
                {
                    out.push(f.to_owned());
                }
            }
        }
        out
    }

    /// Every issue across the steps.
    pub fn issues(&self) -> Vec<Value> {
        self.steps
            .iter()
            .flat_map(|s| s["issues_found"].as_array().cloned().unwrap_or_default())
            .collect()
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
            let changes = super::precommit::changes(&ctx, &collected.extras).await?;
            expert(&ctx, spec, &step, &collected, Some(changes)).await?
        }
        Finish::Consensus => super::consensus::finish(&ctx, spec, &step, &collected).await?,
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

/// The work so far, for an expert: parameters, then every step in order.
pub fn render_work(spec: &Spec, collected: &Collected, skip: &[&str]) -> String {
    let mut out = format!("# {} — work so far\n", spec.name);
    let params: Vec<String> = collected
        .extras
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| {
            format!(
                "- {k}: {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            )
        })
        .collect();
    if !params.is_empty() {
        out.push_str("\n## Parameters\n");
        out.push_str(&params.join("\n"));
        out.push('\n');
    }
    if collected.dropped > 0 {
        out.push_str(&format!(
            "\nNOTE: the {} oldest steps were dropped to keep the thread within its size limit.\n",
            collected.dropped
        ));
    }
    for s in &collected.steps {
        out.push_str(&format!("\n## Step {}", s["step_number"]));
        for (field, label) in [
            ("revises_step_number", "revises step"),
            ("branch_from_step", "branches from step"),
            ("branch_id", "branch"),
        ] {
            if let Some(v) = s.get(field).filter(|v| !v.is_null()) {
                out.push_str(&format!(
                    " ({label} {})",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                ));
            }
        }
        out.push('\n');
        let text = |f: &str| s[f].as_str().filter(|t| !t.is_empty());
        if let Some(t) = text("step") {
            out.push_str(&format!("Step: {t}\n"));
        }
        if let Some(t) = text("findings") {
            out.push_str(&format!("Findings: {t}\n"));
        }
        if let Some(t) = text("hypothesis") {
            out.push_str(&format!("Hypothesis: {t}\n"));
        }
        if let Some(t) = text("confidence") {
            out.push_str(&format!("Confidence: {t}\n"));
        }
        for issue in s["issues_found"].as_array().into_iter().flatten() {
            let severity = issue["severity"].as_str().unwrap_or("unrated");
            let description = issue["description"]
                .as_str()
                .map_or_else(|| issue.to_string(), str::to_owned);
            out.push_str(&format!("Issue [{severity}]: {description}\n"));
        }
        let list = |f: &str| -> Vec<String> {
            s[f].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        for (field, label) in [
            ("relevant_context", "Relevant context"),
            ("files_checked", "Files checked"),
        ] {
            let items = list(field);
            if !items.is_empty() {
                out.push_str(&format!("{label}: {}\n", items.join(", ")));
            }
        }
    }
    out
}

/// The relevant files' text and the images' content parts, within the call's budget.
pub async fn materials(
    ctx: &ToolContext<'_>,
    collected: &Collected,
    budget: usize,
) -> Result<(Gathered, Vec<Value>), GatewayError> {
    let gathered = gather(ctx, "relevant_files", &collected.relevant_files(), budget).await?;
    let left = budget.saturating_sub(gathered.bytes);
    let (images, _) = image_parts(ctx, "images", &collected.images(), left).await?;
    Ok((gathered, images))
}

/// An OpenAI request for one expert call.
pub fn request(
    model: &str,
    system: &str,
    user: String,
    images: Vec<Value>,
    step: &StepArgs,
) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            { "role": "system", "content": system },
            { "role": "user", "content": user_content(user, images) },
        ],
    });
    if let Some(t) = step.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(mode) = step.thinking_mode
        && exai_actors::registry::catalog::find(model).is_some_and(|m| m.capabilities.thinking)
    {
        body["reasoning_effort"] = json!(mode.reasoning_effort());
    }
    body
}

/// One completed model call.
pub struct Answer {
    /// The text.
    pub content: String,
    /// The resolved model.
    pub model: String,
    /// Who answered.
    pub provider: Option<String>,
    /// Cache outcome.
    pub cache: &'static str,
}

/// Calls a model through the shared chat path.
pub async fn ask(ctx: &ToolContext<'_>, body: Value) -> Result<Answer, GatewayError> {
    let answer = ctx.services.chat.complete(body, false).await?;
    let content = content_of(&answer.body).ok_or_else(|| {
        GatewayError::ToolFailed("the model's answer has no text content".to_owned())
    })?;
    Ok(Answer {
        content,
        model: answer.model,
        provider: answer.provider.map(|p| p.to_string()),
        cache: answer.cache.as_str(),
    })
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
