//! The dashboard's client-facing figures: a sliding window of `request` events (issue 17 §4).
//!
//! Every `request` event is folded into a per-second slot; a `stats` tick reads the window
//! back as [`RequestSummary`] (rates over the last seconds, percentiles and per-model totals
//! over the whole window) and per-provider figures. Latencies go into the rollups' sparse
//! [`Histogram`], so a slot costs a few buckets, not a dense array.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::pipeline::histogram::Histogram;
use crate::pipeline::request::{RequestFacts, status_class};

/// Aggregates of one second.
#[derive(Debug, Default)]
struct Slot {
    /// Unix second.
    second: i64,
    /// Calls.
    requests: u64,
    /// Failed calls.
    errors: u64,
    /// Calls per status.
    by_status: BTreeMap<u16, u64>,
    /// Client latency, ms.
    latency: Histogram,
    /// Time to first token, ms.
    ttft: Histogram,
    /// Per resolved model.
    models: BTreeMap<String, ModelSlot>,
    /// Per answering provider.
    providers: BTreeMap<String, ProviderSlot>,
    /// Calls answered from the cache (l1, l2, coalesced).
    cache_hits: u64,
    /// Calls the cache missed.
    cache_misses: u64,
}

/// One model's calls within a slot (or the window).
#[derive(Debug, Default, Clone)]
struct ModelSlot {
    /// Calls.
    requests: u64,
    /// Failed calls.
    errors: u64,
    /// Latency, ms.
    latency: Histogram,
    /// Prompt tokens, when any call reported them.
    prompt_tokens: Option<u64>,
    /// Completion tokens, when any call reported them.
    completion_tokens: Option<u64>,
    /// Cost, when any call had one.
    cost_usd: Option<f64>,
}

/// One provider's calls within a slot.
#[derive(Debug, Default, Clone)]
struct ProviderSlot {
    /// Calls it answered (or failed).
    requests: u64,
    /// Failed calls.
    errors: u64,
    /// Latency, ms.
    latency: Histogram,
}

/// Adds an optional count to an optional sum.
fn add_opt<T: std::ops::Add<Output = T> + Copy>(sum: Option<T>, v: Option<T>) -> Option<T> {
    match (sum, v) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// One model in [`RequestSummary::models`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    /// Calls.
    pub requests: u64,
    /// Failed calls.
    pub errors: u64,
    /// 95th percentile latency, ms.
    pub p95_ms: Option<f64>,
    /// Prompt tokens reported.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens reported.
    pub completion_tokens: Option<u64>,
    /// Cost at the configured prices.
    pub cost_usd: Option<f64>,
}

/// The `requests` section of a dashboard `stats` tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestSummary {
    /// Calls per second over the rate window.
    pub rate: f64,
    /// Failed calls per second over the rate window.
    pub error_rate: f64,
    /// Calls per second by status class (`2xx`, `4xx`, `5xx`, …) over the rate window.
    pub by_class: BTreeMap<&'static str, f64>,
    /// Calls per second by status over the rate window.
    pub by_status: BTreeMap<String, f64>,
    /// Length of the whole window, seconds.
    pub window_s: i64,
    /// Calls in the whole window.
    pub window_requests: u64,
    /// Failed calls in the whole window.
    pub window_errors: u64,
    /// Client latency percentiles over the whole window, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Time-to-first-token percentiles over the whole window, ms.
    pub ttft_p50_ms: Option<f64>,
    /// 95th percentile.
    pub ttft_p95_ms: Option<f64>,
    /// 99th percentile.
    pub ttft_p99_ms: Option<f64>,
    /// Per resolved model (`""`: calls that resolved none), over the whole window.
    pub models: BTreeMap<String, ModelSummary>,
}

/// One provider's client-facing figures (the calls it answered or failed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderSummary {
    /// Calls per second over the rate window.
    pub rate: f64,
    /// Failed calls per second over the rate window.
    pub error_rate: f64,
    /// Calls in the whole window.
    pub requests: u64,
    /// Failed calls in the whole window.
    pub errors: u64,
    /// Latency percentiles, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// What a tick reads off the window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRead {
    /// The client-facing section.
    pub requests: RequestSummary,
    /// Per provider.
    pub providers: BTreeMap<String, ProviderSummary>,
    /// Cache hits in the window.
    pub cache_hits: u64,
    /// Cache misses in the window.
    pub cache_misses: u64,
}

/// The sliding window of `request` events.
#[derive(Debug)]
pub struct RequestWindow {
    /// Oldest first.
    slots: VecDeque<Slot>,
    /// Window length, seconds.
    seconds: i64,
}

impl RequestWindow {
    /// A window of `seconds` (at least 1).
    pub fn new(seconds: i64) -> Self {
        Self {
            slots: VecDeque::new(),
            seconds: seconds.max(1),
        }
    }

    /// Folds one `request` event recorded at `ts_ms`.
    pub fn observe(&mut self, ts_ms: i64, facts: &RequestFacts<'_>) {
        let Some(slot) = self.slot(ts_ms.div_euclid(1000)) else {
            return;
        };
        let failed = facts.ok == Some(false);
        slot.requests += 1;
        if failed {
            slot.errors += 1;
        }
        *slot.by_status.entry(facts.status.unwrap_or(0)).or_insert(0) += 1;
        if let Some(ms) = facts.latency_ms {
            slot.latency.record(ms);
        }
        if let Some(ms) = facts.ttft_ms {
            slot.ttft.record(ms);
        }
        match facts.cache {
            Some("l1" | "l2" | "coalesced") => slot.cache_hits += 1,
            Some("miss") => slot.cache_misses += 1,
            _ => {}
        }
        let model = slot
            .models
            .entry(facts.resolved_model.unwrap_or_default().to_owned())
            .or_default();
        model.requests += 1;
        if failed {
            model.errors += 1;
        }
        if let Some(ms) = facts.latency_ms {
            model.latency.record(ms);
        }
        model.prompt_tokens = add_opt(model.prompt_tokens, facts.prompt_tokens);
        model.completion_tokens = add_opt(model.completion_tokens, facts.completion_tokens);
        model.cost_usd = add_opt(model.cost_usd, facts.cost_usd);
        if let Some(provider) = facts.provider {
            let p = slot.providers.entry(provider.to_owned()).or_default();
            p.requests += 1;
            if failed {
                p.errors += 1;
            }
            if let Some(ms) = facts.latency_ms {
                p.latency.record(ms);
            }
        }
    }

    /// Reads the window ending at `now_ms`: rates over the last `rate_window_s` complete
    /// seconds, everything else over the whole window.
    pub fn read(&mut self, now_ms: i64, rate_window_s: i64) -> WindowRead {
        let now_s = now_ms.div_euclid(1000);
        self.prune(now_s);
        let rate_window_s = rate_window_s.max(1);
        let rate_from = now_s - rate_window_s;
        let per_s = |n: u64| n as f64 / rate_window_s as f64;
        let (mut requests, mut errors, mut recent, mut recent_errors) = (0, 0, 0, 0);
        let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
        let (mut latency, mut ttft) = (Histogram::new(), Histogram::new());
        let mut models: BTreeMap<&str, ModelSlot> = BTreeMap::new();
        let mut providers: BTreeMap<&str, (ProviderSlot, u64, u64)> = BTreeMap::new();
        let (mut hits, mut misses) = (0, 0);
        for slot in &self.slots {
            let is_recent = slot.second >= rate_from && slot.second < now_s;
            requests += slot.requests;
            errors += slot.errors;
            hits += slot.cache_hits;
            misses += slot.cache_misses;
            latency.merge(&slot.latency);
            ttft.merge(&slot.ttft);
            if is_recent {
                recent += slot.requests;
                recent_errors += slot.errors;
                for (status, n) in &slot.by_status {
                    *by_status.entry(*status).or_insert(0) += n;
                }
            }
            for (name, m) in &slot.models {
                let sum = models.entry(name.as_str()).or_default();
                sum.requests += m.requests;
                sum.errors += m.errors;
                sum.latency.merge(&m.latency);
                sum.prompt_tokens = add_opt(sum.prompt_tokens, m.prompt_tokens);
                sum.completion_tokens = add_opt(sum.completion_tokens, m.completion_tokens);
                sum.cost_usd = add_opt(sum.cost_usd, m.cost_usd);
            }
            for (name, p) in &slot.providers {
                let (sum, r, e) = providers.entry(name.as_str()).or_default();
                sum.requests += p.requests;
                sum.errors += p.errors;
                sum.latency.merge(&p.latency);
                if is_recent {
                    *r += p.requests;
                    *e += p.errors;
                }
            }
        }
        let mut by_class: BTreeMap<&'static str, f64> = BTreeMap::new();
        for (status, n) in &by_status {
            *by_class.entry(status_class(*status)).or_insert(0.0) += per_s(*n);
        }
        WindowRead {
            requests: RequestSummary {
                rate: per_s(recent),
                error_rate: per_s(recent_errors),
                by_class,
                by_status: by_status
                    .iter()
                    .map(|(status, n)| (status.to_string(), per_s(*n)))
                    .collect(),
                window_s: self.seconds,
                window_requests: requests,
                window_errors: errors,
                p50_ms: latency.quantile(0.50),
                p95_ms: latency.quantile(0.95),
                p99_ms: latency.quantile(0.99),
                ttft_p50_ms: ttft.quantile(0.50),
                ttft_p95_ms: ttft.quantile(0.95),
                ttft_p99_ms: ttft.quantile(0.99),
                models: models
                    .into_iter()
                    .map(|(name, m)| {
                        (
                            name.to_owned(),
                            ModelSummary {
                                requests: m.requests,
                                errors: m.errors,
                                p95_ms: m.latency.quantile(0.95),
                                prompt_tokens: m.prompt_tokens,
                                completion_tokens: m.completion_tokens,
                                cost_usd: m.cost_usd,
                            },
                        )
                    })
                    .collect(),
            },
            providers: providers
                .into_iter()
                .map(|(name, (p, recent, recent_errors))| {
                    (
                        name.to_owned(),
                        ProviderSummary {
                            rate: per_s(recent),
                            error_rate: per_s(recent_errors),
                            requests: p.requests,
                            errors: p.errors,
                            p50_ms: p.latency.quantile(0.50),
                            p95_ms: p.latency.quantile(0.95),
                            p99_ms: p.latency.quantile(0.99),
                        },
                    )
                })
                .collect(),
            cache_hits: hits,
            cache_misses: misses,
        }
    }

    /// The slot for `second` (events from an earlier second than the newest join the
    /// newest: clock skew).
    fn slot(&mut self, second: i64) -> Option<&mut Slot> {
        if self.slots.back().is_none_or(|s| s.second < second) {
            self.slots.push_back(Slot {
                second,
                ..Slot::default()
            });
            self.prune(second);
        }
        let idx = self
            .slots
            .iter()
            .rposition(|s| s.second == second)
            .unwrap_or(self.slots.len().saturating_sub(1));
        self.slots.get_mut(idx)
    }

    /// Drops slots older than the window ending at `now_s`.
    fn prune(&mut self, now_s: i64) {
        while self
            .slots
            .front()
            .is_some_and(|s| s.second <= now_s - self.seconds)
        {
            self.slots.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn an_outage_shows_in_rates_codes_and_models() {
        let mut w = RequestWindow::new(60);
        let t0 = 1_700_000_000_000;
        for i in 0..20 {
            let ok = i % 4 != 0;
            let data = json!({
                "ok": ok, "status": if ok { 200 } else { 503 }, "latency_ms": 10.0 + f64::from(i),
                "resolved_model": "glm-4.6", "provider": "glm", "cache": if i % 2 == 0 { "l1" } else { "miss" },
                "prompt_tokens": 10, "completion_tokens": 2, "cost_usd": 0.001, "ttft_ms": 5.0,
            });
            w.observe(t0 + i64::from(i) * 100, &RequestFacts::of(&data));
        }
        let read = w.read(t0 + 5_000, 10);
        let r = &read.requests;
        assert_eq!((r.window_requests, r.window_errors), (20, 5));
        assert!((r.rate - 2.0).abs() < 1e-9, "{}", r.rate);
        assert!((r.error_rate - 0.5).abs() < 1e-9);
        assert!((r.by_status["503"] - 0.5).abs() < 1e-9);
        assert!((r.by_class["2xx"] - 1.5).abs() < 1e-9);
        assert!(r.p95_ms.unwrap() > r.p50_ms.unwrap());
        assert!(r.ttft_p50_ms.is_some());
        let m = &r.models["glm-4.6"];
        assert_eq!((m.requests, m.errors, m.prompt_tokens), (20, 5, Some(200)));
        assert!((m.cost_usd.unwrap() - 0.02).abs() < 1e-9);
        assert_eq!(read.providers["glm"].errors, 5);
        assert_eq!((read.cache_hits, read.cache_misses), (10, 10));
        // A minute later the window is empty again.
        let later = w.read(t0 + 120_000, 10);
        assert_eq!(later.requests.window_requests, 0);
        assert!(later.requests.p50_ms.is_none());
    }
}
