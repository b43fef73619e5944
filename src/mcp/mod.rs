//! exai as an MCP server (issue 15): the tool registry of `/ws` ([`crate::tools`]) served over
//! the Model Context Protocol, in both spec eras, negotiated per request.
//!
//! - **Up to 2025-11-25:** `initialize` makes a session ([`session`]); later requests carry
//!   `Mcp-Session-Id` (and `MCP-Protocol-Version`); `notifications/cancelled` aborts a call;
//!   `DELETE /mcp` ends the session.
//! - **2026-07-28:** stateless. Every request carries its protocol version, client info and
//!   capabilities in `params._meta` (`io.modelcontextprotocol/…`) and the `MCP-Protocol-Version`,
//!   `Mcp-Method` (and for `tools/call`, `Mcp-Name`) headers; `server/discover` tells the
//!   supported versions; closing a call's SSE stream cancels it.
//!
//! The protocol model (versions, error codes, initialize/discover/call results) is the
//! official SDK's, `rmcp`; the transports are exai's own: [`http`] (Streamable HTTP at `/mcp`,
//! in actix-web) and [`stdio`] (`exai mcp`, a bridge to a running daemon's `/mcp`). rmcp's
//! HTTP server is a tower service that runs its handlers on `tokio::spawn`, which needs `Send`
//! futures; exai's tools run on the actix worker that serves the request (their futures are
//! not `Send`), so the transport is implemented here over rmcp's types instead.
pub mod http;
pub mod protocol;
pub mod session;
pub mod state;
pub mod stdio;

use actix_web::web;

pub use state::McpState;

/// Registers `/mcp`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    http::configure(cfg);
}
