//! The SSE layer's one log-capturing test, alone in its own test binary: a `tracing` callsite
//! first hit on another test thread (with no subscriber) can cache "never" and hide the event
//! from this test's subscriber, which made it flaky next to the other mock tests.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_sse::SseLayer;
use tower_armor_test_support::LogCapture;

fn get() -> Request<()> {
    Request::get("/mcp").body(()).unwrap()
}

#[tokio::test]
async fn compressed_sse_is_logged_and_left_alone() {
    let cap = LogCapture::default();
    let writer = cap.clone();
    let sub = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(sub);
    tracing::callsite::rebuild_interest_cache();
    let svc = SseLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream")
                .header(header::CONTENT_ENCODING, "gzip")
                .body(http_body_util::Full::new(Bytes::from_static(
                    b"\x1f\x8b...",
                )))
                .unwrap(),
        )
    }));
    let resp = svc.oneshot(get()).await.unwrap();
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, &b"\x1f\x8b..."[..], "bytes untouched");
    let out = cap.text();
    assert!(out.contains("ERROR") && out.contains("compressed"), "{out}");
}
