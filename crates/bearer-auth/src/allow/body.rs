//! [`AllowBody`]: the response body of [`ToolAllowList`](super::ToolAllowList): the inner body
//! untouched, a local answer, or a `tools/list` answer being filtered.
//!
//! - JSON answers are one message: they are read (bounded) and re-emitted filtered.
//! - SSE answers are streamed: every event and comment is forwarded as soon as it is complete
//!   (zero-copy when it lies within one frame); only the event being read is held, so the
//!   `tools/list` result event can be replaced by its filtered version (same `id:` and `event:`
//!   fields). After that event everything passes untouched, frame by frame. A GET stream
//!   (listen, or a `Last-Event-ID` resumption replaying an earlier answer) is read to its end:
//!   every list result in it is filtered.
//!
//! Fail closed: a result that cannot be filtered, or that exceeds the size bound, is replaced by
//! a JSON-RPC error (local code `-31502`) for the request; a stream that ends or fails in the
//! middle of an event drops that partial event rather than forward hidden names.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_armor_mcp::RequestId;
use tower_armor_mcp::error::CODE_BAD_GATEWAY;
use tower_armor_mcp::jsonrpc::error_body;
use tower_armor_mcp::sse::SseParser;

use super::policy::ToolSet;
use super::rewrite::{Rewrite, Target, rewrite_list};

/// The largest `tools/list` answer (JSON body or one SSE event) that is filtered: 16 MiB.
pub const MAX_LIST_BYTES: usize = 16 << 20;

const UNFILTERABLE: &str = "tools/list answer could not be filtered";

/// What a `tools/list` answer is filtered with.
#[derive(Debug, Clone)]
pub(crate) struct ListFilter {
    pub(crate) target: Target,
    /// `None`: every tool is kept (an unrestricted principal; only the scope is set).
    pub(crate) allowed: Option<ToolSet>,
    pub(crate) private: bool,
}

impl ListFilter {
    fn rewrite(&self, message: &[u8]) -> Rewrite {
        rewrite_list(message, &self.target, self.allowed.as_ref(), self.private)
    }

    /// The error that replaces an answer that cannot be filtered: for `id`, else for the
    /// request whose answer is filtered (if known).
    pub(crate) fn error_message(&self, id: Option<&RequestId>) -> Bytes {
        let id = id.or(match &self.target {
            Target::Request(id) => Some(id),
            Target::AnyList => None,
        });
        error_body(id, CODE_BAD_GATEWAY, UNFILTERABLE, None)
    }

    /// Whether the answer holds one list at most (the answer to one request): once it has
    /// passed, the rest of the stream is not looked at.
    pub(crate) fn single(&self) -> bool {
        matches!(self.target, Target::Request(_))
    }
}

pin_project! {
    /// Response body of [`ToolAllowList`](super::ToolAllowList); see the [module docs](self).
    pub struct AllowBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Local {
            data: Option<Bytes>,
        },
        Json {
            #[pin]
            body: B,
            state: Box<JsonState>,
        },
        Sse {
            #[pin]
            body: B,
            state: Box<SseState>,
        },
    }
}

struct JsonState {
    filter: ListFilter,
    buf: BytesMut,
    overflow: bool,
    finished: bool,
}

struct SseState {
    filter: ListFilter,
    parser: SseParser,
    /// Bytes of the current event that arrived in earlier frames.
    held: BytesMut,
    /// Complete events and comments ready to go out.
    ready: VecDeque<Bytes>,
    /// The result event has passed (rewritten): forward the rest untouched.
    done: bool,
    /// Stop after `ready` drains (fail-closed end).
    end: bool,
    /// The rewritten event ended with a `\r` at a frame's end: drop a `\n` opening the next.
    skip_lf: bool,
    trailers: Option<http::HeaderMap>,
}

impl<B> AllowBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        AllowBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn local(data: Bytes) -> Self {
        AllowBody {
            kind: Kind::Local {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    pub(crate) fn json(body: B, filter: ListFilter) -> Self {
        AllowBody {
            kind: Kind::Json {
                body,
                state: Box::new(JsonState {
                    filter,
                    buf: BytesMut::new(),
                    overflow: false,
                    finished: false,
                }),
            },
        }
    }

    pub(crate) fn sse(body: B, filter: ListFilter) -> Self {
        AllowBody {
            kind: Kind::Sse {
                body,
                state: Box::new(SseState {
                    filter,
                    parser: SseParser::new(MAX_LIST_BYTES),
                    held: BytesMut::new(),
                    ready: VecDeque::new(),
                    done: false,
                    end: false,
                    skip_lf: false,
                    trailers: None,
                }),
            },
        }
    }
}

impl<B> fmt::Debug for AllowBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Local { .. } => "local",
            Kind::Json { .. } => "filtered_json",
            Kind::Sse { .. } => "filtered_sse",
        };
        f.debug_struct("AllowBody").field("kind", &kind).finish()
    }
}

/// Writes one SSE event carrying `json` (split on its line breaks, which can only be JSON
/// whitespace) with the original `event:` and `id:` fields.
fn sse_event(json: &[u8], event: Option<&[u8]>, id: Option<&[u8]>) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 64);
    let mut rest = json;
    loop {
        let cut = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..cut]);
        out.extend_from_slice(b"\n");
        if cut == rest.len() {
            break;
        }
        rest = &rest[cut + 1..];
        if let Some(r) = rest.strip_prefix(b"\n") {
            rest = r;
        }
    }
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e);
        out.extend_from_slice(b"\n");
    }
    if let Some(i) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(i);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

impl SseState {
    /// Splits `data` into complete events/comments, rewriting list result events.
    fn process(&mut self, data: Bytes) {
        let mut unit_start = 0;
        let mut pos = 0;
        if self.skip_lf && !data.is_empty() {
            self.skip_lf = false;
            if data[0] == b'\n' {
                // The `\n` of a rewritten event's `\r\n`: the parser must see it, the client not.
                self.parser.feed(&data[..1], |_| {});
                unit_start = 1;
                pos = 1;
            }
        }
        while pos < data.len() {
            let end =
                memchr::memchr2(b'\n', b'\r', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
            let mut replacement: Option<Bytes> = None;
            let mut failed = false;
            let filter = &self.filter;
            self.parser.feed(&data[pos..end], |ev| {
                let r = if ev.truncated {
                    // Only an event that could be a list answer matters; a truncated one cannot
                    // be checked, so it is treated as one.
                    Rewrite::Unfilterable(None)
                } else {
                    filter.rewrite(ev.data)
                };
                replacement = match r {
                    Rewrite::Unchanged => None,
                    Rewrite::Rewritten(json) => Some(sse_event(&json, ev.event, ev.id)),
                    Rewrite::Unfilterable(id) => {
                        failed = true;
                        Some(sse_event(
                            &filter.error_message(id.as_ref()),
                            ev.event,
                            ev.id,
                        ))
                    }
                };
            });
            pos = end;
            if let Some(r) = replacement {
                // The result event ends within this line's piece or at the next boundary; its
                // raw bytes are dropped, the filtered event goes out instead.
                self.held.clear();
                self.ready.push_back(r);
                // A `\r` that ended the event may be followed by a `\n`, here or in the next
                // frame: it belongs to the dropped raw event.
                let mut lf = false;
                if self.parser.ends_with_cr() {
                    if data.get(pos) == Some(&b'\n') {
                        lf = true;
                    } else if pos == data.len() {
                        self.skip_lf = true;
                    }
                }
                if self.filter.single() && failed {
                    // The request's answer is this error: the event that could not be read may
                    // not have been the list, which must not pass after it. Nothing more.
                    self.end = true;
                    return;
                }
                if self.filter.single() {
                    self.done = true;
                    // Whatever follows the blank line that ended the event passes untouched.
                    let rest = data.slice(pos + usize::from(lf)..);
                    if !rest.is_empty() {
                        self.ready.push_back(rest);
                    }
                    return;
                }
                if lf {
                    self.parser.feed(&data[pos..pos + 1], |_| {});
                    pos += 1;
                }
                unit_start = pos;
                continue;
            }
            if self.parser.at_boundary() {
                let unit = if self.held.is_empty() {
                    data.slice(unit_start..pos)
                } else {
                    self.held.extend_from_slice(&data[unit_start..pos]);
                    self.held.split().freeze()
                };
                if !unit.is_empty() {
                    self.ready.push_back(unit);
                }
                unit_start = pos;
            }
        }
        if unit_start < data.len() {
            self.held.extend_from_slice(&data[unit_start..]);
            if self.held.len() > MAX_LIST_BYTES + 4096 {
                // An event larger than any list we filter: fail closed.
                self.held.clear();
                let err = self.filter.error_message(None);
                self.ready.push_back(sse_event(&err, None, None));
                self.end = true;
            }
        }
    }
}

impl<B> Body for AllowBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Json { mut body, state } => {
                if state.finished {
                    return Poll::Ready(None);
                }
                loop {
                    match ready!(body.as_mut().poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Ok(mut data) = frame.into_data() {
                                if state.buf.len() + data.remaining() > MAX_LIST_BYTES {
                                    state.overflow = true;
                                    state.buf.clear();
                                } else if !state.overflow {
                                    while data.has_remaining() {
                                        let c = data.chunk();
                                        let n = c.len();
                                        state.buf.extend_from_slice(c);
                                        data.advance(n);
                                    }
                                }
                            }
                            // Trailers of a JSON answer carry nothing for MCP: dropped.
                        }
                        Some(Err(e)) => {
                            state.finished = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                        None => break,
                    }
                }
                state.finished = true;
                let out = if state.overflow {
                    state.filter.error_message(None)
                } else {
                    match state.filter.rewrite(&state.buf) {
                        Rewrite::Unchanged => std::mem::take(&mut state.buf).freeze(),
                        Rewrite::Rewritten(v) => Bytes::from(v),
                        Rewrite::Unfilterable(id) => state.filter.error_message(id.as_ref()),
                    }
                };
                Poll::Ready(Some(Ok(Frame::data(out))))
            }
            KindProj::Sse { mut body, state } => loop {
                if let Some(b) = state.ready.pop_front() {
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                if state.end {
                    return Poll::Ready(None);
                }
                if let Some(t) = state.trailers.take() {
                    state.end = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(t))));
                }
                match ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(mut data) if state.done => {
                            // An empty frame says nothing about the `\n` that may follow a `\r`.
                            if !data.is_empty()
                                && std::mem::take(&mut state.skip_lf)
                                && data.first() == Some(&b'\n')
                            {
                                data.advance(1);
                            }
                            if !data.is_empty() {
                                return Poll::Ready(Some(Ok(Frame::data(data))));
                            }
                        }
                        Ok(data) => state.process(data),
                        Err(frame) => {
                            // Trailers: whatever partial event is held never completes.
                            state.held.clear();
                            state.trailers = frame.into_trailers().ok();
                            if state.trailers.is_none() {
                                state.end = true;
                            }
                        }
                    },
                    Some(Err(e)) => {
                        state.held.clear();
                        state.end = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    None => {
                        if !state.held.is_empty() {
                            tracing::debug!(
                                "SSE answer ended inside an event; partial event dropped"
                            );
                            state.held.clear();
                        }
                        state.end = true;
                    }
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Local { data } => data.is_none(),
            Kind::Json { state, .. } => state.finished,
            Kind::Sse { body, state } => {
                state.ready.is_empty()
                    && state.trailers.is_none()
                    && (state.end || (body.is_end_stream() && state.held.is_empty()))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Json { .. } | Kind::Sse { .. } => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::convert::Infallible;
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use http_body_util::StreamBody;
    use proptest::prelude::*;

    use super::*;

    fn allowed() -> Option<ToolSet> {
        Some(Arc::new(
            ["add", "echo"]
                .into_iter()
                .map(Box::<str>::from)
                .collect::<HashSet<_>>(),
        ))
    }

    fn filter(private: bool) -> ListFilter {
        ListFilter {
            target: Target::Request(RequestId::Number(7)),
            allowed: allowed(),
            private,
        }
    }

    /// The filter of a GET stream.
    fn any_filter() -> ListFilter {
        ListFilter {
            target: Target::AnyList,
            allowed: allowed(),
            private: false,
        }
    }

    type Chunks = StreamBody<
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
    >;

    fn chunked(parts: Vec<Vec<u8>>) -> Chunks {
        StreamBody::new(futures_util::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok(Frame::data(Bytes::from(p))))
                .collect::<Vec<_>>(),
        ))
    }

    async fn collect_frames<Bd: Body<Data = Bytes, Error = Infallible>>(b: Bd) -> Vec<Bytes> {
        let mut b = std::pin::pin!(b);
        let mut out = Vec::new();
        while let Some(f) = b.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                out.push(d);
            }
        }
        out
    }

    const LIST: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"add"},{"name":"crash"},{"name":"echo"}]}}"#;

    fn stream_text() -> String {
        format!(
            "data: \nid: 0/0\nretry: 3000\n\n: keep-alive\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\ndata: {LIST}\nid: 1/0\n\ndata: after\n\n"
        )
    }

    fn expected_text() -> String {
        let filtered =
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"add"},{"name":"echo"}]}}"#;
        format!(
            "data: \nid: 0/0\nretry: 3000\n\n: keep-alive\n\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\ndata: {filtered}\nid: 1/0\n\ndata: after\n\n"
        )
    }

    #[tokio::test]
    async fn sse_result_is_rewritten_and_the_rest_kept() {
        let body = AllowBody::sse(chunked(vec![stream_text().into_bytes()]), filter(false));
        let frames = collect_frames(body).await;
        let all: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
        assert_eq!(String::from_utf8(all).unwrap(), expected_text());
        // Each event went out as its own frame, as soon as it was complete.
        assert!(frames.len() >= 5, "{frames:?}");
    }

    #[tokio::test]
    async fn json_result_is_rewritten_and_marked_private() {
        let body = AllowBody::json(
            chunked(vec![
                LIST.as_bytes()[..20].to_vec(),
                LIST.as_bytes()[20..].to_vec(),
            ]),
            filter(true),
        );
        let frames = collect_frames(body).await;
        let v: serde_json::Value = serde_json::from_slice(&frames.concat()).unwrap();
        assert_eq!(
            v["result"]["tools"],
            serde_json::json!([{"name":"add"},{"name":"echo"}])
        );
        assert_eq!(v["result"]["cacheScope"], "private");
    }

    #[tokio::test]
    async fn unfinished_or_unfilterable_results_never_pass() {
        // The stream ends inside the result event: nothing of it goes out.
        let text = format!("data: {LIST}\n");
        let frames = collect_frames(AllowBody::sse(
            chunked(vec![text.into_bytes()]),
            filter(false),
        ))
        .await;
        assert!(frames.concat().is_empty(), "{frames:?}");
        // A result that cannot be filtered becomes a local error for the request.
        let bad = r#"data: {"jsonrpc":"2.0","id":7,"result":{"tools":{"name":"crash"}}}"#;
        let frames = collect_frames(AllowBody::sse(
            chunked(vec![format!("{bad}\n\n").into_bytes()]),
            filter(false),
        ))
        .await;
        let text = String::from_utf8(frames.concat()).unwrap();
        assert!(!text.contains("crash"), "{text}");
        assert!(text.contains("-31502"), "{text}");
        // An event that cannot be read (invalid UTF-8) may have been the list or not: its
        // error is the answer, and the list that follows never passes.
        let mut stream =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"x\",\"params\":\"\xff\"}\n\n".to_vec();
        stream.extend_from_slice(format!("data: {LIST}\n\n").as_bytes());
        let frames = collect_frames(AllowBody::sse(chunked(vec![stream]), filter(false))).await;
        let text = String::from_utf8(frames.concat()).unwrap();
        assert!(!text.contains("crash"), "{text}");
        assert_eq!(text.matches("data: ").count(), 1, "{text}");
        assert!(text.contains("-31502"), "{text}");
    }

    #[tokio::test]
    async fn events_before_the_result_are_not_held_back() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        let body = AllowBody::sse(StreamBody::new(tokio_stream_from(rx)), filter(false));
        let mut body = std::pin::pin!(body);
        tx.send(Ok(Frame::data(Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\ndata: {\"jsonrpc\":")))).await.unwrap();
        // The complete progress event comes out before the rest of the stream exists.
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(f.starts_with(b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\""));
        assert!(f.ends_with(b"\n\n"));
        drop(tx);
        assert!(
            body.frame().await.is_none(),
            "the partial event is dropped at the end"
        );
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// A resumed GET stream: two replayed list answers (ids this layer never saw), a tool
    /// result, a keep-alive, CRLF line ends.
    fn get_stream_text() -> String {
        let list = |id: u32| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"add"}},{{"name":"crash"}},{{"name":"echo"}}]}}}}"#
            )
        };
        format!(
            "data: {}\nid: 0/1\n\n: keep-alive\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"content\":[]}}}}\nid: 0/2\r\n\r\ndata: {}\r\nid: 1/1\r\n\r\ndata: after\n\n",
            list(1),
            list(2)
        )
    }

    fn get_expected_text() -> String {
        let list = |id: u32| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"add"}},{{"name":"echo"}}]}}}}"#
            )
        };
        format!(
            "data: {}\nid: 0/1\n\n: keep-alive\n\ndata: {{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{{\"content\":[]}}}}\nid: 0/2\r\n\r\ndata: {}\nid: 1/1\n\ndata: after\n\n",
            list(1),
            list(2)
        )
    }

    #[tokio::test]
    async fn every_list_in_a_get_stream_is_filtered() {
        let body = AllowBody::sse(chunked(vec![get_stream_text().into_bytes()]), any_filter());
        let frames = collect_frames(body).await;
        let text = String::from_utf8(frames.concat()).unwrap();
        assert!(!text.contains("crash"), "{text}");
        assert_eq!(text, get_expected_text());
        // A malformed list in a GET stream becomes an error for its id, and the stream goes on.
        let bad = "data: {\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"tools\":{\"name\":\"crash\"}}}\n\ndata: next\n\n";
        let frames = collect_frames(AllowBody::sse(
            chunked(vec![bad.as_bytes().to_vec()]),
            any_filter(),
        ))
        .await;
        let text = String::from_utf8(frames.concat()).unwrap();
        assert!(!text.contains("crash"), "{text}");
        assert!(
            text.starts_with("data: {\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":-31502"),
            "{text}"
        );
        assert!(text.ends_with("data: next\n\n"), "{text}");
    }

    /// `bytes` cut into frames at `cuts` (taken modulo its length, in any order).
    fn split_at(bytes: &[u8], cuts: Vec<usize>) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut last = 0;
        for c in cuts {
            parts.push(bytes[last..c].to_vec());
            last = c;
        }
        parts.push(bytes[last..].to_vec());
        parts
    }

    proptest! {
        #[test]
        fn any_framing_of_a_get_stream_gives_the_same_bytes(cuts in proptest::collection::vec(0usize..900, 0..12)) {
            let bytes = get_stream_text().into_bytes();
            let parts = split_at(&bytes, cuts);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let frames = rt.block_on(collect_frames(AllowBody::sse(chunked(parts), any_filter())));
            prop_assert_eq!(String::from_utf8(frames.concat()).unwrap(), get_expected_text());
        }

        #[test]
        fn any_framing_gives_the_same_bytes(cuts in proptest::collection::vec(0usize..400, 0..12), crlf in any::<bool>()) {
            let mut text = stream_text();
            let mut want = expected_text();
            if crlf {
                text = text.replace('\n', "\r\n");
                // The rewritten event is written with LF; everything else keeps CRLF.
                want = want.replace('\n', "\r\n");
                let filtered = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"add"},{"name":"echo"}]}}"#;
                want = want.replace(&format!("data: {filtered}\r\nid: 1/0\r\n\r\n"), &format!("data: {filtered}\nid: 1/0\n\n"));
            }
            let bytes = text.into_bytes();
            let parts = split_at(&bytes, cuts);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let frames = rt.block_on(collect_frames(AllowBody::sse(chunked(parts), filter(false))));
            prop_assert_eq!(String::from_utf8(frames.concat()).unwrap(), want);
        }
    }
}
