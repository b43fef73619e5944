//! The MCP protocol model exai serves, over rmcp's types: the supported versions in both eras,
//! the [`Era`] a request is served in, and the JSON-RPC results and errors (initialize,
//! discover, tools/list, tools/call, progress).

use rmcp::model::{
    CallToolResult, ContentBlock, DiscoverResult, ErrorCode, ErrorData, Implementation,
    InitializeResult, ProtocolVersion, ServerCapabilities, ToolsCapability,
};
use serde_json::{Value, json};

use crate::error::GatewayError;

/// The versions served with the initialize handshake and sessions, oldest first.
pub const SESSION_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// The stateless versions (per-request `_meta`), oldest first.
pub const STATELESS_VERSIONS: &[&str] = &["2026-07-28"];
/// `_meta` key of the per-request protocol version (2026-07-28).
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the per-request client info (2026-07-28).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
/// `_meta` key of the per-request client capabilities (2026-07-28).
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Every supported version, oldest first.
pub fn supported_versions() -> Vec<ProtocolVersion> {
    SESSION_VERSIONS
        .iter()
        .chain(STATELESS_VERSIONS)
        .filter_map(|v| serde_json::from_value(Value::String((*v).to_owned())).ok())
        .collect()
}

/// Whether `version` is one exai serves.
pub fn is_supported(version: &str) -> bool {
    SESSION_VERSIONS.contains(&version) || STATELESS_VERSIONS.contains(&version)
}

/// The spec's error for an unsupported version: `-32022`, naming the supported versions.
pub fn unsupported_version(requested: &str) -> ErrorData {
    let requested = serde_json::from_value(Value::String(requested.to_owned()))
        .unwrap_or(ProtocolVersion::V_2026_07_28);
    let mut error = ErrorData::unsupported_protocol_version(requested, &supported_versions());
    error.message = format!(
        "Unsupported protocol version; supported: {}",
        SESSION_VERSIONS
            .iter()
            .chain(STATELESS_VERSIONS)
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    )
    .into();
    error
}

/// The era a request is served in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Era {
    /// Up to 2025-11-25: the session and its negotiated version.
    Session {
        /// `Mcp-Session-Id`.
        id: String,
        /// The negotiated version.
        version: String,
    },
    /// 2026-07-28: stateless.
    Stateless {
        /// The request's version.
        version: String,
    },
}

impl Era {
    /// The session id, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Era::Session { id, .. } => Some(id),
            Era::Stateless { .. } => None,
        }
    }

    /// The protocol version the request is served in.
    pub fn version(&self) -> &str {
        match self {
            Era::Session { version, .. } | Era::Stateless { version } => version,
        }
    }

    /// Whether results carry the 2026-07-28 fields (`resultType`, cache hints).
    pub fn stateless(&self) -> bool {
        matches!(self, Era::Stateless { .. })
    }
}

/// exai's identity in results.
fn server_info() -> Implementation {
    Implementation::new("exai", env!("CARGO_PKG_VERSION"))
        .with_title("exai gateway")
        .with_description("exai's tools (chat, the workflow tools, consensus, …) over MCP")
}

/// What exai offers: tools.
fn capabilities() -> ServerCapabilities {
    let mut capabilities = ServerCapabilities::default();
    capabilities.tools = Some(ToolsCapability::default());
    capabilities
}

/// Guidance for clients.
const INSTRUCTIONS: &str = "exai's tools: `chat` asks a model; `listmodels` lists them; \
                            the workflow tools (analyze, debug, codereview, …) work step by step.";

/// The `initialize` result: the client's version when exai serves it with a handshake, else
/// the newest handshake version.
pub fn initialize_result(requested: Option<&str>) -> (String, Value) {
    let version = match requested {
        Some(v) if SESSION_VERSIONS.contains(&v) => v.to_owned(),
        _ => ProtocolVersion::LATEST_WITH_INITIALIZE.as_str().to_owned(),
    };
    let protocol = serde_json::from_value(Value::String(version.clone()))
        .unwrap_or(ProtocolVersion::LATEST_WITH_INITIALIZE);
    let result = InitializeResult::new(capabilities())
        .with_protocol_version(protocol)
        .with_server_info(server_info())
        .with_instructions(INSTRUCTIONS);
    (version, serde_json::to_value(result).unwrap_or_default())
}

/// The `server/discover` result.
pub fn discover_result() -> Value {
    let result =
        DiscoverResult::new(supported_versions(), capabilities()).with_server_info(server_info());
    let mut value = serde_json::to_value(result).unwrap_or_default();
    value["instructions"] = json!(INSTRUCTIONS);
    value
}

/// The `tools/list` result.
pub fn list_tools_result(listing: &Value, era: &Era) -> Value {
    let mut result = json!({ "tools": listing });
    if era.stateless() {
        result["resultType"] = json!("complete");
        result["ttlMs"] = json!(0);
        result["cacheScope"] = json!("private");
    }
    result
}

/// A tool's answer as a `tools/call` result: its text, and `structuredContent` when the text
/// is a JSON object.
pub fn call_result(text: &str, era: &Era) -> Value {
    let content = vec![ContentBlock::text(text)];
    let mut result = CallToolResult::success(content);
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) {
        result.structured_content = Some(Value::Object(object));
    }
    finish_result(result, era)
}

/// A tool failure: `isError: true` with the message.
pub fn call_error(error: &GatewayError, era: &Era) -> Value {
    let text = format!("{} ({})", error, error.kind());
    finish_result(CallToolResult::error(vec![ContentBlock::text(text)]), era)
}

fn finish_result(mut result: CallToolResult, era: &Era) -> Value {
    if !era.stateless() {
        result.result_type = None;
    }
    let mut value = serde_json::to_value(result).unwrap_or_default();
    if value.get("isError").is_none() {
        value["isError"] = json!(false);
    }
    value
}

/// A JSON-RPC response.
pub fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error (no `id` when the request's is unknown).
pub fn error_response(id: Option<&Value>, error: &ErrorData) -> Value {
    let mut value = json!({ "jsonrpc": "2.0", "error": error });
    if let Some(id) = id {
        value["id"] = id.clone();
    }
    value
}

/// A JSON-RPC error from a code and message.
pub fn error_of(code: ErrorCode, message: impl Into<String>) -> ErrorData {
    ErrorData::new(code, message.into(), None)
}

/// A `notifications/progress`.
pub fn progress(token: &Value, progress: f64, message: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "method": "notifications/progress",
        "params": { "progressToken": token, "progress": progress, "message": message },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_versions_name_the_supported_ones() {
        let e = serde_json::to_value(unsupported_version("1999-01-01")).unwrap();
        assert_eq!(e["code"], -32022);
        assert_eq!(e["data"]["requested"], "1999-01-01");
        assert_eq!(e["data"]["supported"][4], "2026-07-28");
        assert!(is_supported("2025-06-18") && !is_supported("2025-01-01"));
    }

    #[test]
    fn initialize_negotiates_a_handshake_version() {
        assert_eq!(initialize_result(Some("2025-06-18")).0, "2025-06-18");
        assert_eq!(initialize_result(Some("2026-07-28")).0, "2025-11-25");
        let (_, r) = initialize_result(None);
        assert_eq!(r["serverInfo"]["name"], "exai");
        assert!(r["capabilities"]["tools"].is_object());
    }

    #[test]
    fn json_output_is_structured_content() {
        let era = Era::Stateless {
            version: "2026-07-28".into(),
        };
        let r = call_result(r#"{"a":1}"#, &era);
        assert_eq!(r["structuredContent"]["a"], 1);
        assert_eq!(r["resultType"], "complete");
        let legacy = Era::Session {
            id: "x".into(),
            version: "2025-11-25".into(),
        };
        let r = call_result("plain", &legacy);
        assert!(r.get("structuredContent").is_none() && r.get("resultType").is_none());
        assert_eq!(r["isError"], false);
    }
}
