//! One variant of the `bearer_auth` bench as a plain program, for interleaved runs on a noisy
//! machine (see `benches/interleave.sh` and docs/benchmarks.md).
//!
//! `bearer_interleaved <bare|ours_1|ours_100|tower_http>[_stack] <calls>` runs the bench's
//! request through that variant `calls` times; with `_stack`, the request as it reaches
//! bearer-auth in the documented stack (its extensions already hold a `CorrelationId`). Each
//! call builds its request and drops its answer, so an overhead (variant minus `bare`) counts
//! dropping the answer too.

use http::Request;
use tower::Layer;
use tower_armor_mcp::CorrelationId;

#[path = "../common/bearer.rs"]
mod common;
#[path = "../common/probe.rs"]
mod probe;
use common::{TOKEN, bare, request, tokens};

/// [`request`] as it reaches bearer-auth in the documented stack: the correlation-id layer in
/// front has already put the request's `CorrelationId` in its extensions, so the extension map
/// the principal goes into exists (as it does for any request axum routes).
fn request_in_stack(authorization: &'static str) -> Request<()> {
    let mut r = request(authorization);
    let id = CorrelationId::parse(b"0192f1c2-7b3a-7c4d-9e5f-a1b2c3d4e5f6").expect("a valid id");
    r.extensions_mut().insert(id);
    r
}

fn main() {
    let (variant, calls) = probe::args();
    let bare = bare();
    let (name, build): (&str, fn(&'static str) -> Request<()>) =
        match variant.strip_suffix("_stack") {
            Some(v) => (v, request_in_stack),
            None => (variant.as_str(), request),
        };
    let make = |_| build("Bearer Zq9xW3vKpL7mT2bN8cR5");
    match name {
        "bare" => probe::run(bare, calls, make),
        "ours_1" => probe::run(tokens(1).layer(bare), calls, make),
        "ours_100" => probe::run(tokens(100).layer(bare), calls, make),
        "tower_http" => {
            #[allow(deprecated)]
            let layer = tower_http::validate_request::ValidateRequestHeaderLayer::bearer(TOKEN);
            probe::run(layer.layer(bare), calls, make)
        }
        _ => probe::unknown(
            &variant,
            "bare, ours_1, ours_100 or tower_http, each with an optional _stack",
        ),
    }
}
