//! The broadcaster's names, limits and defaults, its settings, its error and its counters.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::policy::retry::RetryPolicy;

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
/// How long live events gather after the first one before the broadcaster takes them: one
/// wake-up per burst instead of one per event, at the cost of at most this much delay.
pub const LIVE_BATCH_WINDOW: Duration = Duration::from_millis(5);

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

/// What [`GetStats`](super::GetStats) answers.
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
