//! A bulkhead for MCP: bounded concurrent calls with a bounded line of waiters, permits held
//! until the call's answer ends (SSE answers included), one pool per key, and a per-principal
//! bound on long-lived streams.
//!
//! # Example
//!
//! One pool per tool, one permit each, nobody waits: a second `slow` call is refused at once
//! while the first runs, and `add` is not affected.
//!
//! ```
//! use std::time::Duration;
//! use serde_json::{Map, json};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//! use tower_armor_bulkhead::BulkheadLayer;
//! use tower_armor_mcp::{BoxError, KnownTools, ToolCall, ToolReply, error::BulkheadFull};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = BulkheadLayer::new(1)
//!     .max_queue(0)
//!     .max_wait(Duration::from_secs(2))
//!     .by_tool(KnownTools::from_names(["add", "slow"]));
//! let stats = layer.stats();
//! let mut svc = layer.layer(service_fn(|call: ToolCall| async move {
//!     if call.tool() == "slow" {
//!         tokio::time::sleep(Duration::from_millis(20)).await;
//!     }
//!     Ok::<_, BoxError>(ToolReply::Result { is_error: false, result: json!({}) })
//! }));
//!
//! // The permit is taken when the call is made (or, when it must wait, in its future).
//! let first = svc.ready().await?.call(ToolCall::new("slow", Map::new()));
//! let second = svc.ready().await?.call(ToolCall::new("slow", Map::new()));
//! let err = second.await.unwrap_err();
//! assert!(err.downcast_ref::<BulkheadFull>().is_some());
//!
//! svc.ready().await?.call(ToolCall::new("add", Map::new())).await?;
//! assert_eq!(stats.key("slow").unwrap().running, 1);
//!
//! first.await?;
//! assert_eq!((stats.running(), stats.queued(), stats.rejected()), (0, 0, 1));
//! # Ok(())
//! # }
//! ```
//!
//! In axum, under [`RescueLayer`](tower_armor_mcp::RescueLayer) (which turns the refusal into
//! `503` with JSON-RPC code `-31509`), after the inspector that supplies the request facts:
//!
//! ```no_run
//! # use std::convert::Infallible;
//! # use http::{Request, Response};
//! # async fn handler(_: Request<tower_armor_mcp::McpBody>) -> Result<Response<String>, Infallible> { Ok(Response::new(String::new())) }
//! use tower::ServiceBuilder;
//! use tower_armor_bulkhead::BulkheadLayer;
//! use tower_armor_mcp::{KnownTools, RescueLayer, inspect::McpInspectLayer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tools = KnownTools::from_names(["add", "slow", "progress"]);
//! let mcp = ServiceBuilder::new()
//!     .layer(McpInspectLayer::new())
//!     .layer(RescueLayer::new())
//!     .layer(BulkheadLayer::from_env()?.by_tool(tools))
//!     .service_fn(handler);
//! let app: axum::Router = axum::Router::new().route_service("/mcp", mcp);
//! # Ok(())
//! # }
//! ```
//!
//! # What takes a permit, and for how long
//!
//! - **Calls** (JSON-RPC requests, and requests without [`McpRequest`] facts, taken as one opaque
//!   call) take a permit from their pool and hold it **until the call's final answer**: for a
//!   typed reply or an answer already complete (JSON read, error status) when the response future
//!   resolves; for a streamed (SSE) answer until its final JSON-RPC response passes, or the body
//!   ends, fails or is dropped. The bulkhead learns this through
//!   [`CallResponse::observe`] and the answer's [`CompletionHandle`]: it observes once, and
//!   reuses a handle an inner layer already put in the answer. Under 2025-11-25 rmcp sends SSE
//!   headers at once and the result later; the permit is still held until the result.
//! - **A 2025-11-25 resumption** (GET + a call's `Last-Event-ID`, [`StreamRole::Resume`]) is
//!   the same call, continued. Closing a 2025-11-25 stream does not cancel the tool, so what
//!   happens to the broken stream's permit depends on the layer inside:
//!   - the timeout layer with a resume grace holds the dropped call for its client to resume
//!     and takes a [`Continuation`](tower_armor_mcp::Continuation) of it meanwhile: the call's
//!     permit (its tool's) stays taken until the call is cancelled, or resumed and ended. A
//!     resumption of that stream in that session (the timeout layer names the stream, the
//!     part of rmcp's event ids after the `/`) **adopts** the held permit instead of taking
//!     another, one resumption at a time: the call holds one permit from start to end, and a
//!     full pool (its own held call in it) does not refuse its resumption. Not adopted, and so
//!     taking a permit like any call (in the [`RESUME_KEY`] pool when keyed by tool): a
//!     resumption that arrives while the answer it resumes is still in flight (before the
//!     server has seen the drop); the timeout layer hands it the call, with a continuation, so
//!     the tool's permit stays taken as well until the call's result has passed.
//!     In backpressure mode a permit is reserved in
//!     `poll_ready`, before the request is known: a resumption first waits for one (behind its
//!     own held call, if the pool is full), then adopts and gives it back;
//!   - otherwise the permit comes back when the stream is dropped (the timeout layer without a
//!     grace cancels the dropped call; with no such layer the tool runs on without a permit),
//!     and the resumption takes a call permit like any call (in the [`RESUME_KEY`] pool when
//!     keyed by tool: a GET names neither tool nor method), held until the resumed answer
//!     ends.
//!
//!   A GET that reconnects the *listen* stream (any other `Last-Event-ID`, see
//!   [`resumes_call`](tower_armor_mcp::inspect::resumes_call)) is a long-lived stream, below.
//! - **Long-lived streams** (GET listen, `subscriptions/listen`) take no call permit: they would
//!   hold it for hours. They take a slot in their own pool instead, at most
//!   [`streams_per_principal`](BulkheadLayer::streams_per_principal) (default 4) per
//!   [`Principal`] found in the request extensions, released when the stream's body ends or is
//!   dropped. No line: a stream over the limit is refused at once. Streams without a principal
//!   (authentication off) have that allowance per peer IP (IPv6: per /64), read from a plain
//!   `SocketAddr` request extension or where
//!   [`peer_addr_with`](BulkheadLayer::peer_addr_with) says (axum's `ConnectInfo`, for
//!   example); only streams whose peer is not known either share one anonymous allowance.
//! - **Notifications, client responses, session deletes** take nothing: a
//!   `notifications/cancelled` or the answer to the server's elicitation must never wait behind
//!   the very calls it concerns. Keyed by tool, neither do the handshake (`initialize`,
//!   `server/discover`) and `ping` (see [Keys](#keys)).
//! - **A call cancelled while it waits in line** (2025-11-25: a `notifications/cancelled` of
//!   its session naming its id) ends at once with
//!   [`CancelledInLine`](tower_armor_mcp::error::CancelledInLine), which the rescue layer
//!   answers as the server answers a call it cancelled (an SSE stream without a message): the
//!   server, which has not seen the call, would ignore the cancellation, and the call would run
//!   in full once its turn came. The notification goes on to the server all the same. Under
//!   2026-07-28 the client closes the call's stream instead, which gives the place back. (Not
//!   in backpressure mode, where calls wait in `poll_ready`, before the bulkhead sees them.)
//! - **A task-augmented call** (`tools/call` with `params.task`, on a server that implements
//!   MCP tasks) is answered at once with the task, and its permit comes back with that answer:
//!   the work that goes on in the background is not bounded here, and the `tasks/*` requests
//!   that poll or fetch it take permits of their own (the `method:tasks/…` pools keyed by
//!   tool). Bound task work in the server (rmcp's task executor), or keep tasks off for tools
//!   the bulkhead must bound.
//!
//! # Line, wait limit, fairness
//!
//! Permits are taken in [`call`](tower_service::Service::call) when one is free, otherwise in the
//! response future: axum clones the service and calls it once per request, so a `Pending`
//! `poll_ready` would only park requests in an unbounded line. At most
//! [`max_queue`](BulkheadLayer::max_queue) calls wait per pool (one more is refused at once), each
//! at most [`max_wait`](BulkheadLayer::max_wait), and they are served first come, first served: a
//! returned permit goes straight to the first waiter, never to a newcomer. A call whose future is
//! dropped — while waiting, just after being handed a permit, or while running — gives back its
//! place or its permit. (For backpressure through `poll_ready`, see [`BackpressureLayer`].)
//! The wait limit runs on tokio's timer: with `max_wait` set, the runtime must have time enabled
//! (axum's does; one built without `enable_time` panics when a call first waits, as every tokio
//! timer does), and paused time drives it in tests.
//!
//! # Keys
//!
//! [`by_tool`](BulkheadLayer::by_tool) gives each tool of a [`KnownTools`] set its own pool; any
//! other tool name (client-controlled) shares the `unknown` pool, and so do requests without
//! facts (without the inspector in front, the bulkhead cannot tell what they are). A bulkhead
//! keyed by tool bounds the tools, so the rest of the protocol neither takes their permits nor
//! waits behind them:
//!
//! | request | pool |
//! |---|---|
//! | `tools/call` of a known tool | the tool's (key: its name) |
//! | `tools/call` of any other name | `unknown` |
//! | `initialize`, `server/discover`, `ping` | none |
//! | other known methods (`tools/list`, `resources/read`, …) | the method's: `method:tools/list`, … |
//! | any other method (client-controlled name) | [`OTHER_METHODS_KEY`] (`method:other`) |
//! | a resumption (GET + `Last-Event-ID`) | the held call's permit, adopted; otherwise [`RESUME_KEY`] (`stream:resume`) |
//! | long-lived streams, notifications, client responses | no call permit (see above) |
//!
//! The MCP framework answers the handshake and `ping` without a tool; refusing them because
//! tools are busy would turn one slow tool into failed connections (and reconnecting clients).
//! Other methods may be served slowly by server code, so each is bounded, apart from the tools
//! and from the other methods. Every pool has the configured permits and line. The method pools are a fixed set made on
//! first use, apart from the key table; their keys contain a `:`, which MCP tool names do not, so
//! the stats never mix them up with a tool's. [`by_authority`](BulkheadLayer::by_authority) keys
//! every call, whatever its method, by upstream; the global bulkhead (the default) puts every
//! call, handshake included, in its one pool. The key table is bounded
//! ([`max_keys`](BulkheadLayer::max_keys)); keys beyond it share one `overflow` pool.
//!
//! # Shared state and stats
//!
//! The pools are built once by the layer: every `layer()` call and every clone of the layer or
//! its services shares them. [`BulkheadStats`] (from [`BulkheadLayer::stats`]) reads running,
//! queued and refused calls in total and per key (tool pools first, then method pools, then
//! `overflow`), and open long-lived streams (per principal, per peer).
//!
//! # Response type
//!
//! The service's response is [`CallResponse::Observed`]: for `http::Response<B>` the body is
//! wrapped in [`ObservedBody`](tower_armor_mcp::observe::ObservedBody) (frames pass untouched and
//! at once; nothing is buffered); typed [`ToolReply`](tower_armor_mcp::ToolReply)s are unchanged.
//!
//! # Ordering
//!
//! ```text
//! correlation-id → sse → bearer-auth → McpInspectLayer → allow-list → rate-limit → RescueLayer
//!     → circuit-breaker → retry → BULKHEAD → timeout → MCP service
//! ```
//!
//! - **After the inspector** (and bearer-auth): the bulkhead reads the request's [`McpRequest`]
//!   (tool, id, long-lived or not) and [`Principal`]. Without facts every request is one opaque
//!   call; without a principal, streams count per peer address.
//! - **Inside retry**: each attempt re-enters the bulkhead and takes its own permit (and may be
//!   refused); a backoff sleep between attempts holds none. A retry layer outside treats
//!   `BulkheadFull` as retryable with backoff.
//! - **Outside the per-call timeout**: the timeout clocks the call's run, not its wait in line
//!   ([`max_wait`](BulkheadLayer::max_wait) bounds that); a call the timeout ends (with an in-stream
//!   error for SSE answers) gives its permit back when that answer ends.
//! - **Inside the circuit breaker**: a refused call never reaches the dependency, and the
//!   classification table ignores local rejections, so a full bulkhead does not open the breaker.
//! - **Under [`RescueLayer`](tower_armor_mcp::RescueLayer) in axum**: the bulkhead's error type is
//!   [`BoxError`](tower_armor_mcp::BoxError) and axum's `Router::layer` / `route_service` need
//!   `Infallible`; rescue (or axum's `HandleErrorLayer`) answers the refusals.
//!
//! # Errors
//!
//! The service fails with [`BoxError`](tower_armor_mcp::BoxError):
//!
//! - [`BulkheadFull`] `{ key }` when the pool's line is full
//!   (at once) or [`max_wait`](BulkheadLayer::max_wait) passed; `key` is the pool's key (`None`
//!   when unkeyed). A long-lived stream over its principal's limit gets `key` [`STREAMS_KEY`].
//!   Under rescue: `503` with JSON-RPC code `-31509` and the request's id.
//! - [`CancelledInLine`](tower_armor_mcp::error::CancelledInLine) when a 2025-11-25 client
//!   cancels a call while it waits in line; under rescue: 200 and an SSE stream that ends
//!   without a message, as a server answers a call it cancelled.
//! - The inner service's error, boxed, unchanged (its permit is returned at once).
//!
//! Settings that cannot work are refused when the layer is built ([`ConfigError`]); nothing
//! panics at request time, except [`BackpressureLayer`]'s service called without readiness.
//!
//! [`McpRequest`]: tower_armor_mcp::McpRequest
//! [`Principal`]: tower_armor_mcp::Principal
//! [`KnownTools`]: tower_armor_mcp::KnownTools
//! [`StreamRole::Resume`]: tower_armor_mcp::StreamRole::Resume
//! [`CallResponse::observe`]: tower_armor_mcp::CallResponse::observe
//! [`CallResponse::Observed`]: tower_armor_mcp::CallResponse::Observed
//! [`CompletionHandle`]: tower_armor_mcp::CompletionHandle

mod config;
mod continued;
pub mod future;
mod inline;
mod keys;
mod layer;
mod pool;
mod service;
mod stats;
mod streams;

pub use self::config::{
    ConfigError, DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_KEYS, DEFAULT_MAX_STREAM_PRINCIPALS,
    DEFAULT_STREAMS_PER_PRINCIPAL, ENV_MAX_CONCURRENT, ENV_MAX_QUEUE, ENV_MAX_WAIT_MS,
    ENV_STREAMS_PER_PRINCIPAL, ENV_VARS, PeerAddrFn,
};
pub use self::keys::{NO_AUTHORITY_KEY, OTHER_METHODS_KEY, OVERFLOW_KEY, RESUME_KEY};
pub use self::layer::{BackpressureLayer, BulkheadLayer};
pub use self::service::{Bulkhead, STREAMS_KEY};
pub use self::stats::{BulkheadStats, KeyStats};
pub use tower_armor_mcp::error::BulkheadFull;
