//! Adopting `_meta.traceparent` (SEP-414) once the inspector has read the body.
//!
//! The correlation layer is outermost and never reads the body, so it cannot see `_meta`. It
//! puts a [`TraceContext`] in the extensions (from the `traceparent` header, or a new trace) and
//! leaves the span's `trace_id` empty unless the header came. Further in, after
//! [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer), [`AdoptMetaTraceLayer`] (or a
//! direct call of [`adopt_meta_trace`]) decides: a valid `_meta.traceparent` replaces the new
//! trace, otherwise the new trace stays; either way the span's `trace_id` is recorded then, once.
//! The correlation layer keeps its span entered while the inner services are called and polled,
//! so "the current span" there is the request span.

use std::task::{Context, Poll};

use http::{Extensions, Request};
use tower_armor_mcp::McpRequest;
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

/// Calls [`adopt_meta_trace`] on each request, then the inner service. Keeps the inner service's
/// response, error and future.
#[derive(Clone, Debug)]
pub struct AdoptMetaTrace<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for AdoptMetaTrace<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        adopt_meta_trace(req.extensions_mut());
        self.inner.call(req)
    }
}
