use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower_service::Service;

use crate::body::SseBody;
use crate::future::{Call, Place, ResponseFuture, correlation_of};
use crate::layer::{Credential, ListenPlace, Shared, Taken};
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
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<SseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let call = Call {
            shared: Arc::clone(&self.shared),
            long_lived: policy::idle_timeout_applies(&req),
            resumed_from: policy::resumed_call_event(&req),
        };
        // One standalone stream per session: only one such request of a session reaches the
        // server at a time (rmcp keeps a second stream as an idle "shadow" that never carries a
        // message), and a later one waits for its answer. This layer runs before
        // authentication, so a refusal here must tell nobody else anything: only a request
        // with the open stream's own credential is refused at once; one with another
        // credential (or none) goes on to authentication, and is refused only if the server
        // lets it in with a stream.
        let place = match policy::standalone_listen_session(&req) {
            Some(session) => {
                let credential =
                    Credential::of(&self.shared, req.headers().get(header::AUTHORIZATION));
                match ListenPlace::take(&self.shared, &session, credential, None) {
                    Taken::Place(place) => Place::Held(place),
                    Taken::OpenBySame => {
                        return ResponseFuture::conflict(correlation_of(&req));
                    }
                    Taken::OpenByOther => Place::WentOn(correlation_of(&req)),
                    Taken::Busy => {
                        // The readied service goes into the future; a fresh clone stays.
                        let clone = self.inner.clone();
                        let inner = std::mem::replace(&mut self.inner, clone);
                        return ResponseFuture::waiting(req, inner, session, credential, call);
                    }
                }
            }
            None => Place::None,
        };
        ResponseFuture::new(self.inner.call(req), call, place)
    }
}
