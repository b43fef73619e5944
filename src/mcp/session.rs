//! MCP sessions of the spec eras up to 2025-11-25 (`Mcp-Session-Id`).
//!
//! A session is made by `initialize`, touched by every request that names it, and ends by
//! `DELETE /mcp`, by idling longer than `EXAI_MCP_SESSION_TTL`, or by eviction: at
//! `EXAI_MCP_MAX_SESSIONS` a new session evicts the longest idle session that has no call
//! running; when every session has one, the new session is refused (503). Each open and
//! close records an `mcp.session` event. The running calls of a session are kept by
//! JSON-RPC id, so `notifications/cancelled` can abort them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use exai_actors::pipeline::recorder::Recorder;
use serde_json::{Value, json};

use crate::files::Cancellation;

/// `source` of the events of the MCP surface.
pub const MCP_SOURCE: &str = "mcp";

/// A call that `notifications/cancelled` may stop.
pub struct RunningCall {
    /// Aborts the call's task (dropping the upstream request and the in-flight slot).
    pub abort: tokio::task::AbortHandle,
    /// Stops work the tool runs off its task.
    pub cancel: Cancellation,
}

/// One session.
struct Session {
    /// Negotiated protocol version.
    version: String,
    /// When it was made.
    opened: Instant,
    /// Last request naming it.
    last_used: Instant,
    /// Calls running, by JSON-RPC id (its JSON text).
    calls: HashMap<String, RunningCall>,
    /// Calls started, for the close event.
    calls_started: u64,
}

/// Why a session could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full(pub usize);

/// The sessions. Cheap to clone.
#[derive(Clone)]
pub struct SessionStore {
    /// By id.
    inner: Arc<Mutex<HashMap<String, Session>>>,
    /// Idle lifetime.
    ttl: Duration,
    /// Most sessions.
    max: usize,
    /// For the `mcp.session` events.
    recorder: Recorder,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("ttl", &self.ttl)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl SessionStore {
    /// An empty store.
    pub fn new(ttl: Duration, max: usize, recorder: Recorder) -> Self {
        Self {
            inner: Arc::default(),
            ttl,
            max: max.max(1),
            recorder,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open sessions (expired ones are dropped first).
    pub fn len(&self) -> usize {
        let mut map = self.lock();
        self.expire(&mut map);
        map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops sessions idle past the TTL without running calls.
    fn expire(&self, map: &mut HashMap<String, Session>) {
        let ttl = self.ttl;
        let expired: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.calls.is_empty() && s.last_used.elapsed() > ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(s) = map.remove(&id) {
                self.closed(&id, &s, "expired");
            }
        }
    }

    fn closed(&self, id: &str, s: &Session, reason: &str) {
        self.session_event(json!({
                "action": "closed",
                "reason": reason,
                "session_id": id,
                "protocol_version": s.version,
                "duration_ms": s.opened.elapsed().as_millis() as u64,
                "calls": s.calls_started,
        }));
        for call in s.calls.values() {
            call.cancel.cancel();
            call.abort.abort();
        }
    }

    /// Records an `mcp.session` event: `data` with `ok` and `surface`.
    fn session_event(&self, mut data: Value) {
        data["ok"] = json!(true);
        data["surface"] = json!("mcp");
        self.recorder.record(MCP_SOURCE, "mcp.session", data);
    }

    /// A new session for `version`; at the cap, evicts the longest idle one without calls.
    pub fn open(&self, version: &str, client: Option<&str>) -> Result<String, Full> {
        let mut map = self.lock();
        self.expire(&mut map);
        if map.len() >= self.max {
            let victim = map
                .iter()
                .filter(|(_, s)| s.calls.is_empty())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone());
            match victim.and_then(|id| map.remove(&id).map(|s| (id, s))) {
                Some((id, s)) => self.closed(&id, &s, "evicted"),
                None => return Err(Full(self.max)),
            }
        }
        let id = uuid::Uuid::now_v7().simple().to_string();
        let now = Instant::now();
        map.insert(
            id.clone(),
            Session {
                version: version.to_owned(),
                opened: now,
                last_used: now,
                calls: HashMap::new(),
                calls_started: 0,
            },
        );
        let open = map.len();
        drop(map);
        self.session_event(json!({
                "action": "opened",
                "session_id": id,
                "protocol_version": version,
                "client": client,
                "sessions": open,
        }));
        Ok(id)
    }

    /// The negotiated version of a live session, touching it; `None` when unknown or expired.
    pub fn touch(&self, id: &str) -> Option<String> {
        let mut map = self.lock();
        self.expire(&mut map);
        let s = map.get_mut(id)?;
        s.last_used = Instant::now();
        Some(s.version.clone())
    }

    /// Ends a session (DELETE); false when unknown.
    pub fn close(&self, id: &str) -> bool {
        let removed = self.lock().remove(id);
        match removed {
            Some(s) => {
                self.closed(id, &s, "deleted");
                true
            }
            None => false,
        }
    }

    /// Registers a running call; false when the session is gone or the id is in use.
    pub fn add_call(&self, id: &str, request: &str, call: RunningCall) -> bool {
        let mut map = self.lock();
        let Some(s) = map.get_mut(id) else {
            return false;
        };
        if s.calls.contains_key(request) {
            return false;
        }
        s.calls_started += 1;
        s.calls.insert(request.to_owned(), call);
        true
    }

    /// Forgets a finished call.
    pub fn end_call(&self, id: &str, request: &str) {
        if let Some(s) = self.lock().get_mut(id) {
            s.last_used = Instant::now();
            s.calls.remove(request);
        }
    }

    /// Cancels a running call (`notifications/cancelled`); false when none is running.
    pub fn cancel_call(&self, id: &str, request: &str) -> bool {
        let call = self
            .lock()
            .get_mut(id)
            .and_then(|s| s.calls.remove(request));
        match call {
            Some(call) => {
                call.cancel.cancel();
                call.abort.abort();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(ttl: Duration, max: usize) -> SessionStore {
        SessionStore::new(ttl, max, Recorder::new("t", 100))
    }

    #[test]
    fn the_cap_evicts_the_longest_idle_session() {
        let s = store(Duration::from_secs(60), 2);
        let a = s.open("2025-11-25", None).unwrap();
        let b = s.open("2025-11-25", None).unwrap();
        assert!(s.touch(&a).is_some());
        let c = s.open("2025-11-25", None).unwrap();
        assert!(s.touch(&b).is_none(), "b was idle longest");
        assert!(s.touch(&a).is_some() && s.touch(&c).is_some());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn idle_sessions_expire() {
        let s = store(Duration::from_millis(1), 10);
        let a = s.open("2025-11-25", None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.touch(&a).is_none());
        assert!(s.is_empty());
    }
}
