//! The `correlation_id` bench's per-call case as a plain program, for interleaved runs and
//! instruction counts on a noisy machine (see `benches/interleave.sh` and docs/benchmarks.md).
//!
//! `correlation_interleaved <bare|ours|tower_http>_<present|generated> <calls>` runs the bench's
//! request (with or without an `x-request-id`) through that variant `calls` times, without a
//! `tracing` subscriber. Each call builds its request and drops its answer.

use std::convert::Infallible;

use http::Request;
use tower::{Layer, service_fn};
use tower_armor_correlation_id::CorrelationIdLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

#[path = "../common/correlation.rs"]
mod common;
#[path = "../common/probe.rs"]
mod probe;
use common::{answer, request};

fn main() {
    let (variant, calls) = probe::args();
    let bare = service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(answer()) });
    let (name, id) = match variant.rsplit_once('_') {
        Some((name, "present")) => (name, true),
        Some((name, "generated")) => (name, false),
        _ => ("", false),
    };
    let make = |_| request(id);
    match name {
        "bare" => probe::run(bare, calls, make),
        "ours" => probe::run(CorrelationIdLayer::new().layer(bare), calls, make),
        "tower_http" => probe::run(
            SetRequestIdLayer::x_request_id(MakeRequestUuid)
                .layer(PropagateRequestIdLayer::x_request_id().layer(bare)),
            calls,
            make,
        ),
        _ => probe::unknown(&variant, "<bare|ours|tower_http>_<present|generated>"),
    }
}
