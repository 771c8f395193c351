//! One variant of the `bearer_auth` bench as a plain program, for interleaved runs on a noisy
//! machine (see `benches/interleave.sh` and docs/benchmarks.md).
//!
//! `bearer_interleaved <bare|ours_1|ours_100|tower_http>[_stack] <calls>` runs the bench's
//! request through that variant `calls` times; with `_stack`, the request as it reaches
//! bearer-auth in the documented stack (its extensions already hold a `CorrelationId`). Each call builds its request and drops its answer, so
//! an overhead (variant minus `bare`) counts dropping the answer too.

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

#[path = "../common/bearer.rs"]
mod common;
use common::{TOKEN, bare, request, tokens};
use tower_armor_mcp::CorrelationId;

/// [`request`] as it reaches bearer-auth in the documented stack: the correlation-id layer in
/// front has already put the request's `CorrelationId` in its extensions, so the extension map
/// the principal goes into exists (as it does for any request axum routes).
fn request_in_stack(authorization: &'static str) -> Request<()> {
    let mut r = request(authorization);
    let id = CorrelationId::parse(b"0192f1c2-7b3a-7c4d-9e5f-a1b2c3d4e5f6").expect("a valid id");
    r.extensions_mut().insert(id);
    r
}

fn run<S, B>(mut svc: S, calls: u64, make: fn(&'static str) -> Request<()>)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..calls {
        let span = tracing::info_span!("request", principal = tracing::field::Empty);
        let _enter = span.enter();
        let s = svc
            .ready()
            .now_or_never()
            .expect("ready")
            .expect("no error");
        let resp = s
            .call(make("Bearer Zq9xW3vKpL7mT2bN8cR5"))
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
    let bare = bare();
    let (variant, make): (&str, fn(&'static str) -> Request<()>) =
        match variant.strip_suffix("_stack") {
            Some(v) => (v, request_in_stack),
            None => (variant.as_str(), request),
        };
    match variant {
        "bare" => run(bare, calls, make),
        "ours_1" => run(tokens(1).layer(bare), calls, make),
        "ours_100" => run(tokens(100).layer(bare), calls, make),
        "tower_http" => {
            #[allow(deprecated)]
            let layer = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(TOKEN);
            run(layer.layer(bare), calls, make)
        }
        other => {
            eprintln!(
                "unknown variant {other:?}: bare, ours_1, ours_100 or tower_http, each with an optional _stack"
            );
            std::process::exit(2);
        }
    }
}
