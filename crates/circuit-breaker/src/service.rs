//! [`CircuitBreaker`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_armor_mcp::error::CircuitOpen;
use tower_armor_mcp::{BoxError, CallRequest, CallResponse, HalfOpenProbe};
use tower_service::Service;

use crate::core::{Admission, Clock};
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

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: R) -> Self::Future {
        // Notifications, client responses, DELETE and long-lived streams are not calls: never
        // counted, never rejected.
        let counted = !req.is_long_lived() && req.mcp().is_none_or(|m| m.is_call());
        let id = req.id().cloned();
        let has_session = req.has_session();
        if !counted {
            return ResponseFuture::called(self.inner.call(req), None, id, has_session);
        }
        let core = self.shared.resolve(&req);
        match core.admit(&mut Clock::new()) {
            Admission::Reject(retry_after) => {
                ResponseFuture::rejected(CircuitOpen::new(core.key.clone(), retry_after))
            }
            Admission::Pass => ResponseFuture::called(self.inner.call(req), None, id, has_session),
            Admission::Permit(permit) => {
                if permit.is_probe() {
                    req.extensions_mut().insert(HalfOpenProbe);
                }
                ResponseFuture::called(self.inner.call(req), Some(permit), id, has_session)
            }
        }
    }
}
