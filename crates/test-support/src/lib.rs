//! Test helpers for tower-armor (not published).
//!
//! - [`demo`]: [`DemoServer`], an rmcp server with tools of known behaviour (`add`,
//!   `echo`, `slow`, `progress`, `fail`, `crash`, `unstable`) and [`DemoStats`] counters
//!   that show whether a call was cancelled.
//! - [`server`]: the demo server (or any axum router) on `127.0.0.1:<random port>`
//!   ([`spawn_demo`], [`serve`], [`TestServer`]).
//! - [`client`]: [`RawClient`], a raw JSON-RPC-over-HTTP client that speaks both MCP
//!   revisions (2025-11-25 sessions, 2026-07-28 stateless) and shows status codes, headers
//!   and SSE frames.
//! - [`sse`]: [`SseStream`], an incremental SSE reader that yields events (and keep-alive
//!   comments) as they arrive.
//! - [`upstream`]: [`ScriptedUpstream`], an HTTP server answering from a queue of scripted
//!   [`Step`]s and recording what it received.
//! - [`sliced`]: [`SlicedHeader`], a header value sharing its bytes with a large request head.
//!
//! # Example
//!
//! ```
//! use serde_json::json;
//! use tower_armor_test_support::{RawClient, Revision, ServerOptions, spawn_demo};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = spawn_demo(ServerOptions::default()).await;
//! for rev in Revision::ALL {
//!     let client = RawClient::connect(server.url(), rev).await.unwrap();
//!     let reply = client.call_tool("add", json!({"a": 2, "b": 3})).await.unwrap();
//!     assert_eq!(reply.tool_text(), Some("5"));
//! }
//! # }
//! ```
//!
//! # Ordering
//!
//! Not a layer: tests put tower-armor's layers in front of [`demo_service`] (or a
//! [`ScriptedUpstream`]) in the order DESIGN §4 documents and serve the stack with [`serve`].
//!
//! Everything runs on real time and real sockets; keep durations short and wrap waits in
//! `tokio::time::timeout`.

pub mod client;
pub mod demo;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod logs;
pub mod server;
pub mod sliced;
pub mod sse;
pub mod upstream;

pub use client::{CallReply, RawClient, RawError, Revision};
pub use demo::{DEMO_TOOLS, DemoServer, DemoStats};
pub use logs::LogCapture;
pub use server::{ServerOptions, TestServer, demo_service, serve, spawn_demo};
pub use sliced::SlicedHeader;
pub use sse::{SseEvent, SseStream, next_event};
pub use upstream::{ReceivedRequest, ScriptedUpstream, Step};
