//! The policies the actors share, one module each (STYLE §5): retry and backoff
//! ([`retry`]), the circuit breaker ([`breaker`]) and quiet logging of failure streaks
//! ([`failure_log`]).

pub mod breaker;
pub mod failure_log;
pub mod retry;
