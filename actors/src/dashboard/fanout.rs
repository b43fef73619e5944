//! Cross-instance fan-out through PostgreSQL LISTEN/NOTIFY ([`FanoutSettings`]): a NOTIFY
//! publisher for this instance's stats and relayed events, and a LISTEN loop that forwards
//! other instances' payloads to the local clients (with a `resync` after an interruption).
//! It runs on its own thread and current-thread runtime (`exai-fanout`) and stops when
//! the broadcaster's shared state is dropped.
//!
//! It reaches that state through [`Local`], which the broadcaster implements, so this module
//! does not depend on the actor.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Instant;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::settings::{
    FANOUT_ACQUIRE_TIMEOUT, FANOUT_RETRY, FanoutSettings, NOTIFY_MAX_PAYLOAD, Outbound,
    PUBLISH_QUEUE,
};
use crate::pipeline::event::Event;
use crate::policy::failure_log::FailureLog;

/// What the fan-out needs of the broadcaster's shared state.
pub(super) trait Local: Send + Sync + 'static {
    /// This instance's name.
    fn instance(&self) -> &str;
    /// The fan-out's own state and counters.
    fn fanout(&self) -> &FanoutState;
    /// Keeps an event relayed from another instance for snapshots.
    fn remember_relayed(&self, json: Outbound);
    /// Sends one message to the local clients through the broadcaster's current address.
    fn publish_local(&self, message: Outbound) -> impl Future<Output = ()>;
}

/// The fan-out's state, kept in the broadcaster's shared state.
pub(super) struct FanoutState {
    /// Listener state for `/health` (`off`, `connecting`, `listening`, `down`).
    pub(super) state: Mutex<&'static str>,
    /// The latest `stats` message of every other instance, by instance.
    pub(super) instances: Mutex<BTreeMap<String, (Instant, Outbound)>>,
    /// Payloads published.
    pub(super) published: AtomicU64,
    /// Payloads or events not published (queue full, too large, over the relay cap, failed).
    pub(super) publish_dropped: AtomicU64,
    /// Messages from other instances.
    pub(super) received: AtomicU64,
    /// Hand-off to the NOTIFY publisher, when fanning out.
    pub(super) publisher: OnceLock<mpsc::Sender<String>>,
    /// Dropped with this state, which stops the fan-out thread.
    pub(super) stop: OnceLock<oneshot::Sender<()>>,
}

impl FanoutState {
    /// Idle state: `connecting` when a fan-out is configured, else `off`.
    pub(super) fn new(configured: bool) -> Self {
        Self {
            state: Mutex::new(if configured { "connecting" } else { "off" }),
            instances: Mutex::new(BTreeMap::new()),
            published: AtomicU64::new(0),
            publish_dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            publisher: OnceLock::new(),
            stop: OnceLock::new(),
        }
    }
}

/// `{"v":1,"instance","kind":"stats","body":{…}}`, trimmed to fit; `None` if it cannot fit.
pub(super) fn stats_payload(instance: &str, mut stats: Value) -> Option<String> {
    let wrap = |body: &Value| {
        json!({"v": 1, "instance": instance, "kind": "stats", "body": body}).to_string()
    };
    let mut payload = wrap(&stats);
    // What other instances' dashboards can best do without goes first; the client-facing
    // totals (`requests` without its per-model table) go last.
    for key in [
        "pipeline",
        "store",
        "cache",
        "ws",
        "requests.models",
        "providers",
    ] {
        if payload.len() <= NOTIFY_MAX_PAYLOAD {
            return Some(payload);
        }
        let target = match key.split_once('.') {
            Some((outer, inner)) => stats.get_mut(outer).map(|o| (o, inner)),
            None => Some((&mut stats, key)),
        };
        if let Some((Value::Object(map), field)) = target {
            map.insert(field.to_owned(), json!({"trimmed": true}));
        }
        payload = wrap(&stats);
    }
    (payload.len() <= NOTIFY_MAX_PAYLOAD).then_some(payload)
}

/// Packs events into `{"v":1,"instance","kind":"events","events":[…]}` payloads, each under
/// [`NOTIFY_MAX_PAYLOAD`]. An event too large on its own is sent with its data replaced.
pub(super) fn pack_events<'a>(
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
pub(super) fn start<S: Local>(shared: &Arc<S>, fanout: FanoutSettings) {
    let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let weak = Arc::downgrade(shared);
    let started = std::thread::Builder::new()
        .name("exai-fanout".into())
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
            let _ = shared.fanout().publisher.set(tx);
            let _ = shared.fanout().stop.set(stop_tx);
        }
        Err(error) => {
            tracing::warn!(%error, "dashboard fan-out disabled: cannot start its thread");
            *shared
                .fanout()
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = "down";
        }
    }
}

/// Sends payloads with `pg_notify` over one pooled connection. A failed payload is dropped
/// (stats are re-sent every tick; relayed events are best effort, history has them).
async fn publish_loop<S: Local>(
    shared: Weak<S>,
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
                shared.fanout().published.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                failures.failure(&error);
                shared
                    .fanout()
                    .publish_dropped
                    .fetch_add(1, Ordering::Relaxed);
                // Drop what piled up meanwhile rather than replaying stale stats.
                while rx.try_recv().is_ok() {
                    shared
                        .fanout()
                        .publish_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    pool.close().await;
}

/// Listens for other instances' payloads and forwards them to local clients. After a lost
/// connection is re-established, clients get `resync` since the last message received.
async fn listen_loop<S: Local>(weak: Weak<S>, fanout: FanoutSettings) {
    use sqlx::postgres::PgListener;
    let Some(own) = weak.upgrade().map(|s| s.instance().to_owned()) else {
        return;
    };
    let set_state = |state: &'static str| {
        if let Some(shared) = weak.upgrade() {
            *shared
                .fanout()
                .state
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
                    forward(&*shared, &own, notification.payload()).await;
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

/// Tells local clients to refill from the history API.
async fn resync<S: Local>(weak: &Weak<S>, since: i64) {
    let Some(shared) = weak.upgrade() else {
        return;
    };
    let message =
        json!({"type": "resync", "since": since, "reason": "cross-instance feed reconnected"});
    shared.publish_local(message.to_string().into()).await;
}

/// Handles one payload from the channel: other instances' stats and events go to clients.
async fn forward<S: Local>(shared: &S, own: &str, payload: &str) {
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
    shared.fanout().received.fetch_add(1, Ordering::Relaxed);
    match msg.get("kind").and_then(Value::as_str) {
        Some("stats") => {
            let Some(body) = msg.remove("body") else {
                return;
            };
            let text: Outbound = body.to_string().into();
            shared
                .fanout()
                .instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(instance, (Instant::now(), text.clone()));
            shared.publish_local(text).await;
        }
        Some("events") => {
            let Some(Value::Array(events)) = msg.remove("events") else {
                return;
            };
            for event in events {
                let json: Outbound = event.to_string().into();
                shared.remember_relayed(json.clone());
                let message: Outbound = format!(r#"{{"type":"event","event":{json}}}"#).into();
                shared.publish_local(message).await;
            }
        }
        _ => {}
    }
}
