//! Issue 12, the HTTP side: cross-origin refusal (Origin, Host, CORS, JSON-only `/v1`), slow
//! request bodies, and the smaller items (bearer scheme case, global CLI flags, URL
//! redaction, dashboard security headers, `/api` parameter errors, pre-hello connections).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::helpers::{TestApp, eventually, exai_bin, spawn_app_with};
use crate::ws::{Ws, app_with_mock, close_code, connect_path, hello, mock, mock_toml, session};

const EVIL: &str = "http://evil.example";
const TOKEN: &str = "hardening-token-0123456789";

fn chat_body(content: &str) -> Value {
    json!({"model": "mock-echo", "messages": [{"role": "user", "content": content}]})
}

/// Opens a WebSocket to `path` with extra headers.
async fn ws_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}{path}", app.addr)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    connect_async(req).await.map(|(ws, _)| ws)
}

fn ws_status(result: Result<Ws, WsError>) -> Option<u16> {
    match result {
        Err(WsError::Http(resp)) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// POSTs `body` to `/v1/chat/completions` with these headers.
async fn post_v1(
    app: &TestApp,
    content_type: &str,
    headers: &[(&str, &str)],
    body: String,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/v1/chat/completions", app.base))
        .header("content-type", content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// Sends raw bytes and reads the answer until the server closes or `within` passes.
async fn raw_exchange(app: &TestApp, request: &str, within: Duration) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw GET with this Host header; returns the status line.
async fn get_with_host(app: &TestApp, path: &str, host: &str) -> String {
    let answer = raw_exchange(
        app,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
    .await;
    answer.lines().next().unwrap_or_default().to_owned()
}

/// A connection that announces a `/v1` body of `length` bytes and sends only `sent` of them.
async fn slow_body(app: &TestApp, length: usize, sent: usize) -> TcpStream {
    slow_body_to(app, "/v1/chat/completions", length, sent).await
}

/// A POST to `path` that announces `length` bytes and sends only `sent` of them.
async fn slow_body_to(app: &TestApp, path: &str, length: usize, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; sent]).await.unwrap();
    stream
}

#[actix_rt::test]
async fn foreign_origins_are_refused_on_every_surface_before_anything_runs() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    for origin in [EVIL, "null"] {
        let headers = [("origin", origin)];
        assert_eq!(ws_status(ws_with(&app, "/ws", &headers).await), Some(403));
        assert_eq!(ws_status(ws_with(&app, "/", &headers).await), Some(403));
        assert_eq!(
            ws_status(ws_with(&app, "/ws/dashboard", &headers).await),
            Some(403)
        );
        // The CORS "simple request" a page can send without a preflight.
        let resp = post_v1(
            &app,
            "text/plain",
            &headers,
            chat_body("from a hostile page").to_string(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 403);
        assert!(resp.headers().get("access-control-allow-origin").is_none());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "permission_error", "{body}");
        assert_eq!(body["error"]["code"], "forbidden_origin", "{body}");
        assert!(body["error"]["message"].as_str().is_some(), "{body}");
        // Even JSON with a matching type is refused for a foreign page.
        let resp = post_v1(
            &app,
            "application/json",
            &headers,
            chat_body("x").to_string(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 403);
        for path in ["/api/events", "/metrics", "/health", "/v1/models"] {
            let resp = app
                .client
                .get(format!("{}{path}", app.base))
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 403, "{path}");
            assert!(resp.headers().get("access-control-allow-origin").is_none());
            let body: Value = resp.json().await.unwrap();
            if path.starts_with("/api") {
                assert!(body["error"].as_str().is_some(), "{body}");
            }
        }
        // A foreign preflight gets no CORS grant either.
        let resp = app
            .client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/v1/chat/completions", app.base),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403);
        assert!(resp.headers().get("access-control-allow-origin").is_none());
    }
    assert_eq!(mock.requests(), 0, "a refused request reached the upstream");
}

#[actix_rt::test]
async fn own_and_allowed_origins_work_and_only_they_get_cors() {
    let mock = mock();
    let app = app_with_mock(
        &mock,
        &[(
            "EXAI_ALLOWED_ORIGINS",
            "https://app.example, http://tool.example:3000",
        )],
    )
    .await;
    let port = app.addr.port();
    let own = [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ];
    for origin in own
        .iter()
        .map(String::as_str)
        .chain(["https://app.example"])
    {
        let resp = post_v1(
            &app,
            "application/json",
            &[("origin", origin)],
            chat_body(&format!("from {origin}")).to_string(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 200, "{origin}");
        assert_eq!(resp.headers()["access-control-allow-origin"], origin);
        assert!(
            resp.headers()
                .get_all("vary")
                .iter()
                .any(|v| v.to_str().unwrap().contains("Origin"))
        );
        let mut ws = ws_with(&app, "/ws", &[("origin", origin)]).await.unwrap();
        hello(&mut ws).await;
    }
    // No Origin (SDKs, curl): unaffected, and no CORS headers.
    let resp = post_v1(&app, "application/json", &[], chat_body("sdk").to_string()).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    drop(session(&app).await);
    // The preflight of an allowed origin.
    let resp = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/chat/completions", app.base),
        )
        .header("origin", "http://tool.example:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, mcp-session-id",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "http://tool.example:3000");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    for name in [
        "authorization",
        "content-type",
        "x-request-id",
        "anthropic-version",
        "x-api-key",
        "mcp-session-id",
        "mcp-protocol-version",
    ] {
        assert!(allowed.contains(name), "{name} not in {allowed}");
    }
    assert!(h.get("access-control-max-age").is_some());
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    assert_eq!(mock.requests(), 5);
}

#[actix_rt::test]
async fn v1_posts_must_be_json() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let resp = post_v1(&app, content_type, &[], chat_body("x").to_string()).await;
        assert_eq!(resp.status().as_u16(), 415, "{content_type}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["param"], "content-type", "{body}");
    }
    assert_eq!(mock.requests(), 0);
    let resp = post_v1(
        &app,
        "application/json; charset=utf-8",
        &[],
        chat_body("json with a charset").to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
}

#[actix_rt::test]
async fn without_a_token_only_this_servers_host_names_are_served() {
    let app = spawn_app_with(&[], None).await;
    let port = app.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let status = get_with_host(&app, "/health", &host).await;
        assert!(status.contains(" 200 "), "{host}: {status}");
    }
    // DNS rebinding: a foreign name pointed at 127.0.0.1.
    for path in ["/health", "/api/events", "/ws", "/v1/models"] {
        let status = get_with_host(&app, path, &format!("evil.example:{port}")).await;
        assert!(status.contains(" 403 "), "{path}: {status}");
    }
    // With a token, the name is not what protects exai.
    let app = spawn_app_with(&[("EXAI_WS_TOKEN", TOKEN)], None).await;
    let status = get_with_host(&app, "/health", "exai.internal.example").await;
    assert!(status.contains(" 200 "), "{status}");
}

#[actix_rt::test]
async fn bearer_scheme_is_case_insensitive() {
    let app = spawn_app_with(
        &[("EXAI_WS_TOKEN", TOKEN), ("EXAI_DASHBOARD_TOKEN", TOKEN)],
        None,
    )
    .await;
    for path in ["/v1/models", "/api/events", "/dashboard"] {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let resp = app
                .client
                .get(format!("{}{path}", app.base))
                .header("authorization", format!("{scheme} {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200, "{path} {scheme}");
        }
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .header("authorization", format!("Basic {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
    }
}

#[actix_rt::test]
async fn slow_bodies_do_not_hold_v1_slots() {
    let mock = mock();
    let app = app_with_mock(
        &mock,
        &[
            ("EXAI_V1_MAX_INFLIGHT", "2"),
            ("EXAI_HTTP_BODY_TIMEOUT_MS", "5000"),
        ],
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..6 {
        slow.push(slow_body(&app, 100_000, 10).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = post_v1(
        &app,
        "application/json",
        &[],
        chat_body("normal").to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let resp = post_v1(
        &app,
        "application/json",
        &[],
        chat_body("again").to_string(),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    drop(slow);
}

#[actix_rt::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let mock = mock();
    let app = app_with_mock(&mock, &[("EXAI_HTTP_BODY_TIMEOUT_MS", "300")]).await;
    let started = Instant::now();
    let mut stream = slow_body(&app, 1000, 10).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(mock.requests(), 0);
}

/// A foreign page's request to the Messages API is refused in Anthropic's error shape, which
/// is what its SDKs parse, and never reaches the upstream.
#[actix_rt::test]
async fn messages_refusals_use_anthropics_shape() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let message = json!({"model": "mock-echo", "max_tokens": 16,
        "messages": [{"role": "user", "content": "from a hostile page"}]});
    let resp = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .header("origin", EVIL)
        .header("content-type", "text/plain")
        .body(message.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "permission_error", "{body}");
    let resp = app
        .client
        .post(format!("{}/v1/messages", app.base))
        .header("content-type", "text/plain")
        .body(message.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(mock.requests(), 0);
}

/// `/v1/messages` reads its body under the same bounds as `/v1/chat/completions`: trickling
/// clients hold no in-flight place, and a body that does not arrive in time is 408 in
/// Anthropic's error shape.
#[actix_rt::test]
async fn messages_bodies_are_bounded_like_v1_bodies() {
    let mock = mock();
    let app = app_with_mock(
        &mock,
        &[
            ("EXAI_V1_MAX_INFLIGHT", "2"),
            ("EXAI_HTTP_BODY_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    let mut slow = Vec::new();
    for _ in 0..6 {
        slow.push(slow_body_to(&app, "/v1/messages", 100_000, 10).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let message = json!({"model": "mock-echo", "max_tokens": 16,
        "messages": [{"role": "user", "content": "normal"}]});
    for _ in 0..2 {
        let resp = app
            .client
            .post(format!("{}/v1/messages", app.base))
            .json(&message)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow[0].read_to_end(&mut out)).await;
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""type":"error""#), "{answer}");
    assert!(answer.contains("invalid_request_error"), "{answer}");
    drop(slow);
}

#[actix_rt::test]
async fn bodies_beyond_the_in_flight_budget_are_503_until_they_are_done() {
    let mock = mock();
    let app = app_with_mock(
        &mock,
        &[
            ("EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT", "1000"),
            ("EXAI_HTTP_BODY_TIMEOUT_MS", "5000"),
        ],
    )
    .await;
    let padded = chat_body(&"p".repeat(300)).to_string();
    // A declared length is reserved up front.
    let held = slow_body(&app, 800, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = post_v1(&app, "application/json", &[], padded.clone()).await;
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_budget_exhausted", "{body}");
    // Released when that client goes away.
    drop(held);
    eventually(Duration::from_secs(5), "budget released", || {
        let app = &app;
        let padded = padded.clone();
        async move {
            let resp = post_v1(app, "application/json", &[], padded).await;
            (resp.status().as_u16() == 200).then_some(())
        }
    })
    .await;
    // A chunked body is counted by the bytes that have arrived.
    let mut chunked = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n384\r\n{}\r\n",
        app.addr,
        " ".repeat(900)
    );
    chunked.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = post_v1(&app, "application/json", &[], padded.clone()).await;
    assert_eq!(resp.status().as_u16(), 503);
    drop(chunked);
}

#[test]
fn serve_flags_apply_before_or_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("other.toml"),
        "[server]\nv1_max_inflight = 7\n",
    )
    .unwrap();
    for args in [
        &["--port", "4321", "--host", "127.0.0.2", "check-config"][..],
        &["check-config", "--port", "4321", "--host", "127.0.0.2"][..],
        &[
            "--port",
            "1",
            "check-config",
            "--port",
            "4321",
            "--host",
            "127.0.0.2",
        ][..],
    ] {
        let out = exai_bin()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["server"]["port"], 4321, "{args:?}");
        assert_eq!(config["server"]["host"], "127.0.0.2", "{args:?}");
    }
    for args in [
        &["--config", "other.toml", "check-config"][..],
        &["check-config", "--config", "other.toml"][..],
    ] {
        let out = exai_bin()
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        let config: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["server"]["v1_max_inflight"], 7, "{args:?}");
    }
}

#[actix_rt::test]
async fn port_before_serve_is_where_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let mut child = exai_bin()
        .current_dir(dir.path())
        .args(["--port", &port.to_string(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::helpers::http();
    let ok = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{port}/health/live"))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ok.is_ok(),
        "`exai --port {port} serve` did not listen on {port}"
    );
}

#[actix_rt::test]
async fn secrets_in_provider_url_queries_are_redacted_everywhere() {
    const LEAK: &str = "sk-QUERYLEAK-51c2";
    let mock = mock();
    let base = format!("{}?api_key={LEAK}", mock.base_url());
    let toml = mock_toml(&mock, "").replace(&mock.base_url(), &base);
    let app = spawn_app_with(&[], Some(&toml)).await;
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains("api_key=REDACTED"), "{health}");
    assert!(!health.contains(LEAK), "{health}");
    let mut dashboard = connect_path(&app, "/ws/dashboard").await;
    let snapshot = crate::ws::recv(&mut dashboard).await.to_string();
    assert!(snapshot.contains("api_key=REDACTED"), "{snapshot}");
    assert!(!snapshot.contains(LEAK));
    // check-config, from the same file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exai.toml"), &toml).unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("api_key=REDACTED"), "{stdout}");
    assert!(!stdout.contains(LEAK) && !String::from_utf8_lossy(&out.stderr).contains(LEAK));
}

#[actix_rt::test]
async fn dashboard_sends_security_headers() {
    let app = spawn_app_with(&[], None).await;
    let resp = app
        .client
        .get(format!("{}/dashboard", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let html = resp.text().await.unwrap();
    // The policy holds because the page has no inline code.
    assert!(!html.contains("<script>") && !html.contains("style="));
}

#[actix_rt::test]
async fn api_parameter_errors_are_json_400s_naming_the_parameter() {
    let app = spawn_app_with(&[], None).await;
    for (path, param) in [
        (
            "/api/metrics/timeseries?since=-9223372036854775808",
            "since",
        ),
        ("/api/metrics/timeseries?until=9223372036854775807", "until"),
        ("/api/metrics/timeseries?since=2000&until=1000", "since"),
        ("/api/events?limit=1&limit=2", "limit"),
        ("/api/events?type=a&type=b", "type"),
        ("/api/metrics/summary?window=1h&window=2h", "window"),
    ] {
        let resp = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["param"], param, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(param)),
            "{path}: {body}"
        );
    }
}

/// Connects and says hello; `None` if the server closed instead of accepting.
async fn try_hello(app: &TestApp) -> Option<Ws> {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let mut ws = connect_path(app, "/ws").await;
    crate::ws::send(&mut ws, json!({"op": "hello"})).await;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => {
                let ack: Value = serde_json::from_str(&t).ok()?;
                return (ack["ok"] == true).then_some(ws);
            }
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

#[actix_rt::test]
async fn idle_sockets_waiting_for_hello_cannot_lock_out_a_real_client() {
    let app = spawn_app_with(
        &[
            ("EXAI_WS_MAX_CONNECTIONS", "4"),
            ("EXAI_WS_MAX_PENDING_HELLO", "2"),
        ],
        None,
    )
    .await;
    // More idle sockets than the total limit: each new one evicts the oldest idle one.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_path(&app, "/ws").await);
    }
    assert_eq!(close_code(&mut idle[0]).await, 1008);
    assert_eq!(close_code(&mut idle[1]).await, 1008);
    // A real client gets in at once and completes its hello.
    let mut real = session(&app).await;
    assert_eq!(close_code(&mut idle[2]).await, 1008);
    let ping = crate::ws::call(&mut real, "v", "version", json!({})).await;
    assert_eq!(ping["ok"], true, "{ping}");
    // Greeted sessions are never evicted: three more make the total full, then a fourth
    // newcomer is refused, since nothing waiting for hello is left to close.
    drop(idle);
    let mut greeted = Vec::new();
    for _ in 0..3 {
        greeted.push(eventually(Duration::from_secs(5), "a free place", || try_hello(&app)).await);
    }
    let mut refused = connect_path(&app, "/ws").await;
    assert_eq!(close_code(&mut refused).await, 1008);
    let still = crate::ws::call(&mut real, "v2", "version", json!({})).await;
    assert_eq!(still["ok"], true, "{still}");
}
