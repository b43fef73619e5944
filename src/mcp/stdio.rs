//! `exai mcp`: MCP over stdin/stdout (newline-delimited JSON-RPC), bridged to a running
//! daemon's `/mcp`, so every editor shares one daemon, its cache and its monitoring.
//!
//! Each stdin message is POSTed to `http://EXAI_WS_HOST:EXAI_WS_PORT/mcp` (or `--url`) with
//! `EXAI_WS_TOKEN` as the bearer token, the session id the daemon gave at `initialize`, and
//! for 2026-07-28 messages the `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name` headers taken
//! from the message. JSON answers and every SSE event (progress, then the response) are
//! written to stdout as they arrive. `notifications/cancelled` is forwarded (session era)
//! and the cancelled request's POST is dropped, which cancels it on the daemon in either
//! era. At end of input the session is deleted. stdout carries protocol frames only;
//! the one diagnostic line (no daemon) goes to stderr.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::http::{METHOD_HEADER, NAME_HEADER, SESSION_HEADER, VERSION_HEADER};

/// Exit code when no daemon answers.
pub const EXIT_NO_DAEMON: u8 = 3;

/// The daemon's `/mcp` from the environment: `EXAI_WS_HOST` (a wildcard means loopback) and
/// `EXAI_WS_PORT` (8079).
pub fn default_url() -> String {
    let host = std::env::var("EXAI_WS_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned());
    let host = match host.trim() {
        "" | "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    let port = std::env::var("EXAI_WS_PORT").unwrap_or_else(|_| "8079".to_owned());
    format!("http://{host}:{}/mcp", port.trim())
}

/// Shared bridge state.
struct Bridge {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    out: mpsc::UnboundedSender<String>,
}

/// Runs the bridge until stdin ends. Returns the process exit code.
pub fn run(url: Option<String>) -> anyhow::Result<std::process::ExitCode> {
    let token = std::env::var("EXAI_WS_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    run_to(url.unwrap_or_else(default_url), token)
}

/// Bridges stdio to the `/mcp` at `url` (with `token`, if any) until stdin ends.
pub fn run_to(url: String, token: Option<String>) -> anyhow::Result<std::process::ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bridge(url, token))
}

async fn bridge(url: String, token: Option<String>) -> anyhow::Result<std::process::ExitCode> {
    // reqwest is built without a default TLS provider (as in start-up).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .context("HTTP client")?;
    let live = url.trim_end_matches("/mcp").to_owned() + "/health/live";
    if let Err(e) = client
        .get(&live)
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        eprintln!(
            "exai mcp: no exai daemon answers at {url} ({}); start one with `exai serve` \
             (EXAI_WS_HOST/EXAI_WS_PORT choose where)",
            root_cause(&e)
        );
        return Ok(std::process::ExitCode::from(EXIT_NO_DAEMON));
    }
    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            if stdout.write_all(line.as_bytes()).await.is_err()
                || stdout.write_all(b"\n").await.is_err()
                || stdout.flush().await.is_err()
            {
                break;
            }
        }
    });
    let bridge = Arc::new(Bridge {
        client,
        url,
        token,
        session: Mutex::new(None),
        version: Mutex::new(None),
        running: Mutex::new(HashMap::new()),
        out,
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tasks = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let message: Value = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                let _ = bridge.out.send(
                    json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": format!("Parse error: {e}")}})
                        .to_string(),
                );
                continue;
            }
        };
        let method = message["method"].as_str().unwrap_or_default().to_owned();
        if method == "initialize" {
            // The session id must be known before the next message goes out.
            forward(&bridge, message).await;
            continue;
        }
        if method == "notifications/cancelled" {
            let key = message["params"]["requestId"].to_string();
            let handle = lock(&bridge.running).remove(&key);
            if lock(&bridge.session).is_some() {
                forward(&bridge, message).await;
            }
            if let Some(handle) = handle {
                handle.abort();
            }
            continue;
        }
        let key = message.get("id").map(Value::to_string);
        let b = bridge.clone();
        let task = tokio::spawn(async move {
            forward(&b, message).await;
        });
        if let Some(key) = key {
            lock(&bridge.running).insert(key, task.abort_handle());
        }
        tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
        tasks.push(task);
    }
    for task in tasks {
        let _ = task.await;
    }
    let session = lock(&bridge.session).clone();
    if let Some(session) = session {
        let mut delete = bridge
            .client
            .delete(&bridge.url)
            .header(SESSION_HEADER, session);
        if let Some(token) = &bridge.token {
            delete = delete.bearer_auth(token);
        }
        let _ = delete.timeout(Duration::from_secs(3)).send().await;
    }
    drop(bridge);
    let _ = writer.await;
    Ok(std::process::ExitCode::SUCCESS)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// POSTs one message and writes what comes back.
async fn forward(bridge: &Bridge, message: Value) {
    let id = message.get("id").cloned();
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    let mut post = bridge
        .client
        .post(&bridge.url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json");
    if let Some(token) = &bridge.token {
        post = post.bearer_auth(token);
    }
    let meta_version = message["params"]["_meta"][super::protocol::META_PROTOCOL_VERSION]
        .as_str()
        .map(str::to_owned);
    if let Some(version) = &meta_version {
        post = post
            .header(VERSION_HEADER, version)
            .header(METHOD_HEADER, &method);
        if let Some(name) = message["params"]["name"].as_str() {
            post = post.header(NAME_HEADER, name);
        }
    } else {
        if let Some(session) = lock(&bridge.session).clone() {
            post = post.header(SESSION_HEADER, session);
        }
        if let Some(version) = lock(&bridge.version).clone() {
            post = post.header(VERSION_HEADER, version);
        }
    }
    let response = match post.body(message.to_string()).send().await {
        Ok(r) => r,
        Err(e) => {
            reply_error(
                bridge,
                id.as_ref(),
                &format!("exai daemon unreachable: {}", root_cause(&e)),
            );
            return;
        }
    };
    if method == "initialize"
        && let Some(session) = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
    {
        *lock(&bridge.session) = Some(session.to_owned());
    }
    let status = response.status();
    let sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if sse {
        relay_sse(bridge, response).await;
    } else if status.as_u16() != 202 {
        let body = response.text().await.unwrap_or_default();
        match serde_json::from_str::<Value>(&body) {
            Ok(mut reply) if reply.get("jsonrpc").is_some() => {
                if method == "initialize"
                    && let Some(v) = reply["result"]["protocolVersion"].as_str()
                {
                    *lock(&bridge.version) = Some(v.to_owned());
                }
                if reply.get("id").is_none()
                    && let Some(id) = &id
                {
                    reply["id"] = id.clone();
                }
                if reply.get("id").is_some() {
                    let _ = bridge.out.send(reply.to_string());
                }
            }
            _ => reply_error(
                bridge,
                id.as_ref(),
                &format!(
                    "exai daemon answered HTTP {status}: {}",
                    crate::tools::truncate(&body, 200)
                ),
            ),
        }
    }
    if let Some(id) = &id {
        lock(&bridge.running).remove(&id.to_string());
    }
}

/// Writes each SSE event's data as one line.
async fn relay_sse(bridge: &Bridge, mut response: reqwest::Response) {
    let mut buf: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buf.extend_from_slice(&chunk);
        while let Some(end) = find_event_end(&buf) {
            let event: Vec<u8> = buf.drain(..end.0).collect();
            buf.drain(..end.1);
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if !data.is_empty() {
                let _ = bridge.out.send(data.join("\n"));
            }
        }
    }
}

/// The end of the first complete event in `buf` and the length of its separator.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn reply_error(bridge: &Bridge, id: Option<&Value>, message: &str) {
    if let Some(id) = id {
        let _ = bridge.out.send(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}})
                .to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split() {
        assert_eq!(find_event_end(b"data: x\n\nrest"), Some((7, 2)));
        assert_eq!(find_event_end(b"data: x\r\n\r\n"), Some((7, 4)));
        assert_eq!(find_event_end(b"data: x\n"), None);
    }
}
