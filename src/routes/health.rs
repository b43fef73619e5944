//! `GET /health`, `/health/live` and `/health/ready` (DESIGN §7).

use actix_web::{HttpResponse, web};
use exai_actors::health::{HealthBoard, Status};
use exai_actors::pipeline::recorder::Recorder;
use serde_json::json;

use crate::lifecycle::Lifecycle;
use crate::startup::AppState;

/// Overall status plus per-actor and per-component detail; 503 when unhealthy.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (status, body) = document(
        &state.health,
        &state.recorder,
        &state.config.instance,
        Some(&state.lifecycle),
    );
    match status {
        Status::Ok | Status::Degraded => HttpResponse::Ok().json(body),
        Status::Unhealthy => HttpResponse::ServiceUnavailable().json(body),
    }
}

/// The `/health` document (also served by the `health` tool) and its overall status.
pub fn document(
    health: &HealthBoard,
    recorder: &Recorder,
    instance: &str,
    lifecycle: Option<&Lifecycle>,
) -> (Status, serde_json::Value) {
    let snapshot = health.snapshot();
    let mut components = serde_json::to_value(&snapshot.components).unwrap_or_default();
    if let Some(map) = components.as_object_mut() {
        // The recording queue itself: what was recorded, what waits, what overflowed.
        let mut events = serde_json::to_value(recorder.stats()).unwrap_or_default();
        events["status"] = json!("ok");
        map.insert("events".to_owned(), events);
    }
    let body = json!({
        "status": snapshot.status,
        "version": env!("CARGO_PKG_VERSION"),
        "instance": instance,
        "uptime_s": lifecycle.map(Lifecycle::uptime_s),
        "shutting_down": lifecycle.is_some_and(Lifecycle::is_shutting_down),
        "actors": snapshot.actors,
        "components": components,
    });
    (snapshot.status, body)
}

/// 200 while the process runs; 503 once shutdown has begun.
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    if state.lifecycle.is_shutting_down() {
        HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}))
    } else {
        HttpResponse::Ok().json(json!({"status": "live"}))
    }
}

/// 200 when able to serve: started, not shutting down, and nothing has given up. A store
/// outage does not make it unready while events are spilling to the journal.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let snapshot = state.health.snapshot();
    let reason = if state.lifecycle.is_shutting_down() {
        Some("shutting_down")
    } else if !state.lifecycle.is_started() {
        Some("starting")
    } else if snapshot.status == Status::Unhealthy {
        Some("unhealthy")
    } else {
        None
    };
    match reason {
        None => HttpResponse::Ok().json(json!({"status": "ready"})),
        Some(reason) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "reason": reason})),
    }
}

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}
