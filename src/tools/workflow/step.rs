//! A workflow step and the final step's materials: the arguments of one step, its schema,
//! what the thread collected, the work rendered for an expert, and one model call.

use serde_json::{Map, Value, json};

use super::specs::Spec;
use crate::error::GatewayError;
use crate::files::Gathered;
use crate::service::content_of;
use crate::tools::args::Args;
use crate::tools::chat::{ThinkingMode, continuation_id, gather, image_parts, user_content};
use crate::tools::tool::ToolContext;

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
    pub(super) fn record(&self, spec: &Spec, args: &Map<String, Value>) -> Value {
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
