//! The OpenAI-compatible API (`/v1`): responses, streaming, the OpenAI error shape with the
//! right statuses, auth, pass-through of unknown fields, and the shared chat path with `/ws`.

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::ws::{app_with_mock, call, mock, mock_toml, session};

/// POSTs a chat completion; returns status, headers and body.
async fn complete(app: &TestApp, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

/// Asserts the OpenAI error shape.
fn assert_openai_error(body: &Value, kind: &str) {
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["type"], kind, "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
}

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

#[actix_rt::test]
async fn same_chat_through_ws_and_v1_is_one_upstream_call() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut ws = session(&app).await;
    let via_ws = call(
        &mut ws,
        "c",
        "chat",
        json!({"prompt": "shared answer", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(via_ws["metadata"]["cache"], "miss");
    let (status, headers, body) = complete(
        &app,
        json!({"model": "mock-echo", "messages": user("shared answer")}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        via_ws["outputs"][0]["text"]
    );
    assert_eq!(headers["x-exai-cache"], "l1");
    assert_eq!(mock.requests(), 1);
    // And the other way round: /v1 first, then /ws is the hit.
    let (status, headers, _) = complete(
        &app,
        json!({"model": "mock-echo", "messages": user("v1 first")}),
    )
    .await;
    assert_eq!(
        (status, headers["x-exai-cache"].to_str().unwrap()),
        (200, "miss")
    );
    let via_ws = call(
        &mut ws,
        "d",
        "chat",
        json!({"prompt": "v1 first", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(via_ws["metadata"]["cache"], "l1");
    assert_eq!(via_ws["outputs"][0]["text"], "echo: v1 first");
    assert_eq!(mock.requests(), 2);
}

#[actix_rt::test]
async fn cache_bypass_rules() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let body = json!({"model": "mock-echo", "messages": user("bypass me")});
    complete(&app, body.clone()).await;
    assert_eq!(mock.requests(), 1);
    let (_, headers, _) = complete(
        &app,
        json!({"model": "mock-echo", "messages": user("bypass me"), "cache": false}),
    )
    .await;
    assert_eq!(headers["x-exai-cache"], "bypass");
    assert!(
        mock.last_request().unwrap().get("cache").is_none(),
        "exai's own field went upstream"
    );
    for (name, value) in [
        ("cache-control", "no-cache"),
        ("cache-control", "no-store"),
        ("pragma", "no-cache"),
    ] {
        let resp = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .header(name, value)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-exai-cache"], "bypass", "{name}: {value}");
    }
    assert_eq!(mock.requests(), 5);
}

#[actix_rt::test]
async fn unknown_fields_pass_through() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let (status, _, body) = complete(
        &app,
        json!({"model": "mock-echo", "messages": user("pass"), "frobnicate": {"level": 7}, "top_p": 0.5, "user": "u1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sent = mock.last_request().unwrap();
    assert_eq!(sent["frobnicate"], json!({"level": 7}));
    assert_eq!(sent["top_p"], 0.5);
    assert_eq!(sent["user"], "u1");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["usage"]["total_tokens"].is_u64(), "{body}");
}

#[actix_rt::test]
async fn streaming_sse_forwards_chunks_as_they_arrive_and_ends_with_done() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let started = Instant::now();
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({"model": "mock-trickle-100", "messages": user("alpha beta gamma"), "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let mut buffer = String::new();
    let mut text = String::new();
    let mut first_content_at = None;
    let mut events = Vec::new();
    while let Some(bytes) = stream.next().await {
        buffer.push_str(std::str::from_utf8(&bytes.unwrap()).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let data = event.trim().strip_prefix("data: ").unwrap().to_owned();
            if data != "[DONE]" {
                let chunk: Value = serde_json::from_str(&data).unwrap();
                if let Some(c) = chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                {
                    first_content_at.get_or_insert(started.elapsed());
                    text.push_str(c);
                }
            }
            events.push(data);
        }
    }
    let ended_at = started.elapsed();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(text, "echo: alpha beta gamma");
    let first = first_content_at.unwrap();
    assert!(
        ended_at > first + Duration::from_millis(500),
        "first {first:?}, end {ended_at:?}"
    );
}

#[actix_rt::test]
async fn streaming_from_the_cache_is_rechunked() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    complete(
        &app,
        json!({"model": "mock-echo", "messages": user("cached stream")}),
    )
    .await;
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({"model": "mock-echo", "messages": user("cached stream"), "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-exai-cache"], "l1");
    let text = resp.text().await.unwrap();
    assert!(text.contains("echo: cached stream"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(mock.requests(), 1);
}

#[actix_rt::test]
async fn errors_use_the_openai_shape_and_status() {
    let mock = mock();
    let toml = mock_toml(&mock, "request_timeout_s = 0.3");
    let app = spawn_app_with(&[], Some(&toml)).await;
    let post_raw = |body: &'static str| {
        app.client
            .post(format!("{}/v1/chat/completions", app.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let resp = post_raw("{not json").await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_openai_error(&resp.json().await.unwrap(), "invalid_request_error");

    let (status, _, body) = complete(&app, json!({"model": "mock-echo"})).await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["param"], "messages");

    let (status, _, body) = complete(&app, json!({"messages": user("x")})).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("model"))
    );

    let (status, _, body) = complete(
        &app,
        json!({"model": "no-such-model", "messages": user("x")}),
    )
    .await;
    assert_eq!(status, 404);
    assert_openai_error(&body, "not_found_error");
    assert_eq!(body["error"]["code"], "model_not_found");

    let (status, _, body) =
        complete(&app, json!({"model": "mock-500", "messages": user("x")})).await;
    assert_eq!(status, 502, "{body}");
    assert_openai_error(&body, "server_error");

    let (status, _, body) =
        complete(&app, json!({"model": "mock-hang", "messages": user("x")})).await;
    assert_eq!(status, 504, "{body}");
    assert_openai_error(&body, "server_error");

    // Streaming requests that fail before the first byte get a status too.
    let (status, _, body) = complete(
        &app,
        json!({"model": "mock-500", "messages": user("x"), "stream": true}),
    )
    .await;
    assert_eq!(status, 502, "{body}");
}

#[actix_rt::test]
async fn breaker_open_is_503() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut last = 0;
    for _ in 0..8 {
        let (status, _, body) =
            complete(&app, json!({"model": "mock-500", "messages": user("x")})).await;
        last = status;
        if status == 503 {
            assert_openai_error(&body, "server_error");
            break;
        }
    }
    assert_eq!(last, 503, "the breaker never opened");
}

#[actix_rt::test]
async fn over_the_v1_in_flight_limit_is_429() {
    let mock = mock();
    let toml = mock_toml(&mock, "request_timeout_s = 2");
    let app = spawn_app_with(&[("EXAI_V1_MAX_INFLIGHT", "1")], Some(&toml)).await;
    let client = app.client.clone();
    let url = format!("{}/v1/chat/completions", app.base);
    let hanging = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"model": "mock-hang", "messages": user("x")}))
            .send()
            .await
    });
    crate::helpers::eventually(
        Duration::from_secs(5),
        "the hanging request upstream",
        || async { (mock.requests_for("mock-hang") == 1).then_some(()) },
    )
    .await;
    let (status, _, body) =
        complete(&app, json!({"model": "mock-echo", "messages": user("x")})).await;
    assert_eq!(status, 429, "{body}");
    assert_openai_error(&body, "rate_limit_error");
    let _ = hanging.await;
    let (status, _, _) = complete(&app, json!({"model": "mock-echo", "messages": user("x")})).await;
    assert_eq!(status, 200);
}

#[actix_rt::test]
async fn bearer_auth_with_the_token() {
    let token = "0123456789abcdef-v1";
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_WS_TOKEN", token)]).await;
    let body = json!({"model": "mock-echo", "messages": user("auth")});
    let url = format!("{}/v1/chat/completions", app.base);
    for auth in [None, Some("Bearer wrong-token-0000000"), Some("Basic abc")] {
        let mut req = app.client.post(&url).json(&body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        assert_openai_error(&resp.json().await.unwrap(), "authentication_error");
    }
    let resp = app
        .client
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = app
        .client
        .get(format!("{}/v1/models", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = app
        .client
        .get(format!("{}/v1/models", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(mock.requests(), 1);
}

#[actix_rt::test]
async fn models_come_from_the_registry() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let (status, body) = app.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let echo = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "mock-echo")
        .unwrap();
    assert_eq!(echo["object"], "model");
    assert_eq!(echo["owned_by"], "mock");
    assert_eq!(echo["status"], "closed");
}

#[actix_rt::test]
async fn oversized_bodies_are_413() {
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_WS_MAX_BYTES", "2048")]).await;
    let (status, _, body) = complete(
        &app,
        json!({"model": "mock-echo", "messages": user(&"z".repeat(4096))}),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_openai_error(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "too_large");
    assert_eq!(mock.requests(), 0);
}

#[actix_rt::test]
async fn a_client_leaving_mid_stream_drops_the_upstream_stream() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .json(&json!({"model": "mock-trickle-200", "messages": user("a b c d e"), "stream": true}))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: {"));
    drop(stream);
    crate::helpers::eventually(
        Duration::from_secs(5),
        "the mock to see the disconnect",
        || async { (mock.cancelled_streams() == 1).then_some(()) },
    )
    .await;
}
