//! The command line and call loop every interleaved probe (`benches/examples/*_interleaved.rs`)
//! shares. Included with `#[path]`.

use futures_util::FutureExt;
use tower::{Service, ServiceExt};

/// `<variant> [calls]` from the command line (calls: 1,000,000 by default).
pub(crate) fn args() -> (String, u64) {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_default();
    let calls = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    (variant, calls)
}

/// Says which variants exist and exits.
pub(crate) fn unknown(variant: &str, known: &str) -> ! {
    eprintln!("unknown variant {variant:?}: {known}");
    std::process::exit(2);
}

/// Sends `calls` requests, the `i`-th built by `make(i)`, through `svc`, each polled to
/// completion without a runtime (every service here is ready at once) inside a request span as
/// the correlation-id layer opens it (a no-op without a subscriber), and its answer dropped.
pub(crate) fn run<S, Req>(mut svc: S, calls: u64, mut make: impl FnMut(u64) -> Req)
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    for i in 0..calls {
        let span = tracing::info_span!("request", principal = tracing::field::Empty);
        let _enter = span.enter();
        let ready = svc
            .ready()
            .now_or_never()
            .expect("ready")
            .expect("no error");
        let answer = ready
            .call(make(i))
            .now_or_never()
            .expect("done")
            .expect("no error");
        std::hint::black_box(answer);
    }
}
