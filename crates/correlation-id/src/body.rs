//! [`TracedBody`]: a response body polled inside the request span.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tracing::Span;

pin_project! {
    /// Forwards the inner body's frames untouched, entering the request span while it polls, so
    /// what layers and the server log while streaming (SSE events, outcomes) lands in the span.
    /// The span closes when the body is dropped: its duration is the whole answer's.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Span,
    }
}

impl<B> TracedBody<B> {
    /// Wraps `inner`, polled inside `span`.
    pub fn new(inner: B, span: Span) -> Self {
        TracedBody { inner, span }
    }

    /// The span the body is polled in.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// The inner body, by reference.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracedBody")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
