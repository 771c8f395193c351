//! Allocations per call of the server layer (no subscriber installed), counted by a global
//! allocator. One test in this binary, so nothing else allocates meanwhile.

use std::alloc::System;
use std::convert::Infallible;

use http::{HeaderValue, Request, Response};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor_correlation_id::CorrelationIdLayer;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Clone)]
struct Existing;

fn request(id: bool, realistic: bool) -> Request<()> {
    let mut b = Request::get("/mcp");
    if id {
        // Like a header parsed by hyper: bytes shared with the read buffer, cheap to clone.
        b = b.header("x-request-id", HeaderValue::from_static("case-42"));
    }
    if realistic {
        // What a request has by the time it reaches a layer in axum: some headers, and
        // extensions (axum and hyper put some there).
        b = b
            .header("content-type", HeaderValue::from_static("application/json"))
            .extension(Existing);
    }
    b.body(()).unwrap()
}

fn response(realistic: bool) -> Response<()> {
    let mut r = Response::new(());
    if realistic {
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("text/event-stream"),
        );
    }
    r
}

#[test]
fn allocations_per_call() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let measure = |id: bool, realistic: bool, layered: bool| -> f64 {
        let inner =
            service_fn(
                move |_req: Request<()>| async move { Ok::<_, Infallible>(response(realistic)) },
            );
        let svc = CorrelationIdLayer::new().layer(inner);
        // The median call: an allocation that comes once in a while (a runtime or thread-local
        // buffer growing) is not one per call, and would make the mean flaky.
        let mut counts = Vec::new();
        const N: usize = 100;
        for i in 0..N + 4 {
            let req = request(id, realistic);
            let (mut s, mut b) = (svc.clone(), inner);
            let region = Region::new(GLOBAL);
            rt.block_on(async {
                if layered {
                    drop(s.ready().await.unwrap().call(req).await);
                } else {
                    drop(b.ready().await.unwrap().call(req).await);
                }
            });
            // The first calls warm up thread-locals and lazy statics.
            if i >= 4 {
                counts.push(region.change().allocations);
            }
        }
        counts.sort_unstable();
        counts[N / 2] as f64
    };
    let mut out = Vec::new();
    for (realistic, what) in [(false, "bare request"), (true, "axum-like request")] {
        for (id, idw) in [(true, "id present"), (false, "id generated")] {
            let overhead = measure(id, realistic, true) - measure(id, realistic, false);
            println!("{what}, {idw}: {overhead:.1} allocations per call");
            out.push(overhead);
        }
    }
    // Bare: the extensions map (2: box + table) + 2 boxed extensions, the response's header map
    // (2); generated: + the id's shared buffer and the request's header map (2: the bare request
    // has none). An incoming id shares the header's buffer: no allocation.
    assert!(out[0] <= 6.0 && out[1] <= 9.0, "{out:?}");
    // Where maps exist already: two boxed extensions (+ the generated id's buffer).
    assert!(out[2] <= 2.0 && out[3] <= 3.0, "{out:?}");
}
