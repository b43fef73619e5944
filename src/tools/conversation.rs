//! Conversation threads keyed by `continuation_id`, shared by every tool: a bounded moka cache
//! whose entries expire after a period of disuse, so threads work without memory growing with
//! the number of conversations ever held.
//!
//! A thread holds:
//! - the user and assistant messages of `chat` turns (and of workflow conclusions), so a
//!   later `chat` with the same `continuation_id` sees them; the system prompt is not kept;
//! - the recorded steps of a workflow tool, in step order, each its JSON record;
//! - the workflow's sticky arguments (`review_type`, `models`, `path`, …) from earlier steps.
//!
//! Bounds: `max_messages` messages per thread (oldest turns dropped first), at most
//! [`MAX_STEPS`] steps and [`MAX_STEP_BYTES`] of step records per thread (oldest steps dropped
//! first, and counted so the expert prompt can say so).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};

/// Steps kept per thread.
pub const MAX_STEPS: usize = 100;
/// Bytes of step records kept per thread.
pub const MAX_STEP_BYTES: usize = 2 * 1024 * 1024;

/// One thread.
#[derive(Debug, Default)]
pub struct Thread {
    /// Chat messages, oldest first.
    pub messages: Vec<Value>,
    /// The workflow tool that owns the steps, if any.
    pub tool: Option<String>,
    /// Workflow step records, in step order.
    pub steps: Vec<Value>,
    /// Sticky tool-specific arguments.
    pub extras: Map<String, Value>,
    /// Steps dropped to stay within the bounds.
    pub dropped_steps: usize,
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct ConversationStore {
    /// Thread id → thread.
    threads: moka::sync::Cache<String, Arc<Mutex<Thread>>>,
    /// Messages kept per thread.
    max_messages: usize,
}

impl std::fmt::Debug for ConversationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationStore")
            .field("threads", &self.threads.entry_count())
            .finish()
    }
}

impl ConversationStore {
    /// A store of at most `capacity` threads, each forgotten after `ttl` unused and holding at
    /// most `max_messages` messages.
    pub fn new(capacity: u64, ttl: Duration, max_messages: usize) -> Self {
        Self {
            threads: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(ttl)
                .build(),
            max_messages: max_messages.max(2),
        }
    }

    /// A fresh thread id.
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    fn thread(&self, id: &str) -> Arc<Mutex<Thread>> {
        self.threads.get_with(id.to_owned(), Default::default)
    }

    /// Runs `f` on thread `id`, creating it if needed.
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Thread) -> T) -> T {
        let thread = self.thread(id);
        let mut guard = thread.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// The messages of thread `id` so far (empty for an unknown thread).
    pub fn history(&self, id: &str) -> Vec<Value> {
        self.threads
            .get(id)
            .map(|t| {
                t.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .messages
                    .clone()
            })
            .unwrap_or_default()
    }

    /// Appends one turn to thread `id`, creating it if needed.
    pub fn append(&self, id: &str, prompt: &str, answer: &str) {
        let max = self.max_messages;
        self.with(id, |thread| {
            let messages = &mut thread.messages;
            messages.push(json!({ "role": "user", "content": prompt }));
            messages.push(json!({ "role": "assistant", "content": answer }));
            let excess = messages.len().saturating_sub(max);
            // Drop whole turns so the history never starts with an assistant message.
            let excess = (excess + excess % 2).min(messages.len());
            messages.drain(..excess);
        });
    }

    /// Records a workflow step in thread `id`: a step with the same number replaces the old
    /// one, steps stay in number order, and the oldest go first beyond the bounds.
    pub fn record_step(&self, id: &str, tool: &str, step_number: u64, record: Value) {
        self.with(id, |thread| {
            if thread.tool.as_deref() != Some(tool) {
                // A thread reused by another workflow starts its steps afresh.
                thread.tool = Some(tool.to_owned());
                thread.steps.clear();
                thread.extras.clear();
                thread.dropped_steps = 0;
            }
            let number = |s: &Value| s.get("step_number").and_then(Value::as_u64);
            thread.steps.retain(|s| number(s) != Some(step_number));
            let at = thread
                .steps
                .iter()
                .position(|s| number(s).is_some_and(|n| n > step_number))
                .unwrap_or(thread.steps.len());
            thread.steps.insert(at, record);
            let size = |steps: &[Value]| steps.iter().map(|s| s.to_string().len()).sum::<usize>();
            while thread.steps.len() > 1
                && (thread.steps.len() > MAX_STEPS || size(&thread.steps) > MAX_STEP_BYTES)
            {
                thread.steps.remove(0);
                thread.dropped_steps += 1;
            }
        });
    }

    /// Forgets the steps numbered `from` and later (backtracking).
    pub fn backtrack(&self, id: &str, from: u64) {
        self.with(id, |thread| {
            thread
                .steps
                .retain(|s| s.get("step_number").and_then(Value::as_u64) < Some(from));
        });
    }

    /// Threads held now.
    pub fn len(&self) -> u64 {
        self.threads.run_pending_tasks();
        self.threads.entry_count()
    }

    /// Whether no thread is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_bounded_turns() {
        let store = ConversationStore::new(10, Duration::from_secs(60), 4);
        assert!(store.history("t").is_empty());
        store.append("t", "one", "1");
        store.append("t", "two", "2");
        store.append("t", "three", "3");
        let h = store.history("t");
        assert_eq!(h.len(), 4);
        assert_eq!(h[0]["content"], "two");
        assert_eq!(h[0]["role"], "user");
    }

    #[test]
    fn steps_stay_in_order_and_replace_by_number() {
        let store = ConversationStore::new(10, Duration::from_secs(60), 4);
        store.record_step("w", "debug", 2, json!({"step_number": 2, "findings": "b"}));
        store.record_step("w", "debug", 1, json!({"step_number": 1, "findings": "a"}));
        store.record_step("w", "debug", 2, json!({"step_number": 2, "findings": "c"}));
        let steps = store.with("w", |t| t.steps.clone());
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1]["findings"], "c");
        store.backtrack("w", 2);
        assert_eq!(store.with("w", |t| t.steps.len()), 1);
    }
}
