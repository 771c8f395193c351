//! [`LearnToolsLayer`]: learns the tool names of the server's `tools/list` answers into a
//! [`KnownTools`] set, watching the answer on its way out without holding it back.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::Deserialize;
use serde::de::IgnoredAny;
use tower_layer::Layer;
use tower_service::Service;

use super::KnownTools;
use crate::observe::{is_event_stream, is_json};
use crate::sse::SseParser;
use crate::{McpRequest, MessageKind, Method, RequestId};

/// Learns tool names from the server's `tools/list` answers into a [`KnownTools`] set.
///
/// For a request whose facts ([`McpRequest`]) say it is a `tools/list` request, the answer is
/// watched as it streams out: a 2xx `application/json` body when it ends, a 2xx
/// `text/event-stream` answer at the event carrying the JSON-RPC response to the request's id
/// (notifications and server requests before it are skipped). The names of its
/// `result.tools[].name` go to [`KnownTools::learn`], which ignores empty names, names longer
/// than [`KnownTools::MAX_NAME_LEN`] (never truncated) and names beyond the set's capacity. Both
/// revisions (2025-11-25 and 2026-07-28) answer in this shape; each page of a paged list
/// (`nextCursor`) is learned when it passes.
///
/// Frames are forwarded untouched, one by one, as they arrive; the watcher only copies them into
/// a side buffer of at most [`max_bytes`](Self::max_bytes) per message. A larger message, an
/// error status, a JSON-RPC `error`, a body error or a dropped body: nothing is learned from that
/// answer, and the answer is not affected. Every other request goes through with nothing but a
/// method check: its body is not watched.
///
/// # Ordering
///
/// Inside [`McpInspectLayer`](crate::inspect::McpInspectLayer), whose facts it reads (a request
/// without them is passed on unwatched, and a warning is logged once). Inside any layer that
/// filters `tools/list` answers (the tool allow-list of `tower-armor-bearer-auth` hides tools per
/// principal), so that it sees the server's whole catalogue. The answer is matched by the
/// request's JSON-RPC id, so it also goes outside any layer that re-sends requests under new ids.
/// The documented place is right after the allow-list:
///
/// ```text
/// … → McpInspectLayer → allow-list → LearnToolsLayer → rate-limit → rescue → … → MCP service
/// ```
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use http_body_util::BodyExt;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_armor_mcp::{KnownTools, McpBody, inspect::McpInspectLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let known = KnownTools::default();
/// let svc = ServiceBuilder::new()
///     .layer(McpInspectLayer::new())
///     .layer(known.learn_layer())
///     .service_fn(|_req: Request<McpBody>| async move {
///         let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add"},{"name":"echo"}]}}"#;
///         let resp = Response::builder()
///             .header("content-type", "application/json")
///             .body(http_body_util::Full::new(bytes::Bytes::from(list)))
///             .unwrap();
///         Ok::<_, Infallible>(resp)
///     });
///
/// let req = Request::post("/mcp")
///     .header("content-type", "application/json")
///     .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.to_string())
///     .unwrap();
/// let resp = svc.oneshot(req).await.unwrap();
/// // The names are learned when the answer has passed.
/// let _ = resp.into_body().collect().await.unwrap();
/// assert!(known.contains("add") && known.contains("echo"));
/// assert_eq!(&*known.key(Some("made-up")), tower_armor_mcp::tools::UNKNOWN_TOOL);
/// # }
/// ```
#[derive(Clone)]
pub struct LearnToolsLayer {
    shared: Arc<Shared>,
}

struct Shared {
    known: KnownTools,
    max_bytes: usize,
    /// A request came without facts (inspect missing or misplaced): warned once.
    unwired_logged: AtomicBool,
    /// An answer exceeded `max_bytes`: warned once, then at debug level.
    overflow_logged: AtomicBool,
}

impl fmt::Debug for LearnToolsLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearnToolsLayer")
            .field("known", &self.shared.known)
            .field("max_bytes", &self.shared.max_bytes)
            .finish()
    }
}

impl LearnToolsLayer {
    /// The default bound of one watched message (a JSON body, or one SSE event): 4 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 4 << 20;

    /// A layer learning into `known` (shared: clones of a [`KnownTools`] see the same set), with
    /// messages bounded to [`DEFAULT_MAX_BYTES`](Self::DEFAULT_MAX_BYTES).
    pub fn new(known: KnownTools) -> Self {
        Self::with(known, Self::DEFAULT_MAX_BYTES)
    }

    fn with(known: KnownTools, max_bytes: usize) -> Self {
        LearnToolsLayer {
            shared: Arc::new(Shared {
                known,
                max_bytes,
                unwired_logged: AtomicBool::new(false),
                overflow_logged: AtomicBool::new(false),
            }),
        }
    }

    /// The largest message watched: a `tools/list` JSON answer, or the SSE event holding the
    /// result, longer than this is forwarded as usual but not learned from.
    pub fn max_bytes(self, bytes: usize) -> Self {
        Self::with(self.shared.known.clone(), bytes)
    }

    /// The set names are learned into.
    pub fn known_tools(&self) -> &KnownTools {
        &self.shared.known
    }
}

impl<S> Layer<S> for LearnToolsLayer {
    type Service = LearnTools<S>;

    fn layer(&self, inner: S) -> LearnTools<S> {
        LearnTools {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Learns tool names from `tools/list` answers; see [`LearnToolsLayer`].
///
/// Keeps `S`'s error type; the response body becomes [`LearnToolsBody`].
#[derive(Clone)]
pub struct LearnTools<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for LearnTools<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearnTools")
            .field("inner", &self.inner)
            .field("known", &self.shared.known)
            .finish()
    }
}

impl<S> LearnTools<S> {
    /// Wraps `inner`, learning into `known` with the default bound (as
    /// `LearnToolsLayer::new(known).layer(inner)`).
    pub fn new(inner: S, known: KnownTools) -> Self {
        LearnToolsLayer::new(known).layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The watcher for this request's answer, if it is a `tools/list` request.
    fn watch_for<B>(&self, req: &Request<B>) -> Option<Box<Watch>> {
        let Some(facts) = req.extensions().get::<McpRequest>() else {
            if !self.shared.unwired_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "LearnToolsLayer got a request without McpRequest facts: put McpInspectLayer \
                     in front of it; no tool names are learned from such requests"
                );
            }
            return None;
        };
        if !matches!(facts.method(), Some(Method::ToolsList))
            || facts.kind() != MessageKind::Request
        {
            return None;
        }
        Some(Box::new(Watch {
            shared: Arc::clone(&self.shared),
            id: facts.id()?.clone(),
            // Decided from the answer's headers.
            mode: Mode::Json(JsonBuf::default()),
        }))
    }
}

impl<S, B, ResBody> Service<Request<B>> for LearnTools<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<LearnToolsBody<ResBody>>;
    type Error = S::Error;
    type Future = LearnToolsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let watch = self.watch_for(&req);
        LearnToolsFuture {
            inner: self.inner.call(req),
            watch,
        }
    }
}

pin_project! {
    /// Response future of [`LearnTools`]: the inner future, its answer's body wrapped in
    /// [`LearnToolsBody`].
    pub struct LearnToolsFuture<F> {
        #[pin]
        inner: F,
        watch: Option<Box<Watch>>,
    }
}

impl<F> fmt::Debug for LearnToolsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearnToolsFuture")
            .field("tools_list", &self.watch.is_some())
            .finish()
    }
}

impl<F, ResBody, E> Future for LearnToolsFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<LearnToolsBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let watch = this.watch.take().and_then(|mut w| {
            if !resp.status().is_success() {
                return None;
            }
            if is_event_stream(resp.headers()) {
                // The parser's own bound truncates an event at `max_bytes`; `buffered_len` keeps
                // the partial line and the event's fields within it together.
                w.mode = Mode::Sse(SseParser::new(w.shared.max_bytes));
            } else if !is_json(resp.headers()) {
                return None;
            }
            Some(w)
        });
        Poll::Ready(Ok(resp.map(|inner| LearnToolsBody { inner, watch })))
    }
}

pin_project! {
    /// Response body of [`LearnTools`]: the inner body, every frame forwarded untouched as it
    /// arrives. For a 2xx answer to `tools/list` it also copies the frames into a bounded side
    /// buffer until the result has passed; see [`LearnToolsLayer`].
    pub struct LearnToolsBody<B> {
        #[pin]
        inner: B,
        watch: Option<Box<Watch>>,
    }
}

impl<B> LearnToolsBody<B> {
    /// Whether the answer is still being watched for tool names: only a 2xx JSON or SSE answer
    /// to `tools/list`, until its result has passed or watching stopped.
    pub fn is_learning(&self) -> bool {
        self.watch.is_some()
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for LearnToolsBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LearnToolsBody")
            .field("learning", &self.is_learning())
            .finish()
    }
}

impl<B> Body for LearnToolsBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let res = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(w) = this.watch.as_mut() {
            let keep = match &res {
                Some(Ok(frame)) => match frame.data_ref() {
                    Some(data) => w.feed(data),
                    None => true,
                },
                // A failed answer is not a catalogue.
                Some(Err(_)) => false,
                None => {
                    w.finish();
                    false
                }
            };
            if !keep {
                *this.watch = None;
            } else if this.inner.is_end_stream() {
                // hyper stops polling once `is_end_stream` is true: the `None` may never come.
                w.finish();
                *this.watch = None;
            }
        }
        Poll::Ready(res)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Watches one `tools/list` answer.
struct Watch {
    shared: Arc<Shared>,
    id: RequestId,
    mode: Mode,
}

enum Mode {
    Json(JsonBuf),
    Sse(SseParser),
}

/// A JSON answer's bytes so far: the first frame kept as is (no copy for one-frame bodies).
#[derive(Default)]
struct JsonBuf {
    first: Option<Bytes>,
    rest: Vec<u8>,
}

impl Watch {
    /// Takes the next data frame; returns whether to keep watching.
    fn feed(&mut self, data: &Bytes) -> bool {
        let max = self.shared.max_bytes;
        match &mut self.mode {
            Mode::Json(buf) => {
                let len = buf.first.as_ref().map_or(0, Bytes::len) + buf.rest.len();
                if len + data.len() > max {
                    self.overflow();
                    return false;
                }
                match buf.first.take() {
                    None if buf.rest.is_empty() => buf.first = Some(data.clone()),
                    first => {
                        if let Some(f) = first {
                            buf.rest.extend_from_slice(&f);
                        }
                        buf.rest.extend_from_slice(data);
                    }
                }
                true
            }
            Mode::Sse(parser) => {
                let (known, id) = (&self.shared.known, &self.id);
                let mut done = false;
                let mut truncated = false;
                parser.feed(data, |ev| {
                    if done || truncated {
                        return;
                    }
                    if ev.truncated {
                        truncated = true;
                        return;
                    }
                    match read_answer(ev.data, Some(id)) {
                        Answer::List(names) => {
                            learn(known, &names);
                            done = true;
                        }
                        Answer::NotAList => done = true,
                        Answer::Other => {}
                    }
                });
                if done {
                    return false;
                }
                if truncated || parser.buffered_len() > max {
                    self.overflow();
                    return false;
                }
                true
            }
        }
    }

    /// The answer has ended: a JSON answer is read now. (An SSE event cut off by the end is
    /// dropped, as the SSE rules say.)
    fn finish(&mut self) {
        if let Mode::Json(buf) = &self.mode {
            let bytes: &[u8] = match &buf.first {
                Some(f) => f,
                None => &buf.rest,
            };
            if let Answer::List(names) = read_answer(bytes, Some(&self.id)) {
                learn(&self.shared.known, &names);
            }
        }
    }

    fn overflow(&self) {
        let max = self.shared.max_bytes;
        if !self.shared.overflow_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_bytes = max,
                "tools/list answer larger than the learning bound: its tool names are not learned"
            );
        } else {
            tracing::debug!(
                max_bytes = max,
                "tools/list answer larger than the learning bound: its tool names are not learned"
            );
        }
    }
}

fn learn(known: &KnownTools, names: &[Cow<'_, str>]) {
    // Most lists repeat a catalogue already known: that costs a read lock, not a write lock.
    if known.adds_nothing(names) {
        return;
    }
    let added = known.learn(names);
    tracing::debug!(
        listed = names.len(),
        added,
        "tool names learned from a tools/list answer"
    );
}

/// What one message of a `tools/list` answer is.
pub(super) enum Answer<'a> {
    /// The success response to the request, with its tool names.
    List(Vec<Cow<'a, str>>),
    /// The response to the request, with no tool list in it (an `error`).
    NotAList,
    /// Anything else: a notification, a server request, a response to another id, unreadable.
    Other,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default)]
    method: Option<IgnoredAny>,
    // `null` (an answer to an unreadable request) reads as `None`.
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(borrow, default)]
    result: Option<ListResult<'a>>,
}

#[derive(Deserialize)]
struct ListResult<'a> {
    #[serde(borrow, default)]
    tools: Vec<Tool<'a>>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    // Borrowed from the message unless the name has escapes.
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// Reads one message of a `tools/list` answer. `id` is the request's: a response to another id
/// is [`Answer::Other`]. Without an id any response is taken.
pub(super) fn read_answer<'a>(message: &'a [u8], id: Option<&RequestId>) -> Answer<'a> {
    let Ok(msg) = serde_json::from_slice::<Message<'a>>(message) else {
        return Answer::Other;
    };
    if msg.method.is_some() {
        return Answer::Other;
    }
    let ours = match (id, &msg.id) {
        (None, _) => true,
        (Some(want), Some(got)) => want == got,
        // A `null` id answers a request the server could not read: ours, and an error.
        (Some(_), None) => msg.error.is_some(),
    };
    if !ours {
        return Answer::Other;
    }
    match (msg.error, msg.result) {
        (None, Some(r)) => Answer::List(r.tools.into_iter().map(|t| t.name).collect()),
        (Some(_), _) => Answer::NotAList,
        (None, None) => Answer::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(a: Answer<'_>) -> Option<Vec<String>> {
        match a {
            Answer::List(n) => Some(n.into_iter().map(String::from).collect()),
            _ => None,
        }
    }

    #[test]
    fn only_the_success_response_to_the_request_is_a_list() {
        let id = RequestId::Number(3);
        let read = |m: &str| names(read_answer(m.as_bytes(), Some(&id)));
        assert_eq!(
            read(
                r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"a\u0062"},{"name":"c","inputSchema":{"type":"object"}}],"nextCursor":"x"}}"#
            ),
            Some(vec!["ab".into(), "c".into()])
        );
        assert_eq!(
            read(r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"a"}]}}"#),
            None
        );
        assert_eq!(
            read(r#"{"jsonrpc":"2.0","id":"3","result":{"tools":[{"name":"a"}]}}"#),
            None
        );
        assert_eq!(
            read(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"tools":[]}}"#),
            None
        );
        assert_eq!(
            read(r#"{"jsonrpc":"2.0","id":3,"method":"x","result":{"tools":[{"name":"a"}]}}"#),
            None
        );
        assert!(matches!(
            read_answer(
                br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"x"}}"#,
                Some(&id)
            ),
            Answer::NotAList
        ));
        assert!(matches!(
            read_answer(
                br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
                Some(&id)
            ),
            Answer::NotAList
        ));
        assert_eq!(read("not json"), None);
    }
}
