//! The one `request` event of a client call, for every surface (DESIGN §5, issue 17).
//!
//! A surface starts a [`CallRecord`] when a call arrives, runs the call inside its
//! [`CallContext`] (so the chat path, the dispatcher and the providers add what they learn),
//! and finishes it with the status the client got. The record is written exactly once: by
//! [`CallRecord::finish`], or — when the call is dropped first (the client went away, the
//! task was aborted) — by `Drop`, as status 499 `cancelled`. Latency, the tally of the
//! context and the cost at the model's price are filled in at that moment.

use std::sync::Arc;
use std::time::Instant;

use exai_actors::pipeline::recorder::Recorder;
use exai_actors::pipeline::request::{CallContext, REQUEST_EVENT, RequestEvent, Surface};
use uuid::Uuid;

use crate::pricing::PriceTable;

/// Longest client request id kept (`x-request-id`, `/ws` `request_id`), in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// The header carrying the request id, in and out and upstream.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The client's request id when it is 1–[`MAX_REQUEST_ID_BYTES`] printable ASCII characters,
/// else a new UUIDv7.
pub fn accept_request_id(offered: Option<&str>) -> String {
    match offered {
        Some(id) if is_valid_request_id(id) => id.to_owned(),
        _ => Uuid::now_v7().to_string(),
    }
}

/// Whether `id` may be used as a request id as it is.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_BYTES
        && id.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A running call's `request` event; see the module docs.
pub struct CallRecord {
    /// Where the event goes.
    recorder: Recorder,
    /// Prices, for `cost_usd`.
    prices: Arc<PriceTable>,
    /// When the call arrived.
    started: Instant,
    /// What the layers below learn while it runs.
    context: Arc<CallContext>,
    /// The event so far.
    event: RequestEvent,
    /// Why the call failed, as the surface knows it when its answer is only a status (a
    /// refusal built before any error value existed).
    error_hint: Option<&'static str>,
    /// Set once recorded.
    done: bool,
}

impl std::fmt::Debug for CallRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecord")
            .field("event", &self.event)
            .finish_non_exhaustive()
    }
}

impl CallRecord {
    /// A call on `surface` that arrived now, identified by `request_id`.
    pub fn start(
        recorder: &Recorder,
        prices: &Arc<PriceTable>,
        surface: Surface,
        request_id: String,
    ) -> Self {
        Self {
            recorder: recorder.clone(),
            prices: prices.clone(),
            started: Instant::now(),
            context: CallContext::new(request_id.clone()),
            event: RequestEvent::begin(surface, request_id, recorder.instance()),
            error_hint: None,
            done: false,
        }
    }

    /// The call's context: run the call inside it ([`CallContext::scope`]), or hand it to
    /// what outlives the scope (a forwarded stream).
    pub fn context(&self) -> Arc<CallContext> {
        self.context.clone()
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.event.request_id
    }

    /// The event, for the surface to fill in (`tool`, `session_id`, `model`, `stream`,
    /// `cache`).
    pub fn event(&mut self) -> &mut RequestEvent {
        &mut self.event
    }

    /// Notes the first content byte sent to the client (the first call counts).
    pub fn first_byte(&mut self) {
        if self.event.ttft_ms.is_none() {
            self.event.ttft_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
        }
    }

    /// Notes why the call is failing, for a [`CallRecord::finish`] that is given only a
    /// status.
    pub fn hint_error(&mut self, kind: &'static str) {
        self.error_hint = Some(kind);
    }

    /// The call ended with `status`; `error_kind` says why when it failed (else the hint,
    /// else `http_<status>` for a status of 400 or more). Records the event.
    pub fn finish(mut self, status: u16, error_kind: Option<&str>) {
        let kind = error_kind
            .map(str::to_owned)
            .or_else(|| self.error_hint.map(str::to_owned))
            .or_else(|| (status >= 400).then(|| format!("http_{status}")));
        self.event.status = status;
        self.event.ok = kind.is_none();
        self.event.error_kind = kind;
        self.record();
    }

    /// Records the event as it stands (once).
    fn record(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        self.event.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let tally = self.context.tally();
        self.event.absorb(&tally);
        if self.event.ttft_ms.is_none()
            && let Some(at) = tally.first_byte
        {
            let ttft = at.saturating_duration_since(self.started);
            self.event.ttft_ms = Some(ttft.as_secs_f64() * 1000.0);
        }
        let tokens = tally.tokens;
        self.event.cost_usd = match (self.event.resolved_model.as_deref(), tokens) {
            (Some(model), Some(tokens)) => self.prices.cost(model, tokens),
            _ => None,
        };
        tracing::debug!(
            surface = self.event.surface.as_str(),
            request_id = %self.event.request_id,
            status = self.event.status,
            latency_ms = self.event.latency_ms as u64,
            "client call"
        );
        self.recorder.record(
            self.event.surface.as_str(),
            REQUEST_EVENT,
            self.event.to_data(),
        );
    }
}

impl Drop for CallRecord {
    /// A call dropped before it finished was abandoned by its client: recorded as
    /// [`RequestEvent::begin`] left it (499, `cancelled`).
    fn drop(&mut self) {
        self.record();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use exai_actors::pipeline::request::Tokens;

    #[test]
    fn request_ids_are_kept_or_generated() {
        assert_eq!(accept_request_id(Some("abc-1")), "abc-1");
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        for bad in [Some(""), Some("a\nb"), Some("é"), Some(long.as_str()), None] {
            let id = accept_request_id(bad);
            assert_eq!(
                Uuid::parse_str(&id).unwrap().get_version_num(),
                7,
                "{bad:?}"
            );
        }
        assert!(is_valid_request_id(&"y".repeat(MAX_REQUEST_ID_BYTES)));
    }

    #[tokio::test]
    async fn one_event_per_call_finished_or_dropped() {
        let recorder = Recorder::new("t", 10);
        let price = crate::pricing::Price {
            input: 1.0,
            output: 2.0,
            cached_input: None,
        };
        let prices = Arc::new(PriceTable::builtin().with([("m".to_owned(), price)]));
        let mut call = CallRecord::start(&recorder, &prices, Surface::V1, "r1".into());
        CallContext::scope(call.context(), async {
            CallContext::note(|t| {
                t.attempts = 1;
                t.resolved_model = Some("m".into());
                t.add_tokens(Tokens {
                    prompt: 1_000_000,
                    completion: 1_000_000,
                    cached: None,
                });
            });
        })
        .await;
        call.first_byte();
        call.finish(200, None);
        drop(CallRecord::start(
            &recorder,
            &prices,
            Surface::Ws,
            "r2".into(),
        ));
        let events = recorder.drain(10);
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| e.kind == REQUEST_EVENT));
        let first = &events[0].data;
        assert_eq!(first["status"], 200);
        assert_eq!(first["ok"], true);
        assert_eq!(first["cost_usd"], 3.0);
        assert!(first["ttft_ms"].is_number());
        assert_eq!(events[0].source, "v1");
        let second = &events[1].data;
        assert_eq!(
            (second["status"].as_u64(), second["ok"].as_bool()),
            (Some(499), Some(false))
        );
        assert_eq!(second["error_kind"], "cancelled");
        assert!(second.get("cost_usd").is_none());
    }
}
