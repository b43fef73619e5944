//! Conformance suite for the EXAI tool protocol (`/ws`, DESIGN §7) over a real WebSocket
//! client: every op, every error path, every close code and every limit, against the
//! in-process mock upstream. Calls in flight, streaming, limits over time and shutdown are in
//! [`crate::ws_calls`]; the client helpers below are shared by every `/ws` test.

use std::time::{Duration, Instant};

use exai_testkit::mock_upstream::{MockSettings, MockUpstream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::helpers::{TestApp, eventually, spawn_app_with};

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest a test waits for one frame.
const FRAME_WAIT: Duration = Duration::from_secs(10);
/// The error codes DESIGN §7 allows.
const CODES: &[&str] = &[
    "INVALID_REQUEST",
    "UNAUTHORIZED",
    "NOT_FOUND",
    "TIMEOUT",
    "VALIDATION_ERROR",
    "OVER_CAPACITY",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
    "TOOL_NOT_FOUND",
    "TOOL_EXECUTION_ERROR",
    "PROVIDER_ERROR",
    "PROTOCOL_ERROR",
];

/// Every tool `list_tools` lists, in order.
pub const ALL_TOOLS: &[&str] = &[
    "chat",
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
    "challenge",
    "listmodels",
    "version",
    "status",
    "provider_capabilities",
    "activity",
    "health",
    "glm_web_search",
    "kimi_chat_with_tools",
];

/// A mock upstream.
pub fn mock() -> MockUpstream {
    MockUpstream::start(MockSettings::default()).unwrap()
}

/// `exai.toml` with one provider, `mock`, pointing at `mock`.
pub fn mock_toml(mock: &MockUpstream, extra: &str) -> String {
    format!(
        "[[providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = \"{}\"\n\
         models = [\"mock-echo\", \"mock-hang\", \"mock-trickle\", \"mock-trickle-100\", \
         \"mock-trickle-200\", \"mock-500\", \"mock-slow\"]\nmax_retries = 0\n{extra}\n\
         [registry]\ndefault_model = \"mock-echo\"\n",
        mock.base_url()
    )
}

/// An app whose provider is `mock`.
pub async fn app_with_mock(mock: &MockUpstream, env: &[(&str, &str)]) -> TestApp {
    spawn_app_with(env, Some(&mock_toml(mock, ""))).await
}

/// Opens a WebSocket to `path`.
pub async fn connect_path(app: &TestApp, path: &str) -> Ws {
    connect_async(format!("ws://{}{path}", app.addr))
        .await
        .unwrap()
        .0
}

/// Opens a WebSocket to `/ws`.
pub async fn connect(app: &TestApp) -> Ws {
    connect_path(app, "/ws").await
}

/// Sends a JSON frame.
pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// Sends raw text.
pub async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.to_owned().into()))
        .await
        .unwrap();
}

/// The next text frame as JSON (WebSocket pings are skipped).
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("connection ended")
            .expect("connection failed");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next frame with `op` (and `request_id`, when given), skipping others.
pub async fn recv_op(ws: &mut Ws, op: &str, request_id: Option<&str>) -> Value {
    loop {
        let frame = recv(ws).await;
        if frame["op"] == op && request_id.is_none_or(|id| frame["request_id"] == id) {
            return frame;
        }
    }
}

/// Says hello (no token) and returns the ack.
pub async fn hello(ws: &mut Ws) -> Value {
    send(ws, json!({"op": "hello", "session_id": "test-session"})).await;
    let ack = recv(ws).await;
    assert_eq!(ack["op"], "hello_ack");
    assert_eq!(ack["ok"], true, "{ack}");
    ack
}

/// A connected, greeted session.
pub async fn session(app: &TestApp) -> Ws {
    let mut ws = connect(app).await;
    hello(&mut ws).await;
    ws
}

/// Reads until the server closes; returns the close code.
pub async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .expect("no close frame")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => return 1005,
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// Calls a tool and returns its `call_tool_res`.
pub async fn call(ws: &mut Ws, id: &str, name: &str, arguments: Value) -> Value {
    send(
        ws,
        json!({"op": "call_tool", "request_id": id, "name": name, "arguments": arguments}),
    )
    .await;
    recv_op(ws, "call_tool_res", Some(id)).await
}

/// Asserts an error reply's shape: `ok:false`, a known code, a message and details.
pub fn assert_error(frame: &Value, code: &str) {
    assert_eq!(frame["ok"], false, "{frame}");
    let error = &frame["error"];
    assert!(
        CODES.contains(&error["code"].as_str().unwrap_or("")),
        "{frame}"
    );
    assert_eq!(error["code"], code, "{frame}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{frame}"
    );
    assert!(error["details"].is_object(), "{frame}");
}

#[actix_rt::test]
async fn hello_then_every_op() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = connect(&app).await;
    send(
        &mut ws,
        json!({"op": "hello", "session_id": "my-session_1"}),
    )
    .await;
    let ack = recv(&mut ws).await;
    assert_eq!(
        ack,
        json!({"op": "hello_ack", "ok": true, "session_id": "my-session_1"})
    );

    send(&mut ws, json!({"op": "list_tools", "request_id": "l1"})).await;
    let tools = recv_op(&mut ws, "list_tools_res", None).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ALL_TOOLS);
    for tool in tools["tools"].as_array().unwrap() {
        assert!(
            tool["description"].is_string() && tool["inputSchema"]["type"] == "object",
            "{tool}"
        );
    }

    send(&mut ws, json!({"op": "ping", "request_id": "p1"})).await;
    assert_eq!(
        recv(&mut ws).await,
        json!({"op": "pong", "ok": true, "request_id": "p1"})
    );

    let version = call(&mut ws, "v1", "version", json!({})).await;
    assert_eq!(version["ok"], true, "{version}");
    assert_eq!(version["outputs"][0]["type"], "text");
    let text: Value =
        serde_json::from_str(version["outputs"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(text["version"], env!("CARGO_PKG_VERSION"));

    // The `_EXAI-WS` suffix is normalised away.
    let models = call(&mut ws, "m1", "listmodels_EXAI-WS", json!({})).await;
    assert_eq!(models["ok"], true, "{models}");
    let listing: Value =
        serde_json::from_str(models["outputs"][0]["text"].as_str().unwrap()).unwrap();
    let mock_provider = listing["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "mock")
        .unwrap();
    assert_eq!(mock_provider["status"], "closed");
    assert!(
        mock_provider["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "mock-echo")
    );

    let status = call(&mut ws, "s1", "status", json!({})).await;
    assert_eq!(status["ok"], true, "{status}");
    let status: Value =
        serde_json::from_str(status["outputs"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(status["providers"][0]["name"], "mock");
    assert_eq!(status["providers"][0]["breaker"], "closed");
    assert_eq!(status["cache"]["enabled"], true);
    assert!(status["pipeline"]["recorded"].is_u64());
    assert_eq!(status["ws"]["connections"], 1);

    let chat = call(
        &mut ws,
        "c1",
        "chat",
        json!({"prompt": "hello there", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(chat["ok"], true, "{chat}");
    assert_eq!(chat["outputs"][0]["text"], "echo: hello there");
    assert_eq!(chat["metadata"]["provider"], "mock");
    assert_eq!(chat["metadata"]["cache"], "miss");

    // A session id outside 3-64 [A-Za-z0-9_-] is replaced by a generated one.
    for bad in ["x", "has space", &"y".repeat(65)] {
        let mut other = connect(&app).await;
        send(&mut other, json!({"op": "hello", "session_id": bad})).await;
        let ack = recv(&mut other).await;
        assert_eq!(ack["ok"], true);
        let id = ack["session_id"].as_str().unwrap();
        assert_ne!(id, bad);
        assert!(
            (3..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
    }

    let mut other = connect(&app).await;
    send(&mut other, json!({"op": "hello", "session_id": 12345})).await;
    let ack = recv(&mut other).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(ack["session_id"].is_string());

    // Connections and calls are recorded as events.
    for kind in ["ws.connected", "request"] {
        eventually(Duration::from_secs(10), kind, || async {
            let (status, page) = app.get_json(&format!("/api/events?type={kind}")).await;
            (status == 200 && page["events"].as_array().is_some_and(|e| !e.is_empty()))
                .then_some(())
        })
        .await;
    }
    drop(ws);
    eventually(Duration::from_secs(10), "ws.disconnected", || async {
        let (status, page) = app.get_json("/api/events?type=ws.disconnected").await;
        (status == 200 && page["events"].as_array().is_some_and(|e| !e.is_empty())).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn handshake_failures_answer_then_close_with_their_codes() {
    let token = "0123456789abcdef-token";
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_WS_TOKEN", token)]).await;

    let mut ws = connect(&app).await;
    send_text(&mut ws, "this is not json").await;
    let ack = recv(&mut ws).await;
    assert_eq!(
        (
            ack["op"].as_str(),
            ack["ok"].as_bool(),
            ack["error"].as_str()
        ),
        (Some("hello_ack"), Some(false), Some("invalid_hello"))
    );
    assert_eq!(close_code(&mut ws).await, 4000);

    let mut ws = connect(&app).await;
    send(&mut ws, json!({"op": "hello", "token": 12})).await;
    assert_eq!(recv(&mut ws).await["error"], "invalid_hello");
    assert_eq!(close_code(&mut ws).await, 4000);

    let mut ws = connect(&app).await;
    send(&mut ws, json!({"op": "list_tools"})).await;
    assert_eq!(recv(&mut ws).await["error"], "missing_hello");
    assert_eq!(close_code(&mut ws).await, 4001);

    for hello in [
        json!({"op": "hello"}),
        json!({"op": "hello", "token": "0123456789abcdef-wrong"}),
    ] {
        let mut ws = connect(&app).await;
        send(&mut ws, hello).await;
        let ack = recv(&mut ws).await;
        assert_eq!(
            (ack["ok"].as_bool(), ack["error"].as_str()),
            (Some(false), Some("unauthorized"))
        );
        assert_eq!(close_code(&mut ws).await, 4003);
    }

    let mut ws = connect(&app).await;
    send(
        &mut ws,
        json!({"op": "hello", "token": token, "session_id": "good-one"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["ok"], true);
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await["op"], "pong");

    // A binary first frame is not a hello.
    let mut ws = connect(&app).await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(recv(&mut ws).await["error"], "invalid_hello");
    assert_eq!(close_code(&mut ws).await, 4000);
}

#[actix_rt::test]
async fn hello_timeout_closes_with_4002() {
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_WS_HELLO_TIMEOUT", "0.2")]).await;
    let mut ws = connect(&app).await;
    let started = Instant::now();
    assert_eq!(close_code(&mut ws).await, 4002);
    assert!(started.elapsed() < Duration::from_secs(5));
    // A prompt hello is not affected.
    let mut ws = session(&app).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await["op"], "pong");
}

#[actix_rt::test]
async fn connection_limits_close_with_1008() {
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_WS_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let a = session(&app).await;
    let _b = session(&app).await;
    let mut c = connect(&app).await;
    assert_eq!(close_code(&mut c).await, 1008);
    // A freed place is reusable.
    drop(a);
    eventually(Duration::from_secs(5), "a place to free up", || async {
        let mut ws = connect(&app).await;
        send(&mut ws, json!({"op": "hello"})).await;
        match tokio::time::timeout(FRAME_WAIT, ws.next()).await.ok()?? {
            Ok(Message::Text(t)) if t.contains("hello_ack") => Some(()),
            _ => None,
        }
    })
    .await;

    let app = app_with_mock(&mock, &[("EXAI_WS_MAX_CONNECTIONS", "1")]).await;
    let _only = session(&app).await;
    let mut over = connect(&app).await;
    assert_eq!(close_code(&mut over).await, 1008);
}

#[actix_rt::test]
async fn malformed_frames_get_error_replies_and_the_session_survives() {
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_WS_MAX_BYTES", "4096")]).await;
    let mut ws = session(&app).await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let long_op = json!({"op": "x".repeat(3000)}).to_string();
    let corpus: Vec<String> = vec![
        "not json".into(),
        "{".into(),
        "".into(),
        "[]".into(),
        "42".into(),
        "\"a string\"".into(),
        "null".into(),
        "true".into(),
        "{}".into(),
        r#"{"op": 5}"#.into(),
        r#"{"op": null}"#.into(),
        r#"{"op": "dance"}"#.into(),
        r#"{"op": "call_tool"}"#.into(),
        r#"{"op": "call_tool", "request_id": 7, "name": "chat"}"#.into(),
        r#"{"op": "call_tool", "request_id": "", "name": "chat"}"#.into(),
        r#"{"op": "call_tool", "request_id": "r1"}"#.into(),
        r#"{"op": "call_tool", "request_id": "r1", "name": 5}"#.into(),
        r#"{"op": "call_tool", "request_id": "r1", "name": "chat", "arguments": []}"#.into(),
        r#"{"op": "cancel"}"#.into(),
        r#"{"op": "cancel", "request_id": {"a": 1}}"#.into(),
        r#"{"op": "hello"}"#.into(),
        "\u{0}\u{1}\u{2}".into(),
        "{\"op\": \"ping\"".into(),
        "\u{feff}{\"op\":\"ping\"}".into(),
        "ünïcödé 🚀".into(),
        deep,
        long_op,
        "x".repeat(5000),
    ];
    for (i, text) in corpus.iter().enumerate() {
        send_text(&mut ws, text).await;
        let reply = recv(&mut ws).await;
        assert_eq!(reply["op"], "error", "frame {i} ({:.40}): {reply}", text);
        let code = reply["error"]["code"].as_str().unwrap_or("");
        assert!(CODES.contains(&code), "frame {i}: {reply}");
        assert_eq!(reply["ok"], false);
    }
    // Binary frames and text frames that are not UTF-8.
    ws.send(Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()))
        .await
        .unwrap();
    let reply = recv(&mut ws).await;
    assert_error(&reply, "PROTOCOL_ERROR");
    ws.send(Message::Frame(Frame::message(
        vec![0xff, 0xfe, 0x80],
        OpCode::Data(Data::Text),
        true,
    )))
    .await
    .unwrap();
    let reply = recv(&mut ws).await;
    assert_error(&reply, "PROTOCOL_ERROR");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{reply}"
    );
    // An oversized frame names the limit.
    send_text(
        &mut ws,
        &json!({"op": "ping", "pad": "p".repeat(5000)}).to_string(),
    )
    .await;
    let reply = recv(&mut ws).await;
    assert_eq!(reply["error"]["details"]["limit"], 4096, "{reply}");
    // Still usable.
    send(&mut ws, json!({"op": "ping", "request_id": "alive"})).await;
    assert_eq!(recv(&mut ws).await["request_id"], "alive");
    let chat = call(&mut ws, "after", "chat", json!({"prompt": "still here"})).await;
    assert_eq!(chat["outputs"][0]["text"], "echo: still here");
    // And the server still takes new sessions.
    let mut other = session(&app).await;
    send(&mut other, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut other).await["op"], "pong");
}

#[actix_rt::test]
async fn tool_errors_carry_codes_and_name_the_argument() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = session(&app).await;
    let cases = [
        (json!({}), "prompt"),
        (json!({"prompt": 3}), "prompt"),
        (json!({"prompt": "x", "temperature": 1.5}), "temperature"),
        (json!({"prompt": "x", "temperature": "warm"}), "temperature"),
        (json!({"prompt": "x", "max_tokens": 0}), "max_tokens"),
        (json!({"prompt": "x", "max_tokens": "many"}), "max_tokens"),
        (
            json!({"prompt": "x", "thinking_mode": "extreme"}),
            "thinking_mode",
        ),
        (json!({"prompt": "x", "stream": "yes"}), "stream"),
        (
            json!({"prompt": "x", "continuation_id": "no spaces allowed"}),
            "continuation_id",
        ),
        (json!({"prompt": "x", "model": 5}), "model"),
        (json!({"prompt": "x", "system_prompt": {}}), "system_prompt"),
    ];
    for (i, (arguments, argument)) in cases.into_iter().enumerate() {
        let res = call(&mut ws, &format!("bad{i}"), "chat", arguments).await;
        assert_error(&res, "VALIDATION_ERROR");
        assert_eq!(res["error"]["details"]["argument"], argument, "{res}");
        assert!(
            res["error"]["message"].as_str().unwrap().contains(argument),
            "{res}"
        );
    }
    let ok = call(
        &mut ws,
        "fine",
        "chat",
        json!({"prompt": "all valid", "system_prompt": "be brief", "temperature": 0.2, "max_tokens": 50,
               "thinking_mode": "max", "stream": false}),
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");

    assert_error(
        &call(&mut ws, "t1", "no_such_tool", json!({})).await,
        "TOOL_NOT_FOUND",
    );
    assert_error(
        &call(
            &mut ws,
            "t2",
            "chat",
            json!({"prompt": "x", "model": "nope"}),
        )
        .await,
        "NOT_FOUND",
    );
    let failed = call(
        &mut ws,
        "t3",
        "chat",
        json!({"prompt": "x", "model": "mock-500"}),
    )
    .await;
    assert_error(&failed, "PROVIDER_ERROR");
    assert_eq!(failed["error"]["details"]["provider"], "mock");
    assert_eq!(failed["error"]["details"]["upstream_status"], 500);
    let cancelled = {
        send(
            &mut ws,
            json!({"op": "cancel", "request_id": "never-started"}),
        )
        .await;
        recv_op(&mut ws, "cancelled", Some("never-started")).await
    };
    assert_error(&cancelled, "NOT_FOUND");
}
