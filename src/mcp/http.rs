//! The Streamable HTTP transport at `/mcp`, over rmcp's protocol model (see [`super`] for
//! why it is exai's own).
//!
//! - `POST` carries one JSON-RPC message (batches are refused). The era is chosen per
//!   request: `initialize` opens a session; a request whose `params._meta` names its
//!   protocol version is stateless (2026-07-28); anything else needs `Mcp-Session-Id`.
//!   A `tools/call` answers as an SSE stream (`text/event-stream`) when the client accepts
//!   one — its `notifications/progress` (with a `progressToken`) or a keep-alive comment
//!   every `EXAI_WS_PROGRESS_INTERVAL_MS`, then the response — else as one JSON response.
//!   Every other request answers as JSON; notifications and client responses get `202`.
//! - `GET` is `405`: exai sends nothing outside a request's own stream.
//! - `DELETE` ends the session named by `Mcp-Session-Id`.
//!
//! Errors: a missing `Mcp-Session-Id` is `400`; an unknown or expired one `404`; an
//! unsupported `MCP-Protocol-Version` header or `_meta` version `400` with JSON-RPC `-32022`
//! naming the supported versions; a header that contradicts the body `400` with `-32020`.
//! When `EXAI_WS_TOKEN` is set every method needs `Authorization: Bearer` (`401` with
//! `WWW-Authenticate: Bearer`). Origin and Host are checked app-wide by
//! [`crate::http::guard`]; bodies are read through [`BodyBudget`].
//!
//! A call's task runs on this worker; dropping the response (the client closed the stream)
//! or `notifications/cancelled` aborts it, which drops the upstream request and frees its
//! in-flight slots, exactly as `/ws`'s `cancel` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use actix_web::http::{StatusCode, header};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use rmcp::model::{ErrorCode, ErrorData};
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::protocol::{self, Era};
use super::session::RunningCall;
use super::state::{InFlight, McpState};
use crate::call_record::CallRecord;
use crate::error::GatewayError;
use crate::files::Cancellation;
use crate::http::body::BodyBudget;
use crate::state::SurfaceState;
use crate::tools::{Silent, Tool, ToolContext};
use exai_actors::pipeline::request::{CallContext, Surface};

/// The session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The protocol version header.
pub const VERSION_HEADER: &str = "mcp-protocol-version";
/// The method header (2026-07-28).
pub const METHOD_HEADER: &str = "mcp-method";
/// The name header (2026-07-28).
pub const NAME_HEADER: &str = "mcp-name";
/// Frames a call may queue for a slow reader before progress frames are dropped.
const CALL_QUEUE: usize = 16;
/// Longest tool name kept in a `request` event (client-chosen text).
const MAX_TOOL_NAME_BYTES: usize = 64;

/// Registers `/mcp`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/mcp")
            .route(web::post().to(post))
            .route(web::get().to(get))
            .route(web::delete().to(delete)),
    );
}

/// An HTTP answer carrying a JSON-RPC message.
fn rpc(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// An HTTP error carrying a JSON-RPC error.
fn rpc_error(status: StatusCode, id: Option<&Value>, error: &ErrorData) -> HttpResponse {
    rpc(status, &protocol::error_response(id, error))
}

/// `400`, invalid params: `what` must carry its protocol version in `params._meta`.
fn meta_version_only(id: Option<&Value>, what: &str) -> HttpResponse {
    rpc_error(
        StatusCode::BAD_REQUEST,
        id,
        &protocol::error_of(
            ErrorCode::INVALID_PARAMS,
            format!(
                "Invalid params: {what} carries {} in params._meta",
                protocol::META_PROTOCOL_VERSION
            ),
        ),
    )
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `401` unless the request carries the client token (when one is configured).
#[allow(clippy::result_large_err)] // the refusal is the response itself, made once per request
fn check_auth(surface: &SurfaceState, req: &HttpRequest) -> Result<(), HttpResponse> {
    if surface.authorized(crate::auth::bearer_token(req)) {
        return Ok(());
    }
    Err(HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"exai\""))
        .content_type("application/json")
        .body(
            protocol::error_response(
                None,
                &protocol::error_of(
                    ErrorCode::INVALID_REQUEST,
                    "missing or invalid bearer token (EXAI_WS_TOKEN)",
                ),
            )
            .to_string(),
        ))
}

/// `GET /mcp`: exai offers no stream outside a request.
async fn get(req: HttpRequest, surface: web::Data<SurfaceState>) -> HttpResponse {
    if let Err(refused) = check_auth(&surface, &req) {
        return refused;
    }
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST, DELETE"))
        .finish()
}

/// `DELETE /mcp`: ends a session.
async fn delete(
    req: HttpRequest,
    surface: web::Data<SurfaceState>,
    mcp: web::Data<McpState>,
) -> HttpResponse {
    if let Err(refused) = check_auth(&surface, &req) {
        return refused;
    }
    let Some(id) = header_str(&req, SESSION_HEADER) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            &protocol::error_of(ErrorCode::INVALID_REQUEST, "Mcp-Session-Id header required"),
        );
    };
    if mcp.sessions.close(id) {
        mcp.publish();
        HttpResponse::Ok().finish()
    } else {
        session_not_found()
    }
}

fn session_not_found() -> HttpResponse {
    rpc_error(
        StatusCode::NOT_FOUND,
        None,
        &protocol::error_of(
            ErrorCode(-32001),
            "Session not found: unknown or expired Mcp-Session-Id; initialize again",
        ),
    )
}

/// Whether the client accepts an SSE answer.
fn accepts_sse(req: &HttpRequest) -> bool {
    header_str(req, "accept").is_some_and(|a| a.contains("text/event-stream"))
}

/// `params._meta[io.modelcontextprotocol/protocolVersion]`, if present.
fn meta_version(message: &Value) -> Option<&Value> {
    message
        .get("params")?
        .get("_meta")?
        .get(protocol::META_PROTOCOL_VERSION)
}

/// The era of a non-`initialize` message, or the HTTP answer refusing it.
#[allow(clippy::result_large_err)] // the refusal is the response itself, made once per request
fn resolve_era(
    req: &HttpRequest,
    mcp: &McpState,
    message: &Value,
    method: &str,
    id: Option<&Value>,
) -> Result<Era, HttpResponse> {
    let header_version = header_str(req, VERSION_HEADER);
    if let Some(version) = meta_version(message) {
        let Some(version) = version.as_str() else {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                &protocol::error_of(
                    ErrorCode::INVALID_PARAMS,
                    "_meta protocolVersion must be a string",
                ),
            ));
        };
        if !protocol::STATELESS_VERSIONS.contains(&version) {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                &protocol::unsupported_version(version),
            ));
        }
        if header_version != Some(version) {
            return Err(mismatch(
                id,
                "MCP-Protocol-Version header must equal the request's _meta protocolVersion",
            ));
        }
        if header_str(req, METHOD_HEADER) != Some(method) {
            return Err(mismatch(
                id,
                "Mcp-Method header must equal the body's method",
            ));
        }
        if method == "tools/call" {
            let name = message["params"]["name"].as_str();
            if header_str(req, NAME_HEADER).is_none_or(|h| Some(h) != name) {
                return Err(mismatch(id, "Mcp-Name header must equal params.name"));
            }
        }
        return Ok(Era::Stateless {
            version: version.to_owned(),
        });
    }
    if let Some(version) = header_version {
        if !protocol::is_supported(version) {
            return Err(rpc_error(
                StatusCode::BAD_REQUEST,
                id,
                &protocol::unsupported_version(version),
            ));
        }
        if protocol::STATELESS_VERSIONS.contains(&version) && id.is_some() {
            return Err(meta_version_only(id, &format!("a {version} request")));
        }
    }
    if method == "server/discover" {
        return Err(meta_version_only(id, "server/discover"));
    }
    let Some(session) = header_str(req, SESSION_HEADER) else {
        return Err(rpc_error(
            StatusCode::BAD_REQUEST,
            id,
            &protocol::error_of(
                ErrorCode::INVALID_REQUEST,
                "Bad Request: Mcp-Session-Id header required (initialize first), or use \
                 protocol 2026-07-28 with per-request _meta",
            ),
        ));
    };
    let Some(version) = mcp.sessions.touch(session) else {
        return Err(session_not_found());
    };
    Ok(Era::Session {
        id: session.to_owned(),
        version,
    })
}

fn mismatch(id: Option<&Value>, message: &str) -> HttpResponse {
    rpc_error(
        StatusCode::BAD_REQUEST,
        id,
        &protocol::error_of(ErrorCode::HEADER_MISMATCH, message),
    )
}

/// `POST /mcp`: one JSON-RPC message.
async fn post(
    req: HttpRequest,
    payload: web::Payload,
    surface: web::Data<SurfaceState>,
    mcp: web::Data<McpState>,
    bodies: web::Data<BodyBudget>,
) -> HttpResponse {
    if let Err(refused) = check_auth(&surface, &req) {
        return refused;
    }
    let bytes = match bodies.read(&req, payload, surface.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(error) => return error.response(false),
    };
    let message: Value = match serde_json::from_slice(&bytes) {
        Ok(message) => message,
        Err(e) => {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                &ErrorData::parse_error(format!("Parse error: {e}"), None),
            );
        }
    };
    if message.is_array() {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            &ErrorData::invalid_request("JSON-RPC batches are not supported", None),
        );
    }
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response or error from the client: exai sends no requests, so nothing waits.
        return HttpResponse::Accepted().finish();
    };
    let method = method.to_owned();
    let id = message.get("id").filter(|id| !id.is_null()).cloned();
    if method == "initialize" {
        return initialize(&mcp, &message, id.as_ref());
    }
    let era = match resolve_era(&req, &mcp, &message, &method, id.as_ref()) {
        Ok(era) => era,
        Err(refused) => return refused,
    };
    let Some(id) = id else {
        notification(&mcp, &era, &method, &message);
        return HttpResponse::Accepted().finish();
    };
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    match method.as_str() {
        "ping" => {
            let result = if era.stateless() {
                json!({ "resultType": "complete" })
            } else {
                json!({})
            };
            rpc(StatusCode::OK, &protocol::response(&id, result))
        }
        "tools/list" => rpc(
            StatusCode::OK,
            &protocol::response(
                &id,
                protocol::list_tools_result(crate::tools::registry().listing(), &era),
            ),
        ),
        "server/discover" => rpc(
            StatusCode::OK,
            &protocol::response(&id, protocol::discover_result()),
        ),
        "tools/call" => call(&req, surface, mcp, era, id, &params).await,
        other => rpc(
            StatusCode::OK,
            &protocol::error_response(
                Some(&id),
                &protocol::error_of(
                    ErrorCode::METHOD_NOT_FOUND,
                    format!("Method not found: {}", crate::tools::truncate(other, 64)),
                ),
            ),
        ),
    }
}

/// `initialize`: negotiate a handshake version and open a session.
fn initialize(mcp: &McpState, message: &Value, id: Option<&Value>) -> HttpResponse {
    let Some(id) = id else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            &ErrorData::invalid_request("initialize is a request: it needs an id", None),
        );
    };
    let params = &message["params"];
    let (version, result) = protocol::initialize_result(params["protocolVersion"].as_str());
    let client = params["clientInfo"]["name"].as_str();
    match mcp.sessions.open(&version, client) {
        Ok(session) => {
            mcp.publish();
            HttpResponse::Ok()
                .insert_header((SESSION_HEADER, session))
                .content_type("application/json")
                .body(protocol::response(id, result).to_string())
        }
        Err(super::session::Full(max)) => rpc_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(id),
            &protocol::error_of(
                ErrorCode::INTERNAL_ERROR,
                format!(
                    "too many MCP sessions ({max}, EXAI_MCP_MAX_SESSIONS), all with calls running"
                ),
            ),
        ),
    }
}

/// A notification: `notifications/cancelled` aborts the session's call; others are noted.
fn notification(mcp: &McpState, era: &Era, method: &str, message: &Value) {
    if method != "notifications/cancelled" {
        return;
    }
    let Some(session) = era.session_id() else {
        return;
    };
    let request = message["params"]["requestId"].to_string();
    if mcp.sessions.cancel_call(session, &request) {
        tracing::debug!(session, request, "mcp call cancelled by the client");
    }
}

/// `tools/call`.
async fn call(
    req: &HttpRequest,
    surface: web::Data<SurfaceState>,
    mcp: web::Data<McpState>,
    era: Era,
    id: Value,
    params: &Value,
) -> HttpResponse {
    let ok = |result: Value| rpc(StatusCode::OK, &protocol::response(&id, result));
    let mut record = surface.start_call(Surface::Mcp, crate::http::request_id::of(req));
    {
        let event = record.event();
        event.session_id = era.session_id().map(str::to_owned);
        event.protocol_version = Some(era.version().to_owned());
        event.tool = params.get("name").and_then(Value::as_str).map(|n| {
            crate::tools::truncate(&crate::tools::normalise(n), MAX_TOOL_NAME_BYTES).to_owned()
        });
        event.model = params
            .pointer("/arguments/model")
            .and_then(Value::as_str)
            .map(str::to_owned);
        event.stream = params.pointer("/arguments/stream").and_then(Value::as_bool) == Some(true);
    }
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        record.finish(400, Some("invalid_params"));
        return rpc(
            StatusCode::OK,
            &protocol::error_response(
                Some(&id),
                &protocol::error_of(ErrorCode::INVALID_PARAMS, "params.name must be a string"),
            ),
        );
    };
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(_) => {
            record.finish(400, Some("invalid_params"));
            return rpc(
                StatusCode::OK,
                &protocol::error_response(
                    Some(&id),
                    &protocol::error_of(
                        ErrorCode::INVALID_PARAMS,
                        "params.arguments must be an object",
                    ),
                ),
            );
        }
    };
    let tool = match crate::tools::registry().prepare(name, &arguments) {
        Ok(tool) => tool,
        Err(GatewayError::ToolNotFound(name)) => {
            record.finish(404, Some("tool_not_found"));
            return rpc(
                StatusCode::OK,
                &protocol::error_response(
                    Some(&id),
                    &protocol::error_of(ErrorCode::INVALID_PARAMS, format!("Unknown tool: {name}")),
                ),
            );
        }
        Err(error) => {
            record.finish(error.http_status().as_u16(), Some(error.kind()));
            return ok(protocol::call_error(&error, &era));
        }
    };
    if *surface.shutdown.borrow() {
        let error = GatewayError::Unavailable("the server is shutting down".to_owned());
        record.finish(error.http_status().as_u16(), Some(error.kind()));
        return ok(protocol::call_error(&error, &era));
    }
    let Ok(permit) = surface.ws_inflight.clone().try_acquire_owned() else {
        let max = surface.limits.global_max_inflight;
        let error = GatewayError::OverCapacity(format!(
            "{max} tool calls in flight across all sessions (limit {max})"
        ));
        record.finish(error.http_status().as_u16(), Some(error.kind()));
        return ok(protocol::call_error(&error, &era));
    };
    let token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_number())
        .cloned();
    let (tx, mut rx) = mpsc::channel::<Frame>(CALL_QUEUE);
    let cancel = Cancellation::default();
    let done = Arc::new(AtomicBool::new(false));
    let key = id.to_string();
    let task = actix_rt::spawn(run_call(CallTask {
        surface: surface.clone(),
        mcp: mcp.clone(),
        in_flight: mcp.call_started(),
        era: era.clone(),
        id: id.clone(),
        key: key.clone(),
        tool: tool.clone(),
        arguments,
        token,
        cancel: cancel.clone(),
        permit,
        tx,
        done: done.clone(),
        keep_alive: accepts_sse(req),
        record,
    }));
    // The task has not run yet (same worker, no await since the spawn).
    if let Some(session) = era.session_id() {
        let running = RunningCall {
            abort: task.abort_handle(),
            cancel: cancel.clone(),
        };
        if !mcp.sessions.add_call(session, &key, running) {
            task.abort();
            return rpc(
                StatusCode::OK,
                &protocol::error_response(
                    Some(&id),
                    &protocol::error_of(
                        ErrorCode::INVALID_REQUEST,
                        "a call with this id is already running in this session",
                    ),
                ),
            );
        }
    }
    let guard = CallGuard {
        mcp: mcp.clone(),
        key: key.clone(),
        abort: task.abort_handle(),
        cancel,
        done,
        era: era.clone(),
        tool: tool.name(),
    };
    if accepts_sse(req) {
        let stream = futures_util::stream::unfold((rx, guard), |(mut rx, guard)| async move {
            let frame = rx.recv().await?;
            let bytes = match frame {
                Frame::Message(m) => Bytes::from(format!("event: message\ndata: {m}\n\n")),
                Frame::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok::<_, actix_web::Error>(bytes), (rx, guard)))
        });
        return HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .streaming(stream);
    }
    let _guard = guard;
    let mut last = None;
    while let Some(frame) = rx.recv().await {
        if let Frame::Message(m) = frame
            && m.get("id").is_some()
        {
            last = Some(m);
        }
    }
    match last {
        Some(m) => rpc(StatusCode::OK, &m),
        // Cancelled by `notifications/cancelled`: no response is due; the stream just ends.
        None => HttpResponse::Accepted().finish(),
    }
}

/// What a call sends its response stream.
enum Frame {
    /// A JSON-RPC message.
    Message(Value),
    /// An SSE comment, so a closed stream is noticed.
    KeepAlive,
}

/// Aborts a call whose response went away (the client closed the stream); the aborted task
/// drops its `CallRecord`, which records the call as cancelled.
struct CallGuard {
    mcp: web::Data<McpState>,
    key: String,
    abort: tokio::task::AbortHandle,
    cancel: Cancellation,
    done: Arc<AtomicBool>,
    era: Era,
    tool: &'static str,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.done.load(Ordering::Acquire) {
            return;
        }
        // An aborted call no longer keeps its session busy.
        if let Some(session) = self.era.session_id() {
            self.mcp.sessions.end_call(session, &self.key);
        }
        self.cancel.cancel();
        self.abort.abort();
        tracing::debug!(tool = self.tool, "mcp tool call cancelled");
    }
}

/// What a call task needs.
struct CallTask {
    surface: web::Data<SurfaceState>,
    mcp: web::Data<McpState>,
    in_flight: InFlight,
    era: Era,
    id: Value,
    key: String,
    tool: Arc<dyn Tool>,
    arguments: Map<String, Value>,
    token: Option<Value>,
    cancel: Cancellation,
    permit: OwnedSemaphorePermit,
    tx: mpsc::Sender<Frame>,
    done: Arc<AtomicBool>,
    keep_alive: bool,
    /// The call's `request` event.
    record: CallRecord,
}

/// Runs one call: progress (or a keep-alive) every interval, the tool timeout, the event,
/// then the response.
async fn run_call(task: CallTask) {
    let CallTask {
        surface,
        mcp,
        in_flight,
        era,
        id,
        key,
        tool,
        arguments,
        token,
        cancel,
        permit,
        tx,
        done,
        keep_alive,
        record,
    } = task;
    let started = Instant::now();
    let name = tool.name();
    let limits = &surface.limits;
    let request_id = record.request_id().to_owned();
    let context = ToolContext {
        services: &surface,
        tools: crate::tools::registry(),
        request_id: &request_id,
        progress: &Silent,
        cancel,
    };
    let mut ticks = 0u64;
    let call_context = record.context();
    let result = CallContext::scope(
        call_context,
        crate::tools::run_bounded(
            tool.call(context, arguments),
            limits.tool_timeout,
            limits.progress_interval,
            true,
            || {
                ticks += 1;
                let frame = match &token {
                    Some(token) => Frame::Message(protocol::progress(
                        token,
                        ticks as f64,
                        &format!("{name} running for {} ms", started.elapsed().as_millis()),
                    )),
                    None if keep_alive => Frame::KeepAlive,
                    None => return Ok(()),
                };
                // A full queue means a slow reader: skip this beat rather than buffer.
                match tx.try_send(frame) {
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        Err(GatewayError::ToolFailed("the client went away".to_owned()))
                    }
                    _ => Ok(()),
                }
            },
        ),
    )
    .await;
    drop(permit);
    let latency = started.elapsed();
    let body = match &result {
        Ok(out) => protocol::call_result(&out.text, &era),
        Err(error) => protocol::call_error(error, &era),
    };
    match &result {
        Ok(_) => record.finish(200, None),
        Err(e) => record.finish(e.http_status().as_u16(), Some(e.kind())),
    }
    // Per call, so `debug` (DESIGN §1 rule 5), as on /ws.
    tracing::debug!(
        tool = name,
        session_id = era.session_id().unwrap_or(""),
        ok = result.is_ok(),
        latency_ms = latency.as_millis() as u64,
        "mcp tool call completed"
    );
    done.store(true, Ordering::Release);
    if let Some(session) = era.session_id() {
        mcp.sessions.end_call(session, &key);
    }
    drop(in_flight);
    let _ = tx.send(Frame::Message(protocol::response(&id, body))).await;
}
