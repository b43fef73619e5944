//! Prices of models, in USD per million tokens, and the cost of one call (issue 17 §2).
//!
//! The table is the built-in [`DEFAULT_PRICES`] overlaid by `[prices]` in `exai.toml`, then by
//! `EXAI_PRICES` (`model=in/out[/cached];model2=…`, [`parse_env`]); the configuration reads
//! both (`src/config/`). A model without a price has no cost:
//! `cost_usd` is absent from its `request` events, never 0.
//!
//! The built-in figures are the providers' list prices for the Kimi, GLM and OpenAI models
//! the README names, as read on [`DEFAULT_PRICES_READ_ON`]. Providers change their prices;
//! check them against the providers' pricing pages (docs/configuration.md says where) and
//! override what differs.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use exai_actors::pipeline::request::Tokens;

/// When the built-in prices were read (from the providers' public price lists).
pub const DEFAULT_PRICES_READ_ON: &str = "2025-11-01";
/// The environment variable holding price overrides.
pub const PRICES_ENV: &str = "EXAI_PRICES";
/// Tokens per priced unit.
const PER: f64 = 1_000_000.0;

/// The price of one model, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Prompt tokens not served from the provider's prompt cache.
    pub input: f64,
    /// Generated tokens.
    pub output: f64,
    /// Prompt tokens served from the provider's prompt cache; `input` when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
}

impl Price {
    const fn new(input: f64, output: f64, cached_input: f64) -> Self {
        Self {
            input,
            output,
            cached_input: Some(cached_input),
        }
    }

    /// The cost of `tokens` at this price. Cached tokens are part of the prompt tokens (as
    /// OpenAI, Kimi and GLM count them) and are charged at `cached_input`.
    pub fn cost(&self, tokens: Tokens) -> f64 {
        let cached = tokens.cached.unwrap_or(0).min(tokens.prompt);
        let fresh = tokens.prompt - cached;
        (fresh as f64 * self.input
            + cached as f64 * self.cached_input.unwrap_or(self.input)
            + tokens.completion as f64 * self.output)
            / PER
    }

    /// Why the price cannot be used, if it cannot (negative or not finite).
    pub fn problem(&self) -> Option<&'static str> {
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        if !valid(self.input) || !valid(self.output) || !self.cached_input.is_none_or(valid) {
            return Some("prices must be finite numbers of at least 0");
        }
        None
    }
}

/// The built-in prices: `(model, input, output, cached input)`, USD per million tokens, as
/// listed by Moonshot, Z.ai and OpenAI on [`DEFAULT_PRICES_READ_ON`].
pub const DEFAULT_PRICES: &[(&str, Price)] = &[
    // Moonshot Kimi (platform.moonshot.ai pricing).
    ("kimi-k2-0905-preview", Price::new(0.60, 2.50, 0.15)),
    ("kimi-k2-0711-preview", Price::new(0.60, 2.50, 0.15)),
    ("kimi-k2-turbo-preview", Price::new(1.15, 8.00, 0.15)),
    ("kimi-k2-thinking", Price::new(0.60, 2.50, 0.15)),
    ("kimi-k2-thinking-turbo", Price::new(1.15, 8.00, 0.15)),
    // Z.ai GLM (docs.z.ai pricing).
    ("glm-4.6", Price::new(0.60, 2.20, 0.11)),
    ("glm-4.5", Price::new(0.60, 2.20, 0.11)),
    ("glm-4.5-air", Price::new(0.20, 1.10, 0.03)),
    ("glm-4.5-x", Price::new(2.20, 8.90, 0.45)),
    ("glm-4.5-airx", Price::new(1.10, 4.50, 0.22)),
    ("glm-4.5-flash", Price::new(0.0, 0.0, 0.0)),
    ("glm-4.5v", Price::new(0.60, 1.80, 0.11)),
    // OpenAI (openai.com/api/pricing, standard tier).
    ("gpt-5", Price::new(1.25, 10.00, 0.125)),
    ("gpt-5-mini", Price::new(0.25, 2.00, 0.025)),
    ("gpt-5-nano", Price::new(0.05, 0.40, 0.005)),
    ("gpt-4.1", Price::new(2.00, 8.00, 0.50)),
    ("gpt-4.1-mini", Price::new(0.40, 1.60, 0.10)),
    ("gpt-4o", Price::new(2.50, 10.00, 1.25)),
    ("gpt-4o-mini", Price::new(0.15, 0.60, 0.075)),
];

/// Model → price. Cheap to share behind an `Arc`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    /// Prices by model name (canonical names, as the registry resolves them).
    prices: HashMap<String, Price>,
}

impl PriceTable {
    /// The built-in table.
    pub fn builtin() -> Self {
        Self {
            prices: DEFAULT_PRICES
                .iter()
                .map(|(model, price)| ((*model).to_owned(), *price))
                .collect(),
        }
    }

    /// This table with `prices` set (replacing those of the same models).
    pub fn with(mut self, prices: impl IntoIterator<Item = (String, Price)>) -> Self {
        self.prices.extend(prices);
        self
    }

    /// The price of `model`, if it has one.
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.prices.get(model)
    }

    /// What `tokens` of `model` cost; `None` without a price.
    pub fn cost(&self, model: &str, tokens: Tokens) -> Option<f64> {
        self.price(model).map(|p| p.cost(tokens))
    }

    /// Every price, by model name, sorted (for `check-config`).
    pub fn entries(&self) -> Vec<(&str, &Price)> {
        let mut entries: Vec<_> = self.prices.iter().map(|(m, p)| (m.as_str(), p)).collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries
    }
}

/// Parses `EXAI_PRICES`: `model=in/out[/cached]` entries separated by `;` (blank entries are
/// ignored). Every malformed entry is reported.
pub fn parse_env(text: &str) -> Result<Vec<(String, Price)>, Vec<String>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        match parse_entry(entry) {
            Ok(pair) => entries.push(pair),
            Err(p) => problems.push(format!("{PRICES_ENV}: {entry:?}: {p}")),
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// One `model=in/out[/cached]`.
fn parse_entry(entry: &str) -> Result<(String, Price), String> {
    let Some((model, figures)) = entry.split_once('=') else {
        return Err("expected model=input/output[/cached_input]".to_owned());
    };
    let model = model.trim();
    if model.is_empty() {
        return Err("the model name is empty".to_owned());
    }
    let numbers = figures
        .split('/')
        .map(|f| f.trim().parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "prices must be numbers (USD per million tokens)".to_owned())?;
    let price = match numbers.as_slice() {
        [input, output] => Price {
            input: *input,
            output: *output,
            cached_input: None,
        },
        [input, output, cached] => Price::new(*input, *output, *cached),
        _ => return Err("expected two or three prices: input/output[/cached_input]".to_owned()),
    };
    if let Some(p) = price.problem() {
        return Err(p.to_owned());
    }
    Ok((model.to_owned(), price))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tokens(prompt: u64, completion: u64, cached: Option<u64>) -> Tokens {
        Tokens {
            prompt,
            completion,
            cached,
        }
    }

    #[test]
    fn cost_charges_cached_prompt_tokens_at_their_price() {
        let price = Price::new(0.6, 2.2, 0.11);
        let cost = price.cost(tokens(1_000_000, 500_000, Some(200_000)));
        let want = 0.8 * 0.6 + 0.2 * 0.11 + 0.5 * 2.2;
        assert!((cost - want).abs() < 1e-12, "{cost} != {want}");
        let plain = Price {
            input: 1.0,
            output: 2.0,
            cached_input: None,
        };
        assert!((plain.cost(tokens(1_000_000, 0, Some(500_000))) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn later_tables_override_earlier_ones() {
        let builtin = PriceTable::builtin();
        assert!(builtin.price("glm-4.6").is_some());
        assert_eq!(builtin.cost("unpriced-model", tokens(1, 1, None)), None);
        let toml = [
            ("glm-4.6".to_owned(), Price::new(1.0, 2.0, 0.5)),
            ("local".to_owned(), Price::new(0.0, 0.0, 0.0)),
        ];
        let env = parse_env("glm-4.6=3/4; my-model=1.5/2.5/0.5;").unwrap();
        let table = builtin.with(toml).with(env);
        assert_eq!(table.price("glm-4.6").map(|p| p.input), Some(3.0));
        assert_eq!(table.price("glm-4.6").and_then(|p| p.cached_input), None);
        assert_eq!(
            table.price("my-model").and_then(|p| p.cached_input),
            Some(0.5)
        );
        assert_eq!(table.cost("local", tokens(100, 100, None)), Some(0.0));
    }

    #[test]
    fn every_bad_entry_is_reported_with_its_key() {
        assert!(Price::new(-1.0, 1.0, 0.0).problem().is_some());
        assert!(Price::new(f64::NAN, 1.0, 0.0).problem().is_some());
        assert!(Price::new(1.0, 1.0, 0.0).problem().is_none());
        let errors = parse_env("a=1;b=x/2;=1/2;c=1/2/3/4;d=1/2;e=-1/2").unwrap_err();
        assert_eq!(errors.len(), 5, "{errors:?}");
        assert!(errors.iter().all(|e| !e.contains("\"d=")), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("EXAI_PRICES: \"b=x/2\""))
        );
    }
}
