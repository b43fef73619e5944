//! The shared level: Redis, reached through one multiplexed connection per actor instance.
//! Values carry a small header (magic, `stored_at`, model) in front of the body; a value
//! without it is ignored.

use std::sync::atomic::{AtomicU8, AtomicU64};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::Notify;

use super::settings::{CacheError, CacheSettings};
use super::types::L2State;
use crate::policy::failure_log::FailureLog;

/// First bytes of every L2 value; a value without them is ignored (and counted).
const L2_MAGIC: &[u8; 4] = b"EXC1";
/// L2 header: magic, `stored_at` (i64 BE), model length (u16 BE).
const L2_HEADER_BYTES: usize = 4 + 8 + 2;

/// The Redis side, present when `REDIS_URL` is set.
pub(super) struct L2 {
    /// Connection factory.
    pub(super) client: redis::Client,
    /// The live connection with its generation, `None` while down.
    pub(super) conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Source of connection generations.
    pub(super) generation: AtomicU64,
    /// [`L2State`] as a byte, readable without a lock.
    pub(super) state: AtomicU8,
    /// Logs the outage on state change and as a periodic summary only.
    pub(super) failures: Mutex<FailureLog>,
    /// Wakes the reconnector when an operation found Redis dead.
    pub(super) wake: Notify,
}

/// Milliseconds of `d`, saturating.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a Redis error means the connection (not the command) is broken.
pub(super) fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// Encodes an entry for L2.
pub(super) fn encode_l2(model: &str, stored_at_ms: i64, body: &[u8]) -> Vec<u8> {
    let model = &model.as_bytes()[..model.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(L2_HEADER_BYTES + model.len() + body.len());
    out.extend_from_slice(L2_MAGIC);
    out.extend_from_slice(&stored_at_ms.to_be_bytes());
    out.extend_from_slice(&u16::try_from(model.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(model);
    out.extend_from_slice(body);
    out
}

/// Decodes an L2 value into `(model, stored_at_ms, body)`; `None` if malformed.
pub(super) fn decode_l2(raw: Vec<u8>) -> Option<(String, i64, Bytes)> {
    let raw = Bytes::from(raw);
    if raw.len() < L2_HEADER_BYTES || !raw.starts_with(L2_MAGIC) {
        return None;
    }
    let stored_at_ms = i64::from_be_bytes(raw.get(4..12)?.try_into().ok()?);
    let model_len = usize::from(u16::from_be_bytes(raw.get(12..14)?.try_into().ok()?));
    let model_end = L2_HEADER_BYTES.checked_add(model_len)?;
    let model = std::str::from_utf8(raw.get(L2_HEADER_BYTES..model_end)?)
        .ok()?
        .to_owned();
    Some((model, stored_at_ms, raw.slice(model_end..)))
}

impl L2 {
    /// The Redis side for `url`, not connected yet.
    pub(super) fn open(url: &SecretString) -> Result<Self, CacheError> {
        Ok(Self {
            client: redis::Client::open(url.expose_secret())
                .map_err(|_| CacheError::InvalidRedisUrl)?,
            conn: RwLock::new(None),
            generation: AtomicU64::new(0),
            state: AtomicU8::new(L2State::Connecting as u8),
            failures: Mutex::new(FailureLog::new("redis cache")),
            wake: Notify::new(),
        })
    }

    /// One connection attempt: connect and `PING`, within the connect timeout.
    pub(super) async fn connect(
        &self,
        settings: &CacheSettings,
    ) -> Result<MultiplexedConnection, String> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.redis_connect_timeout))
            .set_response_timeout(Some(settings.redis_op_timeout));
        let attempt = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(settings.redis_connect_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("connection attempt timed out".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn l2_values_round_trip_and_garbage_is_rejected() {
        let raw = encode_l2("kimi", 1_700_000_000_123, b"{\"x\":1}");
        let (model, at, body) = decode_l2(raw).unwrap();
        assert_eq!(
            (model.as_str(), at, &body[..]),
            ("kimi", 1_700_000_000_123, &b"{\"x\":1}"[..])
        );
        assert!(decode_l2(b"nope".to_vec()).is_none());
        let mut truncated = encode_l2("kimi", 1, b"");
        truncated.truncate(L2_HEADER_BYTES + 2);
        assert!(decode_l2(truncated).is_none());
    }
}
