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

/// The token a request carries: `Authorization: Bearer …`, else `?token=…`.
pub fn request_token(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION);
    if let Some(token) = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(token.trim().to_owned());
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
}
