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

/// A frame a client sent, after the handshake.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `hello` again.
    Hello,
    /// `list_tools`.
    ListTools {
        /// Echoed back.
        request_id: Option<Value>,
    },
    /// `call_tool`.
    CallTool {
        /// The call's id, unique among the session's running calls.
        request_id: String,
        /// Tool name as sent (normalised later).
        name: String,
        /// Tool arguments.
        arguments: Map<String, Value>,
    },
    /// `cancel`.
    Cancel {
        /// The call to cancel.
        request_id: String,
    },
    /// `ping`.
    Ping {
        /// Echoed back.
        request_id: Option<Value>,
    },
}

/// A frame that could not be understood: the error, and the `request_id` to echo.
#[derive(Debug, Clone)]
pub struct BadFrame {
    /// The frame's `request_id`, when it had one.
    pub request_id: Option<Value>,
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
pub fn parse(text: &str) -> Result<Request, BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
        request_id: None,
        error: GatewayError::invalid(format!("invalid JSON: {e}"), None),
    })?;
    let Value::Object(mut frame) = value else {
        return Err(BadFrame {
            request_id: None,
            error: GatewayError::invalid("a frame must be a JSON object", None),
        });
    };
    let request_id = frame.get("request_id").filter(|v| !v.is_null()).cloned();
    let fail = |error: GatewayError| BadFrame {
        request_id: request_id.clone(),
        error,
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
        "list_tools" => Ok(Request::ListTools { request_id }),
        "ping" => Ok(Request::Ping { request_id }),
        "cancel" => Ok(Request::Cancel {
            request_id: required_request_id(&frame).map_err(fail)?,
        }),
        "call_tool" => {
            let id = required_request_id(&frame).map_err(fail)?;
            let name = match frame.get("name") {
                Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
                Some(Value::String(_)) => {
                    return Err(fail(GatewayError::invalid(
                        "name must not be empty",
                        Some("name"),
                    )));
                }
                Some(_) => {
                    return Err(fail(GatewayError::invalid(
                        "name must be a string",
                        Some("name"),
                    )));
                }
                None => {
                    return Err(fail(GatewayError::invalid(
                        "name is required",
                        Some("name"),
                    )));
                }
            };
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
                request_id: id,
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

/// `request_id`: a non-empty string of bounded length.
fn required_request_id(frame: &Map<String, Value>) -> Result<String, GatewayError> {
    match frame.get("request_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN => {
            Ok(id.clone())
        }
        Some(Value::String(_)) => Err(GatewayError::invalid(
            format!("request_id must be 1-{MAX_REQUEST_ID_LEN} characters"),
            Some("request_id"),
        )),
        Some(Value::Null) | None => Err(GatewayError::invalid(
            "request_id is required",
            Some("request_id"),
        )),
        Some(_) => Err(GatewayError::invalid(
            "request_id must be a string",
            Some("request_id"),
        )),
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

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

/// `{"op":"error",…}` for a frame that could not be served.
pub fn error(request_id: Option<&Value>, error: &GatewayError) -> String {
    let mut frame = json!({ "op": "error", "ok": false, "error": error.protocol_json() });
    if let Some(id) = request_id {
        frame["request_id"] = id.clone();
    }
    frame.to_string()
}

/// `list_tools_res`.
pub fn list_tools_res(request_id: Option<&Value>, tools: Value) -> String {
    let mut frame = json!({ "op": "list_tools_res", "ok": true, "tools": tools });
    if let Some(id) = request_id {
        frame["request_id"] = id.clone();
    }
    frame.to_string()
}

/// `call_tool_res` with a result.
pub fn call_tool_ok(request_id: &str, text: &str, metadata: Value) -> String {
    json!({
        "op": "call_tool_res",
        "request_id": request_id,
        "ok": true,
        "outputs": [{ "type": "text", "text": text }],
        "metadata": metadata,
    })
    .to_string()
}

/// `call_tool_res` with an error.
pub fn call_tool_err(request_id: &str, error: &GatewayError) -> String {
    json!({
        "op": "call_tool_res",
        "request_id": request_id,
        "ok": false,
        "error": error.protocol_json(),
    })
    .to_string()
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
pub fn cancelled(request_id: &str, outcome: Result<(), &GatewayError>) -> String {
    match outcome {
        Ok(()) => json!({ "op": "cancelled", "request_id": request_id, "ok": true }),
        Err(e) => json!({
            "op": "cancelled", "request_id": request_id, "ok": false, "error": e.protocol_json(),
        }),
    }
    .to_string()
}

/// `pong`.
pub fn pong(request_id: Option<&Value>) -> String {
    let mut frame = json!({ "op": "pong", "ok": true });
    if let Some(id) = request_id {
        frame["request_id"] = id.clone();
    }
    frame.to_string()
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
                request_id,
                name,
                arguments,
            }) => {
                assert_eq!((request_id.as_str(), name.as_str()), ("r1", "chat"));
                assert_eq!(arguments["prompt"], "hi");
            }
            other => panic!("{other:?}"),
        }
        let bad = parse(r#"{"op":"call_tool","request_id":"r2","name":3}"#).unwrap_err();
        assert_eq!(bad.request_id, Some(json!("r2")));
        assert_eq!(bad.error.protocol_code().as_str(), "INVALID_REQUEST");
        let unknown = parse(r#"{"op":"dance"}"#).unwrap_err();
        assert_eq!(unknown.error.protocol_code().as_str(), "PROTOCOL_ERROR");
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
        assert!(parse(r#"{"op":"cancel"}"#).is_err());
        assert_eq!(truncate("héllo", 2), "h");
    }
}
