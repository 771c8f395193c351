use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tokio::time::Instant;
use tower_armor_mcp::error::BoxError;
use tower_armor_mcp::inspect::{InProgress, event_stream};
use tower_armor_mcp::observe::ObservedBody;
use tower_armor_mcp::{
    CallRequest, Continuation, CorrelationId, McpBody, McpRequest, MessageKind, Method, StreamRole,
    ToolCall, grpc_content_type,
};
use tower_service::Service;

use crate::body::{CallState, Prior, TimeoutBody};
use crate::calls::Marked;
use crate::cancel::{CancelTarget, REASON_SESSION_ENDED, ReadSignal, SenderSlot};
use crate::clock::Clock;
use crate::future::{CallFuture, ResponseFuture};
use crate::layer::{Shared, TimeoutLayer};

/// A per-call deadline that follows the call to its final JSON-RPC response; see the
/// [crate docs](crate).
///
/// One `Service` impl per path (Rust has no specialization):
///
/// - `Service<http::Request<ReqB>>`: MCP over streamable HTTP, under
///   [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer) (`ReqB` = [`McpBody`]),
///   or gRPC in a tonic stack (`ReqB` = `tonic::body::Body`). The request body must be one the
///   layer can build from an [`McpBody`] (`ReqB: From<McpBody>`), because the layer sends
///   requests of its own (`notifications/cancelled`) to the same inner service. The answer
///   becomes `Response<TimeoutBody<ObservedBody<B>>>`.
/// - `Service<ToolCall>`: typed calls; the answer is the inner one, unchanged.
///
/// Both fail with [`BoxError`]: the inner error boxed, or [`Elapsed`](crate::error::Elapsed).
///
/// Clones share the layer's settings and the sender of cancellations.
pub struct Timeout<S> {
    inner: S,
    shared: Arc<Shared>,
    sender: Arc<SenderSlot>,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with the settings of `layer`.
    pub fn new(inner: S, layer: &TimeoutLayer) -> Self {
        Timeout {
            inner,
            shared: Arc::clone(&layer.shared),
            sender: Arc::default(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutable.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Timeout<S> {
    fn clone(&self) -> Self {
        Timeout {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            sender: Arc::clone(&self.sender),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Timeout<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish()
    }
}

/// How long a session's `DELETE` waits for the server to read the cancellations of the calls
/// still running in it before it goes in anyway.
const SESSION_END_WAIT: Duration = Duration::from_secs(1);

impl<S> Timeout<S> {
    /// A session's `DELETE` while calls of it run (`running`) or are held for resumption
    /// (`held`): their cancellations go first (a held call's keeping what it holds until the
    /// server has read it), and the `DELETE` once the server has read them all (at most
    /// [`SESSION_END_WAIT`]). Given the `DELETE` alone, rmcp ends the calls' streams (and with
    /// them the permits they hold) but lets their tools run on for up to 5 s; cancelled, the
    /// tools get their cancellation at once.
    fn cancel_then_forward<ReqB, B>(
        &mut self,
        session: HeaderValue,
        running: Vec<CancelTarget>,
        req: Request<ReqB>,
        marked: Option<Marked>,
        held: Vec<(CancelTarget, Vec<Continuation>)>,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqB>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ReqB: From<McpBody> + Send + 'static,
        B: Send + 'static,
    {
        self.sender.get_or_init(&self.inner);
        let (signal, read) = ReadSignal::new();
        for call in running {
            call.send_signalled(REASON_SESSION_ENDED, Vec::new(), &signal);
        }
        for (call, hold) in &held {
            call.clone()
                .send_signalled(REASON_SESSION_ENDED, hold.clone(), &signal);
        }
        drop(signal);
        // A fresh clone makes the call once readied, so the wait holds none of the inner
        // service's capacity (the readied service stays for the next call).
        let mut inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        let later = async move {
            // (A server that never reads them still gets the `DELETE`.)
            let _ = tokio::time::timeout(SESSION_END_WAIT, read).await;
            // Calls the client started in the session meanwhile end with it too: by its
            // choice, unless the server refuses the `DELETE`.
            let late = shared.calls.end_session(&session);
            if let Err(e) = std::future::poll_fn(|cx| inner.poll_ready(cx)).await {
                late.withdraw();
                return Err(e);
            }
            let res = inner.call(req).await;
            if !matches!(&res, Ok(r) if r.status().is_success()) {
                late.withdraw();
            }
            res
        };
        // Sent with the `DELETE`'s `Host`, `Origin`, session and version, the cancellations of
        // running calls fare as it does; refused with it, its marks (the client's choice) are
        // withdrawn, and the held calls are cancelled again (see `ResponseFuture`: harmless).
        ResponseFuture::passthrough_later(Box::pin(later), marked, held)
    }

    fn clock(&self, facts: Option<&McpRequest>) -> Clock {
        let p = &self.shared.policy;
        Clock::start(
            Instant::now(),
            p.duration_for(facts),
            p.reset_on_progress,
            p.max_total,
            p.max_pause,
        )
    }
}

/// Whether a request starts work a draining server refuses: a call or a long-lived stream. Not
/// a resumption, nor what only asks about work already running: `ping`, and the `tasks/*`
/// requests that poll, fetch or cancel a task-augmented call started before the drain; nor a
/// read of the server's catalogue (`tools/list` and the other lists, `server/discover`), which
/// runs no tool and which a client may need to read a call's answer (the Python SDK lists the
/// tools after a call to check its structured result, and fails the call when that is refused).
fn starts_work(f: &McpRequest) -> bool {
    if f.is_long_lived() {
        return true;
    }
    f.is_call()
        && !f.is_resume()
        && !matches!(
            f.method(),
            Some(
                Method::Ping
                    | Method::ToolsList
                    | Method::ResourcesList
                    | Method::ResourceTemplatesList
                    | Method::PromptsList
                    | Method::ServerDiscover
                    | Method::TasksGet
                    | Method::TasksList
                    | Method::TasksResult
                    | Method::TasksCancel
            )
        )
}

impl<S, ReqB, B> Service<Request<ReqB>> for Timeout<S>
where
    S: Service<Request<ReqB>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: From<McpBody> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<TimeoutBody<ObservedBody<B>>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        if self.shared.drain.is_ended() {
            // Past the drain deadline nothing reaches the server, and nothing else happens
            // (no pause ends, no cancellation is matched): no call starts (one that waited in a
            // bulkhead's line included), and a server cancelling its sessions would answer a
            // session's other requests 404, which tells a client to start a new session on a
            // server that is leaving.
            tracing::debug!("request refused: the server is shutting down");
            return ResponseFuture::refused();
        }
        let facts = req.extensions().get::<McpRequest>();
        // (The switch first: off, it is two plain loads and the request is not looked at.)
        if self.shared.drain.refuses_new_calls()
            && match facts {
                Some(f) => starts_work(f),
                // A gRPC call (no MCP facts): every one starts work.
                None => grpc_content_type(req.headers()).is_some(),
            }
        {
            // Draining: the calls in flight may finish (and what concerns them passes), no new
            // one starts.
            tracing::debug!("new call refused: the server is draining");
            return ResponseFuture::refused();
        }
        let mut resumed = None;
        // The stream a resumed call's answer continues (its event ids' stream part).
        let mut resumed_stream = None;
        // A late resumption of a call this layer cancelled: that call's id.
        let mut late = None;
        // A call whose answer was still in flight, taken over by this GET.
        let mut taken = None;
        if let Some(f) = facts {
            let mut marked = None;
            // Calls held for resumption that the client ends itself.
            let mut withdrawn = Vec::new();
            // A session its client ends, and its running calls: cancelled before the `DELETE`.
            let mut ending = None;
            let mut cancel_first = Vec::new();
            if let Some(session) = f.session_id() {
                if f.kind() == MessageKind::Response {
                    // The client answered one of the server's requests: a paused call runs
                    // again.
                    self.shared.pauses.answered(session);
                } else if let Some(target) = f.cancelled_request() {
                    // The client cancels one of its calls: it ends `Cancelled`, not
                    // `Incomplete` when the server ends its stream (unless the server refuses
                    // the cancellation: the marks are withdrawn then).
                    let m = self.shared.calls.cancel(session, target);
                    // A call held for resumption that its client cancels is over: its held
                    // cancellation goes.
                    withdrawn = self.shared.held.withdraw(session, Some(target));
                    tracing::debug!(
                        id = ?target,
                        marked = m.len(),
                        held = withdrawn.len(),
                        "the client cancels a call"
                    );
                    marked = Some(m);
                } else if req.method() == http::Method::DELETE {
                    // The client ends its session: its running calls end with it, by its
                    // choice (unmarked again if the server refuses the DELETE).
                    let m = self.shared.calls.end_session(session);
                    withdrawn = self.shared.held.withdraw(session, None);
                    // rmcp answers a `DELETE` at once and ends the session's call streams, but
                    // lets their tools run on for up to 5 s after: past their permits (which
                    // end with the streams) and deadlines. So they are cancelled first (see
                    // `cancel_then_forward`), with the `DELETE`'s own headers.
                    ending = Some(session.clone());
                    cancel_first = m
                        .running()
                        .into_iter()
                        .filter_map(|id| CancelTarget::for_session_end(&req, f, id, &self.sender))
                        .collect();
                    tracing::debug!(
                        marked = m.len(),
                        held = withdrawn.len(),
                        "the client ends its session"
                    );
                    marked = Some(m);
                }
            }
            if let (Some(session), StreamRole::Resume { last_event_id }) =
                (f.session_id(), f.stream_role())
            {
                // The cancellation held for the stream this GET resumes is taken back: the
                // resumed answer is the call's now.
                resumed =
                    self.shared
                        .held
                        .resumed(session, last_event_id.as_bytes(), &self.shared.calls);
                let stream = event_stream(last_event_id.as_bytes());
                if resumed.is_some() {
                    resumed_stream = stream.map(Box::from);
                } else if let Some(t) =
                    stream.and_then(|st| self.shared.calls.take_over(session, st))
                {
                    // The call's answer is still in flight (its client resumed before the
                    // server saw it go, or while still reading it): rmcp moves the rest of the
                    // call onto this GET and ends that answer early. This GET carries the call
                    // on: its id, clock, hold and cancellation.
                    tracing::debug!(id = ?t.0.id, "resumption of an answer in flight; the call moves to it");
                    resumed_stream = stream.map(Box::from);
                    taken = Some(t);
                } else {
                    // The answer may have handed the call to the held calls between the two
                    // looks (it holds first, then stops being taken over): look again.
                    resumed = self.shared.held.resumed(
                        session,
                        last_event_id.as_bytes(),
                        &self.shared.calls,
                    );
                    if resumed.is_some() {
                        resumed_stream = stream.map(Box::from);
                    } else {
                        late = self.shared.held.late(session, last_event_id.as_bytes());
                    }
                }
            }
            if !f.is_call() || f.is_long_lived() {
                // The withdrawn calls' ids stay in progress, and what they hold (their
                // bulkhead permits) stays taken, until the server has read the client's own
                // cancellation (or the end of its session).
                // Should the server refuse it, the layer cancels those calls itself (see
                // `ResponseFuture`), keeping their holds until the server has read that.
                let mut fallback = Vec::with_capacity(withdrawn.len());
                if !withdrawn.is_empty() {
                    let mut marks = Vec::with_capacity(withdrawn.len());
                    let mut holds = Vec::with_capacity(withdrawn.len());
                    // (The fallback keeps a copy of each mark: the id stays taken until
                    // whichever cancellation the server reads.)
                    for (target, continues) in withdrawn {
                        marks.extend(target.mark());
                        fallback.push((target, continues.clone()));
                        holds.push(continues);
                    }
                    req.extensions_mut().insert(WithdrawnMarks {
                        _marks: marks,
                        _continues: Arc::new(holds),
                    });
                }
                if let Some(session) = ending
                    && !(cancel_first.is_empty() && fallback.is_empty())
                {
                    return self.cancel_then_forward(session, cancel_first, req, marked, fallback);
                }
                return ResponseFuture::passthrough(self.inner.call(req), marked, fallback);
            }
        }
        // A resumed call goes on under its own clock: its deadline and cap do not start over.
        let clock = match (&resumed, &taken) {
            (Some(r), _) => r.clock,
            (None, Some((t, _))) => t.clock,
            (None, None) => self.clock(facts),
        };
        let session = facts
            .and_then(McpRequest::session_id)
            .map(|s| (s.clone(), Arc::clone(&self.shared.pauses)));
        // A resumed call answers under its own id (the GET has none).
        let id = facts
            .and_then(McpRequest::id)
            .or(resumed.as_ref().map(|r| r.target.id()))
            .or(taken.as_ref().map(|(t, _)| &t.id))
            .cloned()
            .or_else(|| late.as_ref().map(|g| g.id.clone()));
        let mut taken_from = None;
        let mut waiting = 0;
        let mut prior = None;
        // The call's cancellation, what it carries for answers it continues, and its place
        // among the running calls.
        let (cancel, continues, entry) = match (resumed, taken) {
            // Registered already, by the held table, before it let go of the call.
            (Some(r), _) => {
                waiting = r.waiting;
                prior = r.prior.map(Prior::Held);
                (Some(r.target), r.continues, Some(r.entry))
            }
            // Registered already, in the place of the answer it took the call over from.
            (None, Some((t, entry))) => {
                // Cancelled as its own request asked (not with this GET's headers).
                let target = t.target;
                taken_from = Some(t.source);
                waiting = t.waiting;
                prior = t.from.map(Prior::TakenFrom);
                (target, t.continues, Some(entry))
            }
            (None, None) => {
                let target = facts.and_then(|f| CancelTarget::capture(&req, f, &self.sender));
                let entry = match (&session, &id) {
                    (Some((s, _)), Some(id)) => Some(self.shared.calls.register(
                        s.clone(),
                        id.clone(),
                        clock,
                        target.clone(),
                    )),
                    _ => None,
                };
                (target, Vec::new(), entry)
            }
        };
        if cancel.is_some() {
            // Built once per wrapped service, shared by its clones.
            self.sender.get_or_init(&self.inner);
        }
        let resume = cancel.is_some().then(|| {
            (
                Arc::clone(&self.shared.held),
                self.shared.policy.resume_grace,
            )
        });
        let call = CallState {
            id,
            clock,
            cancel,
            correlation: req.extensions().get::<CorrelationId>().cloned(),
            session,
            entry,
            grace: self.shared.policy.boundary_grace,
            resume,
            stream: resumed_stream,
            late: late.map(|g| crate::body::Late::Gone {
                timed_out: g.timed_out,
            }),
            drain: self.shared.drain.clone(),
            continues,
            taken_from,
            own: None,
            waiting,
            prior,
        };
        let wake = clock.wake_at();
        let future = self.inner.call(req);
        ResponseFuture::timed(future, tokio::time::sleep_until(wake), call)
    }
}

/// The marks of ids in progress of held calls their client cancelled, and the calls'
/// continuations, carried by the client's notification (or `DELETE`) until the server has
/// read it.
#[derive(Clone)]
struct WithdrawnMarks {
    _marks: Vec<InProgress>,
    _continues: Arc<Vec<Vec<Continuation>>>,
}

impl<S> Service<ToolCall> for Timeout<S>
where
    S: Service<ToolCall>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CallFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: ToolCall) -> Self::Future {
        let wake = self.clock(req.mcp()).wake_at();
        CallFuture::new(self.inner.call(req), tokio::time::sleep_until(wake))
    }
}
