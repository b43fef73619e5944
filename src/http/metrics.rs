//! `GET /metrics`: Prometheus text format, built from the same health board and recorder
//! counters `/health` shows — no second set of counters.
//!
//! Names follow `exai_<thing>_<unit>[_total]`. Every numeric field a component publishes
//! becomes a gauge `exai_<component>_<field>`; components named `kind:name` (providers)
//! become `exai_<kind>_<field>{name="…"}`.

use std::fmt::Write as _;

use actix_web::{HttpRequest, HttpResponse, web};
use exai_actors::health::{ActorState, Status};
use serde_json::Value;

use crate::auth::dashboard_allowed;
use crate::state::AppState;

/// Makes a metric-name fragment out of a field or component name.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Escapes a label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn status_value(s: Status) -> u8 {
    match s {
        Status::Ok => 0,
        Status::Degraded => 1,
        Status::Unhealthy => 2,
    }
}

async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !dashboard_allowed(state.config.server.dashboard_token.as_ref(), &req) {
        return HttpResponse::Unauthorized().body("dashboard token required\n");
    }
    let snapshot = state.health.snapshot();
    let events = state.recorder.stats();
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP exai_up Overall status: 0 ok, 1 degraded, 2 unhealthy.\n# TYPE exai_up gauge\nexai_up {}",
        status_value(snapshot.status)
    );
    let _ = writeln!(
        out,
        "# TYPE exai_uptime_seconds gauge\nexai_uptime_seconds {}",
        state.lifecycle.uptime_s()
    );
    let _ = writeln!(
        out,
        "# TYPE exai_events_recorded_total counter\nexai_events_recorded_total {}",
        events.recorded
    );
    let _ = writeln!(
        out,
        "# TYPE exai_events_queued gauge\nexai_events_queued {}",
        events.queued
    );
    let _ = writeln!(
        out,
        "# TYPE exai_events_overflow_spilled_total counter\nexai_events_overflow_spilled_total {}",
        events.spilled
    );
    let _ = writeln!(
        out,
        "# TYPE exai_events_dropped_total counter\nexai_events_dropped_total {}",
        events.dropped
    );
    let _ = writeln!(out, "# TYPE exai_actor_restarts_total counter");
    for (name, actor) in &snapshot.actors {
        let _ = writeln!(
            out,
            "exai_actor_restarts_total{{actor=\"{}\"}} {}",
            label(name),
            actor.restarts
        );
    }
    let _ = writeln!(out, "# TYPE exai_actor_running gauge");
    for (name, actor) in &snapshot.actors {
        let up = u8::from(actor.state == ActorState::Running);
        let _ = writeln!(out, "exai_actor_running{{actor=\"{}\"}} {up}", label(name));
    }
    let _ = writeln!(out, "# TYPE exai_component_status gauge");
    for (name, component) in &snapshot.components {
        let _ = writeln!(
            out,
            "exai_component_status{{component=\"{}\"}} {}",
            label(name),
            status_value(component.status)
        );
    }
    for (name, component) in &snapshot.components {
        let (kind, labels) = match name.split_once(':') {
            Some((kind, id)) => (sanitize(kind), format!("{{name=\"{}\"}}", label(id))),
            None => (sanitize(name), String::new()),
        };
        let Value::Object(fields) = &component.detail else {
            continue;
        };
        for (field, value) in fields {
            let number = match value {
                Value::Number(n) => n.as_f64(),
                Value::Bool(b) => Some(f64::from(u8::from(*b))),
                _ => None,
            };
            if let Some(v) = number {
                let _ = writeln!(out, "exai_{kind}_{}{labels} {v}", sanitize(field));
            }
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// Registers `/metrics`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}
