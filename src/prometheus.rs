//! The Prometheus series of `GET /metrics` (issue 17 §3), encoded by `prometheus-client` in
//! the Prometheus text format (0.0.4).
//!
//! Two kinds of series, one source each — nothing here is a second collector:
//! - **Counters and histograms of calls** are folded from the event stream: the recorder hands
//!   every event to [`Metrics::observe`] as it is recorded (synchronously, so no event is ever
//!   missed the way a lagging subscriber could miss one). `request` events give
//!   `exai_requests_total`, the duration and time-to-first-token histograms, tokens and cost,
//!   and the successful upstream attempts; `provider.attempt` events give the failed, retried
//!   and cancelled ones.
//! - **Gauges and process counters** are read at scrape time from what `/health` shows (the
//!   health board's components and actors, the recorder's counters): [`ScrapeFacts`].
//!
//! Names follow DESIGN's `exai_<thing>_<unit>[_total]`. Label values are bounded: a model the
//! catalog does not know counts as `other` ([`OTHER_MODEL`]); providers, surfaces, statuses,
//! cache outcomes and attempt outcomes are small closed sets.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use exai_actors::health::{HealthSnapshot, Status};
use exai_actors::pipeline::event::Event;
use exai_actors::pipeline::recorder::RecorderStats;
use exai_actors::pipeline::request::{REQUEST_EVENT, RequestFacts};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::Value;

/// The model label of a model the catalog does not know.
pub const OTHER_MODEL: &str = "other";
/// `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;
/// The event type of a failed, retried or cancelled upstream attempt.
pub const ATTEMPT_EVENT: &str = "provider.attempt";
/// Upper bounds of the request-duration buckets, seconds: 5 ms to 120 s.
const DURATION_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];
/// Upper bounds of the time-to-first-token buckets, seconds.
const TTFT_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Whether a model name is one the catalog knows (and so may be a label value).
pub type KnownModel = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Labels of `exai_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `v1`, `anthropic`, `ws`, `mcp`.
    surface: String,
    /// The resolved model, or `other`.
    model: String,
    /// The provider that answered, or empty.
    provider: String,
    /// The HTTP status the client got.
    status: u16,
    /// `l1`, `l2`, `miss`, `coalesced`, `bypass`, or `none` (no model call).
    cache: String,
}

/// Labels of the per-surface histograms.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SurfaceLabels {
    /// The surface.
    surface: String,
}

/// Labels of `exai_upstream_attempts_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    /// The provider.
    provider: String,
    /// The model, or `other`.
    model: String,
    /// `ok`, `failed`, `retried` or `cancelled`.
    outcome: String,
}

/// Labels of `exai_tokens_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    /// The model, or `other`.
    model: String,
    /// `prompt`, `completion` or `cached`.
    kind: &'static str,
}

/// Labels with only a model.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    /// The model, or `other`.
    model: String,
}

/// A histogram of request durations.
fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// A histogram of times to first token.
fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

/// The event-fed series. Cheap to share behind an `Arc`; `observe` is callable from any
/// thread.
pub struct Metrics {
    /// Where the event-fed series are registered.
    registry: Registry,
    /// `exai_requests_total`.
    requests: Family<RequestLabels, Counter>,
    /// `exai_request_duration_seconds`.
    duration: Family<SurfaceLabels, Histogram, fn() -> Histogram>,
    /// `exai_time_to_first_token_seconds`.
    ttft: Family<SurfaceLabels, Histogram, fn() -> Histogram>,
    /// `exai_upstream_attempts_total`.
    attempts: Family<AttemptLabels, Counter>,
    /// `exai_tokens_total`.
    tokens: Family<TokenLabels, Counter>,
    /// `exai_cost_usd_total`.
    cost: Family<ModelLabels, Counter<f64, AtomicU64>>,
    /// Which model names may be label values, once the registry is built (until then: the
    /// built-in catalog's).
    known: std::sync::OnceLock<KnownModel>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Empty series, with the built-in catalog bounding the model label until
    /// [`Metrics::set_known_models`].
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "exai_requests",
            "Client calls, by surface, resolved model, provider, status and cache outcome",
            requests.clone(),
        );
        let duration: Family<SurfaceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "exai_request_duration_seconds",
            "Client call latency, from arrival to the last byte",
            duration.clone(),
        );
        let ttft: Family<SurfaceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(ttft_histogram);
        registry.register(
            "exai_time_to_first_token_seconds",
            "Streamed calls: from arrival to the first content byte",
            ttft.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "exai_upstream_attempts",
            "Upstream attempts, by provider, model and outcome (ok, failed, retried, cancelled)",
            attempts.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "exai_tokens",
            "Tokens the upstreams reported, by model and kind (prompt, completion, cached)",
            tokens.clone(),
        );
        let cost = Family::<ModelLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "exai_cost_usd",
            "Cost of the calls at the configured prices, USD, by model",
            cost.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            ttft,
            attempts,
            tokens,
            cost,
            known: std::sync::OnceLock::new(),
        }
    }

    /// Sets which model names may be label values (the registry's, once it is built).
    pub fn set_known_models(&self, known: KnownModel) {
        let _ = self.known.set(known);
    }

    /// The label value for `model`.
    fn model_label(&self, model: Option<&str>) -> String {
        let known = |m: &str| match self.known.get() {
            Some(known) => known(m),
            None => exai_actors::registry::catalog::find(m).is_some_and(|c| c.id == m),
        };
        match model {
            Some(m) if known(m) => m.to_owned(),
            _ => OTHER_MODEL.to_owned(),
        }
    }

    /// Folds one recorded event into the series (events of other types are ignored).
    pub fn observe(&self, event: &Event) {
        match event.kind.as_str() {
            REQUEST_EVENT => self.observe_request(&RequestFacts::of(&event.data)),
            ATTEMPT_EVENT => self.observe_attempt(&event.data),
            _ => {}
        }
    }

    fn observe_request(&self, facts: &RequestFacts<'_>) {
        let surface = facts.surface.unwrap_or("unknown").to_owned();
        let model = self.model_label(facts.model_label());
        let provider = facts.provider.unwrap_or_default().to_owned();
        let cache = facts.cache.unwrap_or("none");
        self.requests
            .get_or_create(&RequestLabels {
                surface: surface.clone(),
                model: model.clone(),
                provider: provider.clone(),
                status: facts.status.unwrap_or(0),
                cache: cache.to_owned(),
            })
            .inc();
        let labels = SurfaceLabels { surface };
        if let Some(ms) = facts.latency_ms {
            self.duration.get_or_create(&labels).observe(ms / 1000.0);
        }
        if let Some(ms) = facts.ttft_ms {
            self.ttft.get_or_create(&labels).observe(ms / 1000.0);
        }
        let upstream_answered = facts.ok == Some(true)
            && !provider.is_empty()
            && !matches!(cache, "l1" | "l2" | "coalesced" | "none");
        if upstream_answered {
            self.attempts
                .get_or_create(&AttemptLabels {
                    provider,
                    model: model.clone(),
                    outcome: "ok".to_owned(),
                })
                .inc();
        }
        for (kind, n) in [
            ("prompt", facts.prompt_tokens),
            ("completion", facts.completion_tokens),
            ("cached", facts.cached_tokens),
        ] {
            if let Some(n) = n {
                self.tokens
                    .get_or_create(&TokenLabels {
                        model: model.clone(),
                        kind,
                    })
                    .inc_by(n);
            }
        }
        if let Some(cost) = facts.cost_usd.filter(|c| c.is_finite() && *c >= 0.0) {
            self.cost.get_or_create(&ModelLabels { model }).inc_by(cost);
        }
    }

    fn observe_attempt(&self, data: &Value) {
        /// What is read of a `provider.attempt`.
        #[derive(Deserialize, Default)]
        struct Attempt<'a> {
            /// The provider.
            #[serde(borrow, default)]
            provider: Option<&'a str>,
            /// The canonical model, when known.
            #[serde(borrow, default)]
            resolved_model: Option<&'a str>,
            /// The upstream model id.
            #[serde(borrow, default)]
            model: Option<&'a str>,
            /// `failed`, `retried` or `cancelled`.
            #[serde(borrow, default)]
            outcome: Option<&'a str>,
        }
        let attempt = Attempt::deserialize(data).unwrap_or_default();
        let outcome = attempt
            .outcome
            .filter(|o| matches!(*o, "failed" | "retried" | "cancelled"))
            .unwrap_or("failed");
        self.attempts
            .get_or_create(&AttemptLabels {
                provider: attempt.provider.unwrap_or_default().to_owned(),
                model: self.model_label(attempt.resolved_model.or(attempt.model)),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The whole `/metrics` document: the event-fed series, then the scrape-time ones.
    pub fn encode(&self, facts: &ScrapeFacts) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8192);
        prometheus_text::encode(&mut out, &self.registry)?;
        prometheus_text::encode(&mut out, &facts.registry())?;
        Ok(out)
    }
}

/// What `/metrics` reads at scrape time, from the health board and the recorder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrapeFacts {
    /// Serving and not unhealthy.
    pub up: bool,
    /// `CARGO_PKG_VERSION`.
    pub version: &'static str,
    /// Events recorded since start.
    pub events_recorded: u64,
    /// Events the store confirmed since start.
    pub events_persisted: u64,
    /// Events kept on disk only since start.
    pub events_spilled: u64,
    /// Events lost since start (journal failure with memory full, or refused by the store).
    pub events_lost: u64,
    /// Bytes in the journal's segments.
    pub journal_bytes: u64,
    /// `/ws` sessions open.
    pub ws_sessions: u64,
    /// Dashboard sessions subscribed.
    pub dashboard_clients: u64,
    /// Restarts per actor.
    pub actor_restarts: Vec<(String, u64)>,
    /// L1 entries, when the cache is on.
    pub cache_entries: Option<u64>,
    /// L1 bytes, when the cache is on.
    pub cache_bytes: Option<u64>,
    /// `(level, result, count)` of the cache's operations.
    pub cache_operations: Vec<(&'static str, &'static str, u64)>,
    /// `(provider, model, state)`: 0 closed, 1 half-open, 2 open; model `""` is the
    /// provider-wide breaker.
    pub breakers: Vec<(String, String, i64)>,
}

/// A breaker state as the gauge's number.
fn breaker_value(state: &str) -> i64 {
    match state {
        "closed" => 0,
        "half_open" => 1,
        _ => 2,
    }
}

impl ScrapeFacts {
    /// Reads the facts off a health snapshot and the recorder's counters. `serving` is false
    /// once shutdown has begun; `cache` is the cache's current stats (fresher than the health
    /// component it publishes periodically), when the cache is on.
    pub fn read(
        snapshot: &HealthSnapshot,
        recorder: RecorderStats,
        serving: bool,
        ws_sessions: usize,
        cache: Option<&Value>,
    ) -> Self {
        let detail = |name: &str| snapshot.components.get(name).map(|c| &c.detail);
        let number =
            |v: Option<&Value>, field: &str| v.and_then(|d| d.get(field)).and_then(Value::as_u64);
        let pipeline = detail("pipeline");
        let cache = cache.or_else(|| detail("cache"));
        let mut cache_operations = Vec::new();
        if cache.is_some() {
            let get = |f: &str| number(cache, f).unwrap_or(0);
            let (hits_l1, hits_l2, misses) = (get("hits_l1"), get("hits_l2"), get("misses"));
            // An L1 lookup that missed went on to L2 (when configured) or missed outright.
            cache_operations.extend([
                ("l1", "hit", hits_l1),
                ("l1", "miss", hits_l2 + misses),
                ("l1", "set", get("sets")),
                ("l1", "evict", get("evictions")),
                ("l1", "rejected", get("rejections")),
                ("flight", "coalesced", get("coalesced")),
            ]);
            let l2_on = cache
                .and_then(|c| c.get("l2"))
                .and_then(Value::as_str)
                .is_some_and(|s| s != "disabled");
            if l2_on {
                cache_operations.extend([
                    ("l2", "hit", hits_l2),
                    ("l2", "miss", misses),
                    ("l2", "error", get("l2_errors")),
                ]);
            }
        }
        let mut breakers = Vec::new();
        for (name, component) in &snapshot.components {
            let Some(provider) = name.strip_prefix("provider:") else {
                continue;
            };
            let d = &component.detail;
            if let Some(state) = d.pointer("/breaker/state").and_then(Value::as_str) {
                breakers.push((provider.to_owned(), String::new(), breaker_value(state)));
            }
            for model in d
                .get("model_breakers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(m), Some(state)) = (
                    model.get("model").and_then(Value::as_str),
                    model.get("state").and_then(Value::as_str),
                ) else {
                    continue;
                };
                breakers.push((provider.to_owned(), m.to_owned(), breaker_value(state)));
            }
        }
        Self {
            up: serving && snapshot.status != Status::Unhealthy,
            version: env!("CARGO_PKG_VERSION"),
            events_recorded: recorder.recorded,
            events_persisted: number(pipeline, "flushed").unwrap_or(0),
            events_spilled: recorder.spilled,
            events_lost: recorder.dropped + number(pipeline, "rejected").unwrap_or(0),
            journal_bytes: number(pipeline, "journal_bytes").unwrap_or(0),
            ws_sessions: ws_sessions as u64,
            dashboard_clients: number(detail("dashboard"), "clients").unwrap_or(0),
            actor_restarts: snapshot
                .actors
                .iter()
                .map(|(name, a)| (name.clone(), u64::from(a.restarts)))
                .collect(),
            cache_entries: number(cache, "entries"),
            cache_bytes: number(cache, "bytes"),
            cache_operations,
            breakers,
        }
    }

    /// A registry holding these facts, for one scrape.
    fn registry(&self) -> Registry {
        let mut r = Registry::default();
        let gauge = |v: i64| {
            let g: Gauge = Gauge::default();
            g.set(v);
            g
        };
        let counter = |v: u64| {
            let c: Counter = Counter::default();
            c.inc_by(v);
            c
        };
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        r.register(
            "exai_up",
            "1 while serving, 0 when unhealthy",
            gauge(i64::from(self.up)),
        );
        let build: Family<Vec<(String, String)>, Gauge> = Family::default();
        build
            .get_or_create(&vec![("version".to_owned(), self.version.to_owned())])
            .set(1);
        r.register(
            "exai_build_info",
            "Always 1; the version in its label",
            build,
        );
        r.register(
            "exai_events_recorded",
            "Monitoring events recorded since start",
            counter(self.events_recorded),
        );
        r.register(
            "exai_events_persisted",
            "Events the store confirmed since start",
            counter(self.events_persisted),
        );
        r.register(
            "exai_events_spilled",
            "Events kept on disk only since start (memory full or store down)",
            counter(self.events_spilled),
        );
        r.register(
            "exai_events_lost",
            "Events lost since start (journal unwritable with memory full, or refused by the store)",
            counter(self.events_lost),
        );
        r.register(
            "exai_journal_bytes",
            "Bytes in the event journal's segments",
            gauge(int(self.journal_bytes)),
        );
        r.register(
            "exai_ws_sessions",
            "/ws sessions open",
            gauge(int(self.ws_sessions)),
        );
        r.register(
            "exai_dashboard_clients",
            "Dashboard sessions subscribed",
            gauge(int(self.dashboard_clients)),
        );
        let restarts: Family<Vec<(String, String)>, Counter> = Family::default();
        for (actor, n) in &self.actor_restarts {
            restarts
                .get_or_create(&vec![("actor".to_owned(), actor.clone())])
                .inc_by(*n);
        }
        r.register(
            "exai_actor_restarts",
            "Restarts per actor since start",
            restarts,
        );
        if let Some(entries) = self.cache_entries {
            r.register(
                "exai_cache_entries",
                "Entries in the L1 cache",
                gauge(int(entries)),
            );
        }
        if let Some(bytes) = self.cache_bytes {
            r.register(
                "exai_cache_bytes",
                "Bytes in the L1 cache",
                gauge(int(bytes)),
            );
        }
        if !self.cache_operations.is_empty() {
            let ops: Family<Vec<(String, String)>, Counter> = Family::default();
            for (level, result, n) in &self.cache_operations {
                ops.get_or_create(&vec![
                    ("level".to_owned(), (*level).to_owned()),
                    ("result".to_owned(), (*result).to_owned()),
                ])
                .inc_by(*n);
            }
            r.register(
                "exai_cache_operations",
                "Cache operations since start, by level (l1, l2, flight) and result",
                ops,
            );
        }
        let breakers: Family<Vec<(String, String)>, Gauge> = Family::default();
        for (provider, model, state) in &self.breakers {
            breakers
                .get_or_create(&vec![
                    ("provider".to_owned(), provider.clone()),
                    ("model".to_owned(), model.clone()),
                ])
                .set(*state);
        }
        r.register(
            "exai_breaker_state",
            "Circuit breakers: 0 closed, 1 half-open, 2 open (model \"\": the provider-wide one)",
            breakers,
        );
        r
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use exai_actors::pipeline::request::{CacheLabel, RequestEvent, Surface, Tokens};
    use serde_json::json;

    fn metrics() -> Metrics {
        let m = Metrics::new();
        m.set_known_models(Arc::new(|m: &str| m == "glm-4.6"));
        m
    }

    fn request(model: &str, status: u16, cache: CacheLabel) -> Event {
        let mut r = RequestEvent::begin(Surface::V1, "id".into(), "i");
        r.resolved_model = Some(model.into());
        r.provider = Some("glm".into());
        r.status = status;
        r.ok = status == 200;
        r.error_kind = None;
        r.cache = Some(cache);
        r.latency_ms = 12.0;
        r.ttft_ms = Some(3.0);
        r.set_tokens(Tokens {
            prompt: 10,
            completion: 4,
            cached: Some(2),
        });
        r.cost_usd = Some(0.25);
        Event::new("i", "v1", REQUEST_EVENT, r.to_data())
    }

    #[test]
    fn request_events_become_bounded_series() {
        let m = metrics();
        m.observe(&request("glm-4.6", 200, CacheLabel::Miss));
        m.observe(&request("glm-4.6", 200, CacheLabel::L1));
        m.observe(&request(
            "some-client-invented-name",
            503,
            CacheLabel::Bypass,
        ));
        m.observe(&Event::new(
            "i",
            "provider",
            ATTEMPT_EVENT,
            json!({"provider": "glm", "model": "glm-4.6", "outcome": "retried"}),
        ));
        let text = m.encode(&ScrapeFacts::default()).unwrap();
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(
                r#"exai_requests_total{surface="v1",model="glm-4.6",provider="glm",status="200",cache="miss"} 1"#
            ),
            "{text}"
        );
        assert!(has(
            r#"exai_requests_total{surface="v1",model="other",provider="glm",status="503",cache="bypass"} 1"#
        ));
        assert!(has(
            r#"exai_upstream_attempts_total{provider="glm",model="glm-4.6",outcome="ok"} 1"#
        ));
        assert!(has(
            r#"exai_upstream_attempts_total{provider="glm",model="glm-4.6",outcome="retried"} 1"#
        ));
        assert!(has(
            r#"exai_tokens_total{model="glm-4.6",kind="prompt"} 20"#
        ));
        assert!(has(r#"exai_tokens_total{model="glm-4.6",kind="cached"} 4"#));
        assert!(has(r#"exai_cost_usd_total{model="glm-4.6"} 0.5"#));
        assert!(has(
            r#"exai_request_duration_seconds_count{surface="v1"} 3"#
        ));
        assert!(
            has(r#"exai_request_duration_seconds_bucket{le="0.005",surface="v1"} 0"#)
                || has(r#"exai_request_duration_seconds_bucket{surface="v1",le="0.005"} 0"#)
        );
        assert!(has("exai_up 0"));
    }
}
