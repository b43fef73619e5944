//! Incremental parser for the server-sent events of a streaming chat completion.
//!
//! Only `data:` fields matter to the OpenAI dialect: each event's data is one JSON chunk, and
//! `data: [DONE]` ends the stream. Comments (`: keep-alive`), `event:`, `id:` and `retry:`
//! are skipped. Lines may end in `\n` or `\r\n`, and a network chunk may split a line
//! anywhere, so bytes are buffered until a line is complete.

use bytes::{Buf, Bytes, BytesMut};

/// The data payload of `[DONE]`.
const DONE: &[u8] = b"[DONE]";

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseEvent {
    /// A data payload (one JSON chunk), exactly as sent.
    Data(Bytes),
    /// `data: [DONE]`: the upstream finished the stream.
    Done,
}

/// Parser state carried between network chunks.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of an incomplete line.
    pending: BytesMut,
    /// Data lines of the event being assembled, joined by `\n`.
    data: BytesMut,
    /// Whether the current event has at least one `data:` line.
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one network chunk; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.pending.extend_from_slice(chunk);
        while let Some(newline) = self.pending.iter().position(|b| *b == b'\n') {
            let mut line = self.pending.split_to(newline + 1);
            line.truncate(newline);
            if line.last() == Some(&b'\r') {
                line.truncate(newline - 1);
            }
            self.line(&line, out);
        }
    }

    /// The stream ended: an event still being assembled (no blank line after it) is
    /// delivered, since some servers end with `data: [DONE]` and no blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            let line = line.strip_suffix(b"\r").unwrap_or(&line).to_vec();
            self.line(&line, out);
        }
        self.dispatch(out);
    }

    /// Handles one complete line.
    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(colon) => {
                let mut value = &line[colon + 1..];
                if value.first() == Some(&b' ') {
                    value.advance(1);
                }
                (&line[..colon], value)
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.extend_from_slice(b"\n");
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    /// Ends the current event at a blank line.
    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let data = self.data.split().freeze();
        if data.as_ref() == DONE {
            out.push(SseEvent::Done);
        } else {
            out.push(SseEvent::Data(data));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out);
        }
        parser.finish(&mut out);
        out
    }

    fn data(s: &str) -> SseEvent {
        SseEvent::Data(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn parses_events_and_done() {
        let events = parse_all(&[b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"]);
        assert_eq!(
            events,
            vec![data("{\"a\":1}"), data("{\"b\":2}"), SseEvent::Done]
        );
    }

    #[test]
    fn handles_split_chunks_and_crlf() {
        let events = parse_all(&[
            b"da",
            b"ta: {\"a\"",
            b":1}\r",
            b"\n\r\n",
            b"data: [DO",
            b"NE]\r\n\r\n",
        ]);
        assert_eq!(events, vec![data("{\"a\":1}"), SseEvent::Done]);
    }

    #[test]
    fn skips_comments_and_other_fields_and_joins_data_lines() {
        let events = parse_all(&[
            b": keep-alive\n\nevent: message\nid: 7\ndata: line1\ndata:line2\nretry: 10\n\n",
        ]);
        assert_eq!(events, vec![data("line1\nline2")]);
    }

    #[test]
    fn delivers_a_trailing_event_without_blank_line() {
        assert_eq!(parse_all(&[b"data: [DONE]"]), vec![SseEvent::Done]);
        assert_eq!(parse_all(&[b"data: {}\n"]), vec![data("{}")]);
    }

    #[test]
    fn empty_stream_has_no_events() {
        assert!(parse_all(&[b"", b"\n\n"]).is_empty());
    }
}
