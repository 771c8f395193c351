//! An MCP-aware circuit breaker for Tower: keyed per tool, method or upstream, stream-aware,
//! with atomics on the hot path.
//!
//! When a dependency is broken, its callers should fail in microseconds instead of piling up
//! until their timeouts. [`CircuitBreakerLayer`] counts the outcomes of calls and, when a trip
//! policy says so, opens the circuit: calls fail fast with
//! [`CircuitOpen`] until the open duration has passed;
//! then a bounded number of probe calls decide whether it closes again.
//!
//! - **States**: closed, open, half-open, plus forced-open, forced-closed (disabled) and
//!   metrics-only, switched by hand through the [`CircuitBreakerHandle`] (the break-glass
//!   switch an operator flips during an incident, without a redeploy).
//! - **Trip policies**, in any combination: failure rate over a count-based or time-based
//!   (bucketed) sliding window, judged from a minimum number of calls on; consecutive
//!   failures; slow-call rate (duration threshold + rate).
//! - **Open duration**: fixed, or exponential with jitter and a cap ([`OpenDuration`]).
//! - **Half-open**: [`half_open_calls`](Builder::half_open_calls) probes, reserved under the
//!   circuit's lock so no race lets an extra one through. The circuit closes once that many
//!   probes succeeded and opens again at the first failed probe (or slow one, with a slow-call
//!   policy). A probe whose future or response body is dropped returns its slot at once; a probe
//!   that neither answers nor is dropped within the [probe lease](Builder::probe_lease) counts
//!   as failed at the lease's end (no timer task: the next call or state query settles it, as
//!   of the lease's end, so the circuit reopens exactly as if a timer had fired). Probes carry
//!   [`HalfOpenProbe`](tower_armor_mcp::HalfOpenProbe) in their request extensions so that a
//!   retry layer inside never retries them.
//! - **Outcomes** come from the one classification table,
//!   [`Classifier`](tower_armor_mcp::Classifier) (configurable): a streamed (SSE) answer counts
//!   when its final JSON-RPC response passes, through the shared
//!   [`CompletionHandle`](tower_armor_mcp::CompletionHandle); caller errors, our own local
//!   rejections and answers the caller dropped are not counted; `Elapsed` is a slow failure;
//!   gRPC answers count by `grpc-status`. A 2025-11-25 call the client cancels with
//!   `notifications/cancelled` ends, to the answer alone, without its final response
//!   (`Incomplete`, a failure); the timeout layer (`tower-armor-timeout`) inside the breaker,
//!   as in the documented order, matches the notification with the call, which then ends
//!   `Cancelled` instead, so the client's change of mind is not counted (likewise for the
//!   calls of a session the client ends with `DELETE`; and a client resuming a call's stream
//!   while its answer is still in flight: rmcp ends that answer early, without its final
//!   response, and that layer hands the call to the resumption). Long-lived streams (GET listen,
//!   `subscriptions/listen`), notifications and responses are neither counted nor rejected;
//!   nor is a GET resuming a call's stream (`Last-Event-ID`): its call was admitted when its
//!   POST came, and it names no tool, so one key would pool every client's resumptions (a
//!   call whose answer arrives only on a resumed stream is thus never counted).
//! - **Keys** ([`KeyBy`]): one circuit per tool (only for [known
//!   tools](tower_armor_mcp::KnownTools); other names share the `unknown` key), per method, or
//!   per upstream authority; the table is bounded ([`max_keys`](Builder::max_keys)).
//! - **Events**: every state change is a `tracing` event (key, from, to, reason, counts) and
//!   goes to an optional [callback](Builder::on_transition).
//! - **Hot path**: a closed circuit admits a call with one atomic load and records a success
//!   with no atomic read-modify-write beyond the permit's `Arc` clone (a count window adds one
//!   `fetch_add`); no lock, no allocation on the typed path (`ToolCall` / `ToolReply`). On the
//!   HTTP path the only allocation is the completion handle's listener. Half-open probes (at
//!   most [`half_open_calls`](Builder::half_open_calls) per open period) take the lock and one
//!   small allocation each.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{Layer, Service, ServiceExt, service_fn};
//! use tower_armor_circuit_breaker::{CircuitBreakerLayer, OpenDuration, State};
//! use tower_armor_mcp::error::CircuitOpen;
//! use tower_armor_mcp::{ToolCall, ToolReply};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = CircuitBreakerLayer::builder()
//!     .no_failure_rate()
//!     .consecutive_failures(2)
//!     .open_duration(OpenDuration::Fixed(Duration::from_secs(30)))
//!     .build()
//!     .expect("valid settings");
//! let handle = layer.handle();
//!
//! // A dependency that always answers JSON-RPC -32603.
//! let mut svc = layer.layer(service_fn(|_call: ToolCall| async {
//!     Ok::<_, std::convert::Infallible>(ToolReply::Error { code: -32603, message: "boom".into() })
//! }));
//! for _ in 0..2 {
//!     let reply = svc.ready().await.unwrap().call(ToolCall::new("crash", Default::default())).await;
//!     assert!(matches!(reply, Ok(ToolReply::Error { code: -32603, .. })));
//! }
//!
//! // Two failures in a row: the circuit is open and calls fail fast.
//! assert_eq!(handle.circuits()[0].state(), State::Open);
//! let err = svc.ready().await.unwrap().call(ToolCall::new("crash", Default::default())).await.unwrap_err();
//! let open = err.downcast_ref::<CircuitOpen>().expect("a CircuitOpen");
//! assert!(open.retry_after <= Duration::from_secs(30));
//!
//! // Break glass: an operator closes it again.
//! handle.reset();
//! assert_eq!(handle.circuits()[0].state(), State::Closed);
//! # }
//! ```
//!
//! Keyed per tool, in an axum app (under [`RescueLayer`](tower_armor_mcp::RescueLayer)):
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_armor_circuit_breaker::{CircuitBreakerLayer, KeyBy};
//! use tower_armor_mcp::{KnownTools, RescueLayer, inspect::McpInspectLayer};
//!
//! # fn app<S>(mcp_service: S) -> axum::Router
//! # where
//! #     S: tower::Service<http::Request<tower_armor_mcp::McpBody>, Response = http::Response<axum::body::Body>, Error = std::convert::Infallible>
//! #         + Clone + Send + Sync + 'static,
//! #     S::Future: Send + 'static,
//! # {
//! let breaker = CircuitBreakerLayer::builder()
//!     .key_by(KeyBy::Tool(KnownTools::from_names(["add", "crash", "unstable"])))
//!     .build()
//!     .expect("valid settings");
//! let svc = ServiceBuilder::new()
//!     .layer(McpInspectLayer::new())
//!     .layer(RescueLayer::new()) // CircuitOpen → 503 + Retry-After + JSON-RPC error
//!     .layer(breaker)
//!     .service(mcp_service);
//! axum::Router::new().route_service("/mcp", svc)
//! # }
//! ```
//!
//! # Ordering
//!
//! In tower-armor's documented order the breaker sits **under rescue and outside retry**:
//!
//! ```text
//! … → rate-limit → RescueLayer → CircuitBreaker → retry → bulkhead → timeout → MCP service
//! ```
//!
//! - **Under [`RescueLayer`](tower_armor_mcp::RescueLayer)** (or axum's `HandleErrorLayer`):
//!   the breaker fails with `BoxError`, and axum's `Router::layer` / `route_service` need
//!   `Error = Infallible`. Rescue turns `CircuitOpen` into 503 with `Retry-After` and a JSON-RPC
//!   error (code `-31503`) carrying the request's id.
//! - **Outside retry**: the breaker counts what the caller sees, one outcome per logical call,
//!   not one per attempt, so a flaky dependency rescued by a retry does not open the circuit,
//!   and an open circuit stops a retry loop before it starts (no attempts against a dependency
//!   known to be down). A retry loop already running when the circuit opens finishes its
//!   attempts. Probes carry `HalfOpenProbe`, and the retry layer does not retry them: a probe's
//!   one outcome decides. **The probe lease must be longer than the retry layer's overall
//!   deadline**, or a probe still being retried is settled as failed; it is not checked here
//!   (only a stack builder that configures both can), so set it accordingly.
//! - **If you swap them** (retry outside the breaker, as most libraries do): every attempt is
//!   counted, so the circuit opens after fewer user-visible failures (with 3 attempts per call,
//!   roughly 3× faster); an open circuit answers each attempt with `CircuitOpen`, which the
//!   table never retries, so the loop stops at once; and probes are no longer protected from
//!   retries (the retry layer cannot see the marker, which is set inside it).
//! - **Inside the inspector** (`McpInspectLayer`): the breaker needs the request's facts
//!   (method, tool, id, long-lived or not); without them every request is one opaque call.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](tower_armor_mcp::BoxError):
//!
//! - [`CircuitOpen { key, retry_after }`](tower_armor_mcp::error::CircuitOpen) when the circuit
//!   is open, half-open with every probe slot taken, or forced open. `key` is the circuit's
//!   key (`None` unkeyed); `retry_after` is the time left of the open duration (half-open: until
//!   the earliest probe lease ends, at most the base open duration; forced open: the base open
//!   duration).
//! - the inner service's error, boxed, unchanged. It is counted by what it is: our local
//!   rejections (`BulkheadFull`, `RateLimited`, `CircuitOpen`) are not counted, `Elapsed` is a
//!   slow failure, auth and size errors are the caller's, anything else a transport failure.
//!
//! The response type is `<S::Response as CallResponse>::Observed`: for HTTP the body is wrapped
//! in [`ObservedBody`](tower_armor_mcp::observe::ObservedBody) (a pass-through when a layer
//! further in already observes the answer); typed replies are unchanged.
//!
//! Settings are checked once by [`Builder::build`], which fails with [`ConfigError`] naming the
//! setting; [`Builder::from_env`] reads `MCP_BREAKER_FAILURE_RATE` (a number in (0, 1]),
//! `MCP_BREAKER_MIN_CALLS`, `MCP_BREAKER_WINDOW` (calls), `MCP_BREAKER_OPEN_MS`,
//! `MCP_BREAKER_HALF_OPEN_CALLS` and `MCP_BREAKER_PROBE_LEASE_MS`, and names the variable at fault.

mod backoff;
mod config;
mod core;
pub mod future;
mod handle;
mod keys;
mod layer;
mod service;
mod state;
mod window;

#[cfg(test)]
mod model;

pub use self::backoff::OpenDuration;
pub use self::config::{
    Builder, ConfigError, DEFAULT_PROBE_LEASE, ENV_FAILURE_RATE, ENV_HALF_OPEN_CALLS,
    ENV_MIN_CALLS, ENV_OPEN_MS, ENV_PROBE_LEASE_MS, ENV_VARS, ENV_WINDOW, KeyBy,
    MAX_HALF_OPEN_CALLS, WindowSpec,
};
pub use self::handle::{Circuit, CircuitBreakerHandle};
pub use self::layer::{CircuitBreakerLayer, OTHER_KEY, UNKNOWN_KEY};
pub use self::service::CircuitBreaker;
pub use self::state::{Counts, Reason, State, Transition};
pub use tower_armor_mcp::error::CircuitOpen;
