//! A span for tool handlers.
//!
//! rmcp runs tool handlers on their own tasks, outside the HTTP request's span, so their log lines
//! would carry no correlation id. rmcp hands the handler the request's [`Parts`] (take
//! `Extension<http::request::Parts>`); [`span_from_parts`] builds a span from what the layers put
//! there, for the handler to run in:
//!
//! ```
//! use tracing::Instrument;
//! use tower_armor_correlation_id::span_from_parts;
//!
//! async fn my_tool(parts: http::request::Parts) -> String {
//!     async {
//!         tracing::info!("working"); // carries request_id, trace_id, principal, tool...
//!         "done".to_owned()
//!     }
//!     .instrument(span_from_parts(&parts))
//!     .await
//! }
//! # let _ = my_tool;
//! ```

use http::Extensions;
use http::request::Parts;
use tower_armor_mcp::{CorrelationId, McpRequest, Principal};
use tracing::Span;
use tracing::field::{Empty, display};

use crate::trace::TraceContext;

/// An INFO span named `mcp.handler` with the request's correlation id, trace id, principal,
/// method, tool and session, from `parts.extensions` (fields whose layer did not run stay
/// empty).
pub fn span_from_parts(parts: &Parts) -> Span {
    span_from_extensions(&parts.extensions)
}

/// [`span_from_parts`] from the extensions alone.
pub fn span_from_extensions(extensions: &Extensions) -> Span {
    let span = tracing::info_span!(
        "mcp.handler",
        request_id = Empty,
        trace_id = Empty,
        principal = Empty,
        mcp.method = Empty,
        mcp.tool = Empty,
        mcp.session = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(id) = extensions.get::<CorrelationId>() {
        span.record("request_id", display(id));
    }
    if let Some(ctx) = extensions.get::<TraceContext>() {
        span.record("trace_id", display(ctx.trace_id()));
    }
    if let Some(p) = extensions.get::<Principal>() {
        span.record(tower_armor_mcp::span::PRINCIPAL, p.name());
    }
    if let Some(facts) = extensions.get::<McpRequest>() {
        let _entered = span.enter();
        tower_armor_mcp::span::record_request(facts);
    }
    span
}
