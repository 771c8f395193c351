//! The bulkhead against its anchors: tower's `ConcurrencyLimit` and tower-resilience's bulkhead.
//!
//! - `bulkhead_call`: per-call cost on the typed path (`ToolCall` → `ToolReply`), uncontended,
//!   current-thread runtime, calls made back to back inside one `block_on`. `baseline` is the
//!   inner service alone; a layer's overhead is its time minus the baseline. Target: tower-armor's
//!   overhead at most 1.5× `ConcurrencyLimit`'s.
//! - `bulkhead_contended`: throughput with 2 worker threads and 64 tasks sharing 8 permits (the
//!   inner service yields once while holding its permit, so tasks really wait for each other);
//!   each worker thread drives a current-thread runtime with 32 of the tasks.
//!   Target: at least 0.9× `ConcurrencyLimit`'s throughput.
//!
//! Run: `cargo bench -p tower-armor-benches --bench bulkhead`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::future::{Ready, ready};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value};
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor_bulkhead::BulkheadLayer;
use tower_armor_mcp::{BoxError, KnownTools, ToolCall, ToolReply};
use tower_resilience::bulkhead::BulkheadLayer as ResilienceBulkheadLayer;

const PERMITS: usize = 8;
const TASKS: usize = 64;
const CALLS_PER_TASK: usize = 64;

/// The wall clock for `iter_custom` (bench code: paused tokio time plays no part here).
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn timed<F: FnOnce()>(f: F) -> Duration {
    let start = std::time::Instant::now();
    f();
    start.elapsed()
}

fn reply() -> ToolReply {
    ToolReply::Result {
        is_error: false,
        result: Value::Null,
    }
}

fn call() -> ToolCall {
    ToolCall::new("add", Map::new())
}

/// An inner service that answers at once.
fn instant_inner() -> impl Service<
    ToolCall,
    Response = ToolReply,
    Error = BoxError,
    Future = Ready<Result<ToolReply, BoxError>>,
> + Clone {
    service_fn(|_call: ToolCall| ready(Ok::<_, BoxError>(reply())))
}

/// Runs `iters` calls back to back through `svc` on a current-thread runtime.
fn run_calls<S>(rt: &tokio::runtime::Runtime, svc: &mut S, iters: u64) -> Duration
where
    S: Service<ToolCall>,
    S::Error: std::fmt::Debug,
    S::Response: std::fmt::Debug,
{
    timed(|| {
        rt.block_on(async {
            for _ in 0..iters {
                let out = svc.ready().await.unwrap().call(call()).await;
                std::hint::black_box(out.unwrap());
            }
        })
    })
}

fn per_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("bulkhead_call");
    g.throughput(Throughput::Elements(1));

    let mut baseline = instant_inner();
    g.bench_function("baseline", |b| {
        b.iter_custom(|iters| run_calls(&rt, &mut baseline, iters))
    });

    let mut limit = ConcurrencyLimitLayer::new(PERMITS).layer(instant_inner());
    g.bench_function("tower_concurrency_limit", |b| {
        b.iter_custom(|iters| run_calls(&rt, &mut limit, iters))
    });

    let mut resilience = ResilienceBulkheadLayer::builder()
        .max_concurrent_calls(PERMITS)
        .build()
        .unwrap()
        .layer(instant_inner());
    g.bench_function("tower_resilience_bulkhead", |b| {
        b.iter_custom(|iters| run_calls(&rt, &mut resilience, iters))
    });

    let mut armor = BulkheadLayer::new(PERMITS).layer(instant_inner());
    g.bench_function("tower_armor_bulkhead", |b| {
        b.iter_custom(|iters| run_calls(&rt, &mut armor, iters))
    });

    let mut keyed = BulkheadLayer::new(PERMITS)
        .by_tool(KnownTools::from_names(["add", "echo", "slow"]))
        .layer(instant_inner());
    g.bench_function("tower_armor_bulkhead_by_tool", |b| {
        b.iter_custom(|iters| run_calls(&rt, &mut keyed, iters))
    });
    g.finish();
}

/// `TASKS` tasks, each making `CALLS_PER_TASK` calls through its own clone of `svc`, spread over
/// two worker threads (each drives a current-thread runtime: the benches package has no
/// `rt-multi-thread`; the permits are shared across both threads all the same).
fn contended_batch<S>(workers: &[tokio::runtime::Runtime; 2], svc: &S, iters: u64) -> Duration
where
    S: Service<ToolCall> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug + Send,
    S::Response: Send,
{
    timed(|| {
        for _ in 0..iters {
            std::thread::scope(|scope| {
                for rt in workers {
                    let svc = svc.clone();
                    scope.spawn(move || {
                        rt.block_on(async move {
                            let tasks: Vec<_> = (0..TASKS / 2)
                                .map(|_| {
                                    let mut svc = svc.clone();
                                    tokio::spawn(async move {
                                        for _ in 0..CALLS_PER_TASK {
                                            let out = svc.ready().await.unwrap().call(call()).await;
                                            std::hint::black_box(out.unwrap());
                                        }
                                    })
                                })
                                .collect();
                            for t in tasks {
                                t.await.unwrap();
                            }
                        })
                    });
                }
            });
        }
    })
}

fn contended(c: &mut Criterion) {
    let workers = [0, 1].map(|_| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    });
    // Holds its permit across one yield, so other tasks find the permits taken and wait.
    let inner = service_fn(|_call: ToolCall| async {
        tokio::task::yield_now().await;
        Ok::<_, BoxError>(reply())
    });
    let mut g = c.benchmark_group("bulkhead_contended");
    g.throughput(Throughput::Elements((TASKS * CALLS_PER_TASK) as u64));
    g.sample_size(30);

    g.bench_function(BenchmarkId::new("baseline", TASKS), |b| {
        b.iter_custom(|iters| contended_batch(&workers, &inner, iters))
    });

    let limit = ConcurrencyLimitLayer::new(PERMITS).layer(inner);
    g.bench_function(BenchmarkId::new("tower_concurrency_limit", TASKS), |b| {
        b.iter_custom(|iters| contended_batch(&workers, &limit, iters))
    });

    let resilience = ResilienceBulkheadLayer::builder()
        .max_concurrent_calls(PERMITS)
        .build()
        .unwrap()
        .layer(inner);
    g.bench_function(BenchmarkId::new("tower_resilience_bulkhead", TASKS), |b| {
        b.iter_custom(|iters| contended_batch(&workers, &resilience, iters))
    });

    // A line as long as the tasks: every call waits its turn, none is refused.
    let armor = BulkheadLayer::new(PERMITS).max_queue(TASKS).layer(inner);
    g.bench_function(BenchmarkId::new("tower_armor_bulkhead", TASKS), |b| {
        b.iter_custom(|iters| contended_batch(&workers, &armor, iters))
    });
    g.finish();
}

criterion_group!(benches, per_call, contended);
criterion_main!(benches);
