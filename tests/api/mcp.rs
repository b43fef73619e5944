//! exai as an MCP server (issue 15): `/mcp` (Streamable HTTP) and `exai mcp` (stdio), driven
//! by the official MCP Python SDK — 1.x (2025-11-25: initialize and sessions) and 2.x
//! (2026-07-28: stateless, `server/discover`) — against the app and the mock upstream. The
//! protocol's edges over plain HTTP are in [`crate::mcp_http`].
//!
//! The SDKs live in `target/py-venv-mcp1` and `target/py-venv-mcp2`, made by
//! `scripts/py-env mcp1|mcp2` (`scripts/test` makes them). Without them these tests fail;
//! they never skip.

use std::path::PathBuf;
use std::time::Duration;

use exai_testkit::mock_upstream::{MockSettings, MockUpstream};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{TestApp, eventually, spawn_app_with};

/// The client token of the token-protected apps.
pub const TOKEN: &str = "mcp-test-token-0123456789";
/// The slow model of the progress tests.
const SLOW: &str = "mock-slow-1200";
/// A model that outlasts every test, for the cancellation tests.
pub const HANG: &str = "mock-slow-60000";

/// The venv `name`'s python; fails (never skips) when it is missing.
fn python(name: &str) -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/py-venv-{name}"))
        .join("bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/py-env {name} (scripts/test does) to install \
         tests/py/requirements-{name}.txt",
        python.display()
    );
    python
}

/// The mock and an app using it, with short progress and session settings.
pub async fn setup(env: &[(&str, &str)]) -> (TestApp, MockUpstream) {
    let mock = MockUpstream::start(MockSettings::default()).unwrap();
    let toml = format!(
        "[[providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = \"{}\"\n\
         models = [\"mock-echo\", \"{SLOW}\", \"{HANG}\"]\nmax_retries = 0\n\n\
         [registry]\ndefault_model = \"mock-echo\"\n",
        mock.base_url()
    );
    let mut vars = vec![("EXAI_WS_PROGRESS_INTERVAL_MS", "150")];
    vars.extend_from_slice(env);
    (spawn_app_with(&vars, Some(&toml)).await, mock)
}

/// Starts `tests/py/<script> <mode>` with venv `venv` against `app`.
fn start_py(
    app: &TestApp,
    venv: &str,
    script: &str,
    mode: &str,
    token: &str,
) -> tokio::process::Child {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    tokio::process::Command::new(python(venv))
        .arg(path)
        .arg(mode)
        .env("EXAI_MCP_URL", format!("{}/mcp", app.base))
        .env("EXAI_TOKEN", token)
        .env("EXAI_MODEL", "mock-echo")
        .env(
            "EXAI_SLOW_MODEL",
            if mode == "cancel" { HANG } else { SLOW },
        )
        .env("EXAI_BIN", env!("CARGO_BIN_EXE_exai"))
        .env("EXAI_WS_PORT", app.addr.port().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python could not be started")
}

/// Waits for a script and returns its JSON output.
async fn finish_py(child: tokio::process::Child, what: &str) -> Value {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("python script timed out")
        .expect("python script");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

async fn run_py(app: &TestApp, venv: &str, script: &str, mode: &str) -> Value {
    let child = start_py(app, venv, script, mode, TOKEN);
    finish_py(child, &format!("{script} {mode}")).await
}

/// What every SDK run must show: tools with schemas, `chat` answered by the mock, JSON output
/// as structured content, a tool failure as `isError`, and progress on a slow call.
fn assert_basic(out: &Value, protocol: &str) {
    assert_eq!(out["protocol"], protocol, "{out}");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for tool in ["chat", "listmodels", "version", "analyze", "consensus"] {
        assert!(tools.contains(&tool), "{tool} missing: {out}");
    }
    assert_eq!(out["chat_schema"]["type"], "object", "{out}");
    assert!(
        out["chat_schema"]["properties"]["prompt"].is_object(),
        "{out}"
    );
    assert_eq!(out["chat"]["isError"], false, "{out}");
    assert!(
        out["chat"]["text"]
            .as_str()
            .unwrap()
            .contains("echo: hello mcp"),
        "{out}"
    );
    assert!(out["version_structured"].is_object(), "{out}");
    assert_eq!(out["bad"]["isError"], true, "{out}");
    assert_eq!(out["slow"]["isError"], false, "{out}");
    assert!(
        out["slow"]["text"]
            .as_str()
            .unwrap()
            .contains("echo: slow one"),
        "{out}"
    );
    let progress = out["progress"].as_array().unwrap();
    assert!(
        progress.len() >= 2,
        "expected progress notifications: {out}"
    );
}

/// Waits until the `mcp` surface recorded a `request` matching `f`.
pub async fn mcp_event(app: &TestApp, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(10), what, || async {
        let (status, page) = app.get_json("/api/events?type=request&limit=200").await;
        (status == 200)
            .then(|| {
                page["events"]
                    .as_array()?
                    .iter()
                    .find(|e| e["data"]["surface"] == "mcp" && f(e))
                    .cloned()
            })
            .flatten()
    })
    .await
}

/// The provider's in-flight count, from `/health`.
pub async fn provider_in_flight(app: &TestApp) -> u64 {
    let (_, health) = app.get_json("/health").await;
    health["components"]["provider:mock"]["in_flight"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

/// Runs a cancelling script and checks the provider's slot is taken, then freed.
async fn cancellation_frees_the_slot(venv: &str, script: &str, mode: &str) {
    let (app, _mock) = setup(&[("EXAI_WS_TOKEN", TOKEN)]).await;
    let mut child = start_py(&app, venv, script, mode, TOKEN);
    eventually(
        Duration::from_secs(20),
        "the call to take a slot",
        || async { (provider_in_flight(&app).await == 1).then_some(()) },
    )
    .await;
    // Now the script cancels.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"cancel\n").await.unwrap();
    drop(stdin);
    let out = finish_py(child, script).await;
    assert!(out["tools_after"].as_u64().unwrap() > 5, "{out}");
    eventually(Duration::from_secs(10), "the slot to be freed", || async {
        (provider_in_flight(&app).await == 0).then_some(())
    })
    .await;
    let (_, health) = app.get_json("/health").await;
    assert_eq!(
        health["components"]["mcp"]["calls_in_flight"], 0,
        "{health}"
    );
    mcp_event(&app, "the cancelled call's event", |e| {
        e["data"]["error_kind"] == "cancelled" && e["data"]["tool"] == "chat"
    })
    .await;
}

#[actix_rt::test]
async fn sdk_1x_lists_tools_calls_chat_and_gets_progress_over_http() {
    let (app, _mock) = setup(&[("EXAI_WS_TOKEN", TOKEN)]).await;
    let out = run_py(&app, "mcp1", "mcp1_client.py", "http").await;
    assert_basic(&out, "2025-11-25");
    assert_eq!(out["server"], "exai");
    let event = mcp_event(&app, "an mcp chat event", |e| {
        e["data"]["tool"] == "chat" && e["data"]["ok"] == true
    })
    .await;
    assert_eq!(event["data"]["protocol_version"], "2025-11-25", "{event}");
    assert!(event["data"]["session_id"].is_string(), "{event}");
    eventually(Duration::from_secs(10), "mcp.session events", || async {
        let (_, page) = app.get_json("/api/events?type=mcp.session").await;
        let events = page["events"].as_array()?.clone();
        let opened = events.iter().any(|e| e["data"]["action"] == "opened");
        let closed = events.iter().any(|e| e["data"]["reason"] == "deleted");
        (opened && closed).then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn sdk_2x_discovers_lists_tools_calls_chat_and_gets_progress_over_http() {
    let (app, _mock) = setup(&[("EXAI_WS_TOKEN", TOKEN)]).await;
    let out = run_py(&app, "mcp2", "mcp2_client.py", "http").await;
    assert_basic(&out, "2026-07-28");
    assert_eq!(out["server"], "exai");
    let event = mcp_event(&app, "an mcp chat event", |e| {
        e["data"]["tool"] == "chat" && e["data"]["ok"] == true
    })
    .await;
    assert_eq!(event["data"]["protocol_version"], "2026-07-28", "{event}");
    assert!(event["data"]["session_id"].is_null(), "{event}");
}

#[actix_rt::test]
async fn sdk_1x_over_stdio_through_exai_mcp() {
    let (app, _mock) = setup(&[("EXAI_WS_TOKEN", TOKEN)]).await;
    let out = run_py(&app, "mcp1", "mcp1_client.py", "stdio").await;
    assert_basic(&out, "2025-11-25");
}

#[actix_rt::test]
async fn sdk_2x_over_stdio_through_exai_mcp() {
    let (app, _mock) = setup(&[("EXAI_WS_TOKEN", TOKEN)]).await;
    let out = run_py(&app, "mcp2", "mcp2_client.py", "stdio").await;
    assert_basic(&out, "2026-07-28");
}

#[actix_rt::test]
async fn sdk_1x_notifications_cancelled_frees_the_provider_slot() {
    cancellation_frees_the_slot("mcp1", "mcp1_client.py", "cancel").await;
}

#[actix_rt::test]
async fn sdk_1x_cancelling_over_stdio_frees_the_provider_slot() {
    cancellation_frees_the_slot("mcp1", "mcp1_client.py", "cancel-stdio").await;
}

#[actix_rt::test]
async fn sdk_2x_cancelling_over_stdio_frees_the_provider_slot() {
    cancellation_frees_the_slot("mcp2", "mcp2_client.py", "cancel-stdio").await;
}

#[actix_rt::test]
async fn sdk_2x_closing_the_stream_frees_the_provider_slot() {
    cancellation_frees_the_slot("mcp2", "mcp2_client.py", "cancel").await;
}

#[actix_rt::test]
async fn exai_mcp_without_a_daemon_exits_with_one_line_naming_exai_serve() {
    // A port nothing listens on: bind, note it, close.
    let port = crate::helpers::free_port();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_exai"))
        .arg("mcp")
        .env("EXAI_WS_HOST", "127.0.0.1")
        .env("EXAI_WS_PORT", port.to_string())
        .stdin(std::process::Stdio::piped())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty(), "stdout carries frames only");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("exai serve"), "{stderr}");
}

#[actix_rt::test]
async fn sdk_1x_over_stdio_with_an_embedded_gateway() {
    let mock = MockUpstream::start(MockSettings::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exai.toml");
    std::fs::write(
        &config,
        format!(
            "[[providers]]\nname = \"mock\"\nkind = \"openai_compatible\"\nbase_url = \"{}\"\n\
             models = [\"mock-echo\", \"{SLOW}\"]\nmax_retries = 0\n\n\
             [registry]\ndefault_model = \"mock-echo\"\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let extra_env = json!({
        "EXAI_CONFIG": config.display().to_string(),
        "EXAI_DATA_DIR": dir.path().join("data").display().to_string(),
        "EXAI_WS_PROGRESS_INTERVAL_MS": "150",
        "EXAI_LOG": "warn",
    });
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/mcp1_client.py");
    let child = tokio::process::Command::new(python("mcp1"))
        .arg(script)
        .arg("stdio")
        .env("EXAI_TOKEN", TOKEN)
        .env("EXAI_MODEL", "mock-echo")
        .env("EXAI_SLOW_MODEL", SLOW)
        .env("EXAI_BIN", env!("CARGO_BIN_EXE_exai"))
        // Nothing listens here: the embedded gateway must not need a daemon.
        .env("EXAI_WS_PORT", "1")
        .env("EXAI_MCP_EXTRA_ARGS", r#"["--embedded"]"#)
        .env("EXAI_MCP_EXTRA_ENV", extra_env.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = finish_py(child, "mcp1_client.py stdio --embedded").await;
    assert_basic(&out, "2025-11-25");
}
