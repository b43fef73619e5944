//! The HTTP surfaces, one module each, and the plumbing they share.
//!
//! Surfaces: [`v1`] (OpenAI-compatible), [`anthropic`] (`/v1/messages`), [`health`],
//! [`history`] (`/api/*`), [`metrics`], [`dashboard`] (the page and `/ws/dashboard`) and
//! [`debug`] (test builds only). `/ws` is in [`crate::ws`], `/mcp` in [`crate::mcp`].
//!
//! Plumbing: [`access`] (the request span and the optional access log, outermost), [`guard`] (Origin, Host, CORS, in front of every route), [`origin`] (origin and
//! host names), [`body`] (bounded body reads) and [`call`] (what the two chat surfaces share).
//!
//! This module only declares its children; [`crate::app`] registers them.

pub mod access;
pub mod anthropic;
pub mod body;
pub mod call;
pub mod dashboard;
pub mod debug;
pub mod guard;
pub mod health;
pub mod history;
pub mod metrics;
pub mod origin;
pub mod request_id;
pub mod v1;
