//! Bodies: the text of a request message, OpenAI-style error bodies, and generated large or
//! endless answers whose bytes are counted as they are handed to the network.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::web::Bytes;
use serde_json::{Value, json};

use super::state::MockState;

/// Piece size of generated large bodies.
pub(super) const BIG_PIECE: usize = 64 * 1024;

pub(super) fn error_response(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": { "message": message, "type": "mock_error", "code": status.as_u16() }
    }))
}

/// Text of a message's `content`: a string, or the text parts of an array.
pub(super) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

pub(super) fn words(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

/// Hands out `pieces` one by one, counting their bytes as sent and the stream as cancelled
/// if it is dropped first.
pub(super) fn counted_body(
    state: Arc<MockState>,
    pieces: impl Iterator<Item = Bytes> + Unpin + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let watch = StreamWatch {
        state,
        finished: false,
    };
    futures_util::stream::unfold((pieces, watch), |(mut pieces, mut watch)| async move {
        match pieces.next() {
            Some(piece) => {
                watch
                    .state
                    .body_bytes_sent
                    .fetch_add(piece.len() as u64, Ordering::Relaxed);
                Some((Ok(piece), (pieces, watch)))
            }
            None => {
                watch.mark_finished();
                None
            }
        }
    })
}

/// `n` bytes of `x` as pieces of at most [`BIG_PIECE`], without holding them all.
pub(super) fn filler(n: usize) -> impl Iterator<Item = Bytes> {
    let piece = Bytes::from(vec![b'x'; BIG_PIECE]);
    (0..n.div_ceil(BIG_PIECE)).map(move |i| {
        let len = (n - i * BIG_PIECE).min(BIG_PIECE);
        piece.slice(..len)
    })
}

/// `mock-big-<n>`: a completion with `n` content bytes, generated as it is sent.
pub(super) fn big_body(state: Arc<MockState>, n: usize, announce: bool) -> HttpResponse {
    let head = Bytes::from_static(
        b"{\"id\":\"chatcmpl-big\",\"object\":\"chat.completion\",\"model\":\"mock-big\",\
          \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
    );
    let tail = Bytes::from_static(b"\"},\"finish_reason\":\"stop\"}]}");
    let total = head.len() + n + tail.len();
    let pieces = std::iter::once(head)
        .chain(filler(n))
        .chain(std::iter::once(tail));
    let body = counted_body(state, pieces);
    let mut response = HttpResponse::Ok();
    response.content_type("application/json");
    if announce {
        response.no_chunking(total as u64);
    }
    response.streaming(body)
}

/// `mock-sse-line-<n>`: a stream whose second event is one data line of `n` bytes.
pub(super) fn sse_line(state: Arc<MockState>, n: usize) -> HttpResponse {
    let first = Bytes::from_static(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
    );
    let pieces = std::iter::once(first)
        .chain(std::iter::once(Bytes::from_static(b"data: ")))
        .chain(filler(n))
        .chain(std::iter::once(Bytes::from_static(b"\n\ndata: [DONE]\n\n")));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(counted_body(state, pieces))
}

/// `mock-endless`: a stream with one chunk every `gap`, forever.
pub(super) fn endless(state: Arc<MockState>, model: &str, gap: Duration) -> HttpResponse {
    let chunk = json!({
        "id": "chatcmpl-endless", "object": "chat.completion.chunk", "model": model,
        "choices": [{ "index": 0, "delta": { "content": "more " }, "finish_reason": null }],
    });
    let frame = Bytes::from(format!("data: {chunk}\n\n"));
    let watch = StreamWatch {
        state,
        finished: false,
    };
    let body = futures_util::stream::unfold((watch, true), move |(watch, first)| {
        let frame = frame.clone();
        async move {
            if !first {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<_, std::convert::Infallible>(frame), (watch, false)))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

/// Counts a stream as cancelled if it is dropped before its last frame was sent.
pub(super) struct StreamWatch {
    /// Where the counter lives.
    pub(super) state: Arc<MockState>,
    /// Set once every frame was handed out.
    pub(super) finished: bool,
}

impl StreamWatch {
    /// The last frame was handed out.
    pub(super) fn mark_finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled_streams.fetch_add(1, Ordering::Relaxed);
        }
    }
}
