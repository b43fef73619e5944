//! The EXAI tool set over `/ws` against the mock upstream: every workflow tool's two-step flow
//! (no upstream call while paused, one expert call carrying every step and the files at the
//! end), consensus's panel, precommit's git diff, the file-root checks, and the other tools.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exai_testkit::mock_upstream::{MockUpstream, RecordedRequest};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::ws::{assert_error, call, mock, mock_toml, session};

/// The text in the fixture's source file, looked for in expert prompts.
const FILE_MARKER: &str = "FILE-MARKER-parse_config";

/// An app whose file root is a fresh directory holding `src/lib.rs`.
struct Fixture {
    /// The upstream.
    mock: MockUpstream,
    /// The app.
    app: TestApp,
    /// The file root (canonical).
    root: PathBuf,
    /// Keeps the directories alive; `outside` is next to the root, not under it.
    dir: tempfile::TempDir,
}

impl Fixture {
    fn outside(&self) -> PathBuf {
        self.dir.path().canonicalize().unwrap().join("outside")
    }

    /// Chat requests the mock received since `from`.
    fn chats_since(&self, from: usize) -> Vec<RecordedRequest> {
        self.mock
            .recorded()
            .into_iter()
            .skip(from)
            .filter(|r| r.endpoint == "chat/completions")
            .collect()
    }
}

async fn fixture(env: &[(&str, &str)], extra_toml: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("root");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(
        root.join("src/lib.rs"),
        format!("// {FILE_MARKER}\npub fn parse_config() {{}}\n"),
    )
    .unwrap();
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::fs::write(base.join("outside/secret.txt"), "SECRET-OUTSIDE").unwrap();
    let mock = mock();
    let roots = root.display().to_string();
    let mut all_env: Vec<(&str, &str)> = vec![("EXAI_FILE_ROOTS", roots.as_str())];
    all_env.extend_from_slice(env);
    let app = spawn_app_with(&all_env, Some(&mock_toml(&mock, extra_toml))).await;
    Fixture {
        mock,
        app,
        root,
        dir,
    }
}

/// The JSON document a tool answered with.
fn doc(res: &Value) -> Value {
    assert_eq!(res["ok"], true, "{res}");
    serde_json::from_str(res["outputs"][0]["text"].as_str().unwrap()).unwrap()
}

/// The text of a message's content (a string, or its text parts).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The text of every message with `role` in a request body.
fn role_text(body: &Value, role: &str) -> String {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .map(|m| content_text(&m["content"]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts `text` contains every needle, in order.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut at = 0;
    for needle in needles {
        match text[at..].find(needle) {
            Some(i) => at += i + needle.len(),
            None => panic!("{needle:?} missing (or out of order) in:\n{text}"),
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A repository under the root with one staged and one unstaged change.
fn repo(root: &Path) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "original\n").unwrap();
    std::fs::write(repo.join("b.txt"), "second\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "init"]);
    std::fs::write(repo.join("a.txt"), "original\nUNSTAGED-CHANGE\n").unwrap();
    std::fs::write(repo.join("b.txt"), "second\nSTAGED-CHANGE\n").unwrap();
    git(&repo, &["add", "b.txt"]);
    repo
}

/// The workflow tools.
const WORKFLOWS: &[&str] = &[
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
];

#[actix_rt::test]
async fn every_workflow_tool_pauses_then_makes_one_expert_call() {
    let f = fixture(&[], "").await;
    let repo = repo(&f.root);
    let file = f.root.join("src/lib.rs").display().to_string();
    let mut ws = session(&f.app).await;
    let mut prompts = HashSet::new();
    for tool in WORKFLOWS {
        let before = f.mock.recorded().len();
        let mut first = json!({
            "step": format!("Start {tool}"),
            "step_number": 1,
            "total_steps": 2,
            "next_step_required": true,
            "findings": format!("FIRST-FINDING-{tool}"),
            "hypothesis": format!("HYPOTHESIS-{tool}"),
            "issues_found": [{"severity": "high", "description": format!("ISSUE-{tool}")}],
            "relevant_files": [file],
            "files_checked": [file],
            "confidence": "medium",
        });
        match *tool {
            "consensus" => {
                first["models"] = json!([
                    {"model": "mock-echo", "stance": "for"},
                    {"model": "mock-slow", "stance": "against"},
                ]);
            }
            "precommit" => first["path"] = json!(repo.display().to_string()),
            "codereview" => first["review_type"] = json!("security"),
            _ => {}
        }
        let paused = doc(&call(&mut ws, &format!("{tool}-1"), tool, first).await);
        assert_eq!(paused["status"], format!("pause_for_{tool}"), "{paused}");
        assert_eq!(paused["step_number"], 1);
        assert!(
            paused["required_actions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
        let thread = paused["continuation_id"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            f.mock.recorded().len(),
            before,
            "{tool}: step 1 reached the upstream"
        );

        let second = json!({
            "step": format!("Conclude {tool}"),
            "step_number": 2,
            "total_steps": 2,
            "next_step_required": false,
            "findings": format!("SECOND-FINDING-{tool}"),
            "continuation_id": thread,
            "confidence": "high",
        });
        let done = doc(&call(&mut ws, &format!("{tool}-2"), tool, second).await);
        assert_eq!(done["continuation_id"], thread.as_str(), "{done}");
        assert_eq!(done["next_step_required"], false);
        let calls = f.chats_since(before);
        let needles = [
            format!("FIRST-FINDING-{tool}"),
            format!("HYPOTHESIS-{tool}"),
            format!("ISSUE-{tool}"),
            format!("SECOND-FINDING-{tool}"),
            FILE_MARKER.to_owned(),
        ];
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        if *tool == "consensus" {
            assert_eq!(calls.len(), 3, "two panel calls and a synthesis");
            let mut panel: Vec<(String, String)> = calls[..2]
                .iter()
                .map(|c| {
                    assert_in_order(&role_text(&c.body, "user"), &needles);
                    (
                        c.body["model"].as_str().unwrap().to_owned(),
                        role_text(&c.body, "system"),
                    )
                })
                .collect();
            panel.sort();
            assert_eq!(panel[0].0, "mock-echo");
            assert!(panel[0].1.contains("Your stance: FOR"), "{}", panel[0].1);
            assert_eq!(panel[1].0, "mock-slow");
            assert!(
                panel[1].1.contains("Your stance: AGAINST"),
                "{}",
                panel[1].1
            );
            let synthesis = role_text(&calls[2].body, "user");
            assert!(synthesis.contains("stance: for") && synthesis.contains("stance: against"));
            assert_eq!(done["responses"].as_array().unwrap().len(), 2, "{done}");
            assert!(
                done["synthesis"]["content"]
                    .as_str()
                    .unwrap()
                    .starts_with("echo:")
            );
            prompts.insert(panel[0].1.clone());
        } else {
            assert_eq!(calls.len(), 1, "{tool}: one expert call");
            let user = role_text(&calls[0].body, "user");
            assert_in_order(&user, &needles);
            if *tool == "precommit" {
                assert!(user.contains("+UNSTAGED-CHANGE"), "{user}");
                assert!(user.contains("+STAGED-CHANGE"), "{user}");
            }
            if *tool == "codereview" {
                assert!(user.contains("review_type: security"), "{user}");
            }
            let system = role_text(&calls[0].body, "system");
            assert!(system.len() > 200, "{tool}: {system}");
            assert!(prompts.insert(system), "{tool} shares a system prompt");
            assert!(
                done["expert_analysis"]["content"]
                    .as_str()
                    .unwrap()
                    .starts_with("echo:"),
                "{done}"
            );
        }
    }
}

#[actix_rt::test]
async fn no_model_call_without_the_assistant_or_when_certain() {
    let f = fixture(&[], "").await;
    let mut ws = session(&f.app).await;
    for (i, last) in [
        json!({"use_assistant_model": false}),
        json!({"confidence": "certain"}),
    ]
    .into_iter()
    .enumerate()
    {
        let first = doc(&call(
            &mut ws,
            &format!("d{i}-1"),
            "debug",
            json!({"step": "look", "step_number": 1, "total_steps": 2,
                   "next_step_required": true, "findings": "one"}),
        )
        .await);
        let mut second = json!({"step": "done", "step_number": 2, "total_steps": 2,
            "next_step_required": false, "findings": "two",
            "continuation_id": first["continuation_id"]});
        second
            .as_object_mut()
            .unwrap()
            .extend(last.as_object().unwrap().clone());
        let done = doc(&call(&mut ws, &format!("d{i}-2"), "debug", second).await);
        assert_eq!(done["skip_expert_analysis"], true, "{done}");
        assert_eq!(done["consolidated"]["steps"].as_array().unwrap().len(), 2);
        assert_eq!(done["consolidated"]["steps"][1]["findings"], "two");
    }
    assert_eq!(f.mock.requests(), 0);
    // Workflow arguments are checked by name before anything runs.
    let bad = call(
        &mut ws,
        "bad",
        "codereview",
        json!({"step": "x", "step_number": 1, "total_steps": 1, "next_step_required": false,
               "findings": "f", "review_type": "everything"}),
    )
    .await;
    assert_error(&bad, "VALIDATION_ERROR");
    assert_eq!(bad["error"]["details"]["argument"], "review_type");
    let missing = call(&mut ws, "missing", "analyze", json!({"step": "x"})).await;
    assert_error(&missing, "VALIDATION_ERROR");
}

#[actix_rt::test]
async fn files_outside_the_roots_are_refused() {
    let f = fixture(&[], "").await;
    let outside = f.outside();
    let secret = outside.join("secret.txt");
    std::os::unix::fs::symlink(&secret, f.root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, f.root.join("src/escape")).unwrap();
    let mut ws = session(&f.app).await;
    let refused = [
        "../outside/secret.txt".to_owned(),
        "src/../../outside/secret.txt".to_owned(),
        secret.display().to_string(),
        "/etc/hostname".to_owned(),
        "link.txt".to_owned(),
        f.root.join("link.txt").display().to_string(),
    ];
    for (i, path) in refused.iter().enumerate() {
        let res = call(
            &mut ws,
            &format!("c{i}"),
            "chat",
            json!({"prompt": "read it", "files": [path]}),
        )
        .await;
        assert_error(&res, "VALIDATION_ERROR");
        assert_eq!(res["error"]["details"]["argument"], "files", "{res}");
        assert!(
            res["error"]["message"]
                .as_str()
                .unwrap()
                .contains("EXAI_FILE_ROOTS"),
            "{res}"
        );
        let res = call(
            &mut ws,
            &format!("w{i}"),
            "analyze",
            json!({"step": "s", "step_number": 1, "total_steps": 2, "next_step_required": true,
                   "findings": "f", "relevant_files": [path]}),
        )
        .await;
        assert_error(&res, "VALIDATION_ERROR");
        assert_eq!(
            res["error"]["details"]["argument"], "relevant_files",
            "{res}"
        );
    }
    assert_eq!(f.mock.requests(), 0, "a refused call reached the upstream");

    // A directory expands to its text files; the escaping symlink, .git and binaries are
    // skipped, and the secret never reaches the upstream.
    std::fs::create_dir_all(f.root.join("src/.git")).unwrap();
    std::fs::write(f.root.join("src/.git/config"), "GIT-INTERNAL").unwrap();
    std::fs::write(f.root.join("src/blob.bin"), [0u8, 159, 146, 150]).unwrap();
    let res = call(
        &mut ws,
        "dir",
        "chat",
        json!({"prompt": "the directory", "files": ["src"]}),
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    let sent = role_text(&f.mock.last_request().unwrap(), "user");
    assert!(sent.contains(FILE_MARKER), "{sent}");
    assert!(
        !sent.contains("SECRET-OUTSIDE") && !sent.contains("GIT-INTERNAL"),
        "{sent}"
    );
    assert!(
        sent.contains("binary file") && sent.contains("resolves outside"),
        "{sent}"
    );
}

#[actix_rt::test]
async fn file_content_is_capped_per_call_with_a_note() {
    let f = fixture(&[("EXAI_FILE_MAX_BYTES", "40")], "").await;
    std::fs::write(f.root.join("big.txt"), "B".repeat(500)).unwrap();
    let mut ws = session(&f.app).await;
    let res = call(
        &mut ws,
        "cap",
        "chat",
        json!({"prompt": "big", "files": ["big.txt", "src/lib.rs"]}),
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    let sent = role_text(&f.mock.last_request().unwrap(), "user");
    assert!(
        sent.contains(&"B".repeat(40)) && !sent.contains(&"B".repeat(41)),
        "{sent}"
    );
    assert!(sent.contains("EXAI_FILE_MAX_BYTES"), "{sent}");
    assert!(!sent.contains(FILE_MARKER), "over the cap: {sent}");
}

#[actix_rt::test]
async fn chat_sends_images_as_image_url_parts() {
    let f = fixture(&[], "").await;
    std::fs::write(f.root.join("pic.png"), [0x89u8, b'P', b'N', b'G']).unwrap();
    let mut ws = session(&f.app).await;
    let data_url = "data:image/gif;base64,R0lGODlhAQABAAAAACw=";
    let res = call(
        &mut ws,
        "img",
        "chat",
        json!({"prompt": "what is this", "images": [data_url, "pic.png"]}),
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    let sent = f.mock.last_request().unwrap();
    let parts = sent["messages"][0]["content"].as_array().unwrap().clone();
    assert_eq!(parts[0], json!({"type": "text", "text": "what is this"}));
    assert_eq!(parts[1]["image_url"]["url"], data_url);
    assert_eq!(
        parts[2]["image_url"]["url"],
        "data:image/png;base64,iVBORw=="
    );
    let bad = call(
        &mut ws,
        "img2",
        "chat",
        json!({"prompt": "x", "images": ["data:text/plain;base64,eA=="]}),
    )
    .await;
    assert_error(&bad, "VALIDATION_ERROR");
}

#[actix_rt::test]
async fn challenge_and_the_informational_tools() {
    let f = fixture(&[], "").await;
    let mut ws = session(&f.app).await;
    let challenged = doc(&call(
        &mut ws,
        "ch",
        "challenge",
        json!({"prompt": "Rust has no undefined behaviour"}),
    )
    .await);
    assert_eq!(
        challenged["original_statement"],
        "Rust has no undefined behaviour"
    );
    assert!(
        challenged["challenge_prompt"]
            .as_str()
            .unwrap()
            .contains("\"Rust has no undefined behaviour\"")
    );
    assert_eq!(f.mock.requests(), 0, "challenge called a model");

    let version = doc(&call(&mut ws, "v", "version", json!({})).await);
    assert_eq!(
        version["tools"].as_array().unwrap().len(),
        crate::ws::ALL_TOOLS.len()
    );

    let caps = doc(&call(&mut ws, "pc", "provider_capabilities", json!({})).await);
    let mock_provider = &caps["providers"][0];
    assert_eq!(mock_provider["name"], "mock");
    assert_eq!(mock_provider["streaming"], true);
    assert_eq!(mock_provider["breaker"], "closed");
    assert!(
        mock_provider["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "mock-echo")
    );

    let health = doc(&call(&mut ws, "h", "health_EXAI-WS", json!({})).await);
    let (_, served) = f.app.get_json("/health").await;
    assert_eq!(health["status"], served["status"]);
    assert_eq!(health["instance"], served["instance"]);
    assert!(
        health["actors"].is_object() && health["uptime_s"].is_u64(),
        "{health}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        let page = doc(&call(
            &mut ws,
            &uuid::Uuid::new_v4().to_string(),
            "activity",
            json!({"type": "req*", "limit": 3, "contains": "challenge"}),
        )
        .await);
        if page["count"].as_u64() > Some(0) {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no request event in activity"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let event = &found["events"][0];
    assert_eq!(event["type"], "request");
    assert_eq!(event["data"]["tool"], "challenge");
    assert!(found["events"].as_array().unwrap().len() <= 3);
}

#[actix_rt::test]
async fn provider_tools_say_when_their_provider_is_missing() {
    let f = fixture(&[], "").await;
    let mut ws = session(&f.app).await;
    let search = call(
        &mut ws,
        "s",
        "glm_web_search",
        json!({"search_query": "rust"}),
    )
    .await;
    assert_error(&search, "SERVICE_UNAVAILABLE");
    assert!(
        search["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GLM_API_KEY")
    );
    let kimi = call(
        &mut ws,
        "k",
        "kimi_chat_with_tools",
        json!({"messages": ["hi"]}),
    )
    .await;
    assert_error(&kimi, "SERVICE_UNAVAILABLE");
    assert!(
        kimi["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KIMI_API_KEY")
    );
    assert_eq!(f.mock.requests(), 0);
}

#[actix_rt::test]
async fn glm_web_search_and_kimi_tools_go_through_their_providers() {
    let f = fixture(&[], "").await;
    let base = f.mock.base_url();
    let toml = format!(
        "\n[[providers]]\nname = \"glm\"\nkind = \"glm\"\nbase_url = \"{base}\"\napi_key = \"glm-test-key\"\nmax_retries = 0\n\
         \n[[providers]]\nname = \"kimi\"\nkind = \"kimi\"\nbase_url = \"{base}\"\napi_key = \"kimi-test-key\"\nmax_retries = 0\n"
    );
    let app = spawn_app_with(&[], Some(&mock_toml(&f.mock, &toml))).await;
    let mut ws = session(&app).await;

    let found = doc(&call(
        &mut ws,
        "s",
        "glm_web_search",
        json!({"search_query": "actix actors", "count": 3, "search_recency_filter": "oneWeek"}),
    )
    .await);
    let results = found["search_result"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["title"], "Result 1 for actix actors");
    let sent = f
        .mock
        .recorded()
        .into_iter()
        .find(|r| r.endpoint == "web_search")
        .unwrap();
    assert_eq!(sent.body["search_query"], "actix actors");
    assert_eq!(sent.body["count"], 3);
    assert_eq!(sent.body["search_recency_filter"], "oneWeek");
    assert_eq!(sent.body["search_engine"], "search-prime");

    let tools = json!([{"type": "function", "function": {"name": "lookup_weather",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}}]);
    let answer = doc(&call(
        &mut ws,
        "k",
        "kimi_chat_with_tools",
        json!({"messages": [{"role": "user", "content": "weather in Oslo"}], "tools": tools,
               "tool_choice": "auto"}),
    )
    .await);
    let message = &answer["choices"][0]["message"];
    assert_eq!(
        answer["choices"][0]["finish_reason"], "tool_calls",
        "{answer}"
    );
    assert_eq!(
        message["tool_calls"][0]["function"]["name"],
        "lookup_weather"
    );
    let sent = f.mock.last_request().unwrap();
    assert_eq!(sent["tools"], tools);
    assert_eq!(sent["tool_choice"], "auto");
    assert_eq!(sent["model"], "kimi-k2-0905-preview");
    let not_kimi = call(
        &mut ws,
        "k2",
        "kimi_chat_with_tools",
        json!({"messages": ["hi"], "model": "mock/mock-echo"}),
    )
    .await;
    assert_error(&not_kimi, "VALIDATION_ERROR");
    assert_eq!(not_kimi["error"]["details"]["argument"], "model");
}

/// A two-step precommit with `extra` arguments on its final step.
async fn precommit(ws: &mut crate::ws::Ws, id: &str, path: &Path, extra: Value) -> Value {
    let first = doc(&call(
        ws,
        &format!("{id}-1"),
        "precommit",
        json!({"step": "changes", "step_number": 1, "total_steps": 2, "next_step_required": true,
               "findings": "looking", "path": path.display().to_string()}),
    )
    .await);
    let mut last = json!({"step": "verdict", "step_number": 2, "total_steps": 2,
        "next_step_required": false, "findings": "done",
        "continuation_id": first["continuation_id"]});
    last.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    call(ws, &format!("{id}-2"), "precommit", last).await
}

#[actix_rt::test]
async fn precommit_compares_refs_and_never_leaves_the_root() {
    let f = fixture(&[], "").await;
    let repo = repo(&f.root);
    let mut ws = session(&f.app).await;
    let res = precommit(&mut ws, "ref", &repo, json!({"compare_to": "HEAD"})).await;
    assert_eq!(res["ok"], true, "{res}");
    let sent = role_text(&f.mock.last_request().unwrap(), "user");
    assert!(sent.contains("changes against HEAD"), "{sent}");
    assert!(
        sent.contains("+UNSTAGED-CHANGE") && sent.contains("+STAGED-CHANGE"),
        "{sent}"
    );
    let before = f.mock.requests();
    let bad = precommit(
        &mut ws,
        "opt",
        &repo,
        json!({"compare_to": "--output=/tmp/x"}),
    )
    .await;
    assert_error(&bad, "VALIDATION_ERROR");
    assert_eq!(bad["error"]["details"]["argument"], "compare_to");
    let outside = precommit(&mut ws, "out", &f.outside(), json!({})).await;
    assert_error(&outside, "VALIDATION_ERROR");

    // A repository above the file root is not found from inside it: its diff would show
    // files outside the root.
    let base = f.dir.path().canonicalize().unwrap();
    git(&base, &["init", "-q"]);
    git(&base, &["add", "outside"]);
    std::fs::write(base.join("outside/secret.txt"), "SECRET-CHANGED").unwrap();
    let plain = f.root.join("src");
    let above = precommit(&mut ws, "above", &plain, json!({})).await;
    assert_error(&above, "TOOL_EXECUTION_ERROR");
    assert!(!above.to_string().contains("SECRET"), "{above}");
    assert_eq!(
        f.mock.requests(),
        before,
        "a refused precommit reached the upstream"
    );
}

#[test]
fn file_roots_must_be_existing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope").display().to_string();
    let sources = exai::config::Sources {
        file: None,
        env: [
            ("EXAI_FILE_ROOTS".to_owned(), missing),
            ("EXAI_FILE_MAX_BYTES".to_owned(), "0".to_owned()),
            (
                "EXAI_DATA_DIR".to_owned(),
                dir.path().join("data").display().to_string(),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let errors = exai::config::Config::from_sources(&sources, &Default::default()).unwrap_err();
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert!(keys.contains(&"EXAI_FILE_ROOTS"), "{errors:?}");
    assert!(keys.contains(&"EXAI_FILE_MAX_BYTES"), "{errors:?}");
}

#[actix_rt::test]
async fn backtracking_drops_steps_and_planner_revisions_reach_the_expert() {
    let f = fixture(&[], "").await;
    let mut ws = session(&f.app).await;
    let step = |n: u64, next: bool, findings: &str, extra: Value| {
        let mut v = json!({"step": format!("step {n}"), "step_number": n, "total_steps": 3,
                           "next_step_required": next, "findings": findings});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let first = doc(&call(
        &mut ws,
        "b1",
        "thinkdeep",
        step(1, true, "KEEP-ONE", json!({})),
    )
    .await);
    let thread = first["continuation_id"].clone();
    call(
        &mut ws,
        "b2",
        "thinkdeep",
        step(2, true, "DEAD-END", json!({"continuation_id": thread})),
    )
    .await;
    let done = doc(&call(
        &mut ws,
        "b3",
        "thinkdeep",
        step(
            3,
            false,
            "AFTER-BACKTRACK",
            json!({"continuation_id": thread, "backtrack_from_step": 2, "use_assistant_model": false}),
        ),
    )
    .await);
    let steps: Vec<&str> = done["consolidated"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["findings"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["KEEP-ONE", "AFTER-BACKTRACK"]);

    let plan = doc(&call(&mut ws, "p1", "planner", step(1, true, "PLAN-A", json!({}))).await);
    let thread = plan["continuation_id"].clone();
    call(
        &mut ws,
        "p2",
        "planner",
        step(
            2,
            false,
            "PLAN-B",
            json!({"continuation_id": thread, "is_step_revision": true, "revises_step_number": 1,
                   "branch_id": "fast-path"}),
        ),
    )
    .await;
    let sent = role_text(&f.mock.last_request().unwrap(), "user");
    assert_in_order(
        &sent,
        &["PLAN-A", "revises step 1", "branch fast-path", "PLAN-B"],
    );
}
