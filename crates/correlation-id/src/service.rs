use std::task::{Context, Poll};

use http::{HeaderName, Request, Response};
use tower_service::Service;
use tracing::field::{Empty, display};

use crate::future::ResponseFuture;
use crate::id::{self, IncomingId};
use crate::trace::TraceContext;

/// The server-side correlation service; see the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct CorrelationIdService<S> {
    inner: S,
    header: HeaderName,
}

impl<S> CorrelationIdService<S> {
    pub(crate) fn new(inner: S, header: HeaderName) -> Self {
        CorrelationIdService { inner, header }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for CorrelationIdService<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<crate::body::TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let (id, rejected) = match id::incoming_id(req.headers(), &self.header) {
            IncomingId::Accepted(id) => (id, None),
            IncomingId::Missing => {
                let id = id::generate();
                req.headers_mut()
                    .insert(&self.header, id.header_value().clone());
                (id, None)
            }
            IncomingId::Rejected(r) => {
                // `insert` replaces every value: the refused one never goes inward.
                let id = id::generate();
                req.headers_mut()
                    .insert(&self.header, id.header_value().clone());
                (id, Some(r))
            }
        };
        // Shares the id's buffer: no copy.
        let echo = id.header_value().clone();
        let generated = id.is_generated();
        let (trace, bad_trace) = match TraceContext::from_headers(req.headers()) {
            Ok(Some(ctx)) => (Some(ctx), None),
            Ok(None) => (None, None),
            Err(e) => {
                // Refused values never go inward (a gateway would pass them on upstream): the
                // request's context is the root made below, in its extensions.
                let headers = req.headers_mut();
                let len = headers
                    .get(&crate::trace::TRACEPARENT)
                    .map_or(0, |v| v.len());
                headers.remove(&crate::trace::TRACEPARENT);
                headers.remove(&crate::trace::TRACESTATE);
                (None, Some((len, e)))
            }
        };

        let span = tracing::info_span!(
            "mcp.request",
            request_id = %id,
            trace_id = Empty,
            http.method = %req.method(),
            principal = Empty,
            mcp.method = Empty,
            mcp.tool = Empty,
            mcp.session = Empty,
        );
        let trace = match trace {
            Some(ctx) => {
                span.record("trace_id", display(ctx.trace_id()));
                ctx
            }
            // Recorded by `adopt_meta_trace` once `_meta` is known (it may carry one).
            None => TraceContext::new_root(),
        };
        let future = {
            let _entered = span.enter();
            if let Some(r) = rejected {
                tracing::info!(
                    header = %self.header,
                    len = r.len,
                    reason = %r.reason,
                    "incoming correlation id rejected; generated a new one",
                );
            }
            if let Some((len, reason)) = bad_trace {
                tracing::debug!(len, %reason, "incoming traceparent rejected");
            }
            req.extensions_mut().insert(id);
            req.extensions_mut().insert(trace);
            // Entered: inner layers record their facts into this span from `call` too.
            self.inner.call(req)
        };
        ResponseFuture::new(future, span, self.header.clone(), echo, generated)
    }
}
