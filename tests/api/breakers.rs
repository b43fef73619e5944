//! Breakers per (provider, model), end to end: a failing model is fenced alone, a refusal is
//! a 503 with `Retry-After` on `/v1` and `retry_after_ms` on `/ws`, `/health` counts the
//! refusals and lists the open breaker with its model, and the demo's healthy models stay
//! healthy while its failing one is fenced.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{eventually, http, start_config, test_config};
use crate::ws::{app_with_mock, assert_error, call, mock, session};

fn user(content: &str) -> Value {
    json!([{"role": "user", "content": content}])
}

/// POSTs a chat completion to `base`; returns status, `Retry-After` and body.
async fn complete(
    client: &reqwest::Client,
    base: &str,
    body: Value,
) -> (u16, Option<String>, Value) {
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[actix_rt::test]
async fn eight_failures_fence_only_the_failing_model() {
    let mock = mock();
    let app = app_with_mock(&mock, &[]).await;
    let mut statuses = Vec::new();
    let mut refusal = None;
    for i in 0..8 {
        let (status, retry_after, body) = complete(
            &app.client,
            &app.base,
            json!({"model": "mock-500", "messages": user(&format!("fail {i}"))}),
        )
        .await;
        statuses.push(status);
        if status == 503 {
            refusal = Some((retry_after, body));
        }
    }
    assert_eq!(&statuses[..5], &[502; 5], "{statuses:?}");
    assert_eq!(&statuses[5..], &[503; 3], "{statuses:?}");
    assert_eq!(
        mock.requests_for("mock-500"),
        5,
        "refusals make no upstream call"
    );

    // The refusal says when to come back: whole seconds until the probe, at least 1.
    let (retry_after, body) = refusal.unwrap();
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=30).contains(&secs), "{secs}");
    assert_eq!(body["error"]["code"], "breaker_open", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("model mock-500")),
        "{body}"
    );

    // Every other model of the same provider keeps answering.
    for model in ["mock-echo", "mock-slow"] {
        let (status, _, body) = complete(
            &app.client,
            &app.base,
            json!({"model": model, "messages": user("still fine")}),
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
    }

    // /ws: the same refusal, coded, with retry_after_ms.
    let mut ws = session(&app).await;
    let refused = call(
        &mut ws,
        "r1",
        "chat",
        json!({"prompt": "x", "model": "mock-500"}),
    )
    .await;
    assert_error(&refused, "SERVICE_UNAVAILABLE");
    let details = &refused["error"]["details"];
    assert!(
        details["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms > 0 && ms <= 30_000),
        "{refused}"
    );
    assert_eq!(details["model"], "mock-500", "{refused}");
    assert_eq!(details["error_kind"], "breaker_open");
    let ok = call(
        &mut ws,
        "r2",
        "chat",
        json!({"prompt": "x", "model": "mock-echo"}),
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");

    // /health counts the refusals and lists the open breaker with its model.
    let provider = eventually(
        Duration::from_secs(5),
        "the refusals in /health",
        || async {
            let (_, health) = app.get_json("/health").await;
            let provider = health["components"]["provider:mock"].clone();
            (provider["counters"]["breaker_rejected"].as_u64() >= Some(4)).then_some(provider)
        },
    )
    .await;
    assert_eq!(provider["status"], "degraded");
    assert_eq!(provider["breaker"]["state"], "closed", "{provider}");
    let open: Vec<&Value> = provider["model_breakers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["state"] == "open")
        .collect();
    assert_eq!(open.len(), 1, "{provider}");
    assert_eq!(open[0]["model"], "mock-500");
    assert!(open[0]["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));

    // The dashboard's stats carry the open model breaker, and the page shows it.
    let (mut dash, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/dashboard", app.addr))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let shown = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no stats with the model breaker"
        );
        let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) =
            tokio::time::timeout(Duration::from_secs(5), dash.next())
                .await
                .unwrap()
        else {
            continue;
        };
        let msg: Value = serde_json::from_str(&text).unwrap();
        let breakers = &msg["providers"]["mock"]["model_breakers"];
        if msg["type"] == "stats" && breakers.is_array() {
            break breakers.clone();
        }
    };
    assert!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["model"] == "mock-500" && b["state"] == "open"),
        "{shown}"
    );
    let script = app
        .client
        .get(format!("{}/dashboard/assets/app.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        script.contains("model_breakers"),
        "the page renders model breakers"
    );

    // The listing shows the fenced model, and only it, as open.
    let (_, models) = app.get_json("/v1/models").await;
    let status = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .map(|m| m["status"].clone())
    };
    assert_eq!(status("mock-500"), Some(json!("open")));
    assert_eq!(status("mock-echo"), Some(json!("closed")));
}

#[actix_rt::test]
async fn the_demo_keeps_its_healthy_models_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&dir, &[], None);
    let demo_mock = exai::demo::add_simulated_provider(&mut config).unwrap();
    let (addr, trigger, thread) = start_config(config).await;
    let base = format!("http://{addr}");
    let client = http();
    // Two rounds of the demo's traffic plus enough failures to open mock-500's breaker.
    for round in 0..2 {
        for (model, prompt) in exai::demo::TRAFFIC {
            let (status, _, body) = complete(
                &client,
                &base,
                json!({"model": model, "messages": user(&format!("{prompt} {round}"))}),
            )
            .await;
            if *model != "mock-500" {
                assert_eq!(status, 200, "{model}: {body}");
            }
        }
    }
    for i in 0..6 {
        complete(
            &client,
            &base,
            json!({"model": "mock-500", "messages": user(&format!("{i}"))}),
        )
        .await;
    }
    let (status, _, _) = complete(
        &client,
        &base,
        json!({"model": "mock-500", "messages": user("fenced")}),
    )
    .await;
    assert_eq!(status, 503, "mock-500 is fenced");
    for (model, prompt) in exai::demo::TRAFFIC {
        if *model == "mock-500" {
            continue;
        }
        let (status, _, body) = complete(
            &client,
            &base,
            json!({"model": model, "messages": user(&format!("{prompt} after"))}),
        )
        .await;
        assert_eq!(status, 200, "{model} after mock-500 was fenced: {body}");
    }
    trigger.trigger();
    thread.join().unwrap().unwrap();
    demo_mock.stop();
}
