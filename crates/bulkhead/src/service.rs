//! [`Bulkhead`]: the service of [`BulkheadLayer`](crate::BulkheadLayer) and
//! [`BackpressureLayer`](crate::BackpressureLayer).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_armor_mcp::error::BulkheadFull;
use tower_armor_mcp::{BoxError, CallRequest, CallResponse, Principal};
use tower_service::Service;

use crate::future::{Hold, ResponseFuture};
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
    /// A call (or a resumption of one, or an opaque request without facts): a call permit.
    Call,
    /// A long-lived stream: a slot in its principal's stream pool.
    Stream,
    /// Notifications, client responses, session deletes: nothing. A `notifications/cancelled`
    /// or the answer to a server's elicitation must never wait behind the calls it concerns.
    Pass,
}

fn admission<R: CallRequest>(req: &R) -> Admission {
    match req.mcp() {
        None => Admission::Call,
        Some(m) if m.is_long_lived() => Admission::Stream,
        Some(m) if m.is_call() => Admission::Call,
        Some(_) => Admission::Pass,
    }
}

fn full(key: Option<Arc<str>>) -> BoxError {
    tracing::debug!(key = ?key.as_deref(), "bulkhead full; call refused");
    Box::new(BulkheadFull::new(key))
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.shared.backpressure {
            loop {
                match &mut self.reservation {
                    Reservation::Ready(_) => break,
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
                            Acquired::Full => return Poll::Ready(Err(full(None))),
                        };
                    }
                }
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

    fn call(&mut self, req: R) -> Self::Future {
        let id = req.id().cloned();
        let reservation = std::mem::replace(&mut self.reservation, Reservation::None);
        match admission(&req) {
            Admission::Pass => ResponseFuture::running(self.inner.call(req), Hold::None, id),
            Admission::Stream => {
                let Some(streams) = &self.shared.streams else {
                    return ResponseFuture::running(self.inner.call(req), Hold::None, id);
                };
                let principal = req.extensions().get::<Principal>();
                match streams.try_open(principal) {
                    Some(slot) => {
                        ResponseFuture::running(self.inner.call(req), Hold::Stream(slot), id)
                    }
                    None => {
                        tracing::debug!(
                            principal = principal.map(Principal::name),
                            limit = streams.per_principal(),
                            "too many long-lived streams; stream refused"
                        );
                        ResponseFuture::failed(
                            Box::new(BulkheadFull::new(Some(Arc::from(STREAMS_KEY)))),
                            id,
                        )
                    }
                }
            }
            Admission::Call if self.shared.backpressure => {
                let Reservation::Ready(permit) = reservation else {
                    panic!(
                        "Bulkhead (backpressure mode) called without poll_ready returning Ready"
                    );
                };
                ResponseFuture::running(self.inner.call(req), Hold::Call(permit), id)
            }
            Admission::Call => {
                let pool = self.shared.pools.pool_for(&req);
                match pool.acquire() {
                    Acquired::Granted(permit) => {
                        ResponseFuture::running(self.inner.call(req), Hold::Call(permit), id)
                    }
                    Acquired::Queued(waiter) => {
                        // The readied service waits with the request; a fresh clone stays here.
                        let clone = self.inner.clone();
                        let service = std::mem::replace(&mut self.inner, clone);
                        let deadline = self
                            .shared
                            .max_wait
                            .and_then(|d| Instant::now().checked_add(d));
                        ResponseFuture::waiting(waiter, deadline, service, req, id)
                    }
                    Acquired::Full => ResponseFuture::failed(full(pool.key().cloned()), id),
                }
            }
        }
    }
}
