//! The response future of [`Sse`](crate::Sse).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_armor_mcp::ListenId;

use crate::body::SseBody;
use crate::layer::Shared;
use crate::policy;

pin_project! {
    /// Waits for the inner answer; an SSE answer gets its headers fixed and its body wrapped in
    /// the stream state machine, any other answer passes through.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        shared: Option<Arc<Shared>>,
        long_lived: bool,
        resumed_from: Option<Bytes>,
        listen_session: Option<HeaderValue>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        shared: Arc<Shared>,
        long_lived: bool,
        resumed_from: Option<Bytes>,
        listen_session: Option<HeaderValue>,
    ) -> Self {
        ResponseFuture {
            inner,
            shared: Some(shared),
            long_lived,
            resumed_from,
            listen_session,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("long_lived", &self.long_lived)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<SseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.inner.poll(cx))?;
        let shared = this
            .shared
            .take()
            .expect("ResponseFuture polled after completion");
        if !policy::is_event_stream(resp.headers()) {
            return Poll::Ready(Ok(resp.map(SseBody::passthrough)));
        }
        let (mut parts, body) = resp.into_parts();
        if policy::prepare_sse_headers(&mut parts.headers) {
            tracing::error!(
                content_encoding = ?parts.headers.get(http::header::CONTENT_ENCODING),
                "a text/event-stream answer is compressed: events are held back until the \
                 compressor flushes; exclude SSE from compression (see tower_armor_sse::compression). \
                 Passed through without keep-alives or idle timeout",
            );
            // Its bytes are not events: no boundary can be found in them, and a keep-alive
            // comment written into them would corrupt the compressed stream.
            return Poll::Ready(Ok(Response::from_parts(parts, SseBody::passthrough(body))));
        }
        // One standalone stream per session: decided on the server's answer, so only a request
        // every inner layer (authentication included) let through takes the session's place.
        let listen_session = match this.listen_session.take() {
            Some(session) => {
                let mut open = shared.listens.lock().unwrap_or_else(|p| p.into_inner());
                if !open.insert(session.clone()) {
                    drop(open);
                    tracing::debug!(
                        "a second standalone SSE stream for one session refused (409); the \
                         server's stream for it is dropped"
                    );
                    // Dropping the server's body ends the stream it opened.
                    drop(body);
                    return Poll::Ready(Ok(conflict()));
                }
                Some(session)
            }
            None => None,
        };
        // The inspector names a `subscriptions/listen` answer's request (for its graceful close).
        let listen = if *this.long_lived {
            parts.extensions.get::<ListenId>().cloned()
        } else {
            None
        };
        Poll::Ready(Ok(Response::from_parts(
            parts,
            SseBody::stream(
                body,
                shared,
                *this.long_lived,
                this.resumed_from.take(),
                listen,
                listen_session,
            ),
        )))
    }
}

/// The 409 for a second standalone stream of a session.
fn conflict<B>() -> Response<SseBody<B>> {
    let body = tower_armor_mcp::jsonrpc::error_body(
        None,
        tower_armor_mcp::error::CODE_STREAM_CONFLICT,
        "Conflict: only one standalone SSE stream is allowed per session",
        None,
    );
    let mut resp = Response::new(SseBody::local(body));
    *resp.status_mut() = StatusCode::CONFLICT;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
