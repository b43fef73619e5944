//! exai's test kit, shared by the integration tests, the benchmark harness and the `exai`
//! binary (`exai mock-upstream`, `exai demo`):
//!
//! - [`mock_upstream`]: a real HTTP server speaking the OpenAI and Anthropic APIs, with fault
//!   modes chosen by model name;
//! - [`proxy`]: a TCP proxy that can be cut, to take a database away mid-test;
//! - [`helpers`]: free ports, HTTP clients, polling, and a fresh PostgreSQL database per test.

pub mod helpers;
pub mod mock_upstream;
pub mod proxy;
