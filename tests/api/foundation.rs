//! The foundation: start-up defaults, configuration errors, supervision seen through
//! `/health`, and graceful shutdown of the real binary.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{eventually, exai_bin, free_port, spawn_app};

/// A token long enough to be accepted, recognisable if it leaks.
const SECRET_TOKEN: &str = "tok-SECRET-4f9a1b2c3d";
const SECRET_KEY: &str = "sk-LEAKCHECK-7d1e0c";

fn actor_names(health: &Value) -> Vec<String> {
    health["actors"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[actix_rt::test]
async fn health_reports_version_instance_and_actors() {
    let app = spawn_app(&[]).await;
    let (status, body) = app.get_json("/health").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["instance"], "test");
    assert!(body["uptime_s"].is_u64());
    for name in actor_names(&body) {
        let actor = &body["actors"][&name];
        assert_eq!(actor["state"], "running", "{name}: {actor}");
        assert_eq!(actor["restarts"], 0);
        assert!(actor.get("last_error").is_some() && actor.get("last_restart_at").is_some());
    }
    assert_eq!(app.get_json("/health/live").await.0, 200);
    assert_eq!(app.get_json("/health/ready").await.0, 200);
    app.stop();
}

#[actix_rt::test]
async fn each_actor_restarts_after_a_panic_while_others_keep_answering() {
    let app = spawn_app(&[]).await;
    let (_, body) = app.get_json("/health").await;
    let names = actor_names(&body);
    assert!(!names.is_empty(), "no supervised actors in /health: {body}");
    for name in &names {
        let started = Instant::now();
        assert_eq!(app.post(&format!("/debug/fault/{name}/panic")).await, 202);
        eventually(
            Duration::from_secs(1),
            &format!("{name} back after panic"),
            || async {
                let (_, h) = app.get_json("/health").await;
                let a = &h["actors"][name];
                (a["state"] == "running" && a["restarts"] == 1).then_some(())
            },
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(1));
        let (_, h) = app.get_json("/health").await;
        assert!(
            h["actors"][name]["last_error"]
                .as_str()
                .unwrap()
                .contains("panic")
        );
        for other in names.iter().filter(|o| *o != name) {
            assert_eq!(
                h["actors"][other]["state"], "running",
                "{other} disturbed by {name}"
            );
        }
    }
    app.stop();
}

#[actix_rt::test]
async fn a_crash_loop_ends_in_failed_and_503() {
    let app = spawn_app(&[("EXAI_SUPERVISOR_MAX_RESTARTS", "2")]).await;
    let (_, body) = app.get_json("/health").await;
    let name = actor_names(&body).into_iter().next().expect("an actor");
    for n in 0..2 {
        app.post(&format!("/debug/fault/{name}/panic")).await;
        eventually(Duration::from_secs(2), "restart", || async {
            let (_, h) = app.get_json("/health").await;
            (h["actors"][&name]["restarts"] == n + 1 && h["actors"][&name]["state"] == "running")
                .then_some(())
        })
        .await;
    }
    app.post(&format!("/debug/fault/{name}/panic")).await;
    let body = eventually(Duration::from_secs(2), "failed state", || async {
        let (status, h) = app.get_json("/health").await;
        (status == 503).then_some(h)
    })
    .await;
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["actors"][&name]["state"], "failed");
    assert_eq!(app.get_json("/health/ready").await.0, 503);
    app.stop();
}

#[actix_rt::test]
async fn a_hung_actor_is_replaced() {
    let app = spawn_app(&[]).await;
    let (_, body) = app.get_json("/health").await;
    let name = actor_names(&body).into_iter().next().expect("an actor");
    assert_eq!(app.post(&format!("/debug/fault/{name}/hang")).await, 202);
    let body = eventually(Duration::from_secs(3), "hung actor replaced", || async {
        let (_, h) = app.get_json("/health").await;
        (h["actors"][&name]["restarts"] == 1 && h["actors"][&name]["state"] == "running")
            .then_some(h)
    })
    .await;
    assert!(
        body["actors"][&name]["last_error"]
            .as_str()
            .unwrap()
            .contains("hung")
    );
    app.stop();
}

fn check_config(env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = exai_bin();
    cmd.current_dir(dir.path()).arg("check-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_invalid_configuration_exits_2_naming_its_key() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("EXAI_WS_PORT", "70000")], "EXAI_WS_PORT"),
        (&[("EXAI_WS_PORT", "abc")], "EXAI_WS_PORT"),
        (&[("EXAI_WS_TOKEN", "short")], "EXAI_WS_TOKEN"),
        (
            &[
                ("EXAI_WS_SESSION_MAX_INFLIGHT", "10"),
                ("EXAI_WS_GLOBAL_MAX_INFLIGHT", "10"),
            ],
            "EXAI_WS_GLOBAL_MAX_INFLIGHT",
        ),
        (&[("KIMI_API_URL", "ht!tp://bad url")], "KIMI_API_URL"),
        (&[("EXAI_DATABASE_URL", "nonsense")], "EXAI_DATABASE_URL"),
        (
            &[("EXAI_DATA_DIR", "/proc/exai-not-writable")],
            "EXAI_DATA_DIR",
        ),
        (&[("EXAI_WS_HOST", "0.0.0.0")], "EXAI_WS_HOST"),
        (
            &[(
                "EXAI_ALLOWED_ORIGINS",
                "https://ok.example,https://a.example/path",
            )],
            "EXAI_ALLOWED_ORIGINS",
        ),
        (&[("EXAI_ALLOWED_ORIGINS", "null")], "EXAI_ALLOWED_ORIGINS"),
        (
            &[("EXAI_HTTP_BODY_TIMEOUT_MS", "0")],
            "EXAI_HTTP_BODY_TIMEOUT_MS",
        ),
        (
            &[("EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT", "0")],
            "EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT",
        ),
        (
            &[
                ("EXAI_WS_MAX_CONNECTIONS", "10"),
                ("EXAI_WS_MAX_PENDING_HELLO", "11"),
            ],
            "EXAI_WS_MAX_PENDING_HELLO",
        ),
    ];
    for (env, key) in cases {
        let (code, _, stderr) = check_config(env);
        assert_eq!(code, 2, "{env:?} should exit 2; stderr: {stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("config error: ") && l.contains(key)),
            "{env:?}: no line naming {key}: {stderr}"
        );
    }
    // All problems at once, one line each.
    let (code, _, stderr) = check_config(&[("EXAI_WS_PORT", "x"), ("EXAI_WS_TOKEN", "short")]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("config error: "))
            .count(),
        2,
        "{stderr}"
    );
}

#[test]
fn unknown_key_in_exai_toml_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("exai.toml"),
        "[server]\nport = 8080\nprot = 1\n",
    )
    .unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.prot") && stderr.contains("unknown key"),
        "{stderr}"
    );
}

#[test]
fn allow_no_auth_permits_a_public_bind() {
    let dir = tempfile::tempdir().unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .env("EXAI_WS_HOST", "0.0.0.0")
        .args(["check-config", "--allow-no-auth"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_redacts_secrets() {
    let (code, stdout, stderr) = check_config(&[
        ("EXAI_WS_TOKEN", SECRET_TOKEN),
        ("KIMI_API_KEY", SECRET_KEY),
        (
            "EXAI_DATABASE_URL",
            "postgres://user:dbpassword-LEAK@127.0.0.1/x",
        ),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("[redacted]"));
    for secret in [SECRET_TOKEN, SECRET_KEY, "dbpassword-LEAK"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret} leaked"
        );
    }
    let parsed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(parsed["providers"][0]["name"], "kimi");
}

/// A child process killed when the test ends, even when it fails.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

/// Runs `exai serve` in `dir` and waits until `/health` answers, returning the child and
/// how long that took.
async fn start_binary(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    port: u16,
) -> (Running, Duration) {
    let mut cmd = exai_bin();
    cmd.current_dir(dir)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = Running(cmd.spawn().unwrap());
    let client = crate::helpers::http();
    eventually(Duration::from_secs(10), "binary health", || {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    (child, started.elapsed())
}

fn sigterm(child: &Running) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The defaults, checked without taking port 8079 (a real `exai serve` may hold it while
/// the suite runs): `check-config` with no environment and no file shows the default
/// listener, and `serve` with only the port moved starts fast on the default SQLite
/// database under `./data`.
#[actix_rt::test]
async fn fresh_serve_uses_defaults_and_creates_its_database() {
    let (code, stdout, stderr) = check_config(&[]);
    assert_eq!(code, 0, "{stderr}");
    let defaults: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(defaults["server"]["port"], 8079, "{defaults}");
    assert_eq!(defaults["server"]["host"], "127.0.0.1", "{defaults}");
    assert_eq!(defaults["storage"]["data_dir"], "data", "{defaults}");
    assert!(
        defaults["storage"]["database_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("sqlite://") && u.ends_with("data/exai.db")),
        "{defaults}"
    );

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, took) =
        start_binary(dir.path(), &[("EXAI_WS_PORT", &port.to_string())], port).await;
    assert!(took < Duration::from_secs(2), "/health took {took:?}");
    let health: Value = crate::helpers::http()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert!(dir.path().join("data").is_dir(), "no ./data directory");
    assert!(
        dir.path().join("data/exai.db").is_file(),
        "no ./data/exai.db"
    );
    sigterm(&child);
    assert!(child.wait().unwrap().success());
}

#[actix_rt::test]
async fn sigterm_drains_a_slow_request_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, _) = start_binary(
        dir.path(),
        &[
            ("EXAI_WS_PORT", &port.to_string()),
            ("EXAI_SHUTDOWN_READY_DELAY_MS", "600"),
            ("EXAI_WS_TOKEN", SECRET_TOKEN),
            ("KIMI_API_KEY", SECRET_KEY),
            ("EXAI_LOG", "debug"),
        ],
        port,
    )
    .await;
    let base = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::http();
    let slow = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/debug/sleep?ms=1500");
        async move { client.get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sigterm(&child);
    eventually(
        Duration::from_millis(500),
        "readiness 503 during drain",
        || {
            let client = client.clone();
            let url = format!("{base}/health/ready");
            async move {
                let r = client.get(url).send().await.ok()?;
                (r.status() == 503).then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "in-flight request must complete"
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("shutting down"), "{logs}");
    for secret in [SECRET_TOKEN, SECRET_KEY] {
        assert!(!logs.contains(secret), "secret leaked into logs");
    }
}
