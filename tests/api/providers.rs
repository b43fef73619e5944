//! Provider calls against the in-repo mock upstream: success (JSON and SSE), every fault
//! mode, retries as the mock counts them, `Retry-After`, the breaker, timeouts, capacity,
//! cancellation, and that the API key never leaks.

use std::time::{Duration, Instant};

use exai_actors::health::{HealthBoard, Status};
use exai_actors::pipeline::event::Event;
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::policy::breaker::{BreakerSettings, BreakerState};
use exai_actors::policy::retry::RetryPolicy;
use exai_actors::provider::{
    ProviderError, ProviderHandle, ProviderSettings, TimeoutKind, health_component,
};
use exai_testkit::mock_upstream::{MockSettings, MockUpstream};
use futures_util::StreamExt as _;
use secrecy::SecretString;
use serde_json::{Value, json};

/// A recognisable fake key that must never show up anywhere.
pub const FAKE_KEY: &str = "sk-exai-FAKE-test-key-7f3a9c";

/// A mock upstream on a free port.
pub fn mock() -> MockUpstream {
    MockUpstream::start(MockSettings::default()).unwrap()
}

/// Provider settings for `mock` with fast retries, short timeouts and a breaker that only
/// opens when a test lowers its threshold.
pub fn settings_for(mock: &MockUpstream, name: &str) -> ProviderSettings {
    let mut s = ProviderSettings::openai_compatible(name, mock.base_url())
        .with_api_key(SecretString::from(FAKE_KEY));
    s.retry = RetryPolicy::new(Duration::from_millis(1), Duration::from_millis(5));
    s.connect_timeout = Duration::from_secs(2);
    s.request_timeout = Duration::from_secs(5);
    s.stream_idle_timeout = Duration::from_secs(2);
    s.breaker = BreakerSettings {
        failure_threshold: 1000,
        cool_down: Duration::from_millis(100),
    };
    s
}

/// A provider handle with its own recorder and health board.
pub struct Fixture {
    /// The provider.
    pub handle: ProviderHandle,
    /// Its events.
    pub recorder: Recorder,
    /// Its health.
    pub health: HealthBoard,
}

impl Fixture {
    pub fn new(settings: ProviderSettings) -> Self {
        let recorder = Recorder::new("test", 100_000);
        let health = HealthBoard::new();
        let handle = ProviderHandle::new(settings, recorder.clone(), health.clone()).unwrap();
        Self {
            handle,
            recorder,
            health,
        }
    }

    /// Every event recorded so far (drains them).
    pub fn events(&self) -> Vec<Event> {
        self.recorder.drain(usize::MAX)
    }

    /// The provider's `/health` component, published now.
    pub fn health_detail(&self) -> Value {
        self.handle.publish_health();
        let name = exai_actors::provider::health_component(self.handle.name());
        self.health
            .snapshot()
            .components
            .get(&name)
            .map(|c| c.detail.clone())
            .unwrap_or_default()
    }
}

/// A chat request body with fields exai does not know, which must pass through.
pub fn body(text: &str) -> Value {
    json!({
        "model": "ignored-by-exai",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
        "temperature": 0.25,
        "x_vendor_extension": {"keep": [1, 2, 3]},
    })
}

/// Waits until `check` holds, failing after two seconds.
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn a_base_url_that_is_not_a_url_is_refused_at_construction() {
    for base in ["", "not a url", "http://bad host:99999"] {
        let settings = ProviderSettings::openai_compatible("broken", base);
        let error = ProviderHandle::new(settings, Recorder::new("t", 10), HealthBoard::new())
            .err()
            .unwrap_or_else(|| panic!("{base:?} was accepted"));
        let text = error.to_string();
        assert!(text.contains("broken"), "{text}");
        assert!(text.contains("URL"), "{text}");
    }
}

/// The `provider.attempt` events: attempts that failed, were retried or were cancelled.
fn attempts(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.kind == "provider.attempt")
        .collect()
}

/// Collects a stream: the concatenated `delta.content`, whether any reasoning arrived, and
/// the error that ended it, if any.
async fn collect(
    mut stream: exai_actors::provider::ChatStream,
) -> (String, bool, Option<ProviderError>) {
    let mut content = String::new();
    let mut reasoning = false;
    while let Some(item) = stream.next().await {
        match item {
            Ok(data) => {
                let chunk: Value = serde_json::from_slice(&data).unwrap();
                let delta = &chunk["choices"][0]["delta"];
                if let Some(text) = delta["content"].as_str() {
                    content.push_str(text);
                }
                reasoning |= delta.get("reasoning_content").is_some();
            }
            Err(error) => return (content, reasoning, Some(error)),
        }
    }
    (content, reasoning, None)
}

#[actix_rt::test]
async fn non_streaming_success_keeps_content_usage_and_unknown_fields() {
    let mock = mock();
    let f = Fixture::new(settings_for(&mock, "mock"));
    let done = f
        .handle
        .complete("mock-reasoning", body("hello big world"))
        .await
        .unwrap();

    assert_eq!(done.content().as_deref(), Some("echo: hello big world"));
    let json = done.json().unwrap();
    assert!(
        json["choices"][0]["message"]["reasoning_content"].is_string(),
        "{json}"
    );
    assert_eq!(
        json["system_fingerprint"], "exai-mock",
        "unknown response fields pass through"
    );
    let usage = done.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (5, 4, 9)
    );
    assert_eq!(done.attempts, 1);
    assert_eq!(&*done.provider, "mock");

    let sent = mock.last_request().unwrap();
    assert_eq!(
        sent["model"], "mock-reasoning",
        "model is set to the upstream id"
    );
    assert_eq!(sent["stream"], false);
    assert_eq!(sent["x_vendor_extension"], json!({"keep": [1, 2, 3]}));
    assert_eq!(sent["temperature"], 0.25);
    assert_eq!(mock.requests(), 1);

    // A successful attempt records nothing of its own: its call's `request` event has it.
    let events = f.events();
    assert!(attempts(&events).is_empty(), "{events:?}");
    assert!(!events.iter().any(|e| e.kind == "provider.request"));
    let counters = &f.health_detail()["counters"];
    assert_eq!(counters["succeeded"], 1, "{counters}");
    assert_eq!(counters["prompt_tokens"], 5, "{counters}");
}

#[actix_rt::test]
async fn streaming_success_keeps_content_reasoning_and_usage() {
    let mock = mock();
    let f = Fixture::new(settings_for(&mock, "mock"));
    let mut stream = f
        .handle
        .stream("mock-reasoning", {
            let mut b = body("stream me please");
            b["stream_options"] = json!({"include_usage": true});
            b
        })
        .await
        .unwrap();
    let mut content = String::new();
    let mut reasoning = false;
    while let Some(item) = stream.next().await {
        let chunk: Value = serde_json::from_slice(&item.unwrap()).unwrap();
        let delta = &chunk["choices"][0]["delta"];
        if let Some(text) = delta["content"].as_str() {
            content.push_str(text);
        }
        reasoning |= delta.get("reasoning_content").is_some();
    }
    assert_eq!(content, "echo: stream me please");
    assert!(reasoning, "reasoning_content chunks pass through");
    let usage = stream.usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 4));
    assert_eq!(mock.last_request().unwrap()["stream"], true);
    assert_eq!(mock.requests(), 1);

    let events = f.events();
    assert!(attempts(&events).is_empty(), "{events:?}");
    assert_eq!(
        f.handle.in_flight(),
        0,
        "a finished stream releases its slot"
    );
}

#[actix_rt::test]
async fn flaky_upstream_is_retried_until_it_answers() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 2;
    let f = Fixture::new(s);
    let done = f.handle.complete("mock-flaky-2", body("hi")).await.unwrap();
    assert_eq!(done.attempts, 3);
    assert_eq!(mock.requests_for("mock-flaky-2"), 3);

    // The two failed attempts were retried; the third answered and records nothing.
    let events = f.events();
    let reqs = attempts(&events);
    let seen: Vec<_> = reqs
        .iter()
        .map(|e| (e.data["attempt"].clone(), e.data["outcome"].clone()))
        .collect();
    assert_eq!(
        seen,
        vec![(json!(1), json!("retried")), (json!(2), json!("retried"))]
    );
    assert_eq!(reqs[0].data["error_kind"], "upstream_server_error");
    assert_eq!(reqs[0].data["status"], 500);
    assert_eq!(reqs[0].data["ok"], false);
}

#[actix_rt::test]
async fn server_errors_exhaust_retries_with_an_error_naming_provider_and_cause() {
    let mock = mock();
    let mut s = settings_for(&mock, "flaky-provider");
    s.max_retries = 2;
    let f = Fixture::new(s);
    let error = f.handle.complete("mock-500", body("hi")).await.unwrap_err();
    assert_eq!(mock.requests_for("mock-500"), 3, "1 attempt + 2 retries");
    assert_eq!(error.http_status(), 502);
    assert_eq!(error.kind(), "upstream_server_error");
    let message = error.to_string();
    assert!(message.contains("flaky-provider"), "{message}");
    assert!(message.contains("HTTP 500"), "{message}");
    assert!(message.contains("mock failure"), "{message}");
}

#[actix_rt::test]
async fn retry_after_is_honoured() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 1;
    let f = Fixture::new(s);
    let started = Instant::now();
    let error = f
        .handle
        .complete("mock-429-0.3", body("hi"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(mock.requests_for("mock-429-0.3"), 2);
    assert!(
        elapsed >= Duration::from_millis(300),
        "waited only {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "waited {elapsed:?}");
    assert_eq!(error.http_status(), 429);
    assert_eq!(error.kind(), "rate_limited");
    assert_eq!(error.retry_after(), Some(Duration::from_millis(300)));
}

#[actix_rt::test]
async fn client_errors_and_501_are_not_retried() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 3;
    let f = Fixture::new(s);
    for (model, status) in [
        ("mock-status-400", 400),
        ("mock-status-404", 404),
        ("mock-status-501", 502),
    ] {
        let error = f.handle.complete(model, body("hi")).await.unwrap_err();
        assert_eq!(mock.requests_for(model), 1, "{model} must not be retried");
        assert_eq!(error.http_status(), status, "{model}: {error}");
    }
    // 408 is retried.
    let _ = f
        .handle
        .complete("mock-status-408", body("hi"))
        .await
        .unwrap_err();
    assert_eq!(mock.requests_for("mock-status-408"), 4);
}

#[actix_rt::test]
async fn malformed_responses_fail_clearly_without_retry() {
    let mock = mock();
    let f = Fixture::new(settings_for(&mock, "mock"));
    let error = f
        .handle
        .complete("mock-malformed", body("hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ProviderError::Malformed { .. }),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 502);
    assert!(
        error
            .to_string()
            .contains("provider mock: malformed response"),
        "{error}"
    );
    assert_eq!(mock.requests_for("mock-malformed"), 1);

    // A malformed chunk in a stream is passed on as is: the dialect is the client's to parse.
    let stream = f.handle.stream("mock-malformed", body("hi")).await.unwrap();
    let chunks: Vec<_> = stream.collect().await;
    assert!(chunks.iter().all(Result::is_ok));
}

#[actix_rt::test]
async fn a_cut_stream_ends_with_an_error_and_is_not_retried() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 3;
    let f = Fixture::new(s);
    let stream = f
        .handle
        .stream("mock-stream-cut", body("one two three four five six"))
        .await
        .unwrap();
    let (content, _, error) = collect(stream).await;
    assert!(!content.is_empty(), "chunks before the cut are delivered");
    let error = error.expect("the cut must surface as an error");
    assert!(
        matches!(error, ProviderError::StreamInterrupted { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("before [DONE]"), "{error}");
    assert_eq!(
        mock.requests_for("mock-stream-cut"),
        1,
        "no retry after a stream started"
    );
    let events = f.events();
    let reqs = attempts(&events);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].data["error_kind"], "stream_interrupted");
    assert_eq!(f.handle.in_flight(), 0);
}

#[actix_rt::test]
async fn a_hang_hits_the_request_timeout_and_frees_its_slot() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.request_timeout = Duration::from_millis(200);
    s.max_concurrency = 1;
    s.max_queue = 0;
    let f = Fixture::new(s);
    let started = Instant::now();
    let error = f
        .handle
        .complete("mock-hang", body("hi"))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                kind: TimeoutKind::Request,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 504);
    assert!(
        error
            .to_string()
            .contains("provider mock: request timeout after 200 ms"),
        "{error}"
    );
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert_eq!(
        mock.requests_for("mock-hang"),
        1,
        "timeouts are not retried"
    );
    assert_eq!(f.handle.in_flight(), 0);
    // The only slot is free again: the next call goes through at once.
    let done = f.handle.complete("mock-echo", body("after")).await.unwrap();
    assert_eq!(done.content().as_deref(), Some("echo: after"));
    // The mock stops promptly even with a hung request behind it.
    let stopping = Instant::now();
    mock.stop();
    assert!(stopping.elapsed() < Duration::from_secs(2));
}

#[actix_rt::test]
async fn a_silent_stream_hits_the_idle_timeout() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.stream_idle_timeout = Duration::from_millis(100);
    let f = Fixture::new(s);
    let stream = f
        .handle
        .stream("mock-trickle-400", body("hi"))
        .await
        .unwrap();
    let (_, _, error) = collect(stream).await;
    let error = error.unwrap();
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                kind: TimeoutKind::StreamIdle,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(f.handle.in_flight(), 0);
}

#[actix_rt::test]
async fn over_capacity_fails_at_once_when_slots_and_queue_are_full() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_concurrency = 1;
    s.max_queue = 1;
    let f = Fixture::new(s);
    let a = {
        let h = f.handle.clone();
        actix_rt::spawn(async move { h.complete("mock-hang", body("a")).await })
    };
    let b = {
        let h = f.handle.clone();
        actix_rt::spawn(async move { h.complete("mock-hang", body("b")).await })
    };
    eventually("one in flight and one queued", || {
        f.handle.in_flight() == 1 && f.handle.queued() == 1
    })
    .await;
    let started = Instant::now();
    let error = f.handle.complete("mock-echo", body("c")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(
        matches!(error, ProviderError::OverCapacity { .. }),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 429);
    assert!(
        error.to_string().contains("provider mock: over capacity"),
        "{error}"
    );

    // Cancelling the callers releases the slot and the queue place.
    a.abort();
    b.abort();
    eventually("slots released", || {
        f.handle.in_flight() == 0 && f.handle.queued() == 0
    })
    .await;
    let events = f.events();
    assert!(
        attempts(&events)
            .iter()
            .any(|e| e.data["error_kind"] == "cancelled"),
        "{events:?}"
    );
    f.handle.complete("mock-echo", body("d")).await.unwrap();
}

#[actix_rt::test]
async fn dropping_a_stream_aborts_the_upstream_request() {
    let mock = mock();
    let f = Fixture::new(settings_for(&mock, "mock"));
    let mut stream = f
        .handle
        .stream("mock-trickle-50", body("hi"))
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    assert_eq!(f.handle.in_flight(), 1);
    drop(stream);
    assert_eq!(
        f.handle.in_flight(),
        0,
        "dropping the stream releases the slot"
    );
    eventually("the mock saw the client go away", || {
        mock.cancelled_streams() == 1
    })
    .await;
    let events = f.events();
    assert_eq!(attempts(&events)[0].data["error_kind"], "cancelled");
}

#[actix_rt::test]
async fn a_model_breaker_opens_rejects_then_probes_and_closes_while_other_models_answer() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 0;
    s.breaker = BreakerSettings {
        failure_threshold: 2,
        cool_down: Duration::from_millis(200),
    };
    let f = Fixture::new(s);
    let component = health_component("mock");
    assert_eq!(
        f.health.snapshot().components[&component].status,
        Status::Ok
    );
    // mock-flaky-2: two 500s, then answers.
    let model = "mock-flaky-2";
    f.handle.complete(model, body("1")).await.unwrap_err();
    assert_eq!(f.handle.breaker_state_for(model), BreakerState::Closed);
    f.handle.complete(model, body("2")).await.unwrap_err();
    assert_eq!(f.handle.breaker_state_for(model), BreakerState::Open);
    assert_eq!(
        f.handle.breaker_state(),
        BreakerState::Closed,
        "an HTTP 500 fences the model, not the provider"
    );

    // Open: refused without calling the upstream; other models still answer.
    let error = f.handle.complete(model, body("3")).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::BreakerOpen { model: Some(m), .. } if m == model),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 503);
    assert!(
        error
            .to_string()
            .contains("provider mock model mock-flaky-2: circuit breaker open"),
        "{error}"
    );
    assert_eq!(mock.requests_for(model), 2);
    f.handle.complete("mock-echo", body("other")).await.unwrap();
    // The actor republishes every second; do it now.
    f.handle.publish_health();
    let health = f.health.snapshot().components[&component].clone();
    assert_eq!(health.status, Status::Degraded);
    assert_eq!(health.detail["breaker"]["state"], "closed");
    let open = &health.detail["model_breakers"][0];
    assert_eq!(open["model"], model, "{health:?}");
    assert_eq!(open["state"], "open");
    assert!(
        open["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 200),
        "{open}"
    );
    assert_eq!(health.detail["counters"]["breaker_rejected"], 1);

    // After the cool-down one probe goes through; its success closes the breaker.
    tokio::time::sleep(Duration::from_millis(250)).await;
    f.handle.complete(model, body("4")).await.unwrap();
    assert_eq!(f.handle.breaker_state_for(model), BreakerState::Closed);
    let health = f.health.snapshot().components[&component].clone();
    assert_eq!(health.status, Status::Ok);
    assert_eq!(health.detail["model_breakers"], json!([]));

    let kinds: Vec<_> = f
        .events()
        .into_iter()
        .filter(|e| e.kind.starts_with("breaker."))
        .map(|e| (e.kind, e.data["provider"].clone(), e.data["model"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("breaker.opened".to_owned(), json!("mock"), json!(model)),
            (
                "breaker.half_opened".to_owned(),
                json!("mock"),
                json!(model)
            ),
            ("breaker.closed".to_owned(), json!("mock"), json!(model)),
        ]
    );
}

#[actix_rt::test]
async fn a_provider_refusing_connections_trips_the_provider_wide_breaker() {
    // A port nobody listens on: bind one, then let it go.
    let port = crate::helpers::free_port();
    let mut s = ProviderSettings::openai_compatible("down", format!("http://127.0.0.1:{port}/v1"));
    s.max_retries = 0;
    s.breaker = BreakerSettings {
        failure_threshold: 2,
        cool_down: Duration::from_secs(60),
    };
    let f = Fixture::new(s);
    for model in ["model-a", "model-b"] {
        let error = f.handle.complete(model, body("x")).await.unwrap_err();
        assert!(
            matches!(error, ProviderError::Connection { connect: true, .. }),
            "{error:?}"
        );
    }
    assert_eq!(f.handle.breaker_state(), BreakerState::Open);
    let error = f.handle.complete("model-c", body("x")).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::BreakerOpen { model: None, retry_in_ms, .. } if retry_in_ms > 0),
        "{error:?}"
    );
    let opened: Vec<_> = f
        .events()
        .into_iter()
        .filter(|e| e.kind == "breaker.opened")
        .collect();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].data["provider"], "down");
    assert_eq!(opened[0].data["model"], Value::Null);
    assert_eq!(opened[0].data["scope"], "provider");
}

#[actix_rt::test]
async fn a_failed_probe_reopens_the_breaker() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 0;
    s.breaker = BreakerSettings {
        failure_threshold: 1,
        cool_down: Duration::from_millis(100),
    };
    let f = Fixture::new(s);
    f.handle.complete("mock-500", body("1")).await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(150)).await;
    f.handle
        .complete("mock-500", body("probe"))
        .await
        .unwrap_err();
    assert_eq!(f.handle.breaker_state_for("mock-500"), BreakerState::Open);
    assert_eq!(mock.requests_for("mock-500"), 2);
}

#[actix_rt::test]
async fn the_api_key_never_appears_in_errors_events_health_or_debug() {
    let mock = mock();
    let mut s = settings_for(&mock, "mock");
    s.max_retries = 1;
    s.breaker.failure_threshold = 2;
    let f = Fixture::new(s.clone());

    let mut texts = vec![format!("{s:?}"), format!("{:?}", f.handle)];
    // The mock's 401 quotes the bearer token back, as some real APIs do.
    let error = f.handle.complete("mock-401", body("hi")).await.unwrap_err();
    assert_eq!(error.http_status(), 401);
    assert!(error.to_string().contains("[redacted]"), "{error}");
    texts.push(error.to_string());
    texts.push(format!("{error:?}"));
    for model in ["mock-500", "mock-malformed", "mock-500"] {
        let error = f.handle.complete(model, body("hi")).await.unwrap_err();
        texts.push(error.to_string());
        texts.push(format!("{error:?}"));
    }
    texts.push(serde_json::to_string(&f.health.snapshot()).unwrap());
    for event in f.events() {
        texts.push(serde_json::to_string(&event).unwrap());
    }
    assert!(mock.requests() >= 3);
    for text in &texts {
        assert!(!text.contains(FAKE_KEY), "the key leaked into: {text}");
    }
}
