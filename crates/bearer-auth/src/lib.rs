//! Bearer-token authentication for MCP servers, a per-principal tool allow-list, and token
//! injection for MCP clients.
//!
//! Server side, [`BearerAuthLayer`]:
//! - validates `Authorization: Bearer <token>` against tokens that each name a principal, in time
//!   independent of which token matched and of the presented token's bytes, and flat in the
//!   number of tokens (a keyed SipHash-2-4-128 digest, one hash-map probe, constant-time compare; see
//!   [`parse_authorization`] for the strict grammar);
//! - answers failures with 401, `WWW-Authenticate: Bearer realm="…"[, resource_metadata="…"],
//!   error="invalid_token", error_description="…"` (no `error` when no credentials were sent, RFC
//!   6750 §3.1) and a JSON-RPC error body (local code `-31401`, `data.reason`). A malformed
//!   header (repeated, a comma, extra spaces, an empty token) gets the same 401 `invalid_token`,
//!   not RFC 6750's suggested 400 `invalid_request`: every refused credential gets the challenge,
//!   which tells the client how to authenticate (the MCP authorization flow starts from a 401 and
//!   its `resource_metadata`). Two spaces after `Bearer`, which RFC 9110
//!   allows, are refused too: one strict grammar leaves nothing for two parsers to read
//!   differently; a gRPC call
//!   (`content-type: application/grpc…`, e.g. in a tonic server stack) gets the same challenge
//!   in a gRPC trailers-only answer with `grpc-status: 16` (`UNAUTHENTICATED`) instead, which a
//!   gRPC client reads as such (a JSON body would reach it as an `INTERNAL` protocol error);
//! - puts the [`Principal`] into the request's extensions, records it
//!   in the request span, and **removes `Authorization`** before the request goes inward;
//! - binds each 2025-11-25 session to the principal whose `initialize` created it: another
//!   principal presenting that `Mcp-Session-Id` gets exactly the answer of an unknown session
//!   (from a request saying `MCP-Protocol-Version: 2026-07-28` the header is removed instead:
//!   the server ignores it under that stateless revision, except that an `initialize` would
//!   join the session it names);
//! - lets exempt requests through (default: `GET`/`HEAD` of `/healthz` and `/readyz` without an
//!   `Mcp-Session-Id`, and CORS preflights; a request with an `Mcp-Session-Id` is never exempt);
//! - reads `MCP_BEARER_TOKEN` / `MCP_BEARER_TOKEN_FILE` ([`BearerAuthLayer::from_env`]); a token
//!   file is re-read while serving, so a rotated secret takes effect without a restart, on the
//!   long-lived streams it opened too (they end; a `subscriptions/listen` stream between two
//!   events with the error answer `-31401` to its listen request; see [`BearerBody`]).
//!
//! [`allow::ToolAllowListLayer`] limits principals to some tools (`MCP_TOOL_ALLOW`). Client
//! side, [`InjectBearerLayer`] sets the token on outgoing requests from a
//! [`TokenSource`].
//!
//! Tokens are [`Secret`]s and never logged; the server keeps only their
//! keyed digests (under a random key drawn at start).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, header};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_bearer_auth::BearerAuthLayer;
//! use tower_armor_mcp::{Principal, Secret};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let auth = BearerAuthLayer::builder()
//!     .token("alice", Secret::new("alice-token"))
//!     .tokens("bob:bob-token")
//!     .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource")
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(auth)
//!     .service_fn(|req: Request<String>| async move {
//!         // Tool code sees who called, never the token.
//!         assert!(req.headers().get(header::AUTHORIZATION).is_none());
//!         let who = req.extensions().get::<Principal>().unwrap().name().to_owned();
//!         Ok::<_, Infallible>(Response::new(who))
//!     });
//!
//! let req = Request::post("/mcp")
//!     .header(header::AUTHORIZATION, "Bearer alice-token")
//!     .body(String::new())
//!     .unwrap();
//! let resp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 200);
//!
//! let req = Request::post("/mcp")
//!     .header(header::AUTHORIZATION, "Bearer guess")
//!     .body(String::new())
//!     .unwrap();
//! let resp = svc.clone().oneshot(req).await.unwrap();
//! assert_eq!(resp.status(), 401);
//! let challenge = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
//! assert!(challenge.starts_with(r#"Bearer realm="mcp", resource_metadata="https://"#));
//! assert!(challenge.contains(r#"error="invalid_token""#));
//! # }
//! ```
//!
//! # Ordering
//!
//! Server (DESIGN §4): correlation-id → sse → **bearer-auth** → mcp inspect → **tool allow-list**
//! → rate-limit → rescue → call plane → MCP service.
//!
//! - Bearer auth sits before the inspector, so an unauthenticated client never makes the server
//!   read a body; it needs nothing from inner layers (session binding reads headers only).
//! - It sits inside correlation-id, so its 401s carry the correlation id, and records the principal
//!   in the span that layer opened.
//! - The allow-list needs both the `Principal` (from bearer auth) and the `McpRequest` facts (from
//!   the inspector): put it after the inspector (and after `AdoptMetaTraceLayer` when used).
//! - Client (an orchestrator): correlation → breaker → retry → bulkhead → timeout →
//!   **inject bearer** → transport, so every attempt gets the current token.
//!
//! # Errors
//!
//! Both server layers are HTTP-plane layers: they answer by themselves (401, the unknown-session
//! answer, the unknown-tool answer) and keep the inner service's error type, so they drop into
//! axum (`Error = Infallible`) as they are. Their response bodies are [`BearerBody`] and
//! [`allow::AllowBody`].
//! [`InjectBearer`] fails with [`BoxError`](tower_armor_mcp::BoxError) wrapping
//! [`error::TokenUnavailable`] or [`error::InvalidToken`]; configuration problems are
//! [`ConfigError`]s that name the setting, raised before anything serves.

pub mod allow;
mod body;
mod client;
pub mod error;
pub mod future;
mod layer;
mod mac;
mod parse;
mod service;
mod session;
mod tokens;

pub use self::allow::{AllowPolicy, ENV_TOOL_ALLOW, ToolAllowList, ToolAllowListLayer};
pub use self::body::BearerBody;
pub use self::client::{FileTokenSource, InjectBearer, InjectBearerLayer, InjectFuture};
pub use self::error::ConfigError;
pub use self::layer::{
    BearerAuthBuilder, BearerAuthLayer, ENV_AUTH_DISABLED, ENV_REALM, ENV_RESOURCE_METADATA,
    ENV_TOKEN, ENV_TOKEN_FILE, RequestHead, check_bind, check_bind_with, default_exempt,
};
pub use self::parse::{AuthFailure, DEFAULT_MAX_HEADER_BYTES, parse_authorization};
pub use self::service::BearerAuth;
pub use self::tokens::{DEFAULT_PRINCIPAL, MAX_TOKEN_FILE_BYTES, check_principal};
pub use tower_armor_mcp::{Principal, Secret, SharedToken, TokenSource};
