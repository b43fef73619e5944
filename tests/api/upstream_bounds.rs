//! Hostile upstreams: answers over `EXAI_UPSTREAM_MAX_BYTES` are cut off early with a 502
//! `upstream_too_large`, an SSE event over `EXAI_SSE_MAX_EVENT_BYTES` and a stream past its
//! provider's `stream_max_s` end with an error event and `[DONE]`, and a 200 whose body is an
//! error object is a 502 carrying the upstream's message and type, never cached.

use std::time::Duration;

use exai_testkit::mock_upstream::QUOTA_MESSAGE;
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app_with};
use crate::ws::{assert_error, call, mock, mock_toml, session};

/// Far more than any socket buffer holds, so a body read whole would show in the count.
const HUGE: u64 = 1 << 30;
/// What the mock may have pushed into socket buffers before exai hung up.
const SENT_BOUND: u64 = 64 << 20;

/// A body for an assertion message, cut short (a failing run must not print a gigabyte).
fn short(body: &Value) -> String {
    body.to_string().chars().take(500).collect()
}

/// Events for an assertion message, each cut short.
fn brief(events: &[String]) -> Vec<String> {
    events
        .iter()
        .map(|e| e.chars().take(200).collect())
        .collect()
}

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

async fn complete(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A streaming request: the status and every `data:` payload, in order.
async fn stream(app: &TestApp, model: &str) -> (u16, Vec<String>) {
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({"model": model, "messages": user("stream"), "stream": true}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(bytes) = body.next().await {
        buffer.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            events.push(event.trim().trim_start_matches("data: ").to_owned());
        }
    }
    (status, events)
}

/// The error object of an SSE error event.
fn error_event(data: &str) -> Value {
    let cut: String = data.chars().take(200).collect();
    let v: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{cut}: {e}"));
    assert!(v["error"].is_object(), "not an error event: {cut}");
    v["error"].clone()
}

#[actix_rt::test]
async fn an_answer_over_the_cap_is_cut_off_with_502_upstream_too_large() {
    let mock = mock();
    let app = spawn_app_with(
        &[("EXAI_UPSTREAM_MAX_BYTES", "65536")],
        Some(&mock_toml(&mock, "")),
    )
    .await;
    // Chunked without a length: cut off once past the cap.
    let (status, body) = complete(
        &app,
        json!({"model": format!("mock/mock-big-{HUGE}"), "messages": user("big")}),
    )
    .await;
    assert_eq!(status, 502, "{}", short(&body));
    assert_eq!(
        body["error"]["code"],
        "upstream_too_large",
        "{}",
        short(&body)
    );
    assert_eq!(body["error"]["type"], "server_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("65536") && message.contains("EXAI_UPSTREAM_MAX_BYTES"),
        "{message}"
    );
    eventually(
        Duration::from_secs(10),
        "the upstream request aborted",
        || async { (mock.cancelled_streams() >= 1).then_some(()) },
    )
    .await;
    let sent = mock.body_bytes_sent();
    assert!(
        sent < SENT_BOUND,
        "{sent} bytes were sent: the body was read on"
    );
    assert_eq!(
        mock.requests_for(&format!("mock-big-{HUGE}")),
        1,
        "not retried"
    );

    // A Content-Length over the cap fails before the body is read.
    mock.reset();
    let (status, body) = complete(
        &app,
        json!({"model": format!("mock/mock-big-cl-{HUGE}"), "messages": user("big")}),
    )
    .await;
    assert_eq!(status, 502, "{}", short(&body));
    assert_eq!(
        body["error"]["code"],
        "upstream_too_large",
        "{}",
        short(&body)
    );
    eventually(
        Duration::from_secs(10),
        "the upstream request aborted",
        || async { (mock.cancelled_streams() >= 1).then_some(()) },
    )
    .await;
    assert!(mock.body_bytes_sent() < SENT_BOUND);

    // Under the cap, a large answer passes whole.
    let (status, body) = complete(
        &app,
        json!({"model": "mock/mock-big-60000", "messages": user("fits")}),
    )
    .await;
    assert_eq!(status, 200, "{}", short(&body));
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .map(str::len),
        Some(60_000)
    );

    // /ws: a coded provider error naming the kind.
    let mut ws = session(&app).await;
    let failed = call(
        &mut ws,
        "big",
        "chat",
        json!({"prompt": "x", "model": format!("mock/mock-big-{HUGE}")}),
    )
    .await;
    assert_error(&failed, "PROVIDER_ERROR");
    assert_eq!(
        failed["error"]["details"]["error_kind"],
        "upstream_too_large"
    );
}

#[actix_rt::test]
async fn an_sse_event_over_the_cap_ends_the_stream_with_an_error_then_done() {
    let mock = mock();
    let app = spawn_app_with(
        &[("EXAI_SSE_MAX_EVENT_BYTES", "65536")],
        Some(&mock_toml(&mock, "")),
    )
    .await;
    let (status, events) = stream(&app, &format!("mock/mock-sse-line-{HUGE}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{:?}",
        brief(&events)
    );
    let error = error_event(&events[events.len() - 2]);
    assert_eq!(error["code"], "upstream_too_large", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("SSE event") && m.contains("65536")),
        "{error}"
    );
    eventually(
        Duration::from_secs(10),
        "the upstream stream aborted",
        || async { (mock.cancelled_streams() >= 1).then_some(()) },
    )
    .await;
    assert!(mock.body_bytes_sent() < SENT_BOUND);
}

#[actix_rt::test]
async fn a_stream_past_stream_max_s_ends_with_an_error_then_done() {
    let mock = mock();
    let app = spawn_app_with(&[], Some(&mock_toml(&mock, "stream_max_s = 0.4"))).await;
    let (status, events) = tokio::time::timeout(
        Duration::from_secs(20),
        stream(&app, "mock/mock-endless-20"),
    )
    .await
    .expect("the endless stream was not cut off");
    assert_eq!(status, 200);
    assert!(
        events.len() > 3,
        "some chunks came first: {:?}",
        brief(&events)
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let error = error_event(&events[events.len() - 2]);
    assert_eq!(error["code"], "timeout", "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("stream lifetime timeout after 400 ms")),
        "{error}"
    );
    eventually(
        Duration::from_secs(10),
        "the upstream stream aborted",
        || async { (mock.cancelled_streams() >= 1).then_some(()) },
    )
    .await;
}

#[actix_rt::test]
async fn a_fast_endless_stream_is_cut_off_at_stream_max_s_too() {
    let mock = mock();
    let app = spawn_app_with(&[], Some(&mock_toml(&mock, "stream_max_s = 0.4"))).await;
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({"model": "mock/mock-endless-0", "messages": user("fast"), "stream": true}))
        .send()
        .await
        .unwrap();
    // Only the tail is kept: the stream may be long.
    let mut body = resp.bytes_stream();
    let mut tail: Vec<u8> = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(bytes) = body.next().await {
            tail.extend_from_slice(&bytes.unwrap());
            let keep = tail.len().saturating_sub(4096);
            tail.drain(..keep);
        }
    })
    .await;
    assert!(read.is_ok(), "the fast endless stream was not cut off");
    let tail = String::from_utf8_lossy(&tail);
    assert!(tail.ends_with("data: [DONE]\n\n"), "{tail}");
    assert!(tail.contains("stream lifetime timeout"), "{tail}");
}

#[actix_rt::test]
async fn a_200_with_an_error_body_is_a_502_and_never_cached() {
    let mock = mock();
    let app = spawn_app_with(&[], Some(&mock_toml(&mock, ""))).await;
    let request = json!({"model": "mock/mock-quota", "messages": user("quota")});
    for round in 1..=2 {
        let (status, body) = complete(&app, request.clone()).await;
        assert_eq!(status, 502, "{}", short(&body));
        assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
        assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(QUOTA_MESSAGE)),
            "{body}"
        );
        assert_eq!(
            mock.requests_for("mock-quota"),
            round,
            "the error was not served from the cache"
        );
    }
    // A 200 without choices is no answer either.
    let (status, body) = complete(
        &app,
        json!({"model": "mock/mock-no-choices", "messages": user("empty")}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "malformed", "{body}");
    // The same request streamed is not a cached "success" either.
    for model in ["mock/mock-quota", "mock/mock-quota-json"] {
        let (status, events) = stream(&app, model).await;
        assert_eq!(status, 200);
        assert_eq!(events.len(), 2, "{model}: {:?}", brief(&events));
        let error = error_event(&events[0]);
        assert_eq!(error["type"], "insufficient_quota", "{model}: {error}");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(QUOTA_MESSAGE)),
            "{error}"
        );
        assert_eq!(events[1], "[DONE]");
        assert!(
            !events.iter().any(|e| e.contains("finish_reason\":\"stop")),
            "{:?}",
            brief(&events)
        );
    }
    // /ws: a coded error with the upstream's message and type.
    let mut ws = session(&app).await;
    let failed = call(
        &mut ws,
        "q",
        "chat",
        json!({"prompt": "quota", "model": "mock/mock-quota"}),
    )
    .await;
    assert_error(&failed, "PROVIDER_ERROR");
    assert!(
        failed["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(QUOTA_MESSAGE)),
        "{failed}"
    );
    assert_eq!(
        failed["error"]["details"]["upstream_type"],
        "insufficient_quota"
    );
}
