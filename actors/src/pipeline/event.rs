//! The monitoring event (DESIGN §5): `{id, ts, instance, source, type, data}`.
//!
//! Everything that happens — an upstream attempt, a cache lookup, a connection, a breaker
//! change, an actor fault — becomes an [`Event`] through
//! [`Recorder::record`](crate::pipeline::recorder::Recorder::record), which writes it to the
//! journal and hands it to live subscribers as a [`LiveEvent`].

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
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
    /// `data` as JSON text, encoded once by the first that needs it (the journal, at
    /// recording time) and reused by the store.
    #[serde(skip)]
    encoded: EncodedData,
}

/// The JSON text of an event's `data`, once computed. An event is shared (`Arc`) and not
/// changed once recorded, so the text stays true for it; a clone, which may be changed,
/// starts without one. It takes no part in equality.
#[derive(Default)]
struct EncodedData(OnceLock<Option<Box<RawValue>>>);

impl Clone for EncodedData {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for EncodedData {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for EncodedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some_and(Option::is_some) {
            "encoded"
        } else {
            "not encoded"
        })
    }
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
            encoded: EncodedData::default(),
        }
    }

    /// An event read back from a store or built from its parts.
    pub fn from_parts(
        id: Uuid,
        ts: i64,
        instance: String,
        source: String,
        kind: String,
        data: Value,
    ) -> Self {
        Self {
            id,
            ts,
            instance,
            source,
            kind,
            data,
            encoded: EncodedData::default(),
        }
    }

    /// `data` as compact JSON text, encoded on the first call only (see [`EncodedData`]).
    pub fn data_json(&self) -> &str {
        self.data_raw().map_or("{}", RawValue::get)
    }

    /// The event's JSON (the same text as its `Serialize`), with `data` written from the
    /// text it keeps ([`Event::data_json`]): for a recorded event, which is not changed any
    /// more, the journal, the store and the live feed all share one encoding of `data`.
    pub fn encoded(&self) -> Encoded<'_> {
        Encoded(self)
    }

    /// [`Event::data_json`] as a raw JSON value, to embed in other JSON as it is. `None`
    /// only if `data` cannot be encoded (a `Value` always can: its keys are strings).
    pub fn data_raw(&self) -> Option<&RawValue> {
        self.encoded
            .0
            .get_or_init(|| serde_json::value::to_raw_value(&self.data).ok())
            .as_deref()
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

/// See [`Event::encoded`].
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a>(&'a Event);

impl Serialize for Encoded<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStruct as _};
        let event = self.0;
        let data = event
            .data_raw()
            .ok_or_else(|| S::Error::custom("event data cannot be encoded as JSON"))?;
        let mut out = serializer.serialize_struct("Event", 6)?;
        out.serialize_field("id", &event.id)?;
        out.serialize_field("ts", &event.ts)?;
        out.serialize_field("instance", &event.instance)?;
        out.serialize_field("source", &event.source)?;
        out.serialize_field("type", &event.kind)?;
        out.serialize_field("data", data)?;
        out.end()
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

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_shared_encoding_is_the_events_own_json_and_a_clone_starts_afresh() {
        let event = Event::new(
            "t",
            "v1",
            "request",
            serde_json::json!({"ok": true, "latency_ms": 1.25, "model": "a \"quoted\" é", "n": [1, 2]}),
        );
        let derived = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::to_string(&event.encoded()).unwrap(), derived);
        assert_eq!(
            event.data_json(),
            serde_json::to_string(&event.data).unwrap()
        );
        // Encoded now; a clone may be changed, so it must not reuse the text.
        let mut changed = event.clone();
        assert_eq!(changed, event, "the cached text takes no part in equality");
        changed.data["ok"] = Value::Bool(false);
        assert_eq!(
            serde_json::from_str::<Value>(changed.data_json()).unwrap()["ok"],
            false
        );
        assert_eq!(
            serde_json::from_str::<Value>(event.data_json()).unwrap()["ok"],
            true
        );
        let back: Event = serde_json::from_str(&derived).unwrap();
        assert_eq!(back, event);
    }
}
