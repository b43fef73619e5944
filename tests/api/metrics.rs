//! `GET /metrics` read back with a Prometheus text-format parser (`prometheus-parse`), after
//! real calls through `/v1` against the mock upstream (issue 17 §3).

use std::collections::HashMap;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value as Metric};
use serde_json::json;

use crate::helpers::{TestApp, eventually, spawn_app_with};
use crate::ws::{mock, mock_toml};

/// Fetches and parses `/metrics`.
async fn scrape(app: &TestApp) -> Vec<Sample> {
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape::parse(lines).unwrap().samples
}

/// The value of the one sample of `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .collect();
    assert!(matching.len() <= 1, "{name} {labels:?}: {matching:?}");
    matching.first().map(|s| match &s.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        Metric::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        Metric::Summary(_) => f64::NAN,
    })
}

#[actix_rt::test]
async fn metrics_are_prometheus_text_with_the_request_token_cost_and_process_series() {
    let mock = mock();
    let app = spawn_app_with(
        &[("EXAI_PRICES", "mock-echo=2/4")],
        Some(&mock_toml(&mock, "")),
    )
    .await;
    let url = format!("{}/v1/chat/completions", app.base);
    let chat = |model: &str, content: &str| {
        app.client
            .post(&url)
            .json(&json!({"model": model, "messages": [{"role": "user", "content": content}]}))
            .send()
    };
    assert_eq!(chat("mock-echo", "one two").await.unwrap().status(), 200);
    assert_eq!(chat("mock-echo", "one two").await.unwrap().status(), 200); // an L1 hit
    let failed = chat("mock-500", "x").await.unwrap().status().as_u16();
    let unknown = chat("a-name-no-catalog-knows", "x")
        .await
        .unwrap()
        .status()
        .as_u16();

    let samples = eventually(Duration::from_secs(10), "the request series", || async {
        let samples = scrape(&app).await;
        let n: f64 = samples
            .iter()
            .filter(|s| s.metric == "exai_requests_total")
            .filter_map(|s| match s.value {
                Metric::Counter(v) => Some(v),
                _ => None,
            })
            .sum();
        (n >= 4.0).then_some(samples)
    })
    .await;
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    let ok = [
        ("surface", "v1"),
        ("model", "mock-echo"),
        ("provider", "mock"),
    ];
    assert_eq!(
        v(
            "exai_requests_total",
            &[ok[0], ok[1], ok[2], ("status", "200"), ("cache", "miss")]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            "exai_requests_total",
            &[ok[0], ok[1], ("status", "200"), ("cache", "l1")]
        ),
        Some(1.0)
    );
    let failed = failed.to_string();
    assert_eq!(
        v(
            "exai_requests_total",
            &[("model", "mock-500"), ("status", failed.as_str())]
        ),
        Some(1.0)
    );
    let unknown = unknown.to_string();
    assert_eq!(
        v(
            "exai_requests_total",
            &[("model", "other"), ("status", unknown.as_str())]
        ),
        Some(1.0),
        "a model the catalog does not know counts as other"
    );
    assert!(
        !samples
            .iter()
            .any(|s| s.labels.values().any(|l| l.contains("no-catalog"))),
        "client-chosen names never become label values"
    );
    // Histograms: every call is in the duration histogram's +Inf bucket.
    let duration = samples
        .iter()
        .find(|s| {
            s.metric == "exai_request_duration_seconds" && s.labels.get("surface") == Some("v1")
        })
        .unwrap();
    let Metric::Histogram(buckets) = &duration.value else {
        panic!("not a histogram: {duration:?}")
    };
    assert!((buckets.first().unwrap().less_than - 0.005).abs() < 1e-12);
    assert!(buckets.iter().any(|b| (b.less_than - 120.0).abs() < 1e-9));
    assert_eq!(buckets.last().unwrap().count, 4.0);
    assert!(
        samples
            .iter()
            .any(|s| s.metric == "exai_request_duration_seconds_count"),
        "histogram count present"
    );
    // Upstream attempts: one answered, the failures as `failed`.
    assert_eq!(
        v(
            "exai_upstream_attempts_total",
            &[
                ("provider", "mock"),
                ("model", "mock-echo"),
                ("outcome", "ok")
            ]
        ),
        Some(1.0)
    );
    assert!(
        v(
            "exai_upstream_attempts_total",
            &[("provider", "mock"), ("outcome", "failed")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    // Tokens and cost of the one upstream answer.
    let prompt = v(
        "exai_tokens_total",
        &[("model", "mock-echo"), ("kind", "prompt")],
    )
    .unwrap();
    let completion = v(
        "exai_tokens_total",
        &[("model", "mock-echo"), ("kind", "completion")],
    )
    .unwrap();
    assert!(prompt > 0.0 && completion > 0.0);
    let cost = v("exai_cost_usd_total", &[("model", "mock-echo")]).unwrap();
    assert!(
        (cost - (prompt * 2.0 + completion * 4.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    // Cache, breakers, pipeline, process.
    assert_eq!(
        v(
            "exai_cache_operations_total",
            &[("level", "l1"), ("result", "hit")]
        ),
        Some(1.0)
    );
    assert_eq!(v("exai_cache_entries", &[]), Some(1.0));
    assert!(v("exai_cache_bytes", &[]).is_some_and(|b| b > 0.0));
    assert_eq!(
        v("exai_breaker_state", &[("provider", "mock"), ("model", "")]),
        Some(0.0)
    );
    assert!(v("exai_events_recorded_total", &[]).is_some_and(|n| n >= 4.0));
    for name in [
        "exai_events_persisted_total",
        "exai_events_spilled_total",
        "exai_events_lost_total",
        "exai_journal_bytes",
        "exai_ws_sessions",
        "exai_dashboard_clients",
    ] {
        assert!(v(name, &[]).is_some(), "{name} missing");
    }
    assert_eq!(v("exai_events_lost_total", &[]), Some(0.0));
    assert_eq!(
        v("exai_actor_restarts_total", &[("actor", "dashboard")]),
        Some(0.0)
    );
    assert_eq!(v("exai_up", &[]), Some(1.0));
    assert_eq!(
        v("exai_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );
    // Every family is typed: the parser found a TYPE line for each (it files a histogram's
    // `_sum` and `_count` apart from its buckets, as untyped).
    let histograms: Vec<&str> = samples
        .iter()
        .filter(|s| matches!(s.value, Metric::Histogram(_)))
        .map(|s| s.metric.as_str())
        .collect();
    let of_histogram = |name: &str| {
        ["_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|b| histograms.contains(&b))
        })
    };
    let typed: HashMap<&str, usize> = samples.iter().fold(HashMap::new(), |mut m, s| {
        if matches!(s.value, Metric::Untyped(_)) && !of_histogram(&s.metric) {
            *m.entry(s.metric.as_str()).or_default() += 1;
        }
        m
    });
    assert!(typed.is_empty(), "untyped samples: {typed:?}");
}
