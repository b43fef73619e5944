//! The start-up summary: one line per provider, one for the store and one for Redis, so the
//! first lines of a run say what it will talk to. Nothing here names a secret: URLs lose
//! their credentials and keep only the host.

use secrecy::ExposeSecret;

use crate::config::Config;

/// Logs the summary at `info`, and warns when no provider is configured.
pub fn log_startup_summary(config: &Config) {
    if config.providers.is_empty() {
        tracing::warn!(
            "no provider configured: every chat call will fail; set CUSTOM_API_URL, KIMI_API_KEY, \
             GLM_API_KEY or OPENAI_API_KEY, or add [[providers]] to exai.toml (try `exai mock-upstream`)"
        );
    }
    for p in &config.providers {
        let builtin = exai_actors::registry::catalog::for_kind(p.kind).count();
        tracing::info!(
            provider = %p.name,
            kind = p.kind.as_str(),
            host = %url_host(&p.base_url),
            models = p.models.len() + builtin,
            simulated = p.simulated,
            "provider configured"
        );
    }
    tracing::info!(store = %store_label(config.database_url.expose_secret()), "event store");
    match &config.cache.redis_url {
        Some(url) if config.cache.enabled => {
            tracing::info!(redis = %url_host(url.expose_secret()), "cache L2: Redis")
        }
        _ => tracing::info!("cache L2: none (REDIS_URL unset); L1 in memory only"),
    }
}

/// `host[:port]` of a URL, or `[unparsable]`.
fn url_host(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => u.scheme().to_owned(),
        },
        Err(_) => "[unparsable]".to_owned(),
    }
}

/// `sqlite <path>` or `postgres <host>/<database>`, never credentials.
fn store_label(url: &str) -> String {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        return format!("sqlite {path}");
    }
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{} {}{}",
            u.scheme(),
            url_host(url),
            u.path().trim_end_matches('/')
        ),
        Err(_) => "[unparsable]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{store_label, url_host};

    #[test]
    fn labels_keep_hosts_and_drop_credentials() {
        assert_eq!(
            url_host("https://user:pw@api.z.ai/api/paas/v4?key=x"),
            "api.z.ai"
        );
        assert_eq!(url_host("http://127.0.0.1:9000/v1"), "127.0.0.1:9000");
        assert_eq!(store_label("sqlite://data/exai.db"), "sqlite data/exai.db");
        assert_eq!(
            store_label("postgres://u:secret@db.example:5432/exai"),
            "postgres db.example:5432/exai"
        );
        assert!(!store_label("postgres://u:secret@h/db").contains("secret"));
    }
}
