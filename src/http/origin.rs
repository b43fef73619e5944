//! Origins and host names as the guard compares them: normalised origins (also used to check
//! `EXAI_ALLOWED_ORIGINS` in configuration), the host part of a `Host` header, IP literals.

use std::net::IpAddr;

/// `scheme://host[:port]` of an origin, lower-cased, the default port left out; `None` for
/// anything that is not an `http(s)` origin (a path, a query, `null`).
pub fn normalize_origin(text: &str) -> Option<String> {
    let url = url::Url::parse(text.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return None;
    }
    let serialized = url.origin().ascii_serialization();
    (serialized != "null").then_some(serialized)
}

/// The host part of a `Host` header (`[::1]` keeps its brackets), lower-cased, with any
/// port and trailing dot removed.
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The IP address a host name spells, if it is an IP literal.
pub fn ip_literal(name: &str) -> Option<IpAddr> {
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// How a bound IP is written in a URL or a `Host` header.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            normalize_origin("HTTP://LocalHost:80").as_deref(),
            Some("http://localhost")
        );
        assert_eq!(
            normalize_origin("https://a.example:8443/").as_deref(),
            Some("https://a.example:8443")
        );
        for bad in [
            "null",
            "file:///x",
            "https://a.example/path",
            "a.example",
            "",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }
}
