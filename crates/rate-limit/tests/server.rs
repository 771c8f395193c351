//! The layer in front of the real rmcp demo server, over real HTTP (real time, loopback).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use serde_json::json;
use tokio::time::timeout;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_armor_mcp::Principal;
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_rate_limit::{Builder, KeyBy, Limit, RateLimitLayer};
use tower_armor_test_support::{RawClient, Revision, ServerOptions, demo_service, serve};

const WAIT: Duration = Duration::from_secs(20);

/// Stands in for bearer-auth: the principal named by `x-test-principal`.
fn principal_from_header(mut req: Request<Body>) -> Request<Body> {
    if let Some(name) = req
        .headers()
        .get("x-test-principal")
        .and_then(|v| v.to_str().ok())
    {
        let p = Principal::new(name);
        req.extensions_mut().insert(p);
    }
    req
}

/// The demo server at `/mcp` and `/healthz`, behind: test auth → inspector → rate limit.
fn router(layer: RateLimitLayer) -> Router {
    Router::new()
        .nest_service("/mcp", demo_service(&ServerOptions::default()))
        .route("/healthz", get(|| async { "ok" }))
        .layer(
            ServiceBuilder::new()
                .layer(MapRequestLayer::new(principal_from_header))
                .layer(McpInspectLayer::new())
                .layer(layer),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_quota_gets_429_and_others_are_unaffected() {
    // Five requests per minute per principal: one every 12 s, bursts of five.
    let layer = Builder::new(Limit::per_minute(5)).build().unwrap();
    let server = serve(router(layer.clone())).await;
    for rev in Revision::ALL {
        let alice = format!("alice-{rev}");
        let client = timeout(
            WAIT,
            RawClient::new(server.url(), rev)
                .with_header("x-test-principal", &alice)
                .connected(),
        )
        .await
        .unwrap()
        .unwrap();
        // 2025-11-25 spent two requests on the handshake (initialize + initialized).
        let spent = if rev.is_stateless() { 0 } else { 2 };
        for i in spent..5 {
            let reply = client
                .call_tool("add", json!({"a": i, "b": 1}))
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{rev} call {i}: {reply:?}");
            assert_eq!(reply.tool_text(), Some((i + 1).to_string().as_str()));
            assert!(reply.header("ratelimit").is_some());
        }
        let id = client.next_id();
        let reply = client
            .call_with_id(
                id,
                "tools/call",
                json!({"name": "add", "arguments": {"a": 1, "b": 1}}),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 429, "{rev}: {reply:?}");
        let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=12).contains(&retry_after), "{retry_after}");
        assert_eq!(
            reply.header("ratelimit-policy"),
            Some(r#""default";q=5;w=60"#)
        );
        assert_eq!(
            reply.header("ratelimit"),
            Some(format!(r#""default";r=0;t={retry_after}"#).as_str())
        );
        assert_eq!(reply.error_code(), Some(-31429));
        assert_eq!(reply.final_message.as_ref().unwrap()["id"], id);

        // Another principal, same IP, same moment: unaffected.
        let bob = timeout(
            WAIT,
            RawClient::new(server.url(), rev)
                .with_header("x-test-principal", &format!("bob-{rev}"))
                .connected(),
        )
        .await
        .unwrap()
        .unwrap();
        let reply = bob.call_tool("add", json!({"a": 2, "b": 2})).await.unwrap();
        assert_eq!(reply.status, 200, "{rev}: {reply:?}");
        assert_eq!(reply.tool_text(), Some("4"));
    }

    // Health checks are never limited.
    let http = reqwest::Client::new();
    for _ in 0..10 {
        let resp = timeout(WAIT, http.get(server.url_for("/healthz")).send())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("ratelimit").is_none());
    }
    // Two principals per revision, one key each.
    assert_eq!(layer.store().stats().entries, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_keys_use_the_real_peer_address() {
    let layer = Builder::new(Limit::per_minute(2))
        .key_by(KeyBy::Ip)
        .build()
        .unwrap();
    let server = serve(router(layer)).await;
    let client = RawClient::new(server.url(), Revision::V2026_07_28)
        // A client's own X-Forwarded-For is not believed: no trusted proxies.
        .with_header("x-forwarded-for", "198.51.100.1");
    for _ in 0..2 {
        assert_eq!(
            client
                .call_tool("echo", json!({"text": "hi"}))
                .await
                .unwrap()
                .status,
            200
        );
    }
    let other = RawClient::new(server.url(), Revision::V2026_07_28)
        .with_header("x-forwarded-for", "198.51.100.2");
    let reply = other
        .call_tool("echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(reply.status, 429, "both come from 127.0.0.1: {reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_without_connect_info_is_a_500_naming_the_problem() {
    let layer = Builder::new(Limit::per_minute(2))
        .key_by(KeyBy::Ip)
        .build()
        .unwrap();
    let app = router(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    // `into_make_service()`: no ConnectInfo.
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app.into_make_service()).await;
    });
    let client = RawClient::new(format!("http://{addr}/mcp"), Revision::V2026_07_28);
    let reply = client
        .call_tool("echo", json!({"text": "hi"}))
        .await
        .unwrap();
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.error_code(),
        Some(tower_armor_rate_limit::CODE_MISCONFIGURED)
    );
    let message = reply.error().unwrap()["message"].as_str().unwrap();
    assert!(message.contains("no peer address"), "{message}");
    task.abort();
}
