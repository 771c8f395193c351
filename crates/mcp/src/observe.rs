//! Observe once: the one body wrapper per call that learns how the call ended, and the
//! completion handle through which every layer hears about it.
//!
//! [`observe_response`] wraps an HTTP answer in [`ObservedBody`] and puts a [`CompletionHandle`]
//! into its extensions. The wrapper forwards every frame untouched and at once; for
//! `text/event-stream` answers it parses SSE incrementally and completes when the final JSON-RPC
//! response for the request's id passes; for JSON answers it classifies the body when it has
//! passed (without holding it back); for other answers it completes from the status alone. If the
//! body fails it completes with [`Outcome::Transport`], if it ends without the final response with
//! [`Outcome::Incomplete`], and if it is dropped first with [`Outcome::Cancelled`]. gRPC answers
//! (`application/grpc`, `application/grpc+proto`…) complete from `grpc-status` in the headers
//! (trailers-only) or trailers; gRPC-Web answers (`application/grpc-web*`, whose trailers are
//! inside the body) from `grpc-status` in the headers (trailers-only), or else, by their HTTP
//! status, when the body ends (it is not parsed for the status inside it).
//!
//! A layer that finds a handle already in the extensions subscribes to it
//! ([`CompletionHandle::on_complete`]) and wraps the body in a pass-through [`ObservedBody`] that
//! parses nothing, so each layer works alone and the stream is still parsed only once.
//!
//! The outcome and the end of the call are not always the same moment: a 2025-11-25 tool runs
//! on when its caller drops the stream, and a layer that holds such a call for the caller to
//! resume takes a [`Continuation`] meanwhile. A layer that holds something for the call (a
//! bulkhead permit) subscribes with [`CompletionHandle::on_release`], which waits for every
//! continuation; a layer that judges the call (a breaker) with `on_complete`.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::classify::Outcome;
use crate::jsonrpc::RequestId;
use crate::sse::SseParser;

enum Listener {
    /// Told the outcome when the call completes.
    Complete(Box<dyn FnOnce(&Outcome) + Send>),
    /// Released once the call completed and no [`Continuation`] is left.
    Release(Box<dyn ReleaseListener>),
}

enum State {
    Pending(Vec<Listener>),
    /// Completed; the release listeners still waiting for the last [`Continuation`].
    Done(Outcome, Vec<Box<dyn ReleaseListener>>),
}

/// Listens for the release of what a call holds; see [`CompletionHandle::on_release_with`].
/// Every closure `FnOnce() + Send + 'static` is one (it runs at the release).
pub trait ReleaseListener: Send + 'static {
    /// The call completed while a [`Continuation`] was alive: the release waits for the last
    /// one. `stream` is the stream a resumption of the call names (the part of rmcp's event ids
    /// after the `/`, see [`event_stream`](crate::inspect::event_stream)), when the layer that
    /// keeps the call going said so ([`CompletionHandle::continuation_resumable_as`]). Called
    /// at most once, before [`ReleaseListener::released`], on the task that completed the
    /// call, and only for listeners added before the completion.
    fn deferred(&mut self, stream: Option<&str>) {
        let _ = stream;
    }

    /// The call no longer needs what was taken for it.
    fn released(self: Box<Self>);
}

impl<F: FnOnce() + Send + 'static> ReleaseListener for F {
    fn released(self: Box<Self>) {
        (*self)()
    }
}

struct Locked {
    state: State,
    /// Live [`Continuation`]s.
    continuations: usize,
    /// The stream a resumption names, as the layer taking a continuation gave it.
    resumable_as: Option<Box<str>>,
}

impl Locked {
    /// The state and the continuation count, borrowed apart.
    fn parts(&mut self) -> (&mut State, &mut usize) {
        (&mut self.state, &mut self.continuations)
    }
}

struct Shared {
    // Locked only to push a listener, to complete or to count continuations; never held across
    // an await or a callback.
    state: Mutex<Locked>,
    progress: AtomicU64,
    server_requests: AtomicI32,
    cancel_requested: AtomicBool,
}

/// The shared handle of one call's completion, found in the answer's extensions.
///
/// Cloning is cheap; all clones see the same call.
#[derive(Clone)]
pub struct CompletionHandle(Arc<Shared>);

impl fmt::Debug for CompletionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompletionHandle")
            .field("outcome", &self.outcome())
            .field("progress", &self.progress_count())
            .finish()
    }
}

impl Default for CompletionHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl CompletionHandle {
    /// A new, pending handle.
    pub fn new() -> Self {
        CompletionHandle(Arc::new(Shared {
            state: Mutex::new(Locked {
                state: State::Pending(Vec::new()),
                continuations: 0,
                resumable_as: None,
            }),
            progress: AtomicU64::new(0),
            server_requests: AtomicI32::new(0),
            cancel_requested: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Locked> {
        // A panic in another holder cannot leave `State` half-written: recover the guard.
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls `f` once with the outcome: now if the call has already completed, otherwise when
    /// it completes. `f` runs on whichever task completes the call; keep it short.
    pub fn on_complete(&self, f: impl FnOnce(&Outcome) + Send + 'static) {
        let mut st = self.lock();
        match &mut st.state {
            State::Pending(listeners) => listeners.push(Listener::Complete(Box::new(f))),
            State::Done(o, _) => {
                let o = *o;
                drop(st);
                f(&o);
            }
        }
    }

    /// Calls `f` once the call no longer needs what was taken for it (a bulkhead permit): when
    /// it completes, or, if a layer keeps the call going after its answer ended
    /// ([`CompletionHandle::continuation`]), once the last [`Continuation`] is dropped. Now if
    /// that already happened. `f` runs on whichever task completes the call or drops the
    /// continuation; keep it short.
    pub fn on_release(&self, f: impl FnOnce() + Send + 'static) {
        self.on_release_with(Box::new(f));
    }

    /// [`CompletionHandle::on_release`] with a listener that is also told when the release is
    /// deferred ([`ReleaseListener::deferred`]).
    pub fn on_release_with(&self, listener: Box<dyn ReleaseListener>) {
        let mut st = self.lock();
        let (state, continuations) = st.parts();
        match state {
            State::Pending(listeners) => listeners.push(Listener::Release(listener)),
            State::Done(_, waiting) if *continuations > 0 => waiting.push(listener),
            State::Done(..) => {
                drop(st);
                listener.released();
            }
        }
    }

    /// Says the call goes on after its answer ends: a 2025-11-25 tool keeps running when its
    /// caller drops the stream, and a layer that holds the call for the caller to resume (the
    /// timeout layer's resume grace) takes a continuation for as long as it does. Until every
    /// continuation is dropped, [`CompletionHandle::on_release`] listeners wait, so what the
    /// call holds (its bulkhead permit) stays taken while the tool runs. Completion listeners
    /// are not affected. Take it before the call completes (the answer's body is dropped):
    /// release listeners that already ran are not called back, so a continuation taken after
    /// that only holds back listeners added later.
    pub fn continuation(&self) -> Continuation {
        self.continue_with(None)
    }

    /// [`CompletionHandle::continuation`] for a call a `GET` may resume naming `stream` (the
    /// stream part of its event ids): release listeners told of the deferral learn it, so a
    /// resumption can be matched to the call it continues.
    pub fn continuation_resumable_as(&self, stream: &str) -> Continuation {
        self.continue_with(Some(stream))
    }

    fn continue_with(&self, stream: Option<&str>) -> Continuation {
        let mut st = self.lock();
        st.continuations += 1;
        if let Some(s) = stream {
            st.resumable_as = Some(Box::from(s));
        }
        drop(st);
        Continuation(Some(self.clone()))
    }

    /// Drops one continuation; runs the release listeners if it was the last one and the call
    /// completed.
    fn continuation_ended(&self) {
        let released = {
            let mut st = self.lock();
            let (state, continuations) = st.parts();
            *continuations = continuations.saturating_sub(1);
            match state {
                State::Done(_, waiting) if *continuations == 0 => std::mem::take(waiting),
                _ => Vec::new(),
            }
        };
        run_releases(released);
    }

    /// Completes the call with `outcome`, unless it already completed. Returns whether this call
    /// decided the outcome.
    ///
    /// [`Outcome::Incomplete`] becomes [`Outcome::Cancelled`] once the caller asked for the
    /// call's cancellation ([`CompletionHandle::cancel_requested`]).
    pub fn complete(&self, outcome: Outcome) -> bool {
        let outcome = match outcome {
            Outcome::Incomplete if self.is_cancel_requested() => Outcome::Cancelled,
            o => o,
        };
        let (listeners, continuing, stream) = {
            let mut st = self.lock();
            match std::mem::replace(&mut st.state, State::Done(outcome, Vec::new())) {
                State::Pending(l) if st.continuations > 0 => (l, true, st.resumable_as.clone()),
                State::Pending(l) => (l, false, None),
                done @ State::Done(..) => {
                    st.state = done;
                    return false;
                }
            }
        };
        // Listeners run without the lock; deferred releases are told so first.
        let mut waiting = Vec::new();
        for l in listeners {
            match l {
                Listener::Complete(f) => f(&outcome),
                Listener::Release(r) if !continuing => r.released(),
                Listener::Release(mut r) => {
                    r.deferred(stream.as_deref());
                    waiting.push(r);
                }
            }
        }
        if !waiting.is_empty() {
            let late = {
                let mut st = self.lock();
                let (state, continuations) = st.parts();
                match state {
                    State::Done(_, w) if *continuations > 0 => {
                        w.append(&mut waiting);
                        Vec::new()
                    }
                    // The last continuation went while the listeners ran: release now.
                    _ => waiting,
                }
            };
            run_releases(late);
        }
        true
    }

    /// The outcome, once known.
    pub fn outcome(&self) -> Option<Outcome> {
        match &self.lock().state {
            State::Done(o, _) => Some(*o),
            State::Pending(_) => None,
        }
    }

    /// Whether the outcome is known.
    pub fn is_complete(&self) -> bool {
        self.outcome().is_some()
    }

    /// How many `notifications/progress` have passed in the answer so far. A per-call timeout
    /// that resets on progress compares this between two checks.
    pub fn progress_count(&self) -> u64 {
        self.0.progress.load(Ordering::Acquire)
    }

    /// How many requests of the server to the client (`elicitation/create`,
    /// `sampling/createMessage`…) are outstanding in the answer: the call waits on the client,
    /// so a per-call clock should pause.
    pub fn server_requests_outstanding(&self) -> u32 {
        self.0.server_requests.load(Ordering::Acquire).max(0) as u32
    }

    /// Records that the caller asked the server to cancel the call (a 2025-11-25
    /// `notifications/cancelled` naming it, seen by a layer in front of the server). A server
    /// honouring it ends the answer without the final response: the call then completes with
    /// [`Outcome::Cancelled`] (the caller's choice, counted against no one) instead of
    /// [`Outcome::Incomplete`] (a failure). Anything else the answer ends with (its final
    /// response, a transport error, a local deadline) is kept: a server that ignores the request
    /// and goes on is still judged, and still holds whatever the call holds until it ends.
    ///
    /// Returns whether this call set the mark (it was not set before).
    pub fn cancel_requested(&self) -> bool {
        !self.0.cancel_requested.swap(true, Ordering::AcqRel)
    }

    /// Withdraws [`CompletionHandle::cancel_requested`]: the server refused the cancellation,
    /// so an answer ending without its final response is [`Outcome::Incomplete`] again. Has no
    /// effect once the call completed.
    pub fn withdraw_cancel_request(&self) {
        self.0.cancel_requested.store(false, Ordering::Release);
    }

    /// Whether [`CompletionHandle::cancel_requested`] was called.
    pub fn is_cancel_requested(&self) -> bool {
        self.0.cancel_requested.load(Ordering::Acquire)
    }

    /// Counts one request of the server to the client as outstanding in this answer although
    /// the answer did not carry it: an earlier answer of the same call did (a resumption goes
    /// on with a call that waits on its client). [`CompletionHandle::server_request_answered`]
    /// counts it answered.
    pub fn carry_server_request(&self) {
        self.0.server_requests.fetch_add(1, Ordering::AcqRel);
    }

    /// Records that the client answered a server request (called by a layer that sees the
    /// client's JSON-RPC response POSTed back), if one is outstanding: returns whether one was
    /// (and is now counted answered). Atomic: two answers racing for the last outstanding
    /// request count once, so the second can go to another call.
    pub fn server_request_answered(&self) -> bool {
        self.0
            .server_requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 0).then(|| n - 1)
            })
            .is_ok()
    }
}

/// How a call's completion is reported by [`CallResponse::observe`](crate::CallResponse::observe):
/// at once (typed responses, error statuses) or later through a handle (streamed bodies).
#[derive(Debug)]
pub enum Completion {
    /// The outcome is already known; nothing was allocated.
    Ready(Outcome),
    /// The outcome will be known when the answer ends.
    Pending(CompletionHandle),
}

impl Completion {
    /// Calls `f` with the outcome, now or when it is known. Allocates only when pending.
    pub fn on_complete(self, f: impl FnOnce(&Outcome) + Send + 'static) {
        match self {
            Completion::Ready(o) => f(&o),
            Completion::Pending(h) => h.on_complete(f),
        }
    }

    /// Calls `f` once the call no longer needs what was taken for it: now if the outcome is
    /// known, otherwise as [`CompletionHandle::on_release`]. Allocates only when pending.
    pub fn on_release(self, f: impl FnOnce() + Send + 'static) {
        match self {
            Completion::Ready(_) => f(),
            Completion::Pending(h) => h.on_release(f),
        }
    }

    /// [`Completion::on_release`] with a listener that is also told when the release is
    /// deferred (see [`CompletionHandle::on_release_with`]). Allocates only when pending.
    pub fn on_release_with(self, listener: Box<dyn ReleaseListener>) {
        match self {
            Completion::Ready(_) => listener.released(),
            Completion::Pending(h) => h.on_release_with(listener),
        }
    }
}

fn run_releases(listeners: Vec<Box<dyn ReleaseListener>>) {
    for l in listeners {
        l.released();
    }
}

/// A call going on after its answer ended, from [`CompletionHandle::continuation`]: while any
/// exists, the call's [`on_release`](CompletionHandle::on_release) listeners wait. Dropping it
/// ends it.
#[must_use = "dropping a continuation ends it at once"]
pub struct Continuation(Option<CompletionHandle>);

impl Drop for Continuation {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.continuation_ended();
        }
    }
}

impl fmt::Debug for Continuation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Continuation").finish_non_exhaustive()
    }
}

/// Another continuation of the same call: taken while this one holds the call back, it holds
/// it back for as long as it lives too (a layer handing the call on to a later answer while
/// keeping its own hold).
impl Clone for Continuation {
    fn clone(&self) -> Self {
        match &self.0 {
            Some(h) => h.continuation(),
            None => Continuation(None),
        }
    }
}

/// How long a JSON answer may be and still be classified (16 MiB). A longer one is forwarded
/// untouched and classified from its status.
pub const MAX_JSON_OBSERVED: usize = 16 << 20;

/// Wraps `response` so its outcome is observed once; see the module docs.
///
/// `id` is the request's JSON-RPC id: the final response is the one carrying it. Without an id
/// the first response message in the stream is taken as final.
///
/// If the response already carries a [`CompletionHandle`], the body is wrapped as a pass-through
/// and that handle is returned.
pub fn observe_response<B>(
    mut response: Response<B>,
    id: Option<&RequestId>,
) -> (Response<ObservedBody<B>>, CompletionHandle)
where
    B: Body,
{
    if let Some(h) = response.extensions().get::<CompletionHandle>() {
        let h = h.clone();
        return (response.map(ObservedBody::passthrough), h);
    }
    let handle = CompletionHandle::new();
    response.extensions_mut().insert(handle.clone());
    let status = response.status();
    let mode = if !status.is_success() {
        handle.complete(Outcome::Status(status));
        Mode::Passthrough
    } else {
        match body_kind(response.headers()) {
            BodyKind::Sse => Mode::Sse(Box::new(SseWatch {
                parser: SseParser::default(),
                id: id.cloned(),
                guard: Guard(Some(handle.clone())),
                skipped: false,
            })),
            BodyKind::Json => Mode::Json(JsonWatch {
                id: id.cloned(),
                first: None,
                rest: Vec::new(),
                overflow: false,
                guard: Guard(Some(handle.clone())),
            }),
            BodyKind::Grpc => match grpc_status(response.headers()) {
                // Trailers-only answer: the status is in the headers.
                Some(code) => {
                    handle.complete(grpc_outcome(code));
                    Mode::Passthrough
                }
                None => Mode::Grpc(Guard(Some(handle.clone()))),
            },
            BodyKind::GrpcWeb => match grpc_status(response.headers()) {
                // Trailers-only answer.
                Some(code) => {
                    handle.complete(grpc_outcome(code));
                    Mode::Passthrough
                }
                // The status is inside the body, which is not parsed: the answer is over (and
                // counted by its HTTP status) when the body ends.
                None => Mode::GrpcWeb(Guard(Some(handle.clone())), status),
            },
            BodyKind::Other => {
                handle.complete(Outcome::Status(status));
                Mode::Passthrough
            }
        }
    };
    let response = response.map(|inner| ObservedBody { inner, mode });
    (response, handle)
}

/// What a message's `content-type` says its body is: the one reading every layer shares (the
/// observer, the timeout's framing, the answers layers make for gRPC callers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `text/event-stream`.
    Sse,
    /// `application/json`.
    Json,
    /// `application/grpc` or `application/grpc+<codec>`: gRPC, its status in HTTP/2 trailers.
    Grpc,
    /// `application/grpc-web`, `application/grpc-web-text`, each with an optional
    /// `+<codec>`: gRPC-Web, whose trailers travel inside the body.
    GrpcWeb,
    /// Anything else, or no `content-type`.
    Other,
}

/// What the `content-type` in `headers` says the body is (any case, any parameters).
pub fn body_kind(headers: &HeaderMap) -> BodyKind {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return BodyKind::Other;
    };
    let essence = ct.split(';').next().unwrap_or("").trim_ascii();
    if essence.eq_ignore_ascii_case("text/event-stream") {
        BodyKind::Sse
    } else if essence.eq_ignore_ascii_case("application/json") {
        BodyKind::Json
    } else if let Some(kind) = grpc_kind(essence) {
        kind
    } else {
        BodyKind::Other
    }
}

/// `application/grpc` or `application/grpc+<codec>`: gRPC, status in the trailers.
/// `application/grpc-web[-text][+<codec>]`: gRPC-Web, whose trailers travel inside the body (no
/// HTTP trailers ever come), so only a trailers-only answer's `grpc-status` is read.
fn grpc_kind(essence: &str) -> Option<BodyKind> {
    const GRPC: &str = "application/grpc";
    let head = essence.get(..GRPC.len())?;
    if !head.eq_ignore_ascii_case(GRPC) {
        return None;
    }
    let rest = &essence[GRPC.len()..];
    if rest.is_empty() || rest.starts_with('+') {
        return Some(BodyKind::Grpc);
    }
    let web = rest
        .get(..4)
        .filter(|w| w.eq_ignore_ascii_case("-web"))
        .map(|_| &rest[4..])?;
    // `-web` alone, `-web-text`, either with a codec.
    let web = match web.get(..5) {
        Some(t) if t.eq_ignore_ascii_case("-text") => &web[5..],
        _ => web,
    };
    (web.is_empty() || web.starts_with('+')).then_some(BodyKind::GrpcWeb)
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_ascii().parse().ok())
}

fn grpc_outcome(code: i32) -> Outcome {
    if code == 0 {
        Outcome::Success
    } else {
        Outcome::Grpc(code)
    }
}

/// Whether headers say the body is JSON (`application/json`, any parameters, any case).
pub fn is_json(headers: &HeaderMap) -> bool {
    matches!(body_kind(headers), BodyKind::Json)
}

/// Whether headers say the answer is an SSE stream (`text/event-stream`, any parameters, any
/// case).
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    matches!(body_kind(headers), BodyKind::Sse)
}

/// Whether headers say the body is encoded: a `Content-Encoding` naming any coding but
/// `identity`. Its bytes are not the JSON or events they carry until a client decodes them.
/// The field is a comma-separated list, possibly over several lines (RFC 9110 §8.4): empty
/// items are skipped, so an empty field, or one naming only `identity`, is no coding. Every
/// layer that asks (the inspector for requests; the SSE layer, the allow-list and
/// bearer-auth's listen streams for answers) asks this function, so they agree on odd values.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::CONTENT_ENCODING};
/// use tower_armor_mcp::observe::is_encoded;
/// let mut h = HeaderMap::new();
/// assert!(!is_encoded(&h));
/// h.insert(CONTENT_ENCODING, HeaderValue::from_static(" identity ,, "));
/// assert!(!is_encoded(&h));
/// h.append(CONTENT_ENCODING, HeaderValue::from_static("identity, gzip"));
/// assert!(is_encoded(&h));
/// ```
pub fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
}

/// The pieces of a header value split at `sep` outside double-quoted strings (RFC 9110
/// `quoted-string`: a backslash escapes the next character inside one), as `Cache-Control`
/// directives and `Accept` entries are: `private="a, no-store"` is one directive.
///
/// ```
/// use tower_armor_mcp::observe::split_unquoted;
/// let pieces: Vec<&[u8]> = split_unquoted(br#"a="x,\"y",b"#, b',').collect();
/// assert_eq!(pieces, [&br#"a="x,\"y""#[..], b"b"]);
/// ```
pub fn split_unquoted(value: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let (mut quoted, mut escaped) = (false, false);
    value.split(move |&b| {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => return true,
            _ => {}
        }
        false
    })
}

pin_project! {
    /// A response body that forwards every frame untouched and reports the call's outcome to its
    /// [`CompletionHandle`]. See the [module docs](self).
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        mode: Mode,
    }
}

impl<B> ObservedBody<B> {
    /// Wraps a body without observing it (the outcome is observed elsewhere).
    pub fn passthrough(inner: B) -> Self {
        ObservedBody {
            inner,
            mode: Mode::Passthrough,
        }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for ObservedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Passthrough => "passthrough",
            Mode::Sse(_) => "sse",
            Mode::Json(_) => "json",
            Mode::Grpc(_) => "grpc",
            Mode::GrpcWeb(..) => "grpc-web",
        };
        f.debug_struct("ObservedBody").field("mode", &mode).finish()
    }
}

enum Mode {
    Passthrough,
    Sse(Box<SseWatch>),
    Json(JsonWatch),
    /// gRPC: the outcome is `grpc-status` in the trailers.
    Grpc(Guard),
    /// gRPC-Web: the answer's end, with its HTTP status.
    GrpcWeb(Guard, StatusCode),
}

/// Completes the handle with [`Outcome::Cancelled`] if dropped before anything else completed it.
struct Guard(Option<CompletionHandle>);

impl Guard {
    fn complete(&mut self, o: Outcome) {
        if let Some(h) = self.0.take() {
            h.complete(o);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.complete(Outcome::Cancelled);
    }
}

struct SseWatch {
    parser: SseParser,
    id: Option<RequestId>,
    guard: Guard,
    /// An event too long to observe passed (it may have been the final response).
    skipped: bool,
}

impl SseWatch {
    fn feed(&mut self, bytes: &[u8]) {
        let Self {
            parser,
            id,
            guard,
            skipped,
        } = self;
        let Some(handle) = guard.0.as_ref() else {
            return;
        };
        let mut done = None;
        parser.feed(bytes, |ev| {
            if done.is_some() || ev.data.is_empty() {
                return;
            }
            if ev.truncated {
                // Its beginning may still show the call's response (a large tool result).
                match truncated_message(ev.data, id.as_ref()) {
                    Seen::Final(o) => done = Some(o),
                    _ => *skipped = true,
                }
                return;
            }
            match inspect_message(ev.data, id.as_ref()) {
                Seen::Final(o) => done = Some(o),
                Seen::Progress => {
                    handle.0.progress.fetch_add(1, Ordering::AcqRel);
                }
                Seen::ServerRequest => {
                    handle.0.server_requests.fetch_add(1, Ordering::AcqRel);
                }
                Seen::OtherResponse | Seen::Other => {}
            }
        });
        if let Some(o) = done {
            guard.complete(o);
        }
    }

    /// The answer ended without its final response: `Incomplete`, unless an event too long to
    /// observe passed, which may have been it. Then the answer is classified from its status,
    /// like a JSON answer too long to observe: a success.
    fn end(&mut self) {
        self.guard.complete(if self.skipped {
            Outcome::Success
        } else {
            Outcome::Incomplete
        });
    }
}

struct JsonWatch {
    /// The call's id: the answer must be the response carrying it.
    id: Option<RequestId>,
    first: Option<Bytes>,
    rest: Vec<u8>,
    overflow: bool,
    guard: Guard,
}

impl JsonWatch {
    fn feed(&mut self, bytes: &Bytes) {
        if self.overflow {
            return;
        }
        let len = self.first.as_ref().map_or(0, Bytes::len) + self.rest.len() + bytes.len();
        if len > MAX_JSON_OBSERVED {
            self.overflow = true;
            self.first = None;
            self.rest = Vec::new();
            return;
        }
        match &self.first {
            None if self.rest.is_empty() => self.first = Some(bytes.clone()),
            _ => {
                if let Some(f) = self.first.take() {
                    self.rest.extend_from_slice(&f);
                }
                self.rest.extend_from_slice(bytes);
            }
        }
    }

    fn finish(&mut self) {
        let outcome = if self.overflow {
            Outcome::Success
        } else {
            let bytes: &[u8] = match &self.first {
                Some(f) => f,
                None => &self.rest,
            };
            match inspect_message(bytes, self.id.as_ref()) {
                Seen::Final(o) => o,
                // The response to another request: the call's own never came, as when an SSE
                // answer ends without it.
                Seen::OtherResponse => Outcome::Incomplete,
                // A 2xx JSON answer we cannot read as a response: the status is all we know.
                Seen::Progress | Seen::ServerRequest | Seen::Other => Outcome::Success,
            }
        };
        self.guard.complete(outcome);
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let res = std::task::ready!(this.inner.as_mut().poll_frame(cx));
        match (&res, &mut *this.mode) {
            (_, Mode::Passthrough) => {}
            (Some(Ok(frame)), mode) => {
                if let Some(data) = frame.data_ref() {
                    match mode {
                        Mode::Sse(w) => w.feed(data),
                        Mode::Json(w) => w.feed(data),
                        Mode::Grpc(_) | Mode::GrpcWeb(..) | Mode::Passthrough => {}
                    }
                } else if let (Some(trailers), Mode::Grpc(g)) = (frame.trailers_ref(), mode) {
                    g.complete(grpc_status(trailers).map_or(Outcome::Incomplete, grpc_outcome));
                }
            }
            (Some(Err(_)), Mode::Grpc(g)) => g.complete(Outcome::Transport),
            (None, Mode::Grpc(g)) => g.complete(Outcome::Incomplete),
            (Some(Err(_)), Mode::GrpcWeb(g, _)) => g.complete(Outcome::Transport),
            (None, Mode::GrpcWeb(g, status)) => g.complete(Outcome::Status(*status)),
            (Some(Err(_)), Mode::Sse(w)) => w.guard.complete(Outcome::Transport),
            (Some(Err(_)), Mode::Json(w)) => w.guard.complete(Outcome::Transport),
            (None, Mode::Sse(w)) => w.end(),
            (None, Mode::Json(w)) => w.finish(),
        }
        // hyper stops polling once `is_end_stream` is true, so the end may never be seen as
        // `None`: settle the outcome as soon as the inner body says it is finished.
        if matches!(res, Some(Ok(_))) && this.inner.is_end_stream() {
            match this.mode {
                Mode::Sse(w) => w.end(),
                Mode::Json(w) => w.finish(),
                Mode::Grpc(g) => g.complete(Outcome::Incomplete),
                Mode::GrpcWeb(g, status) => g.complete(Outcome::Status(*status)),
                Mode::Passthrough => {}
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

/// What one JSON-RPC message in an answer tells us.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The final response of the call, with its outcome.
    Final(Outcome),
    /// A `notifications/progress`.
    Progress,
    /// A request from the server to the client (it has both `method` and `id`).
    ServerRequest,
    /// A response to another request's id.
    OtherResponse,
    /// Anything else (other notifications, unreadable data).
    Other,
}

#[derive(Deserialize)]
struct Message<'a> {
    // Borrowed when it can be; an escaped one (`"notifications\/progress"`, as PHP's encoder
    // writes it) is unescaped into its own string (a `&str` would fail the whole message).
    #[serde(borrow = "'a", default)]
    method: Option<crate::inspect::parse::CowStr<'a>>,
    #[serde(default)]
    id: MaybeId,
    #[serde(default)]
    error: Option<ErrorCode>,
    #[serde(default)]
    result: Option<ResultFlags>,
}

/// The `id` member: absent, or present with a value (`null` and invalid ids as `Present(None)`);
/// only a valid [`RequestId`] can match.
#[derive(Default)]
enum MaybeId {
    #[default]
    Absent,
    Present(Option<RequestId>),
}

impl<'de> Deserialize<'de> for MaybeId {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Never built as a JSON value: a hostile id (an array of millions of elements) costs a
        // skip, not memory many times its size.
        Ok(MaybeId::Present(
            crate::inspect::parse::MaybeId::deserialize(d)?.0,
        ))
    }
}

#[derive(Deserialize)]
struct ErrorCode {
    code: i64,
}

/// Reads only `isError` from a result object, skipping everything else without allocating.
#[derive(Default)]
struct ResultFlags {
    is_error: bool,
}

impl<'de> Deserialize<'de> for ResultFlags {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResultFlags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC result")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultFlags, A::Error> {
                #[derive(Deserialize)]
                enum Key {
                    #[serde(rename = "isError")]
                    IsError,
                    #[serde(other)]
                    Other,
                }
                let mut flags = ResultFlags::default();
                while let Some(k) = map.next_key::<Key>()? {
                    match k {
                        Key::IsError => {
                            flags.is_error = map.next_value::<Option<bool>>()?.unwrap_or(false)
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(flags)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ResultFlags, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(ResultFlags::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<ResultFlags, E> {
                Ok(ResultFlags::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<ResultFlags, E> {
                Ok(ResultFlags::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<ResultFlags, E> {
                Ok(ResultFlags::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<ResultFlags, E> {
                Ok(ResultFlags::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<ResultFlags, E> {
                Ok(ResultFlags::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<ResultFlags, E> {
                Ok(ResultFlags::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads one JSON-RPC message of an answer. `id` is the call's id: a response to another id is
/// not final. Without an id (unknown), any response is final.
pub(crate) fn inspect_message(bytes: &[u8], id: Option<&RequestId>) -> Seen {
    let Ok(msg) = serde_json::from_slice::<Message<'_>>(bytes) else {
        return Seen::Other;
    };
    match (msg.method.as_ref().map(|m| &*m.0), msg.id) {
        (Some("notifications/progress"), MaybeId::Absent) => Seen::Progress,
        (Some(_), MaybeId::Present(_)) => Seen::ServerRequest,
        (Some(_), MaybeId::Absent) => Seen::Other,
        (None, MaybeId::Present(got)) => {
            let matches = match (id, &got) {
                (None, _) => true,
                (Some(want), Some(got)) => want == got,
                // A `null` id answers a request the server could not read: ours.
                (Some(_), None) => msg.error.is_some(),
            };
            if !matches {
                return Seen::OtherResponse;
            }
            match (msg.error, msg.result) {
                (Some(e), _) => Seen::Final(Outcome::RpcError(e.code)),
                (None, Some(r)) if r.is_error => Seen::Final(Outcome::ToolError),
                (None, Some(_)) => Seen::Final(Outcome::Success),
                (None, None) => Seen::Other,
            }
        }
        (None, MaybeId::Absent) => Seen::Other,
    }
}

/// What the beginning of a message too long to observe whole (`prefix`, cut anywhere) shows: the
/// response to `id` when its members before the cut are an `id` that matches and then `result`,
/// as serializers write a response (`jsonrpc`, `id`, `result`: rmcp's among them), giving
/// `Final(Success)` (a result's `isError` comes after its content, past the cut: such a result
/// counts as a success, as an answer too long to observe does); likewise `Final(RpcError)` for
/// an `error` whose `code` comes before the cut (serializers write it first; a long `data`
/// follows); `OtherResponse` for another id; `Other` when the cut comes first, or the message
/// has a `method`, or an `error` whose code lies past the cut.
fn truncated_message(prefix: &[u8], id: Option<&RequestId>) -> Seen {
    #[derive(Default)]
    struct Head {
        id: Option<MaybeId>,
        result: bool,
        code: Option<i64>,
    }
    /// Reads an `error` object's `code`, if it comes before the cut (into the `Option`).
    struct Code<'h>(&'h mut Option<i64>);
    impl<'de> de::DeserializeSeed<'de> for Code<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Code<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON-RPC error object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            #[derive(Deserialize)]
            #[serde(rename_all = "lowercase")]
            enum Key {
                Code,
                #[serde(other)]
                Other,
            }
            while let Some(k) = map.next_key::<Key>()? {
                match k {
                    Key::Code => {
                        let code = map.next_value()?;
                        // Whole only if something follows it (a number cut short still parses).
                        if map.next_key::<IgnoredAny>().is_ok() {
                            *self.0 = Some(code);
                        }
                        return Ok(());
                    }
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    struct V<'h>(&'h mut Head);
    impl<'de> Visitor<'de> for V<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON-RPC message")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            #[derive(Deserialize)]
            #[serde(rename_all = "lowercase")]
            enum Key {
                Id,
                Result,
                Method,
                Error,
                #[serde(other)]
                Other,
            }
            while let Some(k) = map.next_key::<Key>()? {
                match k {
                    Key::Id => self.0.id = Some(map.next_value()?),
                    // Decided here: the value (where the cut lies) is never read.
                    Key::Result => {
                        self.0.result = true;
                        return Ok(());
                    }
                    Key::Error => {
                        // (Past the code, the rest is left unread: an error, as for `result`.)
                        let _ = map.next_value_seed(Code(&mut self.0.code));
                        return Ok(());
                    }
                    Key::Method => return Ok(()),
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut head = Head::default();
    // Always an error in the end (the cut, or the value left unread): what counts is what was
    // read before it.
    let _ = de::Deserializer::deserialize_map(
        &mut serde_json::Deserializer::from_slice(prefix),
        V(&mut head),
    );
    let outcome = match (head.result, head.code) {
        (true, _) => Outcome::Success,
        (false, Some(code)) => Outcome::RpcError(code),
        (false, None) => return Seen::Other,
    };
    match head.id {
        Some(MaybeId::Present(got)) => match (id, got) {
            (None, _) => Seen::Final(outcome),
            (Some(want), Some(got)) if *want == got => Seen::Final(outcome),
            _ => Seen::OtherResponse,
        },
        _ => Seen::Other,
    }
}

/// The outcome a bare HTTP status gives when no body can tell more.
pub fn status_outcome(status: StatusCode) -> Outcome {
    if status.is_success() {
        Outcome::Success
    } else {
        Outcome::Status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer counts only against a request that is outstanding, in one atomic step: an
    /// answer with none left reports so (and goes elsewhere) instead of driving the count below
    /// zero, where the call's next request would not pause it.
    #[test]
    fn an_answer_counts_only_against_an_outstanding_request() {
        let h = CompletionHandle::new();
        assert!(!h.server_request_answered());
        assert_eq!(h.server_requests_outstanding(), 0);
        h.carry_server_request();
        assert!(h.server_request_answered());
        assert!(
            !h.server_request_answered(),
            "the second of two racing answers"
        );
        h.carry_server_request();
        assert_eq!(h.server_requests_outstanding(), 1, "never went below zero");
    }

    /// The beginning of a message too long to read whole, cut anywhere.
    #[test]
    fn truncated_messages() {
        let id = RequestId::Number(7);
        let final_ = |m: &str| {
            matches!(
                truncated_message(m.as_bytes(), Some(&id)),
                Seen::Final(Outcome::Success)
            )
        };
        assert!(final_(
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"text":"xx"#
        ));
        assert!(final_(r#" { "id" : 7 , "result""#));
        // Escaped member names are names all the same.
        assert!(final_(r#"{"\u0069d":7,"res\u0075lt":{"#));
        // An error whose code comes before the cut is that error.
        for error in [
            r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"xx"#,
            r#"{"id":7,"error":{"message":"m","code":-32603,"data":"xx"#,
        ] {
            assert!(
                matches!(
                    truncated_message(error.as_bytes(), Some(&id)),
                    Seen::Final(Outcome::RpcError(-32603))
                ),
                "{error}"
            );
        }
        for other in [
            r#"{"jsonrpc":"2.0","result":{"content":"xx"#,
            r#"{"jsonrpc":"2.0","id":7"#,
            r#"{"jsonrpc":"2.0","id":"#,
            r#"{"id":7,"error":{"message":"xx"#,
            r#"{"id":7,"error":{"code":-3260"#,
            r#"{"id":7,"method":"x","result":{"#,
            r#"{"jsonrpc":"2.0","id":[1,2"#,
            r#"["#,
            "",
        ] {
            assert!(
                matches!(truncated_message(other.as_bytes(), Some(&id)), Seen::Other),
                "{other}"
            );
        }
        assert!(matches!(
            truncated_message(br#"{"id":"7","result":{"#, Some(&id)),
            Seen::OtherResponse
        ));
        assert!(matches!(
            truncated_message(br#"{"id":null,"result":{"#, Some(&id)),
            Seen::OtherResponse
        ));
        // Without the call's id, the first response is the final one.
        assert!(matches!(
            truncated_message(br#"{"id":3,"result":{"#, None),
            Seen::Final(Outcome::Success)
        ));
    }

    proptest::proptest! {
        /// A response to the call, cut anywhere: final once the `result` member's name is
        /// whole, undecided before; and no input, however cut or hostile, panics.
        #[test]
        fn a_response_cut_anywhere(
            id in proptest::num::i64::ANY,
            text in "[a-z\"\\\\{}\\[\\],:]{0,40}",
            cut in 0usize..400,
        ) {
            let msg = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {"content": [{"type": "text", "text": text}]},
            })
            .to_string();
            let cut = cut.min(msg.len());
            let named = msg.find("\"result\"").unwrap() + "\"result\"".len();
            let seen = truncated_message(&msg.as_bytes()[..cut], Some(&RequestId::Number(id)));
            let is_final = matches!(seen, Seen::Final(Outcome::Success));
            proptest::prop_assert_eq!(is_final, cut >= named, "{:?}", &msg[..cut]);
        }

        #[test]
        fn any_prefix_is_read_without_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let _ = truncated_message(&bytes, Some(&RequestId::Number(1)));
            let _ = truncated_message(&bytes, None);
        }
    }

    #[test]
    fn messages() {
        let id = RequestId::Number(7);
        let s = |b: &str| inspect_message(b.as_bytes(), Some(&id));
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#),
            Seen::Final(Outcome::Success)
        );
        assert_eq!(
            s(
                r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}],"isError":true}}"#
            ),
            Seen::Final(Outcome::ToolError)
        );
        assert_eq!(
            s(
                r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32603,"message":"boom","data":{"a":[1,2]}}}"#
            ),
            Seen::Final(Outcome::RpcError(-32603))
        );
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","id":8,"result":{}}"#),
            Seen::OtherResponse
        );
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","id":"7","result":{}}"#),
            Seen::OtherResponse
        );
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#),
            Seen::Final(Outcome::RpcError(-32700))
        );
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#),
            Seen::Progress
        );
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{}}"#),
            Seen::ServerRequest
        );
        // Escaped methods (PHP's encoder escapes `/`) are the same methods.
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","method":"notifications\/progress","params":{"progress":1}}"#),
            Seen::Progress
        );
        assert_eq!(
            s(r#"{"jsonrpc":"2.0","id":1,"method":"elicitation\/create","params":{}}"#),
            Seen::ServerRequest
        );
        assert_eq!(s("not json"), Seen::Other);
        assert_eq!(
            s(r#"{"id":7,"result":"plain"}"#),
            Seen::Final(Outcome::Success)
        );
        assert_eq!(s(r#"{"id":{"x":1},"result":{}}"#), Seen::OtherResponse);
    }

    /// Counts the release listeners that ran.
    fn released(h: &CompletionHandle) -> Arc<AtomicU64> {
        let n = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&n);
        h.on_release(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        n
    }

    #[test]
    fn release_listeners_wait_for_every_continuation() {
        // No continuation: released at completion, with the completion listeners.
        let h = CompletionHandle::new();
        let n = released(&h);
        assert_eq!(n.load(Ordering::SeqCst), 0);
        h.complete(Outcome::Cancelled);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let late = released(&h);
        assert_eq!(late.load(Ordering::SeqCst), 1, "after the release: at once");

        // Two continuations taken before completion: released when the last one goes.
        let h = CompletionHandle::new();
        let n = released(&h);
        let seen = Arc::new(Mutex::new(None));
        let s = Arc::clone(&seen);
        h.on_complete(move |o| *s.lock().unwrap() = Some(*o));
        let (a, b) = (h.continuation(), h.continuation());
        h.complete(Outcome::Cancelled);
        assert_eq!(
            *seen.lock().unwrap(),
            Some(Outcome::Cancelled),
            "completion listeners are not held"
        );
        assert_eq!(n.load(Ordering::SeqCst), 0);
        let added = released(&h);
        drop(a);
        assert_eq!(n.load(Ordering::SeqCst) + added.load(Ordering::SeqCst), 0);
        drop(b);
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(
            added.load(Ordering::SeqCst),
            1,
            "one added while held waits too"
        );

        // A continuation that ends before completion holds nothing back.
        let h = CompletionHandle::new();
        let n = released(&h);
        drop(h.continuation());
        assert_eq!(n.load(Ordering::SeqCst), 0, "not complete yet");
        h.complete(Outcome::Success);
        assert_eq!(n.load(Ordering::SeqCst), 1);

        // A ready completion releases at once.
        let n = Arc::new(AtomicU64::new(0));
        let m = Arc::clone(&n);
        Completion::Ready(Outcome::Success).on_release(move || {
            m.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    /// A listener is told the release is deferred only when the call completes while a
    /// continuation lives, and then before it is released.
    #[test]
    fn a_deferred_release_is_announced_once() {
        struct Seen(Arc<Mutex<Vec<&'static str>>>);
        impl ReleaseListener for Seen {
            fn deferred(&mut self, stream: Option<&str>) {
                assert_eq!(stream, Some("7"));
                self.0.lock().unwrap().push("deferred");
            }
            fn released(self: Box<Self>) {
                self.0.lock().unwrap().push("released");
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = CompletionHandle::new();
        h.on_release_with(Box::new(Seen(Arc::clone(&log))));
        let c = h.continuation_resumable_as("7");
        h.complete(Outcome::Cancelled);
        assert_eq!(*log.lock().unwrap(), ["deferred"]);
        drop(c);
        assert_eq!(*log.lock().unwrap(), ["deferred", "released"]);

        let log = Arc::new(Mutex::new(Vec::new()));
        let h = CompletionHandle::new();
        h.on_release_with(Box::new(Seen(Arc::clone(&log))));
        h.complete(Outcome::Success);
        assert_eq!(*log.lock().unwrap(), ["released"], "nothing deferred");
    }

    /// The last continuation dropped on another thread while the call completes: the release
    /// listener runs exactly once, whichever side finishes last.
    #[test]
    fn a_release_racing_the_last_continuation_runs_once() {
        for _ in 0..2_000 {
            let h = CompletionHandle::new();
            let n = released(&h);
            let c = h.continuation();
            let t = std::thread::spawn(move || drop(c));
            h.complete(Outcome::Cancelled);
            t.join().unwrap();
            assert_eq!(n.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn a_cancellation_request_turns_only_incomplete_into_cancelled() {
        let h = CompletionHandle::new();
        assert!(h.cancel_requested());
        assert!(!h.cancel_requested(), "set already");
        assert!(h.is_cancel_requested());
        let seen = Arc::new(Mutex::new(None));
        let s = Arc::clone(&seen);
        h.on_complete(move |o| *s.lock().unwrap() = Some(*o));
        assert!(h.complete(Outcome::Incomplete));
        assert_eq!(h.outcome(), Some(Outcome::Cancelled));
        assert_eq!(
            *seen.lock().unwrap(),
            Some(Outcome::Cancelled),
            "listeners too"
        );

        for o in [Outcome::Success, Outcome::Transport, Outcome::Elapsed] {
            let h = CompletionHandle::new();
            let _ = h.cancel_requested();
            h.complete(o);
            assert_eq!(
                h.outcome(),
                Some(o),
                "a server that goes on is still judged"
            );
        }
        let h = CompletionHandle::new();
        h.complete(Outcome::Incomplete);
        assert_eq!(h.outcome(), Some(Outcome::Incomplete));
    }
}
