//! Anthropic's Messages API (`/v1/messages`), driven by the official `anthropic` Python SDK
//! (and the `openai` SDK for `/v1`) against the app and the mock upstream: translation to an
//! OpenAI-compatible upstream both ways, streaming, tools, count_tokens, the error shapes,
//! native pass-through to an `anthropic` provider, aliases and the shared chat path.
//!
//! The SDKs live in `target/py-venv`, made by `scripts/py-env` (which `scripts/test` runs).
//! Without it these tests fail; they never skip.

use std::path::PathBuf;
use std::time::Duration;

use exai_testkit::mock_upstream::{MockSettings, MockUpstream};
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app_with};

/// The client token of these apps.
const TOKEN: &str = "anthropic-test-token-0123";

/// The venv's python; fails (never skips) when it is missing.
fn python() -> PathBuf {
    let venv = std::env::var_os("EXAI_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/py-env (scripts/test does) to install the pinned SDKs of \
         tests/py/requirements.txt",
        python.display()
    );
    python
}

/// Runs `tests/py/<script> <args>` against `app` with `model`; returns its JSON output.
async fn run_py(app: &TestApp, script: &str, args: &[&str], model: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let run = tokio::process::Command::new(python())
        .arg(path)
        .args(args)
        .env("EXAI_BASE_URL", &app.base)
        .env("EXAI_TOKEN", TOKEN)
        .env("EXAI_MODEL", model)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("python script timed out")
        .expect("python could not be started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The OpenAI-compatible mock, the Anthropic-compatible mock and an app using both: `mock`
/// (openai_compatible) and `native` (anthropic, serving `claude-native-echo`).
struct Setup {
    /// The app.
    app: TestApp,
    /// Upstream of provider `mock`.
    openai: MockUpstream,
    /// Upstream of provider `native`.
    native: MockUpstream,
}

async fn setup(env: &[(&str, &str)]) -> Setup {
    let openai = MockUpstream::start(MockSettings::default()).unwrap();
    let native = MockUpstream::start(MockSettings {
        models: vec!["claude-native-echo".into()],
        ..MockSettings::default()
    })
    .unwrap();
    let toml = format!(
        "[[providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = \"{}\"\n\
         models = [\"mock-echo\", \"mock-tool\", \"mock-429\", \"mock-status-529\", \
         \"mock-stream-cut\", \"mock-reasoning\", \"mock-500\"]\nmax_retries = 0\n\n\
         [[providers]]\nname = \"native\"\nkind = \"anthropic\"\nbase_url = \"{}\"\n\
         api_key = \"sk-ant-mock\"\nmodels = [\"claude-native-echo\"]\nmax_retries = 0\n\n\
         [registry]\ndefault_model = \"mock-echo\"\n\n\
         [registry.aliases]\n\"claude-haiku-4-5\" = \"mock-tool\"\n",
        openai.base_url(),
        native.base_url()
    );
    let mut vars = vec![("EXAI_WS_TOKEN", TOKEN)];
    vars.extend_from_slice(env);
    let app = spawn_app_with(&vars, Some(&toml)).await;
    Setup {
        app,
        openai,
        native,
    }
}

/// POSTs `body` to `path` with the token as `x-api-key`.
async fn post(app: &TestApp, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = app
        .client
        .post(format!("{}{path}", app.base))
        .header("x-api-key", TOKEN)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

#[actix_rt::test]
async fn anthropic_sdk_create_is_translated_to_the_openai_upstream() {
    let s = setup(&[]).await;
    let out = run_py(&s.app, "anthropic_client.py", &["create"], "mock-echo").await;
    assert!(out["id"].as_str().unwrap().starts_with("msg_"), "{out}");
    assert_eq!(out["type"], "message");
    assert_eq!(out["role"], "assistant");
    assert_eq!(
        out["content"],
        json!([{"type": "text", "text": "echo: hello there"}])
    );
    assert_eq!(out["stop_reason"], "end_turn");
    assert!(out["usage"]["input_tokens"].as_u64().unwrap() > 0, "{out}");
    assert!(out["usage"]["output_tokens"].as_u64().unwrap() > 0, "{out}");
    let sent = s.openai.last_request().unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "hello there"})
    );
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["stop"], json!(["STOP"]));
    assert_eq!(sent["user"], "user-7");
    for field in ["system", "metadata", "exai_dialect"] {
        assert!(sent.get(field).is_none(), "{field} went upstream: {sent}");
    }
    // The call is a `request` event of the anthropic surface.
    eventually(
        Duration::from_secs(10),
        "request surface anthropic",
        || async {
            let (status, page) = s.app.get_json("/api/events?type=request").await;
            (status == 200 && page.to_string().contains(r#""surface":"anthropic""#)).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn anthropic_sdk_streams_the_full_event_sequence() {
    let s = setup(&[]).await;
    let out = run_py(&s.app, "anthropic_client.py", &["stream"], "mock-echo").await;
    let events: Vec<&str> = out["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{out}");
    assert_eq!(events.last(), Some(&"message_stop"), "{out}");
    for kind in [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
    ] {
        assert!(events.contains(&kind), "{kind} missing: {out}");
    }
    assert_eq!(out["text"], "echo: stream me please");
    assert_eq!(out["helper_text"], "echo: and again");
    assert_eq!(out["final"]["stop_reason"], "end_turn");
    assert!(
        out["final"]["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{out}"
    );
    assert_eq!(s.openai.last_request().unwrap()["stream"], true);
}

#[actix_rt::test]
async fn anthropic_sdk_tool_use_streamed_and_not() {
    let s = setup(&[]).await;
    let out = run_py(&s.app, "anthropic_client.py", &["tools"], "mock-tool").await;
    assert_eq!(out["stop_reason"], "tool_use", "{out}");
    let call = &out["content"][0];
    assert_eq!(call["type"], "tool_use", "{out}");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["input"], json!({"city": "Paris"}));
    assert!(
        call["id"].as_str().unwrap().starts_with("call_mock_"),
        "ids are kept: {out}"
    );
    let sent = s.openai.last_request().unwrap();
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        sent["tools"][0]["function"]["parameters"]["required"],
        json!(["city"])
    );
    assert_eq!(sent["tool_choice"], "required");

    let out = run_py(
        &s.app,
        "anthropic_client.py",
        &["tools_stream"],
        "mock-tool",
    )
    .await;
    assert_eq!(out["stop_reason"], "tool_use", "{out}");
    assert_eq!(out["content"][0]["type"], "tool_use", "{out}");
    assert_eq!(out["content"][0]["input"], json!({"city": "Paris"}));
    assert!(
        out["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "input_json"),
        "argument deltas arrive as input_json_delta: {out}"
    );
}

#[actix_rt::test]
async fn anthropic_sdk_tool_result_turn_binds_to_the_call() {
    let s = setup(&[]).await;
    let out = run_py(&s.app, "anthropic_client.py", &["tool_result"], "mock-tool").await;
    // The mock refuses a tool message whose id matches no earlier call (400).
    assert_eq!(
        out["content"][0]["text"], "tool result: sunny, 21 C",
        "{out}"
    );
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(
        out["streamed"][0]["text"], "tool result: sunny, 21 C",
        "{out}"
    );
    let sent = s.openai.last_request().unwrap();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[1]["tool_calls"][0]["id"], "toolu_01A");
    assert_eq!(
        messages[1]["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "toolu_01A", "content": "sunny, 21 C"})
    );
}

#[actix_rt::test]
async fn anthropic_sdk_count_tokens_and_models() {
    let s = setup(&[]).await;
    let out = run_py(
        &s.app,
        "anthropic_client.py",
        &["count_tokens"],
        "mock-echo",
    )
    .await;
    let (small, big) = (out["small"].as_u64().unwrap(), out["big"].as_u64().unwrap());
    assert!(small >= 1 && big > small + 20, "{out}");
    assert_eq!(s.openai.requests(), 0, "counting calls no upstream");
    let out = run_py(&s.app, "anthropic_client.py", &["models"], "mock-echo").await;
    let ids = out["ids"].as_array().unwrap();
    assert!(
        ids.contains(&json!("mock-echo")) && ids.contains(&json!("claude-native-echo")),
        "{out}"
    );
    assert_eq!(out["types"], json!(["model"]));
    assert_eq!(out["has_more"], false);
    assert_eq!(out["first_id"], ids[0]);
    // Without anthropic-version the OpenAI shape stays.
    let (status, list) = s.app.get_json("/v1/models").await;
    assert_eq!(status, 401, "bearer still required: {list}");
}

#[actix_rt::test]
async fn anthropic_sdk_raises_typed_errors_from_anthropic_shapes() {
    let s = setup(&[]).await;
    let out = run_py(&s.app, "anthropic_client.py", &["errors"], "mock-echo").await;
    let expect = |case: &str, class: &str, status: u64, kind: &str| {
        let e = &out[case];
        assert_eq!(e["class"], class, "{case}: {out}");
        assert_eq!(e["status"], status, "{case}: {out}");
        assert_eq!(e["type"], "error", "{case}: {out}");
        assert_eq!(e["error_type"], kind, "{case}: {out}");
    };
    expect("auth", "AuthenticationError", 401, "authentication_error");
    expect("not_found", "NotFoundError", 404, "not_found_error");
    expect(
        "bad_request",
        "BadRequestError",
        400,
        "invalid_request_error",
    );
    expect("rate_limit", "RateLimitError", 429, "rate_limit_error");
    expect("overloaded", "OverloadedError", 529, "overloaded_error");
    for case in ["rate_limit", "overloaded"] {
        assert!(
            out[case]["retry_after"].is_string(),
            "{case} has retry-after: {out}"
        );
    }
    // A failure after the stream started arrives as an `error` event.
    assert_eq!(out["mid_stream"]["class"], "APIStatusError", "{out}");
    assert_eq!(out["mid_stream"]["error_type"], "api_error", "{out}");
}

#[actix_rt::test]
async fn native_anthropic_provider_gets_messages_untranslated_and_chat_translated() {
    let s = setup(&[]).await;
    let out = run_py(
        &s.app,
        "anthropic_client.py",
        &["create"],
        "claude-native-echo",
    )
    .await;
    assert_eq!(
        out["id"], "msg_mock_1",
        "the upstream's message as it was: {out}"
    );
    assert_eq!(out["content"][0]["text"], "echo: hello there");
    assert_eq!(out["usage"]["cache_read_input_tokens"], 1);
    let sent = s.native.last_request().unwrap();
    assert_eq!(
        sent["system"],
        json!([{"type": "text", "text": "Be brief."}]),
        "{sent}"
    );
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": "hello there"}])
    );
    assert_eq!(sent["metadata"], json!({"user_id": "user-7"}));
    assert_eq!(sent["stop_sequences"], json!(["STOP"]));
    assert_eq!(sent["model"], "claude-native-echo");
    assert!(sent.get("exai_dialect").is_none(), "{sent}");
    assert_eq!(s.openai.requests(), 0);

    // The SSE is the upstream's, event for event (the mock pings after the block start).
    let (status, headers, body) = post(
        &s.app,
        "/v1/messages",
        json!({"model": "claude-native-echo", "max_tokens": 9, "stream": true,
               "messages": [{"role": "user", "content": "raw stream"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-exai-provider"], "native");
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"],
        "{body}"
    );
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(body.contains(r#""text":"raw ""#), "{body}");

    // OpenAI-shaped requests to it are translated the other way, streamed or not.
    let chat = |stream: bool| {
        json!({"model": "claude-native-echo", "stream": stream, "stop": "END",
               "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "via chat"}]})
    };
    let resp = s
        .app
        .client
        .post(format!("{}/v1/chat/completions", s.app.base))
        .bearer_auth(TOKEN)
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.unwrap();
    assert_eq!(
        done["choices"][0]["message"]["content"], "echo: via chat",
        "{done}"
    );
    assert_eq!(done["choices"][0]["finish_reason"], "stop");
    assert_eq!(done["usage"]["prompt_tokens"], 8);
    let sent = s.native.last_request().unwrap();
    assert_eq!(sent["system"], "sys");
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(sent["max_tokens"], 4096);
    let resp = s
        .app
        .client
        .post(format!("{}/v1/chat/completions", s.app.base))
        .bearer_auth(TOKEN)
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let content: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "echo: via chat", "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}

#[actix_rt::test]
async fn aliases_claude_fallback_thinking_and_the_cache_apply() {
    let s = setup(&[("EXAI_MODEL_ALIASES", "claude-sonnet-4-5=mock-echo")]).await;
    let ask = |model: &str, stream: bool| {
        json!({"model": model, "max_tokens": 9, "stream": stream,
               "messages": [{"role": "user", "content": "alias me"}]})
    };
    // An alias from the environment, on /v1/messages and on /v1/chat/completions.
    let (status, headers, body) =
        post(&s.app, "/v1/messages", ask("claude-sonnet-4-5", false)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-exai-cache"], "miss");
    let first: Value = serde_json::from_str(&body).unwrap();
    let (_, headers, body) = post(&s.app, "/v1/messages", ask("mock-echo", false)).await;
    assert_eq!(
        headers["x-exai-cache"], "l1",
        "an alias and its target share the cache"
    );
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), first);
    // A cached answer served to a streaming request is replayed as events.
    let (_, headers, body) = post(&s.app, "/v1/messages", ask("mock-echo", true)).await;
    assert_eq!(headers["x-exai-cache"], "l1");
    assert!(
        body.contains("event: message_start") && body.contains("event: message_stop"),
        "{body}"
    );
    assert!(body.contains(r#""text":"echo: alias me""#), "{body}");
    assert_eq!(s.openai.requests(), 1);
    let resp = s
        .app
        .client
        .post(format!("{}/v1/chat/completions", s.app.base))
        .bearer_auth(TOKEN)
        .json(
            &json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "x"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // `[registry.aliases]` and the unmapped-claude fallback to the default model.
    let (status, _, body) = post(&s.app, "/v1/messages", ask("claude-haiku-4-5", false)).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.openai.requests_for("mock-tool") == 1, "{body}");
    let (status, _, body) = post(&s.app, "/v1/messages", ask("claude-opus-9-9", false)).await;
    assert_eq!(status, 200, "claude-* falls back to the default: {body}");
    let (status, _, body) = post(&s.app, "/v1/messages", ask("gpt-unknown", false)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["type"],
        "not_found_error"
    );

    // Reasoning comes back as thinking blocks, whole and streamed.
    let (_, _, body) = post(&s.app, "/v1/messages", ask("mock-reasoning", false)).await;
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["content"][0]["type"], "thinking", "{m}");
    assert_eq!(m["content"][1]["type"], "text", "{m}");
    let (_, _, body) = post(&s.app, "/v1/messages", ask("mock-reasoning", true)).await;
    assert!(body.contains(r#""type":"thinking_delta""#), "{body}");
}

#[actix_rt::test]
async fn messages_take_bearer_auth_and_fallback_chains() {
    let s = setup(&[("EXAI_FALLBACK", "mock-500=mock-echo")]).await;
    let body = json!({"model": "mock-500", "max_tokens": 9,
                      "messages": [{"role": "user", "content": "fall back"}]});
    let send = |token: &'static str| {
        s.app
            .client
            .post(format!("{}/v1/messages", s.app.base))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let resp = send("wrong-token-wrong-token").await.unwrap();
    assert_eq!(resp.status(), 401);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(
        error,
        json!({"type": "error", "error": {"type": "authentication_error",
                                                        "message": "missing or invalid token"}})
    );
    let resp = send(TOKEN).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-exai-provider"], "mock");
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["content"][0]["text"], "echo: fall back", "{m}");
    assert_eq!(s.openai.requests_for("mock-500"), 1);
    assert_eq!(
        s.openai.requests_for("mock-echo"),
        1,
        "the chain's next model answered"
    );
}

#[actix_rt::test]
async fn claude_code_shaped_requests_are_accepted_and_translated() {
    let s = setup(&[]).await;
    // What Claude Code sends: `?beta=true`, betas, cache_control everywhere, thinking,
    // fields with no OpenAI form, and a system turn inside `messages`.
    let body = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 32000, "stream": true,
        "temperature": 1, "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": []}, "metadata": {"user_id": "user_x_session_y"},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>r</system-reminder>"},
                {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]},
            {"role": "system", "content": "late note"},
        ],
        "tools": [{"name": "Bash", "description": "run", "cache_control": {"type": "ephemeral"},
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
    });
    let resp = s
        .app
        .client
        .post(format!("{}/v1/messages?beta=true", s.app.base))
        .bearer_auth(TOKEN)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "claude-* falls back to the default model"
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("event: message_stop"), "{text}");
    let sent = s.openai.last_request().unwrap();
    assert_eq!(sent["model"], "mock-echo");
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "You are Claude Code."})
    );
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "<system-reminder>r</system-reminder>\nhi"})
    );
    assert_eq!(
        sent["messages"][2],
        json!({"role": "system", "content": "late note"})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "Bash");
    for field in [
        "thinking",
        "context_management",
        "cache_control",
        "metadata",
    ] {
        assert!(
            sent.get(field).is_none(),
            "{field} has no OpenAI form: {sent}"
        );
    }
    let (status, _, count) = post(&s.app, "/v1/messages/count_tokens?beta=true", body).await;
    assert_eq!(status, 200, "{count}");
    assert!(
        serde_json::from_str::<Value>(&count).unwrap()["input_tokens"]
            .as_u64()
            .unwrap()
            > 10
    );
}

#[actix_rt::test]
async fn openai_sdk_chat_completions_create_and_stream() {
    let s = setup(&[]).await;
    let out = run_py(&s.app, "openai_client.py", &[], "mock-echo").await;
    assert_eq!(out["content"], "echo: hello from openai", "{out}");
    assert_eq!(out["finish_reason"], "stop");
    assert!(out["usage"]["total_tokens"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(out["stream_text"], "echo: stream from openai", "{out}");
    assert_eq!(out["stream_finish"], json!(["stop"]));
    assert_eq!(out["missing"], "NotFoundError");
}
