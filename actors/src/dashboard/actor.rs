//! The broadcaster actor: the client table and the live stream's fan-out to local sessions.
//! It takes the recorder's live stream in batches, delivers each event to every client
//! (`clients.rs` decides drops and evictions), sends `stats` every tick (`stats.rs` builds
//! it) and `health` on change, and relays to other instances through `fanout.rs`.
//!
//! A restart resets the client table only: the live receiver, the recent-event ring, the
//! window, the counters and the fan-out live in [`DashboardShared`], which the child factory
//! captures.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix::prelude::*;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedMutexGuard, broadcast, mpsc, oneshot};

use super::clients::{self, Client, Offer, Tally};
use super::fanout::{self, FanoutState, Local, pack_events, stats_payload};
use super::settings::{
    CHILD_NAME, ClientId, DashboardError, DashboardSettings, DashboardStats, EVENT_SOURCE,
    HEALTH_COMPONENT, HEALTH_POLL, INSTANCE_TTL, LIVE_BATCH_WINDOW, MAILBOX_CAPACITY, Outbound,
    RELAY_INTERVAL,
};
use super::stats::LiveStats;
use crate::health::{HealthBoard, HealthSnapshot, Status};
use crate::pipeline::event::{Event, LiveEvent};
use crate::pipeline::recorder::Recorder;
use crate::supervisor::{ChildSpec, Slot};

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

// ---------------------------------------------------------------------------------------
// State that survives a restart.

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
    /// The sliding window behind the `stats` tick.
    live_stats: LiveStats,
    /// The latest local `stats` message.
    last_stats: Mutex<Option<Outbound>>,
    /// Sessions subscribed now (written by the actor, read by `/health` and stats).
    clients: AtomicUsize,
    /// Counters, see [`DashboardStats`].
    dropped: AtomicU64,
    /// `lagged` notices sent.
    lagged: AtomicU64,
    /// Evictions.
    evicted: AtomicU64,
    /// Events the broadcaster missed.
    missed: AtomicU64,
    /// The broadcaster's current address; the fan-out thread and sessions reach it here.
    slot: Slot<DashboardBroadcast>,
    /// The cross-instance fan-out's state; dropping it stops the fan-out thread.
    fanout: FanoutState,
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
        let live_stats = LiveStats::new(settings.latency_window);
        let fanout = FanoutState::new(settings.fanout.is_some());
        let shared = Arc::new(Self {
            settings,
            recorder,
            health,
            live,
            recent: Mutex::new(VecDeque::new()),
            live_stats,
            last_stats: Mutex::new(None),
            clients: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            slot: Slot::new(),
            fanout,
        });
        if let Some(fanout) = shared.settings.fanout.clone() {
            fanout::start(&shared, fanout);
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
            published: self.fanout.published.load(Ordering::Relaxed),
            publish_dropped: self.fanout.publish_dropped.load(Ordering::Relaxed),
            received: self.fanout.received.load(Ordering::Relaxed),
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

    /// Offers `message` to every client; returns how many queued it.
    fn deliver(&mut self, message: &Outbound) -> usize {
        let now = Instant::now();
        let mut queued = 0;
        let mut gone = Vec::new();
        let tally = Tally {
            settings: &self.shared.settings,
            dropped: &self.shared.dropped,
            lagged: &self.shared.lagged,
        };
        for (id, client) in &mut self.clients {
            match clients::offer(&tally, client, message, now) {
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
                match clients::verdict(&self.shared.settings, c, now, c.full_since?) {
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
        self.shared.live_stats.observe(&live);
        if self.shared.fanout.publisher.get().is_some()
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
            let (message, json) = event_message(&live);
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
            self.shared
                .fanout
                .publish_dropped
                .fetch_add(1, Ordering::Relaxed);
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
            .map(|e| serde_json::to_string(&e.encoded()).unwrap_or_default())
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
        let Some(publisher) = self.shared.fanout.publisher.get() else {
            return;
        };
        if publisher.try_send(payload).is_err() {
            self.shared
                .fanout
                .publish_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The `stats` tick.
    fn tick(&mut self) {
        self.evict_stale();
        let now = crate::pipeline::store::now_ms();
        let shared = &self.shared;
        let stats = shared.live_stats.build(
            now,
            &shared.health,
            &shared.recorder,
            shared.clients.load(Ordering::Relaxed),
            shared.stats(),
        );
        let text: Outbound = stats.to_string().into();
        *self
            .shared
            .last_stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(text.clone());
        self.deliver(&text);
        if self.shared.fanout.publisher.get().is_some() {
            let instance = self.shared.recorder.instance().to_owned();
            match stats_payload(&instance, stats) {
                Some(payload) => self.publish(payload),
                None => {
                    self.shared
                        .fanout
                        .publish_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.publish_health();
    }

    /// The `dashboard` health component.
    fn publish_health(&self) {
        let state = *self
            .shared
            .fanout
            .state
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
                    let json: Outbound = serde_json::to_string(&local.encoded())
                        .unwrap_or_default()
                        .into();
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
                .fanout
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

/// `{"type":"event","event":…}` for one local event, encoded once, and the event's own JSON
/// as a slice of the same buffer (for the recent-event ring).
fn event_message(event: &Event) -> (Outbound, Outbound) {
    const HEAD: &str = r#"{"type":"event","event":"#;
    let mut buf = Vec::with_capacity(HEAD.len() + 256);
    buf.extend_from_slice(HEAD.as_bytes());
    if serde_json::to_writer(&mut buf, &event.encoded()).is_err() {
        buf.truncate(HEAD.len());
        buf.extend_from_slice(b"null");
    }
    buf.push(b'}');
    // serde_json writes UTF-8; the check cannot fail.
    let message = Outbound::from(String::from_utf8(buf).unwrap_or_default());
    let json = match message.get(HEAD.len()..message.len().saturating_sub(1)) {
        Some(json) => message.slice_ref(json),
        None => Outbound::from_static("null"),
    };
    (message, json)
}

/// What clients need to see change: actor rows and component statuses, not counters.
fn health_key(snapshot: &HealthSnapshot) -> String {
    let mut key = serde_json::to_string(&snapshot.actors).unwrap_or_default();
    for (name, c) in &snapshot.components {
        key.push_str(&format!("|{name}={:?}", c.status));
    }
    key
}

impl Local for DashboardShared {
    fn instance(&self) -> &str {
        self.recorder.instance()
    }

    fn fanout(&self) -> &FanoutState {
        &self.fanout
    }

    fn remember_relayed(&self, json: Outbound) {
        self.remember(Recent::Encoded(json));
    }

    async fn publish_local(&self, message: Outbound) {
        if let Some(addr) = self.slot.get() {
            let _ = addr.send(Publish { message }).await;
        }
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
        if self.shared.fanout.publisher.get().is_some() {
            ctx.run_interval(RELAY_INTERVAL, |act, _| act.flush_relay());
        }
        self.health_key = health_key(&self.shared.health.snapshot());
        self.publish_health();
    }
}

crate::supervised_child!(DashboardBroadcast);

/// Most live events taken in one batch. One batch is handled per poll of the actor, so this
/// times the number of clients bounds how long the actor is busy before it serves its
/// mailbox (subscriptions, the supervisor's ping) again.
pub(super) const LIVE_BATCH_MAX: usize = 128;

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
