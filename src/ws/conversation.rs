//! Conversation threads of the `chat` tool, keyed by `continuation_id`: a bounded moka
//! cache whose entries expire after a period of disuse, so multi-turn chat works without
//! memory growing with the number of conversations ever held.
//!
//! A thread holds the user and assistant messages of its turns (the system prompt is not
//! kept; each call may send its own). A call that continues a thread sends its history
//! before the new prompt and appends both messages once it succeeds.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};

use super::limits::WsLimits;

/// One thread's messages.
type Thread = Arc<Mutex<Vec<Value>>>;

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct ConversationStore {
    /// Thread id → messages.
    threads: moka::sync::Cache<String, Thread>,
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
    /// A store bounded by `limits`.
    pub fn new(limits: &WsLimits) -> Self {
        Self {
            threads: moka::sync::Cache::builder()
                .max_capacity(limits.conversation_capacity)
                .time_to_idle(limits.conversation_ttl)
                .build(),
            max_messages: limits.conversation_max_messages.max(2),
        }
    }

    /// The messages of thread `id` so far (empty for an unknown thread).
    pub fn history(&self, id: &str) -> Vec<Value> {
        self.threads
            .get(id)
            .map(|t| t.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .unwrap_or_default()
    }

    /// Appends one turn to thread `id`, creating it if needed.
    pub fn append(&self, id: &str, prompt: &str, answer: &str) {
        let thread = self.threads.get_with(id.to_owned(), Thread::default);
        let mut messages = thread.lock().unwrap_or_else(PoisonError::into_inner);
        messages.push(json!({ "role": "user", "content": prompt }));
        messages.push(json!({ "role": "assistant", "content": answer }));
        let excess = messages.len().saturating_sub(self.max_messages);
        // Drop whole turns so the history never starts with an assistant message.
        let excess = (excess + excess % 2).min(messages.len());
        messages.drain(..excess);
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
        let limits = WsLimits {
            conversation_max_messages: 4,
            ..WsLimits::default()
        };
        let store = ConversationStore::new(&limits);
        assert!(store.history("t").is_empty());
        store.append("t", "one", "1");
        store.append("t", "two", "2");
        store.append("t", "three", "3");
        let h = store.history("t");
        assert_eq!(h.len(), 4);
        assert_eq!(h[0]["content"], "two");
        assert_eq!(h[0]["role"], "user");
    }
}
