//! An incremental Server-Sent Events parser.
//!
//! Fed the body's bytes as they arrive, in frames of any size, it reports each complete event.
//! It accepts `\n`, `\r\n` and `\r` line endings (also when a `\r\n` pair is split between two
//! frames), skips comments and a leading BOM, and bounds memory: an event larger than the limit is
//! reported as truncated instead of growing the buffer.

/// One SSE event carrying `json` (one line: JSON text has no raw line breaks):
/// `data: <json>` and the blank line that ends the event.
pub fn data_event(json: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out.into()
}

/// One SSE event carrying a local JSON-RPC error answer for `id`, with the request's correlation
/// id (when known) in `data.correlationId`, as every local error answer carries it: what a layer
/// that ends a stream itself writes last.
pub fn error_event(
    id: Option<&crate::RequestId>,
    code: i64,
    message: &str,
    correlation: Option<&crate::CorrelationId>,
) -> bytes::Bytes {
    data_event(&crate::jsonrpc::local_error_body(
        id,
        code,
        message,
        correlation,
    ))
}

/// `data` cut after each line end (`\n`, `\r`, or `\r\n` as one), with the offset just past
/// each piece; a last piece without a line end comes too. Fed to an [`SseParser`] one piece at
/// a time, the parser is [at a boundary](SseParser::at_boundary) after a piece exactly where an
/// event ended, which is how a writer finds where in a frame it may end the stream.
///
/// ```
/// use tower_armor_mcp::sse::lines;
/// let pieces: Vec<(usize, &[u8])> = lines(b"data: 1\r\n\ndata: 2").collect();
/// assert_eq!(pieces, [(9, &b"data: 1\r\n"[..]), (10, b"\n"), (17, b"data: 2")]);
/// ```
pub fn lines(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let rest = data.get(start..).filter(|r| !r.is_empty())?;
        let len = match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => i + 2,
            Some(i) => i + 1,
            None => rest.len(),
        };
        start += len;
        Some((start, &rest[..len]))
    })
}

/// One dispatched event. Borrows the parser's buffers until the next call to
/// [`SseParser::feed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The event's data: its `data:` lines joined with `\n`.
    pub data: &'a [u8],
    /// The `event:` field, if any.
    pub event: Option<&'a [u8]>,
    /// The `id:` field of this event, if any.
    pub id: Option<&'a [u8]>,
    /// Whether the event exceeded the size limit and `data` holds only its beginning.
    pub truncated: bool,
}

/// An incremental SSE parser; see the module docs.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// Bytes of a line whose end has not arrived yet.
    line: Vec<u8>,
    data: Vec<u8>,
    event: Vec<u8>,
    id: Vec<u8>,
    has_data: bool,
    has_event: bool,
    has_id: bool,
    /// Some field of the current event has been seen (so a blank line dispatches it).
    in_event: bool,
    /// The last byte seen was `\r`: a `\n` at the start of the next frame ends nothing.
    pending_cr: bool,
    truncated: bool,
    /// The line in progress was cut at the size limit (it counts for the event only if it is a
    /// `data` line: a long comment truncates nothing).
    line_cut: bool,
    /// Bytes of the BOM still to check at the very start of the stream.
    bom: u8,
    max_event: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_EVENT)
    }
}

impl SseParser {
    /// The default size limit of one event (16 MiB).
    pub const DEFAULT_MAX_EVENT: usize = 16 << 20;

    /// Creates a parser whose events are bounded to `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        SseParser {
            line: Vec::new(),
            data: Vec::new(),
            event: Vec::new(),
            id: Vec::new(),
            has_data: false,
            has_event: false,
            has_id: false,
            in_event: false,
            pending_cr: false,
            truncated: false,
            line_cut: false,
            bom: 0,
            max_event,
        }
    }

    /// Whether the bytes seen so far end exactly between two events: no partial line, no field of
    /// an undispatched event, no part of a byte order mark. Only there may a writer insert its
    /// own event or comment without changing the meaning of the stream.
    ///
    /// A line ended by a lone `\r` (the SSE format allows `\r`, `\n` and `\r\n`) is ended:
    /// if the `\n` of a `\r\n` follows what the writer inserted (which ends with a blank line),
    /// a client reads it as one more blank line, which dispatches nothing. Waiting for that
    /// `\n` instead would leave a stream that ends its lines with `\r` without a boundary
    /// whenever it falls quiet, when keep-alive comments are needed.
    pub fn at_boundary(&self) -> bool {
        !self.in_event && self.line.is_empty() && !matches!(self.bom, 1 | 2)
    }

    /// Whether the last byte seen was a `\r` that ended a line: a `\n` right after it belongs
    /// to that line's end (a `\r\n`), not to the next line.
    pub fn ends_with_cr(&self) -> bool {
        self.pending_cr
    }

    /// How many bytes of the event still being read the parser holds (its partial line and the
    /// fields seen so far). A caller with a tighter budget than the event limit checks it after
    /// each [`feed`](Self::feed).
    pub fn buffered_len(&self) -> usize {
        self.line.len() + self.data.len() + self.event.len() + self.id.len()
    }

    /// Feeds the next bytes of the stream; calls `on_event` for each event they complete.
    pub fn feed(&mut self, mut chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.bom < 3 {
            chunk = self.skip_bom(chunk, &mut on_event);
        }
        self.feed_lines(chunk, &mut on_event);
    }

    fn skip_bom<'c, F: FnMut(SseEvent<'_>)>(
        &mut self,
        mut chunk: &'c [u8],
        on_event: &mut F,
    ) -> &'c [u8] {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        while self.bom < 3 {
            let Some((&b, rest)) = chunk.split_first() else {
                return chunk;
            };
            if b == BOM[self.bom as usize] {
                self.bom += 1;
                chunk = rest;
            } else {
                // Not a BOM: replay the bytes we swallowed as ordinary input.
                let seen = self.bom as usize;
                self.bom = 3;
                if seen > 0 {
                    self.feed_lines(&BOM[..seen], on_event);
                }
            }
        }
        chunk
    }

    fn feed_lines<F: FnMut(SseEvent<'_>)>(&mut self, mut chunk: &[u8], on_event: &mut F) {
        // An empty frame says nothing about whether a pending `\r` is followed by `\n`.
        if chunk.is_empty() {
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match memchr::memchr2(b'\n', b'\r', chunk) {
                None => {
                    self.push_partial(chunk);
                    return;
                }
                Some(i) => {
                    let end = i;
                    let mut next = i + 1;
                    if chunk[i] == b'\r' {
                        match chunk.get(i + 1) {
                            Some(b'\n') => next += 1,
                            Some(_) => {}
                            None => self.pending_cr = true,
                        }
                    }
                    if self.line.is_empty() {
                        self.line_complete(LineSrc::Chunk(&chunk[..end]), on_event);
                    } else {
                        self.push_partial(&chunk[..end]);
                        self.line_complete(LineSrc::Buffered, on_event);
                    }
                    chunk = &chunk[next..];
                }
            }
        }
    }

    fn push_partial(&mut self, bytes: &[u8]) {
        let room = self.max_event.saturating_sub(self.line.len());
        if bytes.len() > room {
            self.line_cut = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn line_complete<F: FnMut(SseEvent<'_>)>(&mut self, src: LineSrc<'_>, on_event: &mut F) {
        let line = std::mem::take(&mut self.line);
        let cut = std::mem::take(&mut self.line_cut);
        let bytes: &[u8] = match src {
            LineSrc::Chunk(b) => b,
            LineSrc::Buffered => &line,
        };
        if bytes.is_empty() {
            self.dispatch(on_event);
        } else if bytes[0] != b':' {
            let (field, value) = match memchr::memchr(b':', bytes) {
                Some(c) => {
                    let v = &bytes[c + 1..];
                    (&bytes[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (bytes, &b""[..]),
            };
            if cut && field == b"data" {
                self.truncated = true;
            }
            self.field(field, value);
        }
        // Keep the line buffer's allocation for the next partial line, unless one long line
        // grew it.
        self.line = line;
        self.line.clear();
        release_if_large(&mut self.line);
    }

    fn field(&mut self, field: &[u8], value: &[u8]) {
        match field {
            b"data" => {
                self.in_event = true;
                self.has_data = true;
                let room = self.max_event.saturating_sub(self.data.len());
                if value.len() + 1 > room {
                    self.truncated = true;
                    let take = value.len().min(room);
                    self.data.extend_from_slice(&value[..take]);
                } else {
                    self.data.extend_from_slice(value);
                    self.data.push(b'\n');
                }
            }
            b"event" => {
                self.in_event = true;
                self.has_event = true;
                self.event.clear();
                self.event
                    .extend_from_slice(&value[..value.len().min(1024)]);
            }
            b"id" => {
                self.in_event = true;
                if !value.contains(&0) {
                    self.has_id = true;
                    self.id.clear();
                    self.id.extend_from_slice(&value[..value.len().min(1024)]);
                }
            }
            // `retry` and unknown fields are ignored, but still belong to the event.
            _ => self.in_event = true,
        }
    }

    fn dispatch<F: FnMut(SseEvent<'_>)>(&mut self, on_event: &mut F) {
        // As the SSE spec says: an event without any `data` line is not dispatched.
        if self.has_data {
            let mut data: &[u8] = &self.data;
            if let Some(d) = data.strip_suffix(b"\n") {
                data = d;
            }
            on_event(SseEvent {
                data,
                event: self.has_event.then_some(&self.event[..]),
                id: self.has_id.then_some(&self.id[..]),
                truncated: self.truncated,
            });
        }
        self.data.clear();
        release_if_large(&mut self.data);
        self.event.clear();
        self.id.clear();
        self.has_data = false;
        self.has_event = false;
        self.has_id = false;
        self.in_event = false;
        self.truncated = false;
    }
}

/// How much of a buffer's allocation a parser keeps between events. A stream that sent one
/// large event would otherwise hold that much memory for as long as it stays open (a long-lived
/// stream: hours), once per layer that parses it.
const KEEP_CAPACITY: usize = 64 << 10;

/// Frees an emptied buffer's allocation when an unusually large event grew it.
fn release_if_large(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        *buf = Vec::new();
    }
}

enum LineSrc<'a> {
    Chunk(&'a [u8]),
    Buffered,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Ev {
        data: String,
        event: Option<String>,
        id: Option<String>,
        truncated: bool,
    }

    #[test]
    fn a_large_event_does_not_leave_its_memory_behind() {
        let mut p = SseParser::default();
        let big = vec![b'x'; 1 << 20];
        let mut seen = 0;
        // One data line split over frames (buffered), then one whole in a frame.
        for chunk in [
            &b"data: "[..],
            &big,
            b"\n\n",
            b"data: ",
            &big,
            b"\n\ndata: ok\n\n",
        ] {
            p.feed(chunk, |e| {
                seen += 1;
                assert!(!e.truncated);
            });
        }
        assert_eq!(seen, 3);
        assert!(p.line.capacity() <= KEEP_CAPACITY, "{}", p.line.capacity());
        assert!(p.data.capacity() <= KEEP_CAPACITY, "{}", p.data.capacity());
        // Small events keep their buffers: no allocation per event.
        p.feed(b"data: a\n\n", |_| {});
        let cap = p.data.capacity();
        assert!(cap > 0);
        p.feed(b"data: b\n\n", |_| {});
        assert_eq!(p.data.capacity(), cap);
    }

    #[test]
    fn a_parser_bounded_to_one_byte_still_knows_where_events_end() {
        let mut p = SseParser::new(1);
        for (chunk, boundary) in [
            (&b"data: a long event"[..], false),
            (b"\n", false),
            (b"\n", true),
            (b"id: 1\nda", false),
            (b"ta: x\n\n", true),
            (b": comment\n", true),
        ] {
            p.feed(chunk, |_| {});
            assert_eq!(
                p.at_boundary(),
                boundary,
                "{:?}",
                String::from_utf8_lossy(chunk)
            );
            assert!(p.buffered_len() <= 2);
        }
    }

    fn parse_chunks(p: &mut SseParser, chunks: &[&[u8]]) -> Vec<Ev> {
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, |e| {
                out.push(Ev {
                    data: String::from_utf8_lossy(e.data).into(),
                    event: e.event.map(|v| String::from_utf8_lossy(v).into()),
                    id: e.id.map(|v| String::from_utf8_lossy(v).into()),
                    truncated: e.truncated,
                })
            });
        }
        out
    }

    #[test]
    fn basic_events_and_comments() {
        let mut p = SseParser::default();
        let evs = parse_chunks(
            &mut p,
            &[b": keep-alive\n\nid: 1\nevent: message\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n"],
        );
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[0].id.as_deref(), Some("1"));
        assert_eq!(evs[0].event.as_deref(), Some("message"));
        assert_eq!(evs[1].data, "x\ny");
        assert!(p.at_boundary());
    }

    #[test]
    fn split_crlf_and_lone_cr() {
        let mut p = SseParser::default();
        let evs = parse_chunks(&mut p, &[b"data: a\r", b"\n\r", b"\ndata: b\r\r"]);
        assert_eq!(
            evs.iter().map(|e| &e.data[..]).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(
            p.at_boundary(),
            "a line ended by \\r is ended, even if a \\n may follow"
        );
        let evs = parse_chunks(&mut p, &[b"", b"\n"]);
        assert!(
            evs.is_empty(),
            "an empty frame does not settle the pending \\r"
        );
        assert!(p.at_boundary());
        // Inside an event a lone \r is not a boundary.
        parse_chunks(&mut p, &[b"data: c\r"]);
        assert!(!p.at_boundary());
        parse_chunks(&mut p, &[b"\r"]);
        assert!(p.at_boundary());
    }

    #[test]
    fn a_partial_byte_order_mark_is_no_boundary() {
        let mut p = SseParser::default();
        parse_chunks(&mut p, &[b"\xEF"]);
        assert!(!p.at_boundary(), "a comment here would split the mark");
        parse_chunks(&mut p, &[b"\xBB"]);
        assert!(!p.at_boundary());
        let evs = parse_chunks(&mut p, &[b"\xBFdata: x\n\n"]);
        assert_eq!(evs[0].data, "x");
        assert!(p.at_boundary());
    }

    #[test]
    fn boundary_tracking() {
        let mut p = SseParser::default();
        assert!(p.at_boundary());
        parse_chunks(&mut p, &[b"data: partial"]);
        assert!(!p.at_boundary());
        assert_eq!(p.buffered_len(), b"data: partial".len());
        parse_chunks(&mut p, &[b"\n"]);
        assert!(!p.at_boundary());
        parse_chunks(&mut p, &[b"\n"]);
        assert!(p.at_boundary());
        assert_eq!(p.buffered_len(), 0, "a dispatched event is no longer held");
        // A priming event with an empty payload, as rmcp sends.
        let evs = parse_chunks(&mut p, &[b"id: 0\ndata:\n\n"]);
        assert_eq!(evs[0].data, "");
    }

    #[test]
    fn bom_is_skipped_only_at_start() {
        let mut p = SseParser::default();
        let evs = parse_chunks(&mut p, &[b"\xEF\xBB", b"\xBFdata: a\n\n"]);
        assert_eq!(evs[0].data, "a");
        let mut p = SseParser::default();
        let evs = parse_chunks(&mut p, &[b"\xEFdata: a\n\n"]);
        assert!(
            evs.is_empty(),
            "a broken BOM makes the first line a bogus field"
        );
        let evs = parse_chunks(&mut p, &[b"id: 7\n\ndata: b\n\n"]);
        assert_eq!(evs.len(), 1, "an event with no data line is not dispatched");
        assert_eq!(evs[0].data, "b");
    }

    #[test]
    fn oversized_events_are_truncated_not_buffered() {
        let mut p = SseParser::new(8);
        let evs = parse_chunks(&mut p, &[b"data: 0123456789abcdef\n\ndata: ok\n\n"]);
        assert!(evs[0].truncated);
        assert!(evs[0].data.len() <= 8);
        assert_eq!(evs[1].data, "ok");
        assert!(!evs[1].truncated);
        let mut p = SseParser::new(8);
        let evs = parse_chunks(&mut p, &[b"data: 0123", b"456789abcdef", b"\n\n"]);
        assert!(evs[0].truncated);
        // A long comment or other field cut at the limit truncates no event.
        let mut p = SseParser::new(8);
        let evs = parse_chunks(
            &mut p,
            &[
                b": a comm",
                b"ent far too long\n",
                b"retry: 123456789012\n",
                b"data: ok\n\n",
            ],
        );
        assert_eq!(evs[0].data, "ok");
        assert!(!evs[0].truncated);
    }
}
