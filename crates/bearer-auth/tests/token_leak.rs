//! Every `tracing` line at TRACE level (ours, rmcp's, hyper's, reqwest's) across accepted and
//! rejected requests, session binding, token-file reload and the client layer: no token, and no
//! 8-byte piece of one, appears.
//!
//! Alone in its test binary: it installs the global subscriber.

use std::time::Duration;

use axum::Router;
use http::{Request, Response};
use serde_json::json;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_armor_bearer_auth::allow::{AllowPolicy, ToolAllowListLayer};
use tower_armor_bearer_auth::{BearerAuthLayer, InjectBearerLayer};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{BoxError, Secret};
use tower_armor_test_support::{
    LogCapture, RawClient, Revision, ServerOptions, demo_service, serve,
};

const ALICE: &str = "Zq9xW3vKpL7alice";
const BOB: &str = "Mv2Rt8YhQw4bob";
const WRONG: &str = "Xk5Jd9PnGuessed";
const ROTATED: &str = "Fh3Ls6BzRotated";
const UPSTREAM: &str = "Uc7Tn1EqUpstream";
const SWAPPED: &str = "Wr4Hb8JmSwapped";

async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("test step took longer than its bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_any_log_line() {
    let capture = LogCapture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let dir = std::env::temp_dir().join(format!("tower-armor-leak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens");
    std::fs::write(&file, format!("alice:{ALICE}\nbob:{BOB}\n")).unwrap();
    let auth = BearerAuthLayer::builder()
        .token_file(&file)
        .reload_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(auth)
        .layer(McpInspectLayer::new())
        .layer(ToolAllowListLayer::new(
            AllowPolicy::parse("bob:add").unwrap(),
        ))
        .service(demo_service(&ServerOptions::default()));
    let server = serve(Router::new().nest_service("/mcp", svc)).await;

    for rev in Revision::ALL {
        let alice = bounded(
            RawClient::new(server.url(), rev)
                .with_bearer(ALICE)
                .connected(),
        )
        .await
        .unwrap();
        let r = bounded(alice.call_tool("add", json!({"a": 1, "b": 2})))
            .await
            .unwrap();
        assert_eq!(r.tool_text(), Some("3"));
        let bob = bounded(
            RawClient::new(server.url(), rev)
                .with_bearer(BOB)
                .connected(),
        )
        .await
        .unwrap();
        let r = bounded(bob.list_tools()).await.unwrap();
        assert_eq!(r.tool_names(), ["add"]);
        let r = bounded(bob.call_tool("echo", json!({"text": "x"})))
            .await
            .unwrap();
        assert_eq!(r.error_code(), Some(-32602));
        for bad in [
            format!("Bearer {WRONG}"),
            format!("Bearer  {WRONG}"),
            format!("Basic {WRONG}"),
            format!("Bearer {WRONG},{ALICE}"),
        ] {
            let c = RawClient::new(server.url(), rev).with_header("authorization", &bad);
            let r = bounded(c.call("tools/list", json!({}))).await.unwrap();
            assert_eq!(r.status, 401);
        }
        if rev == Revision::V2025_11_25 {
            // Bob presenting alice's session.
            let mut thief = RawClient::new(server.url(), rev).with_bearer(BOB);
            thief.set_session_id(alice.session_id().map(str::to_owned));
            assert_eq!(bounded(thief.list_tools()).await.unwrap().status, 404);
            assert_eq!(bounded(alice.delete_session()).await.unwrap(), 202);
        }
    }

    // Rotation, then a broken file: both logged, neither with a token.
    std::fs::write(&file, format!("alice:{ROTATED}\n")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let c = RawClient::new(server.url(), Revision::V2026_07_28).with_bearer(ROTATED);
    assert_eq!(bounded(c.list_tools()).await.unwrap().status, 200);
    std::fs::write(&file, format!("alice:{ALICE} broken")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(bounded(c.list_tools()).await.unwrap().status, 200);

    // The client layer, with an inbound token it must replace.
    let inject = InjectBearerLayer::new(Secret::new(UPSTREAM)).layer(tower::service_fn(
        |req: Request<String>| async move {
            tracing::trace!(headers = ?req.headers(), "upstream request");
            Ok::<_, BoxError>(Response::new(String::new()))
        },
    ));
    let req = Request::post("/")
        .header("authorization", format!("Bearer {ALICE}"))
        .body(String::new())
        .unwrap();
    inject.oneshot(req).await.unwrap();
    server.shutdown().await;

    // A configuration written the wrong way round (`<token>:<name>`): the secret is taken for
    // a principal's name, and the startup line does not list it.
    let swapped = BearerAuthLayer::builder()
        .tokens(&format!("{SWAPPED}:alice"))
        .build()
        .unwrap();
    drop(swapped);

    let log = capture.text();
    assert!(
        log.contains("bearer authentication failed"),
        "the capture works"
    );
    assert!(log.contains("tokens reloaded"));
    assert!(log.contains("keeping the current tokens"));
    assert!(log.contains("upstream request") && log.contains("Sensitive"));
    let mut leaks = Vec::new();
    for token in [ALICE, BOB, WRONG, ROTATED, UPSTREAM, SWAPPED] {
        for w in token.as_bytes().windows(8) {
            let piece = std::str::from_utf8(w).unwrap();
            if log.contains(piece) {
                leaks.push(piece.to_owned());
            }
        }
    }
    assert!(leaks.is_empty(), "token bytes in the log: {leaks:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
