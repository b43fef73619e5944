//! The figures of the `stats` tick: a sliding window of per-second slots (per-provider
//! requests, errors and latency histograms; cache hits and misses; event counts), the `/ws`
//! session count followed from events, and the `stats` message built from them and the
//! health board.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::settings::{DashboardStats, RATE_WINDOW_S};
use crate::health::HealthBoard;
use crate::pipeline::event::Event;
use crate::pipeline::recorder::Recorder;

/// Latency histogram range: 1 µs to one hour, two significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Significant digits of the latency histogram (1 % resolution).
const HIST_SIGFIG: u8 = 2;

/// Latency and count aggregates of one second.
struct SecondSlot {
    /// Unix second.
    second: i64,
    /// Per provider.
    providers: BTreeMap<String, ProviderSlot>,
    /// `cache.hit` events.
    cache_hits: u64,
    /// `cache.miss` events.
    cache_misses: u64,
    /// All events.
    events: u64,
}

/// One provider's requests within one second.
struct ProviderSlot {
    /// Requests.
    requests: u64,
    /// Failed requests.
    errors: u64,
    /// Latencies in microseconds.
    latency: hdrhistogram::Histogram<u64>,
}

/// Per-second slots covering the latency window.
struct Window {
    /// Oldest first.
    slots: VecDeque<SecondSlot>,
    /// Window length in seconds.
    seconds: i64,
}

impl Window {
    /// The slot for `second`, creating it (and dropping slots that left the window). Events
    /// from an earlier second than the newest (clock skew) join the newest.
    fn slot(&mut self, second: i64) -> Option<&mut SecondSlot> {
        if self.slots.back().is_none_or(|s| s.second < second) {
            self.slots.push_back(SecondSlot {
                second,
                providers: BTreeMap::new(),
                cache_hits: 0,
                cache_misses: 0,
                events: 0,
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

/// The sliding window and the session count, shared by every incarnation of the actor.
pub(super) struct LiveStats {
    /// Sliding latency/count window.
    window: Mutex<Window>,
    /// `/ws` sessions open, followed from `ws.connected` (its `connections`) and
    /// `ws.disconnected` events, used when no `ws` health component reports it.
    ws_sessions: AtomicUsize,
}

impl LiveStats {
    /// An empty window covering `latency_window` (at least the rate window and one second).
    pub(super) fn new(latency_window: Duration) -> Self {
        let seconds = i64::try_from(latency_window.as_secs())
            .unwrap_or(60)
            .max(RATE_WINDOW_S + 1);
        Self {
            window: Mutex::new(Window {
                slots: VecDeque::new(),
                seconds,
            }),
            ws_sessions: AtomicUsize::new(0),
        }
    }

    /// Folds a local event into the sliding window.
    pub(super) fn observe(&self, event: &Event) {
        let second = event.ts.div_euclid(1000);
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = window.slot(second) else {
            return;
        };
        slot.events += 1;
        match event.kind.as_str() {
            "provider.request" => {
                let provider = event
                    .data
                    .get("provider")
                    .and_then(Value::as_str)
                    .unwrap_or(event.source.as_str());
                let entry = match slot.providers.get_mut(provider) {
                    Some(entry) => entry,
                    None => {
                        let Ok(latency) =
                            hdrhistogram::Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG)
                        else {
                            return;
                        };
                        slot.providers
                            .entry(provider.to_owned())
                            .or_insert(ProviderSlot {
                                requests: 0,
                                errors: 0,
                                latency,
                            })
                    }
                };
                entry.requests += 1;
                if !event.ok() {
                    entry.errors += 1;
                }
                if let Some(ms) = event.latency_ms() {
                    let us = (ms * 1000.0).round().clamp(1.0, HIST_MAX_US as f64) as u64;
                    entry.latency.saturating_record(us);
                }
            }
            "ws.connected" => {
                let open = event.data.get("connections").and_then(Value::as_u64);
                match open.and_then(|n| usize::try_from(n).ok()) {
                    Some(n) => self.ws_sessions.store(n, Ordering::Relaxed),
                    None => {
                        self.ws_sessions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            "ws.disconnected" => {
                let _ = self
                    .ws_sessions
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(1))
                    });
            }
            "cache.hit" => slot.cache_hits += 1,
            "cache.miss" => slot.cache_misses += 1,
            _ => {}
        }
    }

    /// Builds the local `stats` message; `clients` and `dashboard` are the broadcaster's own
    /// figures.
    #[allow(clippy::cast_precision_loss)]
    pub(super) fn build(
        &self,
        now_ms: i64,
        health: &HealthBoard,
        recorder: &Recorder,
        clients: usize,
        dashboard: DashboardStats,
    ) -> Value {
        let now_s = now_ms.div_euclid(1000);
        let snapshot = health.snapshot();
        let mut providers = Map::new();
        let (window_s, events_rate, cache_hits, cache_misses) = {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            window.prune(now_s);
            let rate_from = now_s - RATE_WINDOW_S;
            // requests, errors, recent requests, latency, recent errors
            type Merged = (u64, u64, u64, Option<hdrhistogram::Histogram<u64>>, u64);
            let mut merged: BTreeMap<&str, Merged> = BTreeMap::new();
            let mut events_recent = 0;
            let (mut hits, mut misses) = (0, 0);
            for slot in &window.slots {
                let recent = slot.second >= rate_from && slot.second < now_s;
                if recent {
                    events_recent += slot.events;
                }
                hits += slot.cache_hits;
                misses += slot.cache_misses;
                for (name, p) in &slot.providers {
                    let entry = merged.entry(name.as_str()).or_insert((0, 0, 0, None, 0));
                    entry.0 += p.requests;
                    entry.1 += p.errors;
                    if recent {
                        entry.2 += p.requests;
                        entry.4 += p.errors;
                    }
                    match &mut entry.3 {
                        Some(h) => {
                            let _ = h.add(&p.latency);
                        }
                        None => entry.3 = Some(p.latency.clone()),
                    }
                }
            }
            for (name, (requests, errors, recent, hist, recent_errors)) in merged {
                let q = |q: f64| {
                    hist.as_ref()
                        .filter(|h| !h.is_empty())
                        .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
                };
                providers.insert(
                    name.to_owned(),
                    json!({
                        "rate": recent as f64 / RATE_WINDOW_S as f64,
                        "error_rate": recent_errors as f64 / RATE_WINDOW_S as f64,
                        "requests": requests,
                        "errors": errors,
                        "p50_ms": q(0.50),
                        "p95_ms": q(0.95),
                        "p99_ms": q(0.99),
                    }),
                );
            }
            (
                window.seconds,
                events_recent as f64 / RATE_WINDOW_S as f64,
                hits,
                misses,
            )
        };
        // Breakers, slots and configured-but-idle providers come from the health board.
        for (name, component) in &snapshot.components {
            let Some(provider) = name.strip_prefix("provider:") else {
                continue;
            };
            let entry = providers.entry(provider.to_owned()).or_insert_with(|| {
                json!({"rate": 0.0, "error_rate": 0.0, "requests": 0, "errors": 0, "p50_ms": null, "p95_ms": null, "p99_ms": null})
            });
            if let Value::Object(map) = entry {
                let d = &component.detail;
                map.insert("status".into(), json!(component.status));
                map.insert(
                    "breaker".into(),
                    d.pointer("/breaker/state").cloned().unwrap_or(Value::Null),
                );
                // Only the breakers that fence a model: the tick goes to every client.
                let open: Vec<Value> = d
                    .get("model_breakers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.get("state").and_then(Value::as_str) != Some("closed"))
                    .cloned()
                    .collect();
                map.insert("model_breakers".into(), Value::Array(open));
                map.insert(
                    "in_flight".into(),
                    d.get("in_flight").cloned().unwrap_or(Value::Null),
                );
                map.insert(
                    "simulated".into(),
                    d.get("simulated").cloned().unwrap_or(Value::Null),
                );
            }
        }
        let component = |name: &str| {
            snapshot.components.get(name).map(|c| {
                let mut detail = c.detail.clone();
                if let Value::Object(map) = &mut detail {
                    map.insert("status".into(), json!(c.status));
                }
                detail
            })
        };
        let mut cache = component("cache").unwrap_or_else(|| json!({}));
        if let Value::Object(map) = &mut cache {
            let lookups = cache_hits + cache_misses;
            map.insert("window_hits".into(), json!(cache_hits));
            map.insert("window_misses".into(), json!(cache_misses));
            map.insert(
                "window_hit_ratio".into(),
                if lookups > 0 {
                    json!(cache_hits as f64 / lookups as f64)
                } else {
                    Value::Null
                },
            );
        }
        let ws = component("ws");
        let sessions = ws
            .as_ref()
            .and_then(|w| w.get("sessions").or_else(|| w.get("connections")).cloned())
            .unwrap_or_else(|| json!(self.ws_sessions.load(Ordering::Relaxed)));
        let recorder_stats = recorder.stats();
        let failed_actors = snapshot
            .actors
            .values()
            .filter(|a| a.state == crate::health::ActorState::Failed)
            .count();
        json!({
            "type": "stats",
            "instance": recorder.instance(),
            "ts": now_ms,
            "window_s": window_s,
            "events": {
                "rate": events_rate,
                "recorded": recorder_stats.recorded,
                "queued": recorder_stats.queued,
                "dropped": recorder_stats.dropped,
            },
            "providers": providers,
            "cache": cache,
            "ws": {"sessions": sessions, "dashboard_sessions": clients, "detail": ws},
            "pipeline": component("pipeline"),
            "store": component("store"),
            "dashboard": dashboard,
            "health": {"status": snapshot.status, "failed_actors": failed_actors},
        })
    }
}
