use std::collections::HashMap;

use super::*;
use crate::health::HealthBoard;
use crate::pipeline::recorder::Recorder;
use crate::provider::{ProviderKind, ProviderSettings};

fn provider(name: &str, kind: ProviderKind, models: &[&str]) -> ProviderHandle {
    let mut s = ProviderSettings::new(name, kind);
    s.base_url = "http://127.0.0.1:9/v1".into();
    s.models = models.iter().map(|m| (*m).to_owned()).collect();
    ProviderHandle::new(s, Recorder::new("t", 10), HealthBoard::new())
        .unwrap_or_else(|e| unreachable!("{e}"))
}

fn tables(settings: RegistrySettings, providers: &[ProviderHandle]) -> Tables {
    Tables::build(&settings, providers, &HashMap::new())
}

#[test]
fn builtin_entries_follow_the_provider_kind() {
    let t = tables(
        RegistrySettings::default(),
        &[
            provider("kimi", ProviderKind::Kimi, &[]),
            provider("glm", ProviderKind::Glm, &[]),
        ],
    );
    let r = t.resolve("kimi-k2");
    assert_eq!(
        r.as_ref().map(|r| r.model.as_str()),
        Some("kimi-k2-0905-preview")
    );
    assert_eq!(r.as_ref().and_then(Resolved::provider), Some("kimi"));
    assert_eq!(
        t.resolve("GLM")
            .and_then(|r| r.provider().map(str::to_owned))
            .as_deref(),
        Some("glm")
    );
    assert!(t.resolve("gpt-4o").is_none());
}

#[test]
fn auto_means_the_default_or_the_first_model() {
    let p = provider("local", ProviderKind::OpenaiCompatible, &["llama3", "qwen"]);
    let t = tables(RegistrySettings::default(), std::slice::from_ref(&p));
    assert_eq!(
        t.resolve("auto").map(|r| r.model).as_deref(),
        Some("llama3")
    );
    let t = tables(
        RegistrySettings {
            default_model: Some("qwen".into()),
            ..RegistrySettings::default()
        },
        &[p],
    );
    assert_eq!(t.resolve("AUTO").map(|r| r.model).as_deref(), Some("qwen"));
}

#[test]
fn a_configured_catalog_model_keeps_its_metadata_and_several_providers_share_a_name() {
    let a = provider("a", ProviderKind::OpenaiCompatible, &["glm-4.5-air"]);
    let b = provider("b", ProviderKind::Glm, &[]);
    let t = tables(RegistrySettings::default(), &[a, b]);
    let r = t.resolve("glm-air");
    let providers: Vec<_> = r
        .map(|r| {
            r.targets
                .iter()
                .map(|t| t.provider.name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        providers,
        vec!["a", "b"],
        "registration order is preference order"
    );
    let listing = t.listings();
    let entry = listing
        .iter()
        .find(|m| m.provider == "a" && m.id == "glm-4.5-air");
    assert_eq!(entry.map(|e| e.source), Some(ModelSource::Configured));
    assert_eq!(entry.and_then(|e| e.context_window), Some(131_072));
}

#[test]
fn provider_prefix_routes_any_model_to_that_provider() {
    let t = tables(
        RegistrySettings::default(),
        &[provider("ollama", ProviderKind::OpenaiCompatible, &[])],
    );
    let r = t.resolve("ollama/llama3.1:8b");
    assert_eq!(
        r.as_ref().map(|r| r.targets[0].upstream_model.as_str()),
        Some("llama3.1:8b")
    );
    assert!(t.resolve("other/llama3").is_none());
}

#[test]
fn configured_aliases_win_and_unknown_claude_names_take_the_default() {
    let p = provider("local", ProviderKind::OpenaiCompatible, &["llama3", "qwen"]);
    let mut aliases = HashMap::new();
    aliases.insert("Claude-Sonnet-4-5".to_owned(), "qwen".to_owned());
    aliases.insert("llama3".to_owned(), "qwen".to_owned());
    let settings = RegistrySettings {
        aliases,
        ..RegistrySettings::default()
    };
    let t = tables(settings.clone(), std::slice::from_ref(&p));
    let model = |t: &Tables, m: &str| t.resolve(m).map(|r| r.model);
    assert_eq!(model(&t, "claude-sonnet-4-5").as_deref(), Some("qwen"));
    assert_eq!(
        model(&t, "claude-sonnet-4-5-20250929").as_deref(),
        Some("qwen"),
        "a dated snapshot name takes its undated alias"
    );
    assert_eq!(
        model(&t, "llama3").as_deref(),
        Some("qwen"),
        "a configured alias wins"
    );
    assert_eq!(model(&t, "claude-haiku-4-5"), None, "no default configured");
    let listing = t.listings();
    assert!(
        listing
            .iter()
            .any(|m| m.id == "qwen" && m.aliases.contains(&"llama3".to_owned()))
    );
    let t = tables(
        RegistrySettings {
            default_model: Some("llama3".into()),
            ..settings
        },
        &[p],
    );
    assert_eq!(
        t.resolve("claude-haiku-4-5")
            .map(|r| r.targets[0].upstream_model.clone())
            .as_deref(),
        Some("llama3"),
        "the fallback skips configured aliases"
    );
    assert_eq!(model(&t, "gpt-x"), None, "only claude-* names fall back");
}

#[test]
fn fallback_chains_match_case_insensitively() {
    let mut fallbacks = HashMap::new();
    fallbacks.insert("Kimi-K2".to_owned(), vec!["glm".to_owned()]);
    let t = tables(
        RegistrySettings {
            fallbacks,
            ..RegistrySettings::default()
        },
        &[],
    );
    assert_eq!(
        t.fallbacks("kimi-k2", "kimi-k2-0905-preview"),
        ["glm".to_owned()]
    );
    assert!(t.fallbacks("other", "other").is_empty());
}
