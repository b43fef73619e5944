//! The EXAI tool protocol's frames (DESIGN §7), kept wire-compatible with existing clients:
//! parsing what a client sends into a [`Request`], and building every reply as JSON text.
//!
//! Parsing never panics and never gives up on the session: every malformed frame becomes a
//! [`GatewayError`] the session answers with `{"op":"error",…}` (echoing the frame's
//! `request_id` when it had a readable one).

use serde_json::{Map, Value, json};

use crate::error::GatewayError;

/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 256;
/// Longest client-chosen name (tool, op) repeated in replies and events.
pub const MAX_LOGGED_NAME: usize = 64;
/// Shortest kept client `session_id`.
pub const SESSION_ID_MIN: usize = 3;
/// Longest kept client `session_id`.
pub const SESSION_ID_MAX: usize = 64;

/// Close code after a malformed `hello`.
pub const CLOSE_INVALID_HELLO: u16 = 4000;
/// Close code when the first frame is not `hello`.
pub const CLOSE_MISSING_HELLO: u16 = 4001;
/// Close code when `hello` did not arrive in time.
pub const CLOSE_HELLO_TIMEOUT: u16 = 4002;
/// Close code after a wrong or missing token.
pub const CLOSE_UNAUTHORIZED: u16 = 4003;
/// Close code at the connection limit (policy violation).
pub const CLOSE_CONNECTION_LIMIT: u16 = 1008;

/// The ids a reply echoes: `request_id` and, when the client sent one, `id`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplyIds {
    /// Echoed as `request_id` (the frame's `request_id`, else its `id`).
    pub request_id: Option<Value>,
    /// Echoed as `id` when the client sent one.
    pub id: Option<Value>,
}

/// How a call is identified, and so what it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct CallId {
    /// The call's id, unique among the session's running calls: the frame's `request_id`,
    /// else its `id`, else generated.
    pub request_id: String,
    /// The `id` the client sent, echoed in every reply.
    pub id: Option<Value>,
    /// The frame carried a `request_id`: the client reads `progress` and `stream_*` frames.
    /// A call identified by `id` alone gets only its final frame (the main-branch shim reads
    /// exactly one frame per call).
    pub live: bool,
}

impl CallId {
    /// The ids its replies echo.
    pub fn reply_ids(&self) -> ReplyIds {
        ReplyIds {
            request_id: Some(Value::String(self.request_id.clone())),
            id: self.id.clone(),
        }
    }
}

/// A frame a client sent, after the handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `hello` again.
    Hello,
    /// `list_tools`.
    ListTools {
        /// Echoed back.
        ids: ReplyIds,
    },
    /// `call_tool` or `tool_call`.
    CallTool {
        /// How the call is identified.
        call: CallId,
        /// Tool name as sent (normalised later): `name`, else `tool.name`.
        name: String,
        /// Tool arguments.
        arguments: Map<String, Value>,
    },
    /// `cancel`.
    Cancel {
        /// The call to cancel (`request_id`, else `id`).
        request_id: String,
        /// Echoed back.
        ids: ReplyIds,
    },
    /// `ping`.
    Ping {
        /// Echoed back.
        ids: ReplyIds,
    },
}

/// A frame that could not be understood: the error, and the ids to echo.
#[derive(Debug, Clone)]
pub struct BadFrame {
    /// The frame's ids, when it had readable ones.
    pub ids: ReplyIds,
    /// What is wrong.
    pub error: GatewayError,
}

/// The `hello` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The token offered, if any.
    pub token: Option<String>,
    /// The session id asked for, if any.
    pub session_id: Option<String>,
}

/// Why a first frame is not an acceptable `hello`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloFailure {
    /// Not JSON, not an object, or `hello` with wrong-typed fields.
    Invalid,
    /// A well-formed frame that is not `hello`.
    Missing,
}

impl HelloFailure {
    /// The `hello_ack` error string and the close code.
    pub const fn reply(self) -> (&'static str, u16) {
        match self {
            Self::Invalid => ("invalid_hello", CLOSE_INVALID_HELLO),
            Self::Missing => ("missing_hello", CLOSE_MISSING_HELLO),
        }
    }
}

/// Parses the first frame, which must be `hello`.
pub fn parse_hello(text: &str) -> Result<Hello, HelloFailure> {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Err(HelloFailure::Invalid);
    };
    match frame.get("op") {
        Some(Value::String(op)) if op == "hello" => {}
        Some(Value::String(_)) => return Err(HelloFailure::Missing),
        _ => return Err(HelloFailure::Invalid),
    }
    let optional_string = |field: &str| match frame.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(HelloFailure::Invalid),
    };
    // A session id that is not a usable string is replaced, not refused (DESIGN §7).
    let session_id = frame
        .get("session_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Hello {
        token: optional_string("token")?,
        session_id,
    })
}

/// Whether a client-chosen session id is kept: 3–64 characters of `[A-Za-z0-9_-]`.
pub fn valid_session_id(id: &str) -> bool {
    (SESSION_ID_MIN..=SESSION_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses a frame after the handshake.
pub fn parse(text: &str) -> Result<Request, Box<BadFrame>> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Box::new(BadFrame {
            ids: ReplyIds::default(),
            error: GatewayError::invalid(format!("invalid JSON: {e}"), None),
        })
    })?;
    let Value::Object(mut frame) = value else {
        return Err(Box::new(BadFrame {
            ids: ReplyIds::default(),
            error: GatewayError::invalid("a frame must be a JSON object", None),
        }));
    };
    let id = frame.get("id").filter(|v| usable_id(v)).cloned();
    let ids = ReplyIds {
        request_id: frame
            .get("request_id")
            .filter(|v| !v.is_null())
            .cloned()
            .or_else(|| id.clone()),
        id: id.clone(),
    };
    let fail = |error: GatewayError| {
        Box::new(BadFrame {
            ids: ids.clone(),
            error,
        })
    };
    let op = match frame.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(_) => {
            return Err(fail(GatewayError::invalid(
                "op must be a string",
                Some("op"),
            )));
        }
        None => return Err(fail(GatewayError::invalid("op is required", Some("op")))),
    };
    match op.as_str() {
        "hello" => Ok(Request::Hello),
        "list_tools" => Ok(Request::ListTools { ids }),
        "ping" => Ok(Request::Ping { ids }),
        "cancel" => match call_id(&frame).map_err(&fail)? {
            Some((request_id, _)) => Ok(Request::Cancel { request_id, ids }),
            None => Err(fail(GatewayError::invalid(
                "request_id (or id) is required",
                Some("request_id"),
            ))),
        },
        "call_tool" | "tool_call" => {
            let call = match call_id(&frame).map_err(&fail)? {
                Some((request_id, live)) => CallId {
                    request_id,
                    id,
                    live,
                },
                None => CallId {
                    request_id: format!("call-{}", uuid::Uuid::now_v7().simple()),
                    id: None,
                    live: false,
                },
            };
            let fail = |error: GatewayError| {
                Box::new(BadFrame {
                    ids: call.reply_ids(),
                    error,
                })
            };
            let name = match (frame.get("name"), frame.get("tool")) {
                (Some(Value::String(n)), _) => n.clone(),
                (None | Some(Value::Null), Some(Value::String(n))) => n.clone(),
                (None | Some(Value::Null), Some(Value::Object(t))) => match t.get("name") {
                    Some(Value::String(n)) => n.clone(),
                    _ => {
                        return Err(fail(GatewayError::invalid(
                            "tool.name must be a string",
                            Some("tool.name"),
                        )));
                    }
                },
                (None | Some(Value::Null), None | Some(Value::Null)) => {
                    return Err(fail(GatewayError::invalid(
                        "name (or tool.name) is required",
                        Some("name"),
                    )));
                }
                _ => {
                    return Err(fail(GatewayError::invalid(
                        "name must be a string",
                        Some("name"),
                    )));
                }
            };
            if name.trim().is_empty() {
                return Err(fail(GatewayError::invalid(
                    "name must not be empty",
                    Some("name"),
                )));
            }
            let arguments = match frame.remove("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a,
                Some(_) => {
                    return Err(fail(GatewayError::invalid(
                        "arguments must be an object",
                        Some("arguments"),
                    )));
                }
            };
            Ok(Request::CallTool {
                call,
                name,
                arguments,
            })
        }
        other => Err(fail(GatewayError::Protocol(format!(
            "unknown op {:?}",
            truncate(other, MAX_LOGGED_NAME)
        )))),
    }
}

/// Whether an `id` can be echoed and used as a call id: a bounded string or an integer.
fn usable_id(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.is_empty() && s.len() <= MAX_REQUEST_ID_LEN,
        Value::Number(n) => n.is_i64() || n.is_u64(),
        _ => false,
    }
}

/// The call id: `request_id` (a non-empty string of bounded length) with `live` true, else a
/// usable `id` with `live` false, else `None`. A `request_id` of the wrong shape is an error.
fn call_id(frame: &Map<String, Value>) -> Result<Option<(String, bool)>, GatewayError> {
    match frame.get("request_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN => {
            return Ok(Some((id.clone(), true)));
        }
        Some(Value::String(_)) => {
            return Err(GatewayError::invalid(
                format!("request_id must be 1-{MAX_REQUEST_ID_LEN} characters"),
                Some("request_id"),
            ));
        }
        Some(Value::Null) | None => {}
        Some(_) => {
            return Err(GatewayError::invalid(
                "request_id must be a string",
                Some("request_id"),
            ));
        }
    }
    match frame.get("id") {
        Some(Value::String(id)) if usable_id(&Value::String(id.clone())) => {
            Ok(Some((id.clone(), false)))
        }
        Some(v @ Value::Number(_)) if usable_id(v) => Ok(Some((v.to_string(), false))),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(GatewayError::invalid(
            format!("id must be a string of 1-{MAX_REQUEST_ID_LEN} characters or an integer"),
            Some("id"),
        )),
    }
}

pub use crate::tools::truncate;

// ---------------------------------------------------------------------------------------
// Replies.

/// `hello_ack` accepting the session.
pub fn hello_ok(session_id: &str) -> String {
    json!({ "op": "hello_ack", "ok": true, "session_id": session_id }).to_string()
}

/// `hello_ack` refusing the session (`error` is `invalid_hello`, `missing_hello` or
/// `unauthorized`).
pub fn hello_refused(error: &str, message: &str) -> String {
    json!({ "op": "hello_ack", "ok": false, "error": error, "message": message }).to_string()
}

/// Adds `request_id` and `id` to a reply, when known.
fn with_ids(mut frame: Value, ids: &ReplyIds) -> String {
    if let Some(id) = &ids.request_id {
        frame["request_id"] = id.clone();
    }
    if let Some(id) = &ids.id {
        frame["id"] = id.clone();
    }
    frame.to_string()
}

/// `{"op":"error",…}` for a frame that could not be served.
pub fn error(ids: &ReplyIds, error: &GatewayError) -> String {
    with_ids(
        json!({ "op": "error", "ok": false, "error": error.protocol_json() }),
        ids,
    )
}

/// `list_tools_res`.
pub fn list_tools_res(ids: &ReplyIds, tools: &Value) -> String {
    with_ids(
        json!({ "op": "list_tools_res", "ok": true, "tools": tools }),
        ids,
    )
}

/// `call_tool_res` with a result. `outputs` and `result` are the same list (the shims read
/// one or the other), and `text` repeats the single text output (the 2025-11-04 shim prefers
/// it).
pub fn call_tool_ok(call: &CallId, text: &str, outputs: &Value, metadata: &Value) -> String {
    with_ids(
        json!({
            "op": "call_tool_res",
            "ok": true,
            "outputs": outputs,
            "result": outputs,
            "text": text,
            "metadata": metadata,
        }),
        &call.reply_ids(),
    )
}

/// `call_tool_res` with an error. `result` carries the error as text too, so a client that
/// only reads `result` (the main-branch shim) shows it instead of nothing.
pub fn call_tool_err(call: &CallId, error: &GatewayError) -> String {
    let code = error.protocol_code().as_str();
    with_ids(
        json!({
            "op": "call_tool_res",
            "ok": false,
            "error": error.protocol_json(),
            "result": [{ "type": "text", "text": format!("{code}: {error}") }],
        }),
        &call.reply_ids(),
    )
}

/// `progress` of a running call.
pub fn progress(request_id: &str, tool: &str, elapsed_ms: u128) -> String {
    json!({
        "op": "progress",
        "request_id": request_id,
        "tool": tool,
        "elapsed_ms": elapsed_ms as u64,
        "message": format!("{tool} still running"),
    })
    .to_string()
}

/// `stream_chunk`.
pub fn stream_chunk(request_id: &str, chunk: &str) -> String {
    json!({ "op": "stream_chunk", "request_id": request_id, "chunk": chunk }).to_string()
}

/// `stream_complete`.
pub fn stream_complete(request_id: &str) -> String {
    json!({ "op": "stream_complete", "request_id": request_id }).to_string()
}

/// `cancelled`: `ok:true` when the call was running and is now cancelled.
pub fn cancelled(ids: &ReplyIds, outcome: Result<(), &GatewayError>) -> String {
    match outcome {
        Ok(()) => with_ids(json!({ "op": "cancelled", "ok": true }), ids),
        Err(e) => with_ids(
            json!({ "op": "cancelled", "ok": false, "error": e.protocol_json() }),
            ids,
        ),
    }
}

/// `pong`.
pub fn pong(ids: &ReplyIds) -> String {
    with_ids(json!({ "op": "pong", "ok": true }), ids)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn hello_rules() {
        assert_eq!(
            parse_hello(r#"{"op":"hello","token":"t","session_id":"abc"}"#),
            Ok(Hello {
                token: Some("t".into()),
                session_id: Some("abc".into())
            })
        );
        assert_eq!(parse_hello("nope"), Err(HelloFailure::Invalid));
        assert_eq!(parse_hello("[]"), Err(HelloFailure::Invalid));
        assert_eq!(
            parse_hello(r#"{"op":"hello","token":5}"#),
            Err(HelloFailure::Invalid)
        );
        assert_eq!(parse_hello(r#"{"op":"ping"}"#), Err(HelloFailure::Missing));
        assert!(valid_session_id("ab-C_9"));
        assert!(!valid_session_id("ab"));
        assert!(!valid_session_id("has space"));
        assert!(!valid_session_id(&"x".repeat(65)));
    }

    #[test]
    fn frames_parse_or_explain() {
        match parse(
            r#"{"op":"call_tool","request_id":"r1","name":"chat","arguments":{"prompt":"hi"}}"#,
        ) {
            Ok(Request::CallTool {
                call,
                name,
                arguments,
            }) => {
                assert_eq!((call.request_id.as_str(), name.as_str()), ("r1", "chat"));
                assert!(call.live);
                assert_eq!(arguments["prompt"], "hi");
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"{"op":"tool_call","id":7,"tool":{"name":"chat"}}"#) {
            Ok(Request::CallTool { call, name, .. }) => {
                assert_eq!((call.request_id.as_str(), name.as_str()), ("7", "chat"));
                assert_eq!(call.id, Some(json!(7)));
                assert!(!call.live);
            }
            other => panic!("{other:?}"),
        }
        let bad = parse(r#"{"op":"call_tool","request_id":"r2","name":3}"#).unwrap_err();
        assert_eq!(bad.ids.request_id, Some(json!("r2")));
        assert_eq!(bad.error.protocol_code().as_str(), "INVALID_REQUEST");
        let unknown = parse(r#"{"op":"dance"}"#).unwrap_err();
        assert_eq!(unknown.error.protocol_code().as_str(), "PROTOCOL_ERROR");
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
        assert!(parse(r#"{"op":"cancel"}"#).is_err());
    }
}
