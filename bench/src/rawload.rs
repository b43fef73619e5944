//! A light open-loop HTTP/1.1 load for the profile run: a fixed arrival rate over keep-alive
//! connections, one prepared request written as bytes, responses read with `httparse`.
//!
//! As in wrk2, each of `conns` connections owns every `conns`-th slot of the schedule
//! (request `k` of connection `j` is due at `t0 + (k·conns + j) / rate`), and latency is
//! measured from that due time, so a stalled server is charged for the requests it delayed.
//! It costs a fraction of what the reqwest-based generator does per request, which matters
//! when exai, nginx and the generator share 2 cores at 20k req/s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::loadgen::RunResult;

/// Highest latency tracked, µs.
const MAX_US: u64 = 60_000_000;

/// A POST request as bytes.
pub fn post_request(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` to `addr` at `rate` per second for `duration` over `conns` connections.
pub async fn open_loop(
    addr: SocketAddr,
    request: Vec<u8>,
    rate: f64,
    duration: Duration,
    conns: usize,
) -> RunResult {
    let request = Arc::new(request);
    let t0 = Instant::now() + Duration::from_millis(5);
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let conns = conns.max(1) as u64;
    let mut tasks = Vec::new();
    for j in 0..conns {
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = new_hist();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut conn: Option<Conn> = None;
            let mut slot = j;
            while slot < total {
                let due = t0 + Duration::from_secs_f64(slot as f64 / rate);
                slot += conns;
                tokio::time::sleep_until(due.into()).await;
                if conn.is_none() {
                    conn = Conn::open(addr).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    errors += 1;
                    continue;
                };
                match c.exchange(&request).await {
                    Ok(200) => {
                        ok += 1;
                        let us = due.elapsed().as_micros() as u64;
                        let _ = hist.record(us.clamp(1, MAX_US));
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = None;
                    }
                }
            }
            (hist, ok, errors)
        }));
    }
    let mut hist = new_hist();
    let (mut ok, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((h, o, e)) = t.await {
            let _ = hist.add(&h);
            ok += o;
            errors += e;
        }
    }
    RunResult {
        hist,
        ok,
        errors,
        elapsed: t0.elapsed(),
    }
}

#[allow(clippy::expect_used)] // constant bounds that hdrhistogram accepts
fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// One keep-alive connection and its read buffer.
struct Conn {
    /// The socket.
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Writes `request` and reads one whole response; its status.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if let Some((status, len)) = parse_response(&self.buf)? {
                self.buf.drain(..len);
                return Ok(status);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed mid-response");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A complete response at the start of `buf`: its status and length in bytes; `None` while
/// more bytes are needed. Bodies are framed by `Content-Length` or chunked encoding.
pub fn parse_response(buf: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf).context("bad HTTP response")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().context("bad content-length")?;
        return Ok((buf.len() >= head + len).then_some((status, head + len)));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut at = head;
        loop {
            let (size_len, size) = match httparse::parse_chunk_size(&buf[at..])
                .map_err(|_| anyhow::anyhow!("bad chunk size"))?
            {
                httparse::Status::Complete(c) => c,
                httparse::Status::Partial => return Ok(None),
            };
            let end = at + size_len + size as usize + 2;
            if buf.len() < end {
                return Ok(None);
            }
            at = end;
            if size == 0 {
                return Ok(Some((status, at)));
            }
        }
    }
    bail!("response without a length (status {status})")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_are_framed_by_length_or_chunks() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(parse_response(whole).unwrap(), Some((200, 43)));
        assert_eq!(parse_response(&whole[..40]).unwrap(), None);
        let chunked = b"HTTP/1.1 503 X\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), Some((503, chunked.len())));
        assert_eq!(parse_response(&chunked[..chunked.len() - 1]).unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn the_load_keeps_its_rate_against_a_real_server() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut have = Vec::new();
                    loop {
                        let n = s.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            // Every request carries a 2-byte body.
                            if have.len() < end + 4 + 2 {
                                break;
                            }
                            have.drain(..end + 6);
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                                .await;
                        }
                    }
                });
            }
        });
        let req = post_request(addr, "/x", Some("t"), "{}");
        let r = open_loop(addr, req, 400.0, Duration::from_millis(500), 4).await;
        assert_eq!((r.ok, r.errors), (200, 0));
        assert!(r.elapsed >= Duration::from_millis(490), "{:?}", r.elapsed);
    }
}
