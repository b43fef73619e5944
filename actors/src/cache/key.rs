//! Response-cache keys and the bypass rule (issue 5).
//!
//! A key is SHA-256 over a canonical encoding of the **resolved** model and every request
//! field that can change the answer. The rule is "everything counts unless it is known not
//! to": a field this module has never heard of (a provider-specific extra, a new OpenAI
//! parameter) is part of the key, so two requests that differ in anything that might matter
//! never share a response. Only the fields in [`IGNORED_FIELDS`] are left out; they steer
//! transport, accounting or this cache, not the model's output.
//!
//! Canonical encoding: JSON with object keys sorted (at every depth), no whitespace, numbers
//! written one way (`1`, `1.0` and `1e0` are the same number), top-level `null` fields
//! dropped (an explicit `null` asks for the default, like an absent field), and
//! `temperature` rounded to two decimal places. The encoding does not depend on how
//! `serde_json` orders maps, so the `preserve_order` feature elsewhere cannot change keys.

use std::fmt;
use std::io::Write as _;

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Version of the key derivation; bump it when the encoding changes so old entries in a
/// shared Redis are not served under a new meaning.
pub const KEY_VERSION: u32 = 1;

/// Top-level request fields that never change the answer and are left out of the key.
///
/// - `model`: replaced by the resolved model, so an alias and its target share entries;
/// - `stream`, `stream_options`: a cached complete response can be re-chunked;
/// - `user`, `safety_identifier`, `metadata`, `store`, `prompt_cache_key`: accounting and
///   provider-side bookkeeping;
/// - `cache`, `continuation_id`: this cache's own controls (and a continuation bypasses it);
/// - `request_id`, `idempotency_key`: per-call identifiers.
pub const IGNORED_FIELDS: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "metadata",
    "store",
    "prompt_cache_key",
    "cache",
    "continuation_id",
    "request_id",
    "idempotency_key",
];

/// Decimal places `temperature` is rounded to before hashing.
const TEMPERATURE_SCALE: f64 = 100.0;

/// A response-cache key: SHA-256 of the canonical request.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Derives the key of `request` (an OpenAI-style chat or completion body) answered by
    /// `resolved_model`.
    pub fn derive(request: &Value, resolved_model: &str) -> Self {
        let mut hasher = HashWriter(Sha256::new());
        // Writes into a hasher cannot fail; the results are ignored on purpose.
        let _ = writeln!(hasher, "exai-cache-key/v{KEY_VERSION}");
        write_str(&mut hasher, resolved_model);
        hasher.0.update(b"\n");
        match request {
            Value::Object(fields) => write_request(&mut hasher, fields),
            other => write_canonical(&mut hasher, other),
        }
        Self(hasher.0.finalize().into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as used in Redis keys and events.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 16 hex digits, enough to correlate events without bloating them.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..8])
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.short())
    }
}

/// What the request's headers say about caching.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// `Cache-Control: no-store`.
    pub no_store: bool,
    /// `Cache-Control: no-cache` (or `Pragma: no-cache`, its HTTP/1.0 spelling).
    pub no_cache: bool,
}

impl CacheDirectives {
    /// Parses the `Cache-Control` and `Pragma` header values, if present. Directive names
    /// are case-insensitive; unknown directives are ignored.
    pub fn from_headers(cache_control: Option<&str>, pragma: Option<&str>) -> Self {
        let mut directives = Self::default();
        for directive in cache_control.into_iter().flat_map(|v| v.split(',')) {
            let name = directive.split('=').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case("no-store") {
                directives.no_store = true;
            } else if name.eq_ignore_ascii_case("no-cache") {
                directives.no_cache = true;
            }
        }
        if pragma.is_some_and(|p| {
            p.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        }) {
            directives.no_cache = true;
        }
        directives
    }
}

/// Whether `request` must skip the cache entirely (neither served from it nor stored):
/// it carries a `continuation_id` (a conversation whose state lives upstream), asks for
/// `cache: false`, or its headers say `no-store` / `no-cache`.
pub fn bypass(request: &Value, directives: CacheDirectives) -> bool {
    if directives.no_store || directives.no_cache {
        return true;
    }
    let continuation = request
        .get("continuation_id")
        .is_some_and(|v| !v.is_null() && v.as_str() != Some(""));
    let disabled = request.get("cache").and_then(Value::as_bool) == Some(false);
    continuation || disabled
}

/// Feeds the top-level request, minus ignored and `null` fields, with `temperature` rounded.
fn write_request(out: &mut HashWriter, fields: &Map<String, Value>) {
    let mut kept: Vec<(&String, &Value)> = fields
        .iter()
        .filter(|(name, value)| !value.is_null() && !IGNORED_FIELDS.contains(&name.as_str()))
        .collect();
    kept.sort_by(|a, b| a.0.cmp(b.0));
    out.0.update(b"{");
    for (i, (name, value)) in kept.into_iter().enumerate() {
        if i > 0 {
            out.0.update(b",");
        }
        write_str(out, name);
        out.0.update(b":");
        match (name.as_str(), value.as_f64()) {
            ("temperature", Some(t)) => write_rounded(out, t, TEMPERATURE_SCALE),
            _ => write_canonical(out, value),
        }
    }
    out.0.update(b"}");
}

/// Writes `value` as canonical JSON.
fn write_canonical(out: &mut HashWriter, value: &Value) {
    match value {
        Value::Null => out.0.update(b"null"),
        Value::Bool(true) => out.0.update(b"true"),
        Value::Bool(false) => out.0.update(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.0.update(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_canonical(out, item);
            }
            out.0.update(b"]");
        }
        Value::Object(fields) => {
            let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            out.0.update(b"{");
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                write_str(out, name);
                out.0.update(b":");
                write_canonical(out, item);
            }
            out.0.update(b"}");
        }
    }
}

/// Integers as integers; a float with no fractional part as the integer it equals; other
/// floats in Rust's shortest round-trip form.
fn write_number(out: &mut HashWriter, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        write_float(out, f);
    }
}

/// See [`write_number`].
fn write_float(out: &mut HashWriter, f: f64) {
    // 2^63: beyond it a float cannot be written as an i64.
    const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && f.abs() < I64_LIMIT {
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i64;
        let _ = write!(out, "{i}");
    } else {
        let _ = write!(out, "{f:?}");
    }
}

/// Writes `f` rounded to `1/scale` as a canonical number.
fn write_rounded(out: &mut HashWriter, f: f64, scale: f64) {
    write_float(out, (f * scale).round() / scale);
}

/// Writes a JSON string literal (serde_json's escaping is deterministic).
fn write_str(out: &mut HashWriter, s: &str) {
    // Serialising a &str cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Lets `write!` and `serde_json::to_writer` feed the hasher directly.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    const MODEL: &str = "kimi-k2-0905-preview";

    fn base() -> Value {
        json!({
            "model": "auto",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello"}
            ],
            "temperature": 0.7,
            "top_p": 0.9,
            "max_tokens": 256,
        })
    }

    fn key(v: &Value) -> CacheKey {
        CacheKey::derive(v, MODEL)
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v[field] = value;
        v
    }

    #[test]
    fn key_is_stable_and_hex() {
        let a = key(&base());
        assert_eq!(a, key(&base()));
        assert_eq!(a.to_hex().len(), 64);
        assert_eq!(a.short().len(), 16);
        assert!(a.to_hex().starts_with(&a.short()));
    }

    #[test]
    fn resolved_model_is_part_of_the_key_and_requested_alias_is_not() {
        let a = CacheKey::derive(&base(), "model-a");
        assert_ne!(a, CacheKey::derive(&base(), "model-b"));
        assert_eq!(
            a,
            CacheKey::derive(&with("model", json!("glm-4.6")), "model-a")
        );
    }

    #[test]
    fn every_output_relevant_field_changes_the_key() {
        let reference = key(&base());
        let changes: Vec<(&str, Value)> = vec![
            ("messages", json!([{"role": "user", "content": "Hello!"}])),
            ("prompt", json!("Once upon a time")),
            ("system", json!("You are verbose.")),
            ("temperature", json!(0.71)),
            ("top_p", json!(0.95)),
            ("max_tokens", json!(257)),
            ("max_completion_tokens", json!(256)),
            ("stop", json!(["\n"])),
            ("seed", json!(42)),
            (
                "tools",
                json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]),
            ),
            ("tool_choice", json!("required")),
            ("parallel_tool_calls", json!(false)),
            ("response_format", json!({"type": "json_object"})),
            ("thinking_mode", json!("high")),
            (
                "thinking",
                json!({"type": "enabled", "budget_tokens": 1024}),
            ),
            ("reasoning_effort", json!("low")),
            ("reasoning", json!({"effort": "high"})),
            ("n", json!(2)),
            ("frequency_penalty", json!(0.5)),
            ("presence_penalty", json!(0.5)),
            ("logit_bias", json!({"50256": -100})),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("extra_body", json!({"enable_search": true})),
            ("some_future_provider_knob", json!(1)),
        ];
        let mut seen = std::collections::HashSet::new();
        for (field, value) in changes {
            let k = key(&with(field, value));
            assert_ne!(k, reference, "changing {field} must change the key");
            assert!(seen.insert(k), "{field} collided with another change");
        }
    }

    #[test]
    fn nested_changes_change_the_key() {
        let mut v = base();
        v["messages"][1]["content"] = json!("hello");
        assert_ne!(key(&v), key(&base()));
        let mut v = base();
        v["messages"][0]["role"] = json!("user");
        assert_ne!(key(&v), key(&base()));
        let mut reordered = base();
        reordered["messages"] = json!([
            {"role": "user", "content": "Hello"},
            {"role": "system", "content": "You are terse."}
        ]);
        assert_ne!(key(&reordered), key(&base()), "message order matters");
        let a = with("logit_bias", json!({"1": 5}));
        let b = with("logit_bias", json!({"1": 6}));
        assert_ne!(key(&a), key(&b));
    }

    #[test]
    fn irrelevant_fields_do_not_change_the_key() {
        let reference = key(&base());
        let irrelevant: Vec<(&str, Value)> = vec![
            ("model", json!("some-alias")),
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("user-123")),
            ("safety_identifier", json!("abc")),
            ("metadata", json!({"trace": "x"})),
            ("store", json!(true)),
            ("prompt_cache_key", json!("pk")),
            ("cache", json!(true)),
            ("continuation_id", json!("c-1")),
            ("request_id", json!("r-1")),
            ("idempotency_key", json!("i-1")),
            ("seed", Value::Null),
        ];
        for (field, value) in irrelevant {
            assert_eq!(
                key(&with(field, value)),
                reference,
                "{field} must not change the key"
            );
        }
    }

    #[test]
    fn temperature_is_rounded_to_two_places() {
        let t = |x: f64| key(&with("temperature", json!(x)));
        assert_eq!(t(0.701), t(0.70));
        assert_eq!(t(0.704), t(0.7));
        assert_ne!(t(0.70), t(0.71));
        assert_ne!(t(0.0), t(0.01));
        assert_eq!(t(1.0), key(&with("temperature", json!(1))));
        let mut absent = base();
        absent.as_object_mut().unwrap().remove("temperature");
        assert_ne!(
            key(&absent),
            t(1.0),
            "absent is not the same as an explicit value"
        );
    }

    #[test]
    fn key_order_and_number_spelling_do_not_matter() {
        let a: Value = serde_json::from_str(
            r#"{"temperature":0.7,"model":"x","messages":[{"role":"user","content":"Hi","name":"a"}],"top_p":1,"response_format":{"type":"json_schema","json_schema":{"b":1,"a":2}}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"response_format":{"json_schema":{"a":2,"b":1.0},"type":"json_schema"},"top_p":1.0,"messages":[{"name":"a","content":"Hi","role":"user"}],"model":"y","temperature":0.70}"#,
        )
        .unwrap();
        assert_eq!(key(&a), key(&b));
    }

    #[test]
    fn string_contents_cannot_be_confused_with_structure() {
        let a = json!({"messages": [{"role": "user", "content": "a\",\"b"}]});
        let b = json!({"messages": [{"role": "user", "content": "a", "b": ""}]});
        assert_ne!(key(&a), key(&b));
        let a = CacheKey::derive(&json!({"prompt": "x"}), "m\n{");
        let b = CacheKey::derive(&json!({"prompt": "x"}), "m");
        assert_ne!(a, b);
    }

    #[test]
    fn bypass_rules() {
        let none = CacheDirectives::default();
        assert!(!bypass(&base(), none));
        assert!(bypass(&with("continuation_id", json!("abc")), none));
        assert!(!bypass(&with("continuation_id", Value::Null), none));
        assert!(bypass(&with("cache", json!(false)), none));
        assert!(!bypass(&with("cache", json!(true)), none));
        let no_store = CacheDirectives::from_headers(Some("private, No-Store"), None);
        assert!(no_store.no_store && !no_store.no_cache);
        assert!(bypass(&base(), no_store));
        let no_cache = CacheDirectives::from_headers(Some("no-cache=\"set-cookie\""), None);
        assert!(no_cache.no_cache);
        assert!(bypass(&base(), no_cache));
        assert!(bypass(
            &base(),
            CacheDirectives::from_headers(None, Some("no-cache"))
        ));
        let max_age = CacheDirectives::from_headers(Some("max-age=0"), None);
        assert!(!bypass(&base(), max_age));
    }
}
