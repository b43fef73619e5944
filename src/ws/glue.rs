//! The only file that names `actix-web-actors` (deprecated upstream in favour of `actix-ws`;
//! `deny.toml` confines it here). Session actors use the aliases and the start function
//! below, so moving to `actix-ws` changes this file alone.

use actix::{Actor, StreamHandler};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;

/// A piece of a fragmented message.
pub use actix_http::ws::Item as WsItem;
/// A WebSocket message as the session receives it.
pub use actix_http::ws::Message as WsMessage;
/// A frame the codec could not decode.
pub use actix_http::ws::ProtocolError as WsProtocolError;
/// A close frame's code and reason.
pub use actix_http::ws::{CloseCode, CloseReason};

/// The execution context of a WebSocket session actor.
pub type WsContext<A> = ws::WebsocketContext<A>;

/// Performs the WebSocket handshake and starts `actor` on the connection. Frames larger
/// than `max_frame_bytes` are a codec error (the session is then closed).
pub fn start<A>(
    actor: A,
    req: &HttpRequest,
    payload: web::Payload,
    max_frame_bytes: usize,
) -> Result<HttpResponse, actix_web::Error>
where
    A: Actor<Context = WsContext<A>> + StreamHandler<Result<WsMessage, WsProtocolError>>,
{
    ws::WsResponseBuilder::new(actor, req, payload)
        .frame_size(max_frame_bytes)
        .start()
}
