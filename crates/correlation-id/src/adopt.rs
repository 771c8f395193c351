//! Adopting `_meta.traceparent` (SEP-414) and the client's case id
//! (`_meta["tower-armor/requestId"]`) once the inspector has read the body.
//!
//! The correlation layer is outermost and never reads the body, so it cannot see `_meta`. It
//! puts a [`TraceContext`] in the extensions (from the `traceparent` header, or a new trace) and
//! leaves the span's `trace_id` empty unless the header came. Further in, after
//! [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer), [`AdoptMetaTraceLayer`] (or a
//! direct call of [`adopt_meta_trace`]) decides: a valid `_meta.traceparent` replaces the new
//! trace, otherwise the new trace stays; either way the span's `trace_id` is recorded then, once.
//! The correlation layer keeps its span entered while the inner services are called and polled,
//! so "the current span" there is the request span.
//!
//! The same goes for the correlation id of a client that can only write `_meta`
//! ([`with_correlation_meta`](crate::with_correlation_meta)): when no valid `x-request-id` came
//! (the correlation layer generated one), a valid `_meta["tower-armor/requestId"]` replaces the
//! [`CorrelationId`] in the extensions (error bodies, tool handlers' spans and outgoing calls
//! use it), is recorded as the span's `request_id` (a subscriber that appends recorded fields,
//! like `fmt`, shows both ids on the lines after that), and is the id the answer echoes. A
//! valid header always wins; an invalid `_meta` id is logged by length and reason only.

use std::task::{Context, Poll};

use std::future::Future;
use std::pin::Pin;

use http::{Extensions, HeaderMap, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_armor_mcp::{CorrelationId, McpRequest};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::display;

use crate::trace::{TraceContext, TraceOrigin, TraceState};

/// Adopts `_meta.traceparent` / `_meta.tracestate` from the request's [`McpRequest`] when no
/// `traceparent` header came, and records the trace id in the current span.
///
/// - A `traceparent` header was valid: nothing changes (the header wins).
/// - Otherwise, a valid `_meta.traceparent` replaces the [`TraceContext`] in `extensions`
///   (origin [`TraceOrigin::Meta`], with `_meta.tracestate` when valid).
/// - Otherwise the context the correlation layer started stays (one is started here when the
///   correlation layer is absent).
///
/// Returns the origin of the context now in the extensions. Call it once per request.
pub fn adopt_meta_trace(extensions: &mut Extensions) -> TraceOrigin {
    if let Some(ctx) = extensions.get::<TraceContext>()
        && matches!(ctx.origin(), TraceOrigin::Header | TraceOrigin::Meta)
    {
        return ctx.origin();
    }
    let adopted = extensions.get::<McpRequest>().and_then(from_meta);
    let ctx = match adopted {
        Some(ctx) => {
            extensions.insert(ctx.clone());
            ctx
        }
        None => match extensions.get::<TraceContext>() {
            Some(ctx) => ctx.clone(),
            None => {
                let ctx = TraceContext::new_root();
                extensions.insert(ctx.clone());
                ctx
            }
        },
    };
    tracing::Span::current().record("trace_id", display(ctx.trace_id()));
    ctx.origin()
}

/// Adopts `_meta["tower-armor/requestId"]` from the request's [`McpRequest`] as its
/// [`CorrelationId`] when the one in `extensions` was generated (no valid id came in a header),
/// and records it as the current span's `request_id`. Returns the adopted id (echo it on the
/// answer: [`AdoptMetaTrace`] hands it back to the correlation layer for that).
pub fn adopt_meta_request_id(extensions: &mut Extensions) -> Option<CorrelationId> {
    if !extensions.get::<CorrelationId>()?.is_generated() {
        return None;
    }
    let raw = extensions
        .get::<McpRequest>()?
        .meta_trace()
        .request_id
        .as_deref()?;
    match CorrelationId::parse(raw) {
        Ok(id) => {
            tracing::Span::current().record("request_id", display(&id));
            extensions.insert(id.clone());
            Some(id)
        }
        Err(reason) => {
            tracing::debug!(len = raw.len(), %reason, "_meta correlation id rejected");
            None
        }
    }
}

fn from_meta(facts: &McpRequest) -> Option<TraceContext> {
    let meta = facts.meta_trace();
    let tp = meta.traceparent.as_deref()?;
    match TraceContext::parse(tp.as_bytes()) {
        Ok(ctx) => {
            let state = meta
                .tracestate
                .as_deref()
                .and_then(|s| TraceState::parse(s.as_bytes()).ok());
            Some(ctx.with_origin(TraceOrigin::Meta).with_state(state))
        }
        Err(reason) => {
            tracing::debug!(len = tp.len(), %reason, "_meta.traceparent rejected");
            None
        }
    }
}

/// Applies [`AdoptMetaTrace`]: place it right after the inspector. See the
/// [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct AdoptMetaTraceLayer;

impl AdoptMetaTraceLayer {
    /// The layer.
    pub fn new() -> Self {
        AdoptMetaTraceLayer
    }
}

impl<S> Layer<S> for AdoptMetaTraceLayer {
    type Service = AdoptMetaTrace<S>;

    fn layer(&self, inner: S) -> AdoptMetaTrace<S> {
        AdoptMetaTrace { inner }
    }
}

/// Calls [`adopt_meta_trace`] and [`adopt_meta_request_id`] on each request, then the inner
/// service. An adopted correlation id replaces the generated one in the request's correlation
/// header too (what the server's code and a gateway propagating it onward read), and goes back
/// in the answer's extensions, for the correlation layer to echo.
#[derive(Clone, Debug)]
pub struct AdoptMetaTrace<S> {
    inner: S,
}

impl<S, B, ResBody> Service<Request<B>> for AdoptMetaTrace<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AdoptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        adopt_meta_trace(req.extensions_mut());
        let generated = req
            .extensions()
            .get::<CorrelationId>()
            .filter(|id| id.is_generated())
            .map(|id| id.header_value().clone());
        let adopted = adopt_meta_request_id(req.extensions_mut());
        if let (Some(id), Some(generated)) = (&adopted, generated) {
            rewrite_generated_header(req.headers_mut(), &generated, id);
        }
        AdoptFuture {
            inner: self.inner.call(req),
            adopted,
        }
    }
}

/// The header the correlation layer wrote the generated id into (whatever its configured
/// name: the only value equal to that fresh UUID) now carries the adopted id, so the server's
/// code and a gateway propagating the header onward see the id the answer echoes.
#[cold]
fn rewrite_generated_header(headers: &mut HeaderMap, generated: &HeaderValue, id: &CorrelationId) {
    for value in headers.values_mut() {
        if value == generated {
            *value = id.header_value().clone();
        }
    }
}

pin_project! {
    /// The future of [`AdoptMetaTrace`]: the inner answer, with an adopted correlation id in
    /// its extensions.
    #[derive(Debug)]
    pub struct AdoptFuture<F> {
        #[pin]
        inner: F,
        adopted: Option<CorrelationId>,
    }
}

impl<F, ResBody, E> Future for AdoptFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(id)) = (&mut result, this.adopted.take()) {
            resp.extensions_mut().insert(id);
        }
        Poll::Ready(result)
    }
}
