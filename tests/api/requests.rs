//! One `request` event per client call, on every surface (issue 17 §1): `/v1/chat/completions`,
//! `/v1/messages`, `/ws` and MCP, each call answered by the mock upstream with a price for its
//! model; `x-request-id` in, out and upstream; usage on streams without changing what the
//! client receives; no per-call `cache.hit`/`cache.miss`/`provider.request`/`tool.call`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app_with};
use crate::ws::{call, mock, mock_toml, session};
use exai_testkit::mock_upstream::MockUpstream;

/// The mock model's price (USD per million tokens).
const PRICES: &str = "mock-echo=2/4";
/// Event types that must no longer be recorded per call.
const GONE: &[&str] = &["cache.hit", "cache.miss", "provider.request", "tool.call"];

async fn app(mock: &MockUpstream) -> TestApp {
    spawn_app_with(&[("EXAI_PRICES", PRICES)], Some(&mock_toml(mock, ""))).await
}

/// Waits until exactly `n` `request` events are stored, then returns them (oldest first).
async fn requests(app: &TestApp, n: usize) -> Vec<Value> {
    let events = eventually(Duration::from_secs(10), "the request events", || async {
        let (status, page) = app.get_json("/api/events?type=request&limit=100").await;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        (status == 200 && events.len() >= n).then_some(events)
    })
    .await;
    // A little longer: a second event for the same call would show now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, page) = app.get_json("/api/events?type=request&limit=100").await;
    let mut events = page["events"].as_array().cloned().unwrap_or(events);
    assert_eq!(events.len(), n, "{events:#?}");
    events.reverse();
    for kind in GONE {
        let (_, page) = app.get_json(&format!("/api/events?type={kind}")).await;
        assert_eq!(page["events"], json!([]), "{kind} still recorded");
    }
    events
}

/// Asserts the fields every answered call has.
fn assert_answered(event: &Value, surface: &str, stream: bool) -> Value {
    assert_eq!(event["type"], "request", "{event}");
    assert_eq!(event["source"], surface, "{event}");
    let d = event["data"].clone();
    assert_eq!(d["surface"], surface, "{d}");
    assert_eq!(d["instance"], "test", "{d}");
    assert_eq!(d["client"], "anonymous", "{d}");
    assert_eq!(d["resolved_model"], "mock-echo", "{d}");
    assert_eq!(d["provider"], "mock", "{d}");
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(d["status"], 200, "{d}");
    assert_eq!(d["ok"], true, "{d}");
    assert!(d.get("error_kind").is_none(), "{d}");
    assert_eq!(d["stream"], stream, "{d}");
    assert!(d["latency_ms"].as_f64().is_some_and(|l| l > 0.0), "{d}");
    assert!(d["upstream_ms"].as_f64().is_some_and(|l| l > 0.0), "{d}");
    let prompt = d["prompt_tokens"].as_u64().unwrap_or(0);
    let completion = d["completion_tokens"].as_u64().unwrap_or(0);
    assert!(prompt > 0 && completion > 0, "{d}");
    let cost = (prompt as f64 * 2.0 + completion as f64 * 4.0) / 1e6;
    assert!(
        (d["cost_usd"].as_f64().unwrap_or(-1.0) - cost).abs() < 1e-12,
        "{d}"
    );
    assert!(
        d["request_id"].as_str().is_some_and(|r| !r.is_empty()),
        "{d}"
    );
    d
}

#[actix_rt::test]
async fn v1_calls_record_one_request_event_each_with_the_request_id_in_out_and_upstream() {
    let mock = mock();
    let app = app(&mock).await;
    let url = format!("{}/v1/chat/completions", app.base);
    let body = |content: &str, stream: bool| {
        json!({"model": "mock-echo", "stream": stream,
               "messages": [{"role": "user", "content": content}]})
    };
    // 1. Non-streaming, with the client's id.
    let resp = app
        .client
        .post(&url)
        .header("x-request-id", "client-id-1")
        .json(&body("one two three", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "client-id-1");
    assert_eq!(
        mock.recorded()
            .last()
            .and_then(|r| r.request_id.clone())
            .as_deref(),
        Some("client-id-1"),
        "the id went upstream"
    );
    // 2. Streaming without include_usage: the client gets no usage, the event has it.
    let resp = app
        .client
        .post(&url)
        .json(&body("four five", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&generated).unwrap().get_version_num(),
        7
    );
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("usage"),
        "the client got usage it did not ask for: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let sent = mock.recorded().last().unwrap().body.clone();
    assert_eq!(sent["stream_options"]["include_usage"], true, "{sent}");
    // 3. Streaming with include_usage: the client gets the usage chunk as it asked.
    let mut asked = body("six", true);
    asked["stream_options"] = json!({"include_usage": true});
    let text = app
        .client
        .post(&url)
        .json(&asked)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"usage\":{"), "{text}");
    // 4. A failing model: one event, with the status the client got.
    let resp = app
        .client
        .post(&url)
        .json(&json!({"model": "mock-500", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let failed_status = resp.status().as_u16();
    assert!(failed_status >= 500, "{failed_status}");
    assert!(resp.headers().contains_key("x-request-id"));

    let events = requests(&app, 4).await;
    let first = assert_answered(&events[0], "v1", false);
    assert_eq!(first["request_id"], "client-id-1");
    assert_eq!(first["model"], "mock-echo");
    assert_eq!(first["cache"], "miss");
    assert!(first.get("ttft_ms").is_none(), "{first}");
    let streamed = assert_answered(&events[1], "v1", true);
    assert_eq!(streamed["request_id"], generated.as_str());
    assert!(
        streamed["ttft_ms"].as_f64().is_some_and(|t| t > 0.0),
        "{streamed}"
    );
    assert_answered(&events[2], "v1", true);
    let failed = events[3]["data"].clone();
    assert_eq!(failed["status"], failed_status, "{failed}");
    assert_eq!(failed["ok"], false);
    assert!(failed["error_kind"].is_string(), "{failed}");
    assert!(failed.get("cost_usd").is_none(), "{failed}");
    assert!(failed.get("prompt_tokens").is_none(), "{failed}");
    // The failed attempt is a provider.attempt; the successful ones are not.
    let (_, page) = app.get_json("/api/events?type=provider.attempt").await;
    let attempts = page["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0]["data"]["outcome"], "failed");
}

#[actix_rt::test]
async fn a_cache_hit_is_one_event_without_attempts_or_usage() {
    let mock = mock();
    let app = app(&mock).await;
    let url = format!("{}/v1/chat/completions", app.base);
    let body = json!({"model": "mock-echo", "messages": [{"role": "user", "content": "same"}]});
    for _ in 0..2 {
        let resp = app.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let events = requests(&app, 2).await;
    assert_answered(&events[0], "v1", false);
    let hit = &events[1]["data"];
    assert_eq!(hit["cache"], "l1", "{hit}");
    assert_eq!(hit["attempts"], 0, "{hit}");
    assert_eq!(hit["status"], 200);
    assert!(hit.get("prompt_tokens").is_none(), "{hit}");
    assert!(hit.get("cost_usd").is_none(), "{hit}");
}

#[actix_rt::test]
async fn anthropic_messages_record_one_request_event() {
    let mock = mock();
    let app = app(&mock).await;
    let resp = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .header("anthropic-version", "2023-06-01")
        .header("x-request-id", "anthropic-1")
        .json(&json!({"model": "mock-echo", "max_tokens": 32,
                      "messages": [{"role": "user", "content": "hello there"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "anthropic-1");
    let events = requests(&app, 1).await;
    let d = assert_answered(&events[0], "anthropic", false);
    assert_eq!(d["request_id"], "anthropic-1");
}

#[actix_rt::test]
async fn ws_tool_calls_record_one_request_event_with_the_tool() {
    let mock = mock();
    let app = app(&mock).await;
    let mut ws = session(&app).await;
    let reply = call(
        &mut ws,
        "ws-call-1",
        "chat",
        json!({"prompt": "hello ws", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let reply = call(&mut ws, "ws-call-2", "version", json!({})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    let events = requests(&app, 2).await;
    let d = assert_answered(&events[0], "ws", false);
    assert_eq!(d["tool"], "chat");
    assert_eq!(d["request_id"], "ws-call-1");
    assert!(d["session_id"].is_string(), "{d}");
    // A tool that calls no model: no routing, no usage, no cache.
    let v = &events[1]["data"];
    assert_eq!(
        (v["tool"].as_str(), v["status"].as_u64()),
        (Some("version"), Some(200))
    );
    assert_eq!(v["attempts"], 0);
    for absent in [
        "provider",
        "resolved_model",
        "cache",
        "prompt_tokens",
        "cost_usd",
    ] {
        assert!(v.get(absent).is_none(), "{absent}: {v}");
    }
}

#[actix_rt::test]
async fn mcp_tool_calls_record_one_request_event_with_the_tool() {
    let mock = mock();
    let app = app(&mock).await;
    let post = |body: Value, session: Option<String>| {
        let mut req = app
            .client
            .post(format!("{}/mcp", app.base))
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let init = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "request-test", "version": "0"}}}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(init.status(), 200);
    let session = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let resp = post(
        json!({"jsonrpc": "2.0", "id": "mcp-call-1", "method": "tools/call", "params": {
            "name": "chat", "arguments": {"prompt": "hello mcp", "model": "mock-echo"}}}),
        Some(session),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("echo: hello mcp"), "{text}");
    let events = requests(&app, 1).await;
    let d = assert_answered(&events[0], "mcp", false);
    assert_eq!(d["tool"], "chat");
    assert!(d["session_id"].is_string(), "{d}");
}
