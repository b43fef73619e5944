#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::Value;

use super::env::{ENV_PROVIDERS, SETTINGS};
use super::raw::{
    PROVIDER_KEYS, RawCache, RawFile, RawLog, RawMetrics, RawProvider, RawRegistry, RawServer,
    RawStorage, RawSupervisor, RawTools, RawUpstream, fields_of, syntax_error,
};
use super::*;

fn load(env: &[(&str, &str)], toml_text: Option<&str>) -> Result<Config, Vec<ConfigError>> {
    let dir = tempfile::tempdir().unwrap();
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.entry("EXAI_DATA_DIR".into())
        .or_insert_with(|| dir.path().join("data").display().to_string());
    let file = toml_text.map(|t| {
        (
            PathBuf::from("exai.toml"),
            t.parse::<toml::Table>().unwrap(),
        )
    });
    Config::from_sources(&Sources { file, env }, &CliOverrides::default())
}

fn keys(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

/// `exai.toml` text setting dotted `key` to `value`.
fn toml_with(key: &str, value: &str) -> String {
    match key.split_once('.') {
        Some((section, field)) => format!("[{section}]\n{field} = {value}\n"),
        None => format!("{key} = {value}\n"),
    }
}

#[test]
fn the_committed_configuration_docs_are_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == docs::markdown(),
        "docs/configuration.md is not what the settings table renders; regenerate it with `{}`",
        docs::REGENERATE
    );
}

#[test]
fn every_setting_is_read_from_its_own_toml_key() {
    for entry in SETTINGS {
        let key = entry.key();
        if key == "storage.data_dir" {
            continue; // `load` sets EXAI_DATA_DIR, which wins
        }
        let text = toml_with(key, "{ probe = 1 }");
        let errors = load(&[], Some(&text)).err().unwrap_or_default();
        assert!(
            errors
                .iter()
                .any(|e| (e.key == key || e.key.starts_with(&format!("{key}.")))
                    && !e.message.contains("unknown key")),
            "{key}: a bad value there was not reported as {key}'s: {errors:?}"
        );
    }
}

#[test]
fn the_table_and_the_raw_sections_declare_the_same_keys() {
    let sections: [(&str, &[&str]); 9] = [
        ("server", fields_of::<RawServer>()),
        ("storage", fields_of::<RawStorage>()),
        ("log", fields_of::<RawLog>()),
        ("supervisor", fields_of::<RawSupervisor>()),
        ("metrics", fields_of::<RawMetrics>()),
        ("cache", fields_of::<RawCache>()),
        ("registry", fields_of::<RawRegistry>()),
        ("tools", fields_of::<RawTools>()),
        ("upstream", fields_of::<RawUpstream>()),
    ];
    let declared: HashSet<String> = sections
        .iter()
        .flat_map(|(s, fields)| fields.iter().map(move |f| format!("{s}.{f}")))
        .chain(["instance".to_owned(), "prices".to_owned()])
        .collect();
    let tabled: HashSet<String> = SETTINGS.iter().map(|e| e.key().to_owned()).collect();
    assert_eq!(declared, tabled);
    assert_eq!(tabled.len(), SETTINGS.len(), "a key is in the table twice");
    let top: HashSet<&str> = fields_of::<RawFile>().iter().copied().collect();
    let expected: HashSet<&str> = sections
        .iter()
        .map(|(s, _)| *s)
        .chain(["instance", "providers", "prices"])
        .collect();
    assert_eq!(top, expected);
}

#[test]
fn environment_names_map_to_one_key_each() {
    let mut seen = HashSet::new();
    let names = SETTINGS
        .iter()
        .flat_map(|e| e.env().iter().copied())
        .chain(
            ENV_PROVIDERS
                .iter()
                .flat_map(|p| p.api_key.iter().copied().chain([p.base_url])),
        )
        .chain([env::CUSTOM_MODEL_NAME, CONFIG_FILE_ENV]);
    for name in names {
        assert!(seen.insert(name), "{name} is in the table twice");
    }
    assert!(seen.contains("DATABASE_URL") && seen.contains("MOONSHOT_API_KEY"));
}

#[test]
fn documented_defaults_are_the_effective_defaults() {
    let shown = load(&[], None).unwrap().redacted();
    for entry in SETTINGS {
        let Some(default) = entry.default_shown() else {
            continue;
        };
        if entry.key() == "storage.data_dir" {
            continue; // the test sets it
        }
        let at = entry
            .key()
            .split('.')
            .fold(&shown, |node, part| &node[part]);
        assert_eq!(at, &default, "{}", entry.key());
    }
    assert_eq!(shown["supervisor"]["check_interval_ms"], 200);
    assert_eq!(shown["metrics"]["buffer_size"], 50);
    assert_eq!(shown["cache"]["ttl_s"], 600.0);
}

#[test]
fn check_config_shows_every_provider_key_and_only_those() {
    let c = load(&[("KIMI_API_KEY", "sk-kimi-secret")], None).unwrap();
    let shown = c.redacted();
    let provider = shown["providers"][0].as_object().unwrap();
    let mut shown_keys: Vec<&str> = provider.keys().map(String::as_str).collect();
    let mut raw_keys: Vec<&str> = fields_of::<RawProvider>().to_vec();
    let mut doc_keys: Vec<&str> = PROVIDER_KEYS.iter().map(|k| k.key).collect();
    shown_keys.sort_unstable();
    raw_keys.sort_unstable();
    doc_keys.sort_unstable();
    assert_eq!(shown_keys, raw_keys);
    assert_eq!(doc_keys, raw_keys);
    assert_eq!(provider["api_key"], "[redacted]");
}

#[test]
fn the_access_log_is_off_unless_asked_for() {
    assert!(!load(&[], None).unwrap().log.access_log);
    assert!(
        load(&[("EXAI_ACCESS_LOG", "true")], None)
            .unwrap()
            .log
            .access_log
    );
    let c = load(&[], Some("[log]\naccess_log = true\n")).unwrap();
    assert!(c.log.access_log);
    assert_eq!(c.redacted()["log"]["access_log"], true);
    let errors = load(&[("EXAI_ACCESS_LOG", "sometimes")], None).unwrap_err();
    assert_eq!(keys(&errors), vec!["EXAI_ACCESS_LOG"]);
}

#[test]
fn legacy_names_are_read_after_the_exai_ones() {
    let c = load(
        &[
            ("DATABASE_URL", "postgres://h/legacy"),
            ("DEFAULT_MODEL", "legacy-model"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(c.database_url.expose_secret(), "postgres://h/legacy");
    assert_eq!(c.registry.default_model.as_deref(), Some("legacy-model"));
    let c = load(
        &[
            ("EXAI_DATABASE_URL", "sqlite:///tmp/x.db"),
            ("DATABASE_URL", "postgres://h/legacy"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(c.database_url.expose_secret(), "sqlite:///tmp/x.db");
}

#[test]
fn a_toml_syntax_error_names_line_column_and_key() {
    let text = "[server]\nport = 9000\nport = 9001\n";
    let e = text.parse::<toml::Table>().unwrap_err();
    let err = syntax_error(Path::new("exai.toml"), text, &e);
    assert_eq!(err.key, "exai.toml:3:1", "{err:?}");
    assert!(err.message.contains("duplicate key"), "{err:?}");
    assert!(err.message.contains("`port`"), "{err:?}");
}

#[test]
fn an_unknown_key_suggests_the_nearest_known_one() {
    let errors = load(&[], Some("[server]\nprot = 1\n[cache]\nzzzzzz = 1\n")).unwrap_err();
    let prot = errors.iter().find(|e| e.key == "server.prot").unwrap();
    assert!(prot.message.contains("did you mean `port`?"), "{prot:?}");
    let far = errors.iter().find(|e| e.key == "cache.zzzzzz").unwrap();
    assert!(!far.message.contains("did you mean"), "{far:?}");
    let errors = load(
        &[],
        Some("[[providers]]\nkind = \"openai_compatible\"\nbase_url = \"http://h/v1\"\nbase_ulr = 1\n"),
    )
    .unwrap_err();
    let typo = errors
        .iter()
        .find(|e| e.key == "providers[0].base_ulr")
        .unwrap();
    assert!(
        typo.message.contains("did you mean `base_url`?"),
        "{typo:?}"
    );
    let errors = load(&[], Some("sever = 1\n[registry]\ncache_ttl = 1\n")).unwrap_err();
    assert_eq!(keys(&errors), vec!["registry.cache_ttl", "sever"]);
    assert!(errors[0].message.contains("`cache_ttl_s`"), "{errors:?}");
    assert!(errors[1].message.contains("`server`"), "{errors:?}");
}

#[test]
fn defaults_are_sane() {
    let c = load(&[], None).unwrap();
    assert_eq!(c.server.port, 8079);
    assert_eq!(c.server.host.to_string(), "127.0.0.1");
    assert_eq!(c.server.session_max_inflight, 8);
    assert_eq!(c.server.global_max_inflight, 24);
    assert_eq!(c.server.max_pending_hello, 250);
    assert_eq!(c.metrics.batch_size, 50);
    assert!(c.database_url.expose_secret().starts_with("sqlite://"));
    assert!(c.providers.is_empty());
}

#[test]
fn collects_every_problem_with_its_key() {
    let errors = load(
        &[
            ("EXAI_WS_PORT", "99999"),
            ("EXAI_WS_TOKEN", "short"),
            ("EXAI_WS_SESSION_MAX_INFLIGHT", "8"),
            ("EXAI_WS_GLOBAL_MAX_INFLIGHT", "8"),
            ("KIMI_API_URL", "not a url"),
        ],
        Some("bogus = 1\n[server]\nnope = true\n"),
    )
    .unwrap_err();
    let k = keys(&errors);
    for expected in [
        "EXAI_WS_PORT",
        "EXAI_WS_TOKEN",
        "EXAI_WS_GLOBAL_MAX_INFLIGHT",
        "KIMI_API_URL",
        "bogus",
        "server.nope",
    ] {
        assert!(k.contains(&expected), "{expected} missing from {k:?}");
    }
}

#[test]
fn env_overrides_file() {
    let c = load(&[("EXAI_WS_PORT", "9000")], Some("[server]\nport = 8100\n")).unwrap();
    assert_eq!(c.server.port, 9000);
    let c = load(&[], Some("[server]\nport = 8100\n")).unwrap();
    assert_eq!(c.server.port, 8100);
}

#[test]
fn non_loopback_without_token_is_refused_unless_allowed() {
    let errors = load(&[("EXAI_WS_HOST", "0.0.0.0")], None).unwrap_err();
    assert_eq!(keys(&errors), vec!["EXAI_WS_HOST"]);
    assert!(
        load(
            &[("EXAI_WS_HOST", "0.0.0.0"), ("EXAI_ALLOW_NO_AUTH", "true")],
            None
        )
        .is_ok()
    );
    assert!(
        load(
            &[
                ("EXAI_WS_HOST", "0.0.0.0"),
                ("EXAI_WS_TOKEN", "0123456789abcdef")
            ],
            None
        )
        .is_ok()
    );
}

#[test]
fn providers_from_original_env_names() {
    let c = load(
        &[
            ("MOONSHOT_API_KEY", "sk-moonshot-secret-value"),
            ("ZHIPUAI_API_KEY", "zhipu-secret"),
            ("CUSTOM_API_URL", "http://127.0.0.1:11434/v1"),
            ("CUSTOM_MODEL_NAME", "llama3"),
        ],
        None,
    )
    .unwrap();
    let names: Vec<_> = c.providers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["kimi", "glm", "custom"]);
    assert_eq!(c.providers[0].base_url, "https://api.moonshot.ai/v1");
    assert_eq!(c.providers[2].models, vec!["llama3"]);
    let shown = c.redacted().to_string();
    assert!(!shown.contains("sk-moonshot-secret-value"));
    assert!(!shown.contains("zhipu-secret"));
    assert!(shown.contains("[redacted]"));
    let errors = load(&[("CUSTOM_API_KEY", "k"), ("CUSTOM_MODEL_NAME", "m")], None).unwrap_err();
    assert_eq!(keys(&errors), vec!["CUSTOM_API_KEY", "CUSTOM_MODEL_NAME"]);
    assert!(errors[1].message.contains("CUSTOM_API_URL"), "{errors:?}");
}

#[test]
fn model_aliases_come_from_toml_and_env_and_anthropic_is_a_kind() {
    let c = load(
        &[(
            "EXAI_MODEL_ALIASES",
            "claude-sonnet-4-5=glm-4.6, claude-haiku-4-5=kimi-k2-turbo",
        )],
        Some(
            "[registry.aliases]\n\"claude-sonnet-4-5\" = \"x\"\nbig = \"kimi-k2\"\n\n\
             [[providers]]\nkind = \"anthropic\"\napi_key = \"k\"\n",
        ),
    )
    .unwrap();
    let a = &c.registry.aliases;
    assert_eq!(a["claude-sonnet-4-5"], "glm-4.6", "the environment wins");
    assert_eq!(a["claude-haiku-4-5"], "kimi-k2-turbo");
    assert_eq!(a["big"], "kimi-k2");
    assert_eq!(c.providers[0].kind, ProviderKind::Anthropic);
    assert_eq!(c.providers[0].base_url, "https://api.anthropic.com/v1");
    let errors = load(&[("EXAI_MODEL_ALIASES", "nope")], None).unwrap_err();
    assert!(keys(&errors).contains(&"EXAI_MODEL_ALIASES"));
}

#[test]
fn fallback_chains_merge_toml_and_env() {
    let c = load(
        &[("EXAI_FALLBACK", "a=x,y;b=z")],
        Some("[registry.fallback]\na = [\"t\"]\nc = [\"u\", \"v\"]\n"),
    )
    .unwrap();
    let f = &c.registry.fallback;
    assert_eq!(f["a"], vec!["x", "y"], "the environment wins");
    assert_eq!(f["b"], vec!["z"]);
    assert_eq!(f["c"], vec!["u", "v"]);
    let errors = load(
        &[("EXAI_FALLBACK", "nope")],
        Some("[registry.fallback]\nq = []\n"),
    )
    .unwrap_err();
    assert_eq!(keys(&errors), vec!["registry.fallback.q", "EXAI_FALLBACK"]);
}

#[test]
fn toml_providers_are_validated() {
    let errors = load(
        &[],
        Some(
            "[[providers]]\nkind = \"openai_compatible\"\n\n[[providers]]\nkind = \"nope\"\n\n\
             [[providers]]\nkind = \"glm\"\nbase_url = \"::\"\nextra = 1\n\n\
             [[providers]]\nkind = \"kimi\"\nmax_concurrency = 0\n\n\
             [[providers]]\nkind = \"kimi\"\n",
        ),
    )
    .unwrap_err();
    assert_eq!(
        keys(&errors),
        vec![
            "providers[0].base_url",
            "providers[1].kind",
            "providers[2].extra",
            "providers[2].base_url",
            "providers[3].max_concurrency",
            "providers[4].name",
        ]
    );
}

#[test]
fn toml_providers_keep_every_setting() {
    let c = load(
        &[],
        Some(
            "[[providers]]\nname = \"local\"\nkind = \"custom\"\nbase_url = \"http://h/v1\"\n\
             api_key = \"sk-local\"\nmodels = [\"m\"]\nmax_concurrency = 3\nmax_queue = 0\n\
             connect_timeout_s = 1\nrequest_timeout_s = 2.5\nstream_idle_timeout_s = 3\n\
             max_retries = 1\nsimulated = true\n",
        ),
    )
    .unwrap();
    let p = &c.providers[0];
    assert_eq!(
        (p.name.as_str(), p.kind, p.base_url.as_str()),
        ("local", ProviderKind::OpenaiCompatible, "http://h/v1")
    );
    assert_eq!(p.api_key.as_ref().unwrap().expose_secret(), "sk-local");
    assert_eq!((p.max_concurrency, p.max_queue, p.max_retries), (3, 0, 1));
    assert_eq!(p.connect_timeout, Duration::from_secs(1));
    assert_eq!(p.request_timeout, Duration::from_millis(2500));
    assert_eq!(p.stream_idle_timeout, Duration::from_secs(3));
    assert!(p.simulated && p.models == ["m"]);
    assert_eq!(c.redacted()["providers"][0]["stream_max_s"], 2.5);
}

#[test]
fn upstream_limits_are_read_and_checked() {
    let c = load(&[], None).unwrap();
    assert_eq!(c.upstream.max_bytes, 32 * 1024 * 1024);
    assert_eq!(c.upstream.sse_max_event_bytes, 4 * 1024 * 1024);
    let c = load(
        &[("EXAI_UPSTREAM_MAX_BYTES", "1000")],
        Some(
            "[upstream]\nsse_max_event_bytes = 500\n[[providers]]\nkind = \"glm\"\n\
             request_timeout_s = 7\nstream_max_s = 3\n",
        ),
    )
    .unwrap();
    assert_eq!(c.upstream.max_bytes, 1000);
    assert_eq!(c.upstream.sse_max_event_bytes, 500);
    assert_eq!(c.providers[0].stream_max, Some(Duration::from_secs(3)));
    assert_eq!(c.redacted()["providers"][0]["stream_max_s"], 3.0);
    let errors = load(&[("EXAI_SSE_MAX_EVENT_BYTES", "0")], None).unwrap_err();
    assert_eq!(keys(&errors), vec!["EXAI_SSE_MAX_EVENT_BYTES"]);
}

#[test]
fn unwritable_data_dir_is_reported() {
    let errors = load(&[("EXAI_DATA_DIR", "/proc/exai-cannot-write-here")], None).unwrap_err();
    assert_eq!(keys(&errors), vec!["EXAI_DATA_DIR"]);
}

#[test]
fn secrets_are_redacted_and_urls_lose_their_credentials() {
    let c = load(
        &[
            ("EXAI_WS_TOKEN", "token-LEAK-0123456789"),
            ("EXAI_DATABASE_URL", "postgres://u:db-LEAK@h/x"),
            ("REDIS_URL", "redis://:redis-LEAK@h:6379"),
        ],
        None,
    )
    .unwrap();
    let shown = c.redacted();
    assert!(!shown.to_string().contains("LEAK"), "{shown}");
    assert_eq!(shown["server"]["token"], "[redacted]");
    assert_eq!(shown["server"]["dashboard_token"], Value::Null);
    assert_eq!(
        shown["storage"]["database_url"],
        "postgres://u:REDACTED@h/x"
    );
    assert_eq!(shown["cache"]["redis_url"], "redis://:REDACTED@h:6379");
}
