//! The provider actor, one per configured provider (Kimi, GLM, OpenAI, any OpenAI-compatible
//! server, an Anthropic Messages API endpoint), and the types of an upstream call.
//!
//! The work is done by [`ProviderHandle`] (in `provider/handle.rs`), which the dispatcher and
//! the HTTP layer call directly so no request waits in a mailbox. The actor owns the periodic
//! work — publishing the `provider:<name>` health component — and takes no messages beyond
//! the supervisor's.
//!
//! Four kinds speak the OpenAI chat-completions dialect and `anthropic` the Messages API; they
//! share the handle, and `provider/anthropic.rs` decides per call whether the body and the
//! answer cross dialects ([`crate::anthropic`]). Otherwise [`ProviderKind`] only picks the
//! default base URL and the built-in catalog entries.
//!
//! A restart resets nothing that matters: the breaker, slots, counters and HTTP clients live
//! in the handle's `Arc`, which the child factory captures.

mod anthropic;
mod attempt;
pub mod body;
mod call;
pub(crate) mod error;
mod handle;
pub(crate) mod settings;
mod shared;
pub mod sse;
mod stream;
mod upstream;

use std::time::Duration;

use actix::prelude::*;

pub use call::{
    ATTEMPT_EVENT, ChatStream, Completion, EVENT_SOURCE, RemoteModel, Usage, health_component,
};
pub use error::{ErrorLabels, ProviderError, TimeoutKind};
pub use handle::ProviderHandle;
pub use settings::{
    ANTHROPIC_BASE_URL, DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_FAILURE_THRESHOLD,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DISCOVERY_TIMEOUT, DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_AFTER_CAP, DEFAULT_RETRY_INITIAL,
    DEFAULT_RETRY_MAX, DEFAULT_SSE_MAX_EVENT_BYTES, DEFAULT_STREAM_IDLE_TIMEOUT,
    DEFAULT_UPSTREAM_MAX_BYTES, GLM_BASE_URL, KIMI_BASE_URL, OPENAI_BASE_URL, ProviderKind,
    ProviderSettings, redact_url,
};

use crate::supervisor::{ChildSpec, Slot};

/// How often the actor republishes its health component (in-flight and queue counts move
/// constantly; publishing per request would contend on the health board).
pub const HEALTH_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The actor.

/// One provider. See the module docs.
pub struct Provider {
    /// The shared state and the hot path.
    handle: ProviderHandle,
}

impl Provider {
    /// An actor for `handle`.
    pub fn new(handle: ProviderHandle) -> Self {
        Self { handle }
    }

    /// The child spec for `handle`, named `provider:<name>`, and the slot its address is
    /// published in.
    pub fn child_spec(handle: &ProviderHandle) -> (ChildSpec, Slot<Provider>) {
        let slot = Slot::new();
        let captured = handle.clone();
        let spec = ChildSpec::new(health_component(handle.name()), slot.clone(), move || {
            Provider::new(captured.clone())
        });
        (spec, slot)
    }
}

impl Actor for Provider {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handle.publish_health();
        ctx.run_interval(HEALTH_REFRESH_INTERVAL, |actor, _| {
            actor.handle.publish_health()
        });
    }
}

crate::supervised_child!(Provider);
