//! The figures of the `stats` tick: the client-facing window of `request` events
//! ([`RequestWindow`]: rates by status, latency and TTFT percentiles, per-model tokens and
//! cost, per-provider figures, cache hits and misses), a per-second count of all events, the
//! `/ws` session count followed from events, and the `stats` message built from them and the
//! health board.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::requests::RequestWindow;
use super::settings::{DashboardStats, RATE_WINDOW_S};
use crate::health::HealthBoard;
use crate::pipeline::event::Event;
use crate::pipeline::recorder::Recorder;
use crate::pipeline::request::{REQUEST_EVENT, RequestFacts};

/// Events recorded within one second.
struct SecondSlot {
    /// Unix second.
    second: i64,
    /// All events.
    events: u64,
}

/// Per-second event counts covering the rate window.
struct Window {
    /// Oldest first.
    slots: VecDeque<SecondSlot>,
    /// Window length in seconds.
    seconds: i64,
}

impl Window {
    /// Counts one event of `second` (events from an earlier second than the newest — clock
    /// skew — join the newest).
    fn count(&mut self, second: i64) {
        if self.slots.back().is_none_or(|s| s.second < second) {
            self.slots.push_back(SecondSlot { second, events: 0 });
            self.prune(second);
        }
        let idx = self
            .slots
            .iter()
            .rposition(|s| s.second == second)
            .unwrap_or(self.slots.len().saturating_sub(1));
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.events += 1;
        }
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

/// The sliding windows and the session count, shared by every incarnation of the actor.
pub(super) struct LiveStats {
    /// Per-second event counts.
    window: Mutex<Window>,
    /// The client calls (`request` events) of the latency window.
    requests: Mutex<RequestWindow>,
    /// `/ws` sessions open, followed from `ws.connected` (its `connections`) and
    /// `ws.disconnected` events, used when no `ws` health component reports it.
    ws_sessions: AtomicUsize,
}

impl LiveStats {
    /// Empty windows covering `latency_window` (at least the rate window and one second).
    pub(super) fn new(latency_window: Duration) -> Self {
        let seconds = i64::try_from(latency_window.as_secs())
            .unwrap_or(60)
            .max(RATE_WINDOW_S + 1);
        Self {
            window: Mutex::new(Window {
                slots: VecDeque::new(),
                seconds,
            }),
            requests: Mutex::new(RequestWindow::new(seconds)),
            ws_sessions: AtomicUsize::new(0),
        }
    }

    /// Folds a local event into the windows.
    pub(super) fn observe(&self, event: &Event) {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .count(event.ts.div_euclid(1000));
        match event.kind.as_str() {
            REQUEST_EVENT => self
                .requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(event.ts, &RequestFacts::of(&event.data)),
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
        let (window_s, events_rate) = {
            let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
            window.prune(now_s);
            let rate_from = now_s - RATE_WINDOW_S;
            let recent: u64 = window
                .slots
                .iter()
                .filter(|s| s.second >= rate_from && s.second < now_s)
                .map(|s| s.events)
                .sum();
            (window.seconds, recent as f64 / RATE_WINDOW_S as f64)
        };
        let read = self
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(now_ms, RATE_WINDOW_S);
        let (cache_hits, cache_misses) = (read.cache_hits, read.cache_misses);
        // Per provider: the client calls it answered (or failed) in the window.
        let mut providers = Map::new();
        for (name, p) in &read.providers {
            providers.insert(name.clone(), serde_json::to_value(p).unwrap_or_default());
        }
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
            "requests": read.requests,
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
