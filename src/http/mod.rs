//! HTTP routes. Each file owns one surface.

pub mod debug;
pub mod health;
pub mod history;
pub mod metrics;
pub mod v1;
