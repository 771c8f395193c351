//! `RateLimitLayer` per request against a plain governor keyed check wrapped as a service and
//! against tower_governor's layer, keyed on the peer IP over 1,024 clients, in the same run.
//!
//! - `allowed`: the quota never refuses (the common path: key, check, call the inner service).
//! - `denied`: one client over its quota (the cost of refusing).
//!
//! Every variant gets the same request (a `SocketAddr` in the extensions, which all three read)
//! and the same inner service (an empty answer). tower_governor is configured without its
//! header middleware; ours runs both without and with the `RateLimit` headers (its default).
//! Target: no slower than tower_governor.
//!
//! Run: `cargo bench -p tower-armor-benches --bench rate_limit`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use futures_util::future::{Either, Ready, ready};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use tower::{Layer, Service, ServiceExt};
use tower_armor_mcp::{KnownTools, McpBody, McpRequest, MessageKind, Method, Principal};
use tower_armor_rate_limit::{Builder, KeyBy, Limit};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

#[path = "../common/rate_limit.rs"]
mod common;
use common::{CLIENTS, PeerSocketAddr, inner, request};

// === a plain governor keyed check, wrapped as a service ===

#[derive(Clone)]
struct PlainGovernor<S> {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    inner: S,
}

impl<S, B> Service<Request<McpBody>> for PlainGovernor<S>
where
    S: Service<Request<McpBody>, Response = Response<B>, Error = Infallible>,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<Response<B>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<McpBody>) -> Self::Future {
        let allowed = req
            .extensions()
            .get::<SocketAddr>()
            .is_some_and(|a| self.limiter.check_key(&a.ip()).is_ok());
        if allowed {
            Either::Left(self.inner.call(req))
        } else {
            let mut resp = Response::new(B::default());
            *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            Either::Right(ready(Ok(resp)))
        }
    }
}

/// Runs `svc` once per iteration on request `i` (cycling through the clients).
fn run<S, B>(rt: &tokio::runtime::Runtime, svc: &mut S, i: &mut u32) -> StatusCode
where
    S: Service<Request<McpBody>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    *i = i.wrapping_add(1);
    rt.block_on(async {
        let s = svc.ready().await.unwrap();
        s.call(request(*i)).await.unwrap().status()
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();

    for (group, per_second, burst) in [
        ("rate_limit/allowed", 1_000_000_000u32, 1_000_000_000u32),
        // A tiny quota: after the first request per client, everything is refused.
        ("rate_limit/denied", 1, 1),
    ] {
        let mut g = c.benchmark_group(group);
        let bench_name = |name: &str| BenchmarkId::from_parameter(name);

        let mut bare = inner::<Empty<bytes::Bytes>>();
        let mut i = 0;
        g.bench_function(bench_name("bare"), |b| {
            b.iter(|| run(&rt, &mut bare, &mut i))
        });

        // Anchor 1: governor's keyed limiter (DashMap, quanta clock) checked in a service.
        let quota = Quota::with_period(Duration::from_secs(1) / per_second)
            .unwrap()
            .allow_burst(NonZeroU32::new(burst).unwrap());
        let mut plain = PlainGovernor {
            limiter: Arc::new(RateLimiter::keyed(quota)),
            inner: inner::<Empty<bytes::Bytes>>(),
        };
        g.bench_function(bench_name("governor_keyed_service"), |b| {
            b.iter(|| run(&rt, &mut plain, &mut i))
        });

        // Anchor 2: tower_governor's layer (no header middleware).
        let config = GovernorConfigBuilder::default()
            .period(Duration::from_secs(1) / per_second)
            .burst_size(burst)
            .key_extractor(PeerSocketAddr)
            .finish()
            .unwrap();
        let mut tg = GovernorLayer::new(config).layer(inner());
        g.bench_function(bench_name("tower_governor"), |b| {
            b.iter(|| run(&rt, &mut tg, &mut i))
        });

        // Ours, keyed on the peer IP, without and with the RateLimit headers.
        let limit = Limit::new(per_second, Duration::from_secs(1)).burst(burst);
        let ours = Builder::new(limit)
            .key_by(KeyBy::Ip)
            .headers_on_success(false)
            .build()
            .unwrap();
        let mut ours_ip = ours.layer(inner::<Empty<bytes::Bytes>>());
        g.bench_function(bench_name("ours_ip"), |b| {
            b.iter(|| run(&rt, &mut ours_ip, &mut i))
        });

        let ours = Builder::new(limit).key_by(KeyBy::Ip).build().unwrap();
        let mut ours_headers = ours.layer(inner::<Empty<bytes::Bytes>>());
        g.bench_function(bench_name("ours_ip_headers"), |b| {
            b.iter(|| run(&rt, &mut ours_headers, &mut i))
        });

        // Ours, the MCP case: principal key, a per-tool quota on top, headers on. No anchor does
        // this; the iteration also clones a principal and the request facts (one allocation).
        let ours = Builder::new(limit)
            .each_tool(limit)
            .known_tools(KnownTools::from_names(["add"]))
            .build()
            .unwrap();
        let mut ours_mcp = ours.layer(inner::<Empty<bytes::Bytes>>());
        let principals: Vec<Principal> = (0..CLIENTS)
            .map(|n| Principal::new(format!("client-{n}")))
            .collect();
        let facts = McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsCall),
            Some(1.into()),
        )
        .with_name("add");
        let mut j = 0u32;
        g.bench_function(bench_name("ours_principal_each_tool"), |b| {
            b.iter(|| {
                j = j.wrapping_add(1);
                let mut req = request(j);
                req.extensions_mut()
                    .insert(principals[(j % CLIENTS) as usize].clone());
                req.extensions_mut().insert(facts.clone());
                rt.block_on(async {
                    let s = ServiceExt::<Request<McpBody>>::ready(&mut ours_mcp)
                        .await
                        .unwrap();
                    s.call(req).await.unwrap().status()
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
