//! `consensus`'s final step: every model in `models` is asked concurrently, each told its
//! stance (`for`, `against`, `neutral`, or its own `stance_prompt`), with the proposal, the
//! work so far and the relevant files; then one synthesis call weighs the answers. The result
//! carries every answer (or its error) and the synthesis.

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::tool::{ToolContext, ToolOutput};
use super::workflow::specs::Spec;
use super::workflow::step::{Collected, StepArgs, ask, materials, render_work, request};
use crate::error::GatewayError;

/// The synthesiser's role.
const SYNTHESIS_PROMPT: &str = "You moderate a panel of consultants who evaluated the same \
    proposal from assigned stances. Weigh their arguments on the evidence, not on how \
    confidently they are stated. Say where they agree, where they disagree and why, which \
    concerns are decisive, and give a final recommendation with the conditions under which \
    it holds.";

/// The instructions that go with a stance.
fn stance_instructions(stance: &str) -> &'static str {
    match stance {
        "for" => {
            "Your stance: FOR. Make the strongest honest case for the proposal: its benefits \
             and how to realise them. Do not invent merits; if it is fundamentally unsound, \
             say so plainly despite your stance."
        }
        "against" => {
            "Your stance: AGAINST. Examine the proposal critically: risks, costs, hidden \
             complexity and better alternatives. Do not invent problems; if it is clearly \
             sound, acknowledge that despite your stance."
        }
        _ => {
            "Your stance: NEUTRAL. Weigh benefits and drawbacks evenly and let the evidence \
             decide."
        }
    }
}

/// One panel member.
struct Member {
    /// Model or alias.
    model: String,
    /// `for`, `against` or `neutral`.
    stance: String,
    /// Replaces the stance's instructions.
    stance_prompt: Option<String>,
}

fn members(collected: &Collected) -> Result<Vec<Member>, GatewayError> {
    let Some(list) = collected.extras.get("models").and_then(Value::as_array) else {
        return Err(GatewayError::validation(
            "models",
            "is required (on the final step or an earlier one)",
        ));
    };
    if list.is_empty() {
        return Err(GatewayError::validation(
            "models",
            "must name at least one model",
        ));
    }
    let mut out: Vec<Member> = Vec::with_capacity(list.len());
    for item in list {
        let model = item["model"].as_str().unwrap_or_default().trim().to_owned();
        let stance = item["stance"].as_str().unwrap_or("neutral").to_owned();
        if model.is_empty() {
            return Err(GatewayError::validation(
                "models",
                "every entry needs a model",
            ));
        }
        if out.iter().any(|m| m.model == model && m.stance == stance) {
            return Err(GatewayError::validation(
                "models",
                format!("{model} is listed twice with stance {stance}"),
            ));
        }
        out.push(Member {
            model,
            stance,
            stance_prompt: item["stance_prompt"].as_str().map(str::to_owned),
        });
    }
    Ok(out)
}

/// Asks the panel, then the synthesiser.
pub async fn finish(
    ctx: &ToolContext<'_>,
    spec: &Spec,
    step: &StepArgs,
    collected: &Collected,
) -> Result<ToolOutput, GatewayError> {
    let panel = members(collected)?;
    let budget = ctx.services.files.max_bytes();
    let (gathered, images) = materials(ctx, collected, budget).await?;
    let proposal = collected
        .steps
        .first()
        .and_then(|s| s["step"].as_str())
        .unwrap_or(&step.step)
        .to_owned();
    let mut shared = format!("# Proposal\n{proposal}\n\n");
    shared.push_str(&render_work(spec, collected, &["models"]));
    if !gathered.files.is_empty() || !gathered.notes.is_empty() {
        shared.push_str("\n## Relevant files\n");
        shared.push_str(&gathered.render());
    }
    shared.push_str(&format!("\n## Your task\n{}\n", spec.task));

    let calls = panel.iter().map(|member| {
        let stance = member
            .stance_prompt
            .clone()
            .unwrap_or_else(|| stance_instructions(&member.stance).to_owned());
        let system = format!("{}\n\n{stance}", spec.system_prompt);
        let body = request(&member.model, &system, shared.clone(), images.clone(), step);
        async move { ask(ctx, body).await }
    });
    let answers = join_all(calls).await;

    let mut responses = Vec::with_capacity(panel.len());
    let mut transcript = format!("# Proposal\n{proposal}\n");
    let mut answered = 0usize;
    for (member, answer) in panel.iter().zip(&answers) {
        match answer {
            Ok(a) => {
                answered += 1;
                transcript.push_str(&format!(
                    "\n## {} (stance: {})\n{}\n",
                    member.model, member.stance, a.content
                ));
                responses.push(json!({
                    "model": member.model, "stance": member.stance, "status": "success",
                    "resolved_model": a.model, "provider": a.provider, "content": a.content,
                }));
            }
            Err(e) => responses.push(json!({
                "model": member.model, "stance": member.stance, "status": "error",
                "error": e.protocol_json(),
            })),
        }
    }
    if answered == 0 {
        return Err(GatewayError::ToolFailed(format!(
            "no model of the consensus panel answered: {}",
            responses
                .iter()
                .map(|r| format!("{}: {}", r["model"], r["error"]["message"]))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    transcript.push_str("\n## Your task\nSynthesise the panel's views into a recommendation.\n");
    let synthesis = ask(
        ctx,
        request(&step.model, SYNTHESIS_PROMPT, transcript, Vec::new(), step),
    )
    .await?;
    ctx.services.conversations.append(
        &collected.thread,
        &format!("[consensus] {proposal}"),
        &synthesis.content,
    );
    let body = json!({
        "status": spec.completion_status,
        "tool": spec.name,
        "step_number": step.step_number,
        "total_steps": step.total_steps,
        "next_step_required": false,
        "continuation_id": collected.thread,
        "models_consulted": panel.len(),
        "models_answered": answered,
        "responses": responses,
        "synthesis": {
            "model": synthesis.model,
            "provider": synthesis.provider,
            "content": synthesis.content,
        },
        "files_read": gathered.files.iter().map(|f| f.path.display().to_string()).collect::<Vec<_>>(),
        "notes": gathered.notes,
    });
    Ok(ToolOutput {
        metadata: json!({ "continuation_id": collected.thread, "status": spec.completion_status }),
        model: Some(synthesis.model.clone()),
        provider: synthesis.provider.clone(),
        cache: Some(synthesis.cache),
        ..ToolOutput::json(&body)
    })
}
