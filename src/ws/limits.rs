//! The `/ws` limits (DESIGN §7): the settings with their defaults, token buckets per session
//! and per IP, and the connection tracker that enforces the total and per-IP connection
//! limits and owns the per-IP buckets (an IP's entry lives exactly as long as it has a
//! connection, so the table is bounded by the connection limit).
//!
//! Connections that have not sent `hello` yet are capped on their own
//! (`max_pending_hello`, a quarter of the total by default): when that cap, or the total, is
//! reached, the oldest connection still waiting for `hello` is evicted (its session is told
//! to close) and its place goes to the newcomer at once. So idle sockets cannot lock real
//! clients out; the per-IP limit is checked first and never bypassed by an eviction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Calls per second a session may make (sustained).
pub const DEFAULT_SESSION_RATE: f64 = 50.0;
/// Burst a session may make at once.
pub const DEFAULT_SESSION_BURST: f64 = 100.0;
/// Requests per second all sessions of one IP may make (sustained).
pub const DEFAULT_IP_RATE: f64 = 200.0;
/// Burst all sessions of one IP may make at once.
pub const DEFAULT_IP_BURST: f64 = 400.0;
/// How often the server pings an idle client.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// A client silent this long (no frame, no pong) is disconnected.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
/// How often a running call reports `progress` (DESIGN: every 5 s).
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Conversation threads kept at most.
pub const DEFAULT_CONVERSATION_CAPACITY: u64 = 10_000;
/// A conversation thread unused this long is forgotten.
pub const DEFAULT_CONVERSATION_TTL: Duration = Duration::from_secs(3 * 3600);
/// Messages kept per conversation thread (the oldest are dropped first).
pub const DEFAULT_CONVERSATION_MAX_MESSAGES: usize = 64;

/// Every `/ws` limit in force.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// Largest accepted message; larger ones get an error reply.
    pub max_message_bytes: usize,
    /// Calls in flight per session.
    pub session_max_inflight: usize,
    /// Calls in flight across all sessions.
    pub global_max_inflight: usize,
    /// Time allowed for `hello`.
    pub hello_timeout: Duration,
    /// Connections in total.
    pub max_connections: usize,
    /// Connections per client IP.
    pub max_connections_per_ip: usize,
    /// Connections still waiting for `hello`.
    pub max_pending_hello: usize,
    /// Longest a tool call may run.
    pub tool_timeout: Duration,
    /// Session token bucket: refill per second.
    pub session_rate: f64,
    /// Session token bucket: capacity.
    pub session_burst: f64,
    /// Per-IP token bucket: refill per second.
    pub ip_rate: f64,
    /// Per-IP token bucket: capacity.
    pub ip_burst: f64,
    /// Server ping period.
    pub heartbeat_interval: Duration,
    /// Silence after which a client is dropped.
    pub client_timeout: Duration,
    /// `progress` period of a running call.
    pub progress_interval: Duration,
    /// Conversation threads kept at most.
    pub conversation_capacity: u64,
    /// Idle lifetime of a conversation thread.
    pub conversation_ttl: Duration,
    /// Messages kept per thread.
    pub conversation_max_messages: usize,
}

impl Default for WsLimits {
    /// DESIGN §7's defaults.
    fn default() -> Self {
        Self {
            max_message_bytes: 32 * 1024 * 1024,
            session_max_inflight: 8,
            global_max_inflight: 24,
            hello_timeout: Duration::from_secs(15),
            max_connections: 1000,
            max_connections_per_ip: 10,
            max_pending_hello: 250,
            tool_timeout: Duration::from_secs(300),
            session_rate: DEFAULT_SESSION_RATE,
            session_burst: DEFAULT_SESSION_BURST,
            ip_rate: DEFAULT_IP_RATE,
            ip_burst: DEFAULT_IP_BURST,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
            conversation_capacity: DEFAULT_CONVERSATION_CAPACITY,
            conversation_ttl: DEFAULT_CONVERSATION_TTL,
            conversation_max_messages: DEFAULT_CONVERSATION_MAX_MESSAGES,
        }
    }
}

impl WsLimits {
    /// The codec's frame limit: above the message limit, so an oversized message within it
    /// gets an error reply and the session stays usable; only frames beyond it (which the
    /// codec cannot skip) close the session.
    pub fn codec_frame_limit(&self) -> usize {
        self.max_message_bytes
            .saturating_mul(2)
            .max(self.max_message_bytes.saturating_add(64 * 1024))
    }
}

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: f64,
    /// Capacity.
    burst: f64,
    /// Tokens now.
    tokens: f64,
    /// When `tokens` was computed.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The total limit.
    Total,
    /// The per-IP limit.
    PerIp,
}

/// One IP's connections and shared bucket.
#[derive(Debug)]
struct IpEntry {
    /// Open connections.
    connections: usize,
    /// Requests of all its sessions.
    bucket: TokenBucket,
}

/// Counts open connections in total and per IP.
#[derive(Debug, Clone)]
pub struct ConnectionTracker {
    /// The shared table.
    inner: Arc<Mutex<Table>>,
}

/// The tracker's table.
#[derive(Debug)]
struct Table {
    /// Open connections.
    total: usize,
    /// Per IP.
    by_ip: HashMap<IpAddr, IpEntry>,
    /// The limits.
    max_total: usize,
    /// Per-IP limit.
    max_per_ip: usize,
    /// Per-IP bucket refill.
    ip_rate: f64,
    /// Per-IP bucket capacity.
    ip_burst: f64,
    /// Connections waiting for `hello`, oldest first, by connection id.
    pending: BTreeMap<u64, Pending>,
    /// Most connections waiting for `hello`.
    max_pending: usize,
    /// Evicted connections whose guards are still alive (already uncounted).
    evicted: HashSet<u64>,
    /// The next connection id.
    next_id: u64,
}

/// A connection still waiting for `hello`.
#[derive(Debug)]
struct Pending {
    /// Its client IP.
    ip: IpAddr,
    /// Tells its session it was evicted.
    evict: oneshot::Sender<()>,
}

impl Table {
    /// Takes one connection off the counts of `ip`.
    fn uncount(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(entry) = self.by_ip.get_mut(&ip) {
            entry.connections = entry.connections.saturating_sub(1);
            if entry.connections == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Evicts the oldest connection waiting for `hello`; false when there is none.
    fn evict_oldest_pending(&mut self) -> bool {
        let Some((id, pending)) = self.pending.pop_first() else {
            return false;
        };
        self.uncount(pending.ip);
        self.evicted.insert(id);
        let _ = pending.evict.send(());
        true
    }
}

impl ConnectionTracker {
    /// A tracker enforcing `limits`.
    pub fn new(limits: &WsLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Table {
                total: 0,
                by_ip: HashMap::new(),
                max_total: limits.max_connections,
                max_per_ip: limits.max_connections_per_ip,
                ip_rate: limits.ip_rate,
                ip_burst: limits.ip_burst,
                pending: BTreeMap::new(),
                max_pending: limits.max_pending_hello.max(1),
                evicted: HashSet::new(),
                next_id: 0,
            })),
        }
    }

    /// Admits a connection from `ip`, or says which limit refuses it. The connection counts
    /// as waiting for `hello` until [`ConnectionGuard::hello_done`]; see the module docs for
    /// the eviction of the oldest waiting connection.
    pub fn admit(&self, ip: IpAddr) -> Result<ConnectionGuard, Refusal> {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if t.by_ip
            .get(&ip)
            .is_some_and(|e| e.connections >= t.max_per_ip)
        {
            return Err(Refusal::PerIp);
        }
        if t.total >= t.max_total && !t.evict_oldest_pending() {
            return Err(Refusal::Total);
        }
        if t.pending.len() >= t.max_pending {
            t.evict_oldest_pending();
        }
        let (rate, burst) = (t.ip_rate, t.ip_burst);
        let entry = t.by_ip.entry(ip).or_insert_with(|| IpEntry {
            connections: 0,
            bucket: TokenBucket::new(rate, burst),
        });
        entry.connections += 1;
        t.total += 1;
        let id = t.next_id;
        t.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        t.pending.insert(id, Pending { ip, evict });
        Ok(ConnectionGuard {
            tracker: self.clone(),
            ip,
            id,
            evicted: Some(evicted),
        })
    }

    /// Connections waiting for `hello` now.
    pub fn pending_hello(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pending
            .len()
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }

    /// Takes a token from `ip`'s shared bucket.
    fn take_ip_token(&self, ip: IpAddr) -> bool {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        t.by_ip.get_mut(&ip).is_none_or(|e| e.bucket.try_take())
    }

    fn release(&self, ip: IpAddr, id: u64) {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if t.evicted.remove(&id) {
            return;
        }
        t.pending.remove(&id);
        t.uncount(ip);
    }

    /// Marks connection `id` as past `hello`; false if it was evicted meanwhile.
    fn hello_done(&self, id: u64) -> bool {
        let mut t = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        t.pending.remove(&id);
        !t.evicted.contains(&id)
    }
}

/// One admitted connection; releases its place when dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    /// Where it is counted.
    tracker: ConnectionTracker,
    /// Its client IP.
    ip: IpAddr,
    /// Its id in the tracker.
    id: u64,
    /// Fires if the connection is evicted while waiting for `hello`.
    evicted: Option<oneshot::Receiver<()>>,
}

impl ConnectionGuard {
    /// Takes a token from this connection's IP bucket.
    pub fn take_ip_token(&self) -> bool {
        self.tracker.take_ip_token(self.ip)
    }

    /// The signal that this connection was evicted before its `hello` (once).
    pub fn take_eviction(&mut self) -> Option<oneshot::Receiver<()>> {
        self.evicted.take()
    }

    /// The connection sent its `hello`: it no longer counts as waiting and cannot be
    /// evicted. False if it was evicted first (it must close).
    pub fn hello_done(&self) -> bool {
        self.tracker.hello_done(self.id)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.tracker.release(self.ip, self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let mut b = TokenBucket::new(10.0, 2.0);
        let t0 = b.at;
        assert!(b.try_take_at(t0));
        assert!(b.try_take_at(t0));
        assert!(!b.try_take_at(t0));
        assert!(b.try_take_at(t0 + Duration::from_millis(100)));
        assert!(!b.try_take_at(t0 + Duration::from_millis(100)));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(60);
        assert!(b.try_take_at(later) && b.try_take_at(later) && !b.try_take_at(later));
    }

    #[test]
    fn tracker_enforces_total_and_per_ip() {
        let limits = WsLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..WsLimits::default()
        };
        let t = ConnectionTracker::new(&limits);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        // Greeted connections: nothing waiting for hello can be evicted to make room.
        let greeted = |ip| {
            let g = t.admit(ip).unwrap();
            assert!(g.hello_done());
            g
        };
        let g1 = greeted(a);
        let _g2 = greeted(a);
        assert_eq!(t.admit(a).unwrap_err(), Refusal::PerIp);
        let _g3 = greeted(b);
        assert_eq!(t.admit(b).unwrap_err(), Refusal::Total);
        drop(g1);
        assert_eq!(t.open(), 2);
        assert!(t.admit(a).is_ok());
    }

    #[test]
    fn the_oldest_connection_waiting_for_hello_makes_room() {
        let limits = WsLimits {
            max_connections: 4,
            max_connections_per_ip: 3,
            max_pending_hello: 2,
            ..WsLimits::default()
        };
        let t = ConnectionTracker::new(&limits);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut idle1 = t.admit(a).unwrap();
        let mut idle2 = t.admit(a).unwrap();
        // A third waiting connection evicts the oldest waiting one.
        let real = t.admit(b).unwrap();
        assert_eq!(idle1.take_eviction().unwrap().try_recv(), Ok(()));
        let mut idle2_evicted = idle2.take_eviction().unwrap();
        assert!(idle2_evicted.try_recv().is_err());
        assert_eq!((t.open(), t.pending_hello()), (2, 2));
        assert!(real.hello_done());
        assert!(!idle1.hello_done());
        // The evicted guard's drop does not count twice.
        drop(idle1);
        assert_eq!(t.open(), 2);
        // Established connections are never evicted: with the total full, only a waiting
        // one makes room, the per-IP limit still refuses, and with none waiting the total
        // refuses.
        let rest: Vec<_> = (0..2)
            .map(|_| {
                let g = t.admit(b).unwrap();
                assert!(g.hello_done());
                g
            })
            .collect();
        assert_eq!(t.open(), 4);
        assert_eq!(t.admit(b).unwrap_err(), Refusal::PerIp);
        let c: IpAddr = [10, 0, 0, 3].into();
        let newcomer = t.admit(c).unwrap();
        assert_eq!(idle2_evicted.try_recv(), Ok(()));
        assert!(newcomer.hello_done());
        assert_eq!(t.admit(c).unwrap_err(), Refusal::Total);
        drop((idle2, rest, newcomer, real));
        assert_eq!((t.open(), t.pending_hello()), (0, 0));
    }
}
