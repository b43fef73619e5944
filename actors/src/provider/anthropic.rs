//! The `anthropic` provider kind and the dialect of each call (see [`crate::anthropic`]).
//!
//! A provider of kind `anthropic` (Anthropic itself, or Kimi's and GLM's
//! Anthropic-compatible endpoints) is called at `<base>/messages` with `x-api-key` and
//! `anthropic-version`; every other kind at `<base>/chat/completions` with a bearer token.
//! [`Translation`] decides, per call, whether the body and the answer are passed through or
//! translated, so the handle's retries, breaker, slots and events apply to every dialect.

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};

use super::settings::ProviderKind;
use crate::anthropic::{self, DIALECT_FIELD, request, response, stream};

/// How one call's body and answer cross between the request's dialect and the provider's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Translation {
    /// OpenAI request, OpenAI-compatible provider: nothing to do.
    None,
    /// Anthropic request, `anthropic` provider: passed through untranslated.
    Native,
    /// Anthropic request, OpenAI-compatible provider of this kind.
    FromAnthropic(ProviderKind),
    /// OpenAI request, `anthropic` provider.
    ToAnthropic,
}

impl Translation {
    /// The translation for `body` sent to a provider of `kind`.
    pub(super) fn of(kind: ProviderKind, body: &Value) -> Self {
        match (
            kind == ProviderKind::Anthropic,
            anthropic::is_anthropic(body),
        ) {
            (false, false) => Self::None,
            (true, true) => Self::Native,
            (false, true) => Self::FromAnthropic(kind),
            (true, false) => Self::ToAnthropic,
        }
    }

    /// The body to send, without `model` and `stream` (the handle sets them).
    pub(super) fn request(self, mut map: Map<String, Value>, stream: bool) -> Map<String, Value> {
        map.remove(DIALECT_FIELD);
        let translated = match self {
            Self::None | Self::Native => return map,
            Self::FromAnthropic(kind) => request::to_openai(&Value::Object(map), kind, stream),
            Self::ToAnthropic => request::to_anthropic(&Value::Object(map)),
        };
        match translated {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// The answer in the request's dialect.
    pub(super) fn response(self, body: Bytes) -> Result<Bytes, serde_json::Error> {
        match self {
            Self::None | Self::Native => Ok(body),
            Self::FromAnthropic(_) => response::to_anthropic(&body).map(Bytes::from),
            Self::ToAnthropic => response::to_openai(&body).map(Bytes::from),
        }
    }

    /// The stream in the request's dialect.
    pub(super) fn stream(self, inner: stream::Chunks, provider: &str) -> stream::Chunks {
        match self {
            Self::None | Self::Native => inner,
            Self::FromAnthropic(_) => Box::pin(stream::Translated::new(
                inner,
                stream::ToAnthropic::new(),
                provider,
            )),
            Self::ToAnthropic => Box::pin(stream::Translated::new(
                inner,
                stream::ToOpenai::new(),
                provider,
            )),
        }
    }
}

/// The path under the base URL that takes chat calls.
pub(super) fn endpoint(kind: ProviderKind) -> &'static str {
    if kind == ProviderKind::Anthropic {
        "messages"
    } else {
        "chat/completions"
    }
}

/// The headers every upstream call carries: `x-api-key` and `anthropic-version` for the
/// `anthropic` kind, `Authorization: Bearer` for the others. Keys are marked sensitive.
/// `None` when the key cannot be a header value.
pub(super) fn upstream_headers(
    kind: ProviderKind,
    key: Option<&SecretString>,
) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    if kind == ProviderKind::Anthropic {
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(anthropic::ANTHROPIC_VERSION),
        );
    }
    if let Some(key) = key {
        let (name, text) = if kind == ProviderKind::Anthropic {
            (
                HeaderName::from_static("x-api-key"),
                key.expose_secret().to_owned(),
            )
        } else {
            (AUTHORIZATION, format!("Bearer {}", key.expose_secret()))
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Some(headers)
}

/// Whether an Anthropic stream payload is the last event (`message_stop`): an Anthropic
/// stream has no `[DONE]`.
pub(super) fn is_message_stop(data: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"message_stop\"";
    data.windows(NEEDLE.len()).any(|w| w == NEEDLE)
        && serde_json::from_slice::<Value>(data)
            .ok()
            .and_then(|v| {
                v.get("type")
                    .and_then(Value::as_str)
                    .map(|t| t == "message_stop")
            })
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn the_dialect_pair_picks_the_translation() {
        let a = json!({ DIALECT_FIELD: "anthropic", "messages": [] });
        let o = json!({ "messages": [] });
        assert_eq!(
            Translation::of(ProviderKind::Anthropic, &a),
            Translation::Native
        );
        assert_eq!(
            Translation::of(ProviderKind::Anthropic, &o),
            Translation::ToAnthropic
        );
        assert_eq!(
            Translation::of(ProviderKind::Glm, &a),
            Translation::FromAnthropic(ProviderKind::Glm)
        );
        assert_eq!(Translation::of(ProviderKind::Kimi, &o), Translation::None);
        let map = a.as_object().unwrap().clone();
        let sent = Translation::Native.request(map, true);
        assert!(
            !sent.contains_key(DIALECT_FIELD),
            "the marker never goes upstream"
        );
    }

    #[test]
    fn headers_follow_the_kind() {
        let key = SecretString::from("k-1");
        let h = upstream_headers(ProviderKind::Anthropic, Some(&key)).unwrap();
        assert_eq!(h["x-api-key"], "k-1");
        assert_eq!(h["anthropic-version"], anthropic::ANTHROPIC_VERSION);
        assert!(h.get(AUTHORIZATION).is_none());
        let h = upstream_headers(ProviderKind::Openai, Some(&key)).unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer k-1");
        assert_eq!(endpoint(ProviderKind::Anthropic), "messages");
        assert!(is_message_stop(br#"{"type":"message_stop"}"#));
        assert!(!is_message_stop(br#"{"type":"ping","x":"message_stop"}"#));
    }
}
