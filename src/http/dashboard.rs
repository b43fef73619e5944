//! The dashboard surface: the `/ws/dashboard` stream, the `/dashboard` page and its static
//! assets (embedded from `static/` with rust-embed, so the binary alone serves everything,
//! offline), and [`DashboardState`], which builds the broadcaster's child spec.
//!
//! **Session** ([`DashboardSession`], one actor per `/ws/dashboard` connection): subscribes to
//! the [`DashboardBroadcast`] with a bounded queue of [`DashboardSettings::client_queue`]
//! messages and writes whatever arrives, so the first frame is the `snapshot` and the live
//! stream follows (message shapes: `exai_actors::dashboard`). The broadcaster only
//! `try_send`s into that queue; the session is polled only as fast as the socket drains, so a
//! client that stops reading fills its own queue and is lagged, then evicted — it never slows
//! anyone else. When the queue closes the session either closes the socket with the
//! eviction reason (code 1008) or, if the broadcaster restarted, re-subscribes through the
//! [`Slot`] after [`RESUBSCRIBE_DELAY`]. Heartbeat: a ping every [`HEARTBEAT_INTERVAL`]; a
//! client silent for [`CLIENT_TIMEOUT`] is dropped.
//!
//! **Access:** with `EXAI_DASHBOARD_TOKEN` set, the page and the stream need it (`?token=` or
//! `Authorization: Bearer`, compared in constant time, [`crate::auth`]); `/dashboard` without
//! it answers 401 with a small form that asks for it. The assets under `/dashboard/assets/`
//! are code, not data, and are served to anyone. `Origin` is checked for every route,
//! this stream included, by [`crate::http::guard`]: a foreign page gets 403.
//!
//! With the `fault-injection` feature, `POST /debug/dashboard/burst?n=&bytes=&tag=` records `n`
//! synthetic `debug.burst` events (for the fan-out and slow-client tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use exai_actors::dashboard::{
    DashboardBroadcast, DashboardSettings, DashboardShared, FanoutSettings, Outbound, Subscribe,
    Unsubscribe,
};
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::supervisor::{ChildSpec, FAULT_INJECTION, Slot};
use rust_embed::RustEmbed;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::auth::dashboard_allowed;
use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::state::AppState;
use crate::ws::glue::{
    self as ws_glue, CloseCode, CloseReason, WsContext, WsMessage, WsProtocolError,
};

/// Gap between heartbeat pings.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A client that sends nothing (not even a pong) for this long is dropped.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a session checks whether shutdown began (it then closes with 1012, so the
/// server's drain does not wait for dashboards and the page reconnects to the next process).
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Wait before re-subscribing after the broadcaster went away (it is being restarted).
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(100);
/// Largest frame accepted from a dashboard client (it only sends control frames).
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// Most events one debug burst may record.
const MAX_BURST: usize = 1_000_000;

/// The page and its assets, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

/// What the dashboard routes need: the broadcaster's slot and shared state, and the token.
pub struct DashboardState {
    /// The broadcaster's current address (changes on restart).
    pub slot: Slot<DashboardBroadcast>,
    /// State the broadcaster keeps across restarts.
    pub shared: Arc<DashboardShared>,
    /// `EXAI_DASHBOARD_TOKEN`, if set.
    pub token: Option<SecretString>,
    /// Recorder, for the debug burst route.
    recorder: Recorder,
}

impl DashboardState {
    /// Builds the state; fan-out over LISTEN/NOTIFY is on when the store is PostgreSQL.
    /// Subscribes to `recorder` at once, so nothing recorded from here on is missed.
    pub fn new(config: &Config, recorder: Recorder, health: HealthBoard) -> Self {
        let url = config.database_url.expose_secret();
        let fanout = (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            .then(|| FanoutSettings::new(config.database_url.clone()));
        let settings = DashboardSettings {
            fanout,
            client_queue: config.server.dashboard_client_queue,
            evict_after_dropped: config.server.dashboard_evict_after_dropped,
            evict_after_full: config.server.dashboard_evict_after_full,
            ..DashboardSettings::default()
        };
        let shared = DashboardShared::new(settings, recorder.clone(), health);
        Self {
            slot: shared.slot(),
            shared,
            token: config.server.dashboard_token.clone(),
            recorder,
        }
    }

    /// The supervisor child (`dashboard`).
    pub fn child_spec(&self) -> ChildSpec {
        DashboardBroadcast::child_spec(self.shared.clone())
    }
}

// ---------------------------------------------------------------------------------------
// The session actor.

/// One `/ws/dashboard` connection. See the module docs.
pub struct DashboardSession {
    /// Where the broadcaster is.
    broadcast: Slot<DashboardBroadcast>,
    /// This session's queue length.
    queue_len: usize,
    /// The current subscription, once acknowledged.
    client: Option<u64>,
    /// Carries the close reason if the broadcaster evicts this session.
    evicted: Option<oneshot::Receiver<String>>,
    /// When the client was last heard from.
    last_heard: Instant,
    /// Tells the session when shutdown begins.
    lifecycle: Arc<Lifecycle>,
}

impl DashboardSession {
    /// A session that will subscribe through `broadcast`.
    pub fn new(
        broadcast: Slot<DashboardBroadcast>,
        queue_len: usize,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        Self {
            lifecycle,
            broadcast,
            queue_len: queue_len.max(1),
            client: None,
            evicted: None,
            last_heard: Instant::now(),
        }
    }

    /// Opens a fresh queue and subscribes it; a failure closes the queue, which schedules
    /// another attempt (see `finished`).
    fn subscribe(&mut self, ctx: &mut WsContext<Self>) {
        let (tx, rx) = mpsc::channel::<Outbound>(self.queue_len);
        let (evict_tx, evict_rx) = oneshot::channel();
        self.evicted = Some(evict_rx);
        self.client = None;
        ctx.add_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|message| (message, rx))
        }));
        let Some(addr) = self.broadcast.get() else {
            return;
        };
        addr.send(Subscribe {
            queue: tx,
            evict: evict_tx,
        })
        .into_actor(self)
        .map(|result, act, _| {
            if let Ok(Ok(id)) = result {
                act.client = Some(id);
            }
        })
        .spawn(ctx);
    }
}

impl Actor for DashboardSession {
    type Context = WsContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if act.last_heard.elapsed() > CLIENT_TIMEOUT {
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
        ctx.run_interval(SHUTDOWN_POLL, |act, ctx| {
            if act.lifecycle.is_shutting_down() {
                ctx.close(Some(CloseReason {
                    code: CloseCode::Restart,
                    description: Some("server shutting down".to_owned()),
                }));
                ctx.stop();
            }
        });
        self.subscribe(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let (Some(id), Some(addr)) = (self.client.take(), self.broadcast.get()) {
            // Best effort: if the mailbox is full the broadcaster notices the closed queue.
            let _ = addr.try_send(Unsubscribe { id });
        }
        Running::Stop
    }
}

impl StreamHandler<Outbound> for DashboardSession {
    fn handle(&mut self, message: Outbound, ctx: &mut Self::Context) {
        ctx.text(&*message);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The broadcaster dropped the queue: either it evicted us, or it went away.
        let reason = self.evicted.take().and_then(|mut rx| rx.try_recv().ok());
        if let Some(reason) = reason {
            ctx.close(Some(CloseReason {
                code: CloseCode::Policy,
                description: Some(reason),
            }));
            ctx.stop();
            return;
        }
        ctx.run_later(RESUBSCRIBE_DELAY, |act, ctx| act.subscribe(ctx));
    }
}

impl StreamHandler<Result<WsMessage, WsProtocolError>> for DashboardSession {
    fn handle(&mut self, msg: Result<WsMessage, WsProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match msg {
            Ok(WsMessage::Ping(payload)) => ctx.pong(&payload),
            Ok(WsMessage::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "dashboard client protocol error");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Routes.

/// `GET /ws/dashboard`.
async fn stream(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<DashboardState>,
    app: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if !dashboard_allowed(state.token.as_ref(), &req) {
        return Ok(HttpResponse::Unauthorized().json(json!({"error": "dashboard token required"})));
    }
    let session = DashboardSession::new(
        state.slot.clone(),
        state.shared.settings().client_queue,
        app.lifecycle.clone(),
    );
    ws_glue::start(session, &req, payload, MAX_CLIENT_FRAME)
}

/// The page's Content-Security-Policy: everything comes from exai itself (the page has no
/// inline script or style; the favicon is an empty `data:` URL), and no site may frame it.
pub const DASHBOARD_CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The security headers every dashboard page carries.
fn secure_page(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, DASHBOARD_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"));
    response
}

/// The form shown when the page is asked for without a valid token.
const TOKEN_FORM: &str = r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>exai dashboard — token</title><link rel="stylesheet" href="/dashboard/assets/app.css"></head>
<body class="login"><form method="get" action="/dashboard"><h1>exai dashboard</h1>
<label>Dashboard token <input type="password" name="token" autofocus required minlength="16"></label>
<button type="submit">Open</button></form></body></html>"#;

/// `GET /dashboard`: the page, or the token form.
async fn page(req: HttpRequest, state: web::Data<DashboardState>) -> HttpResponse {
    if !dashboard_allowed(state.token.as_ref(), &req) {
        return secure_page(HttpResponse::Unauthorized()).body(TOKEN_FORM);
    }
    match Assets::get("index.html") {
        Some(file) => secure_page(HttpResponse::Ok()).body(file.data.into_owned()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// `GET /dashboard/assets/{path}`: an embedded file.
async fn asset(path: web::Path<String>) -> HttpResponse {
    let path = path.into_inner();
    let Some(file) = Assets::get(&path) else {
        return HttpResponse::NotFound().finish();
    };
    let content_type = match path.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "text/plain; charset=utf-8",
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(file.data.into_owned())
}

/// Query of the debug burst route.
#[derive(Deserialize)]
struct Burst {
    /// Events to record.
    n: usize,
    /// Padding per event, bytes.
    #[serde(default)]
    bytes: usize,
    /// Copied into each event's `data.tag`, so a test can mark a batch.
    #[serde(default)]
    tag: String,
}

/// `POST /debug/dashboard/burst?n=&bytes=` (fault-injection builds only).
async fn burst(q: web::Query<Burst>, state: web::Data<DashboardState>) -> HttpResponse {
    let n = q.n.min(MAX_BURST);
    let pad = "x".repeat(q.bytes.min(64 * 1024));
    for seq in 0..n {
        state.recorder.record(
            "debug",
            "debug.burst",
            json!({"ok": true, "seq": seq, "tag": q.tag, "pad": pad}),
        );
    }
    HttpResponse::Ok().json(json!({"recorded": n}))
}

/// Registers `/ws/dashboard`, `/dashboard`, `/dashboard/assets/*` (and the debug burst route
/// in fault-injection builds). Needs `web::Data<DashboardState>` in the app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/ws/dashboard", web::get().to(stream))
        .route("/dashboard", web::get().to(page))
        .route("/dashboard/", web::get().to(page))
        .route("/dashboard/assets/{path:.*}", web::get().to(asset));
    if FAULT_INJECTION {
        cfg.route("/debug/dashboard/burst", web::post().to(burst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_assets_are_embedded() {
        for file in [
            "index.html",
            "app.js",
            "app.css",
            "vendor/uPlot.iife.min.js",
            "vendor/uPlot.min.css",
        ] {
            assert!(Assets::get(file).is_some(), "{file} missing");
        }
    }
}
