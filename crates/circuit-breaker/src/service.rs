//! [`CircuitBreaker`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_armor_mcp::{BoxError, CallRequest, CallResponse, HalfOpenProbe, RequestId};
use tower_service::Service;

use crate::core::{Admission, Clock, Permit};
use crate::future::ResponseFuture;
use crate::layer::Shared;

/// Fails calls fast while their circuit is open; counts their outcomes while it is closed. See
/// the [crate docs](crate).
///
/// # Readiness
///
/// `poll_ready` only forwards the inner service's readiness: the breaker never makes a caller
/// wait. The decision is taken in `call`, once the request (and so its key) is known; a
/// rejected call never reaches the inner service. This fits axum, which clones the service and
/// calls it once per request. A rejected call leaves the inner service's readiness unused: a
/// reservation the inner service made in `poll_ready` serves the next call of this instance, or
/// is released when the instance is dropped.
pub struct CircuitBreaker<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> CircuitBreaker<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        CircuitBreaker { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The handle controlling this service's circuits (shared with the layer's).
    pub fn handle(&self) -> crate::CircuitBreakerHandle {
        crate::CircuitBreakerHandle::new(Arc::clone(&self.shared))
    }
}

impl<S: Clone> Clone for CircuitBreaker<S> {
    fn clone(&self) -> Self {
        CircuitBreaker {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CircuitBreaker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
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

/// Marks a half-open probe, so that a retry layer inside never retries it (out of line:
/// probes are rare).
#[inline(never)]
fn mark_probe<R: CallRequest>(mut req: R) -> R {
    req.extensions_mut().insert(HalfOpenProbe);
    req
}

impl<S, R> Service<R> for CircuitBreaker<S>
where
    R: CallRequest,
    S: Service<R>,
    S::Response: CallResponse,
    S::Error: Into<BoxError>,
{
    type Response = <S::Response as CallResponse>::Observed;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // No call out of line here returns the future or is handed a pointer into the request
    // (`mark_probe` takes the request itself, copied, on the rare probe): the compiler can then
    // build the future in place, and hand the request to the inner service without a copy.
    #[inline]
    fn call(&mut self, req: R) -> Self::Future {
        // Notifications, client responses, DELETE and long-lived streams are not calls: never
        // counted, never rejected. Nor is a GET resuming a call's stream: the call was admitted
        // when its POST came (a call finished only through resumption is never counted, as its
        // dropped first answer was not); the GET names no tool, so a keyed breaker could only
        // pool every client's resumptions under one key, which one client could open for all;
        // and refusing it loses the answer of a call that ran.
        let counted =
            !req.is_long_lived() && req.mcp().is_none_or(|m| m.is_call() && !m.is_resume());
        let id = req.id().map(clone_id);
        let has_session = req.has_session();
        let (permit, probe) = if counted {
            let core = self.shared.resolve(&req);
            // The hot path: a closed circuit without a slow-call policy. Its permit (an `Arc`
            // clone) is taken once the inner service has the request, so that nothing needing a
            // drop is held across that call.
            if let Some(generation) = core.admits_plain() {
                let future = self.inner.call(req);
                let permit = Permit::plain(core, generation);
                return ResponseFuture::called(future, Some(permit), id, has_session);
            }
            match core.admit(&mut Clock::new()) {
                Admission::Permit(p) => {
                    let probe = p.is_probe();
                    (Some(p), probe)
                }
                Admission::Pass => (None, false),
                Admission::Reject(retry_after) => {
                    return ResponseFuture::rejected(core, retry_after);
                }
            }
        } else {
            (None, false)
        };
        let future = if probe {
            self.inner.call(mark_probe(req))
        } else {
            self.inner.call(req)
        };
        ResponseFuture::called(future, permit, id, has_session)
    }
}
