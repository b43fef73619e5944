//! Incremental parser for the server-sent events of a streaming chat completion.
//!
//! Only `data:` fields matter to the OpenAI dialect: each event's data is one JSON chunk, and
//! `data: [DONE]` ends the stream. Comments (`: keep-alive`), `event:`, `id:` and `retry:`
//! are skipped. Lines may end in `\n` or `\r\n`, and a network chunk may split a line
//! anywhere, so bytes are buffered until a line is complete.
//!
//! Parsing is linear in the bytes received: the parser remembers how far it has searched the
//! incomplete line for a newline and searches only the bytes that arrived since, so a long
//! line fed in many small chunks is scanned once, not once per chunk. One event (its
//! incomplete line plus the data assembled so far) is capped (`EXAI_SSE_MAX_EVENT_BYTES`);
//! beyond it [`SseParser::push`] fails with [`EventTooLarge`] and the caller aborts the stream.

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

/// One event grew past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event exceeds the limit of {limit} bytes")]
pub struct EventTooLarge {
    /// The cap.
    pub limit: usize,
}

/// Parser state carried between network chunks.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of an incomplete line.
    pending: BytesMut,
    /// How many leading bytes of `pending` are known to hold no newline.
    scanned: usize,
    /// Data lines of the event being assembled, joined by `\n`.
    data: BytesMut,
    /// Whether the current event has at least one `data:` line.
    has_data: bool,
    /// Largest event (incomplete line plus assembled data).
    max_event: usize,
    /// Bytes searched for a newline so far, to prove the parser linear.
    #[cfg(test)]
    examined: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl SseParser {
    /// A parser at the start of a stream, refusing events over `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            pending: BytesMut::new(),
            scanned: 0,
            data: BytesMut::new(),
            has_data: false,
            max_event,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// Feeds one network chunk; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        self.pending.extend_from_slice(chunk);
        loop {
            let from = self.scanned;
            let found = self.pending[from..].iter().position(|b| *b == b'\n');
            #[cfg(test)]
            {
                self.examined += found.map_or(self.pending.len() - from, |i| i + 1);
            }
            let Some(offset) = found else {
                self.scanned = self.pending.len();
                break;
            };
            let newline = from + offset;
            let mut line = self.pending.split_to(newline + 1);
            self.scanned = 0;
            line.truncate(newline);
            if line.last() == Some(&b'\r') {
                line.truncate(newline - 1);
            }
            self.line(&line, out)?;
        }
        self.check_size(0)
    }

    /// The stream ended: an event still being assembled (no blank line after it) is
    /// delivered, since some servers end with `data: [DONE]` and no blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.scanned = 0;
            let line = line.strip_suffix(b"\r").unwrap_or(&line).to_vec();
            self.line(&line, out)?;
        }
        self.dispatch(out);
        Ok(())
    }

    /// Fails when the event being assembled, plus `more` bytes, would pass the cap.
    fn check_size(&self, more: usize) -> Result<(), EventTooLarge> {
        let size = self
            .pending
            .len()
            .saturating_add(self.data.len())
            .saturating_add(more);
        if size > self.max_event {
            return Err(EventTooLarge {
                limit: self.max_event,
            });
        }
        Ok(())
    }

    /// Handles one complete line.
    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.first() == Some(&b':') {
            return Ok(());
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
            self.check_size(value.len() + 1)?;
            if self.has_data {
                self.data.extend_from_slice(b"\n");
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
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
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            assert!(parser.push(chunk, &mut out).is_ok());
        }
        assert!(parser.finish(&mut out).is_ok());
        out
    }

    #[test]
    fn a_long_line_in_many_chunks_is_scanned_once() {
        let mut parser = SseParser::new(usize::MAX);
        let mut out = Vec::new();
        let piece = [b'x'; 16];
        assert!(parser.push(b"data: ", &mut out).is_ok());
        let pieces = 64 * 1024; // 1 MiB in 16-byte chunks
        for _ in 0..pieces {
            assert!(parser.push(&piece, &mut out).is_ok());
        }
        assert!(parser.push(b"\n\n", &mut out).is_ok());
        let fed = 6 + pieces * piece.len() + 2;
        assert!(
            parser.examined <= fed,
            "examined {} bytes for {fed} fed: not linear",
            parser.examined
        );
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], SseEvent::Data(d) if d.len() == pieces * piece.len()));
    }

    #[test]
    fn an_event_over_the_cap_fails() {
        let mut parser = SseParser::new(1000);
        let mut out = Vec::new();
        assert!(parser.push(b"data: {\"a\":1}\n\n", &mut out).is_ok());
        assert_eq!(out.len(), 1);
        // One long line, arriving in pieces, fails once it passes the cap.
        let mut failed = None;
        for i in 0..20 {
            if let Err(e) = parser.push(&[b'y'; 100], &mut out) {
                failed = Some((i, e));
                break;
            }
        }
        assert_eq!(failed, Some((10, EventTooLarge { limit: 1000 })));
        // Many data lines of one event count together.
        let mut parser = SseParser::new(1000);
        let line = format!("data: {}\n", "z".repeat(300));
        let mut result = Ok(());
        for _ in 0..4 {
            result = result.and(parser.push(line.as_bytes(), &mut out));
        }
        assert_eq!(result, Err(EventTooLarge { limit: 1000 }));
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
