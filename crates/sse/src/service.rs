use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use crate::body::SseBody;
use crate::future::ResponseFuture;
use crate::layer::{ListenPlace, Shared};
use crate::policy;

/// The SSE pass-through service; see the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct Sse<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Sse<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Sse { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for Sse<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<SseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let idle_applies = policy::idle_timeout_applies(&req);
        let resumed_from = policy::resumed_call_event(&req);
        // One standalone stream per session, decided before the request goes on: only one
        // such request of a session ever reaches the server at a time (rmcp would keep a
        // second as an idle "shadow" stream that never ends).
        let place = match policy::standalone_listen_session(&req) {
            Some(session) => match ListenPlace::take(&self.shared, session) {
                Some(place) => Some(place),
                None => {
                    tracing::debug!("a second standalone SSE stream for one session refused (409)");
                    return ResponseFuture::conflict();
                }
            },
            None => None,
        };
        ResponseFuture::new(
            self.inner.call(req),
            Arc::clone(&self.shared),
            idle_applies,
            resumed_from,
            place,
        )
    }
}
