//! The cross-origin guard, in front of every route (one `wrap` in start-up, so `/ws`, the
//! `/` upgrade, `/v1/*`, `/api/*`, `/metrics`, `/ws/dashboard` and any later surface are
//! covered without each one remembering to check).
//!
//! A browser lets any page it shows talk to `127.0.0.1`; only `Origin` tells such a page
//! apart from an SDK, curl or an editor (which send none). So, before any upgrade and before
//! any body is read:
//!
//! - **Host** (only while no `EXAI_WS_TOKEN` is set): a name other than a loopback name, the
//!   bound address or the host of an allowed origin is refused with 403. This is the DNS
//!   rebinding defence: `evil.example` re-pointed at 127.0.0.1 arrives with
//!   `Host: evil.example`. IP literals cannot be rebound; any is accepted when the bind
//!   address is unspecified (`0.0.0.0`), since exai cannot know every interface address.
//! - **Origin**: absent is fine. Otherwise it must be exai's own
//!   (`http://127.0.0.1:PORT`, `http://localhost:PORT`, `http://[::1]:PORT`, the bound
//!   address, or an IP-literal origin equal to the request's `Host`), or listed in
//!   `EXAI_ALLOWED_ORIGINS`. Anything else, `null` included, is 403.
//! - **CORS**: `Access-Control-Allow-Origin` is only ever sent for an accepted origin; its
//!   preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here.
//! - **`/v1` POSTs** must be `application/json` (415 otherwise): a page may send
//!   `text/plain` without a preflight, a JSON body under another type is not a client of
//!   this API.
//!
//! Refusals use the surface's error shape: Anthropic's on `/v1/messages`, OpenAI's on the rest of
//! `/v1`, `{"error","param"}` elsewhere.

use std::collections::HashSet;
use std::net::SocketAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::origin::{host_name, ip_literal, normalize_origin, url_host};
use crate::config::ServerConfig;

/// Headers a cross-origin page may send (answered in preflights).
pub const ALLOWED_HEADERS: &str = "authorization, content-type, x-request-id, anthropic-version, \
     anthropic-beta, x-api-key, mcp-session-id, mcp-protocol-version, mcp-method, mcp-name, \
     last-event-id, cache-control, pragma";
/// Methods a cross-origin page may use.
pub const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Response headers a cross-origin page may read.
pub const EXPOSED_HEADERS: &str = "x-exai-cache, x-exai-cache-age-ms, x-exai-provider, \
     x-request-id, mcp-session-id, retry-after";
/// How long a browser may cache a preflight answer, seconds.
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// Who may talk to exai from a browser, and under which `Host` names.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// exai's own origins (loopback names and the bound address, at the bound port).
    own: HashSet<String>,
    /// `EXAI_ALLOWED_ORIGINS`.
    listed: HashSet<String>,
    /// Accepted `Host` names; `None` when a token is configured (no Host check).
    hosts: Option<HashSet<String>>,
    /// The bind address is unspecified: any IP-literal `Host` is accepted.
    any_ip_host: bool,
}

impl OriginPolicy {
    /// The policy for a server bound to `bound` with `server`'s settings.
    pub fn new(server: &ServerConfig, bound: SocketAddr) -> Self {
        Self::with(server.token.is_some(), &server.allowed_origins, bound)
    }

    /// The policy with a token configured or not, these listed (normalised) origins, and
    /// this bound address.
    pub fn with(token: bool, allowed_origins: &[String], bound: SocketAddr) -> Self {
        let port = bound.port();
        let mut names = vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
            "[::1]".to_owned(),
        ];
        if !bound.ip().is_unspecified() {
            names.push(url_host(bound.ip()));
        }
        let own = names
            .iter()
            .filter_map(|name| normalize_origin(&format!("http://{name}:{port}")))
            .collect();
        let listed: HashSet<String> = allowed_origins.iter().cloned().collect();
        let hosts = (!token).then(|| {
            let mut hosts: HashSet<String> = names.into_iter().collect();
            for origin in &listed {
                if let Some(host) = url::Url::parse(origin)
                    .ok()
                    .and_then(|u| u.host_str().map(|h| h.to_ascii_lowercase()))
                {
                    hosts.insert(host);
                }
            }
            hosts
        });
        Self {
            own,
            listed,
            hosts,
            any_ip_host: bound.ip().is_unspecified(),
        }
    }

    /// Whether a request with this `Host` header may be served.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let (Some(hosts), Some(host)) = (&self.hosts, host) else {
            // A token is configured, or no Host at all (no browser sends none).
            return true;
        };
        let name = host_name(host);
        hosts.contains(&name)
            || ip_literal(&name).is_some_and(|ip| ip.is_loopback() || self.any_ip_host)
    }

    /// Whether a request carrying `origin` (and `host`) comes from a page allowed to use
    /// exai; `None` (no `Origin`) is always allowed.
    pub fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let Some(origin) = normalize_origin(origin) else {
            return false;
        };
        if self.own.contains(&origin) || self.listed.contains(&origin) {
            return true;
        }
        // A page exai itself served under an IP address (a LAN dashboard): same origin.
        // Names are not trusted this way, since a rebound name is "same origin" too.
        let Some(host) = host else {
            return false;
        };
        let Ok(url) = url::Url::parse(&origin) else {
            return false;
        };
        let is_ip = matches!(
            url.host(),
            Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_))
        );
        let same = normalize_origin(&format!("{}://{}", url.scheme(), host.trim()));
        is_ip && same.as_deref() == Some(origin.as_str())
    }
}

/// Which surface a request is for, to answer in its error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    /// `/v1/messages*`: Anthropic's shape.
    Anthropic,
    /// The rest of `/v1/*`: OpenAI's shape.
    V1,
    /// Everything else: `{"error", "param"}`.
    Other,
}

fn surface_of(path: &str) -> Surface {
    if path == "/v1/messages" || path.starts_with("/v1/messages/") {
        Surface::Anthropic
    } else if path == "/v1" || path.starts_with("/v1/") {
        Surface::V1
    } else {
        Surface::Other
    }
}

/// A refusal of the guard in `surface`'s error shape; `kind` is the error type, which OpenAI's
/// and Anthropic's shapes share for these refusals (`permission_error`,
/// `invalid_request_error`).
fn refuse(
    surface: Surface,
    status: StatusCode,
    kind: &str,
    code: &str,
    param: Option<&str>,
    message: &str,
) -> HttpResponse {
    match surface {
        Surface::Anthropic => HttpResponse::build(status)
            .insert_header((header::VARY, "Origin"))
            .json(json!({"type": "error", "error": {"type": kind, "message": message}})),
        Surface::V1 => refusal(status, kind, code, param, message, true),
        Surface::Other => refusal(status, kind, code, param, message, false),
    }
}

/// An error response in `surface`'s shape.
pub fn refusal(
    status: StatusCode,
    v1_type: &str,
    code: &str,
    param: Option<&str>,
    message: &str,
    v1: bool,
) -> HttpResponse {
    let body = if v1 {
        json!({"error": {"message": message, "type": v1_type, "param": param, "code": code}})
    } else {
        json!({"error": message, "param": param, "code": code})
    };
    HttpResponse::build(status)
        .insert_header((header::VARY, "Origin"))
        .json(body)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    // A header that is not text cannot name anything exai knows.
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"))
}

/// Whether `content-type` names JSON (`application/json`, parameters allowed).
fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// The CORS headers for an accepted origin.
fn add_cors(headers: &mut HeaderMap, origin: &str) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware: see the module docs. Needs `web::Data<OriginPolicy>` in the app.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(policy) = req.app_data::<web::Data<OriginPolicy>>().cloned() else {
        // Not wired with a policy (unit tests of single routes): nothing to enforce.
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let surface = surface_of(req.path());
    let v1 = surface != Surface::Other;
    let headers = req.headers();
    let host = header_str(headers, header::HOST);
    let origin = header_str(headers, header::ORIGIN).map(str::to_owned);
    if !policy.host_allowed(host) {
        let message = format!(
            "Host {:?} is not a name of this server; set EXAI_WS_TOKEN or list its origin in \
             EXAI_ALLOWED_ORIGINS to serve other names",
            host.unwrap_or_default()
        );
        let response = refuse(
            surface,
            StatusCode::FORBIDDEN,
            "permission_error",
            "forbidden_host",
            None,
            &message,
        );
        return Ok(req.into_response(response).map_into_right_body());
    }
    if !policy.origin_allowed(origin.as_deref(), host) {
        let message = format!(
            "cross-origin request refused: origin {:?} is not allowed (EXAI_ALLOWED_ORIGINS)",
            origin.as_deref().unwrap_or_default()
        );
        let response = refuse(
            surface,
            StatusCode::FORBIDDEN,
            "permission_error",
            "forbidden_origin",
            None,
            &message,
        );
        return Ok(req.into_response(response).map_into_right_body());
    }
    if let Some(origin) = &origin
        && req.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut response = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOWED_HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE))
            .finish();
        add_cors(response.headers_mut(), origin);
        return Ok(req.into_response(response).map_into_right_body());
    }
    if v1 && req.method() == Method::POST && !is_json(header_str(headers, header::CONTENT_TYPE)) {
        let mut response = refuse(
            surface,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            Some("content-type"),
            "request body must be JSON: send Content-Type: application/json",
        );
        if let Some(origin) = &origin {
            add_cors(response.headers_mut(), origin);
        }
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    if let Some(origin) = &origin {
        add_cors(response.headers_mut(), origin);
    }
    Ok(response.map_into_left_body())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(token: bool, bound: &str, listed: &[&str]) -> OriginPolicy {
        let listed: Vec<String> = listed
            .iter()
            .map(|o| normalize_origin(o).unwrap())
            .collect();
        OriginPolicy::with(token, &listed, bound.parse().unwrap())
    }

    #[test]
    fn own_listed_and_foreign_origins() {
        let p = policy(false, "127.0.0.1:8079", &["https://app.example"]);
        let ok = |o: Option<&str>, host: &str| p.origin_allowed(o, Some(host));
        assert!(ok(None, "127.0.0.1:8079"));
        for own in [
            "http://127.0.0.1:8079",
            "http://localhost:8079",
            "http://[::1]:8079",
            "https://app.example",
        ] {
            assert!(ok(Some(own), "127.0.0.1:8079"), "{own}");
        }
        for foreign in [
            "http://evil.example",
            "http://127.0.0.1:9999",
            "null",
            "https://app.example:444",
            "http://localhost:8079.evil.example",
        ] {
            assert!(!ok(Some(foreign), "127.0.0.1:8079"), "{foreign}");
        }
        // An IP-literal page exai served itself is same-origin; a name is not.
        assert!(ok(Some("http://10.1.2.3:8079"), "10.1.2.3:8079"));
        assert!(!ok(Some("http://evil.example:8079"), "evil.example:8079"));
    }

    #[test]
    fn hosts_are_checked_only_without_a_token() {
        let p = policy(false, "127.0.0.1:8079", &["https://app.example"]);
        for good in [
            "127.0.0.1:8079",
            "localhost",
            "LOCALHOST:8079",
            "[::1]:8079",
            "app.example",
            "127.0.0.2:8079",
        ] {
            assert!(p.host_allowed(Some(good)), "{good}");
        }
        for bad in [
            "evil.example:8079",
            "10.0.0.1:8079",
            "localhost.evil.example",
        ] {
            assert!(!p.host_allowed(Some(bad)), "{bad}");
        }
        assert!(policy(true, "127.0.0.1:8079", &[]).host_allowed(Some("evil.example")));
        let public = policy(false, "0.0.0.0:8079", &[]);
        assert!(public.host_allowed(Some("192.168.1.5:8079")));
        assert!(!public.host_allowed(Some("evil.example")));
        let bound = policy(false, "10.0.0.1:8079", &[]);
        assert!(bound.host_allowed(Some("10.0.0.1:8079")));
        assert!(bound.origin_allowed(Some("http://10.0.0.1:8079"), None));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/jsonx")));
        assert!(!is_json(None));
    }
}
