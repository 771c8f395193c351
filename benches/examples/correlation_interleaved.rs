//! The `correlation_id` bench's per-call case as a plain program, for interleaved runs and
//! instruction counts on a noisy machine (see `benches/interleave.sh` and docs/benchmarks.md).
//!
//! `correlation_interleaved <bare|ours|tower_http>_<present|generated> <calls>` runs the bench's
//! request (with or without an `x-request-id`) through that variant `calls` times, without a
//! `tracing` subscriber. Each call builds its request and drops its answer.

use std::convert::Infallible;

use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor_correlation_id::CorrelationIdLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

fn request(id: bool) -> Request<()> {
    let mut b = Request::post("/mcp")
        .header("content-type", HeaderValue::from_static("application/json"))
        .header(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
    if id {
        b = b.header("x-request-id", HeaderValue::from_static("case-42:order-1"));
    }
    b.body(()).expect("a valid request")
}

fn answer() -> Response<()> {
    let mut r = Response::new(());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn run<S, R>(mut svc: S, id: bool, calls: u64)
where
    S: Service<Request<()>, Response = R, Error = Infallible>,
{
    for _ in 0..calls {
        let ready = svc
            .ready()
            .now_or_never()
            .expect("ready")
            .expect("no error");
        let resp = ready
            .call(request(id))
            .now_or_never()
            .expect("done")
            .expect("no error");
        std::hint::black_box(resp);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let calls: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let bare = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(answer()) });
    let (name, id) = match variant.rsplit_once('_') {
        Some((name, "present")) => (name, true),
        Some((name, "generated")) => (name, false),
        _ => ("", false),
    };
    match name {
        "bare" => run(bare, id, calls),
        "ours" => run(CorrelationIdLayer::new().layer(bare), id, calls),
        "tower_http" => run(
            SetRequestIdLayer::x_request_id(MakeRequestUuid)
                .layer(PropagateRequestIdLayer::x_request_id().layer(bare)),
            id,
            calls,
        ),
        _ => {
            eprintln!("unknown variant {variant:?}: <bare|ours|tower_http>_<present|generated>");
            std::process::exit(2);
        }
    }
}
