//! Per-frame overhead of the SSE wrapper (`SseBody`: boundary tracking, keep-alive clock, idle
//! clock, shutdown check) against the bare body, over a streamed call of 200 progress events and
//! a result. Two shapes: every frame ready at once, and a `Pending` before each frame (as on a
//! real connection, where each poll that finds nothing re-arms the keep-alive timer in place).
//!
//! Allocations: `crates/sse/tests/alloc.rs` counts 0 per frame (a counting global allocator
//! needs `unsafe`, which the workspace lints forbid here).
//!
//! Run: `cargo bench -p tower-armor-benches --bench sse`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_sse::SseLayer;

fn frames() -> Vec<Bytes> {
    let mut v = vec![Bytes::from_static(b"id: 0\ndata:\n\n")];
    for i in 0..200 {
        v.push(Bytes::from(format!(
            "id: {i}\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"t\",\"progress\":{i},\"total\":200}}}}\n\n"
        )));
    }
    v.push(Bytes::from_static(
        b"id: 201\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"ok\"}]}}\n\n",
    ));
    v
}

/// Frames from a queue; with `pend`, a `Pending` (woken at once) before each frame.
struct Queue {
    frames: VecDeque<Bytes>,
    pend: bool,
    pending_next: bool,
}

impl Body for Queue {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.pend && self.pending_next {
            self.pending_next = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pending_next = true;
        Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

fn answer(frames: &[Bytes], pend: bool) -> Response<Queue> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Queue {
            frames: frames.iter().cloned().collect(),
            pend,
            pending_next: true,
        })
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let frames = frames();
    let mut g = c.benchmark_group("sse_wrapper");
    g.throughput(Throughput::Elements(frames.len() as u64));
    let layer = SseLayer::builder()
        .keep_alive(Some(Duration::from_secs(15)))
        .idle_timeout(Some(Duration::from_secs(300)))
        .build()
        .unwrap();
    for (pend, shape) in [(false, "ready"), (true, "pending_between")] {
        let bare = service_fn(|_req: Request<()>| {
            let r = answer(&frames, pend);
            async move { Ok::<_, Infallible>(r) }
        });
        g.bench_function(format!("bare/{shape}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = bare.oneshot(Request::get("/mcp").body(()).unwrap()).await;
                    resp.unwrap().into_body().collect().await.unwrap()
                })
            })
        });
        let wrapped = layer.layer(bare);
        g.bench_function(format!("sse_layer/{shape}"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    // A GET: long-lived, so the idle clock runs as well.
                    let resp = wrapped
                        .clone()
                        .oneshot(Request::get("/mcp").body(()).unwrap())
                        .await;
                    Box::pin(resp.unwrap().into_body()).collect().await.unwrap()
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
