//! The monitoring event (DESIGN §5): `{id, ts, instance, source, type, data}`.
//!
//! Everything that happens — an upstream attempt, a cache lookup, a connection, a breaker
//! change, an actor fault — becomes an [`Event`] through
//! [`Recorder::record`](crate::pipeline::recorder::Recorder::record), which writes it to the
//! journal and hands it to live subscribers as a [`LiveEvent`].

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// One monitoring event: `{id, ts, instance, source, type, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7 assigned at recording time; the idempotency key in every store.
    pub id: Uuid,
    /// Milliseconds since the Unix epoch, from the same clock as `id`.
    pub ts: i64,
    /// The process that recorded it, so several instances can share one database.
    pub instance: String,
    /// The component that recorded it (`provider`, `cache`, `ws`, `supervisor`, …).
    pub source: String,
    /// What happened, as `noun.verb` (`request`, `actor.restarted`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific fields (`ok`, `latency_ms`, `error_kind`, `provider`, `model`, …).
    pub data: Value,
}

impl Event {
    /// A new event stamped now. Ids are UUIDv7 from a process-wide monotonic generator, so
    /// they sort in recording order even within one millisecond (keyset pagination and
    /// replay order rely on it); `ts` is the id's own millisecond.
    pub fn new(instance: &str, source: &str, kind: &str, data: Value) -> Self {
        let id = Uuid::now_v7();
        let ts = id
            .get_timestamp()
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
                    + i64::from(nanos / 1_000_000)
            })
            .unwrap_or_else(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
            });
        Self {
            id,
            ts,
            instance: instance.to_owned(),
            source: source.to_owned(),
            kind: kind.to_owned(),
            data,
        }
    }

    /// `data.ok`, treating a missing field as success.
    pub fn ok(&self) -> bool {
        self.data.get("ok").and_then(Value::as_bool).unwrap_or(true)
    }

    /// `data.latency_ms`, when present.
    pub fn latency_ms(&self) -> Option<f64> {
        self.data.get("latency_ms").and_then(Value::as_f64)
    }
}

/// An event as live subscribers receive it: one shared copy for every subscriber. It is
/// not serialised here: recording stays cheap on the request path, and the subscriber (the
/// dashboard) encodes it only if someone is watching.
pub type LiveEvent = Arc<Event>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_monotonic_within_a_millisecond() {
        let events: Vec<Event> = (0..10_000)
            .map(|_| Event::new("t", "s", "k", Value::Null))
            .collect();
        for pair in events.windows(2) {
            assert!(pair[0].id < pair[1].id);
            assert!(pair[0].ts <= pair[1].ts);
        }
    }
}
