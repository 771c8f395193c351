//! The response futures of [`Timeout`](crate::Timeout).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_armor_mcp::Continuation;
use tower_armor_mcp::error::{BoxError, Elapsed};
use tower_armor_mcp::observe::{BodyKind, ObservedBody, body_kind, observe_response};
use tower_armor_mcp::signal::SignalWait;

use crate::body::{CallState, Framing, TimeoutBody};
use crate::calls::Marked;
use crate::cancel::{CancelTarget, REASON_GONE};
use crate::clock::after;
use crate::drain::Ending;

pin_project! {
    /// Response future of [`Timeout`](crate::Timeout) for HTTP requests: races the inner future
    /// against the call's deadline, then hands the deadline on to the answer's
    /// [`TimeoutBody`].
    ///
    /// Dropped before the headers, a 2025-11-25 session call is sent
    /// `notifications/cancelled` (see the [crate docs](crate#cancellation)).
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        kind: Kind<F>,
    }

    impl<F> PinnedDrop for ResponseFuture<F>
    where
        F: Future,
    {
        fn drop(this: Pin<&mut Self>) {
            match this.project().kind.project() {
                KindProj::Timed { call: Some(call), .. } => {
                    if call.is_resumed() {
                        // A resumption its client left before the headers: one that took the
                        // call over from an answer still in flight gives it back (that answer
                        // goes on with it, or ends early and lets go of it itself); otherwise
                        // held again, like the answer it resumed.
                        let given_back = call.taken_from.take().is_some_and(|s| s.give_back());
                        if !given_back {
                            call.gone(None);
                        }
                    } else {
                        call.send_cancel(REASON_GONE);
                    }
                }
                // A client's cancellation left before its answer: whether the server read it
                // is not known, so the held calls it named are cancelled here too (a second
                // cancellation of a call changes nothing).
                KindProj::Passthrough { withdrawn, .. } => cancel_withdrawn(withdrawn),
                _ => {}
            }
        }
    }
}

pin_project! {
    /// The inner call of a request the layer passes through: started at once, or (a session's
    /// `DELETE` while calls of it run) once the server has read the calls' cancellations.
    #[project = ForwardProj]
    enum Forward<F>
    where
        F: Future,
    {
        Now {
            #[pin]
            future: F,
        },
        Later {
            future: Pin<Box<dyn Future<Output = F::Output> + Send>>,
        },
    }
}

impl<F: Future> Future for Forward<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match self.project() {
            ForwardProj::Now { future } => future.poll(cx),
            ForwardProj::Later { future } => future.as_mut().poll(cx),
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F>
    where
        F: Future,
    {
        Passthrough {
            #[pin]
            future: Forward<F>,
            // The calls a client's cancellation marked, withdrawn unless the server accepts it.
            marked: Option<Marked>,
            // The held calls it named, taken out of the held table: cancelled by the layer
            // unless the server accepts it.
            withdrawn: Vec<(CancelTarget, Vec<Continuation>)>,
        },
        Timed {
            #[pin]
            future: F,
            #[pin]
            sleep: Sleep,
            // Where the call waits for the server's drain (`CallDrain::end_calls`).
            drain: SignalWait,
            call: Option<CallState>,
        },
        // Refused: the drain deadline had passed.
        Refused,
        Done,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn passthrough(
        future: F,
        marked: Option<Marked>,
        withdrawn: Vec<(CancelTarget, Vec<Continuation>)>,
    ) -> Self {
        Self::forwarding(Forward::Now { future }, marked, withdrawn)
    }

    /// [`passthrough`](Self::passthrough) of a call that `future` makes later.
    pub(crate) fn passthrough_later(
        future: Pin<Box<dyn Future<Output = F::Output> + Send>>,
        marked: Option<Marked>,
        withdrawn: Vec<(CancelTarget, Vec<Continuation>)>,
    ) -> Self {
        Self::forwarding(Forward::Later { future }, marked, withdrawn)
    }

    fn forwarding(
        future: Forward<F>,
        marked: Option<Marked>,
        withdrawn: Vec<(CancelTarget, Vec<Continuation>)>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Passthrough {
                future,
                marked,
                withdrawn,
            },
        }
    }

    pub(crate) fn timed(future: F, sleep: Sleep, call: CallState) -> Self {
        ResponseFuture {
            kind: Kind::Timed {
                future,
                sleep,
                drain: SignalWait::default(),
                call: Some(call),
            },
        }
    }

    pub(crate) fn refused() -> Self {
        ResponseFuture {
            kind: Kind::Refused,
        }
    }
}

impl<F: Future> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Timed { .. } => "timed",
            Kind::Refused => "refused",
            Kind::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

/// The held calls a client's cancellation (or session end) named, which the server did not
/// accept (or may not have read): the layer cancels them itself, as it would have at the
/// grace's end, keeping their holds until the server has read that.
fn cancel_withdrawn(withdrawn: &mut Vec<(CancelTarget, Vec<Continuation>)>) {
    for (target, hold) in withdrawn.drain(..) {
        target.send_holding(REASON_GONE, hold);
    }
}

/// A `GET` that resumed a held call got no stream of it. The tool may still run, and nobody
/// reads it: refused by the server (`status`, a client error: the session or the stream is
/// gone), it is cancelled, like a call whose caller went away; after a server error or a
/// transport failure (`None`), which a client may retry, it is held again for the grace. A
/// `GET` that took the call over from an answer still in flight gives it back instead. (rmcp
/// answers a resumption it cannot serve with an empty stream, which the body then treats as
/// an answer ended without its response.)
fn resumption_failed(mut call: CallState, status: Option<StatusCode>) {
    if !call.is_resumed() || call.source_answered() {
        return;
    }
    if let Some(source) = call.taken_from.take()
        && source.give_back()
    {
        // It took the call over from an answer still in flight, which the server did not
        // move (it refused this GET first): the call is that answer's again.
        tracing::debug!(id = ?call.id, ?status, "resumption refused; the call stays with its answer");
        return;
    }
    if status.is_some_and(|s| s.is_client_error()) {
        tracing::debug!(id = ?call.id, ?status, "resumption refused; cancelling the call");
        call.send_cancel(REASON_GONE);
    } else {
        tracing::debug!(id = ?call.id, ?status, "resumption failed; held again");
        call.gone(None);
    }
}

/// Observes the answer once and puts its body under the rest of the deadline.
fn timed_response<B>(call: CallState, resp: Response<B>) -> Response<TimeoutBody<ObservedBody<B>>>
where
    B: Body<Data = Bytes>,
{
    // Reuses a completion handle an inner layer already put there (the body then passes
    // through unparsed); otherwise this is the one observer of the call.
    let (resp, handle) = observe_response(resp, call.id.as_ref());
    if let Some(entry) = &call.entry {
        // Applies a cancellation by the client that came before the answer.
        entry.answered(&handle);
    }
    if handle.is_complete() {
        // An error status or an answer neither JSON nor SSE: the call is over, but a body
        // still coming must not outlive its deadline. (Headers that came just at the deadline
        // leave their body the boundary grace, as an event in progress gets.)
        let deadline = call.clock.wake_at().max(after(Instant::now(), call.grace));
        resumption_failed(call, Some(resp.status()));
        return resp.map(|body| TimeoutBody::bounded(body, deadline));
    }
    // (gRPC-Web's trailers travel inside its body: not tracked.)
    let framing = match body_kind(resp.headers()) {
        BodyKind::Sse => Framing::Sse,
        BodyKind::Grpc => Framing::Grpc,
        BodyKind::Json | BodyKind::GrpcWeb | BodyKind::Other => Framing::Plain,
    };
    resp.map(|body| TimeoutBody::timed(body, handle, call, framing))
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<TimeoutBody<ObservedBody<B>>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let out = match this.kind.as_mut().project() {
            KindProj::Passthrough {
                future,
                marked,
                withdrawn,
            } => {
                let res = ready!(future.poll(cx));
                let accepted = matches!(&res, Ok(r) if r.status().is_success());
                if let Some(m) = marked.take().filter(|_| !accepted) {
                    tracing::debug!("the server refused a client's cancellation; marks withdrawn");
                    m.withdraw();
                }
                if accepted {
                    withdrawn.clear();
                } else {
                    cancel_withdrawn(withdrawn);
                }
                let resp = res.map_err(Into::into)?;
                return Poll::Ready(Ok(
                    resp.map(|b| TimeoutBody::passthrough(ObservedBody::passthrough(b)))
                ));
            }
            KindProj::Timed {
                future,
                sleep,
                drain,
                call,
            } => {
                if let Poll::Ready(res) = future.poll(cx) {
                    let call = call.take().expect("ResponseFuture polled after completion");
                    match res {
                        // A server being shut down answers calls with its own error (rmcp: a
                        // bare 500 once its handlers are cancelled): the drain's answer instead.
                        // The call is over: nothing to cancel.
                        Ok(resp) if resp.status().is_server_error() && call.drain.is_ended() => {
                            Err(Ending::Drain.error())
                        }
                        Ok(resp) => Ok(timed_response(call, resp)),
                        Err(e) => {
                            resumption_failed(call, None);
                            Err(e.into())
                        }
                    }
                } else {
                    let drained = call
                        .as_ref()
                        .is_some_and(|c| c.drain.poll_ended(drain, cx).is_ready());
                    let ending = if drained {
                        Ending::Drain
                    } else {
                        ready!(sleep.poll(cx));
                        Ending::Deadline
                    };
                    let mut call = call.take().expect("ResponseFuture polled after completion");
                    tracing::debug!(id = ?call.id, ?ending, "call ended before the answer's headers");
                    call.send_cancel(ending.reason());
                    Err(ending.error())
                }
            }
            KindProj::Refused => Err(Ending::Drain.error()),
            KindProj::Done => panic!("ResponseFuture polled after completion"),
        };
        // Drops the inner future (the call) and the sleep.
        this.kind.set(Kind::Done);
        Poll::Ready(out)
    }
}

pin_project! {
    /// Response future of [`Timeout`](crate::Timeout) for typed calls
    /// ([`ToolCall`](tower_armor_mcp::ToolCall)): the inner future, raced against the deadline.
    /// At the deadline the inner future is dropped (for a typed service, dropping is the
    /// cancellation) and the call fails with [`Elapsed`].
    pub struct CallFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
    }
}

impl<F> CallFuture<F> {
    pub(crate) fn new(future: F, sleep: Sleep) -> Self {
        CallFuture { future, sleep }
    }
}

impl<F> fmt::Debug for CallFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFuture")
            .field("deadline", &self.sleep.deadline())
            .finish_non_exhaustive()
    }
}

impl<F, T, E> Future for CallFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(res) = this.future.poll(cx) {
            return Poll::Ready(res.map_err(Into::into));
        }
        ready!(this.sleep.poll(cx));
        Poll::Ready(Err(Elapsed::new().into()))
    }
}
