//! `BearerAuthLayer` per accepted request with 1 and with 100 tokens (the cost must be flat),
//! a rejected request, and tower-http's deprecated `ValidateRequestHeaderLayer::bearer` (one
//! token, not constant-time, no challenge) as the anchor, each beside a bare `service_fn` in the
//! same run.
//!
//! Overhead = a variant's time per call minus `bare` in the same group. Two groups: without a
//! `tracing` subscriber, and with a `fmt` subscriber at INFO (writing to a sink) and a request span
//! carrying an empty `principal` field, as the correlation-id layer opens it.
//!
//! The principal insert, the `Authorization` removal, the session-table check (no session id
//! here, so the binding is prepared for an `initialize` answer) are all included.
//!
//! Run: `cargo bench -p tower-armor-benches --bench bearer_auth`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

#[path = "../common/bearer.rs"]
mod common;
use common::{TOKEN, bare, request, tokens};

/// One call, polled to completion without a runtime (every service here is ready at once).
fn call_once<S, B>(svc: &mut S, req: Request<()>) -> Response<B>
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let span = tracing::info_span!("request", principal = tracing::field::Empty);
    let _enter = span.enter();
    let s = svc.ready().now_or_never().unwrap().unwrap();
    s.call(req).now_or_never().unwrap().unwrap()
}

fn group(c: &mut Criterion, name: &str) {
    let mut g = c.benchmark_group(name);
    let bare = bare();

    let mut s = bare;
    g.bench_function("bare", |b| {
        b.iter_batched(
            || request("Bearer Zq9xW3vKpL7mT2bN8cR5"),
            |r| call_once(&mut s, r),
            BatchSize::SmallInput,
        )
    });

    for n in [1usize, 100] {
        let mut s = tokens(n).layer(bare);
        g.bench_function(format!("ours_{n}_tokens"), |b| {
            b.iter_batched(
                || request("Bearer Zq9xW3vKpL7mT2bN8cR5"),
                |r| {
                    let resp = call_once(&mut s, r);
                    assert_eq!(resp.status(), 200);
                    resp
                },
                BatchSize::SmallInput,
            )
        });
    }

    let mut s = tokens(100).layer(bare);
    g.bench_function("ours_rejected_100_tokens", |b| {
        b.iter_batched(
            || request("Bearer Zq9xW3vKpL7mT2bN8cR6"),
            |r| {
                let resp = call_once(&mut s, r);
                assert_eq!(resp.status(), 401);
                resp
            },
            BatchSize::SmallInput,
        )
    });

    #[allow(deprecated)]
    let mut s = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(TOKEN).layer(bare);
    g.bench_function("tower_http_bearer", |b| {
        b.iter_batched(
            || request("Bearer Zq9xW3vKpL7mT2bN8cR5"),
            |r| {
                let resp = call_once(&mut s, r);
                assert_eq!(resp.status(), 200);
                resp
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    group(c, "bearer_auth");
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || group(c, "bearer_auth_info_subscriber"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
