//! The dashboard stream (`/ws/dashboard`), page and access rules, the slow-client policy with
//! 200 clients, and cross-instance fan-out over PostgreSQL LISTEN/NOTIFY.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, client_async, connect_async};

use crate::helpers::{TestApp, TestDb, eventually, spawn_app};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TOKEN: &str = "dashboard-token-0123456789";

/// Connects to `/ws/dashboard` with extra headers.
async fn connect(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}/ws/dashboard{query}", app.addr)
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

/// The next JSON text message, answering pings; panics after `within`.
async fn next_json(ws: &mut Ws, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {within:?}"))
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Reads until a message satisfying `f` arrives.
async fn wait_for(ws: &mut Ws, within: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let msg = next_json(ws, left).await;
        if f(&msg) {
            return msg;
        }
    }
}

fn status_of(e: &WsError) -> Option<u16> {
    match e {
        WsError::Http(resp) => Some(resp.status().as_u16()),
        _ => None,
    }
}

#[tokio::test]
async fn stream_starts_with_a_snapshot_then_events_and_stats() {
    let app = spawn_app(&[]).await;
    let mut ws = connect(&app, "", &[]).await.unwrap();
    let snapshot = next_json(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["instance"], "test");
    assert_eq!(
        snapshot["health"]["actors"]["dashboard"]["state"],
        "running"
    );
    assert!(snapshot["events"].is_array());
    assert_eq!(app.post("/debug/dashboard/burst?n=3").await, 200);
    let event = wait_for(&mut ws, Duration::from_secs(2), "burst event", |m| {
        m["type"] == "event"
    })
    .await;
    assert_eq!(event["event"]["type"], "debug.burst");
    assert_eq!(event["event"]["instance"], "test");
    let stats = wait_for(&mut ws, Duration::from_secs(3), "stats", |m| {
        m["type"] == "stats"
    })
    .await;
    assert_eq!(stats["instance"], "test");
    assert!(stats["pipeline"]["breaker"].is_string(), "{stats}");
    assert!(stats["ws"]["dashboard_sessions"].as_u64().unwrap() >= 1);
    // The page and its assets are served by the binary.
    let page = app
        .client
        .get(format!("{}/dashboard", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("/dashboard/assets/app.js")
    );
    let js = app
        .client
        .get(format!(
            "{}/dashboard/assets/vendor/uPlot.iife.min.js",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status().as_u16(), 200);
    let root = crate::helpers::http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = root.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    assert_eq!(resp.headers()["location"], "/dashboard");
}

#[tokio::test]
async fn token_and_origin_are_enforced() {
    let app = spawn_app(&[("EXAI_DASHBOARD_TOKEN", TOKEN)]).await;
    // Page: a token form without the token, the page with it.
    let page = |q: &'static str| {
        let url = format!("{}/dashboard{q}", app.base);
        let client = app.client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(page("").await, 401);
    assert_eq!(page("?token=wrong-token-0123456789").await, 401);
    assert_eq!(page("?token=dashboard-token-0123456789").await, 200);
    // Stream: refused without the token, accepted by query or bearer header.
    let err = connect(&app, "", &[]).await.err().unwrap();
    assert_eq!(status_of(&err), Some(401));
    let err = connect(&app, "?token=wrong-token-0123456789", &[])
        .await
        .err()
        .unwrap();
    assert_eq!(status_of(&err), Some(401));
    let mut ws = connect(&app, &format!("?token={TOKEN}"), &[])
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await["type"],
        "snapshot"
    );
    let bearer = format!("Bearer {TOKEN}");
    let mut ws = connect(&app, "", &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await["type"],
        "snapshot"
    );
    // Origin: same-origin is fine, a foreign page is refused even with the token.
    let same = format!("http://{}", app.addr);
    let mut ws = connect(&app, &format!("?token={TOKEN}"), &[("origin", &same)])
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await["type"],
        "snapshot"
    );
    let err = connect(
        &app,
        &format!("?token={TOKEN}"),
        &[("origin", "http://evil.example")],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(status_of(&err), Some(403));
    // The history API needs the token too.
    let (status, _) = app.get_json("/api/events").await;
    assert_eq!(status, 401);
    let (status, _) = app.get_json(&format!("/api/events?token={TOKEN}")).await;
    assert_eq!(status, 200);
}

/// Health detail of the broadcaster.
async fn dashboard_health(app: &TestApp) -> Value {
    let (_, health) = app.get_json("/health").await;
    health["components"]["dashboard"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_stuck_client_among_200_is_evicted_and_the_others_keep_up() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    const CLIENTS: u64 = 199;
    // Batches smaller than the per-client queue (256), so a reader that keeps up loses nothing.
    const BATCHES: u64 = 35;
    const PER_BATCH: u64 = 200;
    const TOTAL: u64 = BATCHES * PER_BATCH;
    let app = spawn_app(&[]).await;

    // The stuck client: a tiny receive buffer, and it never reads after the handshake.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let (mut stuck, _) = client_async(
        format!("ws://{}/ws/dashboard", app.addr),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();

    // Fill the stuck client's socket buffers (the kernel may hold several MiB per socket)
    // and its queue with large events, before the readers connect.
    for _ in 0..6 {
        assert_eq!(
            app.post("/debug/dashboard/burst?n=100&bytes=16384").await,
            200
        );
    }
    eventually(
        Duration::from_secs(10),
        "the stuck client's queue full",
        || async { (dashboard_health(&app).await["dropped"].as_u64() > Some(0)).then_some(()) },
    )
    .await;
    // Push the large events out of the recent-event ring, so snapshots stay small.
    assert_eq!(app.post("/debug/dashboard/burst?n=200&tag=ring").await, 200);

    // 199 readers, each counting burst events and dropped messages until the end marker.
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let mut ws = connect(&app, "", &[]).await.unwrap();
        assert_eq!(
            next_json(&mut ws, Duration::from_secs(10)).await["type"],
            "snapshot"
        );
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            let (mut events, mut dropped, mut ended) = (0u64, 0u64, false);
            while !ended {
                let Ok(Some(Ok(msg))) =
                    tokio::time::timeout(Duration::from_secs(10), ws.next()).await
                else {
                    break;
                };
                let Message::Text(text) = msg else { continue };
                // Cheap checks: this loop handles 1.4 million messages.
                if text.contains("\"type\":\"debug.burst\"") && !text.contains("\"tag\":\"ring\"") {
                    if text.contains("\"tag\":\"end\"") {
                        ended = true;
                    } else {
                        events += 1;
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                } else if text.starts_with("{\"type\":\"lagged\"") {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    dropped += v["dropped"].as_u64().unwrap();
                }
            }
            (events, dropped, ended, ws)
        }));
    }
    eventually(Duration::from_secs(5), "200 subscribed clients", || async {
        (dashboard_health(&app).await["clients"].as_u64() == Some(CLIENTS + 1)).then_some(())
    })
    .await;

    // Bursts, each sent once the readers have (nearly) caught up; the stuck client falls
    // ever further behind. The gateway answers quickly throughout.
    let mut slowest_health = Duration::ZERO;
    for batch in 1..=BATCHES {
        assert_eq!(
            app.post(&format!("/debug/dashboard/burst?n={PER_BATCH}"))
                .await,
            200
        );
        let target = batch * PER_BATCH * CLIENTS * 98 / 100;
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.load(Ordering::Relaxed) < target && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = Instant::now();
        let (status, _) = app.get_json("/health/live").await;
        assert_eq!(status, 200);
        slowest_health = slowest_health.max(t.elapsed());
    }
    assert!(
        slowest_health < Duration::from_secs(1),
        "health took {slowest_health:?} under fan-out load"
    );
    assert_eq!(app.post("/debug/dashboard/burst?n=1&tag=end").await, 200);

    let mut total_events = 0;
    let mut kept = Vec::new();
    for reader in readers {
        let (events, dropped, ended, ws) = reader.await.unwrap();
        assert!(
            ended,
            "a reader stopped receiving: {events} events, {dropped} dropped"
        );
        assert!(
            events + dropped >= TOTAL,
            "a reader lost track: {events} events + {dropped} dropped"
        );
        total_events += events;
        kept.push(ws);
    }
    assert!(
        total_events >= TOTAL * CLIENTS * 95 / 100,
        "readers received only {total_events} of {} events",
        TOTAL * CLIENTS
    );

    // The stuck client was evicted and no reader was; per-client memory is bounded by the queue.
    let health = eventually(
        Duration::from_secs(15),
        "the stuck client evicted",
        || async {
            let h = dashboard_health(&app).await;
            (h["evicted"].as_u64() >= Some(1)).then_some(h)
        },
    )
    .await;
    assert_eq!(
        health["evicted"], 1,
        "only the stuck client is evicted: {health}"
    );
    assert_eq!(health["clients"], CLIENTS, "{health}");
    assert_eq!(health["client_queue"], 256);
    assert!(health["dropped"].as_u64().unwrap() >= 5_000, "{health}");

    // Once it finally reads, it finds its backlog and then the close reason.
    let close = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(msg) = stuck.next().await {
            match msg {
                Ok(Message::Close(frame)) => return frame,
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .unwrap();
    let frame = close.expect("a close frame with a reason");
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(frame.reason.contains("too far behind"), "{}", frame.reason);
    for mut ws in kept {
        let _ = ws.close(None).await;
    }
}

#[tokio::test]
async fn sessions_resubscribe_after_the_broadcaster_restarts() {
    let app = spawn_app(&[]).await;
    let mut ws = connect(&app, "", &[]).await.unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await["type"],
        "snapshot"
    );
    assert_eq!(app.post("/debug/fault/dashboard/panic").await, 202);
    // The session notices its queue closed, re-subscribes and gets a fresh snapshot; the
    // restart event reaches it (live or in that snapshot).
    let snapshot = wait_for(&mut ws, Duration::from_secs(5), "a new snapshot", |m| {
        m["type"] == "snapshot"
    })
    .await;
    let in_snapshot = snapshot["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "actor.restarted" && e["data"]["actor"] == "dashboard");
    if !in_snapshot {
        wait_for(&mut ws, Duration::from_secs(2), "actor.restarted", |m| {
            m["type"] == "event" && m["event"]["type"] == "actor.restarted"
        })
        .await;
    }
    assert_eq!(app.post("/debug/dashboard/burst?n=1").await, 200);
    wait_for(
        &mut ws,
        Duration::from_secs(2),
        "events after the restart",
        |m| m["type"] == "event" && m["event"]["type"] == "debug.burst",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_instance_a_reaches_a_dashboard_on_instance_b() {
    let db = TestDb::create().await;
    let a = spawn_app(&[("EXAI_DATABASE_URL", &db.url), ("EXAI_INSTANCE", "inst-a")]).await;
    let b = spawn_app(&[("EXAI_DATABASE_URL", &db.url), ("EXAI_INSTANCE", "inst-b")]).await;
    for app in [&a, &b] {
        eventually(Duration::from_secs(10), "fan-out listening", || async {
            (dashboard_health(app).await["fanout"] == "listening").then_some(())
        })
        .await;
    }
    let mut ws = connect(&b, "", &[]).await.unwrap();
    assert_eq!(
        next_json(&mut ws, Duration::from_secs(5)).await["type"],
        "snapshot"
    );
    // Stats of A arrive at B labelled by instance.
    wait_for(&mut ws, Duration::from_secs(5), "stats from inst-a", |m| {
        m["type"] == "stats" && m["instance"] == "inst-a"
    })
    .await;
    // An event recorded on A shows up on B within 2 s.
    let t0 = Instant::now();
    assert_eq!(a.post("/debug/dashboard/burst?n=1").await, 200);
    let event = wait_for(
        &mut ws,
        Duration::from_secs(2),
        "inst-a's event on inst-b",
        |m| {
            m["type"] == "event"
                && m["event"]["instance"] == "inst-a"
                && m["event"]["type"] == "debug.burst"
        },
    )
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(event["event"]["source"], "debug");

    // Kill every LISTEN connection on this database: B reconnects and tells its clients to
    // fill the gap from the history API.
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(crate::helpers::PG_ADMIN_URL)
        .await
        .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .bind(&db.name)
    .execute(&mut admin)
    .await
    .unwrap();
    let resync = wait_for(&mut ws, Duration::from_secs(10), "resync", |m| {
        m["type"] == "resync"
    })
    .await;
    assert!(resync["since"].as_i64().unwrap() > 0);
    // And the feed works again.
    assert_eq!(a.post("/debug/dashboard/burst?n=1").await, 200);
    wait_for(
        &mut ws,
        Duration::from_secs(3),
        "events after the reconnect",
        |m| m["type"] == "event" && m["event"]["instance"] == "inst-a",
    )
    .await;
    drop(ws);
    a.stop();
    b.stop();
}
