//! An incremental SSE reader over a `reqwest::Response`: events come out as they arrive.

use bytes::{Buf, BytesMut};
use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One item read from an SSE body: a dispatched event or a comment line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n` (empty for rmcp's priming event). For a comment,
    /// the comment text after `:` (one leading space removed).
    pub data: String,
    /// The `retry:` field in milliseconds, if any (rmcp's priming events carry one).
    pub retry: Option<u64>,
    /// True for a `:` comment line (keep-alive), reported on its own as soon as it is read.
    pub comment: bool,
}

impl SseEvent {
    /// The data parsed as JSON, when it is JSON (not for comments or priming events).
    pub fn json(&self) -> Option<Value> {
        if self.comment || self.data.is_empty() {
            return None;
        }
        serde_json::from_str(&self.data).ok()
    }

    /// True for an event with an empty payload and no JSON (rmcp's priming event).
    pub fn is_priming(&self) -> bool {
        !self.comment && self.data.is_empty()
    }
}

#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    seen: bool,
}

impl Pending {
    fn take(&mut self) -> Option<SseEvent> {
        if !std::mem::take(&mut self.seen) {
            return None;
        }
        let pending = std::mem::take(self);
        Some(SseEvent {
            event: pending.event,
            id: pending.id,
            data: pending.data.unwrap_or_default(),
            retry: pending.retry,
            comment: false,
        })
    }
}

/// An SSE body read incrementally.
///
/// [`SseStream::next_event`] is cancel-safe: a call dropped while waiting (for example
/// under `tokio::time::timeout`) loses no data, so the next call picks up where it left.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    buf: BytesMut,
    pending: Pending,
    ended: bool,
    error: Option<String>,
}

impl SseStream {
    /// Reads `response`'s body as SSE (the status and content type are not checked).
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buf: BytesMut::new(),
            pending: Pending::default(),
            ended: false,
            error: None,
        }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        self.response.headers()
    }

    /// The transport error that ended the body, if it did not end cleanly.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// True once the body has ended (cleanly or not) and no buffered event is left.
    pub fn is_ended(&self) -> bool {
        self.ended && self.buf.is_empty()
    }

    /// The next event or comment, waiting for more bytes as needed; `None` at the end of
    /// the body (an unterminated last event is discarded, as the SSE spec says).
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(line) = self.next_line() {
                if let Some(event) = self.process_line(&line) {
                    return Some(event);
                }
            }
            if self.ended {
                self.buf.clear();
                self.pending = Pending::default();
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => self.ended = true,
                Err(error) => {
                    self.error = Some(error.to_string());
                    self.ended = true;
                }
            }
        }
    }

    /// The next event that carries a JSON-RPC message (skips comments and priming events),
    /// parsed; `None` at the end of the body.
    pub async fn next_message(&mut self) -> Option<Value> {
        loop {
            let event = self.next_event().await?;
            if let Some(message) = event.json() {
                return Some(message);
            }
        }
    }

    /// The next event whose JSON-RPC message satisfies `pred` (others are skipped); `None` at
    /// the end of the body.
    pub async fn next_event_where(&mut self, pred: impl Fn(&Value) -> bool) -> Option<SseEvent> {
        loop {
            let event = self.next_event().await?;
            if event.json().is_some_and(|m| pred(&m)) {
                return Some(event);
            }
        }
    }

    /// Splits one line off the buffer; handles `\n`, `\r\n` and `\r` endings, including a
    /// `\r\n` split across two chunks.
    fn next_line(&mut self) -> Option<String> {
        let end = self.buf.iter().position(|b| *b == b'\n' || *b == b'\r')?;
        let terminator = if self.buf[end] == b'\r' {
            match self.buf.get(end + 1) {
                Some(b'\n') => 2,
                Some(_) => 1,
                // A lone `\r` at the end of the buffer may be half of `\r\n`.
                None if self.ended => 1,
                None => return None,
            }
        } else {
            1
        };
        let line = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.advance(end + terminator);
        Some(line)
    }

    fn process_line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.pending.take();
        }
        if let Some(comment) = line.strip_prefix(':') {
            return Some(SseEvent {
                data: comment.strip_prefix(' ').unwrap_or(comment).to_owned(),
                comment: true,
                ..SseEvent::default()
            });
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        let pending = &mut self.pending;
        match field {
            "data" => {
                match &mut pending.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => pending.data = Some(value.to_owned()),
                }
                pending.seen = true;
            }
            "event" => {
                pending.event = Some(value.to_owned());
                pending.seen = true;
            }
            "id" if !value.contains('\0') => {
                pending.id = Some(value.to_owned());
                pending.seen = true;
            }
            "retry" => {
                if let Ok(retry) = value.parse() {
                    pending.retry = Some(retry);
                    pending.seen = true;
                }
            }
            _ => {}
        }
        None
    }
}

/// The next event or comment of `stream` (see [`SseStream::next_event`]).
pub async fn next_event(stream: &mut SseStream) -> Option<SseEvent> {
    stream.next_event().await
}
