//! Test-only routes, registered only when the actors were built with `fault-injection`:
//! `POST /debug/fault/{actor}/{panic|hang}` and `GET /debug/sleep?ms=N` (a slow request).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use exai_actors::supervisor::{FAULT_INJECTION, inject_fault};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;

/// Makes the named actor panic or hang.
async fn fault(state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (actor, kind) = path.into_inner();
    match inject_fault(&state.supervisor, &actor, &kind).await {
        Ok(()) => HttpResponse::Accepted().json(json!({"injected": kind, "actor": actor})),
        Err(e) => HttpResponse::BadRequest().json(json!({"error": e})),
    }
}

/// Query of `/debug/sleep`.
#[derive(Deserialize)]
struct Sleep {
    /// How long to take.
    ms: u64,
}

/// A request that takes `ms` milliseconds, for drain tests.
async fn sleep(q: web::Query<Sleep>) -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(q.ms.min(60_000))).await;
    HttpResponse::Ok().json(json!({"slept_ms": q.ms}))
}

/// Registers the routes when fault injection is compiled in.
pub fn configure(cfg: &mut web::ServiceConfig) {
    if FAULT_INJECTION {
        cfg.route("/debug/fault/{actor}/{kind}", web::post().to(fault))
            .route("/debug/sleep", web::get().to(sleep));
    }
}
