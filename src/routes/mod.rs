//! HTTP routes. Each file owns one surface.

pub mod debug;
pub mod health;
