//! Zero loss across `kill -9` (DESIGN §5, §6): the real binary under load from a few
//! concurrent clients is killed at a random moment and restarted, a few rounds in a row.
//! Every request that got a complete 200 has its `request` event in the store, found by
//! the `x-request-id` the client sent. On SQLite, and on PostgreSQL including a round killed
//! while the database is unreachable (events spilling).

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestDb, eventually, exai_bin, free_port, http};
use crate::proxy::TcpProxy;
use crate::ws::mock;
use exai_testkit::mock_upstream::MockUpstream;

/// Concurrent clients per round.
const CLIENTS: usize = 6;

/// A random number below `n` (the kill moment).
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n)) as u64
}

/// Starts `exai serve` on `port` with its data in `dir` and events in `database_url`, and
/// waits until it is ready.
async fn start(dir: &Path, database_url: &str, upstream: &MockUpstream, port: u16) -> Child {
    let child = exai_bin()
        .current_dir(dir)
        .env("EXAI_WS_PORT", port.to_string())
        .env("EXAI_DATA_DIR", dir.join("data"))
        .env("EXAI_DATABASE_URL", database_url)
        .env("EXAI_LOG", "warn")
        .env("EXAI_SHUTDOWN_READY_DELAY_MS", "1")
        .env("CUSTOM_API_URL", upstream.base_url())
        .env("CUSTOM_MODEL_NAME", "mock-echo")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = http();
    let url = format!("http://127.0.0.1:{port}/health/ready");
    eventually(Duration::from_secs(20), "exai ready", || {
        let request = client.get(&url).send();
        async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
    child
}

/// `/health` of the instance on `port`.
async fn health(port: u16) -> Option<Value> {
    http()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Request ids answered with a complete 200, shared by a round's clients.
type Answered = Arc<Mutex<Vec<String>>>;

/// One client's requests until the server dies or `stop` is set, adding the ids that got a
/// complete 200 to `answered`. Odd clients stream.
async fn client_loop(
    port: u16,
    round: usize,
    client: usize,
    stop: Arc<AtomicBool>,
    answered: Answered,
) {
    let http = http();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let stream = client % 2 == 1;
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let id = format!("kill9-r{round}-c{client}-n{n}");
        let sent = http
            .post(&url)
            .header("x-request-id", &id)
            .json(&json!({
                "model": "mock-echo",
                "stream": stream,
                "messages": [{"role": "user", "content": format!("kill -9 {id}")}],
            }))
            .send()
            .await;
        let Ok(resp) = sent else { break };
        if resp.status() != 200 {
            break;
        }
        let Ok(body) = resp.bytes().await else { break };
        let complete = if stream {
            body.ends_with(b"data: [DONE]\n\n")
        } else {
            serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["choices"].is_array())
        };
        if !complete {
            break;
        }
        answered.lock().unwrap().push(id);
    }
}

/// Starts [`CLIENTS`] clients against `port`; once they have 20 answers between them (and,
/// with `spilling`, events wait on disk because the store is down), waits a random
/// 0–1000 ms and kills the instance with SIGKILL. Returns the ids answered.
async fn load_and_kill(port: u16, round: usize, child: &mut Child, spilling: bool) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Answered = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client_loop(port, round, c, stop.clone(), answered.clone())))
        .collect();
    eventually(Duration::from_secs(20), "the load under way", || async {
        (answered.lock().unwrap().len() >= 20).then_some(())
    })
    .await;
    if spilling {
        eventually(Duration::from_secs(20), "events spilling", || async {
            let h = health(port).await?;
            (h["components"]["pipeline"]["spilled_bytes"].as_u64()? > 0).then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(random_below(1000))).await;
    child.kill().unwrap(); // SIGKILL, at whatever moment the load is at
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    eprintln!("round {round}: {} requests answered", answered.len());
    answered
}

/// Runs one round: an instance under load, killed at a random moment (see
/// [`load_and_kill`]). Returns the ids answered with a 200.
async fn killed_round(
    dir: &Path,
    database_url: &str,
    upstream: &MockUpstream,
    round: usize,
) -> Vec<String> {
    let port = free_port();
    let mut child = start(dir, database_url, upstream, port).await;
    load_and_kill(port, round, &mut child, false).await
}

/// Restarts the instance once more, waits until the journal is replayed and memory is empty,
/// then stops it gracefully.
async fn restart_and_drain(dir: &Path, database_url: &str, upstream: &MockUpstream) {
    let port = free_port();
    let mut child = start(dir, database_url, upstream, port).await;
    eventually(Duration::from_secs(30), "journal replayed", || async {
        let h = health(port).await?;
        let p = &h["components"]["pipeline"];
        (p["breaker"] == "closed" && p["spilled_bytes"] == 0 && p["buffered"] == 0).then_some(())
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert!(child.wait().unwrap().success());
}

/// Asserts every answered id has its `request` event among `stored` request ids.
fn assert_all_stored(answered: &[String], stored: &[String]) {
    let stored: std::collections::HashSet<&str> = stored.iter().map(String::as_str).collect();
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no event, e.g. {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
}

#[actix_rt::test]
async fn kill_9_under_load_loses_no_answered_request_sqlite() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let upstream = mock();
    let db_path = dir.path().join("data").join("exai.db");
    let url = format!("sqlite://{}", db_path.display());
    let mut answered = Vec::new();
    for round in 0..3 {
        answered.extend(killed_round(dir.path(), &url, &upstream, round).await);
    }
    restart_and_drain(dir.path(), &url, &upstream).await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let stored: Vec<(String,)> = sqlx::query_as(
        "SELECT json_extract(data, '$.request_id') FROM monitoring_events \
         WHERE type = 'request' AND json_extract(data, '$.request_id') IS NOT NULL",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let stored: Vec<String> = stored.into_iter().map(|(id,)| id).collect();
    assert_all_stored(&answered, &stored);
}

#[actix_rt::test]
async fn kill_9_under_load_loses_no_answered_request_postgres_even_while_spilling() {
    use sqlx::Connection as _;
    let db = TestDb::create().await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let upstream = mock();
    let url = db.url_via(proxy.addr());
    let mut answered = Vec::new();
    for round in 0..2 {
        answered.extend(killed_round(dir.path(), &url, &upstream, round).await);
    }
    // The third round is killed while the database is unreachable: events wait on disk.
    {
        let port = free_port();
        let mut child = start(dir.path(), &url, &upstream, port).await;
        proxy.set_down(true);
        answered.extend(load_and_kill(port, 2, &mut child, true).await);
        proxy.set_down(false);
    }
    restart_and_drain(dir.path(), &url, &upstream).await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let stored: Vec<(String,)> = sqlx::query_as(
        "SELECT data->>'request_id' FROM monitoring.monitoring_events \
         WHERE type = 'request' AND data ? 'request_id'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let stored: Vec<String> = stored.into_iter().map(|(id,)| id).collect();
    assert_all_stored(&answered, &stored);
}
