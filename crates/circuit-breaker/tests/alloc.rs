//! Allocations per call, counted by a counting global allocator (`allocation-counter`, which
//! counts the current thread's allocations) in this test binary of its own.
//!
//! - Typed path (`ToolCall` / `ToolReply`), closed circuit: zero allocations per call, whatever
//!   the policies, window kind or keying.
//! - HTTP path: no more than observing the answer costs by itself (the completion handle and
//!   its listener).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::{Layer, Service};
use tower_armor_circuit_breaker::{Builder, KeyBy, State};
use tower_armor_mcp::{
    CallResponse, KnownTools, McpRequest, MessageKind, Method, RequestId, ToolCall, ToolReply,
};

fn poll_now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the future was not ready"),
    }
}

/// A tool service whose replies cost nothing to build; every third call fails.
#[derive(Clone, Default)]
struct Tools {
    n: u64,
}

impl Service<ToolCall> for Tools {
    type Response = ToolReply;
    type Error = Infallible;
    type Future = Ready<Result<ToolReply, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _call: ToolCall) -> Self::Future {
        self.n += 1;
        let reply = if self.n.is_multiple_of(3) {
            ToolReply::Error {
                code: -32603,
                message: String::new(),
            }
        } else {
            ToolReply::Result {
                is_error: false,
                result: serde_json::Value::Null,
            }
        };
        ready(Ok(reply))
    }
}

fn typed_calls(n: usize) -> Vec<ToolCall> {
    (0..n)
        .map(|i| ToolCall::new(if i % 2 == 0 { "add" } else { "echo" }, Default::default()))
        .collect()
}

fn typed_allocations(b: Builder) -> u64 {
    let layer = b.build().unwrap();
    let mut svc = layer.layer(Tools::default());
    // Warm up: creates the keys of a keyed breaker.
    for call in typed_calls(10) {
        poll_now(svc.call(call)).unwrap();
    }
    let calls = typed_calls(3_000);
    let info = allocation_counter::measure(|| {
        for call in calls {
            let reply = poll_now(svc.call(call)).unwrap();
            std::hint::black_box(reply);
        }
    });
    for c in layer.handle().circuits() {
        assert_eq!(c.state(), State::Closed, "{c:?}");
    }
    info.count_total
}

#[test]
fn the_typed_path_allocates_nothing_per_call() {
    let never_trips = || Builder::new().failure_rate(1.0).min_calls(10);
    let cases = [
        ("count window", never_trips()),
        (
            "count window + consecutive + slow rate",
            never_trips()
                .consecutive_failures(1_000)
                .slow_call_rate(1.0, Duration::from_secs(5)),
        ),
        (
            "time window",
            never_trips().time_window(Duration::from_secs(10), 10),
        ),
        (
            "consecutive failures only",
            Builder::new().no_failure_rate().consecutive_failures(1_000),
        ),
        (
            "keyed per tool",
            never_trips().key_by(KeyBy::Tool(KnownTools::from_names(["add", "echo"]))),
        ),
        ("keyed per method", never_trips().key_by(KeyBy::Method)),
    ];
    for (name, b) in cases {
        assert_eq!(typed_allocations(b), 0, "{name}");
    }
}

/// An MCP service answering an SSE stream with a final result, from static bytes.
#[derive(Clone)]
struct Sse;

const SSE_ANSWER: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[],\"isError\":false}}\n\n";

impl Service<Request<()>> for Sse {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let mut resp = Response::new(Full::new(Bytes::from_static(SSE_ANSWER)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        ready(Ok(resp))
    }
}

fn http_requests(n: usize) -> Vec<Request<()>> {
    (0..n)
        .map(|_| {
            Request::post("/mcp")
                .extension(
                    McpRequest::new(
                        MessageKind::Request,
                        Some(Method::ToolsCall),
                        Some(RequestId::Number(7)),
                    )
                    .with_name("add"),
                )
                .body(())
                .unwrap()
        })
        .collect()
}

fn drain<B: Body + Unpin>(mut body: B) {
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(frame)) = std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
        assert!(frame.is_ok());
    }
}

#[test]
fn the_http_path_allocates_no_more_than_observing_the_answer() {
    const N: usize = 500;
    // Baseline: the inner service, the answer observed once, a listener (holding some state,
    // as any real subscriber does) subscribed.
    let mut inner = Sse;
    let reqs = http_requests(N);
    let baseline = allocation_counter::measure(|| {
        let id = RequestId::Number(7);
        for (i, req) in reqs.into_iter().enumerate() {
            let resp = poll_now(inner.call(req)).unwrap();
            let (resp, completion) = resp.observe(Some(&id));
            completion.on_complete(move |o| {
                std::hint::black_box((o, i));
            });
            drain(resp.into_body());
        }
    });

    let layer = Builder::new()
        .failure_rate(1.0)
        .key_by(KeyBy::Tool(KnownTools::from_names(["add"])))
        .build()
        .unwrap();
    let mut svc = layer.layer(Sse);
    for req in http_requests(3) {
        drain(poll_now(svc.call(req)).unwrap().into_body());
    }
    let reqs = http_requests(N);
    let breaker = allocation_counter::measure(|| {
        for req in reqs {
            let resp = poll_now(svc.call(req)).unwrap();
            drain(resp.into_body());
        }
    });
    let c = &layer.handle().circuits()[0];
    assert_eq!(c.counts().calls, 100, "every streamed call was counted");
    assert!(
        breaker.count_total <= baseline.count_total,
        "breaker: {} allocations for {N} calls, observing alone: {}",
        breaker.count_total,
        baseline.count_total
    );
    assert!(baseline.count_total > 0, "the baseline measures something");
}
