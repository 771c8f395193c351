//! One variant of the `bearer_auth` bench as a plain program, for interleaved runs on a noisy
//! machine (see `benches/interleave.sh` and docs/benchmarks.md).
//!
//! `bearer_interleaved <bare|ours_1|ours_100|tower_http> <calls>` runs the bench's request
//! through that variant `calls` times. Each call builds its request and drops its answer, so
//! an overhead (variant minus `bare`) counts dropping the answer too.

use futures_util::FutureExt;
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt};

#[path = "../common/bearer.rs"]
mod common;
use common::{TOKEN, bare, request, tokens};

fn run<S, B>(mut svc: S, calls: u64)
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
            .call(request("Bearer Zq9xW3vKpL7mT2bN8cR5"))
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
    match variant.as_str() {
        "bare" => run(bare, calls),
        "ours_1" => run(tokens(1).layer(bare), calls),
        "ours_100" => run(tokens(100).layer(bare), calls),
        "tower_http" => {
            #[allow(deprecated)]
            let layer = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(TOKEN);
            run(layer.layer(bare), calls)
        }
        other => {
            eprintln!("unknown variant {other:?}: bare, ours_1, ours_100 or tower_http");
            std::process::exit(2);
        }
    }
}
