//! [`Bulkhead`]: the service of [`BulkheadLayer`](crate::BulkheadLayer) and
//! [`BackpressureLayer`](crate::BackpressureLayer).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use tokio::time::Instant;
use tower_armor_mcp::error::BulkheadFull;
use tower_armor_mcp::inspect::event_stream;
use tower_armor_mcp::{
    BoxError, CallRequest, CallResponse, McpRequest, Method, Principal, RequestId, StreamRole,
};
use tower_service::Service;

use crate::continued::Continued;
use crate::future::{Hold, ResponseFuture};
use crate::inline::InLine;
use crate::keys::Pools;
use crate::layer::Shared;
use crate::pool::{Acquired, Permit, Waiter};

/// The key in the [`BulkheadFull`] error of a refused long-lived stream.
pub const STREAMS_KEY: &str = "streams";

/// Bounds concurrent calls of the inner service; see the [crate docs](crate).
pub struct Bulkhead<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Backpressure mode only: the permit `poll_ready` reserved (or is waiting for).
    reservation: Reservation,
}

enum Reservation {
    None,
    Waiting(Waiter),
    Ready(Permit),
}

impl<S> Bulkhead<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Bulkhead {
            inner,
            shared,
            reservation: Reservation::None,
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

    /// The inner service (a reservation, if any, is returned).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Bulkhead<S> {
    /// Clones the service and shares the bulkhead; a reservation made by this value's
    /// `poll_ready` stays with it (the clone must get ready on its own).
    fn clone(&self) -> Self {
        Bulkhead::new(self.inner.clone(), Arc::clone(&self.shared))
    }
}

impl<S: fmt::Debug> fmt::Debug for Bulkhead<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reservation = match self.reservation {
            Reservation::None => "none",
            Reservation::Waiting(_) => "waiting",
            Reservation::Ready(_) => "ready",
        };
        f.debug_struct("Bulkhead")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .field("reservation", &reservation)
            .finish()
    }
}

/// What a request takes from the bulkhead.
enum Admission {
    /// A call (or an opaque request without facts, or a resumption with no held permit to
    /// adopt): a call permit. With the call's 2025-11-25 session.
    Call(Option<HeaderValue>),
    /// A 2025-11-25 resumption (`GET` + a call's `Last-Event-ID`) of this stream in this
    /// session: it adopts the permit its held call keeps (see `continued`), or takes one like
    /// a call.
    Resume(HeaderValue, Box<str>),
    /// A long-lived stream: a slot in its principal's stream pool.
    Stream,
    /// Notifications, client responses, session deletes: nothing. A `notifications/cancelled`
    /// or the answer to a server's elicitation must never wait behind the calls it concerns.
    /// Keyed by tool, also the handshake and `ping` (see [`Pools::exempts`]).
    Pass,
}

#[inline]
fn admission<R: CallRequest>(req: &R, pools: &Pools) -> Admission {
    match req.mcp() {
        None => Admission::Call(None),
        Some(m) if m.is_long_lived() => Admission::Stream,
        Some(m) if m.is_call() && !pools.exempts(m) => {
            let session = m.session_id().cloned();
            match (m.stream_role(), session) {
                (StreamRole::Resume { last_event_id }, Some(session)) => {
                    match event_stream(last_event_id.as_bytes()) {
                        Some(stream) => Admission::Resume(session, Box::from(stream)),
                        None => Admission::Call(Some(session)),
                    }
                }
                (_, session) => Admission::Call(session),
            }
        }
        Some(_) => Admission::Pass,
    }
}

/// A long-lived stream: a slot in its principal's (or without one, its peer's) stream pool
/// (nothing when streams are not bounded), or a refusal.
#[inline(never)]
fn open_stream(
    shared: &Shared,
    principal: Option<&Principal>,
    peer: Option<SocketAddr>,
) -> Result<Hold, BoxError> {
    let Some(streams) = &shared.streams else {
        return Ok(Hold::None);
    };
    match streams.try_open(principal, peer.map(|a| a.ip())) {
        Some(slot) => Ok(Hold::Stream(Box::new(slot))),
        None => {
            tracing::debug!(
                principal = principal.map(Principal::name),
                peer = ?peer.map(|a| a.ip()),
                limit = streams.per_principal(),
                "too many long-lived streams; stream refused"
            );
            Err(Box::new(BulkheadFull::new(Some(Arc::from(STREAMS_KEY)))))
        }
    }
}

/// `id.clone()`, except that only the string's heap pointer, never the request's own memory,
/// is handed to an out-of-line call: the compiler can then hand the request to the inner
/// service without copying it first.
#[inline]
fn clone_id(id: &RequestId) -> RequestId {
    match id {
        RequestId::Number(n) => RequestId::Number(*n),
        RequestId::String(s) => RequestId::String(Box::from(&**s)),
    }
}

/// A `notifications/cancelled` on its way to the server: a call it names that still waits in
/// line ends now (the server, which has not seen that call, would ignore it). The notification
/// goes on to the server all the same.
#[cold]
fn cancel_in_line(shared: &Shared, m: &McpRequest) {
    if let (Some(session), Some(id)) = (m.session_id(), m.cancelled_request()) {
        shared.in_line.cancel(session, id);
    }
}

#[cold]
fn full(key: Option<Arc<str>>) -> BoxError {
    tracing::debug!(key = ?key.as_deref(), "bulkhead full; call refused");
    Box::new(BulkheadFull::new(key))
}

impl<S> Bulkhead<S> {
    /// A call's 2025-11-25 session, with the table of permits held past their answer.
    #[inline]
    fn session(&self, session: Option<HeaderValue>) -> Option<(HeaderValue, Arc<Continued>)> {
        session.map(|s| (s, Arc::clone(&self.shared.continued)))
    }

    /// Backpressure mode: reserves a permit (or waits for one) before the inner service is
    /// asked.
    #[inline(never)]
    fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        loop {
            match &mut self.reservation {
                Reservation::Ready(_) => return Poll::Ready(Ok(())),
                Reservation::Waiting(w) => match w.poll_acquire(cx.waker()) {
                    Poll::Ready(p) => self.reservation = Reservation::Ready(p),
                    Poll::Pending => return Poll::Pending,
                },
                Reservation::None => {
                    let Pools::Global(pool) = &self.shared.pools else {
                        unreachable!("backpressure bulkheads have one global pool");
                    };
                    self.reservation = match pool.acquire() {
                        Acquired::Granted(p) => Reservation::Ready(p),
                        Acquired::Queued(w) => Reservation::Waiting(w),
                        // The line is unbounded in backpressure mode.
                        Acquired::Full(key) => return Poll::Ready(Err(full(key))),
                    };
                }
            }
        }
    }
}

impl<S: Clone> Bulkhead<S> {
    /// The future of a call that waits in line: the readied service waits with the request, and
    /// a fresh clone stays here.
    #[inline(never)]
    fn wait<R>(
        &mut self,
        waiter: Waiter,
        req: R,
        session: Option<HeaderValue>,
        id: Option<RequestId>,
    ) -> ResponseFuture<S::Future, S, R>
    where
        R: CallRequest,
        S: Service<R>,
    {
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let deadline = self
            .shared
            .max_wait
            .and_then(|d| Instant::now().checked_add(d));
        let cancellable = match (req.mcp(), &id) {
            (Some(m), Some(id)) => m
                .session_id()
                .and_then(|s| InLine::register(&self.shared.in_line, s, id)),
            _ => None,
        };
        let session = self.session(session);
        ResponseFuture::waiting(waiter, cancellable, deadline, (service, req), session, id)
    }
}

impl<S, R> Service<R> for Bulkhead<S>
where
    R: CallRequest,
    S: Service<R> + Clone,
    S::Response: CallResponse,
    S::Error: Into<BoxError>,
{
    type Response = <S::Response as CallResponse>::Observed;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.shared.backpressure {
            match self.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.reservation = Reservation::None;
                Poll::Ready(Err(e.into()))
            }
        }
    }

    #[inline]
    fn call(&mut self, req: R) -> Self::Future {
        let id = req.id().map(clone_id);
        // One call of the inner service for every admitted request: the request is moved once.
        let admission = match admission(&req, &self.shared.pools) {
            Admission::Resume(session, stream) => {
                match self.shared.continued.adopt(&session, &stream) {
                    Some(adopted) => {
                        self.reservation = Reservation::None;
                        let hold = Hold::Adopted(Box::new(adopted));
                        return ResponseFuture::running(self.inner.call(req), hold, id);
                    }
                    None => Admission::Call(Some(session)),
                }
            }
            other => other,
        };
        let hold = match admission {
            // The usual call: a permit now, or a place in line (no reservation is ever made
            // outside backpressure mode).
            Admission::Call(session) if !self.shared.backpressure => {
                match self.shared.pools.acquire(&req) {
                    Acquired::Granted(permit) => Hold::call(permit, self.session(session)),
                    Acquired::Queued(waiter) => return self.wait(waiter, req, session, id),
                    Acquired::Full(key) => return ResponseFuture::failed(full(key), id),
                }
            }
            Admission::Call(session) => {
                let Reservation::Ready(permit) =
                    std::mem::replace(&mut self.reservation, Reservation::None)
                else {
                    panic!(
                        "Bulkhead (backpressure mode) called without poll_ready returning Ready"
                    );
                };
                Hold::call(permit, self.session(session))
            }
            // Requests that take no call permit return a reservation, if any. (A resumption
            // was made a call or adopted above.)
            Admission::Pass | Admission::Resume(..) => {
                self.reservation = Reservation::None;
                if let Some(m) = req.mcp()
                    && m.method() == Some(&Method::NotificationsCancelled)
                {
                    cancel_in_line(&self.shared, m);
                }
                Hold::None
            }
            Admission::Stream => {
                self.reservation = Reservation::None;
                let ext = req.extensions();
                let principal = ext.get::<Principal>();
                // The peer counts only for streams without a principal.
                let peer = match (principal, self.shared.peer_addr) {
                    (Some(_), _) => None,
                    (None, None) => ext.get::<SocketAddr>().copied(),
                    (None, Some(f)) => f(ext),
                };
                match open_stream(&self.shared, principal, peer) {
                    Ok(hold) => hold,
                    Err(e) => return ResponseFuture::failed(e, id),
                }
            }
        };
        ResponseFuture::running(self.inner.call(req), hold, id)
    }
}
