//! exai's `/mcp` at the protocol's edges, over plain HTTP: version negotiation, the stateless
//! era's headers, sessions (missing, unknown, expired, capped), the token and origins, and
//! cancellation. The SDK-driven tests and the shared helpers are in [`crate::mcp`].

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually};
use crate::mcp::{HANG, TOKEN, mcp_event, provider_in_flight, setup};

// ---- protocol edges over plain HTTP ----

/// POSTs a JSON-RPC message to `/mcp` with `headers`.
async fn post(app: &TestApp, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn initialize_body(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "edge-test", "version": "0"}}})
}

/// Initializes; returns the session id.
async fn open_session(app: &TestApp) -> String {
    let resp = post(app, &[], initialize_body("2025-11-25")).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    id
}

fn list(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"})
}

#[actix_rt::test]
async fn unsupported_versions_get_the_spec_error_naming_the_supported_ones() {
    let (app, _mock) = setup(&[]).await;
    // Handshake era: an unknown MCP-Protocol-Version header is a 400.
    let session = open_session(&app).await;
    let resp = post(
        &app,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "1999-01-01"),
        ],
        list(2),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32022, "{body}");
    assert_eq!(body["error"]["data"]["requested"], "1999-01-01");
    let supported = body["error"]["data"]["supported"].as_array().unwrap();
    assert!(supported.contains(&json!("2025-11-25")) && supported.contains(&json!("2026-07-28")));
    // Stateless era: an unknown _meta version is -32022 too.
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let resp = post(
        &app,
        &[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "server/discover"),
        ],
        body,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32022, "{body}");
    assert_eq!(body["id"], 3);
    // An initialize naming an unknown version is answered with the newest handshake version.
    let resp = post(&app, &[], initialize_body("2099-01-01")).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25", "{body}");
}

#[actix_rt::test]
async fn stateless_requests_need_matching_headers_and_discover_names_the_versions() {
    let (app, _mock) = setup(&[]).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {}});
    let discover =
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}});
    let resp = post(
        &app,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        discover.clone(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("mcp-session-id").is_none(),
        "stateless: no session"
    );
    let body: Value = resp.json().await.unwrap();
    let result = &body["result"];
    assert_eq!(result["resultType"], "complete", "{body}");
    assert!(
        result["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    assert!(result["capabilities"]["tools"].is_object(), "{body}");
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "exai"
    );
    // Mcp-Method must match the body.
    let resp = post(
        &app,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        discover,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");
    // Mcp-Name must match the tool.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "version", "arguments": {}, "_meta": meta}});
    let resp = post(
        &app,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "chat"),
        ],
        call.clone(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    // Matching headers: a JSON answer when SSE is not accepted, with structured content.
    let resp = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "version")
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["result"]["isError"], false, "{body}");
    assert!(body["result"]["structuredContent"].is_object(), "{body}");
    // Unknown tools are a protocol error.
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "no_such_tool", "_meta": meta}});
    let resp = post(
        &app,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "no_such_tool"),
        ],
        call,
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602, "{body}");
}

#[actix_rt::test]
async fn sessions_missing_is_400_unknown_is_404_and_delete_ends_one() {
    let (app, _mock) = setup(&[]).await;
    let resp = post(&app, &[], list(1)).await;
    assert_eq!(resp.status(), 400);
    let resp = post(&app, &[("mcp-session-id", "not-a-session")], list(1)).await;
    assert_eq!(resp.status(), 404);
    let session = open_session(&app).await;
    let resp = post(
        &app,
        &[
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        list(2),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["result"]["tools"].as_array().unwrap().len() > 5);
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["components"]["mcp"]["sessions"], 1, "{health}");
    let resp = app
        .client
        .delete(format!("{}/mcp", app.base))
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = post(&app, &[("mcp-session-id", &session)], list(3)).await;
    assert_eq!(resp.status(), 404);
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["components"]["mcp"]["sessions"], 0, "{health}");
    // GET offers no stream.
    let resp = app
        .client
        .get(format!("{}/mcp", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
}

#[actix_rt::test]
async fn sessions_expire_and_the_cap_evicts_the_longest_idle() {
    let (app, _mock) = setup(&[
        ("EXAI_MCP_MAX_SESSIONS", "2"),
        ("EXAI_MCP_SESSION_TTL", "0.4"),
    ])
    .await;
    let a = open_session(&app).await;
    let b = open_session(&app).await;
    assert_eq!(
        post(&app, &[("mcp-session-id", &a)], list(1))
            .await
            .status(),
        200
    );
    let c = open_session(&app).await;
    assert_eq!(
        post(&app, &[("mcp-session-id", &b)], list(2))
            .await
            .status(),
        404,
        "b was evicted"
    );
    assert_eq!(
        post(&app, &[("mcp-session-id", &a)], list(3))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&app, &[("mcp-session-id", &c)], list(4))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        post(&app, &[("mcp-session-id", &a)], list(5))
            .await
            .status(),
        404,
        "a expired"
    );
    eventually(
        Duration::from_secs(10),
        "eviction and expiry events",
        || async {
            let (_, page) = app.get_json("/api/events?type=mcp.session").await;
            let events = page["events"].as_array()?.clone();
            let evicted = events.iter().any(|e| e["data"]["reason"] == "evicted");
            let expired = events.iter().any(|e| e["data"]["reason"] == "expired");
            (evicted && expired).then_some(())
        },
    )
    .await;
}

#[actix_rt::test]
async fn the_token_is_required_with_www_authenticate_and_foreign_origins_are_403() {
    let (app, _mock) = setup(&[("EXAI_WS_TOKEN", TOKEN)]).await;
    let resp = post(&app, &[], initialize_body("2025-11-25")).await;
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let resp = post(
        &app,
        &[("authorization", "Bearer wrong-token-000000000")],
        initialize_body("2025-11-25"),
    )
    .await;
    assert_eq!(resp.status(), 401);
    let bearer = format!("Bearer {TOKEN}");
    let resp = post(
        &app,
        &[("authorization", &bearer)],
        initialize_body("2025-11-25"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // A foreign browser origin is refused before anything else (DNS rebinding).
    let resp = post(
        &app,
        &[
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ],
        initialize_body("2025-11-25"),
    )
    .await;
    assert_eq!(resp.status(), 403);
    let resp = app
        .client
        .delete(format!("{}/mcp", app.base))
        .header("mcp-session-id", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[actix_rt::test]
async fn notifications_cancelled_alone_aborts_the_call_and_frees_its_slots() {
    let (app, _mock) = setup(&[]).await;
    let session = open_session(&app).await;
    let call = json!({"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call", "params": {
        "name": "chat", "arguments": {"prompt": "hang", "model": HANG}}});
    // A JSON-only client: the answer is one response, so the request stays open.
    let request = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .json(&call)
        .send();
    let pending = actix_rt::spawn(request);
    eventually(Duration::from_secs(10), "the call to start", || async {
        let (_, health) = app.get_json("/health").await;
        (health["components"]["mcp"]["calls_in_flight"] == 1).then_some(())
    })
    .await;
    let cancelled = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                           "params": {"requestId": "slow-1", "reason": "test"}});
    assert_eq!(
        post(&app, &[("mcp-session-id", &session)], cancelled)
            .await
            .status(),
        202
    );
    // No response is due for a cancelled request: the open request ends with 202.
    let resp = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the cancelled call's request to end")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 202);
    let (_, health) = app.get_json("/health").await;
    assert_eq!(
        health["components"]["mcp"]["calls_in_flight"], 0,
        "{health}"
    );
    eventually(
        Duration::from_secs(10),
        "the provider slot to be freed",
        || async { (provider_in_flight(&app).await == 0).then_some(()) },
    )
    .await;
}

#[test]
fn the_mcp_settings_are_checked_and_shown_by_check_config() {
    let run = |env: &[(&str, &str)]| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = crate::helpers::exai_bin();
        cmd.current_dir(dir.path()).arg("check-config");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    for (key, bad) in [
        ("EXAI_MCP_MAX_SESSIONS", "0"),
        ("EXAI_MCP_SESSION_TTL", "-1"),
    ] {
        let (code, _, stderr) = run(&[(key, bad)]);
        assert_eq!(code, Some(2), "{key}={bad}: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("config error: ") && l.contains(key)),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) = run(&[
        ("EXAI_MCP_MAX_SESSIONS", "7"),
        ("EXAI_MCP_SESSION_TTL", "90"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let config: Value = serde_json::from_str(&stdout).unwrap();
    let server = &config["server"];
    assert_eq!(server["mcp_max_sessions"], 7, "{stdout}");
    assert_eq!(server["mcp_session_ttl_s"], 90.0, "{stdout}");
}

#[actix_rt::test]
async fn at_the_cap_with_every_session_busy_a_new_session_is_refused() {
    let (app, _mock) = setup(&[("EXAI_MCP_MAX_SESSIONS", "1")]).await;
    let session = open_session(&app).await;
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {
        "name": "chat", "arguments": {"prompt": "hang", "model": HANG}}});
    let request = app
        .client
        .post(format!("{}/mcp", app.base))
        .header("accept", "application/json")
        .header("mcp-session-id", &session)
        .json(&call)
        .send();
    let pending = actix_rt::spawn(request);
    eventually(Duration::from_secs(10), "the call to start", || async {
        let (_, health) = app.get_json("/health").await;
        (health["components"]["mcp"]["calls_in_flight"] == 1).then_some(())
    })
    .await;
    let resp = post(&app, &[], initialize_body("2025-11-25")).await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EXAI_MCP_MAX_SESSIONS"),
        "{body}"
    );
    // The busy session is still there.
    assert_eq!(
        post(&app, &[("mcp-session-id", &session)], list(10))
            .await
            .status(),
        200
    );
    pending.abort();
}

#[actix_rt::test]
async fn closing_a_calls_stream_cancels_it_and_leaves_its_session_idle() {
    let (app, _mock) = setup(&[("EXAI_MCP_MAX_SESSIONS", "1")]).await;
    let session = open_session(&app).await;
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "chat", "arguments": {"prompt": "hang", "model": HANG}}});
    let mut resp = post(&app, &[("mcp-session-id", &session)], call).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The first keep-alive shows the stream is live; then the client goes away.
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).starts_with(':'),
        "{first:?}"
    );
    drop(resp);
    eventually(
        Duration::from_secs(10),
        "the call to be cancelled",
        || async {
            let (_, health) = app.get_json("/health").await;
            (health["components"]["mcp"]["calls_in_flight"] == 0).then_some(())
        },
    )
    .await;
    // The session has no call left, so at the cap a new session evicts it.
    let resp = post(&app, &[], initialize_body("2025-11-25")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        post(&app, &[("mcp-session-id", &session)], list(6))
            .await
            .status(),
        404
    );
    mcp_event(&app, "the cancelled call's event", |e| {
        e["data"]["error_kind"] == "cancelled"
    })
    .await;
}
