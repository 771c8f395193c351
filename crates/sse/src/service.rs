use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower_service::Service;

use crate::body::SseBody;
use crate::future::{Place, ResponseFuture};
use crate::layer::{Credential, Held, ListenPlace, Shared};
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
        // such request of a session (per client) reaches the server at a time (rmcp would keep
        // a second as an idle "shadow" stream that never ends). Only a request with the
        // holder's own credential is refused here: this layer runs before authentication, so
        // a request with another credential (or none) learns nothing from it; it goes on, and
        // authentication answers it, or, if its answer is a stream, it asks for the place then.
        let place = match policy::standalone_listen_session(&req) {
            Some(session) => {
                let credential =
                    Credential::of(&self.shared, req.headers().get(header::AUTHORIZATION));
                match ListenPlace::take(&self.shared, session.clone(), credential) {
                    Ok(place) => Place::Held(place),
                    Err(Held::BySameCredential) => {
                        tracing::debug!(
                            "a second standalone SSE stream for one session refused (409)"
                        );
                        return ResponseFuture::conflict();
                    }
                    Err(Held::ByOther) => Place::Wanted(session, credential),
                }
            }
            None => Place::None,
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
