//! The latency histogram carried by every rollup row (`metrics_1min`, `metrics_1hour`), so
//! p50/p95/p99 can be read for any window by merging bucket counts.
//!
//! Buckets are logarithmic with growth factor `g = 2^(1/8)`: bucket `i ≥ 1` holds latencies
//! in `[BASE·g^(i-1), BASE·g^i)` milliseconds, with `BASE` = 1 µs; bucket 0 holds everything
//! below 1 µs (and negative values). A quantile is reported as the geometric midpoint of its
//! bucket, `BASE·g^(i-½)`, clamped to the exact min/max of the window when those are known.
//!
//! **Error bound.** For any latency ≥ 1 µs the reported quantile `q̂` and the exact
//! nearest-rank quantile `q` satisfy `|q̂ − q| / q ≤ 2^(1/16) − 1 ≈ 4.427 %`
//! ([`RELATIVE_ERROR`]). Below 1 µs the absolute error is under 1 µs. Values above
//! `BASE·g^MAX_INDEX` (≈ 12.7 days) land in the last bucket.
//!
//! The stored form is sparse: a JSON object mapping bucket index (as a string) to count,
//! e.g. `{"75": 3, "80": 1}`. PostgreSQL computes the same index in SQL
//! (`monitoring.latency_bucket`, see `migrations/postgres`), so both stores agree.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Lower edge of bucket 1, in milliseconds (1 µs).
pub const BASE_MS: f64 = 0.001;
/// Buckets per doubling: growth factor `2^(1/SUB_BUCKETS)`.
pub const SUB_BUCKETS: f64 = 8.0;
/// Highest bucket index; larger values are clamped into it.
pub const MAX_INDEX: u32 = 320;
/// The stated worst-case relative error of a quantile estimate: `2^(1/16) − 1`.
pub const RELATIVE_ERROR: f64 = 0.044_273_782_427_413_84;

/// The bucket index for a latency in milliseconds.
pub fn bucket_index(latency_ms: f64) -> u32 {
    if latency_ms.is_nan() || latency_ms < BASE_MS {
        return 0;
    }
    // The same float operations as `monitoring.latency_bucket` in PostgreSQL (C `log`, then
    // divide by ln 2), so both stores bucket every value identically.
    let index = ((latency_ms / BASE_MS).ln() / std::f64::consts::LN_2 * SUB_BUCKETS).floor() + 1.0;
    if index >= f64::from(MAX_INDEX) {
        MAX_INDEX
    } else {
        // In range 1..MAX_INDEX by the checks above.
        index as u32
    }
}

/// The value reported for bucket `index`: its geometric midpoint (0 for bucket 0).
pub fn bucket_value(index: u32) -> f64 {
    if index == 0 {
        return 0.0;
    }
    BASE_MS * 2f64.powf((f64::from(index) - 0.5) / SUB_BUCKETS)
}

/// A mergeable latency histogram with exact count, sum, min and max.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Count per bucket index; only non-empty buckets are present.
    buckets: BTreeMap<u32, u64>,
    /// Samples recorded.
    count: u64,
    /// Exact smallest sample, when any.
    min: Option<f64>,
    /// Exact largest sample, when any.
    max: Option<f64>,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one latency sample in milliseconds.
    pub fn record(&mut self, latency_ms: f64) {
        *self.buckets.entry(bucket_index(latency_ms)).or_insert(0) += 1;
        self.count += 1;
        self.min = Some(self.min.map_or(latency_ms, |m| m.min(latency_ms)));
        self.max = Some(self.max.map_or(latency_ms, |m| m.max(latency_ms)));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (index, n) in &other.buckets {
            *self.buckets.entry(*index).or_insert(0) += n;
        }
        self.count += other.count;
        self.min = min_opt(self.min, other.min);
        self.max = max_opt(self.max, other.max);
    }

    /// Adds the buckets of a stored (sparse JSON) histogram, plus its exact min/max if known.
    pub fn merge_stored(&mut self, stored: &Value, min: Option<f64>, max: Option<f64>) {
        let parsed = Self::from_json(stored);
        self.merge(&Histogram { min, max, ..parsed });
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank quantile `q` in `[0, 1]`, within [`RELATIVE_ERROR`]; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        // Nearest rank: the smallest sample with at least q·n samples at or below it.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let mut value = bucket_value(*index);
                if let Some(min) = self.min {
                    value = value.max(min);
                }
                if let Some(max) = self.max {
                    value = value.min(max);
                }
                return Some(value);
            }
        }
        self.max
    }

    /// The sparse JSON form stored in rollup rows: `{"index": count, ...}`.
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = self
            .buckets
            .iter()
            .map(|(index, n)| (index.to_string(), Value::from(*n)))
            .collect();
        Value::Object(map)
    }

    /// Parses the sparse JSON form; malformed entries are ignored. Min/max stay unknown.
    pub fn from_json(value: &Value) -> Self {
        let mut hist = Self::new();
        if let Some(map) = value.as_object() {
            for (key, n) in map {
                let (Ok(index), Some(n)) = (key.parse::<u32>(), n.as_u64()) else {
                    continue;
                };
                *hist.buckets.entry(index.min(MAX_INDEX)).or_insert(0) += n;
                hist.count += n;
            }
        }
        hist
    }
}

/// The smaller of two optional values.
fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The larger of two optional values.
fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use rand::Rng;

    fn exact(sorted: &[f64], q: f64) -> f64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn stated_bound_matches_the_bucket_geometry() {
        let g: f64 = 2f64.powf(1.0 / SUB_BUCKETS);
        assert!((g.sqrt() - 1.0 - RELATIVE_ERROR).abs() < 1e-12);
    }

    #[test]
    fn quantiles_are_within_the_bound_of_exact_ones() {
        let mut rng = rand::rng();
        for round in 0..20 {
            let n = 1 + round * 997;
            let mut samples: Vec<f64> = (0..n)
                .map(|_| {
                    // Log-uniform from 10 µs to 100 s, the range latencies live in.
                    10f64.powf(rng.random_range(-2.0..5.0))
                })
                .collect();
            let mut hist = Histogram::new();
            for s in &samples {
                hist.record(*s);
            }
            samples.sort_by(f64::total_cmp);
            for q in [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let want = exact(&samples, q);
                let got = hist.quantile(q).unwrap();
                let err = (got - want).abs() / want;
                assert!(
                    err <= RELATIVE_ERROR + 1e-9,
                    "q={q} n={n}: {got} vs {want} ({err})"
                );
            }
        }
    }

    #[test]
    fn merged_histograms_equal_one_over_all_samples() {
        let mut rng = rand::rng();
        let mut all = Histogram::new();
        let mut merged = Histogram::new();
        for _ in 0..10 {
            let mut part = Histogram::new();
            for _ in 0..100 {
                let v = rng.random_range(0.5..2000.0);
                part.record(v);
                all.record(v);
            }
            // Through the stored form, as history queries do.
            merged.merge_stored(&part.to_json(), part.min, part.max);
        }
        assert_eq!(merged, all);
        assert_eq!(merged.quantile(0.99), all.quantile(0.99));
    }

    #[test]
    fn edges_and_tiny_values() {
        assert_eq!(bucket_index(0.0), 0);
        assert_eq!(bucket_index(-3.0), 0);
        assert_eq!(bucket_index(f64::NAN), 0);
        assert_eq!(bucket_index(BASE_MS), 1);
        assert_eq!(bucket_index(BASE_MS * 2.0), 9);
        assert_eq!(bucket_index(1e300), MAX_INDEX);
        let mut hist = Histogram::new();
        assert_eq!(hist.quantile(0.5), None);
        hist.record(0.0);
        assert_eq!(hist.quantile(0.5), Some(0.0));
        let stored = serde_json::json!({"9": 2, "bad": 1, "10": "x"});
        assert_eq!(Histogram::from_json(&stored).count(), 2);
    }
}
