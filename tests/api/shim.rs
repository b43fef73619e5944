//! The original EXAI shims, frame for frame (Zazzles2908/EX-AI-MCP-Server
//! `scripts/runtime/run_ws_shim.py`): each reader below does exactly what one generation of
//! the shim does with the daemon's replies, so these tests fail if a shim in the field would.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use exai_testkit::mock_upstream::MockUpstream;

use crate::helpers::TestApp;
use crate::ws::{Ws, app_with_mock, connect, mock, send};

/// The token the shims send in `hello`.
const TOKEN: &str = "shim-token-0123456789";

/// The next text frame, exactly as the shim's `ws.recv()` gets it (pings are handled by the
/// client library).
async fn raw_recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .expect("connection failed");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// An app with a token and a progress interval far below the slow model's latency.
async fn app() -> (MockUpstream, TestApp) {
    let mock = mock();
    let app = app_with_mock(
        &mock,
        &[
            ("EXAI_WS_TOKEN", TOKEN),
            ("EXAI_WS_PROGRESS_INTERVAL_MS", "50"),
        ],
    )
    .await;
    (mock, app)
}

/// Main-branch shim: `hello` with MCP client fields, then the first frame is `hello_ack`.
async fn main_branch_connect(app: &TestApp) -> Ws {
    let mut ws = connect(app).await;
    send(
        &mut ws,
        json!({
            "op": "hello",
            "protocolVersion": "2024-11-05",
            "capabilities": {},
            "clientInfo": {"name": "exai-mcp-shim", "version": "1.0.0"},
            "token": TOKEN
        }),
    )
    .await;
    let ack = raw_recv(&mut ws).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ws
}

/// Main-branch shim's `handle_list_tools`: `{"op":"list_tools","id":…}`, then `tools` of the
/// first frame.
async fn main_branch_list_tools(ws: &mut Ws) -> Vec<String> {
    send(ws, json!({"op": "list_tools", "id": "list_140234"})).await;
    let data = raw_recv(ws).await;
    data["tools"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Main-branch shim's `handle_call_tool`: `call_tool` with `id`, then `result` of the FIRST
/// frame (whatever it is).
async fn main_branch_call(ws: &mut Ws, name: &str, arguments: Value) -> Vec<String> {
    send(
        ws,
        json!({"op": "call_tool", "id": "call_140234", "name": name, "arguments": arguments}),
    )
    .await;
    let data = raw_recv(ws).await;
    text_items(data.get("result"))
}

/// The newer (stdio-bridge) shim: the same frames, reading `outputs`, then `result`.
async fn bridge_call(ws: &mut Ws, name: &str, arguments: Value) -> Vec<String> {
    send(
        ws,
        json!({"op": "call_tool", "id": "call_99", "name": name, "arguments": arguments}),
    )
    .await;
    let data = raw_recv(ws).await;
    text_items(data.get("outputs").or_else(|| data.get("result")))
}

/// `{type, text}` items (or strings) as the shims turn them into `TextContent`.
fn text_items(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|item| match item {
                    Value::Object(o) if o.contains_key("text") => {
                        o["text"].as_str().unwrap_or_default().to_owned()
                    }
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The 2025-11-04 shim: `hello` with `session_id`, `token` and `jwt`; `list_tools` with
/// `request_id` whose first reply must be `list_tools_res`; `tool_call` with `tool.name`;
/// then frames until `call_tool_res` with its `request_id`, skipping `progress`, preferring
/// a top-level `text`, else `outputs`.
async fn nov04_connect(app: &TestApp) -> Ws {
    let mut ws = connect(app).await;
    send(
        &mut ws,
        json!({"op": "hello", "session_id": "vscode-instance-1", "token": TOKEN, "jwt": ""}),
    )
    .await;
    let ack = raw_recv(&mut ws).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ws
}

async fn nov04_list_tools(ws: &mut Ws) -> Vec<String> {
    send(
        ws,
        json!({"op": "list_tools", "request_id": "6f1c2a9e-list"}),
    )
    .await;
    let msg = raw_recv(ws).await;
    assert_eq!(
        msg["op"], "list_tools_res",
        "unexpected reply from daemon: {msg}"
    );
    msg["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn nov04_call(ws: &mut Ws, name: &str, arguments: Value) -> (Vec<String>, usize) {
    let req_id = "0b9d3f4e-5a6b-4c7d-8e9f-call";
    send(
        ws,
        json!({"op": "tool_call", "request_id": req_id, "tool": {"name": name}, "arguments": arguments}),
    )
    .await;
    let mut skipped_progress = 0;
    loop {
        let msg = raw_recv(ws).await;
        if msg["request_id"] == req_id && msg["op"] == "progress" {
            skipped_progress += 1;
            continue;
        }
        if msg["op"] == "call_tool_res" && msg["request_id"] == req_id {
            assert!(msg.get("error").is_none(), "Daemon error: {msg}");
            if let Some(text) = msg["text"].as_str().filter(|t| !t.trim().is_empty()) {
                return (vec![text.trim().to_owned()], skipped_progress);
            }
            return (text_items(msg.get("outputs")), skipped_progress);
        }
    }
}

#[actix_rt::test]
async fn main_branch_shim_frames_get_their_answer() {
    let (_mock, app) = app().await;
    let mut ws = main_branch_connect(&app).await;
    let tools = main_branch_list_tools(&mut ws).await;
    assert_eq!(tools, crate::ws::ALL_TOOLS);
    let answer = main_branch_call(
        &mut ws,
        "chat_EXAI-WS",
        json!({"prompt": "hello from the main branch", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(answer, vec!["echo: hello from the main branch"]);
    // A call longer than the progress interval: the first frame is still the answer.
    let slow = main_branch_call(
        &mut ws,
        "chat",
        json!({"prompt": "slow one", "model": "mock/mock-slow-400"}),
    )
    .await;
    assert_eq!(slow, vec!["echo: slow one"]);
    // A streamed call by id alone: no stream_chunk frames reach it, only the answer.
    let streamed = main_branch_call(
        &mut ws,
        "chat",
        json!({"prompt": "a b c", "model": "mock-trickle-100", "stream": true}),
    )
    .await;
    assert_eq!(streamed, vec!["echo: a b c"]);
    // An error still reads as text, and carries the id.
    send(
        &mut ws,
        json!({"op": "call_tool", "id": 42, "name": "no_such_tool", "arguments": {}}),
    )
    .await;
    let error = raw_recv(&mut ws).await;
    assert_eq!(
        (
            error["op"].as_str(),
            error["id"].as_i64(),
            error["ok"].as_bool()
        ),
        (Some("call_tool_res"), Some(42), Some(false)),
        "{error}"
    );
    assert_eq!(error["request_id"], "42");
    assert!(
        text_items(error.get("result"))[0].contains("TOOL_NOT_FOUND"),
        "{error}"
    );
    // A malformed call with an id: the error frame carries it too.
    send(
        &mut ws,
        json!({"op": "call_tool", "id": "bad-1", "name": 5}),
    )
    .await;
    let error = raw_recv(&mut ws).await;
    assert_eq!(
        (error["op"].as_str(), error["id"].as_str()),
        (Some("error"), Some("bad-1"))
    );
}

#[actix_rt::test]
async fn newer_shim_reads_outputs_then_result() {
    let (_mock, app) = app().await;
    let mut ws = main_branch_connect(&app).await;
    assert_eq!(
        main_branch_list_tools(&mut ws).await.len(),
        crate::ws::ALL_TOOLS.len()
    );
    let answer = bridge_call(
        &mut ws,
        "chat",
        json!({"prompt": "bridge says hi", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(answer, vec!["echo: bridge says hi"]);
    let slow = bridge_call(
        &mut ws,
        "chat",
        json!({"prompt": "bridge waits", "model": "mock/mock-slow-300"}),
    )
    .await;
    assert_eq!(slow, vec!["echo: bridge waits"]);
    // `outputs` and `result` are the same list, and `text` repeats the single output.
    send(
        &mut ws,
        json!({"op": "call_tool", "id": "v", "name": "version", "arguments": {}}),
    )
    .await;
    let res = raw_recv(&mut ws).await;
    assert_eq!(res["outputs"], res["result"]);
    assert_eq!(res["text"], res["outputs"][0]["text"]);
    assert_eq!(
        (res["id"].as_str(), res["request_id"].as_str()),
        (Some("v"), Some("v"))
    );
}

#[actix_rt::test]
async fn nov04_shim_prefers_text_matches_request_id_and_skips_progress() {
    let (_mock, app) = app().await;
    let mut ws = nov04_connect(&app).await;
    let tools = nov04_list_tools(&mut ws).await;
    assert_eq!(tools, crate::ws::ALL_TOOLS);
    let (answer, _) = nov04_call(
        &mut ws,
        "chat",
        json!({"prompt": "november shim", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(answer, vec!["echo: november shim"]);
    // Calls identified by request_id do get progress frames; this shim skips them.
    let (slow, progress) = nov04_call(
        &mut ws,
        "chat_EXAI-WS",
        json!({"prompt": "november waits", "model": "mock/mock-slow-400"}),
    )
    .await;
    assert_eq!(slow, vec!["echo: november waits"]);
    assert!(progress >= 2, "{progress} progress frames");
}
