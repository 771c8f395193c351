//! The public names and shapes the issues use, as a user writes them: each line here is
//! something a test or program written from the issue text does, so a change that breaks one
//! breaks this file's build.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;
use tower_armor_bearer_auth::{
    AllowPolicy, BearerAuthLayer, InjectBearerLayer, Principal, Secret, TokenSource,
    ToolAllowListLayer,
};
use tower_armor_bulkhead::{BulkheadFull, BulkheadLayer};
use tower_armor_circuit_breaker::{CircuitBreakerLayer, CircuitOpen};
use tower_armor_correlation_id::{CorrelationId, TraceContext};
use tower_armor_mcp::{BoxError, Elapsed, LocalError, RateLimited};
use tower_armor_rate_limit::{KeyBy, Limit, RateLimitLayer};
use tower_armor_sse::SseLayer;
use tower_armor_timeout::TimeoutLayer;

#[test]
fn ids_and_trace_contexts_parse_from_strings() {
    let id = CorrelationId::parse("case-42:order-1").unwrap();
    assert_eq!(id, "case-42:order-1".parse::<CorrelationId>().unwrap());
    assert_eq!(id, CorrelationId::try_from("case-42:order-1").unwrap());
    assert!(CorrelationId::parse("two words").is_err());
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let ctx = TraceContext::from_str(tp).unwrap();
    assert_eq!(ctx.to_string(), tp);
    assert!(
        TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_err()
    );
}

#[test]
fn tokens_are_given_as_strings() {
    let server = BearerAuthLayer::builder()
        .token("alice", "alice-token")
        .token("bob", String::from("bob-token"))
        .token("carol", Secret::new("carol-token"))
        .build()
        .unwrap();
    let _ = server;
    assert_eq!(
        TokenSource::token(&"client-token").unwrap().expose(),
        "client-token"
    );
    let _client = InjectBearerLayer::new("client-token");
    let _from_closure = InjectBearerLayer::new(|| Ok::<_, BoxError>(Secret::from("fresh-token")));
    assert_eq!(
        format!("{:?}", Secret::from("hidden")),
        "[redacted, 6 chars]"
    );
    let _allow = ToolAllowListLayer::new(AllowPolicy::parse("alice:add,echo;bob:*").unwrap());
    let _ = Principal::new("alice");
}

#[test]
fn call_plane_errors_are_built_and_taken_apart() {
    let open = CircuitOpen {
        key: Some(Arc::from("crash")),
        retry_after: Duration::from_millis(1500),
    };
    let CircuitOpen { key, retry_after } = open.clone();
    assert_eq!(
        (key.as_deref(), retry_after),
        (Some("crash"), Duration::from_millis(1500))
    );
    assert_eq!(open.status(), 503);
    let errors: [BoxError; 4] = [
        Box::new(open),
        Box::new(BulkheadFull { key: None }),
        Box::new(Elapsed),
        Box::new(RateLimited {
            retry_after: Duration::from_secs(2),
        }),
    ];
    let statuses: Vec<u16> = errors
        .iter()
        .map(|e| {
            tower_armor_mcp::error::local_error(e.as_ref())
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [503, 503, 504, 429]);
}

#[test]
fn layers_are_built_with_plain_values() {
    let svc = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, BoxError>(http::Response::new(String::new()))
    });
    let _timeout = TimeoutLayer::new(Duration::from_secs(30)).layer(svc);
    let _sse = SseLayer::builder()
        .keep_alive(Duration::from_secs(15))
        .idle_timeout(Duration::from_secs(300))
        .build()
        .unwrap()
        .layer(svc);
    let _breaker = CircuitBreakerLayer::builder().build().unwrap().layer(svc);
    let _bulkhead = BulkheadLayer::new(8).max_queue(16).layer(svc);
    let per_minute = Limit::new(120, Duration::from_secs(60)).burst(10);
    let _limit = RateLimitLayer::builder(per_minute)
        .key_by(KeyBy::Principal)
        .build()
        .unwrap()
        .layer(svc);
}
