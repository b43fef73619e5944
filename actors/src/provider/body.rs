//! Reading an upstream body under a size cap, chunk by chunk, so a hostile or broken upstream
//! cannot make exai buffer more than the cap (`EXAI_UPSTREAM_MAX_BYTES`). Every provider
//! dialect reads its answers through here.
//!
//! A `Content-Length` over the cap fails before a byte is read. Otherwise the buffer is sized
//! from `Content-Length` when given. Without one it grows by doubling up to
//! [`EAGER_FROM`], then reserves the whole cap at once: that reservation is only address
//! space until written (large allocations are mapped lazily), so the memory held stays at
//! the bytes received plus at most [`EAGER_FROM`], and a growing answer is never copied
//! from one large buffer into a larger one (measured: the repeated doubling otherwise left
//! about 2.2× the cap resident). The unused tail is given back once the body is complete. A
//! body that arrives in one chunk is returned as that chunk, without a copy. Dropping the
//! response on failure aborts the upstream request.

use bytes::Bytes;

/// First buffer size when the length is not announced.
const INITIAL_CAPACITY: usize = 16 * 1024;
/// Past this size an unannounced body's buffer reserves the whole cap (see the module docs).
pub const EAGER_FROM: usize = 1024 * 1024;
/// Unused capacity beyond which a finished buffer is shrunk to fit.
const SHRINK_SLACK: usize = 64 * 1024;

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is (or announced it would be) larger than the cap.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// The transport failed while reading.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads the whole body of `response`, failing as soon as it would exceed `limit` bytes.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let announced = response
        .content_length()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if announced.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let Some(first) = response.chunk().await? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    let Some(second) = response.chunk().await? else {
        return Ok(first);
    };
    let mut buf: Vec<u8> =
        Vec::with_capacity(announced.unwrap_or(INITIAL_CAPACITY).clamp(1, limit.max(1)));
    append(&mut buf, &first, limit)?;
    drop(first);
    append(&mut buf, &second, limit)?;
    drop(second);
    while let Some(chunk) = response.chunk().await? {
        append(&mut buf, &chunk, limit)?;
    }
    if buf.capacity() - buf.len() > SHRINK_SLACK {
        buf.shrink_to_fit();
    }
    Ok(Bytes::from(buf))
}

/// Reads at most `limit` bytes of `response` and stops there (for error bodies, of which
/// only a prefix is kept). A transport failure keeps what arrived.
pub async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - buf.len());
                if buf.is_empty() && take == chunk.len() && chunk.len() == limit {
                    return chunk;
                }
                buf.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Bytes::from(buf)
}

/// Appends `chunk` to `buf`, growing it by doubling up to [`EAGER_FROM`], then to `limit`
/// at once, never beyond `limit`.
fn append(buf: &mut Vec<u8>, chunk: &[u8], limit: usize) -> Result<(), BodyError> {
    let needed = buf.len().saturating_add(chunk.len());
    if needed > limit {
        return Err(BodyError::TooLarge { limit });
    }
    if needed > buf.capacity() {
        let doubled = needed.max(buf.capacity().saturating_mul(2));
        let target = if doubled > EAGER_FROM {
            limit
        } else {
            doubled.min(limit)
        };
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_never_passes_the_limit() {
        let limit = 100_000;
        let mut buf = Vec::with_capacity(10);
        for _ in 0..99 {
            assert!(append(&mut buf, &[7u8; 1000], limit).is_ok());
            assert!(buf.capacity() <= limit, "{}", buf.capacity());
        }
        assert!(append(&mut buf, &[7u8; 1000], limit).is_ok());
        assert!(matches!(
            append(&mut buf, &[7u8; 1], limit),
            Err(BodyError::TooLarge { limit: 100_000 })
        ));
    }

    #[test]
    fn past_eager_from_the_whole_cap_is_reserved_once() {
        let limit = 8 * EAGER_FROM;
        let mut buf = Vec::with_capacity(10);
        let mut grew = 0;
        let mut capacity = buf.capacity();
        for _ in 0..(7 * EAGER_FROM / 4096) {
            assert!(append(&mut buf, &[1u8; 4096], limit).is_ok());
            if buf.capacity() != capacity {
                grew += 1;
                capacity = buf.capacity();
            }
        }
        assert_eq!(buf.capacity(), limit);
        assert!(grew <= 10, "{grew} reallocations");
    }
}
