//! `GET /health`, `/health/live` and `/health/ready` (DESIGN §7).

use actix_web::{HttpResponse, web};
use exai_actors::health::Status;
use serde_json::json;

use crate::state::{AppState, health_document};

/// Overall status plus per-actor and per-component detail; 503 when unhealthy.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (status, body) = health_document(
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
