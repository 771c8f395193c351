//! The SSE wrapper allocates nothing per frame: the keep-alive timer is reset in place and the
//! boundary tracker reuses its buffers. Counted by `allocation-counter`, which counts the
//! current thread's allocations only (a process-wide count also saw the test harness's other
//! threads, now and then, on a busy machine).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_sse::SseLayer;

/// Frames from a queue, with a `Pending` (immediately woken) before each one, so that every
/// frame goes through the layer's timer path (deadline moved, sleep reset).
struct Queue {
    frames: VecDeque<Bytes>,
    pend: bool,
}

impl Body for Queue {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.pend {
            self.pend = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.pend = true;
        Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[test]
fn no_allocation_per_frame() {
    const N: usize = 2000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut body = rt.block_on(async {
        let layer = SseLayer::builder()
            .keep_alive(Some(Duration::from_secs(15)))
            .idle_timeout(Some(Duration::from_secs(60)))
            .build()
            .unwrap();
        let mut frames = VecDeque::with_capacity(N + 10);
        for i in 0..N + 10 {
            // Events split across frames too, and a long one (beyond the tracker's prefix).
            let f: &'static [u8] = match i % 4 {
                0 => b"id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n",
                1 => b"data: {\"partial\":",
                2 => b"true}\n\n",
                _ => b": comment\n\n",
            };
            frames.push_back(Bytes::from_static(f));
        }
        let mut long = vec![b'x'; 4096];
        long.splice(0..0, b"data: ".iter().copied());
        long.extend_from_slice(b"\n\n");
        frames.push_front(Bytes::from(long));
        let svc = layer.layer(service_fn(move |_req: Request<()>| {
            let frames = frames.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "text/event-stream")
                        .body(Queue { frames, pend: true })
                        .unwrap(),
                )
            }
        }));
        // A GET: long-lived, so the idle clock runs too.
        let resp = svc.oneshot(Request::get("/mcp").body(()).unwrap()).await.unwrap();
        let mut body = Box::pin(resp.into_body());
        // Warm-up: the timer is created, the tracker's buffers grow to their bound.
        for _ in 0..11 {
            body.frame().await.unwrap().unwrap();
        }
        body
    });
    let info = allocation_counter::measure(|| {
        rt.block_on(async {
            for _ in 0..N {
                body.frame().await.unwrap().unwrap();
            }
        })
    });
    println!(
        "{N} frames: {} allocations (reallocations included)",
        info.count_total
    );
    assert_eq!(info.count_total, 0, "{info:?}");
}
