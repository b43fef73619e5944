//! The registry and the dispatcher against the mock upstream: resolution (ids, aliases,
//! `auto`, `<provider>/<model>`), fallback chains, the attempt bound, catalog TTL and
//! invalidation, listings with breaker status and the simulated label.

use std::collections::HashMap;
use std::time::Duration;

use exai_actors::policy::breaker::BreakerState;
use exai_actors::provider::{ProviderError, ProviderKind};
use exai_actors::registry::dispatch::Dispatcher;
use exai_actors::registry::{
    ListModels, ModelSource, Register, Registry, RegistryHandle, RegistrySettings, Resolve,
    StartupComplete,
};
use exai_testkit::mock_upstream::{MockSettings, MockUpstream};
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::providers::{Fixture, body, eventually, mock, settings_for};

fn registry(settings: RegistrySettings) -> RegistryHandle {
    RegistryHandle::new(settings)
}

fn fallbacks(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.iter().map(|m| (*m).to_owned()).collect()))
        .collect()
}

/// A provider for `mock` that does not retry, so the mock's counts are attempt counts.
fn no_retry(mock: &MockUpstream, name: &str) -> Fixture {
    let mut s = settings_for(mock, name);
    s.max_retries = 0;
    s.discover_models = false;
    Fixture::new(s)
}

#[actix_rt::test]
async fn builtin_aliases_and_auto_resolve_to_the_upstream_id() {
    let mock = mock();
    let mut s = settings_for(&mock, "kimi");
    s.kind = ProviderKind::Kimi;
    s.discover_models = false;
    let kimi = Fixture::new(s);
    let reg = registry(RegistrySettings {
        default_model: Some("kimi-k2-turbo".into()),
        ..RegistrySettings::default()
    });
    reg.register(kimi.handle.clone());

    let resolved = reg.resolve("kimi-k2").await.unwrap();
    assert_eq!(resolved.model, "kimi-k2-0905-preview");
    assert_eq!(resolved.provider(), Some("kimi"));
    assert_eq!(resolved.targets[0].upstream_model, "kimi-k2-0905-preview");
    assert_eq!(
        reg.resolve("KIMI-K2").await.unwrap().model,
        "kimi-k2-0905-preview"
    );
    assert_eq!(
        reg.resolve("auto").await.unwrap().model,
        "kimi-k2-turbo-preview"
    );
    assert_eq!(
        reg.resolve("kimi/anything-else").await.unwrap().targets[0].upstream_model,
        "anything-else"
    );

    let error = reg.resolve("no-such-model").await.unwrap_err();
    assert!(matches!(error, ProviderError::UnknownModel { .. }));
    assert_eq!(error.http_status(), 404);

    // The dispatcher sends the resolved id upstream.
    let done = Dispatcher::new(reg.clone())
        .complete("kimi-k2", body("hi"))
        .await
        .unwrap();
    assert_eq!(done.model, "kimi-k2-0905-preview");
    assert_eq!(mock.requests_for("kimi-k2-0905-preview"), 1);

    let listing = reg.list_models().await;
    let entry = listing.iter().find(|m| m.id == "kimi-k2-thinking").unwrap();
    assert!(entry.capabilities.thinking);
    assert_eq!(entry.context_window, Some(262_144));
    assert_eq!(entry.source, ModelSource::Builtin);
}

#[actix_rt::test]
async fn a_retryable_failure_falls_back_to_the_next_model_in_the_chain() {
    let mock = mock();
    let p = no_retry(&mock, "mock");
    let reg = registry(RegistrySettings {
        fallbacks: fallbacks(&[("mock/mock-500", &["mock/mock-echo"])]),
        ..RegistrySettings::default()
    });
    reg.register(p.handle.clone());
    let done = Dispatcher::new(reg.clone())
        .complete("mock/mock-500", body("fall back"))
        .await
        .unwrap();
    assert_eq!(done.content().as_deref(), Some("echo: fall back"));
    assert_eq!(mock.requests_for("mock-500"), 1);
    assert_eq!(mock.requests_for("mock-echo"), 1);

    // Streams fall back too, as long as no stream has started.
    let stream = Dispatcher::new(reg.clone())
        .stream("mock/mock-500", body("s"))
        .await
        .unwrap();
    let chunks: Vec<_> = stream.collect().await;
    assert!(chunks.iter().all(Result::is_ok));
    assert_eq!(mock.requests_for("mock-500"), 2);
}

#[actix_rt::test]
async fn a_client_error_does_not_fall_back() {
    let mock = mock();
    let p = no_retry(&mock, "mock");
    let reg = registry(RegistrySettings {
        fallbacks: fallbacks(&[("mock/mock-status-400", &["mock/mock-echo"])]),
        ..RegistrySettings::default()
    });
    reg.register(p.handle.clone());
    let error = Dispatcher::new(reg.clone())
        .complete("mock/mock-status-400", body("x"))
        .await
        .unwrap_err();
    assert_eq!(error.http_status(), 400);
    assert_eq!(mock.requests_for("mock-echo"), 0);
}

#[actix_rt::test]
async fn an_open_breaker_is_skipped_without_a_call() {
    let mock_a = mock();
    let mock_b = mock();
    // mock-flaky-1: the first request to each mock fails with 500, later ones answer.
    let shared = "mock-flaky-1";
    let mut s = settings_for(&mock_a, "a");
    s.max_retries = 0;
    s.discover_models = false;
    s.models = vec![shared.into()];
    s.breaker.failure_threshold = 1;
    s.breaker.cool_down = Duration::from_secs(60);
    let a = Fixture::new(s);
    let mut s = settings_for(&mock_b, "b");
    s.max_retries = 0;
    s.discover_models = false;
    s.models = vec![shared.into()];
    let b = Fixture::new(s);
    let reg = registry(RegistrySettings::default());
    reg.register(a.handle.clone());
    reg.register(b.handle.clone());

    a.handle
        .complete(shared, body("open it"))
        .await
        .unwrap_err();
    b.handle
        .complete(shared, body("use up b's failure"))
        .await
        .unwrap_err();
    assert_eq!(a.handle.breaker_state_for(shared), BreakerState::Open);
    mock_a.reset();

    let done = Dispatcher::new(reg.clone())
        .complete(shared, body("x"))
        .await
        .unwrap();
    assert_eq!(&*done.provider, "b");
    assert_eq!(mock_a.requests(), 0, "the open model was not called");
    assert_eq!(mock_b.requests_for(shared), 2);

    // With nothing else to try, the caller gets the breaker's own error.
    let error = Dispatcher::new(reg.clone())
        .complete(&format!("a/{shared}"), body("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::BreakerOpen { retry_in_ms, model: Some(m), .. } if *retry_in_ms > 0 && m == shared),
        "{error:?}"
    );
    assert_eq!(error.http_status(), 503);
    assert_eq!(mock_a.requests(), 0);
    // The refusals were counted.
    a.handle.publish_health();
    let health = a.health.snapshot().components["provider:a"].clone();
    assert_eq!(
        health.detail["counters"]["breaker_rejected"], 2,
        "{health:?}"
    );
    // Provider a's other models are not fenced.
    Dispatcher::new(reg.clone())
        .complete("a/mock-echo", body("x"))
        .await
        .unwrap();

    let listing = reg.list_models().await;
    let status = |p: &str| {
        listing
            .iter()
            .find(|m| m.provider == p && m.id == shared)
            .map(|m| m.status)
    };
    assert_eq!(status("a"), Some(BreakerState::Open));
    assert_eq!(status("b"), Some(BreakerState::Closed));
}

#[actix_rt::test]
async fn when_every_attempt_fails_the_error_names_each_provider_and_cause() {
    let mock = mock();
    let p = no_retry(&mock, "upstream-x");
    let reg = registry(RegistrySettings {
        fallbacks: fallbacks(&[("upstream-x/mock-500", &["upstream-x/mock-429-0"])]),
        ..RegistrySettings::default()
    });
    reg.register(p.handle.clone());
    let error = Dispatcher::new(reg.clone())
        .complete("upstream-x/mock-500", body("x"))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, ProviderError::Exhausted { attempts: 2, .. }),
        "{error:?}"
    );
    assert!(message.contains("all 2 attempts"), "{message}");
    assert!(
        message.contains("upstream-x/mock-500: provider upstream-x: upstream answered HTTP 500"),
        "{message}"
    );
    assert!(
        message.contains("upstream-x/mock-429-0: provider upstream-x: upstream answered HTTP 429"),
        "{message}"
    );
    assert_eq!(
        error.http_status(),
        429,
        "the last failure decides the status"
    );
}

#[actix_rt::test]
async fn the_total_number_of_attempts_is_bounded() {
    let mock = mock();
    let p = no_retry(&mock, "m");
    let reg = registry(RegistrySettings {
        fallbacks: fallbacks(&[(
            "m/mock-500",
            &[
                "m/mock-status-502",
                "m/mock-status-503",
                "m/mock-status-504",
            ],
        )]),
        max_attempts: 2,
        ..RegistrySettings::default()
    });
    reg.register(p.handle.clone());
    Dispatcher::new(reg.clone())
        .complete("m/mock-500", body("x"))
        .await
        .unwrap_err();
    assert_eq!(mock.requests(), 2);
}

#[actix_rt::test]
async fn registration_shows_at_once_and_discovery_is_cached_for_the_ttl() {
    let mock_a = MockUpstream::start(MockSettings {
        models: vec!["alpha-1".into()],
        ..MockSettings::default()
    })
    .unwrap();
    let mock_b = MockUpstream::start(MockSettings {
        models: vec!["beta-1".into()],
        ..MockSettings::default()
    })
    .unwrap();
    let reg = registry(RegistrySettings {
        cache_ttl: Duration::from_millis(400),
        ..RegistrySettings::default()
    });
    reg.register(Fixture::new(settings_for(&mock_a, "a")).handle);
    let ids = |l: &[exai_actors::registry::ModelListing]| -> Vec<String> {
        l.iter().map(|m| m.id.clone()).collect()
    };

    assert_eq!(ids(&reg.list_models().await), vec!["alpha-1"]);
    assert_eq!(mock_a.model_list_requests(), 1);
    assert_eq!(ids(&reg.list_models().await), vec!["alpha-1"]);
    assert_eq!(
        mock_a.model_list_requests(),
        1,
        "second listing within the TTL is cached"
    );

    // A new registration is visible immediately, even within the TTL.
    let mut s = settings_for(&mock_b, "b");
    s.models = vec!["beta-configured".into()];
    reg.register(Fixture::new(s).handle);
    assert!(
        reg.resolve("beta-configured").await.is_ok(),
        "configured models resolve at once"
    );
    let listed = ids(&reg.list_models().await);
    assert_eq!(listed, vec!["alpha-1", "beta-configured", "beta-1"]);
    assert!(reg.resolve("beta-1").await.is_ok());

    // A change upstream is not seen within the TTL, and is seen after it.
    mock_a.set_models(vec!["alpha-1".into(), "alpha-2".into()]);
    assert!(!ids(&reg.list_models().await).contains(&"alpha-2".to_owned()));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(ids(&reg.list_models().await).contains(&"alpha-2".to_owned()));
    assert!(reg.resolve("alpha-2").await.is_ok());
}

#[actix_rt::test]
async fn an_unknown_model_triggers_a_refresh_of_a_stale_catalog() {
    let mock = mock();
    let reg = registry(RegistrySettings {
        cache_ttl: Duration::from_millis(100),
        ..RegistrySettings::default()
    });
    reg.register(Fixture::new(settings_for(&mock, "m")).handle);
    reg.list_models().await;
    mock.set_models(vec!["late-model".into()]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resolved = reg.resolve("late-model").await.unwrap();
    assert_eq!(resolved.provider(), Some("m"));
}

#[actix_rt::test]
async fn the_actor_registers_lists_and_invalidates_after_startup() {
    let mock = mock();
    let handle = registry(RegistrySettings::default());
    let addr = actix::Actor::start(Registry::new(handle.clone()));
    let mut s = settings_for(&mock, "sim");
    s.simulated = true;
    addr.send(Register {
        provider: Fixture::new(s).handle,
    })
    .await
    .unwrap()
    .unwrap();

    let listing = addr.send(ListModels).await.unwrap().unwrap();
    assert!(listing.iter().all(|m| m.simulated && m.provider == "sim"));
    assert!(listing.iter().any(|m| m.id == "mock-echo"));
    assert_eq!(mock.model_list_requests(), 1);

    // Start-up finished: the cache is invalidated once more and refreshed in the background.
    addr.send(StartupComplete).await.unwrap().unwrap();
    eventually("a refresh after StartupComplete", || {
        mock.model_list_requests() == 2
    })
    .await;

    let resolved = addr
        .send(Resolve {
            model: "mock-echo".into(),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved.provider(), Some("sim"));
    let json: Value = serde_json::to_value(&listing[0]).unwrap();
    assert_eq!(json["simulated"], true);
    assert_eq!(json["status"], "closed");
}
