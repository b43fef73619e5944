//! The clients the scenarios drive: `/v1/chat/completions` over HTTP and `call_tool chat`
//! over the `/ws` tool protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Makes "unique" prompts unique across runs and surfaces too: closed-loop ids repeat from
/// run to run, and the cache key ignores the surface, so a repeat on either would be a hit.
static UNIQUE_SEQ: AtomicU64 = AtomicU64::new(0);

/// The prompt for request `i`: the same every time, or one never sent before in this process.
fn prompt(i: u64, unique: bool) -> String {
    if unique {
        let seq = UNIQUE_SEQ.fetch_add(1, Ordering::Relaxed);
        format!("benchmark prompt {i} {seq}")
    } else {
        "benchmark prompt".to_owned()
    }
}

/// The chat body for request `i`; `unique` makes each prompt different (no cache hits).
pub fn chat_body(model: &str, i: u64, unique: bool) -> Vec<u8> {
    let prompt = prompt(i, unique);
    serde_json::to_vec(&json!({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0.2,
    }))
    .unwrap_or_default()
}

/// POSTs a chat body; true on 200 with a body read to the end.
pub async fn post_chat(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> bool {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

/// A `/ws` tool-protocol connection that multiplexes calls by `request_id`.
#[derive(Clone)]
pub struct WsClient {
    /// Frames to send.
    tx: mpsc::UnboundedSender<Message>,
    /// Calls waiting for their `call_tool_res`.
    pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>,
    /// Request id counter.
    next: Arc<AtomicU64>,
}

impl WsClient {
    /// Connects and completes the hello handshake.
    pub async fn connect(url: &str, token: Option<&str>) -> anyhow::Result<WsClient> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .context("ws connect")?;
        let (mut sink, mut stream) = ws.split();
        let hello = json!({"op": "hello", "token": token.unwrap_or(""), "session_id": format!("bench-{}", uuid::Uuid::new_v4().simple())});
        sink.send(Message::Text(hello.to_string().into())).await?;
        let ack = stream.next().await.context("closed before hello_ack")??;
        let ack: Value = serde_json::from_str(ack.to_text()?)?;
        if ack["ok"] != true {
            bail!("hello refused: {ack}");
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let pending: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>> = Arc::default();
        let p = pending.clone();
        let pong_tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Text(t) => {
                        let Ok(v) = serde_json::from_str::<Value>(&t) else {
                            continue;
                        };
                        if v["op"] == "call_tool_res"
                            && let Some(id) = v["request_id"].as_str()
                            && let Some(w) = p.lock().await.remove(id)
                        {
                            let _ = w.send(v);
                        }
                    }
                    Message::Ping(d) => {
                        let _ = pong_tx.send(Message::Pong(d));
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            p.lock().await.clear();
        });
        Ok(WsClient {
            tx,
            pending,
            next: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Calls the `chat` tool; true when it answers `ok:true`. `unique` prompts are never
    /// repeated, on either surface, so each such call is a cache miss.
    pub async fn chat(&self, model: &str, i: u64, unique: bool) -> bool {
        let id = format!("r{}", self.next.fetch_add(1, Ordering::Relaxed));
        let prompt = prompt(i, unique);
        let frame = json!({
            "op": "call_tool",
            "request_id": id,
            "name": "chat",
            "arguments": {"prompt": prompt, "model": model, "temperature": 0.2},
        });
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id, tx);
        if self
            .tx
            .send(Message::Text(frame.to_string().into()))
            .is_err()
        {
            return false;
        }
        matches!(rx.await, Ok(v) if v["ok"] == true)
    }
}
