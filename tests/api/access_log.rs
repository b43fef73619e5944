//! `EXAI_ACCESS_LOG` seen from outside: the real binary writes one `exai::access` line per
//! HTTP request (refusals included) with method, path, status, latency, model and cache
//! outcome when asked, and none by default.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{eventually, exai_bin, free_port, http};
use crate::ws::mock;

/// Runs the binary with `access_log` set, sends three requests (a chat call, a `/health`
/// read and a cross-origin refusal), stops it, and returns its JSON log lines.
async fn run(access_log: bool, dir: &Path) -> Vec<Value> {
    let upstream = mock();
    let log_path = dir.join(format!("exai-{access_log}.log"));
    let port = free_port();
    let mut child = exai_bin()
        .current_dir(dir)
        .env("EXAI_WS_PORT", port.to_string())
        .env(
            "EXAI_DATABASE_URL",
            format!("sqlite://{}/events-{access_log}.db", dir.display()),
        )
        .env("EXAI_LOG", "info")
        .env("EXAI_LOG_FORMAT", "json")
        .env("EXAI_ACCESS_LOG", access_log.to_string())
        .env("EXAI_SHUTDOWN_READY_DELAY_MS", "1")
        .env("CUSTOM_API_URL", upstream.base_url())
        .env("CUSTOM_MODEL_NAME", "mock-echo")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let client = http();
    let base = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(10), "exai up", || {
        let req = client.get(format!("{base}/health")).send();
        async move {
            req.await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
    let chat = client
        .post(format!("{base}/v1/chat/completions"))
        .header("x-request-id", "access-log-test-1")
        .json(&json!({"model": "mock-echo", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    chat.bytes().await.unwrap();
    let refused = client
        .post(format!("{base}/v1/chat/completions"))
        .header("origin", "http://evil.example")
        .json(&json!({"model": "mock-echo", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(&log_path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn access_lines(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "exai::access")
        .collect()
}

#[actix_rt::test]
async fn the_access_log_writes_one_line_per_request_when_asked_and_none_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let on = run(true, dir.path()).await;
    let access = access_lines(&on);
    let chat: Vec<_> = access
        .iter()
        .filter(|l| l["path"] == "/v1/chat/completions")
        .collect();
    assert_eq!(chat.len(), 2, "one line per request: {access:#?}");
    let answered = chat
        .iter()
        .find(|l| l["status"] == 200)
        .expect("the answered call");
    assert_eq!(answered["method"], "POST");
    assert_eq!(answered["surface"], "v1");
    assert_eq!(answered["model"], "mock-echo");
    assert_eq!(answered["cache"], "miss");
    assert_eq!(answered["request_id"], "access-log-test-1");
    assert!(answered["latency_ms"].as_f64().unwrap() > 0.0, "{answered}");
    let refusal = chat
        .iter()
        .find(|l| l["status"] == 403)
        .expect("the refused call is logged too");
    assert_eq!(refusal["model"], "-");
    assert!(
        access
            .iter()
            .any(|l| l["path"] == "/health" && l["status"] == 200),
        "{access:#?}"
    );

    let off = run(false, dir.path()).await;
    assert!(
        access_lines(&off).is_empty(),
        "no access lines by default: {:#?}",
        access_lines(&off)
    );
    assert!(!off.is_empty(), "the daemon still logs its start-up");
}
