//! The response future of [`Sse`](crate::Sse).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
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
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        shared: Arc<Shared>,
        long_lived: bool,
        resumed_from: Option<Bytes>,
    ) -> Self {
        ResponseFuture {
            inner,
            shared: Some(shared),
            long_lived,
            resumed_from,
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
            ),
        )))
    }
}
