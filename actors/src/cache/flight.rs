//! Single-flight: concurrent identical misses share one fetch. The table holds one entry
//! per key being fetched right now; the leader's [`FlightGuard`] removes it when the flight
//! ends, however it ends (see the module docs of [`crate::cache`] for the policy).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use super::key::CacheKey;

/// What a finished flight hands its waiters: the body, or the leader's error (type-erased;
/// waiters downcast it back to their own error type).
pub(super) type FlightResult = Result<Bytes, Arc<dyn Any + Send + Sync>>;

/// One flight in the table: its id and where its result will appear (`None` until then).
pub(super) struct FlightSlot {
    /// Distinguishes this flight from a later one for the same key.
    id: u64,
    /// Waiters subscribe here.
    result: watch::Receiver<Option<FlightResult>>,
}

/// What a caller of `get_or_fetch` turned out to be.
pub(super) enum Role {
    /// Runs the fetch; the guard ends the flight when dropped.
    Lead(FlightGuard),
    /// Waits for the leader.
    Follow(watch::Receiver<Option<FlightResult>>),
}

/// The leader's end of a flight: publishes the result, and removes the table entry when
/// dropped (completion, error, cancellation or panic alike).
pub(super) struct FlightGuard {
    /// The table.
    flights: Arc<Flights>,
    /// The flight's key.
    key: CacheKey,
    /// The flight's id, so a later flight's entry is never removed.
    id: u64,
    /// Where the result goes.
    result: watch::Sender<Option<FlightResult>>,
}

impl FlightGuard {
    /// Hands `result` to every current and late waiter.
    pub(super) fn publish(&self, result: FlightResult) {
        self.result.send_replace(Some(result));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self
            .flights
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.key)
            .is_some_and(|slot| slot.id == self.id)
        {
            flights.remove(&self.key);
        }
    }
}

/// The flights in progress, by key.
#[derive(Default)]
pub(super) struct Flights {
    /// Entries are removed by the leader's guard.
    table: Mutex<HashMap<CacheKey, FlightSlot>>,
    /// Source of flight ids.
    next: AtomicU64,
}

impl Flights {
    /// Joins the flight for `key`, or starts one.
    pub(super) fn join_or_lead(self: &Arc<Self>, key: &CacheKey) -> Role {
        let mut flights = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = flights.get(key) {
            return Role::Follow(slot.result.clone());
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        flights.insert(*key, FlightSlot { id, result: rx });
        Role::Lead(FlightGuard {
            flights: self.clone(),
            key: *key,
            id,
            result: tx,
        })
    }

    /// Flights in progress right now.
    pub(super) fn len(&self) -> usize {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
