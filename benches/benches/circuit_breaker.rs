//! The circuit breaker's cost on the typed path (`ToolCall` → `ToolReply`), side by side with its
//! anchors, configured the same:
//!
//! - `success_overhead`: one call at a time, closed circuit, every call succeeds. Against
//!   failsafe (consecutive-failures policy, in a small tower adapter) and tower-resilience's
//!   breaker (count-based window of 100), with the inner service alone as the baseline.
//! - `contended`: 64 tasks on a 2-worker runtime sharing one breaker, every call succeeds;
//!   throughput against tower-resilience (count-based window of 100).
//! - `fast_fail`: cost per call of an open circuit (ours tripped and forced open, and the
//!   anchors tripped).
//!
//! Run: `cargo bench -p tower-armor-benches --bench circuit_breaker`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::future::{Future, Ready, ready};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use failsafe::backoff::Constant;
use failsafe::failure_policy::ConsecutiveFailures;
use serde_json::{Map, Value};
use tower::{Layer, Service, ServiceExt};
use tower_armor_circuit_breaker::{CircuitBreakerLayer, OpenDuration, State};
use tower_armor_mcp::{BoxError, ToolCall, ToolReply};
use tower_resilience::circuitbreaker::CircuitBreakerLayer as ResilienceLayer;

const TASKS: usize = 64;
const WINDOW: u32 = 100;
const CONSECUTIVE: u32 = 5;
const OPEN_FOR: Duration = Duration::from_secs(3600);

/// The wall clock for `iter_custom` (bench code: paused tokio time plays no part here).
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn timed<F: FnOnce()>(f: F) -> Duration {
    let start = std::time::Instant::now();
    f();
    start.elapsed()
}

fn call() -> ToolCall {
    ToolCall::new("add", Map::new())
}

#[derive(Debug)]
struct Boom;

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("boom")
    }
}

impl std::error::Error for Boom {}

/// The dependency: answers at once, with a result or (when `fail`) an error.
#[derive(Clone, Copy)]
struct Tools {
    fail: bool,
}

impl Service<ToolCall> for Tools {
    type Response = ToolReply;
    type Error = Boom;
    type Future = Ready<Result<ToolReply, Boom>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _call: ToolCall) -> Self::Future {
        ready(if self.fail {
            Err(Boom)
        } else {
            Ok(ToolReply::Result {
                is_error: false,
                result: Value::Null,
            })
        })
    }
}

// === failsafe, in a tower adapter ===

type FailsafeMachine = failsafe::StateMachine<ConsecutiveFailures<Constant>, ()>;

fn failsafe_machine() -> FailsafeMachine {
    let policy = failsafe::failure_policy::consecutive_failures(
        CONSECUTIVE,
        failsafe::backoff::constant(OPEN_FOR),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

/// failsafe's state machine as a tower layer: ask before the call, report after it.
#[derive(Clone)]
struct Failsafe<S> {
    inner: S,
    machine: FailsafeMachine,
}

impl<S> Service<ToolCall> for Failsafe<S>
where
    S: Service<ToolCall>,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = FailsafeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: ToolCall) -> Self::Future {
        if self.machine.is_call_permitted() {
            FailsafeFuture::Called(self.inner.call(req), self.machine.clone())
        } else {
            FailsafeFuture::Rejected
        }
    }
}

/// The adapter's rejection (a unit struct: boxing it allocates nothing).
#[derive(Debug)]
struct FailsafeOpen;

impl std::fmt::Display for FailsafeOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("circuit open")
    }
}

impl std::error::Error for FailsafeOpen {}

enum FailsafeFuture<F> {
    Called(F, FailsafeMachine),
    Rejected,
}

impl<F, T, E> Future for FailsafeFuture<F>
where
    F: Future<Output = Result<T, E>> + Unpin,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            FailsafeFuture::Called(f, machine) => match Pin::new(f).poll(cx) {
                Poll::Ready(Ok(v)) => {
                    machine.on_success();
                    Poll::Ready(Ok(v))
                }
                Poll::Ready(Err(e)) => {
                    machine.on_error();
                    Poll::Ready(Err(e.into()))
                }
                Poll::Pending => Poll::Pending,
            },
            FailsafeFuture::Rejected => Poll::Ready(Err(Box::new(FailsafeOpen))),
        }
    }
}

// === ours and tower-resilience, configured the same ===

fn ours_consecutive() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .no_failure_rate()
        .consecutive_failures(CONSECUTIVE)
        .open_duration(OpenDuration::Fixed(OPEN_FOR))
        .build()
        .unwrap()
}

fn ours_count_window() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .failure_rate(0.5)
        .count_window(WINDOW)
        .min_calls(WINDOW)
        .open_duration(OpenDuration::Fixed(OPEN_FOR))
        .build()
        .unwrap()
}

fn resilience_count_window() -> ResilienceLayer {
    ResilienceLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(WINDOW as usize)
        .minimum_number_of_calls(WINDOW as usize)
        .wait_duration_in_open(OPEN_FOR)
        .build()
        .unwrap()
}

/// Polls a future once with a no-op waker: every future here is ready at once.
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready at once"),
    }
}

/// One call through `svc`, readiness included.
fn one<S: Service<ToolCall>>(svc: &mut S, req: ToolCall) -> Result<S::Response, S::Error> {
    poll_once(std::future::poll_fn(|cx| svc.poll_ready(cx)))?;
    poll_once(svc.call(req))
}

fn success_overhead(c: &mut Criterion) {
    // tower-resilience's breaker may look for a runtime; give it one, as in an app.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("circuit_breaker/success_overhead");
    let ok = Tools { fail: false };

    g.bench_function("baseline (no breaker)", |b| {
        let mut svc = ok;
        b.iter_batched(call, |r| one(&mut svc, r).unwrap(), BatchSize::SmallInput)
    });

    // Consecutive-failures policy (5).
    g.bench_function("ours, consecutive failures", |b| {
        let mut svc = ours_consecutive().layer(ok);
        b.iter_batched(call, |r| one(&mut svc, r).unwrap(), BatchSize::SmallInput)
    });
    g.bench_function("failsafe, consecutive failures", |b| {
        let mut svc = Failsafe {
            inner: ok,
            machine: failsafe_machine(),
        };
        b.iter_batched(call, |r| one(&mut svc, r).unwrap(), BatchSize::SmallInput)
    });

    // Failure rate 0.5 over a count-based window of 100.
    g.bench_function("ours, count window 100", |b| {
        let mut svc = ours_count_window().layer(ok);
        b.iter_batched(call, |r| one(&mut svc, r).unwrap(), BatchSize::SmallInput)
    });
    g.bench_function("tower-resilience, count window 100", |b| {
        let mut svc = resilience_count_window().layer(ok);
        b.iter_batched(call, |r| one(&mut svc, r).unwrap(), BatchSize::SmallInput)
    });
    g.finish();
}

/// `iters` calls spread over TASKS tasks on a 2-worker runtime, each task with its own clone.
fn contended_run<S>(rt: &tokio::runtime::Runtime, svc: &S, iters: u64) -> Duration
where
    S: Service<ToolCall> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let per_task = iters.div_ceil(TASKS as u64);
    let calls: Vec<Vec<ToolCall>> = (0..TASKS)
        .map(|_| (0..per_task).map(|_| call()).collect())
        .collect();
    timed(|| {
        rt.block_on(async {
            let tasks: Vec<_> = calls
                .into_iter()
                .map(|batch| {
                    let mut svc = svc.clone();
                    tokio::spawn(async move {
                        for req in batch {
                            svc.ready().await.unwrap().call(req).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        })
    })
}

fn contended(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("circuit_breaker/contended_2_workers_64_tasks");
    g.throughput(Throughput::Elements(1));
    let ok = Tools { fail: false };
    let ours = ours_count_window().layer(ok);
    g.bench_function("ours, count window 100", |b| {
        b.iter_custom(|iters| contended_run(&rt, &ours, iters))
    });
    let resilience = {
        let _guard = rt.enter();
        resilience_count_window().layer(ok)
    };
    g.bench_function("tower-resilience, count window 100", |b| {
        b.iter_custom(|iters| contended_run(&rt, &resilience, iters))
    });
    g.bench_function("baseline (no breaker)", |b| {
        b.iter_custom(|iters| contended_run(&rt, &ok, iters))
    });
    g.finish();
}

fn fast_fail(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("circuit_breaker/fast_fail");
    let bad = Tools { fail: true };

    // Tripped by failures: the open path reads the clock to compute Retry-After.
    let layer = ours_consecutive();
    let mut ours = layer.layer(bad);
    for _ in 0..CONSECUTIVE {
        let _ = one(&mut ours, call());
    }
    assert_eq!(layer.handle().circuits()[0].state(), State::Open);
    g.bench_function("ours, open", |b| {
        b.iter_batched(
            call,
            |r| one(&mut ours, r).unwrap_err(),
            BatchSize::SmallInput,
        )
    });

    let layer = ours_consecutive();
    layer.handle().force_open();
    let mut forced = layer.layer(bad);
    g.bench_function("ours, forced open", |b| {
        b.iter_batched(
            call,
            |r| one(&mut forced, r).unwrap_err(),
            BatchSize::SmallInput,
        )
    });

    let mut fs = Failsafe {
        inner: bad,
        machine: failsafe_machine(),
    };
    for _ in 0..CONSECUTIVE {
        let _ = one(&mut fs, call());
    }
    g.bench_function("failsafe, open", |b| {
        b.iter_batched(
            call,
            |r| one(&mut fs, r).unwrap_err(),
            BatchSize::SmallInput,
        )
    });

    let mut resilience = resilience_count_window().layer(bad);
    for _ in 0..WINDOW {
        let _ = one(&mut resilience, call());
    }
    g.bench_function("tower-resilience, open", |b| {
        b.iter_batched(
            call,
            |r| one(&mut resilience, r).unwrap_err(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// The floor of any breaker whose response future is `'static`: the future must own a handle
/// to the circuit to report the outcome, so one `Arc` clone and one drop per call.
fn arc_floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("circuit_breaker/floor");
    let shared = std::sync::Arc::new(0u64);
    g.bench_function("arc clone + drop", |b| {
        b.iter(|| drop(std::hint::black_box(std::sync::Arc::clone(&shared))))
    });
    g.finish();
}

criterion_group!(benches, success_overhead, contended, fast_fail, arc_floor);
criterion_main!(benches);
