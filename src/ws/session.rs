//! One `/ws` tool-protocol session: an actor per WebSocket connection (DESIGN §7).
//!
//! **Owns:** the handshake state, the session's running calls (request id → task), its
//! token bucket, its place in the connection tracker, and a partial fragmented message.
//!
//! **Receives:** client frames (as a stream, through [`crate::ws::glue`]); [`Outbound`] frames
//! and [`CallFinished`] results from its call tasks.
//!
//! **Lifecycle:** `started` closes at once with 1008 when the connection limit refused the
//! connection, arms the hello timeout (close 4002) and the heartbeat. Each `call_tool` is
//! checked against the session and global in-flight limits *before* any work starts, then
//! runs as its own task on this worker; `cancel` aborts that task, which drops the upstream
//! request (the upstream sees the disconnect) and frees both slots. When shutdown begins
//! ([`SurfaceState::begin_shutdown`]) the session refuses new calls, lets the running ones
//! finish and then closes with 1001. Stopping aborts every running call and records
//! `ws.disconnected`. Sessions are not supervised: a session that
//! dies takes only its own connection with it.
//!
//! Nothing is logged per frame or chunk above `debug`; a completed call logs one line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web::web;
use serde_json::{Map, Value, json};
use tokio::sync::OwnedSemaphorePermit;

use super::limits::{ConnectionGuard, Refusal, TokenBucket};
use super::protocol::{self, CallId, ReplyIds, Request};
use crate::call_record::CallRecord;
use crate::error::GatewayError;
use crate::files::Cancellation;
use crate::state::SurfaceState;
use crate::tools::{Progress, Tool, ToolContext};
use crate::ws::glue::{CloseCode, CloseReason, WsContext, WsItem, WsMessage, WsProtocolError};

/// `source` of the events `/ws` records.
pub const WS_SOURCE: &str = "ws";
use exai_actors::pipeline::request::{CallContext, Surface};

/// A frame for the client, from a call task.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound(pub String);

/// A call task is done; `frame` is its `call_tool_res`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CallFinished {
    /// The call.
    pub request_id: String,
    /// The final reply.
    pub frame: String,
}

/// A call running in its own task.
struct RunningCall {
    /// Aborting it drops the tool future and with it the upstream request.
    task: tokio::task::JoinHandle<()>,
    /// Stops work the tool runs off its task (blocking file reads).
    cancel: Cancellation,
    /// Canonical tool name, for the cancellation event.
    tool: &'static str,
    /// When it started.
    started: Instant,
}

/// A fragmented message being reassembled.
struct Fragment {
    /// Text (true) or binary.
    text: bool,
    /// The bytes so far (dropped once it is over the limit).
    buf: Vec<u8>,
    /// The message is over the size limit; the rest is discarded.
    oversized: usize,
}

/// One tool-protocol session. See the module docs.
pub struct Session {
    /// Shared state: limits, chat path, recorder.
    state: web::Data<SurfaceState>,
    /// Client IP.
    peer: IpAddr,
    /// Our place in the connection tracker; `Err` when the limit refused us.
    admission: Result<ConnectionGuard, Refusal>,
    /// Set once `hello` succeeded.
    session_id: Option<Arc<str>>,
    /// Calls in flight, by request id.
    calls: HashMap<String, RunningCall>,
    /// Requests this session may still make.
    bucket: TokenBucket,
    /// Last frame (of any kind) from the client, for the heartbeat.
    last_heard: Instant,
    /// A fragmented message in progress.
    fragment: Option<Fragment>,
    /// When the connection opened.
    connected_at: Instant,
    /// Calls started, for the disconnect event.
    calls_started: u64,
    /// Shutdown has begun: no new calls; close once the running ones are done.
    draining: bool,
}

impl Session {
    /// A session for a connection from `peer`, admitted (or not) by the connection limit.
    pub fn new(
        state: web::Data<SurfaceState>,
        peer: IpAddr,
        admission: Result<ConnectionGuard, Refusal>,
    ) -> Self {
        let bucket = TokenBucket::new(state.limits.session_rate, state.limits.session_burst);
        Self {
            state,
            peer,
            admission,
            session_id: None,
            calls: HashMap::new(),
            bucket,
            last_heard: Instant::now(),
            fragment: None,
            connected_at: Instant::now(),
            calls_started: 0,
            draining: false,
        }
    }

    /// Shutdown began: close now if idle, else after the last running call.
    fn drain(&mut self, ctx: &mut WsContext<Self>) {
        self.draining = true;
        self.close_if_drained(ctx);
    }

    fn close_if_drained(&mut self, ctx: &mut WsContext<Self>) {
        if self.draining && self.calls.is_empty() {
            Self::close(ctx, u16::from(CloseCode::Away), "server shutting down");
        }
    }

    /// Sends a close frame with `code` and stops.
    fn close(ctx: &mut WsContext<Self>, code: u16, description: &str) {
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(description.to_owned()),
        }));
        ctx.stop();
    }

    /// Refuses the handshake: `hello_ack ok:false` then close.
    fn refuse(ctx: &mut WsContext<Self>, error: &str, code: u16, message: &str) {
        tracing::debug!(error, code, "ws hello refused");
        ctx.text(protocol::hello_refused(error, message));
        Self::close(ctx, code, error);
    }

    /// The first frame: `hello`, or the session ends.
    fn on_hello(&mut self, text: &str, ctx: &mut WsContext<Self>) {
        let hello = match protocol::parse_hello(text) {
            Ok(hello) => hello,
            Err(failure) => {
                let (error, code) = failure.reply();
                let message = match failure {
                    protocol::HelloFailure::Invalid => {
                        "the first frame must be a valid hello object"
                    }
                    protocol::HelloFailure::Missing => "the first frame must be hello",
                };
                Self::refuse(ctx, error, code, message);
                return;
            }
        };
        if !self.state.authorized(hello.token.as_deref()) {
            Self::refuse(
                ctx,
                "unauthorized",
                protocol::CLOSE_UNAUTHORIZED,
                "missing or invalid token",
            );
            return;
        }
        let id: Arc<str> = match hello.session_id {
            Some(id) if protocol::valid_session_id(&id) => Arc::from(id),
            _ => Arc::from(uuid::Uuid::now_v7().simple().to_string()),
        };
        // No longer waiting for hello: this connection cannot be evicted any more.
        if !self
            .admission
            .as_ref()
            .is_ok_and(ConnectionGuard::hello_done)
        {
            Self::close(
                ctx,
                protocol::CLOSE_CONNECTION_LIMIT,
                "too many connections waiting for hello",
            );
            return;
        }
        ctx.text(protocol::hello_ok(&id));
        self.state.recorder.record(
            WS_SOURCE,
            "ws.connected",
            json!({ "ok": true, "session_id": &*id, "connections": self.state.ws_connections() }),
        );
        tracing::debug!(session_id = %id, peer = %self.peer, "ws session started");
        self.session_id = Some(id);
    }

    /// Whether the session and its IP may make one more request.
    fn take_token(&mut self) -> bool {
        self.bucket.try_take()
            && self
                .admission
                .as_ref()
                .is_ok_and(ConnectionGuard::take_ip_token)
    }

    /// A complete text message.
    fn on_text(&mut self, text: &str, ctx: &mut WsContext<Self>) {
        let limit = self.state.limits.max_message_bytes;
        if text.len() > limit {
            let error = GatewayError::TooLarge {
                size: text.len(),
                limit,
            };
            if self.session_id.is_none() {
                Self::refuse(
                    ctx,
                    "invalid_hello",
                    protocol::CLOSE_INVALID_HELLO,
                    &error.to_string(),
                );
            } else {
                ctx.text(protocol::error(&ReplyIds::default(), &error));
            }
            return;
        }
        if self.session_id.is_none() {
            self.on_hello(text, ctx);
            return;
        }
        let request = protocol::parse(text);
        // Cancelling is always allowed: it only ever frees capacity.
        if !matches!(request, Ok(Request::Cancel { .. })) && !self.take_token() {
            let error = GatewayError::RateLimited("too many requests; slow down".to_owned());
            match &request {
                Ok(Request::CallTool { call, .. }) => {
                    ctx.text(protocol::call_tool_err(call, &error));
                }
                Ok(Request::ListTools { ids } | Request::Ping { ids }) => {
                    ctx.text(protocol::error(ids, &error));
                }
                Err(bad) => ctx.text(protocol::error(&bad.ids, &error)),
                _ => ctx.text(protocol::error(&ReplyIds::default(), &error)),
            }
            return;
        }
        match request {
            Err(bad) => ctx.text(protocol::error(&bad.ids, &bad.error)),
            Ok(Request::Hello) => ctx.text(protocol::error(
                &ReplyIds::default(),
                &GatewayError::Protocol("hello was already accepted".to_owned()),
            )),
            Ok(Request::Ping { ids }) => ctx.text(protocol::pong(&ids)),
            Ok(Request::ListTools { ids }) => {
                ctx.text(protocol::list_tools_res(
                    &ids,
                    crate::tools::registry().listing(),
                ));
            }
            Ok(Request::Cancel { request_id, ids }) => self.cancel(&request_id, &ids, ctx),
            Ok(Request::CallTool {
                call,
                name,
                arguments,
            }) => self.call_tool(call, &name, arguments, ctx),
        }
    }

    /// `call_tool`: validate, check capacity, then start the call's task. Every call —
    /// refused, answered or cancelled — records one `request` event.
    fn call_tool(
        &mut self,
        call: CallId,
        name: &str,
        arguments: Map<String, Value>,
        ctx: &mut WsContext<Self>,
    ) {
        let mut record = self.state.start_call(Surface::Ws, call.request_id.clone());
        {
            let event = record.event();
            let tool = crate::tools::normalise(name);
            event.tool = Some(protocol::truncate(&tool, protocol::MAX_LOGGED_NAME).to_owned());
            event.session_id = self.session_id.as_deref().map(str::to_owned);
            event.model = arguments
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_owned);
            event.stream = arguments.get("stream").and_then(Value::as_bool) == Some(true);
        }
        let refuse = |record: CallRecord, error: &GatewayError, ctx: &mut WsContext<Self>| {
            record.finish(error.http_status().as_u16(), Some(error.kind()));
            ctx.text(protocol::call_tool_err(&call, error));
        };
        if self.calls.contains_key(&call.request_id) {
            let error =
                GatewayError::invalid("request_id is already in flight", Some("request_id"));
            return refuse(record, &error, ctx);
        }
        if self.draining {
            let error = GatewayError::Unavailable("the server is shutting down".to_owned());
            return refuse(record, &error, ctx);
        }
        let tool = match crate::tools::registry().prepare(name, &arguments) {
            Ok(tool) => tool,
            Err(error) => return refuse(record, &error, ctx),
        };
        let limits = &self.state.limits;
        if self.calls.len() >= limits.session_max_inflight {
            let error = GatewayError::OverCapacity(format!(
                "{} calls already in flight in this session (limit {})",
                self.calls.len(),
                limits.session_max_inflight
            ));
            return refuse(record, &error, ctx);
        }
        let Ok(permit) = self.state.ws_inflight.clone().try_acquire_owned() else {
            let error = GatewayError::OverCapacity(format!(
                "{} calls in flight across all sessions (limit {})",
                limits.global_max_inflight, limits.global_max_inflight
            ));
            return refuse(record, &error, ctx);
        };
        let Some(session_id) = self.session_id.clone() else {
            return;
        };
        self.calls_started += 1;
        let name = tool.name();
        let cancel = Cancellation::default();
        let request_id = call.request_id.clone();
        let task = actix_rt::spawn(run_call(CallTask {
            state: self.state.clone(),
            addr: ctx.address(),
            session_id,
            call,
            tool,
            arguments,
            cancel: cancel.clone(),
            permit,
            record,
        }));
        self.calls.insert(
            request_id,
            RunningCall {
                task,
                cancel,
                tool: name,
                started: Instant::now(),
            },
        );
    }

    /// `cancel`: abort the call's task (dropping its upstream request) and free its slot.
    fn cancel(&mut self, request_id: &str, ids: &ReplyIds, ctx: &mut WsContext<Self>) {
        match self.calls.remove(request_id) {
            Some(call) => {
                call.cancel.cancel();
                // Dropping the task's future drops its `CallRecord`: recorded as cancelled.
                call.task.abort();
                tracing::debug!(
                    tool = call.tool,
                    session_id = self.session_id.as_deref().unwrap_or(""),
                    request_id,
                    latency_ms = call.started.elapsed().as_millis() as u64,
                    "tool call cancelled"
                );
                ctx.text(protocol::cancelled(ids, Ok(())));
                self.close_if_drained(ctx);
            }
            None => {
                let error = GatewayError::NotFound(format!("no call {request_id:?} is in flight"));
                ctx.text(protocol::cancelled(ids, Err(&error)));
            }
        }
    }

    /// A complete binary message: not part of the protocol.
    fn on_binary(&mut self, ctx: &mut WsContext<Self>) {
        if self.session_id.is_none() {
            Self::refuse(
                ctx,
                "invalid_hello",
                protocol::CLOSE_INVALID_HELLO,
                "binary frames are not supported",
            );
        } else {
            let error = GatewayError::Protocol(
                "binary frames are not supported; send JSON text".to_owned(),
            );
            ctx.text(protocol::error(&ReplyIds::default(), &error));
        }
    }

    /// Text bytes that failed UTF-8 validation.
    fn on_invalid_utf8(&mut self, ctx: &mut WsContext<Self>) {
        if self.session_id.is_none() {
            Self::refuse(
                ctx,
                "invalid_hello",
                protocol::CLOSE_INVALID_HELLO,
                "text frame is not valid UTF-8",
            );
        } else {
            let error = GatewayError::Protocol("text frame is not valid UTF-8".to_owned());
            ctx.text(protocol::error(&ReplyIds::default(), &error));
        }
    }

    /// One piece of a fragmented message.
    fn on_continuation(&mut self, item: WsItem, ctx: &mut WsContext<Self>) {
        let limit = self.state.limits.max_message_bytes;
        let (first, bytes, last) = match item {
            WsItem::FirstText(b) => (Some(true), b, false),
            WsItem::FirstBinary(b) => (Some(false), b, false),
            WsItem::Continue(b) => (None, b, false),
            WsItem::Last(b) => (None, b, true),
        };
        if let Some(text) = first {
            self.fragment = Some(Fragment {
                text,
                buf: Vec::new(),
                oversized: 0,
            });
        }
        let Some(fragment) = self.fragment.as_mut() else {
            let error =
                GatewayError::Protocol("continuation frame without a first frame".to_owned());
            ctx.text(protocol::error(&ReplyIds::default(), &error));
            return;
        };
        if fragment.oversized > 0 || fragment.buf.len() + bytes.len() > limit {
            fragment.oversized = fragment.oversized.max(fragment.buf.len()) + bytes.len();
            fragment.buf = Vec::new();
        } else {
            fragment.buf.extend_from_slice(&bytes);
        }
        if !last {
            return;
        }
        let Some(done) = self.fragment.take() else {
            return;
        };
        if done.oversized > 0 {
            let error = GatewayError::TooLarge {
                size: done.oversized,
                limit,
            };
            ctx.text(protocol::error(&ReplyIds::default(), &error));
        } else if !done.text {
            self.on_binary(ctx);
        } else {
            match String::from_utf8(done.buf) {
                Ok(text) => self.on_text(&text, ctx),
                Err(_) => self.on_invalid_utf8(ctx),
            }
        }
    }
}

impl Actor for Session {
    type Context = WsContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Err(refusal) = &self.admission {
            let why = match refusal {
                Refusal::Total => "too many connections",
                Refusal::PerIp => "too many connections from this address",
            };
            tracing::debug!(peer = %self.peer, why, "ws connection refused");
            Self::close(ctx, protocol::CLOSE_CONNECTION_LIMIT, why);
            return;
        }
        // Evicted while waiting for hello (the pre-hello cap made room for a newer client).
        if let Some(evicted) = self.admission.as_mut().ok().and_then(|g| g.take_eviction()) {
            ctx.spawn(async move { evicted.await.is_ok() }.into_actor(self).map(
                |evicted, act, ctx| {
                    if evicted && act.session_id.is_none() {
                        tracing::debug!(peer = %act.peer, "ws connection evicted before hello");
                        Self::close(
                            ctx,
                            protocol::CLOSE_CONNECTION_LIMIT,
                            "too many connections waiting for hello",
                        );
                    }
                },
            ));
        }
        let mut shutdown = self.state.shutdown.subscribe();
        ctx.spawn(
            async move {
                let _ = shutdown.wait_for(|down| *down).await;
            }
            .into_actor(self)
            .map(|(), act, ctx| act.drain(ctx)),
        );
        ctx.run_later(self.state.limits.hello_timeout, |act, ctx| {
            if act.session_id.is_none() {
                tracing::debug!(peer = %act.peer, "ws hello timeout");
                Self::close(ctx, protocol::CLOSE_HELLO_TIMEOUT, "hello timeout");
            }
        });
        ctx.run_interval(self.state.limits.heartbeat_interval, |act, ctx| {
            if act.last_heard.elapsed() > act.state.limits.client_timeout {
                tracing::debug!(peer = %act.peer, "ws client went silent");
                Self::close(ctx, u16::from(CloseCode::Away), "heartbeat timeout");
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for (_, call) in self.calls.drain() {
            call.cancel.cancel();
            call.task.abort();
        }
        if let Some(id) = &self.session_id {
            self.state.recorder.record(
                WS_SOURCE,
                "ws.disconnected",
                json!({
                    "ok": true,
                    "session_id": &**id,
                    "duration_ms": self.connected_at.elapsed().as_millis() as u64,
                    "calls": self.calls_started,
                }),
            );
            tracing::debug!(session_id = %id, "ws session ended");
        }
    }
}

impl StreamHandler<Result<WsMessage, WsProtocolError>> for Session {
    fn handle(&mut self, msg: Result<WsMessage, WsProtocolError>, ctx: &mut Self::Context) {
        if self.admission.is_err() {
            return;
        }
        self.last_heard = Instant::now();
        match msg {
            Ok(WsMessage::Text(text)) => self.on_text(&text, ctx),
            Ok(WsMessage::Binary(_)) => self.on_binary(ctx),
            Ok(WsMessage::Continuation(item)) => self.on_continuation(item, ctx),
            Ok(WsMessage::Ping(bytes)) => ctx.pong(&bytes),
            Ok(WsMessage::Pong(_) | WsMessage::Nop) => {}
            Ok(WsMessage::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            // The stream reports a text frame that is not UTF-8 as an I/O error and carries on.
            Err(WsProtocolError::Io(_)) => self.on_invalid_utf8(ctx),
            Err(WsProtocolError::Overflow) => {
                // The codec cannot skip a frame over its limit: answer, then close.
                let error = GatewayError::TooLarge {
                    size: self.state.limits.codec_frame_limit() + 1,
                    limit: self.state.limits.max_message_bytes,
                };
                ctx.text(protocol::error(&ReplyIds::default(), &error));
                Self::close(ctx, u16::from(CloseCode::Size), "message too big");
            }
            Err(e) => {
                tracing::debug!(error = %e, "ws protocol error");
                Self::close(ctx, u16::from(CloseCode::Protocol), "protocol error");
            }
        }
    }
}

impl Handler<Outbound> for Session {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Self::Context) {
        ctx.text(msg.0);
    }
}

impl Handler<CallFinished> for Session {
    type Result = ();

    fn handle(&mut self, msg: CallFinished, ctx: &mut Self::Context) {
        // A call cancelled meanwhile was already answered with `cancelled`.
        if self.calls.remove(&msg.request_id).is_some() {
            ctx.text(msg.frame);
        }
        self.close_if_drained(ctx);
    }
}

/// What a call task needs.
struct CallTask {
    /// Shared state.
    state: web::Data<SurfaceState>,
    /// The session, for frames and the result.
    addr: Addr<Session>,
    /// For events and the log line.
    session_id: Arc<str>,
    /// The call's ids.
    call: CallId,
    /// What to run.
    tool: Arc<dyn Tool>,
    /// With what.
    arguments: Map<String, Value>,
    /// Set when the call is cancelled.
    cancel: Cancellation,
    /// The global in-flight slot, released when the task ends or is aborted.
    permit: OwnedSemaphorePermit,
    /// The call's `request` event, finished when it ends (recorded as cancelled when the
    /// task is aborted).
    record: CallRecord,
}

/// Sends a call's stream frames to its session, for calls identified by `request_id` only.
struct FrameProgress {
    /// The session.
    addr: Addr<Session>,
    /// The call.
    request_id: String,
    /// Whether the client reads frames other than the final one.
    live: bool,
    /// The call, told when the first chunk goes out.
    context: Arc<CallContext>,
}

impl Progress for FrameProgress {
    fn chunk(&self, text: &str) {
        self.context.update(|t| {
            t.first_byte.get_or_insert_with(Instant::now);
        });
        if self.live {
            self.addr
                .do_send(Outbound(protocol::stream_chunk(&self.request_id, text)));
        }
    }

    fn complete(&self) {
        if self.live {
            self.addr
                .do_send(Outbound(protocol::stream_complete(&self.request_id)));
        }
    }
}

/// Runs one call: progress every interval (to `request_id` calls), the tool timeout, the
/// event and the log line, then hands the reply to the session.
async fn run_call(task: CallTask) {
    let CallTask {
        state,
        addr,
        session_id,
        call,
        tool,
        arguments,
        cancel,
        permit,
        record,
    } = task;
    let started = Instant::now();
    let name = tool.name();
    let limits = &state.limits;
    let request_id = call.request_id.clone();
    let reporter = FrameProgress {
        addr: addr.clone(),
        request_id: request_id.clone(),
        live: call.live,
        context: record.context(),
    };
    let context = ToolContext {
        services: &state,
        tools: crate::tools::registry(),
        request_id: &request_id,
        progress: &reporter,
        cancel,
    };
    let result = CallContext::scope(
        record.context(),
        crate::tools::run_bounded(
            tool.call(context, arguments),
            limits.tool_timeout,
            limits.progress_interval,
            call.live,
            || {
                addr.do_send(Outbound(protocol::progress(
                    &request_id,
                    name,
                    started.elapsed().as_millis(),
                )));
                Ok(())
            },
        ),
    )
    .await;
    drop(permit);
    let latency = started.elapsed();
    match &result {
        Ok(_) => record.finish(200, None),
        Err(e) => record.finish(e.http_status().as_u16(), Some(e.kind())),
    }
    let frame = match &result {
        Ok(out) => {
            // Per call, so `debug`: a busy editor makes many calls (DESIGN §1 rule 5).
            tracing::debug!(
                tool = name,
                %session_id,
                %request_id,
                ok = true,
                latency_ms = latency.as_millis() as u64,
                model = out.model.as_deref().unwrap_or(""),
                cache = out.cache.unwrap_or(""),
                "tool call completed"
            );
            protocol::call_tool_ok(&call, &out.text, &out.outputs(), &out.metadata)
        }
        Err(error) => {
            tracing::debug!(
                tool = name,
                %session_id,
                %request_id,
                ok = false,
                latency_ms = latency.as_millis() as u64,
                error_kind = error.kind(),
                "tool call completed"
            );
            protocol::call_tool_err(&call, error)
        }
    };
    addr.do_send(CallFinished {
        request_id: call.request_id.clone(),
        frame,
    });
}
