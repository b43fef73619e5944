//! `GET /metrics`: the Prometheus text format (0.0.4), encoded by `prometheus-client` from
//! [`crate::prometheus`] — the event-fed series plus what `/health` shows, read at scrape time.
//! With `EXAI_DASHBOARD_TOKEN` set it needs that token.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::dashboard_allowed;
use crate::prometheus::{CONTENT_TYPE, ScrapeFacts};
use crate::state::AppState;

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !dashboard_allowed(state.config.server.dashboard_token.as_ref(), &req) {
        return HttpResponse::Unauthorized().body("dashboard token required\n");
    }
    let cache = state
        .surface
        .chat
        .cache()
        .map(|c| serde_json::to_value(c.stats()).unwrap_or_default());
    let facts = ScrapeFacts::read(
        &state.health.snapshot(),
        state.recorder.stats(),
        !state.lifecycle.is_shutting_down(),
        state.surface.ws_connections(),
        cache.as_ref(),
    );
    match state.metrics.encode(&facts) {
        Ok(text) => HttpResponse::Ok().content_type(CONTENT_TYPE).body(text),
        Err(_) => HttpResponse::InternalServerError().body("cannot encode the metrics\n"),
    }
}

/// Registers `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}
