//! The dashboard broadcaster: fans the one event stream out to the live dashboard sessions
//! (DESIGN §3, §7 "Dashboard stream").
//!
//! **Fed by** [`Recorder::subscribe`] — the same stream the flusher persists; there is no second
//! collector. The broadcaster takes the stream in batches: it wakes on the first event, lets
//! more gather for [`LIVE_BATCH_WINDOW`], then takes them all, so recording threads never wake
//! it once per event. Events arrive as shared, unserialised [`LiveEvent`]s; an event is encoded
//! at most once for clients and snapshots: when it arrives if a client is subscribed (wrapped
//! into an `event` message whose `Arc<str>` goes to every client), otherwise by the first
//! snapshot that includes it. Relaying to other instances encodes it for the relay payload.
//!
//! **Owns** the client table: one bounded queue per session ([`Subscribe`] hands over its
//! sender). Delivery is `try_send` only, so a slow client never blocks the others and never
//! grows memory: when its queue is full the message is dropped for that client and counted;
//! once it has room again it first receives `{"type":"lagged","dropped":N}`. A client that has
//! dropped [`DashboardSettings::evict_after_dropped`] messages in a row, or whose queue stayed
//! full for [`DashboardSettings::evict_after_full`], is evicted: it is removed, told the close
//! reason through its eviction channel, and its queue is dropped.
//!
//! **Ticks:** `stats` every [`DashboardSettings::tick`] (per-provider rates, errors and
//! p50/p95/p99 from `provider.request` latencies over a sliding window, cache, sessions,
//! pipeline, health summary); `health` whenever the [`HealthBoard`]'s actors or component
//! statuses change (polled every [`HEALTH_POLL`]).
//!
//! **Messages** (server → client JSON, one text frame each):
//! - `{"type":"snapshot","instance","ts","health":{…},"stats":{…}|null,"events":[…],"instances":{name: stats}}`
//!   — first message of every subscription: health, latest stats, recent events (oldest
//!   first), latest stats of every other instance seen;
//! - `{"type":"event","event":{id,ts,instance,source,type,data}}` — one per live event (local,
//!   or relayed from another instance; `event.instance` says which);
//! - `{"type":"stats","instance","ts","window_s","events":{…},"providers":{name:{rate,requests,errors,p50_ms,p95_ms,p99_ms,breaker,model_breakers,…}},"cache":{…},"ws":{…},"pipeline":{…},"dashboard":{…},"health":{status}}`;
//! - `{"type":"health","instance","ts","health":{status,actors,components}}`;
//! - `{"type":"lagged","dropped":N}` — N messages were dropped for this client;
//! - `{"type":"resync","since":ts,"reason"}` — the cross-instance feed was interrupted since
//!   `ts` (unix ms): fill the gap from the history API (`/api/...`).
//!
//! **Cross-instance fan-out** (PostgreSQL only, [`FanoutSettings`]): every stats tick is
//! published with `pg_notify` on [`NOTIFY_CHANNEL`], and local events are relayed in batches
//! every [`RELAY_INTERVAL`] (at most `max_relay_events_per_s`; the excess is counted, not sent —
//! the history API has them). Each payload stays under [`NOTIFY_MAX_PAYLOAD`] bytes, below
//! PostgreSQL's 8000-byte NOTIFY limit: event batches are split across notifications, an event
//! too large on its own is sent with its `data` replaced by `{"truncated":true,"bytes":N}`, and
//! an oversized stats message loses its `pipeline`, `cache`, `ws` and then `providers` detail
//! (or is skipped and counted). A `PgListener` forwards other instances' stats and events to the
//! local clients; after it reconnects, clients get a `resync`.
//!
//! The fan-out runs on its own thread and runtime (`dashboard-fanout`), reaching the actor
//! through its [`Slot`], and stops when [`DashboardShared`] is dropped.
//!
//! **Restart** resets the client table only (sessions hold the [`Slot`] and re-subscribe when
//! their queue closes). The live-stream receiver, the recent-event ring, the latency window,
//! the counters and the fan-out live in [`DashboardShared`], which the factory captures, so
//! events recorded during a restart are still delivered.
//!
//! **Memory per client** is bounded in user space by its queue (`client_queue` shared
//! `Arc<str>` pointers) plus the HTTP layer's write buffer; a client that stops reading can
//! additionally pin its socket's kernel send buffer (up to `net.ipv4.tcp_wmem`'s maximum)
//! until it reads again (and then finds the close frame) or its connection dies; the
//! broadcaster forgets it at eviction.
//!
//! **Health:** component `dashboard` (clients, lagged and evicted totals, fan-out state).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedMutexGuard, broadcast, mpsc, oneshot};

use crate::health::{HealthBoard, HealthSnapshot, Status};
use crate::pipeline::event::{Event, LiveEvent};
use crate::pipeline::recorder::Recorder;
use crate::policy::failure_log::FailureLog;
use crate::policy::retry::RetryPolicy;
use crate::supervisor::{ChildSpec, Slot};

/// The supervisor child name, as shown in `/health`.
pub const CHILD_NAME: &str = "dashboard";
/// Health component name.
pub const HEALTH_COMPONENT: &str = "dashboard";
/// The `source` of events this module records.
pub const EVENT_SOURCE: &str = "dashboard";
/// Default gap between `stats` messages.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default per-client queue length, in messages. Messages are shared `Arc<str>`s, so a full
/// queue costs this many pointers, not this many copies.
pub const DEFAULT_CLIENT_QUEUE: usize = 256;
/// Default messages dropped in a row after which a client is evicted.
pub const DEFAULT_EVICT_AFTER_DROPPED: u64 = 5_000;
/// Default time a client's queue may stay full before it is evicted.
pub const DEFAULT_EVICT_AFTER_FULL: Duration = Duration::from_secs(10);
/// Default number of recent events sent in a snapshot.
pub const DEFAULT_RECENT_EVENTS: usize = 200;
/// Default sliding window for latency percentiles and error counts.
pub const DEFAULT_LATENCY_WINDOW: Duration = Duration::from_secs(60);
/// Seconds over which `rate` is averaged (the last whole seconds).
pub const RATE_WINDOW_S: i64 = 10;
/// How often the health board is compared with what clients last saw.
pub const HEALTH_POLL: Duration = Duration::from_millis(250);
/// The actor's mailbox capacity (subscriptions, publishes from the fan-out listener).
pub const MAILBOX_CAPACITY: usize = 1024;
/// The PostgreSQL NOTIFY channel shared by all instances.
pub const NOTIFY_CHANNEL: &str = "exai_dashboard";
/// Largest payload published; PostgreSQL refuses 8000 bytes and more.
pub const NOTIFY_MAX_PAYLOAD: usize = 7_900;
/// Gap between relayed event batches.
pub const RELAY_INTERVAL: Duration = Duration::from_millis(100);
/// Another instance whose stats have not arrived for this long is left out of snapshots.
pub const INSTANCE_TTL: Duration = Duration::from_secs(300);
/// Default cap on events relayed to other instances per second.
pub const DEFAULT_MAX_RELAY_EVENTS_PER_S: usize = 500;
/// Payloads waiting for the publisher connection; beyond this they are dropped and counted.
pub const PUBLISH_QUEUE: usize = 64;
/// Retry backoff of the fan-out connections.
pub const FANOUT_RETRY: RetryPolicy =
    RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(10));
/// Wait for the publisher's pooled connection.
pub const FANOUT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// Latency histogram range: 1 µs to one hour, two significant digits.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Significant digits of the latency histogram (1 % resolution).
const HIST_SIGFIG: u8 = 2;
/// How long live events gather after the first one before the broadcaster takes them: one
/// wake-up per burst instead of one per event, at the cost of at most this much delay.
pub const LIVE_BATCH_WINDOW: Duration = Duration::from_millis(5);
/// Most live events taken in one batch. One batch is handled per poll of the actor, so this
/// times the number of clients bounds how long the actor is busy before it serves its
/// mailbox (subscriptions, the supervisor's ping) again.
const LIVE_BATCH_MAX: usize = 128;

/// One message as sent to clients: JSON text, shared by every recipient.
pub type Outbound = Arc<str>;
/// Identifies one subscription.
pub type ClientId = u64;

/// Cross-instance fan-out through PostgreSQL LISTEN/NOTIFY.
#[derive(Clone)]
pub struct FanoutSettings {
    /// The shared PostgreSQL database.
    pub database_url: SecretString,
    /// Channel name (default [`NOTIFY_CHANNEL`]).
    pub channel: String,
    /// Whether local events are relayed too (stats always are).
    pub relay_events: bool,
    /// Cap on relayed events per second.
    pub max_relay_events_per_s: usize,
}

impl std::fmt::Debug for FanoutSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutSettings")
            .field("database_url", &"[redacted]")
            .field("channel", &self.channel)
            .field("relay_events", &self.relay_events)
            .field("max_relay_events_per_s", &self.max_relay_events_per_s)
            .finish()
    }
}

impl FanoutSettings {
    /// Fan-out over `database_url` with the default channel, relaying events.
    pub fn new(database_url: SecretString) -> Self {
        Self {
            database_url,
            channel: NOTIFY_CHANNEL.to_owned(),
            relay_events: true,
            max_relay_events_per_s: DEFAULT_MAX_RELAY_EVENTS_PER_S,
        }
    }
}

/// How the broadcaster ticks, bounds and evicts.
#[derive(Debug, Clone)]
pub struct DashboardSettings {
    /// Gap between `stats` messages (default 1 s).
    pub tick: Duration,
    /// Per-client queue length in messages.
    pub client_queue: usize,
    /// Messages dropped in a row after which a client is evicted.
    pub evict_after_dropped: u64,
    /// Time a client's queue may stay full before it is evicted.
    pub evict_after_full: Duration,
    /// Recent events kept for snapshots.
    pub recent_events: usize,
    /// Sliding window for percentiles and error counts.
    pub latency_window: Duration,
    /// Cross-instance fan-out; `None` on SQLite (a single instance).
    pub fanout: Option<FanoutSettings>,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            tick: DEFAULT_TICK,
            client_queue: DEFAULT_CLIENT_QUEUE,
            evict_after_dropped: DEFAULT_EVICT_AFTER_DROPPED,
            evict_after_full: DEFAULT_EVICT_AFTER_FULL,
            recent_events: DEFAULT_RECENT_EVENTS,
            latency_window: DEFAULT_LATENCY_WINDOW,
            fanout: None,
        }
    }
}

/// Why a dashboard request failed.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The session's queue was closed before the snapshot could be queued.
    #[error("client queue is closed")]
    QueueClosed,
    /// No such subscription (already gone or evicted).
    #[error("unknown dashboard client {0}")]
    UnknownClient(ClientId),
}

// ---------------------------------------------------------------------------------------
// Messages.

/// Registers a session: the snapshot is queued at once, then the live stream follows.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientId, DashboardError>")]
pub struct Subscribe {
    /// The session's bounded queue; the broadcaster only ever `try_send`s into it.
    pub queue: mpsc::Sender<Outbound>,
    /// Receives the close reason if the session is evicted for falling too far behind.
    pub evict: oneshot::Sender<String>,
}

/// Removes a session (it closed).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), DashboardError>")]
pub struct Unsubscribe {
    /// The id [`Subscribe`] returned.
    pub id: ClientId,
}

/// Sends one ready-made message to every session; replies with how many queued it.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, DashboardError>")]
pub struct Publish {
    /// The JSON text.
    pub message: Outbound,
}

/// Counters for tests and `/health`.
#[derive(Debug, Message)]
#[rtype(result = "Result<DashboardStats, DashboardError>")]
pub struct GetStats;

/// What [`GetStats`] answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DashboardStats {
    /// Sessions subscribed now.
    pub clients: usize,
    /// Messages dropped for slow clients since start.
    pub dropped: u64,
    /// `lagged` notices sent.
    pub lagged: u64,
    /// Clients evicted for falling too far behind.
    pub evicted: u64,
    /// Events the broadcaster itself missed (the live channel overflowed).
    pub missed: u64,
    /// Payloads published to other instances.
    pub published: u64,
    /// Payloads or events not published (queue full, too large, over the relay cap, failed).
    pub publish_dropped: u64,
    /// Messages received from other instances.
    pub received: u64,
}

// ---------------------------------------------------------------------------------------
// State that survives a restart.

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

/// State the factory captures, so a restart of the actor keeps it.
pub struct DashboardShared {
    /// Tick, bounds, fan-out.
    settings: DashboardSettings,
    /// Where the stream comes from (and where evictions are recorded).
    recorder: Recorder,
    /// Read for `health` messages and the pipeline/cache/provider detail of `stats`.
    health: HealthBoard,
    /// The live subscription, held across restarts so nothing recorded meanwhile is missed.
    live: Arc<tokio::sync::Mutex<broadcast::Receiver<LiveEvent>>>,
    /// Recent events (local and relayed), oldest first, for snapshots.
    recent: Mutex<VecDeque<Recent>>,
    /// Sliding latency/count window.
    window: Mutex<Window>,
    /// The latest local `stats` message.
    last_stats: Mutex<Option<Outbound>>,
    /// The latest `stats` message of every other instance, by instance.
    instances: Mutex<BTreeMap<String, (Instant, Outbound)>>,
    /// Sessions subscribed now (written by the actor, read by `/health` and stats).
    clients: AtomicUsize,
    /// `/ws` sessions open, followed from `ws.connected` (its `connections`) and
    /// `ws.disconnected` events, used when no `ws` health component reports it.
    ws_sessions: AtomicUsize,
    /// Counters, see [`DashboardStats`].
    dropped: AtomicU64,
    /// `lagged` notices sent.
    lagged: AtomicU64,
    /// Evictions.
    evicted: AtomicU64,
    /// Events the broadcaster missed.
    missed: AtomicU64,
    /// Payloads published.
    published: AtomicU64,
    /// Payloads or events not published.
    publish_dropped: AtomicU64,
    /// Messages from other instances.
    received: AtomicU64,
    /// Fan-out listener state for `/health` (`off`, `connecting`, `listening`, `down`).
    fanout_state: Mutex<&'static str>,
    /// The broadcaster's current address; the fan-out thread and sessions reach it here.
    slot: Slot<DashboardBroadcast>,
    /// Hand-off to the NOTIFY publisher, when fanning out.
    publisher: OnceLock<mpsc::Sender<String>>,
    /// Dropped with this state, which stops the fan-out thread.
    fanout_stop: OnceLock<oneshot::Sender<()>>,
}

impl std::fmt::Debug for DashboardShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardShared")
            .field("settings", &self.settings)
            .field("stats", &self.stats())
            .finish()
    }
}

impl DashboardShared {
    /// Subscribes to `recorder` now, so events recorded before the actor starts are kept, and
    /// starts the fan-out thread when configured. The fan-out runs on its own thread and
    /// runtime, not on the actor's arbiter, so it survives actor restarts and its connections
    /// are always dropped inside a runtime; it stops when this state is dropped.
    pub fn new(settings: DashboardSettings, recorder: Recorder, health: HealthBoard) -> Arc<Self> {
        let live = Arc::new(tokio::sync::Mutex::new(recorder.subscribe()));
        let seconds = i64::try_from(settings.latency_window.as_secs())
            .unwrap_or(60)
            .max(RATE_WINDOW_S + 1);
        let fanout_state = if settings.fanout.is_some() {
            "connecting"
        } else {
            "off"
        };
        let shared = Arc::new(Self {
            settings,
            recorder,
            health,
            live,
            recent: Mutex::new(VecDeque::new()),
            window: Mutex::new(Window {
                slots: VecDeque::new(),
                seconds,
            }),
            last_stats: Mutex::new(None),
            instances: Mutex::new(BTreeMap::new()),
            clients: AtomicUsize::new(0),
            ws_sessions: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            published: AtomicU64::new(0),
            publish_dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            fanout_state: Mutex::new(fanout_state),
            slot: Slot::new(),
            publisher: OnceLock::new(),
            fanout_stop: OnceLock::new(),
        });
        if let Some(fanout) = shared.settings.fanout.clone() {
            start_fanout(&shared, fanout);
        }
        shared
    }

    /// The broadcaster's slot (its address changes on restart).
    pub fn slot(&self) -> Slot<DashboardBroadcast> {
        self.slot.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &DashboardSettings {
        &self.settings
    }

    /// Counters.
    pub fn stats(&self) -> DashboardStats {
        DashboardStats {
            clients: self.clients.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            lagged: self.lagged.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            publish_dropped: self.publish_dropped.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
        }
    }

    /// Remembers an event for snapshots.
    fn remember(&self, event: Recent) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        while recent.len() >= self.settings.recent_events.max(1) {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// Folds a local event into the sliding window.
    fn observe(&self, event: &Event) {
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

    /// Builds the local `stats` message.
    fn build_stats(&self, now_ms: i64) -> Value {
        let now_s = now_ms.div_euclid(1000);
        let snapshot = self.health.snapshot();
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
        let recorder = self.recorder.stats();
        let failed_actors = snapshot
            .actors
            .values()
            .filter(|a| a.state == crate::health::ActorState::Failed)
            .count();
        json!({
            "type": "stats",
            "instance": self.recorder.instance(),
            "ts": now_ms,
            "window_s": window_s,
            "events": {
                "rate": events_rate,
                "recorded": recorder.recorded,
                "queued": recorder.queued,
                "dropped": recorder.dropped,
            },
            "providers": providers,
            "cache": cache,
            "ws": {"sessions": sessions, "dashboard_sessions": self.clients.load(Ordering::Relaxed), "detail": ws},
            "pipeline": component("pipeline"),
            "store": component("store"),
            "dashboard": self.stats(),
            "health": {"status": snapshot.status, "failed_actors": failed_actors},
        })
    }
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

// ---------------------------------------------------------------------------------------
// The actor.

/// An event kept for snapshots.
/// An event is encoded at most once: for the clients when it arrives, or by the first
/// snapshot that includes it, which keeps the encoding in place of the event.
enum Recent {
    /// A local event not encoded yet (no client was subscribed when it arrived).
    Local(LiveEvent),
    /// An event's JSON: local and already encoded, or relayed from another instance.
    Encoded(Outbound),
}

/// One batch taken from the live stream.
#[derive(Default)]
struct LiveBatch {
    /// Events, oldest first.
    events: Vec<LiveEvent>,
    /// Events the stream skipped because the broadcaster fell behind it.
    missed: u64,
}

/// One subscribed session.
struct Client {
    /// Its bounded queue.
    queue: mpsc::Sender<Outbound>,
    /// Where the close reason goes on eviction.
    evict: Option<oneshot::Sender<String>>,
    /// Messages dropped since it last had room.
    dropped: u64,
    /// Since when its queue has been full.
    full_since: Option<Instant>,
}

/// What happened when one message was offered to one client.
enum Offer {
    /// Queued (possibly after a `lagged` notice).
    Queued,
    /// Dropped; the client is still within bounds.
    Dropped,
    /// The client must go: evicted (with a reason) or its session is gone (`None`).
    Remove(Option<String>),
}

/// The broadcaster. See the module docs.
pub struct DashboardBroadcast {
    /// State that survives restarts.
    shared: Arc<DashboardShared>,
    /// Subscribed sessions.
    clients: HashMap<ClientId, Client>,
    /// Next subscription id.
    next_id: ClientId,
    /// The health key clients last saw (actor table plus component statuses).
    health_key: String,
    /// Local events waiting to be relayed to other instances.
    relay: Vec<LiveEvent>,
    /// Events relayed (or refused) in the current second: (second, count).
    relay_budget: (i64, usize),
}

impl DashboardBroadcast {
    /// A fresh instance over `shared` (called by the supervisor on every start).
    pub fn new(shared: Arc<DashboardShared>) -> Self {
        Self {
            shared,
            clients: HashMap::new(),
            next_id: 1,
            health_key: String::new(),
            relay: Vec::new(),
            relay_budget: (0, 0),
        }
    }

    /// The child spec: `dashboard`, rebuilt over the same shared state on every restart.
    pub fn child_spec(shared: Arc<DashboardShared>) -> ChildSpec {
        let slot = shared.slot();
        ChildSpec::new(CHILD_NAME, slot, move || Self::new(shared.clone()))
    }

    /// Offers `message` to one client, sending a pending `lagged` notice first.
    fn offer(
        shared: &DashboardShared,
        client: &mut Client,
        message: &Outbound,
        now: Instant,
    ) -> Offer {
        use mpsc::error::TrySendError;
        if client.dropped > 0 {
            let notice: Outbound =
                format!(r#"{{"type":"lagged","dropped":{}}}"#, client.dropped).into();
            match client.queue.try_send(notice) {
                Ok(()) => {
                    shared.lagged.fetch_add(1, Ordering::Relaxed);
                    client.dropped = 0;
                    client.full_since = None;
                }
                Err(TrySendError::Closed(_)) => return Offer::Remove(None),
                Err(TrySendError::Full(_)) => return Self::dropped(shared, client, now),
            }
        }
        match client.queue.try_send(message.clone()) {
            Ok(()) => {
                client.full_since = None;
                Offer::Queued
            }
            Err(TrySendError::Closed(_)) => Offer::Remove(None),
            Err(TrySendError::Full(_)) => Self::dropped(shared, client, now),
        }
    }

    /// Counts a drop and decides whether the client is now too far behind.
    fn dropped(shared: &DashboardShared, client: &mut Client, now: Instant) -> Offer {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        client.dropped += 1;
        let since = *client.full_since.get_or_insert(now);
        Self::verdict(shared, client, now, since)
    }

    /// Eviction rule: too many drops in a row, or full for too long.
    fn verdict(
        shared: &DashboardShared,
        client: &Client,
        now: Instant,
        full_since: Instant,
    ) -> Offer {
        let s = &shared.settings;
        if client.dropped >= s.evict_after_dropped {
            Offer::Remove(Some(format!(
                "too far behind: {} messages dropped in a row",
                client.dropped
            )))
        } else if now.duration_since(full_since) >= s.evict_after_full {
            Offer::Remove(Some(format!(
                "too far behind: queue full for {} ms",
                now.duration_since(full_since).as_millis()
            )))
        } else {
            Offer::Dropped
        }
    }

    /// Offers `message` to every client; returns how many queued it.
    fn deliver(&mut self, message: &Outbound) -> usize {
        let now = Instant::now();
        let mut queued = 0;
        let mut gone = Vec::new();
        for (id, client) in &mut self.clients {
            match Self::offer(&self.shared, client, message, now) {
                Offer::Queued => queued += 1,
                Offer::Dropped => {}
                Offer::Remove(reason) => gone.push((*id, reason)),
            }
        }
        for (id, reason) in gone {
            self.remove(id, reason);
        }
        queued
    }

    /// Removes a client; with a reason, it was evicted and is told why.
    fn remove(&mut self, id: ClientId, reason: Option<String>) {
        let Some(mut client) = self.clients.remove(&id) else {
            return;
        };
        self.shared
            .clients
            .store(self.clients.len(), Ordering::Relaxed);
        if let Some(reason) = reason {
            self.shared.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(client = id, %reason, "dashboard client evicted");
            if let Some(tx) = client.evict.take() {
                let _ = tx.send(reason.clone());
            }
            self.shared.recorder.record(
                EVENT_SOURCE,
                "dashboard.evicted",
                json!({"ok": false, "client": id, "dropped": client.dropped, "reason": reason}),
            );
        }
    }

    /// Time-based eviction for clients that stayed full while nothing was delivered.
    fn evict_stale(&mut self) {
        let now = Instant::now();
        let stale: Vec<_> = self
            .clients
            .iter()
            .filter_map(|(id, c)| {
                if c.queue.is_closed() {
                    return Some((*id, None));
                }
                match Self::verdict(&self.shared, c, now, c.full_since?) {
                    Offer::Remove(reason) => Some((*id, reason)),
                    Offer::Queued | Offer::Dropped => None,
                }
            })
            .collect();
        for (id, reason) in stale {
            self.remove(id, reason);
        }
    }

    /// One live event: window, recent ring, relay queue, clients.
    fn on_event(&mut self, live: LiveEvent) {
        self.shared.observe(&live);
        if self.shared.publisher.get().is_some()
            && self
                .shared
                .settings
                .fanout
                .as_ref()
                .is_some_and(|f| f.relay_events)
            && live.instance == self.shared.recorder.instance()
        {
            self.queue_relay(live.clone());
        }
        if self.clients.is_empty() {
            self.shared.remember(Recent::Local(live));
        } else {
            let json: Outbound = serde_json::to_string(&*live).unwrap_or_default().into();
            let message: Outbound = format!(r#"{{"type":"event","event":{json}}}"#).into();
            self.deliver(&message);
            self.shared.remember(Recent::Encoded(json));
        }
    }

    /// Queues a local event for relaying, within the per-second cap.
    fn queue_relay(&mut self, live: LiveEvent) {
        let cap = self
            .shared
            .settings
            .fanout
            .as_ref()
            .map_or(0, |f| f.max_relay_events_per_s);
        let second = live.ts.div_euclid(1000);
        if self.relay_budget.0 != second {
            self.relay_budget = (second, 0);
        }
        if self.relay_budget.1 >= cap {
            self.shared.publish_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.relay_budget.1 += 1;
        self.relay.push(live);
    }

    /// Packs queued relay events into payloads under the NOTIFY limit and hands them over.
    fn flush_relay(&mut self) {
        if self.relay.is_empty() {
            return;
        }
        let events = std::mem::take(&mut self.relay);
        let instance = self.shared.recorder.instance().to_owned();
        let jsons: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(&**e).unwrap_or_default())
            .collect();
        let pairs = events
            .iter()
            .map(|e| &**e)
            .zip(jsons.iter().map(String::as_str));
        for payload in pack_events(&instance, pairs) {
            self.publish(payload);
        }
    }

    /// Hands one payload to the publisher task, dropping it if that is backed up.
    fn publish(&self, payload: String) {
        let Some(publisher) = self.shared.publisher.get() else {
            return;
        };
        if publisher.try_send(payload).is_err() {
            self.shared.publish_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The `stats` tick.
    fn tick(&mut self) {
        self.evict_stale();
        let now = crate::pipeline::store::now_ms();
        let stats = self.shared.build_stats(now);
        let text: Outbound = stats.to_string().into();
        *self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(text.clone());
        self.deliver(&text);
        if self.shared.publisher.get().is_some() {
            let instance = self.shared.recorder.instance().to_owned();
            match stats_payload(&instance, stats) {
                Some(payload) => self.publish(payload),
                None => {
                    self.shared.publish_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.publish_health();
    }

    /// The `dashboard` health component.
    fn publish_health(&self) {
        let state = *self
            .shared
            .fanout_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let status = if state == "down" {
            Status::Degraded
        } else {
            Status::Ok
        };
        let mut detail = serde_json::to_value(self.shared.stats()).unwrap_or_default();
        if let Value::Object(map) = &mut detail {
            map.insert("fanout".into(), json!(state));
            map.insert(
                "client_queue".into(),
                json!(self.shared.settings.client_queue),
            );
        }
        self.shared
            .health
            .set_component(HEALTH_COMPONENT, status, detail);
    }

    /// Sends `health` when actor states or component statuses changed.
    fn poll_health(&mut self) {
        let snapshot = self.shared.health.snapshot();
        let key = health_key(&snapshot);
        if key == self.health_key {
            return;
        }
        self.health_key = key;
        let message = json!({
            "type": "health",
            "instance": self.shared.recorder.instance(),
            "ts": crate::pipeline::store::now_ms(),
            "health": snapshot,
        });
        self.deliver(&message.to_string().into());
    }

    /// The first message of a subscription.
    fn snapshot(&self) -> Outbound {
        let shared = &self.shared;
        let health =
            serde_json::to_string(&shared.health.snapshot()).unwrap_or_else(|_| "null".into());
        let stats = shared
            .last_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::with_capacity(16 * 1024);
        out.push_str(r#"{"type":"snapshot","instance":"#);
        out.push_str(&Value::String(shared.recorder.instance().to_owned()).to_string());
        out.push_str(&format!(
            r#","ts":{},"health":{health},"stats":"#,
            crate::pipeline::store::now_ms()
        ));
        out.push_str(stats.as_deref().unwrap_or("null"));
        out.push_str(r#","events":["#);
        {
            let mut recent = shared.recent.lock().unwrap_or_else(PoisonError::into_inner);
            for (i, event) in recent.iter_mut().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Recent::Local(local) = event {
                    let json: Outbound = serde_json::to_string(&**local).unwrap_or_default().into();
                    *event = Recent::Encoded(json);
                }
                if let Recent::Encoded(json) = event {
                    out.push_str(json);
                }
            }
        }
        out.push_str(r#"],"instances":{"#);
        {
            let mut instances = shared
                .instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // An instance silent this long has stopped; it is no longer shown.
            instances.retain(|_, (seen, _)| seen.elapsed() < INSTANCE_TTL);
            for (i, (name, (_, stats))) in instances.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(name.clone()).to_string());
                out.push(':');
                out.push_str(stats);
            }
        }
        out.push_str("}}");
        out.into()
    }
}

/// What clients need to see change: actor rows and component statuses, not counters.
fn health_key(snapshot: &HealthSnapshot) -> String {
    let mut key = serde_json::to_string(&snapshot.actors).unwrap_or_default();
    for (name, c) in &snapshot.components {
        key.push_str(&format!("|{name}={:?}", c.status));
    }
    key
}

/// `{"v":1,"instance","kind":"stats","body":{…}}`, trimmed to fit; `None` if it cannot fit.
fn stats_payload(instance: &str, mut stats: Value) -> Option<String> {
    let wrap = |body: &Value| {
        json!({"v": 1, "instance": instance, "kind": "stats", "body": body}).to_string()
    };
    let mut payload = wrap(&stats);
    for key in ["pipeline", "store", "cache", "ws", "providers"] {
        if payload.len() <= NOTIFY_MAX_PAYLOAD {
            return Some(payload);
        }
        if let Value::Object(map) = &mut stats {
            map.insert(key.to_owned(), json!({"trimmed": true}));
        }
        payload = wrap(&stats);
    }
    (payload.len() <= NOTIFY_MAX_PAYLOAD).then_some(payload)
}

/// Packs events into `{"v":1,"instance","kind":"events","events":[…]}` payloads, each under
/// [`NOTIFY_MAX_PAYLOAD`]. An event too large on its own is sent with its data replaced.
fn pack_events<'a>(
    instance: &str,
    events: impl Iterator<Item = (&'a Event, &'a str)>,
) -> Vec<String> {
    let head = format!(
        r#"{{"v":1,"instance":{},"kind":"events","events":["#,
        Value::String(instance.to_owned())
    );
    let room = NOTIFY_MAX_PAYLOAD.saturating_sub(head.len() + 2);
    let mut payloads = Vec::new();
    let mut current = head.clone();
    let mut count = 0;
    for (event, json) in events {
        let owned;
        let json = if json.len() > room {
            let mut trimmed = event.clone();
            trimmed.data = json!({"truncated": true, "bytes": json.len()});
            owned = serde_json::to_string(&trimmed).unwrap_or_default();
            owned.as_str()
        } else {
            json
        };
        if json.is_empty() || json.len() > room {
            continue;
        }
        if count > 0 && current.len() + 1 + json.len() + 2 > NOTIFY_MAX_PAYLOAD {
            current.push_str("]}");
            payloads.push(std::mem::replace(&mut current, head.clone()));
            count = 0;
        }
        if count > 0 {
            current.push(',');
        }
        current.push_str(json);
        count += 1;
    }
    if count > 0 {
        current.push_str("]}");
        payloads.push(current);
    }
    payloads
}

/// Starts the fan-out thread: a current-thread runtime running the NOTIFY publisher and the
/// LISTEN loop until `shared` is dropped.
fn start_fanout(shared: &Arc<DashboardShared>, fanout: FanoutSettings) {
    let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let weak = Arc::downgrade(shared);
    let started = std::thread::Builder::new()
        .name("dashboard-fanout".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!(%error, "dashboard fan-out disabled: no runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                tokio::select! {
                    () = publish_loop(weak.clone(), fanout.clone(), rx) => {}
                    () = listen_loop(weak, fanout) => {}
                    _ = stop_rx => {}
                }
            });
        });
    match started {
        Ok(_) => {
            let _ = shared.publisher.set(tx);
            let _ = shared.fanout_stop.set(stop_tx);
        }
        Err(error) => {
            tracing::warn!(%error, "dashboard fan-out disabled: cannot start its thread");
            *shared
                .fanout_state
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = "down";
        }
    }
}

/// Sends payloads with `pg_notify` over one pooled connection. A failed payload is dropped
/// (stats are re-sent every tick; relayed events are best effort, history has them).
async fn publish_loop(
    shared: Weak<DashboardShared>,
    fanout: FanoutSettings,
    mut rx: mpsc::Receiver<String>,
) {
    use sqlx::postgres::PgPoolOptions;
    let pool = match PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(FANOUT_ACQUIRE_TIMEOUT)
        .connect_lazy(fanout.database_url.expose_secret())
    {
        Ok(pool) => pool,
        Err(error) => {
            tracing::warn!(%error, "dashboard fan-out disabled: invalid database URL");
            return;
        }
    };
    let mut failures = FailureLog::new("dashboard notify");
    while let Some(payload) = rx.recv().await {
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&fanout.channel)
            .bind(&payload)
            .execute(&pool)
            .await;
        let Some(shared) = shared.upgrade() else {
            break;
        };
        match sent {
            Ok(_) => {
                failures.success();
                shared.published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                failures.failure(&error);
                shared.publish_dropped.fetch_add(1, Ordering::Relaxed);
                // Drop what piled up meanwhile rather than replaying stale stats.
                while rx.try_recv().is_ok() {
                    shared.publish_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    pool.close().await;
}

/// Listens for other instances' payloads and forwards them to local clients. After a lost
/// connection is re-established, clients get `resync` since the last message received.
async fn listen_loop(weak: Weak<DashboardShared>, fanout: FanoutSettings) {
    use sqlx::postgres::PgListener;
    let Some(own) = weak.upgrade().map(|s| s.recorder.instance().to_owned()) else {
        return;
    };
    let set_state = |state: &'static str| {
        if let Some(shared) = weak.upgrade() {
            *shared
                .fanout_state
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = state;
        }
    };
    let mut failures = FailureLog::new("dashboard listener");
    let mut backoff = FANOUT_RETRY.start();
    // Unix ms since when the feed is known incomplete; `Some` after an interruption.
    let mut gap_since: Option<i64> = None;
    loop {
        let connected = async {
            let mut listener = PgListener::connect(fanout.database_url.expose_secret()).await?;
            listener.listen(&fanout.channel).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(error) => {
                failures.failure(&error);
                set_state("down");
                gap_since.get_or_insert_with(crate::pipeline::store::now_ms);
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        failures.success();
        backoff.reset();
        set_state("listening");
        if let Some(since) = gap_since.take() {
            resync(&weak, since).await;
        }
        // Unix ms of the last notification: nothing is known lost before it.
        let mut last_seen = crate::pipeline::store::now_ms();
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    last_seen = crate::pipeline::store::now_ms();
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    forward(&shared, &own, notification.payload()).await;
                }
                Ok(None) => {
                    // Lost and already re-established (eager reconnect): notifications in
                    // between are gone.
                    resync(&weak, last_seen).await;
                }
                Err(error) => {
                    failures.failure(&error);
                    set_state("down");
                    gap_since = Some(last_seen);
                    break;
                }
            }
        }
        drop(listener);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Sends one message to local clients through the broadcaster's current address.
async fn publish_local(shared: &DashboardShared, message: Outbound) {
    if let Some(addr) = shared.slot.get() {
        let _ = addr.send(Publish { message }).await;
    }
}

/// Tells local clients to refill from the history API.
async fn resync(weak: &Weak<DashboardShared>, since: i64) {
    let Some(shared) = weak.upgrade() else {
        return;
    };
    let message =
        json!({"type": "resync", "since": since, "reason": "cross-instance feed reconnected"});
    publish_local(&shared, message.to_string().into()).await;
}

/// Handles one payload from the channel: other instances' stats and events go to clients.
async fn forward(shared: &DashboardShared, own: &str, payload: &str) {
    let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(payload) else {
        return;
    };
    let instance = msg
        .get("instance")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if instance.is_empty() || instance == own {
        return;
    }
    shared.received.fetch_add(1, Ordering::Relaxed);
    match msg.get("kind").and_then(Value::as_str) {
        Some("stats") => {
            let Some(body) = msg.remove("body") else {
                return;
            };
            let text: Outbound = body.to_string().into();
            shared
                .instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(instance, (Instant::now(), text.clone()));
            publish_local(shared, text).await;
        }
        Some("events") => {
            let Some(Value::Array(events)) = msg.remove("events") else {
                return;
            };
            for event in events {
                let json: Outbound = event.to_string().into();
                shared.remember(Recent::Encoded(json.clone()));
                let message: Outbound = format!(r#"{{"type":"event","event":{json}}}"#).into();
                publish_local(shared, message).await;
            }
        }
        _ => {}
    }
}

impl Actor for DashboardBroadcast {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        let live = self.shared.live.clone();
        let stream = futures_util::stream::unfold(
            None::<OwnedMutexGuard<broadcast::Receiver<LiveEvent>>>,
            move |guard| {
                let live = live.clone();
                async move {
                    let mut guard = match guard {
                        Some(guard) => guard,
                        None => live.lock_owned().await,
                    };
                    let batch = next_batch(&mut guard).await?;
                    Some((batch, Some(guard)))
                }
            },
        );
        ctx.add_stream(stream);
        ctx.run_interval(self.shared.settings.tick, |act, _| act.tick());
        ctx.run_interval(HEALTH_POLL, |act, _| act.poll_health());
        if self.shared.publisher.get().is_some() {
            ctx.run_interval(RELAY_INTERVAL, |act, _| act.flush_relay());
        }
        self.health_key = health_key(&self.shared.health.snapshot());
        self.publish_health();
    }
}

crate::supervised_child!(DashboardBroadcast);

/// Waits for the next live event, lets more gather for [`LIVE_BATCH_WINDOW`] unless a full
/// batch is already waiting, and takes up to [`LIVE_BATCH_MAX`]. While it sleeps the
/// receiver is not registered, so recording does not wake this thread; with a backlog it
/// only yields once, so the actor serves its mailbox between batches without falling
/// behind. `None` once the recorder is gone.
async fn next_batch(rx: &mut broadcast::Receiver<LiveEvent>) -> Option<LiveBatch> {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut batch = LiveBatch::default();
    match rx.recv().await {
        Ok(event) => batch.events.push(event),
        Err(RecvError::Lagged(n)) => batch.missed += n,
        Err(RecvError::Closed) => return None,
    }
    if rx.len() + 1 < LIVE_BATCH_MAX {
        tokio::time::sleep(LIVE_BATCH_WINDOW).await;
    } else {
        tokio::task::yield_now().await;
    }
    while batch.events.len() < LIVE_BATCH_MAX {
        match rx.try_recv() {
            Ok(event) => batch.events.push(event),
            Err(TryRecvError::Lagged(n)) => batch.missed += n,
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
    }
    Some(batch)
}

impl StreamHandler<LiveBatch> for DashboardBroadcast {
    fn handle(&mut self, batch: LiveBatch, _: &mut Self::Context) {
        if batch.missed > 0 {
            // The broadcaster itself fell behind the recorder: every client missed these.
            let n = batch.missed;
            self.shared.missed.fetch_add(n, Ordering::Relaxed);
            let notice: Outbound = format!(r#"{{"type":"lagged","dropped":{n}}}"#).into();
            self.deliver(&notice);
        }
        for live in batch.events {
            self.on_event(live);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The recorder is gone (process shutdown); keep serving ticks until stopped.
    }
}

impl Handler<Subscribe> for DashboardBroadcast {
    type Result = Result<ClientId, DashboardError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        msg.queue
            .try_send(self.snapshot())
            .map_err(|_| DashboardError::QueueClosed)?;
        let id = self.next_id;
        self.next_id += 1;
        self.clients.insert(
            id,
            Client {
                queue: msg.queue,
                evict: Some(msg.evict),
                dropped: 0,
                full_since: None,
            },
        );
        self.shared
            .clients
            .store(self.clients.len(), Ordering::Relaxed);
        Ok(id)
    }
}

impl Handler<Unsubscribe> for DashboardBroadcast {
    type Result = Result<(), DashboardError>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) -> Self::Result {
        if !self.clients.contains_key(&msg.id) {
            return Err(DashboardError::UnknownClient(msg.id));
        }
        self.remove(msg.id, None);
        Ok(())
    }
}

impl Handler<Publish> for DashboardBroadcast {
    type Result = Result<usize, DashboardError>;

    fn handle(&mut self, msg: Publish, _: &mut Self::Context) -> Self::Result {
        Ok(self.deliver(&msg.message))
    }
}

impl Handler<GetStats> for DashboardBroadcast {
    type Result = Result<DashboardStats, DashboardError>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        Ok(self.shared.stats())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn setup(settings: DashboardSettings) -> (Addr<DashboardBroadcast>, Recorder, HealthBoard) {
        let recorder = Recorder::new("t", 1000);
        let health = HealthBoard::new();
        let shared = DashboardShared::new(settings, recorder.clone(), health.clone());
        (DashboardBroadcast::new(shared).start(), recorder, health)
    }

    /// Subscribes a client with a queue of `capacity`: its queue and its eviction channel.
    async fn subscribe(
        addr: &Addr<DashboardBroadcast>,
        capacity: usize,
    ) -> (mpsc::Receiver<Outbound>, oneshot::Receiver<String>) {
        let (queue, rx) = mpsc::channel(capacity);
        let (evict, erx) = oneshot::channel();
        addr.send(Subscribe { queue, evict })
            .await
            .unwrap()
            .unwrap();
        (rx, erx)
    }

    async fn next(rx: &mut mpsc::Receiver<Outbound>) -> Value {
        let text = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .unwrap()
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    async fn next_of(rx: &mut mpsc::Receiver<Outbound>, kind: &str) -> Value {
        loop {
            let msg = next(rx).await;
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    #[actix_rt::test]
    async fn snapshot_then_events_then_stats_with_percentiles() {
        let settings = DashboardSettings {
            tick: Duration::from_millis(100),
            ..DashboardSettings::default()
        };
        let (addr, recorder, _) = setup(settings);
        recorder.record("x", "early.event", json!({}));
        // Let the actor read the early event first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (mut rx, _erx) = subscribe(&addr, 64).await;
        let snapshot = next(&mut rx).await;
        assert_eq!(snapshot["type"], "snapshot");
        assert_eq!(snapshot["events"][0]["type"], "early.event");
        for n in 1..=100 {
            recorder.record(
                "provider",
                "provider.request",
                json!({"provider": "kimi", "ok": n % 10 != 0, "latency_ms": f64::from(n)}),
            );
        }
        let event = next_of(&mut rx, "event").await;
        assert_eq!(event["event"]["type"], "provider.request");
        let stats = next_of(&mut rx, "stats").await;
        let kimi = &stats["providers"]["kimi"];
        assert_eq!(kimi["requests"], 100);
        assert_eq!(kimi["errors"], 10);
        let p99 = kimi["p99_ms"].as_f64().unwrap();
        assert!((98.0..=100.5).contains(&p99), "p99 {p99}");
        let p50 = kimi["p50_ms"].as_f64().unwrap();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
    }

    #[actix_rt::test]
    async fn slow_client_is_lagged_then_evicted_and_others_keep_receiving() {
        let settings = DashboardSettings {
            tick: Duration::from_secs(3600),
            client_queue: 8,
            evict_after_dropped: 50,
            ..DashboardSettings::default()
        };
        let (addr, recorder, _) = setup(settings);
        let (mut slow_rx, slow_erx) = subscribe(&addr, 8).await;
        let (mut fast_rx, _fast_erx) = subscribe(&addr, 8).await;
        next(&mut fast_rx).await;
        // 20 events: the slow client's queue (8, snapshot included) overflows.
        for n in 0..20 {
            recorder.record("s", "x", json!({"n": n}));
            let msg = next(&mut fast_rx).await;
            assert_eq!(msg["event"]["data"]["n"], n);
        }
        // Drain the slow client: snapshot + 7 events, then a lagged notice on the next event.
        for _ in 0..8 {
            next(&mut slow_rx).await;
        }
        recorder.record("s", "x", json!({"n": 20}));
        let lagged = next(&mut slow_rx).await;
        assert_eq!(lagged["type"], "lagged");
        assert_eq!(lagged["dropped"], 13);
        assert_eq!(next(&mut slow_rx).await["event"]["data"]["n"], 20);
        next(&mut fast_rx).await;
        // Now never read again: after 50 drops in a row it is evicted with a reason.
        for n in 0..80 {
            recorder.record("s", "x", json!({"n": n}));
            next(&mut fast_rx).await;
        }
        let reason = tokio::time::timeout(Duration::from_secs(2), slow_erx)
            .await
            .unwrap()
            .unwrap();
        assert!(reason.contains("too far behind"), "{reason}");
        let stats = addr.send(GetStats).await.unwrap().unwrap();
        assert_eq!(stats.clients, 1);
        assert_eq!(stats.evicted, 1);
    }

    #[actix_rt::test]
    async fn health_changes_are_sent() {
        let (addr, _, health) = setup(DashboardSettings::default());
        let (mut rx, _erx) = subscribe(&addr, 64).await;
        next(&mut rx).await;
        health.update_actor("cache", |a| a.restarts = 3);
        let msg = next_of(&mut rx, "health").await;
        assert_eq!(msg["health"]["actors"]["cache"]["restarts"], 3);
    }

    #[actix_rt::test]
    async fn a_burst_larger_than_one_batch_arrives_whole_and_in_order() {
        let (addr, recorder, _) = setup(DashboardSettings::default());
        let (mut rx, _erx) = subscribe(&addr, 4 * LIVE_BATCH_MAX).await;
        assert_eq!(next(&mut rx).await["type"], "snapshot");
        let total = LIVE_BATCH_MAX * 3 / 2;
        for n in 0..total {
            recorder.record("x", "burst", json!({ "n": n }));
        }
        let mut seen = Vec::new();
        while seen.len() < total {
            let msg = next(&mut rx).await;
            assert_ne!(msg["type"], "lagged", "nothing may be skipped: {msg}");
            if msg["type"] == "event" {
                seen.push(msg["event"]["data"]["n"].as_u64().unwrap());
            }
        }
        assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
    }

    #[test]
    fn notify_payloads_stay_under_the_limit() {
        let big = "x".repeat(3000);
        let events: Vec<Event> = (0..20)
            .map(|n| Event::new("a", "s", "t", json!({"n": n, "pad": big})))
            .chain(std::iter::once(Event::new(
                "a",
                "s",
                "huge",
                json!({"pad": "y".repeat(20_000)}),
            )))
            .collect();
        let jsons: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        let payloads = pack_events("a", events.iter().zip(jsons.iter().map(String::as_str)));
        assert!(payloads.iter().all(|p| p.len() <= NOTIFY_MAX_PAYLOAD));
        let mut seen = 0;
        for p in &payloads {
            let v: Value = serde_json::from_str(p).unwrap();
            seen += v["events"].as_array().unwrap().len();
        }
        assert_eq!(seen, 21, "every event is sent; the huge one truncated");
        assert!(payloads.last().unwrap().contains("truncated"));
        let mut providers = Map::new();
        for n in 0..200 {
            providers.insert(
                format!("provider-{n}"),
                json!({"rate": 1.0, "pad": "z".repeat(50)}),
            );
        }
        let stats = json!({"type": "stats", "providers": providers, "pipeline": {"a": 1}});
        let payload = stats_payload("a", stats).unwrap();
        assert!(payload.len() <= NOTIFY_MAX_PAYLOAD);
        assert!(payload.contains("trimmed"));
    }
}
