//! The tool allow-list: [`ToolAllowListLayer`] limits principals to some tools
//! (`MCP_TOOL_ALLOW=alice:add,echo;bob:*`; principals not named may call every tool).
//!
//! - A `tools/call` of any other tool gets **exactly the answer an unknown tool gets** from rmcp
//!   (200, JSON-RPC `-32602` `"tool not found"`, in the same form: SSE inside a 2025-11-25
//!   session, SSE or JSON per [`ToolAllowListLayer::json_response`] otherwise), and the request
//!   never reaches the server. Every name outside the allowed set gets this same local answer,
//!   whether the server has such a tool or not, so the answer is no existence oracle. (The local
//!   SSE answer carries no event ids: ids invented here could not be resumed.) What the server
//!   checks before looking a tool up is checked first, in rmcp's order: a client that does not
//!   accept both `application/json` and `text/event-stream` gets 406; a request of a session
//!   revision without `Mcp-Session-Id` gets 400 (see [`ToolAllowListLayer::legacy_sessions`]);
//!   a `tools/call` sent as a notification (no id) gets 202 with no body, as from rmcp. The
//!   2026-07-28 header and `_meta` rules are the inspector's, in front, for every tool alike.
//! - A `tools/list` answer (JSON or SSE, both revisions) lists only the allowed tools and, under
//!   2026-07-28 (or whenever the server gave a `cacheScope`), is marked `cacheScope: "private"`:
//!   an absent scope means public, and a shared cache would serve one principal's catalogue to
//!   another. SSE answers are streamed; only the event being read is held (see [`AllowBody`]).
//!   Each page of a paginated catalogue is filtered on its own; `nextCursor` is passed as the
//!   server wrote it (cursors are opaque: a server whose cursors spell tool names gives those
//!   names away itself).
//! - Fail closed: an answer to be filtered that this layer cannot read is replaced by 502 and a
//!   JSON-RPC error (local code `-31502`) for the request: an encoded JSON or SSE body
//!   (`Content-Encoding` other than `identity`: put compression outside this layer), a success
//!   answer to a `tools/list` request with a body that is neither JSON nor SSE (or encoded), a
//!   JSON batch answering it, or a list result it cannot parse (inside a stream: that event is
//!   replaced by the error). That includes an unrestricted principal's 2026-07-28 list answer
//!   while anybody is restricted (it must be marked private). A GET's answer that is neither
//!   JSON nor SSE is no MCP stream (another route behind the layer) and passes.
//! - A restricted principal's GET streams (the 2025-11-25 listen stream, and `Last-Event-ID`
//!   resumptions, on which rmcp replays answers to earlier requests) are read to their end:
//!   every response in them whose `result` has a `tools` member is filtered the same way,
//!   whatever request it answers. A replayed `tools/call` result cannot be told from another
//!   tool's; only calls this layer let through have results, so none is filtered.
//! - As soon as the policy restricts anybody, every 2026-07-28 `tools/list` answer is marked
//!   `cacheScope: "private"`, the full catalogue of unrestricted principals included: a shared
//!   cache keyed without the principal would otherwise serve it to a restricted one.
//! - Otherwise, requests of unrestricted principals, and without a
//!   [`Principal`](tower_armor_mcp::Principal) (auth off, exempt paths), pass untouched.
//!
//! # Ordering
//!
//! After [`BearerAuthLayer`](crate::BearerAuthLayer) (which puts the `Principal` in) and after
//! [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer) (which puts the
//! [`McpRequest`](tower_armor_mcp::McpRequest) in); before rate limits and the call plane. A POST
//! of a restricted principal that reaches this layer uninspected is refused with 500 and
//! [`CODE_NOT_INSPECTED`] (a misconfigured stack must not open every tool).
//!
//! A rate limit behind this layer never sees the calls it refuses: they spend no quota and
//! their answers carry no `RateLimit` headers (an unrestricted principal's unknown-tool call
//! does both). Counting them there would let a per-tool quota tell a hidden tool from an
//! unknown one. Each refused call costs one bounded body read and parse, as the inspector's own
//! refusals do; to bound those too, put a per-principal rate limit (no per-tool rules) in
//! front of the inspector as well.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_bearer_auth::allow::{AllowPolicy, ToolAllowListLayer};
//! use tower_armor_mcp::{McpBody, Principal, inspect::McpInspectLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = AllowPolicy::parse("alice:add,echo").unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(McpInspectLayer::new())
//!     // Answers in the form of an rmcp server with `json_response: true` and
//!     // `legacy_session_mode: false` (no sessions).
//!     .layer(ToolAllowListLayer::new(policy).json_response(true).legacy_sessions(false))
//!     .service_fn(|_req: Request<McpBody>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("reached the server")))
//!     });
//!
//! let mut req = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .header("accept", "application/json, text/event-stream")
//!     .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"crash"}}"#.to_string())
//!     .unwrap();
//! req.extensions_mut().insert(Principal::new("alice"));
//! let resp = svc.oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 200);
//! let body = resp.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(&body[..], br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"tool not found"}}"#);
//! # }
//! ```

mod accept;
mod body;
mod future;
mod layer;
mod policy;
mod rewrite;
#[cfg(fuzzing)]
#[doc(hidden)]
pub use self::rewrite::fuzz_rewrite;
mod service;

pub use self::body::{AllowBody, MAX_LIST_BYTES};
pub use self::future::AllowFuture;
pub use self::layer::ToolAllowListLayer;
pub use self::policy::{AllowPolicy, ENV_TOOL_ALLOW};
pub use self::service::{CODE_NOT_INSPECTED, ToolAllowList};
