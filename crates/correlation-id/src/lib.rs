//! Correlation ids and W3C trace context for MCP services, bridged to JSON-RPC `_meta`.
//!
//! **Server** ([`CorrelationIdLayer`], outermost):
//! - takes the request's `x-request-id` (header name configurable) when it is a valid
//!   [`CorrelationId`] (1–128 characters of `[A-Za-z0-9._:-]`), otherwise generates one (UUID
//!   version 7). A refused id is logged as refused with its length and reason, never verbatim,
//!   and replaced in the request too, so nothing inward sees it;
//! - parses `traceparent` / `tracestate` ([`TraceContext`], W3C rules) and puts the
//!   [`CorrelationId`] and a [`TraceContext`] (the caller's, or a new trace) in the request's
//!   extensions. An invalid `traceparent` (and its `tracestate`) is removed from the request,
//!   so nothing inward (or upstream, through a gateway) sees it;
//! - opens an INFO span `mcp.request` with `request_id`, `trace_id`, `http.method` and the
//!   empty fields [`principal`, `mcp.method`, `mcp.tool`, `mcp.session`](tower_armor_mcp::span)
//!   that inner layers record once they know them. The span is entered while the inner service
//!   is called and while its future and the answer's body ([`TracedBody`]) are polled, so what
//!   they log — stream events included — lands in it;
//! - echoes the id on every answer, the 401, 413 and 429 of inner layers included.
//!
//! **`_meta` trace context**: with no valid `traceparent` header (none, or one that failed
//! validation and was replaced by a root context), `_meta.traceparent` (SEP-414) is
//! adopted once the inspector has read the body, by [`AdoptMetaTraceLayer`] placed right after
//! the inspector (or [`adopt_meta_trace`] called there). Likewise, with no valid id header, a
//! client's case id in `_meta["tower-armor/requestId"]` (what [`with_correlation_meta`]
//! writes, for clients that cannot set headers) becomes the request's id, echoed on the answer.
//! Without that layer nothing in `_meta` is adopted. See [`adopt`].
//!
//! **Tool handlers** run outside the request span under rmcp: enter [`span_from_parts`].
//!
//! **Client**: [`PropagateCorrelationLayer`] sends the id and a child `traceparent` on outgoing
//! requests; [`with_correlation_meta`] adds them to a JSON-RPC request's `params._meta`.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_correlation_id::{CorrelationIdLayer, TraceContext};
//! use tower_armor_mcp::CorrelationId;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(CorrelationIdLayer::new())
//!     .service_fn(|req: Request<String>| async move {
//!         let id = req.extensions().get::<CorrelationId>().unwrap();
//!         let trace = req.extensions().get::<TraceContext>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("{id} {}", trace.trace_id())))
//!     });
//!
//! // A valid id is taken and echoed; so is the caller's trace.
//! let req = Request::get("/mcp")
//!     .header("x-request-id", "case-42")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(String::new())
//!     .unwrap();
//! let resp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(resp.headers()["x-request-id"], "case-42");
//! assert_eq!(resp.body().get_ref(), "case-42 4bf92f3577b34da6a3ce929d0e0e4736");
//!
//! // An unsafe one is replaced by a generated id.
//! let req = Request::get("/mcp")
//!     .header("x-request-id", "evil\"id")
//!     .body(String::new())
//!     .unwrap();
//! let resp = svc.oneshot(req).await.unwrap();
//! let echoed = resp.headers()["x-request-id"].to_str().unwrap();
//! assert_eq!(echoed.len(), 36);
//! assert!(!echoed.contains("evil"));
//! # }
//! ```
//!
//! # Ordering
//!
//! Outermost, so that every answer — including those of bearer-auth (401), the inspector (413),
//! rate limits (429) and rescue — carries the id, and so that the span is open before anything
//! logs (DESIGN §4):
//!
//! ```text
//! CorrelationIdLayer → sse → bearer-auth → McpInspectLayer → AdoptMetaTraceLayer → allow-list
//!     → rate-limit → rescue → circuit-breaker → retry → bulkhead → timeout → MCP service
//! ```
//!
//! [`AdoptMetaTraceLayer`] goes right after the inspector (it reads its [`McpRequest`]).
//! Without it, the span's `trace_id` is recorded only when a `traceparent` header came.
//! On the client side, [`PropagateCorrelationLayer`] goes first (outermost), as DESIGN §4 says:
//! `correlation (inject) → circuit-breaker → retry → …`.
//!
//! The server layer changes the response body type to [`TracedBody<B>`](TracedBody) and keeps
//! the inner error type; the other layers change neither.
//!
//! # Errors
//!
//! None of these layers fails or answers by itself: bad ids and bad trace context are replaced,
//! never rejected. The inner service's error passes through unchanged (an error has no headers
//! to echo the id on; under axum the inner error type is `Infallible`). Configuration errors
//! ([`ConfigError`]) come only from [`CorrelationIdLayer::from_env`] and header names given as
//! text.
//!
//! [`McpRequest`]: tower_armor_mcp::McpRequest

pub mod adopt;
pub mod body;
mod client;
pub mod error;
pub mod future;
mod handler;
mod hex;
mod id;
mod layer;
mod random;
mod service;
pub mod trace;

pub use self::adopt::{
    AdoptFuture, AdoptMetaTrace, AdoptMetaTraceLayer, adopt_meta_request_id, adopt_meta_trace,
};
pub use self::body::TracedBody;
pub use self::client::{
    META_REQUEST_ID, META_TRACEPARENT, META_TRACESTATE, PropagateCorrelation,
    PropagateCorrelationLayer, with_correlation_meta,
};
pub use self::error::ConfigError;
pub use self::handler::{span_from_extensions, span_from_parts};
pub use self::id::{
    GENERATED_LEN, IncomingId, RejectReason, RejectedId, X_REQUEST_ID, generate, generate_into,
    incoming_id,
};
pub use self::layer::{CorrelationIdLayer, ENV_HEADER};
pub use self::service::CorrelationIdService;
pub use self::trace::{
    InvalidTraceparent, InvalidTracestate, SpanId, TraceContext, TraceFlags, TraceId, TraceOrigin,
    TraceState,
};
pub use tower_armor_mcp::CorrelationId;
