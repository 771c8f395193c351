//! Per-client rate limits for MCP servers, on [governor]'s GCRA: keyed by the authenticated
//! principal, a header, the peer IP or nothing, with optional per-method and per-tool quotas on
//! top, a bounded key table, and MCP-correct 429 answers.
//!
//! [`RateLimitLayer`] is an HTTP-plane layer: it answers by itself (429, or 500 for a deployment
//! error) and keeps the inner service's error type, so it drops into axum as is. Every request
//! that reaches it and is not exempt counts as one, including the opening of a long-lived stream
//! (a GET listen stream or a `subscriptions/listen` POST) and notifications. Requests the
//! layers outside it answer never reach it: in the documented order the inspector's refusals of
//! malformed input and the allow-list's denials are not counted (a restricted principal's call
//! of a hidden tool and of a tool that does not exist alike, so neither tells the other apart
//! by its quota). Health checks
//! (`GET`/`HEAD` of `/healthz`, `/readyz` by default, without an `Mcp-Session-Id`) are exempt.
//! A `DELETE` that ends a session (it carries `Mcp-Session-Id`, came through the inspector and
//! from an authenticated [`Principal`](tower_armor_mcp::Principal)) is neither counted nor
//! refused: refusing it would only keep the session alive on the server until it expires.
//! Without authentication such a DELETE is counted (anyone can invent session ids). A client's
//! answer to a server request (an elicitation, a sampling result), a `notifications/cancelled`,
//! a `notifications/initialized` and a 2025-11-25 `GET` resuming a call's stream in its session
//! (`Last-Event-ID`) are counted while the quota lasts and never refused once it is spent:
//! refusing them would leave the call they concern waiting for its timeout or its answer lost,
//! a cancelled tool running, or a session whose `initialize` was admitted unusable. Their answers
//! carry the `RateLimit` headers like any other. This layer does not check that such a message
//! concerns a call or handshake that exists (it sees no calls), so a client over its quota can
//! still send these, and an authenticated one its sessions' `DELETE`s, as fast as it likes: each
//! is a 202 (or 404) the server answers without running anything, and a bulkhead or the
//! connection limits, not this layer, bound what that costs.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_mcp::{McpBody, Principal};
//! use tower_armor_rate_limit::{Limit, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two requests per minute per principal (bursts of two).
//! let layer = RateLimitLayer::builder(Limit::per_minute(2)).build()?;
//! let svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service_fn(|_req: Request<McpBody>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("ok")))
//!     });
//!
//! let request_from = |who: &str| {
//!     let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
//!     // bearer-auth puts the principal there.
//!     req.extensions_mut().insert(Principal::new(who));
//!     req
//! };
//! for _ in 0..2 {
//!     let resp = svc.clone().oneshot(request_from("alice")).await?;
//!     assert_eq!(resp.status(), StatusCode::OK);
//! }
//! let resp = svc.clone().oneshot(request_from("alice")).await?;
//! assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(resp.headers()["retry-after"], "30");
//! assert_eq!(resp.headers()["ratelimit-policy"], r#""default";q=2;w=60"#);
//! assert_eq!(resp.headers()["ratelimit"], r#""default";r=0;t=30"#);
//!
//! // Another principal has its own quota.
//! let resp = svc.clone().oneshot(request_from("bob")).await?;
//! assert_eq!(resp.status(), StatusCode::OK);
//! assert_eq!(resp.headers()["ratelimit"], r#""default";r=1;t=30"#);
//! assert_eq!(layer.store().stats().entries, 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Keys
//!
//! [`KeyBy`] chooses what requests count against:
//!
//! - [`KeyBy::Principal`] (the default): the [`Principal`](tower_armor_mcp::Principal) that
//!   bearer-auth put into the request's extensions; a request without one counts against its
//!   peer IP.
//! - [`KeyBy::Header`]: a header's value (say `X-Api-Key`), held and logged only as a truncated
//!   SHA-256 digest; a request without it counts against its peer IP. The header is believed as
//!   sent, so use it only behind something that validates it.
//! - [`KeyBy::Ip`]: the peer IP from axum's `ConnectInfo<SocketAddr>` (serve with
//!   `into_make_service_with_connect_info::<SocketAddr>()`). Behind proxies, list them in
//!   [`TrustedProxies`]: only a request *from* a trusted proxy has its `X-Forwarded-For` (or
//!   `Forwarded`, see [`ForwardedHeader`]) read, and the client is the right-most hop that is not
//!   a trusted proxy, so a client cannot choose its key by forging the header. IPv6 clients are
//!   keyed by their /64 ([`Builder::ipv6_prefix`]).
//! - [`KeyBy::Global`]: one quota for everyone.
//!
//! A missing `ConnectInfo` when the peer IP is needed is a deployment error, not a reason to fall
//! back to one global bucket: the layer answers 500 and logs (once) how to fix it.
//!
//! # Per-method and per-tool quotas
//!
//! On top of the base quota, [`Builder::method`] limits one JSON-RPC method, [`Builder::tool`]
//! one tool's `tools/call`, and [`Builder::each_tool`] every tool separately — per key. They need
//! the facts of [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer) (a request without
//! them only meets the base quota). Keys are never made from client-chosen names: a named tool's
//! quota matches that name only, and [`Builder::each_tool`] gives a quota of its own only to the
//! tools in [`Builder::known_tools`]; every other name shares `unknown`. A request passes when
//! every quota that applies allows it. Quotas are checked narrowest first (the tool's own, the
//! per-tool one, the method's) and the base quota last, and checking stops at the first
//! refusal, and a refused request spends nothing: what it took from the quotas checked before
//! the one that refused is given back. A client hammering one tool past its quota keeps its
//! base quota for everything else, and one over its base quota finds its tool quotas untouched
//! when its `Retry-After` is up. The headers list the quotas checked, in that order.
//!
//! # Answers and headers
//!
//! A refused request gets `429 Too Many Requests` with `Retry-After` (whole seconds, rounded up,
//! at least 1) and a JSON-RPC error body: code `-31429`
//! ([`CODE_RATE_LIMITED`](tower_armor_mcp::error::CODE_RATE_LIMITED)), the request's id (from
//! the inspector's facts; `null` without them) and the correlation id in `data`. A gRPC call
//! (`content-type: application/grpc…`, e.g. in a tonic server stack) gets a gRPC trailers-only
//! answer instead: `grpc-status: 8` (`RESOURCE_EXHAUSTED`), `retry-after` and
//! `grpc-retry-pushback-ms` (what gRPC clients' retry policies read), with the same `RateLimit`
//! fields.
//!
//! Answers carry the `RateLimit-Policy` and `RateLimit` fields of
//! **draft-ietf-httpapi-ratelimit-headers-09** (structured-field lists, one item per quota that
//! applied), on 429s always and on other answers unless [`Builder::headers_on_success`] is off:
//!
//! ```text
//! RateLimit-Policy: "tool:expensive";q=10;w=60, "default";q=60;w=60
//! RateLimit: "tool:expensive";r=0;t=6, "default";r=41;t=19
//! ```
//!
//! For a GCRA quota of `count` per `period` with bursts of `burst`: `w` is the time a full burst
//! takes to replenish (`burst × period / count`, whole seconds rounded up — the period itself
//! with the default burst) and `q` the requests the quota allows over `w`: the burst, unless
//! rounding lengthened the window (600 per minute with a burst of 1 is `q=10;w=1`, the rate);
//! `r` is what is left of the burst, and `t` the
//! seconds until the bucket is full again (an upper bound, at most one replenish interval over),
//! or, for the quota that refused, `Retry-After` (the draft asks for the same point in time).
//!
//! # Memory
//!
//! The default [`InMemoryStore`] holds at most [`Builder::max_keys`] keys (default 100,000) in
//! up to 64 shards; stale keys (whose bucket has been full again for a second, so forgetting
//! them changes nothing) are swept a few buckets at a time as requests pass, with no background
//! task. When a new key
//! finds its shard full it counts against a shared overflow bucket per quota instead of evicting
//! anyone: known clients keep their state, and a flood of fresh keys shares one quota. See
//! [`InMemoryStore`] for the details (100,000 keys take about 7 MiB) and
//! [`InMemoryStore::stats`] for the table's size.
//!
//! # Time
//!
//! Quotas run on [`clock::TokioClock`], a governor clock over `tokio::time::Instant`, so tests on
//! paused time (`start_paused`, `tokio::time::advance`) control them.
//!
//! # Shared state
//!
//! Every clone of the layer, every service it builds (axum clones per request) and every
//! `layer()` call share one store. The layer reaches the store through the async [`KeyStore`]
//! trait; [`InMemoryStore`] answers at once (the layer decides inline, without extra
//! allocation, and asks it directly for a request that only meets the base quota), and a store
//! shared by replicas can implement the trait later ([`Builder::build_with_store`]).
//!
//! # Configuration
//!
//! Builder methods, or [`RateLimitLayer::from_env`] / [`Builder::from_env`] (empty variables
//! count as unset; a bad value is an error naming the variable):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MCP_RATE_LIMIT_PER_MINUTE` | 120 | requests per minute per key |
//! | `MCP_RATE_LIMIT_BURST` | the per-minute value | largest burst |
//! | `MCP_RATE_LIMIT_KEY` | `principal` | `principal`, `ip`, `global` or `header:<Name>` |
//! | `MCP_RATE_LIMIT_TRUSTED_PROXIES` | none | comma-separated addresses / CIDR networks |
//! | `MCP_RATE_LIMIT_FORWARDED_HEADER` | `x-forwarded-for` | the header trusted proxies name the client in: `x-forwarded-for` or `forwarded` (RFC 7239 `for=`) |
//! | `MCP_RATE_LIMIT_MAX_KEYS` | 100000 | most keys held in memory |
//! | `MCP_RATE_LIMIT_TOOLS` | none | per-tool quotas per key, `name:per_minute,…` |
//!
//! # Ordering
//!
//! After authentication, inspection and the tool allow-list (it keys on the principal and reads
//! the inspector's method and tool), before rescue and the call-plane layers (DESIGN §4):
//!
//! ```text
//! correlation-id → sse → bearer-auth → McpInspectLayer → allow-list → RateLimitLayer → rescue
//!     → circuit-breaker → retry → bulkhead → timeout → MCP service
//! ```
//!
//! Outside authentication every unauthenticated request would count against its IP; outside the
//! inspector per-method and per-tool quotas never apply and 429s carry `id: null`; after the
//! allow-list, a forbidden call does not spend quota. Inside correlation-id, so 429s carry the
//! correlation id.
//!
//! # Errors
//!
//! The layer keeps the inner service's error type and answers by itself:
//!
//! | case | answer |
//! |---|---|
//! | a quota refused | 429, `-31429`, `Retry-After`, `RateLimit-Policy`, `RateLimit` |
//! | the peer IP is needed and the request has no `ConnectInfo` | 500, [`CODE_MISCONFIGURED`] (`-31500`), logged once with the fix |
//! | the store failed (a networked store) | the request passes, with a warning |
//!
//! Configuration errors ([`ConfigError`]) come from [`Builder::build`] and
//! [`Builder::from_env`], before anything serves.
//!
//! [governor]: https://docs.rs/governor

pub mod clock;
pub mod config;
pub mod future;
mod key;
mod layer;
pub mod policy;
mod service;
pub mod store;

use http::HeaderName;

pub use self::config::ConfigError;
pub use self::key::{ClientKey, ForwardedHeader, HeaderDigest, IpNet, KeyBy, TrustedProxies};
pub use self::layer::{Builder, DEFAULT_EXEMPT_PATHS, PeerAddrFn, RateLimitLayer, RequestHead};
pub use self::policy::{Limit, Policies, Policy, PolicyId, Target};
pub use self::service::RateLimit;
pub use self::store::{InMemoryStore, KeyStore, StoreStats};
pub use tower_armor_mcp::error::RateLimited;

/// JSON-RPC code of the 500 answered when the layer is deployed without the peer address it
/// needs (a local code: outside JSON-RPC's reserved range, the last digits repeat the status).
pub const CODE_MISCONFIGURED: i64 = tower_armor_mcp::error::CODE_MISCONFIGURED;

/// The `RateLimit-Policy` header name (draft-ietf-httpapi-ratelimit-headers-09).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The `RateLimit` header name (draft-ietf-httpapi-ratelimit-headers-09).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
