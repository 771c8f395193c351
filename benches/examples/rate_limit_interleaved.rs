//! The `rate_limit` bench's allowed path as a plain program, for interleaved runs and
//! instruction counts on a noisy machine (see `benches/interleave.sh` and docs/benchmarks.md).
//!
//! `rate_limit_interleaved <bare|tower_governor|ours> <calls>` sends `calls` requests from
//! 1,024 client addresses through that variant, under a quota that never refuses, keyed on the
//! peer IP (tower_governor without its header middleware, ours without the `RateLimit` headers
//! on success). Each call builds its request and drops its answer.
//!
//! `tokio_clock` and `quanta_clock` read only the clock each side uses, `calls` times: tokio's
//! `Instant` (ours: what lets quota tests run on paused time) and governor's quanta clock
//! (tower_governor's: the CPU's time-stamp counter).

use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use tower::Layer;
use tower_armor_rate_limit::{Builder, KeyBy, Limit};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

#[path = "../common/rate_limit.rs"]
mod common;
#[path = "../common/probe.rs"]
mod probe;
use common::{PeerSocketAddr, inner, request};

const PER_SECOND: u32 = 1_000_000_000;

fn main() {
    let (variant, calls) = probe::args();
    // tokio's clock (ours) reads the runtime's when one is entered, as in the bench's
    // current-thread runtime with time enabled.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    let make = |i: u64| request(i);
    match variant.as_str() {
        "bare" => probe::run(inner::<http_body_util::Empty<bytes::Bytes>>(), calls, make),
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .period(Duration::from_secs(1) / PER_SECOND)
                .burst_size(PER_SECOND)
                .key_extractor(PeerSocketAddr)
                .finish()
                .expect("a valid config");
            probe::run(GovernorLayer::new(config).layer(inner()), calls, make);
        }
        "ours" => {
            let limit = Limit::new(PER_SECOND, Duration::from_secs(1)).burst(PER_SECOND);
            let layer = Builder::new(limit)
                .key_by(KeyBy::Ip)
                .headers_on_success(false)
                .build()
                .expect("a valid limit");
            let svc = layer.layer(inner::<http_body_util::Empty<bytes::Bytes>>());
            probe::run(svc, calls, make);
        }
        "tokio_clock" => {
            for _ in 0..calls {
                std::hint::black_box(tokio::time::Instant::now());
            }
        }
        "quanta_clock" => {
            let clock = QuantaClock::default();
            for _ in 0..calls {
                std::hint::black_box(clock.now());
            }
        }
        _ => probe::unknown(
            &variant,
            "bare, tower_governor, ours, tokio_clock or quanta_clock",
        ),
    }
}
