//! exai's actors and the policies they share.
//!
//! This crate has no HTTP server dependency: the HTTP and WebSocket layer lives in the root
//! crate and talks to these actors through their messages and [`supervisor::Slot`]s.

pub mod breaker;
pub mod event;
pub mod failure_log;
pub mod health;
pub mod retry;
pub mod supervisor;
