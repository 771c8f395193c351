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
        // Entered before anything logs (reading the trace context may), and while the inner
        // layers record their facts into it from `call`.
        let future = {
            let _entered = span.enter();
            let trace = match TraceContext::read_headers(req.headers()) {
                Ok(Some((ctx, state_dropped))) => {
                    span.record("trace_id", display(ctx.trace_id()));
                    if state_dropped {
                        // A `tracestate` that did not parse was dropped from the context; it
                        // must not be passed on either (W3C Trace Context §3.3.1).
                        req.headers_mut().remove(&crate::trace::TRACESTATE);
                    } else if let Some(state) = ctx.state() {
                        pass_on_as_read(req.headers_mut(), state);
                    }
                    ctx
                }
                // Recorded by `adopt_meta_trace` once `_meta` is known (it may carry one). A
                // `tracestate` without a `traceparent` is left as it came (looking for it would
                // cost every request a lookup): the context has none, and the client layer
                // (`PropagateCorrelation`) replaces it with the context's on the way out.
                Ok(None) => TraceContext::new_root(),
                Err(reason) => {
                    // Refused values never go inward (a gateway would pass them on upstream):
                    // the request's context is a new root, in its extensions.
                    let headers = req.headers_mut();
                    let len = headers
                        .get(&crate::trace::TRACEPARENT)
                        .map_or(0, |v| v.len());
                    headers.remove(&crate::trace::TRACEPARENT);
                    headers.remove(&crate::trace::TRACESTATE);
                    tracing::debug!(len, %reason, "incoming traceparent rejected");
                    TraceContext::new_root()
                }
            };
            // After the trace context: the line carries its trace id.
            if let Some(r) = rejected {
                tracing::info!(
                    header = %self.header,
                    len = r.len,
                    reason = %r.reason,
                    "incoming correlation id rejected; generated a new one",
                );
            }
            req.extensions_mut().insert(id);
            req.extensions_mut().insert(trace);
            self.inner.call(req)
        };
        ResponseFuture::new(future, span, self.header.clone(), echo, generated)
    }
}

/// The `tracestate` that goes inward is the one the context holds: a list spread over several
/// lines, or over the length limit, was rebuilt (bounded); one line within it is the same value
/// already, and stays.
fn pass_on_as_read(headers: &mut http::HeaderMap, state: &crate::trace::TraceState) {
    let mut lines = headers.get_all(&crate::trace::TRACESTATE).iter();
    let same = lines.next() == Some(state.header_value()) && lines.next().is_none();
    if !same {
        headers.insert(&crate::trace::TRACESTATE, state.header_value().clone());
    }
}
