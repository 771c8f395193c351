//! `McpInspectLayer` per request, small and 64 KiB bodies, against the closest hand-written
//! equivalent: tower-http's `RequestBodyLimit` + collecting the body + `serde_json::Value`.
//!
//! Run: `cargo bench -p tower-armor-benches --bench inspect`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{McpBody, McpRequest};

fn body_of(size: usize) -> Bytes {
    let pad = size.saturating_sub(120);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(pad)
    ))
}

fn request(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post("/mcp")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Full::new(body.clone()))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("inspect");
    for size in [200usize, 64 << 10] {
        let body = body_of(size);
        g.throughput(Throughput::Bytes(body.len() as u64));

        // Baseline: a bare service that only reads the body.
        let bare = service_fn(|req: Request<Full<Bytes>>| async move {
            let b = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(b.len().to_string()))
        });
        g.bench_with_input(BenchmarkId::new("bare_collect", size), &body, |b, body| {
            b.iter(|| rt.block_on(bare.oneshot(request(body))).unwrap())
        });

        // Anchor: what servers hand-write today: a body limit, collect, parse to `Value`.
        let anchor = tower_http::limit::RequestBodyLimitLayer::new(4 << 20).layer(service_fn(
            |req: Request<tower_http::body::Limited<Full<Bytes>>>| async move {
                let b = req.into_body().collect().await.unwrap().to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                let tool = v["params"]["name"].as_str().map(str::len);
                Ok::<_, Infallible>(Response::new(tool.unwrap_or(0).to_string()))
            },
        ));
        g.bench_with_input(
            BenchmarkId::new("tower_http_limit_value", size),
            &body,
            |b, body| b.iter(|| rt.block_on(anchor.oneshot(request(body))).unwrap()),
        );

        // Ours: bounded read + facts + mirrored-header checks; the inner service reads the facts.
        let mut ours =
            McpInspectLayer::new().layer(service_fn(|req: Request<McpBody>| async move {
                let tool = req
                    .extensions()
                    .get::<McpRequest>()
                    .and_then(|f| f.tool())
                    .map(str::len);
                Ok::<_, Infallible>(Response::new(tool.unwrap_or(0).to_string()))
            }));
        g.bench_with_input(BenchmarkId::new("mcp_inspect", size), &body, |b, body| {
            b.iter(|| {
                rt.block_on(async {
                    let s = ServiceExt::<Request<Full<Bytes>>>::ready(&mut ours)
                        .await
                        .unwrap();
                    s.call(request(body)).await.unwrap()
                })
            })
        });
        // The same request in a 2025-11-25 session: its id is marked in progress (and freed
        // again, as the answer has no completion handle) in the layer's table.
        g.bench_with_input(
            BenchmarkId::new("mcp_inspect_session", size),
            &body,
            |b, body| {
                b.iter(|| {
                    rt.block_on(async {
                        let s = ServiceExt::<Request<Full<Bytes>>>::ready(&mut ours)
                            .await
                            .unwrap();
                        let mut req = request(body);
                        let h = req.headers_mut();
                        h.insert("mcp-session-id", HeaderValue::from_static("s-0123456789"));
                        h.insert(
                            "mcp-protocol-version",
                            HeaderValue::from_static("2025-11-25"),
                        );
                        s.call(req).await.unwrap()
                    })
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
