#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::time::Duration;

use actix::prelude::*;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::actor::LIVE_BATCH_MAX;
use super::fanout::{pack_events, stats_payload};
use super::*;
use crate::health::HealthBoard;
use crate::pipeline::event::Event;
use crate::pipeline::recorder::Recorder;

fn setup(settings: DashboardSettings) -> (Addr<DashboardBroadcast>, Recorder, HealthBoard) {
    let recorder = Recorder::new("t", 1000);
    let health = HealthBoard::new();
    let shared = DashboardShared::new(settings, recorder.clone(), health.clone());
    (DashboardBroadcast::new(shared).start(), recorder, health)
}

/// Subscribes a client with a queue of `capacity`: its queue and its eviction channel.
async fn subscribe(
    addr: &Addr<DashboardBroadcast>,
    capacity: usize,
) -> (mpsc::Receiver<Outbound>, oneshot::Receiver<String>) {
    let (queue, rx) = mpsc::channel(capacity);
    let (evict, erx) = oneshot::channel();
    addr.send(Subscribe { queue, evict })
        .await
        .unwrap()
        .unwrap();
    (rx, erx)
}

async fn next(rx: &mut mpsc::Receiver<Outbound>) -> Value {
    let text = tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .unwrap()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

async fn next_of(rx: &mut mpsc::Receiver<Outbound>, kind: &str) -> Value {
    loop {
        let msg = next(rx).await;
        if msg["type"] == kind {
            return msg;
        }
    }
}

#[actix_rt::test]
async fn snapshot_then_events_then_stats_with_percentiles() {
    let settings = DashboardSettings {
        tick: Duration::from_millis(100),
        ..DashboardSettings::default()
    };
    let (addr, recorder, _) = setup(settings);
    recorder.record("x", "early.event", json!({}));
    // Let the actor read the early event first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut rx, _erx) = subscribe(&addr, 64).await;
    let snapshot = next(&mut rx).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["events"][0]["type"], "early.event");
    for n in 1..=100 {
        let ok = n % 10 != 0;
        recorder.record(
            "v1",
            "request",
            json!({"provider": "kimi", "resolved_model": "kimi-k2", "ok": ok,
                   "status": if ok { 200 } else { 503 }, "latency_ms": f64::from(n),
                   "prompt_tokens": 3, "cost_usd": 0.5}),
        );
    }
    let event = next_of(&mut rx, "event").await;
    assert_eq!(event["event"]["type"], "request");
    let stats = next_of(&mut rx, "stats").await;
    let kimi = &stats["providers"]["kimi"];
    assert_eq!(kimi["requests"], 100);
    assert_eq!(kimi["errors"], 10);
    // Percentiles carry the sparse histogram's bound (±4.43 %).
    let p99 = kimi["p99_ms"].as_f64().unwrap();
    assert!((94.0..=104.5).contains(&p99), "p99 {p99}");
    let p50 = kimi["p50_ms"].as_f64().unwrap();
    assert!((47.0..=53.0).contains(&p50), "p50 {p50}");
    let requests = &stats["requests"];
    assert_eq!(requests["window_requests"], 100, "{requests}");
    assert_eq!(requests["window_errors"], 10);
    let model = &requests["models"]["kimi-k2"];
    assert_eq!(model["prompt_tokens"], 300, "{model}");
    assert!((model["cost_usd"].as_f64().unwrap() - 50.0).abs() < 1e-9);
}

#[actix_rt::test]
async fn slow_client_is_lagged_then_evicted_and_others_keep_receiving() {
    let settings = DashboardSettings {
        tick: Duration::from_secs(3600),
        client_queue: 8,
        evict_after_dropped: 50,
        ..DashboardSettings::default()
    };
    let recorder = Recorder::new("t", 1000);
    let shared = DashboardShared::new(settings, recorder.clone(), HealthBoard::new());
    let addr = DashboardBroadcast::new(shared.clone()).start();
    let (mut slow_rx, slow_erx) = subscribe(&addr, 8).await;
    let (mut fast_rx, _fast_erx) = subscribe(&addr, 8).await;
    next(&mut fast_rx).await;
    // 20 events: the slow client's queue (8, snapshot included) overflows.
    for n in 0..20 {
        recorder.record("s", "x", json!({"n": n}));
        let msg = next(&mut fast_rx).await;
        assert_eq!(msg["event"]["data"]["n"], n);
    }
    // Drain the slow client: snapshot + 7 events, then a lagged notice on the next event.
    for _ in 0..8 {
        next(&mut slow_rx).await;
    }
    recorder.record("s", "x", json!({"n": 20}));
    let lagged = next(&mut slow_rx).await;
    assert_eq!(lagged["type"], "lagged");
    assert_eq!(lagged["dropped"], 13);
    assert_eq!(next(&mut slow_rx).await["event"]["data"]["n"], 20);
    next(&mut fast_rx).await;
    // Now never read again: after 50 drops in a row it is evicted with a reason.
    for n in 0..80 {
        recorder.record("s", "x", json!({"n": n}));
        next(&mut fast_rx).await;
    }
    let reason = tokio::time::timeout(Duration::from_secs(2), slow_erx)
        .await
        .unwrap()
        .unwrap();
    assert!(reason.contains("too far behind"), "{reason}");
    let stats = shared.stats();
    assert_eq!(stats.clients, 1);
    assert_eq!(stats.evicted, 1);
}

#[actix_rt::test]
async fn health_changes_are_sent() {
    let (addr, _, health) = setup(DashboardSettings::default());
    let (mut rx, _erx) = subscribe(&addr, 64).await;
    next(&mut rx).await;
    health.update_actor("cache", |a| a.restarts = 3);
    let msg = next_of(&mut rx, "health").await;
    assert_eq!(msg["health"]["actors"]["cache"]["restarts"], 3);
}

#[actix_rt::test]
async fn a_burst_larger_than_one_batch_arrives_whole_and_in_order() {
    let (addr, recorder, _) = setup(DashboardSettings::default());
    let (mut rx, _erx) = subscribe(&addr, 4 * LIVE_BATCH_MAX).await;
    assert_eq!(next(&mut rx).await["type"], "snapshot");
    let total = LIVE_BATCH_MAX * 3 / 2;
    for n in 0..total {
        recorder.record("x", "burst", json!({ "n": n }));
    }
    let mut seen = Vec::new();
    while seen.len() < total {
        let msg = next(&mut rx).await;
        assert_ne!(msg["type"], "lagged", "nothing may be skipped: {msg}");
        if msg["type"] == "event" {
            seen.push(msg["event"]["data"]["n"].as_u64().unwrap());
        }
    }
    assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
}

#[test]
fn notify_payloads_stay_under_the_limit() {
    let big = "x".repeat(3000);
    let events: Vec<Event> = (0..20)
        .map(|n| Event::new("a", "s", "t", json!({"n": n, "pad": big})))
        .chain(std::iter::once(Event::new(
            "a",
            "s",
            "huge",
            json!({"pad": "y".repeat(20_000)}),
        )))
        .collect();
    let jsons: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    let payloads = pack_events("a", events.iter().zip(jsons.iter().map(String::as_str)));
    assert!(payloads.iter().all(|p| p.len() <= NOTIFY_MAX_PAYLOAD));
    let mut seen = 0;
    for p in &payloads {
        let v: Value = serde_json::from_str(p).unwrap();
        seen += v["events"].as_array().unwrap().len();
    }
    assert_eq!(seen, 21, "every event is sent; the huge one truncated");
    assert!(payloads.last().unwrap().contains("truncated"));
    let mut providers = Map::new();
    for n in 0..200 {
        providers.insert(
            format!("provider-{n}"),
            json!({"rate": 1.0, "pad": "z".repeat(50)}),
        );
    }
    let stats = json!({"type": "stats", "providers": providers, "pipeline": {"a": 1}});
    let payload = stats_payload("a", stats).unwrap();
    assert!(payload.len() <= NOTIFY_MAX_PAYLOAD);
    assert!(payload.contains("trimmed"));
}
