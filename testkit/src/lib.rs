//! exai's test kit, shared by the integration tests, the benchmark harness and the `exai`
//! binary (`exai mock-upstream`, `exai demo`):
//!
//! - [`mock_upstream`]: a real HTTP server speaking the OpenAI and Anthropic APIs, with fault
//!   modes chosen by model name;
//! - `proxy` (feature `proxy`): a TCP proxy that can be cut, to take a database away mid-test;
//! - `helpers` (feature `helpers`): free ports, HTTP clients, polling, and a fresh PostgreSQL
//!   database per test.
//!
//! The `exai` binary uses the mock upstream only, so release builds carry no test helpers.

#[cfg(feature = "helpers")]
pub mod helpers;
pub mod mock_upstream;
#[cfg(feature = "proxy")]
pub mod proxy;
