#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::key::CacheKey;
use super::l1::ENTRY_OVERHEAD_BYTES;
use super::*;
use crate::health::{HealthBoard, Status};
use crate::pipeline::recorder::Recorder;

fn cache_with(settings: CacheSettings) -> (CacheHandle, Recorder, HealthBoard) {
    let recorder = Recorder::new("test", 100_000);
    let health = HealthBoard::new();
    let cache = ResponseCache::new(settings, recorder.clone(), health.clone()).unwrap();
    (cache.handle(), recorder, health)
}

fn key(n: u32) -> CacheKey {
    CacheKey::derive(
        &json!({"messages": [{"role": "user", "content": n.to_string()}]}),
        "m",
    )
}

fn kinds(recorder: &Recorder) -> Vec<(String, Value)> {
    recorder
        .drain(100_000)
        .into_iter()
        .map(|e| (e.kind, e.data))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct Upstream(&'static str);

#[tokio::test]
async fn miss_then_store_then_l1_hit_with_its_own_metadata() {
    let (cache, recorder, _) = cache_with(CacheSettings::default());
    let k = key(1);
    assert!(cache.lookup(&k).await.is_none());
    let stored = cache.store(&k, "m", Bytes::from_static(b"{\"a\":1}")).await;
    assert_eq!(stored, StoreOutcome::Stored);
    let hit = cache.lookup(&k).await.unwrap();
    assert_eq!(hit.body, Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(hit.level, CacheLevel::L1);
    assert_eq!(hit.model, "m");
    assert!(hit.age_ms < 5_000);
    let events = kinds(&recorder);
    let names: Vec<_> = events.iter().map(|(k, _)| k.as_str()).collect();
    // Lookups record nothing (the call's `request` event says how the cache answered).
    assert_eq!(names, ["cache.set"]);
    let stats = cache.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.sets, stats.entries),
        (1, 1, 1, 1)
    );
    assert!((stats.hit_ratio - 0.5).abs() < f64::EPSILON);
    assert!(stats.bytes > 0);
    assert_eq!(stats.l2, L2State::Disabled);
}

#[tokio::test]
async fn oversized_responses_are_rejected_and_counted() {
    let (cache, recorder, _) = cache_with(CacheSettings {
        max_response_bytes: 10,
        ..CacheSettings::default()
    });
    let k = key(2);
    let outcome = cache.store(&k, "m", Bytes::from(vec![b'x'; 11])).await;
    assert_eq!(
        outcome,
        StoreOutcome::TooLarge {
            bytes: 11,
            limit: 10
        }
    );
    assert!(cache.lookup(&k).await.is_none());
    assert_eq!(cache.stats().rejections, 1);
    let events = kinds(&recorder);
    assert_eq!(events[0].0, "cache.set");
    assert_eq!(events[0].1["ok"], false);
    assert_eq!(events[0].1["reason"], "too_large");
    // Exactly at the limit is fine.
    assert_eq!(
        cache.store(&k, "m", Bytes::from(vec![b'x'; 10])).await,
        StoreOutcome::Stored
    );
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let (cache, recorder, _) = cache_with(CacheSettings {
        l1_ttl: Duration::from_millis(50),
        ..CacheSettings::default()
    });
    let k = key(3);
    cache.store(&k, "m", Bytes::from_static(b"{}")).await;
    assert!(cache.lookup(&k).await.is_some());
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(
        cache.lookup(&k).await.is_none(),
        "an expired entry is never served"
    );
    // moka removes expired entries (and fires `cache.evict`) on its own timer wheel,
    // whose buckets are about a second wide; serving is what the TTL guarantees.
    let names: Vec<_> = kinds(&recorder).into_iter().map(|(k, _)| k).collect();
    assert!(!names.iter().any(|n| n == "cache.miss"), "{names:?}");
    assert_eq!(cache.stats().misses, 1);
}

#[tokio::test]
async fn capacity_is_in_bytes() {
    let body = Bytes::from(vec![b'x'; 1000]);
    let (cache, recorder, _) = cache_with(CacheSettings {
        l1_capacity_bytes: 10 * (1000 + ENTRY_OVERHEAD_BYTES as u64 + 1),
        ..CacheSettings::default()
    });
    for n in 0..50 {
        cache.store(&key(n), "m", body.clone()).await;
    }
    let stats = cache.stats();
    assert!(stats.entries <= 10, "{stats:?}");
    assert!(stats.bytes <= stats.capacity_bytes, "{stats:?}");
    assert!(stats.evictions >= 40, "{stats:?}");
    assert!(
        kinds(&recorder)
            .iter()
            .any(|(k, d)| k == "cache.evict" && d["cause"] == "size")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_misses_fetch_once() {
    let (cache, _, _) = cache_with(CacheSettings::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(4);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&k, "m", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, Upstream>(Bytes::from_static(b"{\"ok\":true}"))
                    })
                    .await
            })
        })
        .collect();
    let mut origins = Vec::new();
    for task in tasks {
        let reply = task.await.unwrap().unwrap();
        assert_eq!(reply.body, Bytes::from_static(b"{\"ok\":true}"));
        origins.push(reply.origin.label());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(origins.iter().filter(|o| **o == "miss").count(), 1);
    let stats = cache.stats();
    assert_eq!(stats.inflight, 0, "the flight table is cleaned");
    assert_eq!(stats.fetches, 1);
    // A later call is a plain L1 hit.
    let reply = cache
        .get_or_fetch(&k, "m", || async { Err::<Bytes, _>(Upstream("unused")) })
        .await
        .unwrap();
    assert_eq!(reply.origin.label(), "l1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_leader_fails_every_waiter_and_nothing_is_cached() {
    let (cache, _, _) = cache_with(CacheSettings::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(5);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            let calls = calls.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&k, "m", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err::<Bytes, _>(Upstream("boom"))
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap_err(), Upstream("boom"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(cache.lookup(&k).await.is_none(), "errors are never cached");
    let stats = cache.stats();
    assert_eq!((stats.inflight, stats.fetch_errors, stats.sets), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_leader_hands_over_to_a_waiter() {
    let (cache, _, _) = cache_with(CacheSettings::default());
    let k = key(6);
    let started = Arc::new(Notify::new());
    let leader = {
        let cache = cache.clone();
        let started = started.clone();
        tokio::spawn(async move {
            cache
                .get_or_fetch(&k, "m", || async move {
                    started.notify_one();
                    futures_util::future::pending::<Result<Bytes, Upstream>>().await
                })
                .await
        })
    };
    started.notified().await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_fetch(&k, "m", || async {
                    Ok::<_, Upstream>(Bytes::from_static(b"{}"))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(cache.stats().inflight, 1);
    leader.abort();
    let reply = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        reply.origin.label(),
        "miss",
        "the waiter became the new leader"
    );
    assert_eq!(cache.stats().inflight, 0);
    assert!(cache.lookup(&k).await.is_some());
}

#[tokio::test]
async fn health_component_reports_stats() {
    let (cache, _, health) = cache_with(CacheSettings::default());
    cache.store(&key(7), "m", Bytes::from_static(b"{}")).await;
    cache.publish_health();
    let snapshot = health.snapshot();
    let component = &snapshot.components[HEALTH_COMPONENT];
    assert_eq!(component.status, Status::Ok);
    assert_eq!(component.detail["l2"], "disabled");
    assert_eq!(component.detail["sets"], 1);
    for field in [
        "hits",
        "misses",
        "hit_ratio",
        "entries",
        "bytes",
        "evictions",
        "rejections",
    ] {
        assert!(component.detail.get(field).is_some(), "{field} missing");
    }
}

#[test]
fn invalid_redis_url_is_reported_without_the_url() {
    let settings = CacheSettings {
        redis_url: Some(SecretString::from("not a url :secret@")),
        ..CacheSettings::default()
    };
    let error =
        ResponseCache::new(settings, Recorder::new("t", 10), HealthBoard::new()).unwrap_err();
    assert!(!error.to_string().contains("secret"));
}
