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

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::ready;
use governor::clock::{Clock, QuantaClock};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_armor_mcp::McpBody;
use tower_armor_rate_limit::{Builder, KeyBy, Limit};
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

const CLIENTS: u32 = 1024;
const PER_SECOND: u32 = 1_000_000_000;

fn request(i: u32) -> Request<McpBody> {
    let mut req = Request::post("/mcp")
        .body(McpBody::empty())
        .expect("a valid request");
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i % CLIENTS)));
    req.extensions_mut().insert(SocketAddr::new(ip, 40_000));
    req
}

fn inner<B: Default>()
-> impl Service<Request<McpBody>, Response = Response<B>, Error = Infallible> + Clone {
    service_fn(|_req: Request<McpBody>| ready(Ok::<_, Infallible>(Response::new(B::default()))))
}

/// tower_governor's key: the same `SocketAddr` extension ours reads.
#[derive(Clone, Copy, Debug)]
struct PeerSocketAddr;

impl KeyExtractor for PeerSocketAddr {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        req.extensions()
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

fn run<S, B>(mut svc: S, calls: u64)
where
    S: Service<Request<McpBody>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut i = 0u32;
    for _ in 0..calls {
        i = i.wrapping_add(1);
        let ready = svc
            .ready()
            .now_or_never()
            .expect("ready")
            .expect("no error");
        let resp = ready
            .call(request(i))
            .now_or_never()
            .expect("done")
            .expect("no error");
        assert_eq!(resp.status(), 200);
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
    // tokio's clock (ours) reads the runtime's when one is entered; a plain program has none,
    // as in the bench's current-thread runtime with time enabled.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _guard = rt.enter();
    match variant.as_str() {
        "bare" => run(inner::<http_body_util::Empty<bytes::Bytes>>(), calls),
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .period(Duration::from_secs(1) / PER_SECOND)
                .burst_size(PER_SECOND)
                .key_extractor(PeerSocketAddr)
                .finish()
                .expect("a valid config");
            run(GovernorLayer::new(config).layer(inner()), calls);
        }
        "ours" => {
            let limit = Limit::new(PER_SECOND, Duration::from_secs(1)).burst(PER_SECOND);
            let layer = Builder::new(limit)
                .key_by(KeyBy::Ip)
                .headers_on_success(false)
                .build()
                .expect("a valid limit");
            run(
                layer.layer(inner::<http_body_util::Empty<bytes::Bytes>>()),
                calls,
            );
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
        other => {
            eprintln!(
                "unknown variant {other:?}: bare, tower_governor, ours, tokio_clock or quanta_clock"
            );
            std::process::exit(2);
        }
    }
}
