//! The correlation layer per request (validate or generate the id, read the trace context, open
//! the span, echo the id) against tower-http's `SetRequestId` + `PropagateRequestId` with
//! `MakeRequestUuid` (no validation, no trace context, no span), with and without a `tracing`
//! subscriber at INFO. Overhead = time per call minus the bare `service_fn` of the same run.
//! Also the pieces: id generation (UUID v7) against tower-http's `MakeRequestUuid` (UUID v4),
//! `traceparent` parsing, and the per-frame cost of the traced body.
//!
//! Allocations per call are counted by `crates/correlation-id/tests/alloc.rs` (a counting global
//! allocator needs `unsafe`, which the workspace lints forbid here).
//!
//! Run: `cargo bench -p tower-armor-benches --bench correlation_id`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{HeaderValue, Request};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor_correlation_id::{CorrelationIdLayer, TraceContext, TracedBody, generate};
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer,
};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[path = "../common/correlation.rs"]
mod common;
use common::{answer, request};

/// Calls a service whose futures are ready at once, without a runtime.
fn call<S, R>(svc: &mut S, req: Request<()>) -> R
where
    S: Service<Request<()>, Response = R, Error = Infallible>,
{
    let ready = svc.ready().now_or_never().unwrap().unwrap();
    ready.call(req).now_or_never().unwrap().unwrap()
}

fn per_call(c: &mut Criterion, group: &str) {
    let bare = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(answer()) });
    let mut g = c.benchmark_group(group);
    for (id, label) in [(true, "id_present"), (false, "id_generated")] {
        let mut svc = bare;
        g.bench_function(format!("bare/{label}"), |b| {
            b.iter_batched(
                || request(id),
                |req| call(&mut svc, req),
                BatchSize::SmallInput,
            )
        });

        let mut anchor = SetRequestIdLayer::x_request_id(MakeRequestUuid)
            .layer(PropagateRequestIdLayer::x_request_id().layer(bare));
        g.bench_function(format!("tower_http_set_propagate_uuid/{label}"), |b| {
            b.iter_batched(
                || request(id),
                |req| call(&mut anchor, req),
                BatchSize::SmallInput,
            )
        });

        let mut ours = CorrelationIdLayer::new().layer(bare);
        g.bench_function(format!("correlation_id/{label}"), |b| {
            b.iter_batched(
                || request(id),
                |req| call(&mut ours, req),
                BatchSize::SmallInput,
            )
        });
    }
    let mut ours = CorrelationIdLayer::new().layer(bare);
    g.bench_function("correlation_id/id_present+traceparent", |b| {
        b.iter_batched(
            || {
                let mut r = request(true);
                r.headers_mut()
                    .insert("traceparent", HeaderValue::from_static(TRACEPARENT));
                r
            },
            |req| call(&mut ours, req),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn pieces(c: &mut Criterion) {
    let mut g = c.benchmark_group("correlation_id_pieces");
    g.bench_function("generate_uuid_v7", |b| b.iter(generate));
    let mut make = MakeRequestUuid;
    let req = request(false);
    g.bench_function("tower_http_make_request_uuid_v4", |b| {
        b.iter(|| make.make_request_id(&req))
    });
    g.bench_function("traceparent_parse", |b| {
        b.iter(|| TraceContext::parse(std::hint::black_box(TRACEPARENT.as_bytes())))
    });
    g.bench_function("trace_new_root", |b| b.iter(TraceContext::new_root));
    g.finish();
}

type Frames =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn frames() -> Frames {
    let f: Vec<Result<Frame<Bytes>, Infallible>> = (0..100)
        .map(|_| Ok(Frame::data(Bytes::from_static(b"data: {}\n\n"))))
        .collect();
    StreamBody::new(futures_util::stream::iter(f))
}

fn body(c: &mut Criterion, group: &str) {
    let mut g = c.benchmark_group(group);
    g.throughput(criterion::Throughput::Elements(100));
    g.bench_function("bare_100_frames", |b| {
        b.iter(|| frames().collect().now_or_never().unwrap().unwrap())
    });
    g.bench_function("traced_100_frames", |b| {
        b.iter(|| {
            let span = tracing::info_span!("mcp.request", request_id = "case-42");
            TracedBody::new(frames(), span)
                .collect()
                .now_or_never()
                .unwrap()
                .unwrap()
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    per_call(c, "correlation_id/no_subscriber");
    body(c, "correlation_body/no_subscriber");
    pieces(c);
    // The same with a subscriber at INFO that formats every span and event (into a sink).
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    per_call(c, "correlation_id/info_subscriber");
    body(c, "correlation_body/info_subscriber");
}

criterion_group!(benches, bench);
criterion_main!(benches);
