//! The EXAI WebSocket tool protocol (`/ws`, DESIGN §7), also spoken on a WebSocket upgrade of
//! `/` for clients that connect to the bare `ws://host:8079` (a plain `GET /` still falls
//! through to the dashboard redirect).
//!
//! - [`protocol`]: frames in and out;
//! - [`session`]: the per-connection actor;
//! - [`limits`]: limits, token buckets, connection tracking;
//! - [`glue`]: the only file that names `actix-web-actors` (also used by `/ws/dashboard`).
//!
//! The tools themselves live in [`crate::tools`]; a session dispatches through its registry
//! ([`crate::tools::registry`]).

pub mod glue;
pub mod limits;
pub mod protocol;
pub mod session;

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, guard, web};

use crate::state::SurfaceState;
use session::Session;

/// Upgrades the connection and starts a session. The connection limit is checked here; a
/// refused connection still completes the handshake so the client sees close code 1008.
pub async fn upgrade(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SurfaceState>,
) -> Result<HttpResponse, actix_web::Error> {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let admission = state.connections.admit(peer);
    let frame_limit = state.limits.codec_frame_limit();
    glue::start(
        Session::new(state, peer, admission),
        &req,
        payload,
        frame_limit,
    )
}

/// Whether the request asks for a WebSocket upgrade.
fn wants_websocket(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head()
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Registers `GET /ws` and the WebSocket upgrade of `GET /`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/ws").route(web::get().to(upgrade)))
        .service(
            web::resource("/")
                .guard(guard::fn_guard(wants_websocket))
                .route(web::get().to(upgrade)),
        );
}
