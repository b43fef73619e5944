//! exai's actors and the policies they share.
//!
//! This crate has no HTTP server dependency: the HTTP and WebSocket layer lives in the root
//! crate and talks to these actors through their handles, messages and
//! [`supervisor::Slot`]s.
//!
//! - [`provider`]: one actor and handle per upstream provider (the hot path of every call);
//! - [`registry`]: providers, the model catalog, aliases, fallback chains, and the
//!   [`registry::dispatch::Dispatcher`] that walks them;
//! - [`cache`]: the response cache (L1, Redis L2, single-flight);
//! - [`pipeline`]: monitoring events from [`pipeline::recorder::Recorder::record`] through the
//!   journal and the flusher to the store;
//! - [`dashboard`]: the live dashboard broadcast and its cross-instance fan-out;
//! - [`policy`]: retry/backoff, the circuit breaker and quiet failure logging;
//! - [`supervisor`] and [`health`]: the child table, restarts and the health board;
//! - [`anthropic`]: translation between the Anthropic Messages API and OpenAI chat.

pub mod anthropic;
pub mod cache;
pub mod dashboard;
pub mod health;
pub mod pipeline;
pub mod policy;
pub mod provider;
pub mod registry;
pub mod supervisor;
