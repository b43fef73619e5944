//! The `/ws` conformance suite, continued: calls in flight (per session and global limits,
//! cancellation), streaming, conversations, rate limits, timeouts, progress, heartbeat and
//! shutdown. The client helpers are in [`crate::ws`].

use std::time::{Duration, Instant};

use actix_web::{App, HttpServer, web};
use exai::gateway::Gateway;
use exai::state::SurfaceState;
use exai::ws::limits::WsLimits;
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::recorder::Recorder;
use exai_testkit::mock_upstream::MockUpstream;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{eventually, test_config};
use crate::ws::{
    app_with_mock, assert_error, call, close_code, connect_path, hello, mock, mock_toml, recv,
    recv_op, send, session,
};

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
    let mut ws_limits = WsLimits::from(&config.server);
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
            .configure(exai::app::configure_surfaces)
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
