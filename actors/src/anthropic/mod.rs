//! Anthropic's Messages API and the OpenAI chat-completions dialect, translated both ways.
//!
//! exai's chat path carries one JSON body from a surface to a provider. A body built by the
//! `/v1/messages` surface is an Anthropic request marked with [`DIALECT_FIELD`]; every other
//! body is an OpenAI request. The provider sends it on in its own dialect and answers in the
//! request's dialect ([`crate::provider`]'s `anthropic` glue picks the direction):
//!
//! | request | provider kind | request sent | answer |
//! |---|---|---|---|
//! | OpenAI | OpenAI-compatible | as is | as is |
//! | Anthropic | `anthropic` | as is (marker removed) | as is, SSE included |
//! | Anthropic | OpenAI-compatible | [`request::to_openai`] | [`response::to_anthropic`], [`stream::ToAnthropic`] |
//! | OpenAI | `anthropic` | [`request::to_anthropic`] | [`response::to_openai`], [`stream::ToOpenai`] |
//!
//! Every function here is pure (JSON in, JSON out) and never fails on a field it does not
//! know: unknown or unsupported fields are dropped (see the README's table).

pub mod request;
pub mod response;
pub mod stream;

use serde_json::Value;

/// The body field that marks an Anthropic-dialect request on the chat path. Never sent
/// upstream.
pub const DIALECT_FIELD: &str = "exai_dialect";
/// Its value.
pub const DIALECT_ANTHROPIC: &str = "anthropic";
/// The `anthropic-version` header value sent upstream.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// `max_tokens` sent to an Anthropic upstream when an OpenAI request gives none (the
/// Messages API requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The key under which a tool call's arguments that are not valid JSON are kept, as the raw
/// string, in the `tool_use` block's `input`.
pub const RAW_ARGUMENTS_KEY: &str = "_exai_raw_arguments";
/// Prefix of a `tool` message's content when the Anthropic `tool_result` had `is_error`.
pub const TOOL_ERROR_PREFIX: &str = "[tool error] ";

/// Whether `body` is an Anthropic-dialect request (carries the marker).
pub fn is_anthropic(body: &Value) -> bool {
    body.get(DIALECT_FIELD).and_then(Value::as_str) == Some(DIALECT_ANTHROPIC)
}

/// A fresh id with `prefix` (`msg_`, `toolu_`), unique enough for message and tool ids.
pub fn fresh_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}
