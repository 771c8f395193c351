//! The shared vocabulary of tower-armor: what every layer knows about MCP.
//!
//! - [`McpRequest`]: the facts of one request (revision, method, id, tool, session, `_meta` trace
//!   context, long-lived stream or call), read once by [`McpInspectLayer`](inspect::McpInspectLayer)
//!   from a bounded read of the body, and put in the request's extensions.
//! - [`Method`]: method semantics for both revisions (retry safety, long-lived streams, names).
//! - [`CallRequest`] / [`CallResponse`]: the traits call-plane layers are generic over,
//!   implemented for `http` requests/responses and for typed [`ToolCall`]s.
//! - [`observe`]: the one body wrapper per call that learns the outcome of streamed answers, and
//!   the [`CompletionHandle`] through which layers hear about it.
//! - [`classify`]: the classification table (breaker and retry verdicts per outcome).
//! - [`error`]: the local errors with their status, JSON-RPC code and `Retry-After`.
//! - [`Principal`], [`CorrelationId`], [`Secret`], [`TokenSource`]: identity types.
//! - [`KnownTools`]: the bounded set of tool names the server has, keying per-tool tables, and
//!   [`LearnToolsLayer`] that learns it from the server's `tools/list` answers (it goes right
//!   inside the tool allow-list, to see the whole catalogue).
//!
//! # Example
//!
//! Inspect requests in front of a service and read the facts further in:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_mcp::{McpBody, McpRequest, Method, inspect::McpInspectLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(McpInspectLayer::new())
//!     .service_fn(|req: Request<McpBody>| async move {
//!         let facts = req.extensions().get::<McpRequest>().unwrap();
//!         assert_eq!(facts.method(), Some(&Method::ToolsCall));
//!         assert_eq!(facts.tool(), Some("add"));
//!         Ok::<_, Infallible>(Response::new(String::from("ok")))
//!     });
//!
//! let req = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#.to_string())
//!     .unwrap();
//! let resp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 200);
//!
//! // Malformed JSON is answered by the layer: 400 with a JSON-RPC -32700 error.
//! let req = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body("{oops".to_string())
//!     .unwrap();
//! let resp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 400);
//! # }
//! ```
//!
//! # Ordering
//!
//! The inspector sits after authentication (an unauthenticated client must not make the server
//! read 4 MiB) and before every layer that needs the facts: the tool allow-list, rate limits per
//! tool, and the call-plane layers (breaker, retry, bulkhead, timeout). See DESIGN §4:
//!
//! ```text
//! correlation-id → sse → bearer-auth → McpInspectLayer → (adopt _meta trace) → allow-list
//!     → (learn tools) → rate-limit → rescue → circuit-breaker → retry → bulkhead → timeout
//!     → MCP service
//! ```
//!
//! # Errors
//!
//! The inspector answers bad input itself (see [`inspect`]) and keeps the inner service's error
//! type. Call-plane layers fail with [`BoxError`] wrapping one of the structs in [`error`].

pub mod body;
mod call;
pub mod classify;
pub mod env;
pub mod error;
mod identity;
pub mod inspect;
pub mod jsonrpc;
mod method;
pub mod observe;
mod request;
pub mod rescue;
pub mod signal;
pub mod span;
pub mod sse;
pub mod tools;

pub use self::body::{McpBody, ResponseBody};
pub use self::call::{CallRequest, CallResponse, HalfOpenProbe, ToolCall, ToolReply};
pub use self::classify::{Classifier, Outcome, TableCode};
pub use self::error::{
    BoxError, BulkheadFull, CircuitOpen, Elapsed, LocalError, RateLimited, ShuttingDown,
};
pub use self::identity::{
    CorrelationId, HeaderNames, InvalidCorrelationId, Principal, Secret, SharedToken, TokenSource,
};
pub use self::jsonrpc::RequestId;
pub use self::method::{Method, NameField, RetrySafety};
pub use self::observe::{Completion, CompletionHandle, Continuation, ReleaseListener};
pub use self::request::{
    ListenId, META_REQUEST_ID, McpRequest, MessageKind, MetaTrace, ProtocolRevision, StreamRole,
    detached,
};
pub use self::rescue::{
    GrpcStatus, Rescue, RescueLayer, grpc_content_type, grpc_error_response, grpc_status,
    grpc_status_headers,
};
#[cfg(feature = "tonic")]
pub use self::rescue::{RescueGrpc, RescueGrpcLayer, tonic_status};
pub use self::tools::{KnownTools, LearnTools, LearnToolsBody, LearnToolsFuture, LearnToolsLayer};
