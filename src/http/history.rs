//! The history API for the dashboard and scripts:
//! `GET /api/metrics/summary?window=`, `GET /api/metrics/timeseries?bucket=&since=&until=&type=`,
//! `GET /api/events?type=&before=&limit=`.
//!
//! Times are unix milliseconds or RFC 3339; durations are humantime (`15m`, `1h`, `7d`) or
//! seconds. A bad parameter answers 400 with a message naming it. With
//! `EXAI_DASHBOARD_TOKEN` set, every route needs that token.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use exai_actors::pipeline::store::{Bucket, EventQuery, MAX_PAGE_LIMIT, StoreError, now_ms};
use serde::Deserialize;
use serde_json::json;

use crate::auth::dashboard_allowed;
use crate::state::AppState;

/// Latest time accepted, unix milliseconds (the end of year 9999); times run from 0.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Default summary window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// Longest summary window.
const MAX_WINDOW: Duration = Duration::from_secs(400 * 86_400);

fn bad(param: &str, message: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": format!("{param}: {message}"), "param": param}))
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"error": "dashboard token required"}))
}

fn store_error(e: StoreError) -> HttpResponse {
    match e {
        StoreError::InvalidQuery(m) => {
            let param = m.split(':').next().unwrap_or("query").to_owned();
            HttpResponse::BadRequest().json(json!({"error": m, "param": param}))
        }
        other => {
            tracing::debug!(error = %other, "history query failed");
            HttpResponse::ServiceUnavailable().json(json!({"error": "event store unavailable"}))
        }
    }
}

/// Parses `15m`, `1h`, `90s`, `7d` or a number of seconds.
fn parse_window(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("expected a duration like 15m or 1h ({e})"))
}

/// Parses unix milliseconds or an RFC 3339 time, from 1970 to the end of year 9999.
fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        if !(0..=MAX_TIME_MS).contains(&ms) {
            return Err(format!(
                "{ms} is out of range (unix milliseconds from 0 to {MAX_TIME_MS})"
            ));
        }
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(text)
        .map_err(|_| "expected unix milliseconds or an RFC 3339 time".to_owned())?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970".to_owned())?;
    i64::try_from(d.as_millis()).map_err(|_| "out of range".to_owned())
}

/// Query of the summary route.
#[derive(Deserialize)]
struct SummaryQuery {
    /// How far back.
    window: Option<String>,
}

async fn summary(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<SummaryQuery>,
) -> HttpResponse {
    if !dashboard_allowed(state.config.server.dashboard_token.as_ref(), &req) {
        return unauthorized();
    }
    let window = match q.window.as_deref().map(parse_window).transpose() {
        Ok(w) => w.unwrap_or(DEFAULT_WINDOW),
        Err(e) => return bad("window", e),
    };
    if window.is_zero() || window > MAX_WINDOW {
        return bad(
            "window",
            format!("must be between 1s and {}d", MAX_WINDOW.as_secs() / 86_400),
        );
    }
    match state.store.summary(window).await {
        Ok(summary) => HttpResponse::Ok().json(json!({
            "window_s": window.as_secs(),
            "rows": summary.rows,
            "models": summary.models,
            "requests": summary.requests,
        })),
        Err(e) => store_error(e),
    }
}

/// Query of the timeseries route.
#[derive(Deserialize)]
struct SeriesQuery {
    /// `1m` or `1h`.
    bucket: Option<String>,
    /// Start (inclusive).
    since: Option<String>,
    /// End (exclusive).
    until: Option<String>,
    /// Only this event type.
    #[serde(rename = "type")]
    kind: Option<String>,
}

async fn timeseries(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<SeriesQuery>,
) -> HttpResponse {
    if !dashboard_allowed(state.config.server.dashboard_token.as_ref(), &req) {
        return unauthorized();
    }
    let bucket = match q.bucket.as_deref().unwrap_or("1m") {
        "1m" => Bucket::Minute,
        "1h" => Bucket::Hour,
        other => return bad("bucket", format!("expected 1m or 1h, got {other:?}")),
    };
    let now = now_ms();
    let until = match q.until.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(now + 1),
        Err(e) => return bad("until", e),
    };
    let default_span = match bucket {
        Bucket::Minute => 3_600_000,
        Bucket::Hour => 86_400_000,
    };
    let since = match q.since.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(until.saturating_sub(default_span).max(0)),
        Err(e) => return bad("since", e),
    };
    if since >= until {
        return bad(
            "since",
            format!("must be before until ({since} >= {until})"),
        );
    }
    match state
        .store
        .timeseries(bucket, since, until, q.kind.as_deref())
        .await
    {
        Ok(points) => HttpResponse::Ok().json(json!({
            "bucket": bucket, "since": since, "until": until, "type": q.kind, "points": points,
        })),
        Err(e) => store_error(e),
    }
}

/// Query of the events route.
#[derive(Deserialize)]
struct EventsQuery {
    /// Only this event type.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Cursor from the previous page.
    before: Option<String>,
    /// Page size, 1 to 1000.
    limit: Option<String>,
}

async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
    q: web::Query<EventsQuery>,
) -> HttpResponse {
    if !dashboard_allowed(state.config.server.dashboard_token.as_ref(), &req) {
        return unauthorized();
    }
    let before = match q.before.as_deref().map(uuid::Uuid::parse_str).transpose() {
        Ok(b) => b,
        Err(_) => return bad("before", "expected an event id (a cursor from next_cursor)"),
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>).transpose() {
        Ok(Some(0)) | Err(_) => {
            return bad(
                "limit",
                format!("expected an integer from 1 to {MAX_PAGE_LIMIT}"),
            );
        }
        Ok(l) => l.map(|l| l.min(MAX_PAGE_LIMIT)),
    };
    let query = EventQuery {
        kind: q.kind.clone(),
        before,
        limit,
    };
    match state.store.events(&query).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(e) => store_error(e),
    }
}

/// A query string actix cannot read (a duplicate or malformed parameter) answers 400 in the
/// `/api` JSON shape, naming the parameter when the error does.
fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|error, _| {
        let message = error.to_string();
        let param = message
            .split('`')
            .nth(1)
            .filter(|p| !p.is_empty())
            .unwrap_or("query")
            .to_owned();
        actix_web::error::InternalError::from_response(error, bad(&param, message)).into()
    })
}

/// Registers the history routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, route) in [
        ("/api/metrics/summary", web::get().to(summary)),
        ("/api/metrics/timeseries", web::get().to(timeseries)),
        ("/api/events", web::get().to(events)),
    ] {
        cfg.service(web::resource(path).app_data(query_config()).route(route));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_times_parse() {
        assert_eq!(parse_window("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_window("3600"), Ok(Duration::from_secs(3600)));
        assert!(parse_window("soon").is_err());
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-9223372036854775808").is_err());
        assert!(parse_time("-1").is_err());
        assert!(parse_time("9223372036854775807").is_err());
    }
}
