//! exai's actors and the policies they share.
//!
//! This crate has no HTTP server dependency: the HTTP and WebSocket layer lives in the root
//! crate and talks to these actors through their messages and [`supervisor::Slot`]s.

pub mod anthropic;
pub mod breaker;
pub mod cache;
pub mod cache_key;
pub mod catalog;
pub mod dashboard;
pub mod dispatch;
pub mod event;
pub mod failure_log;
pub mod health;
pub mod histogram;
pub mod journal;
pub mod metrics_buffer;
pub mod provider;
pub mod registry;
pub mod request;
pub mod request_window;
pub mod retry;
pub mod store;
pub mod supervisor;
