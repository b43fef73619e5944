//! The response cache against the real Redis (127.0.0.1:6379): L1/L2 reads and fills, TTLs,
//! the size cap, single-flight, two instances sharing Redis, and a Redis outage through a
//! TCP proxy. Each test uses its own Redis key prefix, so tests run in parallel. A missing
//! Redis fails the tests (it is not skipped).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use exai_actors::cache::key::CacheKey;
use exai_actors::cache::{
    Bytes, Cache, CacheHandle, CacheLevel, CacheSettings, HEALTH_COMPONENT, L2State, Origin,
    ResponseCache, StoreOutcome,
};
use exai_actors::health::{HealthBoard, Status};
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::policy::retry::RetryPolicy;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::REDIS_URL;
use crate::proxy::TcpProxy;

/// Per-operation Redis timeout used by these tests.
const OP_TIMEOUT: Duration = Duration::from_millis(50);
/// How long a test waits for Redis to connect or for health to change.
const WAIT: Duration = Duration::from_secs(5);

/// An upstream error, as a provider would return it.
#[derive(Debug, Clone, PartialEq)]
struct UpstreamError(&'static str);

/// One cache instance with its actor running on the test's system.
struct Instance {
    /// The request-path handle.
    handle: CacheHandle,
    /// Its event recorder.
    recorder: Recorder,
    /// Its health board.
    health: HealthBoard,
    /// Its actor (keeps Redis connected and health published).
    _actor: Addr<Cache>,
}

/// Settings for a test: its own prefix, a short reconnect backoff and fast health refresh.
fn settings(prefix: &str, redis_url: &str) -> CacheSettings {
    CacheSettings {
        redis_url: Some(SecretString::from(redis_url.to_owned())),
        redis_prefix: prefix.to_owned(),
        l2_ttl: Duration::from_secs(60),
        redis_op_timeout: OP_TIMEOUT,
        redis_connect_timeout: Duration::from_millis(500),
        reconnect: RetryPolicy::new(Duration::from_millis(20), Duration::from_millis(200)),
        health_interval: Duration::from_millis(50),
        ..CacheSettings::default()
    }
}

/// A fresh key prefix for one test.
fn prefix() -> String {
    format!("exai:test:cache:{}:", uuid::Uuid::now_v7().simple())
}

/// A key unique to this test run.
fn key(name: &str) -> CacheKey {
    let request = json!({
        "messages": [{"role": "user", "content": name}],
        "nonce": uuid::Uuid::now_v7().to_string(),
    });
    CacheKey::derive(&request, "test-model")
}

/// Polls `cond` every 10 ms until it holds, failing the test after [`WAIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts an instance and waits for its Redis L2 to be up (fails if Redis is unreachable).
async fn start(settings: CacheSettings) -> Instance {
    let recorder = Recorder::new("cache-test", 100_000);
    let health = HealthBoard::new();
    let cache = ResponseCache::new(settings, recorder.clone(), health.clone()).unwrap();
    let handle = cache.handle();
    let actor = Cache::new(handle.clone()).start();
    let h = handle.clone();
    wait_until("Redis at 127.0.0.1:6379 (L2 up)", || {
        h.l2_state() == L2State::Up
    })
    .await;
    Instance {
        handle,
        recorder,
        health,
        _actor: actor,
    }
}

/// The `cache` health component's status.
fn cache_status(health: &HealthBoard) -> Option<Status> {
    health
        .snapshot()
        .components
        .get(HEALTH_COMPONENT)
        .map(|c| c.status)
}

/// A fetch that counts its calls and answers `body`.
fn counting_fetch(
    calls: &Arc<AtomicUsize>,
    body: &'static [u8],
) -> impl FnOnce() -> futures_util::future::Ready<Result<Bytes, UpstreamError>> {
    let calls = calls.clone();
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        futures_util::future::ready(Ok(Bytes::from_static(body)))
    }
}

#[actix_rt::test]
async fn cache_l1_miss_then_hit() {
    let a = start(settings(&prefix(), REDIS_URL)).await;
    let k = key("l1");
    let calls = Arc::new(AtomicUsize::new(0));
    assert!(a.handle.lookup(&k).await.is_none());
    let first = a
        .handle
        .get_or_fetch(&k, "test-model", counting_fetch(&calls, b"{\"n\":1}"))
        .await
        .unwrap();
    assert_eq!(
        first.origin,
        Origin::Fetched {
            stored: StoreOutcome::Stored
        }
    );
    let second = a
        .handle
        .get_or_fetch(&k, "test-model", counting_fetch(&calls, b"{\"n\":2}"))
        .await
        .unwrap();
    assert_eq!(second.body, Bytes::from_static(b"{\"n\":1}"));
    assert!(
        matches!(
            second.origin,
            Origin::Hit {
                level: CacheLevel::L1,
                ..
            }
        ),
        "{:?}",
        second.origin
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let stats = a.handle.stats();
    assert_eq!((stats.hits_l1, stats.sets, stats.fetches), (1, 1, 1));
    assert_eq!(cache_status(&a.health), Some(Status::Ok));
}

#[actix_rt::test]
async fn cache_two_instances_share_l2_and_an_l2_hit_fills_l1() {
    let prefix = prefix();
    let a = start(settings(&prefix, REDIS_URL)).await;
    let b = start(settings(&prefix, REDIS_URL)).await;
    let k = key("shared");
    let calls = Arc::new(AtomicUsize::new(0));
    a.handle
        .get_or_fetch(
            &k,
            "test-model",
            counting_fetch(&calls, b"{\"from\":\"a\"}"),
        )
        .await
        .unwrap();
    actix_rt::time::sleep(Duration::from_millis(5)).await;

    let reply = b
        .handle
        .get_or_fetch(
            &k,
            "test-model",
            counting_fetch(&calls, b"{\"from\":\"b\"}"),
        )
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "B must not fetch what A cached"
    );
    assert_eq!(reply.body, Bytes::from_static(b"{\"from\":\"a\"}"));
    let Origin::Hit { level, age_ms, .. } = reply.origin else {
        panic!("expected a hit, got {:?}", reply.origin);
    };
    assert_eq!(level, CacheLevel::L2);
    assert!(
        age_ms >= 5,
        "the age is the stored response's, not zero: {age_ms}"
    );

    let again = b.handle.lookup(&k).await.unwrap();
    assert_eq!(again.level, CacheLevel::L1, "the L2 hit filled L1");
    assert_eq!(again.model, "test-model");
    let stats = b.handle.stats();
    assert_eq!((stats.hits_l2, stats.hits_l1), (1, 1), "{stats:?}");
    assert!(
        !b.recorder.drain(1000).iter().any(|e| e.kind == "cache.hit"),
        "lookups record nothing"
    );
}

#[actix_rt::test]
async fn cache_entries_expire_in_both_levels() {
    let mut s = settings(&prefix(), REDIS_URL);
    s.l1_ttl = Duration::from_millis(100);
    s.l2_ttl = Duration::from_millis(300);
    let a = start(s).await;
    let k = key("ttl");
    assert_eq!(
        a.handle
            .store(&k, "test-model", Bytes::from_static(b"{}"))
            .await,
        StoreOutcome::Stored
    );
    assert_eq!(a.handle.lookup(&k).await.unwrap().level, CacheLevel::L1);
    actix_rt::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        a.handle.lookup(&k).await.unwrap().level,
        CacheLevel::L2,
        "L1 expired, L2 still holds it"
    );
    actix_rt::time::sleep(Duration::from_millis(250)).await;
    assert!(a.handle.lookup(&k).await.is_none(), "both levels expired");
    let calls = Arc::new(AtomicUsize::new(0));
    let reply = a
        .handle
        .get_or_fetch(&k, "test-model", counting_fetch(&calls, b"{}"))
        .await
        .unwrap();
    assert!(matches!(reply.origin, Origin::Fetched { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[actix_rt::test]
async fn cache_size_cap_rejects_and_counts() {
    let prefix = prefix();
    let mut s = settings(&prefix, REDIS_URL);
    s.max_response_bytes = 100;
    let a = start(s.clone()).await;
    let b = start(s).await;
    let k = key("big");
    let big: &'static [u8] = &[b' '; 200];
    let calls = Arc::new(AtomicUsize::new(0));
    let reply = a
        .handle
        .get_or_fetch(&k, "test-model", counting_fetch(&calls, big))
        .await
        .unwrap();
    assert_eq!(
        reply.origin,
        Origin::Fetched {
            stored: StoreOutcome::TooLarge {
                bytes: 200,
                limit: 100
            }
        }
    );
    assert_eq!(reply.body.len(), 200, "the caller still gets the response");
    a.handle
        .get_or_fetch(&k, "test-model", counting_fetch(&calls, big))
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "nothing was stored");
    assert!(b.handle.lookup(&k).await.is_none(), "nor written to L2");
    assert_eq!(a.handle.stats().rejections, 2);
    let rejected = a
        .recorder
        .drain(1000)
        .into_iter()
        .filter(|e| e.kind == "cache.set" && !e.ok())
        .count();
    assert_eq!(rejected, 2);
}

#[actix_rt::test]
async fn cache_fifty_concurrent_identical_requests_make_one_fetch() {
    let a = start(settings(&prefix(), REDIS_URL)).await;
    let k = key("flight");
    let calls = Arc::new(AtomicUsize::new(0));
    // Callers on four threads, like HTTP workers.
    let arbiters: Vec<Arbiter> = (0..4).map(|_| Arbiter::new()).collect();
    let mut replies = Vec::new();
    for i in 0..50 {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let handle = a.handle.clone();
        let calls = calls.clone();
        arbiters[i % arbiters.len()].spawn(async move {
            let reply = handle
                .get_or_fetch(&k, "test-model", || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, UpstreamError>(Bytes::from_static(b"{\"once\":true}"))
                })
                .await;
            let _ = tx.send(reply);
        });
        replies.push(rx);
    }
    let mut fetched = 0;
    for rx in replies {
        let reply = rx.await.unwrap().unwrap();
        assert_eq!(reply.body, Bytes::from_static(b"{\"once\":true}"));
        if matches!(reply.origin, Origin::Fetched { .. }) {
            fetched += 1;
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "exactly one upstream call");
    assert_eq!(fetched, 1);
    let stats = a.handle.stats();
    assert_eq!(stats.inflight, 0, "the single-flight table is cleaned up");
    for arbiter in arbiters {
        arbiter.stop();
    }
}

#[actix_rt::test]
async fn cache_redis_outage_degrades_to_l1_and_recovers() {
    let prefix = prefix();
    let redis: std::net::SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let proxy = TcpProxy::start(redis);
    let a = start(settings(&prefix, &format!("redis://{}", proxy.addr()))).await;
    // An observer that reaches Redis directly, to see what A writes to L2.
    let observer = start(settings(&prefix, REDIS_URL)).await;
    let calls = Arc::new(AtomicUsize::new(0));

    let before = key("before outage");
    a.handle
        .get_or_fetch(&before, "test-model", counting_fetch(&calls, b"{}"))
        .await
        .unwrap();
    assert_eq!(
        observer.handle.lookup(&before).await.unwrap().level,
        CacheLevel::L2
    );

    proxy.set_down(true);
    let budget = OP_TIMEOUT + Duration::from_millis(100);
    let mut slowest = Duration::ZERO;
    for n in 0..30 {
        let k = key(&format!("during outage {n}"));
        let started = Instant::now();
        let reply = a
            .handle
            .get_or_fetch(&k, "test-model", counting_fetch(&calls, b"{}"))
            .await;
        let elapsed = started.elapsed();
        assert!(reply.is_ok(), "request {n} failed during the outage");
        slowest = slowest.max(elapsed);
        // Still cached in L1.
        assert_eq!(a.handle.lookup(&k).await.unwrap().level, CacheLevel::L1);
    }
    println!("redis outage: slowest of 30 requests took {slowest:?} (budget {budget:?})");
    assert!(
        slowest <= budget,
        "a request waited {slowest:?} on a dead Redis (budget {budget:?})"
    );
    assert_eq!(a.handle.l2_state(), L2State::Down);
    let health = a.health.clone();
    wait_until("health degraded", || {
        cache_status(&health) == Some(Status::Degraded)
    })
    .await;
    let detail = a.health.snapshot().components[HEALTH_COMPONENT]
        .detail
        .clone();
    assert_eq!(detail["l2"], "down");
    // Let a few background reconnection attempts fail.
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    proxy.set_down(false);
    let handle = a.handle.clone();
    wait_until("L2 back up", || handle.l2_state() == L2State::Up).await;
    wait_until("health ok", || cache_status(&health) == Some(Status::Ok)).await;

    let after = key("after outage");
    let reply = a
        .handle
        .get_or_fetch(&after, "test-model", counting_fetch(&calls, b"{}"))
        .await
        .unwrap();
    assert!(matches!(
        reply.origin,
        Origin::Fetched {
            stored: StoreOutcome::Stored
        }
    ));
    let seen = observer.handle.lookup(&after).await.unwrap();
    assert_eq!(seen.level, CacheLevel::L2, "caching in L2 resumed");

    let errors = a
        .recorder
        .drain(100_000)
        .into_iter()
        .filter(|e| e.kind == "cache.error")
        .count();
    assert_eq!(
        errors, 1,
        "one cache.error for the outage, not one per request or attempt"
    );
    assert!(a.handle.stats().l2_errors >= 1);
}
