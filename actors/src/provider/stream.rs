//! A running upstream stream: reads the SSE body in bounded chunks, hands out `data:`
//! payloads, watches the idle and total deadlines, sniffs usage, and reports the attempt
//! once when the stream ends (or is dropped, through its [`AttemptGuard`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::anthropic;
use super::attempt::AttemptGuard;
use super::call::Usage;
use super::error::{ProviderError, TimeoutKind};
use super::shared::Shared;
use super::sse::{SseEvent, SseParser};
use super::upstream::error_chain;

/// The setting that caps one SSE event, named in its error.
const MAX_EVENT_SETTING: &str = "EXAI_SSE_MAX_EVENT_BYTES";

/// The upstream body of a stream.
pub(super) type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Everything a running stream holds; dropping it aborts the upstream request.
pub(super) struct StreamState {
    /// The provider.
    pub(super) shared: Arc<Shared>,
    /// The upstream body; `None` once finished.
    pub(super) body: Option<ByteStream>,
    /// SSE parser state.
    pub(super) parser: SseParser,
    /// Events parsed but not yet handed out.
    pub(super) ready: VecDeque<SseEvent>,
    /// Whether the upstream body has ended.
    pub(super) eof: bool,
    /// The attempt, reported when the stream ends; `None` once reported.
    pub(super) guard: Option<AttemptGuard>,
    /// The concurrency slot, released when the stream ends or is dropped.
    pub(super) slot: Option<OwnedSemaphorePermit>,
    /// Usage, shared with the [`ChatStream`](super::ChatStream).
    pub(super) usage: Arc<Mutex<Option<Usage>>>,
    /// Time to the first data chunk.
    pub(super) first_chunk: Option<Duration>,
    /// When the stream's lifetime (`stream_max_s`) ends.
    pub(super) deadline: tokio::time::Instant,
    /// An Anthropic upstream: `message_stop` ends the stream (there is no `[DONE]`).
    pub(super) ends_on_message_stop: bool,
}

impl StreamState {
    /// The unfold step: the next chunk, or the end.
    pub(super) async fn next(mut self) -> Option<(Result<Bytes, ProviderError>, Self)> {
        let mut batch = Vec::new();
        loop {
            self.guard.as_ref()?;
            if let Some(event) = self.ready.pop_front() {
                match event {
                    SseEvent::Data(data) => {
                        if let Some(error) = self.reported_error(&data) {
                            self.finish(Some(&error));
                            return Some((Err(error), self));
                        }
                        if self.first_chunk.is_none() {
                            self.first_chunk = self.guard.as_ref().map(|g| g.started.elapsed());
                        }
                        self.sniff_usage(&data);
                        if self.ends_on_message_stop && anthropic::is_message_stop(&data) {
                            self.ready.push_front(SseEvent::Done);
                        }
                        return Some((Ok(data), self));
                    }
                    SseEvent::Done => {
                        // If the body's end has already arrived, reading it now hands the
                        // connection back to the pool instead of closing it.
                        if let Some(body) = self.body.as_mut() {
                            let _ = futures_util::FutureExt::now_or_never(body.next());
                        }
                        self.finish(None);
                        return None;
                    }
                }
            }
            if self.eof {
                let error = self.interrupted("the upstream ended the stream before [DONE]".into());
                self.finish(Some(&error));
                return Some((Err(error), self));
            }
            let idle = self.shared.settings.stream_idle_timeout;
            let now = tokio::time::Instant::now();
            let idle_until = now + idle;
            let deadline = self.deadline;
            if now >= deadline {
                // Checked here too: a timeout does not fire while the body is always ready,
                // and a fast endless stream must end as well.
                let error = self.shared.timeout(TimeoutKind::StreamTotal);
                self.finish(Some(&error));
                return Some((Err(error), self));
            }
            let body = self.body.as_mut()?;
            let parsed = match tokio::time::timeout_at(idle_until.min(deadline), body.next()).await
            {
                Err(_) => {
                    let kind = if deadline <= idle_until {
                        TimeoutKind::StreamTotal
                    } else {
                        TimeoutKind::StreamIdle
                    };
                    let error = self.shared.timeout(kind);
                    self.finish(Some(&error));
                    return Some((Err(error), self));
                }
                Ok(None) => {
                    self.eof = true;
                    self.parser.finish(&mut batch)
                }
                Ok(Some(Ok(bytes))) => self.parser.push(&bytes, &mut batch),
                Ok(Some(Err(e))) => {
                    let message = self.shared.scrub(error_chain(&e.without_url()));
                    let error = self.interrupted(message);
                    self.finish(Some(&error));
                    return Some((Err(error), self));
                }
            };
            self.ready.extend(batch.drain(..));
            if let Err(too_large) = parsed {
                // The stream is aborted at once; nothing after the cap is handed out.
                self.ready.clear();
                let error = ProviderError::TooLarge {
                    provider: self.shared.name.to_string(),
                    what: "SSE event",
                    limit: too_large.limit,
                    setting: MAX_EVENT_SETTING,
                };
                self.finish(Some(&error));
                return Some((Err(error), self));
            }
        }
    }

    /// The error an SSE data event carries instead of a chunk (`{"error":{…}}`), if it does.
    fn reported_error(&self, data: &[u8]) -> Option<ProviderError> {
        /// Only the error is read.
        #[derive(Deserialize)]
        struct Chunk {
            /// The upstream's error object.
            #[serde(default)]
            error: Option<Value>,
        }
        const NEEDLE: &[u8] = b"\"error\"";
        if !data.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return None;
        }
        let error = serde_json::from_slice::<Chunk>(data).ok()?.error?;
        Some(self.shared.reported_error(&error))
    }

    fn interrupted(&self, message: String) -> ProviderError {
        ProviderError::StreamInterrupted {
            provider: self.shared.name.to_string(),
            message,
        }
    }

    /// Keeps usage from a chunk that carries it (top level, or Kimi's `choices[0].usage`).
    fn sniff_usage(&self, data: &[u8]) {
        /// A chunk's usage, wherever the upstream puts it.
        #[derive(Deserialize)]
        struct Chunk {
            /// OpenAI and GLM: top level.
            #[serde(default)]
            usage: Option<Usage>,
            /// Kimi: inside the choice.
            #[serde(default)]
            choices: Vec<Choice>,
        }
        /// One choice of a chunk.
        #[derive(Deserialize)]
        struct Choice {
            /// Kimi's per-choice usage.
            #[serde(default)]
            usage: Option<Usage>,
        }
        const NEEDLE: &[u8] = b"\"usage\"";
        if !data.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return;
        }
        if let Ok(chunk) = serde_json::from_slice::<Chunk>(data)
            && let Some(usage) = chunk
                .usage
                .or_else(|| chunk.choices.into_iter().find_map(|c| c.usage))
        {
            let mut slot = self.usage.lock().unwrap_or_else(PoisonError::into_inner);
            *slot = Some(slot.map_or(usage, |earlier| earlier.merged(usage)));
        }
    }

    /// Reports the attempt and releases the upstream body and the slot.
    fn finish(&mut self, error: Option<&ProviderError>) {
        self.body = None;
        self.slot = None;
        let Some(guard) = self.guard.take() else {
            return;
        };
        match error {
            None => {
                let usage = *self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                guard.succeeded(Some(200), self.first_chunk, usage);
            }
            Some(error) => {
                self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                guard.failed(error, self.first_chunk, false);
            }
        }
    }
}
