//! The dashboard broadcaster: fans the one event stream out to the live dashboard sessions
//! (DESIGN §3, §7 "Dashboard stream").
//!
//! **Fed by** [`Recorder::subscribe`] — the same stream the flusher persists; there is no second
//! collector. The broadcaster takes the stream in batches: it wakes on the first event, lets
//! more gather for [`LIVE_BATCH_WINDOW`], then takes them all, so recording threads never wake
//! it once per event. Events arrive as shared, unserialised [`LiveEvent`]s; an event is encoded
//! at most once for clients and snapshots: when it arrives if a client is subscribed (wrapped
//! into an `event` message whose one shared buffer goes to every client), otherwise by the first
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
//! **Ticks:** `stats` every [`DashboardSettings::tick`] (the client-facing figures of the
//! `request` events over a sliding window — rates by status, latency and TTFT percentiles,
//! per-model tokens and cost — per-provider figures of the same calls, cache, sessions,
//! pipeline, health summary); `health` whenever the [`HealthBoard`]'s actors or component
//! statuses change (polled every [`HEALTH_POLL`]).
//!
//! **Messages** (server → client JSON, one text frame each):
//! - `{"type":"snapshot","instance","ts","health":{…},"stats":{…}|null,"events":[…],"instances":{name: stats}}`
//!   — first message of every subscription: health, latest stats, recent events (oldest
//!   first), latest stats of every other instance seen;
//! - `{"type":"event","event":{id,ts,instance,source,type,data}}` — one per live event (local,
//!   or relayed from another instance; `event.instance` says which);
//! - `{"type":"stats","instance","ts","window_s","events":{…},"requests":{rate,error_rate,by_class,by_status,window_requests,window_errors,p50_ms,p95_ms,p99_ms,ttft_p50_ms,…,models:{model:{requests,errors,p95_ms,prompt_tokens,completion_tokens,cost_usd}}},"providers":{name:{rate,requests,errors,p50_ms,p95_ms,p99_ms,breaker,model_breakers,…}},"cache":{…},"ws":{…},"pipeline":{…},"dashboard":{…},"health":{status}}`;
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
//! The fan-out runs on its own thread and runtime (`exai-fanout`), reaching the actor
//! through its [`Slot`], and stops when [`DashboardShared`] is dropped.
//!
//! **Restart** resets the client table only (sessions hold the [`Slot`] and re-subscribe when
//! their queue closes). The live-stream receiver, the recent-event ring, the latency window,
//! the counters and the fan-out live in [`DashboardShared`], which the factory captures, so
//! events recorded during a restart are still delivered.
//!
//! **Memory per client** is bounded in user space by its queue (`client_queue` shared
//! message buffers) plus the HTTP layer's write buffer; a client that stops reading can
//! additionally pin its socket's kernel send buffer (up to `net.ipv4.tcp_wmem`'s maximum)
//! until it reads again (and then finds the close frame) or its connection dies; the
//! broadcaster forgets it at eviction.
//!
//! **Health:** component `dashboard` (clients, lagged and evicted totals, fan-out state).
//!
//! **Files:** `settings.rs` (names, limits, settings, counters), `actor.rs` (the actor, its
//! messages and [`DashboardShared`]), `clients.rs` (delivery and eviction), `stats.rs` (the
//! sliding window and the `stats` message), `requests.rs` (the client-facing window of
//! `request` events) and `fanout.rs` (LISTEN/NOTIFY).
//!
//! [`Recorder::subscribe`]: crate::pipeline::recorder::Recorder::subscribe
//! [`LiveEvent`]: crate::pipeline::event::LiveEvent
//! [`HealthBoard`]: crate::health::HealthBoard
//! [`Slot`]: crate::supervisor::Slot

mod actor;
mod clients;
mod fanout;
pub mod requests;
mod settings;
mod stats;

pub use actor::{DashboardBroadcast, DashboardShared, Publish, Subscribe, Unsubscribe};
pub use settings::*;

#[cfg(test)]
mod tests;
