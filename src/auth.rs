//! Token checks, in one place: the client token (`EXAI_WS_TOKEN`) for `/ws` and `/v1`, and
//! the read-only dashboard token (`EXAI_DASHBOARD_TOKEN`) for the dashboard, its stream and
//! `/api`. Comparisons are constant-time.

use actix_web::HttpRequest;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// Whether `given` equals `expected`, in time independent of where they differ.
pub fn token_matches(expected: &SecretString, given: &str) -> bool {
    let expected = expected.expose_secret().as_bytes();
    let given = given.as_bytes();
    // Length is not secret (tokens have a public minimum); contents are.
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

/// The credentials of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110 §11.1).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token of a request's `Authorization: Bearer …` header, if it has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
}

/// The token a request carries: `Authorization: Bearer …`, else `?token=…`.
pub fn request_token(req: &HttpRequest) -> Option<String> {
    if let Some(token) = bearer_token(req) {
        return Some(token.to_owned());
    }
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// Whether a request may read the dashboard and `/api`: always when no dashboard token is
/// configured, otherwise only with that token.
pub fn dashboard_allowed(expected: Option<&SecretString>, req: &HttpRequest) -> bool {
    match expected {
        None => true,
        Some(expected) => request_token(req).is_some_and(|t| token_matches(expected, &t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_tokens() {
        let t = SecretString::from("0123456789abcdef".to_owned());
        assert!(token_matches(&t, "0123456789abcdef"));
        assert!(!token_matches(&t, "0123456789abcdeX"));
        assert!(!token_matches(&t, "0123456789abcdef0"));
        assert!(!token_matches(&t, ""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for header in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR  abc "] {
            assert_eq!(bearer(header), Some("abc"), "{header}");
        }
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearerabc"), None);
    }
}
