//! The workflow tools, one [`Spec`] each: what the tool is for, its expert's system prompt,
//! the guidance a paused step gets, and its own arguments. The prompts are exai's own; each
//! gives the expert a distinct role.

use serde_json::{Value, json};

/// Models one consensus may ask.
pub const MAX_MODELS: u64 = 8;

/// One workflow tool's definition.
#[derive(Debug)]
pub struct Spec {
    /// The tool name.
    pub name: &'static str,
    /// For `list_tools`.
    pub description: &'static str,
    /// The description of its `step` argument.
    pub step_hint: &'static str,
    /// The expert's system prompt.
    pub system_prompt: &'static str,
    /// The closing instruction of the expert prompt.
    pub task: &'static str,
    /// What a paused step should investigate next.
    pub guidance: &'static [&'static str],
    /// `status` of the final answer.
    pub completion_status: &'static str,
    /// Its own argument schemas (an object of properties).
    pub fields: fn() -> Value,
    /// Own arguments kept across steps (the last value sent wins).
    pub sticky: &'static [&'static str],
    /// Own arguments recorded with the step they came with.
    pub per_step: &'static [&'static str],
}

/// No own arguments.
fn none() -> Value {
    json!({})
}

/// Severity levels for filters.
const SEVERITY: &[&str] = &["critical", "high", "medium", "low", "all"];

/// Every workflow tool, in `list_tools` order.
pub static ALL: &[Spec] = &[
    ANALYZE, DEBUG, CODEREVIEW, REFACTOR, SECAUDIT, PLANNER, TRACER, TESTGEN, CONSENSUS, THINKDEEP,
    DOCGEN, PRECOMMIT,
];

/// `analyze`.
const ANALYZE: Spec = Spec {
    name: "analyze",
    description: "Step-by-step analysis of a codebase or part of it — architecture, performance, \
                  quality — with an expert assessment at the end.",
    step_hint: "What you are analysing in this step and how",
    system_prompt: "You are a principal software architect asked for an assessment of existing \
        code. You receive an engineer's step-by-step notes and the files they found relevant. \
        Judge the design as it is: structure, boundaries between modules, coupling, data flow, \
        scalability limits, operational risks and maintainability. Separate what the evidence \
        shows from what you infer, and say which is which. Prefer a few significant findings \
        over a long list of small ones, rank them by impact, and for each give the concrete \
        next step. Do not rewrite the code; point at the places that matter by file and \
        symbol.",
    task: "Give an overall assessment, then the findings ranked by impact, each with its \
           evidence and a recommended action.",
    guidance: &[
        "Map the main modules, their responsibilities and how data flows between them",
        "Look for coupling, duplication and boundaries that leak",
        "Note performance and scaling limits with the evidence for each",
        "Record the files that matter in relevant_files",
    ],
    completion_status: "analysis_complete",
    fields: || {
        json!({
            "analysis_type": { "type": "string", "enum": ["architecture", "performance", "security", "quality", "general"] },
            "output_format": { "type": "string", "enum": ["summary", "detailed", "actionable"] }
        })
    },
    sticky: &["analysis_type", "output_format"],
    per_step: &[],
};

/// `debug`.
const DEBUG: Spec = Spec {
    name: "debug",
    description: "Root-cause investigation of a bug, step by step, with hypotheses; an expert \
                  validates the diagnosis at the end.",
    step_hint: "What you are checking in this step to narrow the cause down",
    system_prompt: "You are a debugging specialist reviewing an investigation in progress. You \
        receive the investigator's steps, their hypotheses and the relevant source. Your job \
        is the root cause: test each hypothesis against the evidence, reject the ones the code \
        contradicts, and identify the most likely cause with the exact place in the code. If \
        the evidence is not enough, say what single observation would settle it. Propose the \
        smallest fix that removes the cause, not its symptoms, and mention any regression it \
        could introduce.",
    task: "State the most likely root cause with its location and evidence, rank any \
           alternatives, and give the minimal fix.",
    guidance: &[
        "Reproduce the failure or find the exact code path it takes",
        "Test the current hypothesis against the code; discard it if the code contradicts it",
        "Check recent changes, error handling and state shared across calls",
        "Record the files on the failing path in relevant_files",
    ],
    completion_status: "investigation_complete",
    fields: none,
    sticky: &[],
    per_step: &[],
};

/// `codereview`.
const CODEREVIEW: Spec = Spec {
    name: "codereview",
    description: "Systematic code review — correctness, security, performance, maintainability — \
                  with an expert review at the end.",
    step_hint: "What you are reviewing in this step",
    system_prompt: "You are a senior reviewer doing a code review before merge. You receive a \
        reviewer's notes, the issues they found and the code. Check correctness first (logic \
        errors, edge cases, error handling, concurrency), then security, then performance, \
        then readability and maintainability. Confirm or reject each reported issue, add the \
        ones that were missed, and rate each as critical, high, medium or low. Quote the \
        location of every issue and give a concrete fix. Respect the requested review type, \
        focus, standards and severity filter. Acknowledge what is done well in one or two \
        lines at most.",
    task: "List the issues by severity, each with location, explanation and fix, then a short \
           overall verdict.",
    guidance: &[
        "Read the changed or named code paths end to end",
        "Check error handling, edge cases and input validation",
        "Look for security and performance problems appropriate to the review type",
        "Record each issue in issues_found with severity and description",
    ],
    completion_status: "code_review_complete",
    fields: || {
        json!({
            "review_type": { "type": "string", "enum": ["full", "security", "performance", "quick"] },
            "focus_on": { "type": "string", "description": "Aspects to concentrate on" },
            "standards": { "type": "string", "description": "Coding standards to enforce" },
            "severity_filter": { "type": "string", "enum": SEVERITY }
        })
    },
    sticky: &["review_type", "focus_on", "standards", "severity_filter"],
    per_step: &[],
};

/// `refactor`.
const REFACTOR: Spec = Spec {
    name: "refactor",
    description: "Finds refactoring opportunities — code smells, decomposition, modernisation, \
                  organisation — and has an expert prioritise them.",
    step_hint: "What code you are examining for refactoring in this step",
    system_prompt: "You are a refactoring expert. You receive an engineer's notes and the code \
        they want improved. Identify changes that make the code simpler to understand and \
        change without altering behaviour: code smells, functions and types that should be \
        split, outdated idioms, misplaced responsibilities. For each opportunity say why it \
        pays off, how risky it is, and the order to do it in; keep steps small and each one \
        safe to ship. Follow the requested refactor type and any style examples given.",
    task: "Give the refactoring opportunities in the order to do them, each with its benefit, \
           risk and a sketch of the change.",
    guidance: &[
        "Look for long functions, duplicated logic and unclear names",
        "Find responsibilities that belong in another module",
        "Note outdated idioms the language or framework now does better",
        "Record the files to refactor in relevant_files",
    ],
    completion_status: "refactoring_analysis_complete",
    fields: || {
        json!({
            "refactor_type": { "type": "string", "enum": ["codesmells", "decompose", "modernize", "organization"] },
            "focus_areas": { "type": "array", "items": { "type": "string" } },
            "style_guide_examples": { "type": "array", "items": { "type": "string" } }
        })
    },
    sticky: &["refactor_type", "focus_areas", "style_guide_examples"],
    per_step: &[],
};

/// `secaudit`.
const SECAUDIT: Spec = Spec {
    name: "secaudit",
    description: "Security audit — authentication, input handling, secrets, dependencies, \
                  compliance — with an expert threat assessment at the end.",
    step_hint: "What part of the attack surface you examine in this step",
    system_prompt: "You are an application security auditor. You receive an auditor's notes and \
        the code in scope. Think like an attacker: enumerate entry points and trust \
        boundaries, then check authentication, authorisation, input validation, injection, \
        secrets handling, cryptography, dependency risks and logging of sensitive data. For \
        each vulnerability give the attack scenario, its likelihood and impact given the \
        stated threat level, the affected code, and the remediation. Map findings to the \
        requested compliance frameworks or OWASP categories when asked. Do not report \
        theoretical issues the code clearly prevents.",
    task: "List vulnerabilities by severity with attack scenario, location and remediation, \
           then the overall security posture.",
    guidance: &[
        "Enumerate entry points and trust boundaries",
        "Check authentication, authorisation and session handling",
        "Trace untrusted input to where it is used (queries, paths, commands, templates)",
        "Look for secrets in code or logs and for risky dependencies",
    ],
    completion_status: "security_analysis_complete",
    fields: || {
        json!({
            "security_scope": { "type": "string", "description": "What is in scope" },
            "threat_level": { "type": "string", "enum": ["low", "medium", "high", "critical"] },
            "compliance_requirements": { "type": "array", "items": { "type": "string" } },
            "audit_focus": { "type": "string", "enum": ["owasp", "compliance", "infrastructure", "dependencies", "comprehensive"] },
            "severity_filter": { "type": "string", "enum": SEVERITY }
        })
    },
    sticky: &[
        "security_scope",
        "threat_level",
        "compliance_requirements",
        "audit_focus",
        "severity_filter",
    ],
    per_step: &[],
};

/// `planner`.
const PLANNER: Spec = Spec {
    name: "planner",
    description: "Builds a plan step by step, with revisions and branches; an expert reviews \
                  the finished plan.",
    step_hint: "This planning step: a task, a decision, a revision or a branch",
    system_prompt: "You are a delivery planner reviewing a plan that was built step by step, \
        including revised steps and alternative branches. Check that the plan reaches its \
        goal: ordering and dependencies, missing steps, steps too large to estimate, risks \
        without a mitigation, and where the branches should be decided. Use the latest \
        revision of each step. Produce the final plan as an ordered list of concrete, \
        verifiable steps, with the open decisions and risks after it.",
    task: "Give the reviewed plan as ordered steps with their dependencies, then open \
           decisions and risks.",
    guidance: &[
        "Break the next part of the goal into concrete, verifiable tasks",
        "Note dependencies between steps and what could block them",
        "Revise an earlier step with is_step_revision if it no longer holds",
        "Open a branch with is_branch_point when there are real alternatives",
    ],
    completion_status: "planning_complete",
    fields: || {
        json!({
            "is_step_revision": { "type": "boolean" },
            "revises_step_number": { "type": "integer", "minimum": 1 },
            "is_branch_point": { "type": "boolean" },
            "branch_from_step": { "type": "integer", "minimum": 1 },
            "branch_id": { "type": "string" },
            "more_steps_needed": { "type": "boolean" }
        })
    },
    sticky: &[],
    per_step: &[
        "is_step_revision",
        "revises_step_number",
        "is_branch_point",
        "branch_from_step",
        "branch_id",
        "more_steps_needed",
    ],
};

/// `tracer`.
const TRACER: Spec = Spec {
    name: "tracer",
    description: "Traces execution flow or dependencies of a function, class or module, step by \
                  step, with an expert summary of the call graph.",
    step_hint: "What you traced in this step (callers, callees, data flow)",
    system_prompt: "You are a code navigation expert. You receive a developer's trace notes and \
        the relevant source. In precision mode, reconstruct the execution flow of the target: \
        entry points, the call chain in order, branches taken and their conditions, side \
        effects and where state changes. In dependencies mode, map what the target uses and \
        what uses it, in both directions, with the kind of each dependency. Be exact about \
        names and files; mark anything you could not confirm from the code.",
    task: "Give the call flow or dependency map of the target, in order, with file and symbol \
           for each element.",
    guidance: &[
        "Find the entry points that reach the target",
        "Follow each call in order and note the conditions on branches",
        "Record side effects and state changes along the way",
        "Record the files on the traced path in relevant_files",
    ],
    completion_status: "tracing_complete",
    fields: || {
        json!({
            "trace_mode": { "type": "string", "enum": ["precision", "dependencies", "ask"] },
            "target_description": { "type": "string", "description": "What to trace and why" }
        })
    },
    sticky: &["trace_mode", "target_description"],
    per_step: &[],
};

/// `testgen`.
const TESTGEN: Spec = Spec {
    name: "testgen",
    description: "Plans tests for code step by step — behaviours, edge cases, failure modes — and \
                  has an expert write the test suite.",
    step_hint: "What code and behaviours you examine for testing in this step",
    system_prompt: "You are a test engineer. You receive notes on the code under test and its \
        source. Derive the behaviours that must hold, then the edge cases and failure modes \
        that are likely to break: boundaries, empty and huge inputs, errors from \
        dependencies, concurrency and time. Write tests in the project's existing framework \
        and style, each asserting one observable outcome, with names that say what they \
        check. Prefer a few high-value tests over many trivial ones and say what each \
        protects against.",
    task: "Write the tests (code), grouped by behaviour, each with a one-line reason.",
    guidance: &[
        "List the public behaviours of the code under test",
        "Find boundaries, error paths and concurrency hazards",
        "Look at existing tests for the framework and conventions",
        "Record the code under test and existing tests in relevant_files",
    ],
    completion_status: "test_generation_complete",
    fields: none,
    sticky: &[],
    per_step: &[],
};

/// `consensus`.
const CONSENSUS: Spec = Spec {
    name: "consensus",
    description: "Asks several models, each with a stance (for, against, neutral), about a \
                  proposal, concurrently, and returns every answer plus a synthesis.",
    step_hint: "The proposal or question to evaluate (step 1), or your own notes on it",
    system_prompt: "You are one consultant in a panel evaluating a proposal. Give your \
        independent, evidence-based view: technical feasibility, value to users, \
        implementation cost and complexity, risks, alternatives and long-term consequences. \
        Be specific and concise, and end with a clear recommendation and your confidence in \
        it.",
    task: "Evaluate the proposal from your stance and end with a recommendation.",
    guidance: &[
        "State the proposal precisely, with its context and constraints",
        "Choose the models and the stance each should take",
        "Record any files the panel should read in relevant_files",
    ],
    completion_status: "consensus_complete",
    fields: || {
        json!({
            "models": {
                "type": "array",
                "maxItems": MAX_MODELS,
                "description": "The panel: each model with its stance",
                "items": {
                    "type": "object",
                    "properties": {
                        "model": { "type": "string" },
                        "stance": { "type": "string", "enum": ["for", "against", "neutral"] },
                        "stance_prompt": { "type": "string", "description": "Replaces the stance's default instructions" }
                    },
                    "required": ["model"]
                }
            }
        })
    },
    sticky: &["models"],
    per_step: &[],
};

/// `thinkdeep`.
const THINKDEEP: Spec = Spec {
    name: "thinkdeep",
    description: "Extended reasoning on a hard problem, step by step, with an expert that \
                  challenges and deepens the conclusions.",
    step_hint: "What you are thinking through in this step",
    system_prompt: "You are a senior engineer acting as a thinking partner on a hard problem. \
        You receive another engineer's reasoning so far. Do not repeat it: challenge its \
        assumptions, find the gaps and the failure modes it missed, weigh the alternatives it \
        dismissed too quickly, and extend the analysis where it stopped short. Ground every \
        point in the given context and code. Conclude with what you would do and why, and \
        what would change your mind.",
    task: "Challenge and extend the reasoning, then give your recommendation and what would \
           change it.",
    guidance: &[
        "Write down the assumptions your current reasoning rests on",
        "Look for evidence against your current conclusion",
        "Consider at least one alternative approach seriously",
    ],
    completion_status: "deep_thinking_complete",
    fields: || {
        json!({
            "problem_context": { "type": "string", "description": "Background the expert needs" },
            "focus_areas": { "type": "array", "items": { "type": "string" } }
        })
    },
    sticky: &["problem_context", "focus_areas"],
    per_step: &[],
};

/// `docgen`.
const DOCGEN: Spec = Spec {
    name: "docgen",
    description: "Documents code step by step — purpose, parameters, behaviour, complexity — and \
                  has an expert write the documentation.",
    step_hint: "Which code you are documenting in this step",
    system_prompt: "You are a technical writer who reads code. You receive notes on the code to \
        document and its source. Write documentation a new maintainer can rely on: what each \
        module and public item is for, its inputs, outputs, errors and side effects, \
        non-obvious behaviour and the reasons behind it. Match the language's documentation \
        conventions. Never describe behaviour the code does not have; flag code whose intent \
        is unclear instead of guessing.",
    task: "Write the documentation comments for the code, in the language's conventions, and \
           list anything whose intent was unclear.",
    guidance: &[
        "List the modules and public items that need documentation",
        "Note behaviour that is not obvious from the names",
        "Record the files to document in relevant_files",
    ],
    completion_status: "documentation_complete",
    fields: || {
        json!({
            "update_existing": { "type": "boolean", "description": "Improve existing documentation too" },
            "comments_on_complex_logic": { "type": "boolean", "description": "Add comments inside complex functions" }
        })
    },
    sticky: &["update_existing", "comments_on_complex_logic"],
    per_step: &[],
};

/// `precommit`.
const PRECOMMIT: Spec = Spec {
    name: "precommit",
    description: "Validates changes before a commit: runs git diff in path (under \
                  EXAI_FILE_ROOTS) and has an expert review the changes.",
    step_hint: "What you are validating about the pending changes in this step",
    system_prompt: "You are the last reviewer before a commit. You receive the pending git \
        changes, the author's notes and related files. Check that the change does what it \
        intends and nothing else: bugs introduced, incomplete changes (callers not updated, \
        missing migrations, tests or docs), accidental debug code or secrets, security and \
        performance regressions. Judge only what the diff changes and what it breaks. Rate \
        each problem as critical, high, medium or low, and say plainly whether the change is \
        ready to commit.",
    task: "List the problems by severity with location and fix, then say whether the change \
           is ready to commit.",
    guidance: &[
        "Look at every changed file and what depends on it",
        "Check that tests and documentation follow the change",
        "Look for debug code, secrets and unintended changes",
    ],
    completion_status: "validation_complete",
    fields: || {
        json!({
            "path": { "type": "string", "description": "Repository directory (under EXAI_FILE_ROOTS)" },
            "compare_to": { "type": "string", "description": "A git ref to compare against instead of staged/unstaged changes" },
            "include_staged": { "type": "boolean", "default": true },
            "include_unstaged": { "type": "boolean", "default": true },
            "focus_on": { "type": "string" },
            "severity_filter": { "type": "string", "enum": SEVERITY }
        })
    },
    sticky: &[
        "path",
        "compare_to",
        "include_staged",
        "include_unstaged",
        "focus_on",
        "severity_filter",
    ],
    per_step: &[],
};
