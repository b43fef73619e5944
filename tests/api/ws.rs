//! Conformance suite for the EXAI tool protocol (`/ws`, DESIGN §7) over a real WebSocket
//! client: every op, every error path, every close code and every limit, against the
//! in-process mock upstream.

use std::time::{Duration, Instant};

use exai::mock_upstream::{MockSettings, MockUpstream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use actix_web::{App, HttpServer, web};
use exai::gateway::Gateway;
use exai::surface::SurfaceState;
use exai::ws::limits::WsLimits;
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::recorder::Recorder;

use crate::helpers::{TestApp, eventually, spawn_app_with, test_config};

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
    for kind in ["ws.connected", "tool.call"] {
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

#[actix_rt::test]
async fn ninth_call_in_a_session_is_over_capacity_and_cancel_frees_a_slot() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = session(&app).await;
    for i in 0..8 {
        let id = format!("hang{i}");
        send(
            &mut ws,
            json!({"op": "call_tool", "request_id": id, "name": "chat",
                             "arguments": {"prompt": format!("wait {i}"), "model": "mock-hang"}}),
        )
        .await;
    }
    eventually(Duration::from_secs(10), "8 upstream calls", || async {
        (mock.requests_for("mock-hang") == 8).then_some(())
    })
    .await;
    let ninth = call(
        &mut ws,
        "ninth",
        "chat",
        json!({"prompt": "one too many", "model": "mock-hang"}),
    )
    .await;
    assert_error(&ninth, "OVER_CAPACITY");
    // Refused before any work: the upstream never saw it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(mock.requests_for("mock-hang"), 8);
    // Other ops still work while the session is full.
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv_op(&mut ws, "pong", None).await["ok"], true);

    send(&mut ws, json!({"op": "cancel", "request_id": "hang3"})).await;
    let cancelled = recv_op(&mut ws, "cancelled", Some("hang3")).await;
    assert_eq!(cancelled["ok"], true, "{cancelled}");
    let fits = call(&mut ws, "fits", "version", json!({})).await;
    assert_eq!(fits["ok"], true, "{fits}");
}

#[actix_rt::test]
async fn global_in_flight_limit_spans_sessions() {
    let mock = mock();
    let app = app_with_mock(
        &mock,
        &[
            ("EXAI_WS_SESSION_MAX_INFLIGHT", "2"),
            ("EXAI_WS_GLOBAL_MAX_INFLIGHT", "3"),
        ],
    )
    .await;
    let mut a = session(&app).await;
    let mut b = session(&app).await;
    for id in ["a1", "a2"] {
        send(
            &mut a,
            json!({"op": "call_tool", "request_id": id, "name": "chat",
                            "arguments": {"prompt": id, "model": "mock-hang"}}),
        )
        .await;
    }
    assert_error(
        &call(&mut a, "a3", "version", json!({})).await,
        "OVER_CAPACITY",
    );
    send(
        &mut b,
        json!({"op": "call_tool", "request_id": "b1", "name": "chat",
                        "arguments": {"prompt": "b1", "model": "mock-hang"}}),
    )
    .await;
    eventually(Duration::from_secs(10), "3 upstream calls", || async {
        (mock.requests_for("mock-hang") == 3).then_some(())
    })
    .await;
    let over = call(&mut b, "b2", "version", json!({})).await;
    assert_error(&over, "OVER_CAPACITY");
    assert!(
        over["error"]["message"]
            .as_str()
            .unwrap()
            .contains("across all sessions"),
        "{over}"
    );
    // Closing a session frees its calls' global slots.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    for attempt in 0.. {
        let res = call(&mut b, &format!("b-retry-{attempt}"), "version", json!({})).await;
        if res["ok"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "global slots were not freed: {res}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn cancel_drops_the_upstream_stream() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = session(&app).await;
    send(&mut ws, json!({"op": "call_tool", "request_id": "s1", "name": "chat",
                         "arguments": {"prompt": "a b c d", "model": "mock-trickle-200", "stream": true}}))
    .await;
    let first = recv_op(&mut ws, "stream_chunk", Some("s1")).await;
    assert_eq!(first["chunk"], "echo: ");
    send(&mut ws, json!({"op": "cancel", "request_id": "s1"})).await;
    let cancelled = recv_op(&mut ws, "cancelled", Some("s1")).await;
    assert_eq!(cancelled["ok"], true);
    eventually(
        Duration::from_secs(5),
        "the mock to see the disconnect",
        || async { (mock.cancelled_streams() == 1).then_some(()) },
    )
    .await;
    // No result follows a cancellation; the session carries on.
    send(&mut ws, json!({"op": "ping", "request_id": "after-cancel"})).await;
    loop {
        let frame = recv(&mut ws).await;
        assert_ne!(frame["op"], "call_tool_res", "{frame}");
        if frame["op"] == "pong" {
            break;
        }
    }
}

#[actix_rt::test]
async fn streaming_chunks_arrive_in_order_as_they_come() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = session(&app).await;
    let started = Instant::now();
    send(&mut ws, json!({"op": "call_tool", "request_id": "st", "name": "chat",
                         "arguments": {"prompt": "one two three", "model": "mock-trickle-100", "stream": true}}))
    .await;
    let mut text = String::new();
    let mut first_at = None;
    let complete_at = loop {
        let frame = recv(&mut ws).await;
        match frame["op"].as_str() {
            Some("stream_chunk") => {
                first_at.get_or_insert(started.elapsed());
                text.push_str(frame["chunk"].as_str().unwrap());
            }
            Some("stream_complete") => break started.elapsed(),
            Some("progress") => {}
            _ => panic!("unexpected {frame}"),
        }
    };
    let res = recv_op(&mut ws, "call_tool_res", Some("st")).await;
    assert_eq!(text, "echo: one two three");
    assert_eq!(res["outputs"][0]["text"], text);
    let first_at = first_at.unwrap();
    // The trickle lasts >1 s; the first chunk must not wait for the end.
    assert!(
        complete_at > first_at + Duration::from_millis(500),
        "first {first_at:?}, complete {complete_at:?}"
    );
}

#[actix_rt::test]
async fn continuation_id_carries_the_conversation() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = session(&app).await;
    let first = call(
        &mut ws,
        "t1",
        "chat",
        json!({"prompt": "my name is Ada", "system_prompt": "be kind"}),
    )
    .await;
    let thread = first["metadata"]["continuation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = call(
        &mut ws,
        "t2",
        "chat",
        json!({"prompt": "what is my name", "continuation_id": thread}),
    )
    .await;
    assert_eq!(second["ok"], true, "{second}");
    assert_eq!(second["metadata"]["continuation_id"], thread.as_str());
    assert_eq!(second["metadata"]["cache"], "bypass");
    let sent = mock.last_request().unwrap();
    let contents: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(
        contents,
        vec!["my name is Ada", "echo: my name is Ada", "what is my name"]
    );
    // A continuation is never served from the cache.
    let again = call(
        &mut ws,
        "t3",
        "chat",
        json!({"prompt": "what is my name", "continuation_id": thread}),
    )
    .await;
    assert_eq!(again["metadata"]["cache"], "bypass");
    assert_eq!(mock.requests(), 3);
}

#[actix_rt::test]
async fn rate_limits_per_session_and_per_ip() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    // One session bursting past its bucket.
    let mut ws = session(&app).await;
    for i in 0..300 {
        send(&mut ws, json!({"op": "ping", "request_id": i})).await;
    }
    let mut limited = 0;
    for _ in 0..300 {
        let frame = recv(&mut ws).await;
        if frame["op"] == "error" {
            assert_error(&frame, "OVER_CAPACITY");
            limited += 1;
        }
    }
    assert!(limited > 0, "no ping was rate limited");
    // The session recovers as its bucket refills.
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut ws, json!({"op": "ping", "request_id": "later"})).await;
    assert_eq!(recv(&mut ws).await["op"], "pong");

    // Several sessions from one IP, each within its own bucket, exceed the IP's.
    let app = app_with_mock(&mock, &[]).await;
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(session(&app).await);
    }
    for ws in &mut sessions {
        for i in 0..95 {
            send(ws, json!({"op": "ping", "request_id": i})).await;
        }
    }
    let mut limited = 0;
    for ws in &mut sessions {
        for _ in 0..95 {
            if recv(ws).await["op"] == "error" {
                limited += 1;
            }
        }
    }
    assert!(limited > 0, "no ping was limited by the per-IP bucket");
}

#[actix_rt::test]
async fn tool_timeout_answers_timeout() {
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_TOOL_TIMEOUT", "0.3")]).await;
    let mut ws = session(&app).await;
    let started = Instant::now();
    let res = call(
        &mut ws,
        "slow",
        "chat",
        json!({"prompt": "x", "model": "mock-hang"}),
    )
    .await;
    assert_error(&res, "TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Its slot is free again.
    assert_eq!(
        call(&mut ws, "next", "version", json!({})).await["ok"],
        true
    );
}

#[actix_rt::test]
async fn websocket_upgrade_of_root_speaks_the_protocol() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = connect_path(&app, "/").await;
    hello(&mut ws).await;
    assert_eq!(call(&mut ws, "r", "version", json!({})).await["ok"], true);
    let client = crate::helpers::http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    assert_eq!(resp.headers()["location"], "/dashboard");
}

/// Serves `/ws` and `/v1` with explicit `limits` (for knobs the configuration does not
/// expose yet: heartbeat, progress), on the current actix System.
async fn custom_server(
    mock: &MockUpstream,
    limits: impl FnOnce(&mut WsLimits),
) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(&dir, &[], Some(&mock_toml(mock, "")));
    let recorder = Recorder::new("test", 10_000);
    let health = HealthBoard::new();
    let gateway = Gateway::build(&config, &recorder, &health).unwrap();
    let mut ws_limits = WsLimits::from_server_config(&config.server);
    limits(&mut ws_limits);
    let state = web::Data::new(SurfaceState::with_limits(
        &config,
        ws_limits,
        gateway.dispatcher(),
        gateway.cache_handle(),
        recorder,
        health,
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(exai::surface::configure)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    (format!("ws://{addr}/ws"), dir)
}

#[actix_rt::test]
async fn long_calls_report_progress() {
    let mock = mock();
    let (url, _dir) =
        custom_server(&mock, |l| l.progress_interval = Duration::from_millis(100)).await;
    let mut ws = connect_async(&url).await.unwrap().0;
    hello(&mut ws).await;
    send(
        &mut ws,
        json!({"op": "call_tool", "request_id": "slow", "name": "chat",
                         "arguments": {"prompt": "take your time", "model": "mock/mock-slow-600"}}),
    )
    .await;
    let mut progress = 0;
    loop {
        let frame = recv(&mut ws).await;
        match frame["op"].as_str() {
            Some("progress") => {
                assert_eq!(
                    (frame["request_id"].as_str(), frame["tool"].as_str()),
                    (Some("slow"), Some("chat"))
                );
                progress += 1;
            }
            Some("call_tool_res") => {
                assert_eq!(frame["ok"], true, "{frame}");
                break;
            }
            _ => panic!("unexpected {frame}"),
        }
    }
    assert!(progress >= 3, "{progress} progress frames");
}

#[actix_rt::test]
async fn heartbeat_pings_and_drops_silent_clients() {
    let mock = mock();
    let (url, _dir) = custom_server(&mock, |l| {
        l.heartbeat_interval = Duration::from_millis(100);
        l.client_timeout = Duration::from_millis(350);
    })
    .await;
    // A client that answers pings (tungstenite does while it reads) stays connected.
    let mut live = connect_async(&url).await.unwrap().0;
    hello(&mut live).await;
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(800);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until.into(), live.next()).await {
        if matches!(msg, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} pings");
    send(&mut live, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut live).await["op"], "pong");
    // A client that stops reading (so never answers) is closed with 1001.
    let mut silent = connect_async(&url).await.unwrap().0;
    hello(&mut silent).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(close_code(&mut silent).await, 1001);
}

#[actix_rt::test]
async fn shutdown_lets_running_calls_finish_then_closes_sessions() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut idle = session(&app).await;
    let mut busy = session(&app).await;
    send(
        &mut busy,
        json!({"op": "call_tool", "request_id": "last", "name": "chat",
                           "arguments": {"prompt": "finish me", "model": "mock/mock-slow-700"}}),
    )
    .await;
    eventually(Duration::from_secs(5), "the call upstream", || async {
        (mock.requests() == 1).then_some(())
    })
    .await;
    let started = Instant::now();
    app.trigger.trigger();
    assert_eq!(close_code(&mut idle).await, 1001);
    let res = recv_op(&mut busy, "call_tool_res", Some("last")).await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(close_code(&mut busy).await, 1001);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "sessions held the shutdown up"
    );
}
