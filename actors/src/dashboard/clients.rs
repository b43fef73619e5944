//! One subscribed session and the delivery rule: messages are only ever `try_send`ed into a
//! client's bounded queue; a full queue drops the message for that client and counts it, a
//! client with room again first gets `{"type":"lagged","dropped":N}`, and a client too far
//! behind (too many drops in a row, or full for too long) is removed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::settings::{DashboardSettings, Outbound};

/// One subscribed session.
pub(super) struct Client {
    /// Its bounded queue.
    pub(super) queue: mpsc::Sender<Outbound>,
    /// Where the close reason goes on eviction.
    pub(super) evict: Option<oneshot::Sender<String>>,
    /// Messages dropped since it last had room.
    pub(super) dropped: u64,
    /// Since when its queue has been full.
    pub(super) full_since: Option<Instant>,
}

/// What happened when one message was offered to one client.
pub(super) enum Offer {
    /// Queued (possibly after a `lagged` notice).
    Queued,
    /// Dropped; the client is still within bounds.
    Dropped,
    /// The client must go: evicted (with a reason) or its session is gone (`None`).
    Remove(Option<String>),
}

/// What delivery reads and counts: the eviction bounds and the broadcaster's drop counters.
pub(super) struct Tally<'a> {
    /// Eviction bounds.
    pub(super) settings: &'a DashboardSettings,
    /// Messages dropped for slow clients.
    pub(super) dropped: &'a AtomicU64,
    /// `lagged` notices sent.
    pub(super) lagged: &'a AtomicU64,
}

/// Offers `message` to one client, sending a pending `lagged` notice first.
pub(super) fn offer(
    shared: &Tally<'_>,
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
            Err(TrySendError::Full(_)) => return dropped(shared, client, now),
        }
    }
    match client.queue.try_send(message.clone()) {
        Ok(()) => {
            client.full_since = None;
            Offer::Queued
        }
        Err(TrySendError::Closed(_)) => Offer::Remove(None),
        Err(TrySendError::Full(_)) => dropped(shared, client, now),
    }
}

/// Counts a drop and decides whether the client is now too far behind.
fn dropped(shared: &Tally<'_>, client: &mut Client, now: Instant) -> Offer {
    shared.dropped.fetch_add(1, Ordering::Relaxed);
    client.dropped += 1;
    let since = *client.full_since.get_or_insert(now);
    verdict(shared.settings, client, now, since)
}

/// Eviction rule: too many drops in a row, or full for too long.
pub(super) fn verdict(
    s: &DashboardSettings,
    client: &Client,
    now: Instant,
    full_since: Instant,
) -> Offer {
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
