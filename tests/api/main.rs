//! Black-box integration tests: the real app over HTTP and WebSocket, the in-repo mock
//! upstream, and the real PostgreSQL and Redis servers. One binary, so it links once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_log;
mod anthropic;
mod breakers;
mod browser;
mod cache;
mod cache_e2e;
mod cli;
mod dashboard;
mod foundation;
mod hardening_http;
mod helpers;
mod history;
mod kill9;
mod mcp;
mod mcp_http;
mod metrics;
mod outage_logs;
mod pipeline;
mod pipeline_faults;
mod providers;
mod proxy;
mod registry;
mod requests;
mod shim;
mod tools;
mod upstream_bounds;
mod v1;
mod ws;
mod ws_calls;
