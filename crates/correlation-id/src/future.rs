//! The response future of [`CorrelationIdService`](crate::CorrelationIdService).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;
use tracing::Span;

use tower_armor_mcp::CorrelationId;

use crate::body::TracedBody;

pin_project! {
    /// Polls the inner future inside the request span, then echoes the correlation id on the
    /// answer and hands the span to its body.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        header: HeaderName,
        echo: HeaderValue,
        // The id was generated: one the request carried in `_meta`, adopted further in, is
        // echoed instead (it comes back as a `CorrelationId` in the answer's extensions).
        adoptable: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        span: Span,
        header: HeaderName,
        echo: HeaderValue,
        adoptable: bool,
    ) -> Self {
        ResponseFuture {
            inner,
            span,
            header,
            echo,
            adoptable,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            ready!(this.inner.poll(cx))
        };
        let span = std::mem::replace(this.span, Span::none());
        Poll::Ready(result.map(|mut resp| {
            if *this.adoptable
                && let Some(adopted) = resp.extensions_mut().remove::<CorrelationId>()
            {
                *this.echo = adopted.into_header_value();
            }
            // Ours replaces whatever the inner service put there: only validated ids leave.
            resp.headers_mut().insert(
                this.header.clone(),
                std::mem::replace(this.echo, HeaderValue::from_static("")),
            );
            resp.map(|body| TracedBody::new(body, span))
        }))
    }
}
