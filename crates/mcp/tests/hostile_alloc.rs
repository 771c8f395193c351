//! What the inspector allocates for a hostile message, counted by a global allocator. One test
//! in this binary, so nothing else allocates meanwhile.

use std::alloc::System;
use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_mcp::McpBody;
use tower_armor_mcp::inspect::McpInspectLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// An id that is an array of a million elements (2 MiB of JSON) is refused as an invalid
/// request without being built: a JSON value per element would take 16 times the body's size
/// (32 bytes each, more while its vector grows).
#[tokio::test]
async fn a_huge_id_is_refused_without_building_it() {
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
