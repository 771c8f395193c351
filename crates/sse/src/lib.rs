//! SSE-safe pass-through for MCP services: stream headers, keep-alive comments at event
//! boundaries, an idle timeout for long-lived streams, and graceful shutdown of open streams.
//!
//! For every `text/event-stream` answer, [`SseLayer`]:
//! - sets `Cache-Control: no-cache` (unless it already says `no-cache` / `no-store`) and
//!   `X-Accel-Buffering: no` (nginx and compatible proxies stop buffering), and removes
//!   `Content-Length`;
//! - forwards every frame as it arrives: no coalescing, no buffering (one exception: the first
//!   event of a GET resuming a call's stream is held until complete, at most 64 KiB, and dropped
//!   if it carries the id the client named in `Last-Event-ID`: the client has it, and rmcp 3.11
//!   replays it by an off-by-one; a server that does not never sends it again, so nothing else
//!   is ever dropped);
//! - never strips a `Content-Encoding` (that corrupts the stream): a compressed SSE answer is
//!   logged as an error instead (exclude SSE from compression: see [`compression`]) and passed
//!   through without keep-alives or idle timeout (its bytes are not events), but still ended by
//!   the shutdown handle, cut where it is;
//! - **keep-alive**: when no frame has been sent for N seconds (default 15,
//!   `MCP_SSE_KEEPALIVE_SECONDS`, `0` = off), sends the SSE comment `:\n\n`, only at an event
//!   boundary, never inside a partly sent event (tracked with
//!   [`SseParser::at_boundary`](tower_armor_mcp::sse::SseParser::at_boundary)). The timer is one
//!   `tokio::time::Sleep` per stream, reset in place: no allocation per frame;
//! - **idle timeout** (`MCP_SSE_IDLE_TIMEOUT_SECONDS`, default off): ends a *long-lived* stream
//!   (2025-11-25 GET listen stream, 2026-07-28 `subscriptions/listen`) that carried no data event
//!   for M seconds (comments, ours or the server's, do not count), at an event boundary, including
//!   a GET that reconnects the listen stream (any `Last-Event-ID` but rmcp's call-stream form
//!   `<index>/<request>`, see [`resumes_call`](tower_armor_mcp::inspect::resumes_call)). Never applied to call streams: under 2026-07-28 closing one
//!   cancels the call. M must be longer than the keep-alive interval; see
//!   [`idle_timeout_applies`];
//! - **shutdown**: [`SseShutdown`] ends every open stream at its next event boundary, so that a
//!   server's graceful shutdown does not wait forever on open streams; or, to drain, only the
//!   long-lived ones ([`SseShutdown::end_long_lived`]), letting calls in flight finish first;
//! - **graceful close**: a 2026-07-28 `subscriptions/listen` stream that the layer ends at an
//!   event boundary (idle timeout, shutdown) gets the subscription's final result first
//!   ([`ListenId::graceful_close_event`](tower_armor_mcp::ListenId::graceful_close_event)), as a
//!   server ending it does, so a client reads a graceful end (the Python SDK raises
//!   `SubscriptionLost` otherwise). The request's id comes from the [`ListenId`](tower_armor_mcp::ListenId)
//!   the inspector puts on the answer: without the inspector inside this layer, such a stream
//!   just ends. A stream cut inside an event (the shutdown grace ran out) gets nothing more.
//!
//! Other answers pass through untouched.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_sse::SseLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = SseLayer::builder()
//!     .keep_alive(Duration::from_secs(15))
//!     .idle_timeout(Duration::from_secs(300))
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_req: Request<()>| async {
//!         let body = Full::new(Bytes::from_static(b"data: {}\n\n"));
//!         Ok::<_, Infallible>(
//!             Response::builder()
//!                 .header("content-type", "text/event-stream")
//!                 .header("content-length", "10")
//!                 .body(body)
//!                 .unwrap(),
//!         )
//!     });
//!
//! let resp = svc.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(resp.headers()["x-accel-buffering"], "no");
//! assert_eq!(resp.headers()["cache-control"], "no-cache");
//! assert!(resp.headers().get("content-length").is_none());
//! let bytes = resp.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(bytes, "data: {}\n\n");
//! # }
//! ```
//!
//! # Ordering
//!
//! Right inside correlation-id and outside everything that may buffer or answer (DESIGN §4):
//!
//! ```text
//! correlation-id → SseLayer → bearer-auth → McpInspectLayer → allow-list → rate-limit → rescue
//!     → circuit-breaker → retry → bulkhead → timeout → MCP service
//! ```
//!
//! Outside the inspector, the layer tells long-lived streams from calls by their headers (a GET,
//! unless its `Last-Event-ID` resumes a call; a POST with `Mcp-Method: subscriptions/listen`, which the inspector
//! checks against the body); if the inspector runs outside it, its
//! [`McpRequest`](tower_armor_mcp::McpRequest) is used. A compression layer, if any, goes outside
//! this one with SSE excluded (see [`compression`]). This layer is one of the three that write
//! into a stream (DESIGN §5): keep-alive comments at event boundaries and, when it ends a
//! 2026-07-28 `subscriptions/listen` stream itself, the subscription's final result.
//!
//! The response body type becomes [`SseBody<B>`](SseBody) (`B: Body<Data = Bytes>`); the
//! inner error type is kept.
//!
//! # One listen stream per session
//!
//! A 2025-11-25 session has one standalone `GET` stream at a time: a second one (a `GET` with
//! the session's `Mcp-Session-Id` and no `Last-Event-ID` of a call, while the first is open) is
//! answered `409 Conflict` with a JSON-RPC error (`-31409`), as the official TypeScript and
//! Python servers answer it, without going on to the server. rmcp keeps such a second stream
//! as an idle "shadow" that never carries a message and never ends: the TypeScript SDK opens
//! one after every call stream that ends with an error, so without this each of them held a
//! connection and one of the principal's long-lived stream slots for good. Only one such
//! request of a session is in flight at a time: the place is taken when the request comes, a
//! standalone `GET` of the same session coming meanwhile waits for its answer (microseconds:
//! rmcp answers a `GET` at once, authentication refuses at once), and the place is given back
//! when the answer is not a stream, or kept until the stream ends.
//!
//! This layer runs before authentication, so a 409 must not tell a stranger anything: only a
//! `GET` with the same `Authorization` value as the open stream's (compared by a keyed digest,
//! the token itself never kept) is refused at once. One with another credential, or none, goes
//! on and gets what authentication answers (401; another principal presenting the session gets
//! bearer-auth's unknown-session 404, exactly as for an unknown session); if the server lets it
//! in with a stream anyway (a principal with two tokens, a stack authenticating otherwise), that
//! is the session's second stream and is refused then. A stream
//! whose client vanished without closing its connection holds the place until the server
//! notices (the example server bounds that with `TCP_USER_TIMEOUT`).
//!
//! # Errors
//!
//! The layer never fails; the inner service's error and body errors pass through unchanged.
//! It answers by itself only the `409` above. Configuration is checked once:
//! [`SseLayerBuilder::build`] and [`SseLayer::from_env`] return a [`ConfigError`] (naming the
//! variable) for a non-numeric variable, a duration over 30 days, or an idle timeout not longer
//! than the keep-alive interval. A zero interval is off, in the builder as in the environment.
//!
//! # Timers
//!
//! Keep-alive, idle and shutdown-grace timers run on tokio's timer: the runtime serving the
//! answer must have time enabled (axum's does), and paused time controls them in tests.
//!
//! # CORS for browser clients
//!
//! A browser MCP client can only read the headers a CORS response exposes. Expose at least
//! `Mcp-Session-Id` (2025-11-25 sessions), `WWW-Authenticate` (the 401 challenge and its
//! `resource_metadata`), `Retry-After` (429/503) and `x-request-id` (the correlation id), and
//! allow the request headers MCP uses. With tower-http's `CorsLayer` (outermost, before
//! correlation-id, so preflights are answered before anything else):
//!
//! ```
//! use http::{HeaderName, Method, header};
//! use tower_http::cors::{AllowOrigin, CorsLayer};
//!
//! let cors = CorsLayer::new()
//!     .allow_origin(AllowOrigin::list(["https://app.example.com".parse().unwrap()]))
//!     .allow_methods([Method::GET, Method::POST, Method::DELETE])
//!     .allow_headers([
//!         header::AUTHORIZATION,
//!         header::CONTENT_TYPE,
//!         header::ACCEPT,
//!         HeaderName::from_static("mcp-protocol-version"),
//!         HeaderName::from_static("mcp-session-id"),
//!         HeaderName::from_static("mcp-method"),
//!         HeaderName::from_static("mcp-name"),
//!         HeaderName::from_static("last-event-id"),
//!         HeaderName::from_static("x-request-id"),
//!         HeaderName::from_static("traceparent"),
//!         HeaderName::from_static("tracestate"),
//!     ])
//!     .expose_headers([
//!         HeaderName::from_static("mcp-session-id"),
//!         header::WWW_AUTHENTICATE,
//!         header::RETRY_AFTER,
//!         HeaderName::from_static("x-request-id"),
//!         HeaderName::from_static("ratelimit"),
//!         HeaderName::from_static("ratelimit-policy"),
//!     ]);
//! ```
//!
//! 2026-07-28 clients may also send `Mcp-Param-<name>` headers mirroring a request's parameters;
//! a fixed list cannot name them all, so either add the ones your tools use or let the preflight
//! decide with `AllowHeaders::mirror_request()`.
//!
//! List origins explicitly (a wildcard origin cannot be combined with credentials, and an MCP
//! endpoint reachable from any page invites DNS-rebinding attacks; rmcp also checks `Host`).
//! The bearer-auth layer must let `OPTIONS` preflights through (its default exemption).

mod body;
pub mod compression;
pub mod error;
pub mod future;
mod layer;
mod policy;
mod service;
mod shutdown;

pub use self::body::{KEEP_ALIVE_COMMENT, SseBody};
pub use self::error::ConfigError;
pub use self::layer::{ENV_IDLE_TIMEOUT, ENV_KEEPALIVE, SseLayer, SseLayerBuilder};
pub use self::policy::{
    X_ACCEL_BUFFERING, idle_timeout_applies, is_event_stream, is_long_lived, prepare_sse_headers,
};
pub use self::service::Sse;
pub use self::shutdown::SseShutdown;
