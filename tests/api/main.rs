//! Black-box integration tests: the real app over HTTP and WebSocket, the in-repo mock
//! upstream, and the real PostgreSQL and Redis servers. One binary, so it links once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod foundation;
mod helpers;
mod proxy;
