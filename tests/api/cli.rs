//! The other commands: `exai migrate` on both backends, and `exai demo` serving simulated
//! traffic with no API keys.

use std::process::Stdio;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::Value;

use crate::helpers::{TestDb, eventually, exai_bin, http};

#[test]
fn migrate_creates_the_sqlite_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sqlite"));
    assert!(dir.path().join("data/exai.db").is_file());
}

#[actix_rt::test]
async fn migrate_creates_the_postgres_schema() {
    use sqlx::Connection;
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .env("EXAI_DATABASE_URL", &db.url)
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'monitoring' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let names: Vec<_> = tables.into_iter().map(|t| t.0).collect();
    for t in ["metrics_1hour", "metrics_1min", "monitoring_events"] {
        assert!(names.iter().any(|n| n == t), "{t} missing: {names:?}");
    }
    let f: (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'monitoring' AND p.proname = 'aggregate_metrics'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(f.0, 1);
}

#[actix_rt::test]
async fn demo_serves_simulated_traffic_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let mut child = exai_bin()
        .current_dir(dir.path())
        .args(["demo", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = http();
    let base = format!("http://127.0.0.1:{port}");
    let result = std::panic::AssertUnwindSafe(async {
        let health = eventually(Duration::from_secs(10), "demo traffic recorded", || {
            let client = client.clone();
            let url = format!("{base}/health");
            async move {
                let h: Value = client.get(url).send().await.ok()?.json().await.ok()?;
                (h["components"]["events"]["recorded"].as_u64()? >= 4).then_some(h)
            }
        })
        .await;
        assert_eq!(
            health["components"]["provider:demo"]["simulated"], true,
            "{health}"
        );
        let models: Value = client
            .get(format!("{base}/v1/models"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let listed = models["data"].as_array().unwrap();
        assert!(!listed.is_empty());
        assert!(listed.iter().all(|m| m["simulated"] == true), "{models}");
    })
    .catch_unwind()
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(status.success(), "demo exit status {status:?}");
}

/// Start-up names what the run talks to (each provider, the store, Redis or its absence), in
/// plain text when stderr is not a terminal; a TOML mistake names its line and a near key.
#[test]
fn startup_lines_name_providers_store_and_redis_without_colour() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let mut child = exai_bin()
        .current_dir(dir.path())
        .env("EXAI_WS_PORT", port.to_string())
        .env(
            "CUSTOM_API_URL",
            "http://user:pw@127.0.0.1:9/v1?api_key=zzz",
        )
        .env("CUSTOM_MODEL_NAME", "local-model")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        let done = line.contains("exai listening");
        lines.push(line);
        if done || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = lines.join("\n");
    assert!(!all.contains('\u{1b}'), "colour codes on a pipe:\n{all}");
    let provider = lines
        .iter()
        .find(|l| l.contains("provider configured"))
        .unwrap_or_else(|| panic!("no provider line:\n{all}"));
    assert!(provider.contains("custom"), "{provider}");
    assert!(provider.contains("127.0.0.1:9"), "{provider}");
    assert!(provider.contains("models=1"), "{provider}");
    assert!(
        !all.contains("pw") && !all.contains("zzz"),
        "secret in logs:\n{all}"
    );
    assert!(
        all.contains("event store") && all.contains("sqlite"),
        "{all}"
    );
    assert!(all.contains("cache L2: none"), "{all}");

    std::fs::write(
        dir.path().join("exai.toml"),
        "[server]\nprot = 1\nport = 2\nport = 3\n",
    )
    .unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("exai.toml:4:1"), "{err}");
    std::fs::write(dir.path().join("exai.toml"), "[server]\nprot = 1\n").unwrap();
    let out = exai_bin()
        .current_dir(dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `port`?"), "{err}");
}

/// With no provider configured, start-up warns once and says how to add one.
#[test]
fn startup_warns_when_no_provider_is_configured() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let port = crate::helpers::free_port();
    let mut child = exai_bin()
        .current_dir(dir.path())
        .env("EXAI_WS_PORT", port.to_string())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("exai listening");
        lines.push(line);
        if done || lines.len() > 200 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let warn: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("no provider configured"))
        .collect();
    assert_eq!(warn.len(), 1, "{lines:#?}");
    assert!(warn[0].contains("WARN"), "{}", warn[0]);
}
