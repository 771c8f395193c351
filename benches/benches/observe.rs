//! Throughput of the SSE outcome observer (`ObservedBody`) against passing the same body through
//! untouched, over a realistic streamed call: progress notifications, then a final result.
//!
//! Run: `cargo bench -p tower-armor-benches --bench observe`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower_armor_mcp::RequestId;
use tower_armor_mcp::observe::observe_response;

fn frames() -> Vec<Bytes> {
    let mut v = Vec::new();
    v.push(Bytes::from_static(b"id: 0\ndata:\n\n"));
    for i in 0..200 {
        v.push(Bytes::from(format!(
            "id: {i}\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"t\",\"progress\":{i},\"total\":200,\"message\":\"working on step {i} of the job\"}}}}\n\n"
        )));
    }
    v.push(Bytes::from(format!(
        "id: 201\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"{}\"}}],\"isError\":false}}}}\n\n",
        "r".repeat(16 << 10)
    )));
    v
}

type B = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn response(frames: &[Bytes]) -> http::Response<B> {
    let f: Vec<Result<Frame<Bytes>, Infallible>> =
        frames.iter().cloned().map(|b| Ok(Frame::data(b))).collect();
    http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream::iter(f)))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let frames = frames();
    let total: usize = frames.iter().map(Bytes::len).sum();
    let mut g = c.benchmark_group("sse_observer");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("passthrough", |b| {
        b.iter(|| {
            rt.block_on(async {
                let body = response(&frames).into_body();
                body.collect().await.unwrap()
            })
        })
    });
    let id = RequestId::Number(7);
    g.bench_function("observed", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (resp, handle) = observe_response(response(&frames), Some(&id));
                let out = resp.into_body().collect().await.unwrap();
                assert!(handle.is_complete());
                out
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
