//! The built-in model catalog: what exai knows about Kimi and GLM models before asking any
//! upstream — names, aliases, context window, output limit and capabilities.
//!
//! The registry merges these entries with each provider's configured models and its
//! `GET /models` discovery. Figures are the vendors' published limits at the time of
//! writing; a discovered context window never overrides them.

use serde::Serialize;

use crate::provider::ProviderKind;

/// What a model can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Accepts images.
    pub vision: bool,
    /// Supports tool (function) calls.
    pub tools: bool,
    /// Produces separate reasoning (`reasoning_content`).
    pub thinking: bool,
}

/// One built-in model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    /// The model id, as sent upstream.
    pub id: &'static str,
    /// Which kind of provider serves it.
    pub kind: ProviderKind,
    /// Other names clients may use.
    pub aliases: &'static [&'static str],
    /// Context window in tokens.
    pub context_window: u64,
    /// Longest completion in tokens.
    pub max_output_tokens: u64,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// Tools only.
const TOOLS: Capabilities = Capabilities {
    vision: false,
    tools: true,
    thinking: false,
};
/// Tools and thinking.
const THINKING: Capabilities = Capabilities {
    vision: false,
    tools: true,
    thinking: true,
};
/// Tools and vision.
const VISION: Capabilities = Capabilities {
    vision: true,
    tools: true,
    thinking: false,
};
/// Vision and thinking.
const VISION_THINKING: Capabilities = Capabilities {
    vision: true,
    tools: true,
    thinking: true,
};

/// 8 Ki tokens.
const K8: u64 = 8_192;
/// 32 Ki tokens.
const K32: u64 = 32_768;
/// 64 Ki tokens.
const K64: u64 = 65_536;
/// 96 Ki tokens.
const K96: u64 = 98_304;
/// 128 Ki tokens.
const K128: u64 = 131_072;
/// 200 K tokens (GLM-4.6).
const K200: u64 = 204_800;
/// 256 Ki tokens.
const K256: u64 = 262_144;

/// Shorthand for a catalog row.
const fn model(
    id: &'static str,
    kind: ProviderKind,
    aliases: &'static [&'static str],
    context_window: u64,
    max_output_tokens: u64,
    capabilities: Capabilities,
) -> CatalogModel {
    CatalogModel {
        id,
        kind,
        aliases,
        context_window,
        max_output_tokens,
        capabilities,
    }
}

use ProviderKind::{Glm, Kimi};

/// Every built-in model, Kimi first, then GLM.
pub const BUILTIN: &[CatalogModel] = &[
    model(
        "kimi-k2-0905-preview",
        Kimi,
        &["kimi-k2", "kimi"],
        K256,
        K32,
        TOOLS,
    ),
    model(
        "kimi-k2-turbo-preview",
        Kimi,
        &["kimi-k2-turbo"],
        K256,
        K32,
        TOOLS,
    ),
    model("kimi-k2-0711-preview", Kimi, &[], K128, K32, TOOLS),
    model(
        "kimi-k2-thinking",
        Kimi,
        &["kimi-thinking"],
        K256,
        K32,
        THINKING,
    ),
    model(
        "kimi-k2-thinking-turbo",
        Kimi,
        &["kimi-thinking-turbo"],
        K256,
        K32,
        THINKING,
    ),
    model("kimi-latest", Kimi, &[], K128, K32, VISION),
    model(
        "kimi-thinking-preview",
        Kimi,
        &[],
        K128,
        K32,
        VISION_THINKING,
    ),
    model("moonshot-v1-8k", Kimi, &["moonshot-v1"], K8, K8, TOOLS),
    model("moonshot-v1-32k", Kimi, &[], K32, K32, TOOLS),
    model("moonshot-v1-128k", Kimi, &[], K128, K32, TOOLS),
    model("moonshot-v1-8k-vision-preview", Kimi, &[], K8, K8, VISION),
    model(
        "moonshot-v1-32k-vision-preview",
        Kimi,
        &[],
        K32,
        K32,
        VISION,
    ),
    model(
        "moonshot-v1-128k-vision-preview",
        Kimi,
        &["moonshot-vision"],
        K128,
        K32,
        VISION,
    ),
    model("glm-4.6", Glm, &["glm", "glm-latest"], K200, K128, THINKING),
    model("glm-4.5", Glm, &[], K128, K96, THINKING),
    model("glm-4.5-air", Glm, &["glm-air"], K128, K96, THINKING),
    model("glm-4.5-x", Glm, &[], K128, K96, THINKING),
    model("glm-4.5-airx", Glm, &[], K128, K96, THINKING),
    model("glm-4.5-flash", Glm, &["glm-flash"], K128, K96, THINKING),
    model(
        "glm-4.5v",
        Glm,
        &["glm-vision", "glm-4.5-vision"],
        K64,
        K32 / 2,
        VISION_THINKING,
    ),
    model("glm-4-32b-0414-128k", Glm, &[], K128, K32 / 2, TOOLS),
];

/// Built-in models served by providers of `kind`.
pub fn for_kind(kind: ProviderKind) -> impl Iterator<Item = &'static CatalogModel> {
    BUILTIN.iter().filter(move |m| m.kind == kind)
}

/// The built-in model called `name` (its id or an alias, any case).
pub fn find(name: &str) -> Option<&'static CatalogModel> {
    BUILTIN.iter().find(|m| {
        m.id.eq_ignore_ascii_case(name) || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_aliases_resolve_case_insensitively() {
        assert_eq!(find("kimi-k2").map(|m| m.id), Some("kimi-k2-0905-preview"));
        assert_eq!(
            find("KIMI-K2-0905-PREVIEW").map(|m| m.id),
            Some("kimi-k2-0905-preview")
        );
        assert_eq!(find("glm").map(|m| m.id), Some("glm-4.6"));
        assert_eq!(find("glm-vision").map(|m| m.id), Some("glm-4.5v"));
        assert!(find("gpt-4o").is_none());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<String> = BUILTIN
            .iter()
            .flat_map(|m| std::iter::once(m.id).chain(m.aliases.iter().copied()))
            .map(str::to_ascii_lowercase)
            .collect();
        let total = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), total, "an id or alias appears twice");
    }

    #[test]
    fn capabilities_are_recorded() {
        let thinking = find("kimi-k2-thinking").map(|m| m.capabilities);
        assert_eq!(thinking.map(|c| c.thinking), Some(true));
        assert_eq!(find("glm-4.5v").map(|m| m.capabilities.vision), Some(true));
        assert!(for_kind(ProviderKind::Glm).all(|m| m.id.starts_with("glm")));
        assert_eq!(for_kind(ProviderKind::Openai).count(), 0);
    }
}
