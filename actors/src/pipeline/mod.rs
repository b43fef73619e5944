//! The monitoring pipeline (DESIGN §5, §6): every [`event::Event`] is recorded through
//! [`recorder::Recorder`] into the write-ahead [`journal`], moved by the [`flusher`] into the
//! [`store`] (SQLite or PostgreSQL) and folded into rollups with latency
//! [`histogram`]s. The [`request`] event — one per client call — is typed here.

pub mod event;
pub mod flusher;
pub mod histogram;
pub mod journal;
pub mod recorder;
pub mod request;
pub mod store;
