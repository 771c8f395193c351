//! What the inspector and the response observer allocate for hostile messages, counted by a
//! global allocator. The tests take turns (`ONE_AT_A_TIME`), so nothing else allocates while one
//! counts.

use std::alloc::System;
use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::observe::observe_response;
use tower_armor_mcp::{McpBody, Outcome, RequestId};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An id that is an array of a million elements (2 MiB of JSON) is refused as an invalid
/// request without being built: a JSON value per element would take 16 times the body's size
/// (32 bytes each, more while its vector grows).
#[tokio::test]
async fn a_huge_id_is_refused_without_building_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let elements = 1_000_000;
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/list","id":[{}0]}}"#,
        "0,".repeat(elements - 1)
    );
    let len = body.len();
    let svc = McpInspectLayer::new()
        .max_body_bytes(4 << 20)
        .layer(service_fn(|_: Request<McpBody>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body)
        .unwrap();
    let region = Region::new(GLOBAL);
    let resp = svc.oneshot(req).await.unwrap();
    let change = region.change();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // The body is read once into a buffer of its size; what parsing adds is small.
    assert!(
        change.bytes_allocated < 2 * len + (64 << 10),
        "allocated {} bytes for a body of {len}",
        change.bytes_allocated
    );
}

/// The same id in a server's (or an upstream's) streamed answer, where the observer reads every
/// event's id to find the call's final response: skipped, not built. The event's data is
/// buffered once; building the id would take 16 times that.
#[tokio::test]
async fn a_huge_id_in_an_answer_is_skipped_without_building_it() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let elements = 1_000_000;
    let hostile = format!(
        "data: {{\"jsonrpc\":\"2.0\",\"id\":[{}0],\"result\":{{}}}}\n\n",
        "0,".repeat(elements - 1)
    );
    let len = hostile.len();
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from(hostile))),
        Ok(Frame::data(Bytes::from_static(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
        ))),
    ];
    let resp = Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap();
    let region = Region::new(GLOBAL);
    let (resp, handle) = observe_response(resp, Some(&RequestId::Number(1)));
    let mut body = std::pin::pin!(resp.into_body());
    while let Some(frame) = body.frame().await {
        frame.unwrap();
    }
    let change = region.change();
    assert_eq!(handle.outcome(), Some(Outcome::Success));
    // The event's data is gathered in one buffer (grown by doubling); the id costs nothing more.
    assert!(
        change.bytes_allocated + change.bytes_reallocated.unsigned_abs() < 4 * len + (64 << 10),
        "allocated {} (+{} reallocated) bytes for an event of {len}",
        change.bytes_allocated,
        change.bytes_reallocated
    );
}
