//! The layers in tonic stacks, against a real tonic server (tonic-health's ready-made service,
//! no codegen) on loopback HTTP/2, driven by a real tonic client:
//!
//! - the call plane in a server stack, in the documented order (rescue's tonic form → circuit
//!   breaker → bulkhead → timeout): `RESOURCE_EXHAUSTED` from a full bulkhead,
//!   `DEADLINE_EXCEEDED` from the timeout, `UNAVAILABLE` from an open circuit; a
//!   server-streaming answer holds its permit until it ends;
//! - the HTTP-plane layers in front (correlation-id → bearer-auth → rate-limit), whose own
//!   answers reach the caller as gRPC statuses;
//! - the timeout in a client stack, around the `Channel`.

use std::time::Duration;

use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
use tower_armor_bulkhead::BulkheadLayer;
use tower_armor_circuit_breaker::{Builder, OpenDuration, State};
use tower_armor_mcp::RescueGrpcLayer;
use tower_armor_test_support::grpc::{GrpcScript, connect, loopback};
use tower_armor_timeout::TimeoutLayer;

/// The timeout layer's deadline in these tests.
const DEADLINE: Duration = Duration::from_millis(400);
/// How long the breaker stays open.
const OPEN: Duration = Duration::from_millis(300);
struct Stack {
    script: GrpcScript,
    breakers: tower_armor_circuit_breaker::CircuitBreakerHandle,
    bulkhead: tower_armor_bulkhead::BulkheadStats,
    channel: Channel,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The hardened health server on loopback (one permit, no line) and a channel to it.
async fn start() -> Stack {
    let script = GrpcScript::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let slow = script.wrap(health);
    let breaker = Builder::new()
        .consecutive_failures(2)
        .no_failure_rate()
        .open_duration(OpenDuration::Fixed(OPEN))
        .build()
        .unwrap();
    let breakers = breaker.handle();
    let bulkhead = BulkheadLayer::new(1).max_queue(0);
    let stats = bulkhead.stats();
    let (incoming, addr) = loopback().await;
    let server = tokio::spawn(
        Server::builder()
            .layer(RescueGrpcLayer::new())
            .layer(breaker)
            .layer(bulkhead)
            .layer(TimeoutLayer::new(DEADLINE))
            .add_service(slow)
            .serve_with_incoming(incoming),
    );
    let channel = connect(addr).await;
    Stack {
        script,
        breakers,
        bulkhead: stats,
        channel,
        server,
    }
}

async fn check(channel: &Channel) -> Result<(), Status> {
    let mut client = HealthClient::new(channel.clone());
    tokio::time::timeout(
        Duration::from_secs(5),
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("an answer within 5 s")
    .map(|r| assert_eq!(r.into_inner().status(), ServingStatus::Serving))
}

/// Waits (bounded) until the bulkhead has no call running.
async fn bulkhead_idle(stack: &Stack) {
    for _ in 0..200 {
        if stack.bulkhead.running() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the bulkhead's permit was never returned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bulkhead_answers_resource_exhausted() {
    let stack = start().await;
    check(&stack.channel).await.unwrap();

    stack.script.delay(Duration::from_millis(250));
    let first = tokio::spawn({
        let channel = stack.channel.clone();
        async move { check(&channel).await }
    });
    // Until the first call holds the only permit.
    for _ in 0..200 {
        if stack.bulkhead.running() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = tokio::time::Instant::now();
    let e = check(&stack.channel).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "refused at once, not after waiting: {:?}",
        started.elapsed()
    );
    assert_eq!(stack.script.seen(), 2, "refused in front of the service");
    first.await.unwrap().unwrap();
    bulkhead_idle(&stack).await;
    // A full bulkhead is not the dependency's fault: the circuit counted no failure.
    assert_eq!(stack.breakers.circuits()[0].counts().failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_answers_deadline_exceeded() {
    let stack = start().await;
    stack.script.delay(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let e = check(&stack.channel).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    let took = started.elapsed();
    assert!(
        took >= DEADLINE && took < DEADLINE + Duration::from_millis(600),
        "{took:?}"
    );
    // The permit came back with the answer, not when the tool would have finished.
    bulkhead_idle(&stack).await;
    stack.script.delay(Duration::ZERO);
    check(&stack.channel).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_open_the_circuit_and_it_recovers() {
    let stack = start().await;
    stack.script.fail_with(Code::Unavailable);
    for _ in 0..2 {
        let e = check(&stack.channel).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert_eq!(e.message(), "for the test");
    }
    assert_eq!(stack.breakers.circuits()[0].state(), State::Open);
    let before = stack.script.seen();
    let e = check(&stack.channel).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("circuit open"), "{e:?}");
    assert!(e.metadata().get("retry-after").is_some(), "{e:?}");
    assert_eq!(stack.script.seen(), before, "failed fast");

    stack.script.serve();
    tokio::time::sleep(OPEN).await;
    check(&stack.channel).await.unwrap();
    assert_eq!(stack.breakers.circuits()[0].state(), State::Closed);
}

/// A server-streaming answer (health `Watch`: the current status, then changes until the
/// client goes away) holds its permit while it is open, and returns it when the deadline ends
/// it (with `DEADLINE_EXCEEDED` trailers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_answer_holds_its_permit_until_it_ends() {
    let stack = start().await;
    let mut client = HealthClient::new(stack.channel.clone());
    let mut stream = client
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the first status within 5 s")
        .unwrap()
        .expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);
    assert_eq!(
        stack.bulkhead.running(),
        1,
        "the open stream holds the permit"
    );
    let e = check(&stack.channel).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // The deadline ends the stream: the client hears why, and the permit comes back.
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends within 5 s");
    let e = end.expect_err("the deadline ends the stream with an error");
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    bulkhead_idle(&stack).await;
    check(&stack.channel).await.unwrap();
}

/// The HTTP-plane layers in front of a tonic server: correlation-id → bearer-auth →
/// rate-limit (per principal) → the call plane. Their own answers reach a gRPC caller as gRPC
/// statuses (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED`), not as a JSON body it cannot read
/// (which a gRPC client reports as an `INTERNAL` protocol error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_plane_layers_in_front_of_a_tonic_server() {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let auth = tower_armor_bearer_auth::BearerAuthLayer::builder()
        .token("alice", "s3cret-token-alice")
        .build()
        .unwrap();
    let limit = tower_armor_rate_limit::Limit::new(2, Duration::from_secs(60)).burst(2);
    let rate = tower_armor_rate_limit::RateLimitLayer::builder(limit)
        .key_by(tower_armor_rate_limit::KeyBy::Principal)
        .build()
        .unwrap();
    let (incoming, addr) = loopback().await;
    let server = tokio::spawn(
        Server::builder()
            .layer(tower_armor_correlation_id::CorrelationIdLayer::new())
            .layer(auth)
            .layer(rate)
            .layer(RescueGrpcLayer::new())
            .layer(TimeoutLayer::new(DEADLINE))
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let channel = connect(addr).await;
    let with_token = |token: &'static str| {
        HealthClient::with_interceptor(channel.clone(), move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            Ok(req)
        })
    };
    let ask = HealthCheckRequest {
        service: String::new(),
    };

    let e = HealthClient::new(channel.clone())
        .check(ask.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert_eq!(e.message(), "unauthorized");
    // The challenge and the correlation id reach the gRPC caller as metadata.
    let challenge = e.metadata().get("www-authenticate").expect("a challenge");
    assert!(challenge.to_str().unwrap().starts_with("Bearer "), "{e:?}");
    assert!(e.metadata().get("x-request-id").is_some(), "{e:?}");
    let e = with_token("wrong").check(ask.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    let ok = with_token("s3cret-token-alice")
        .check(ask.clone())
        .await
        .unwrap();
    assert!(ok.metadata().get("x-request-id").is_some(), "{ok:?}");
    let _ = with_token("s3cret-token-alice")
        .check(ask.clone())
        .await
        .unwrap();
    let e = with_token("s3cret-token-alice")
        .check(ask.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.metadata().get("retry-after").is_some(), "{e:?}");
    assert!(
        e.metadata().get("grpc-retry-pushback-ms").is_some(),
        "{e:?}"
    );
    assert!(e.metadata().get("x-request-id").is_some(), "{e:?}");
    server.abort();
}

/// The timeout in a tonic *client* stack (rescue's tonic form → timeout → `Channel`): a
/// server-streaming call past its deadline ends with `DEADLINE_EXCEEDED`, as a status before
/// the first answer and as the stream's last item after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_in_a_tonic_client_stack() {
    use tower::Layer;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let script = GrpcScript::new();
    let slow = script.wrap(health);
    let (incoming, addr) = loopback().await;
    let server = tokio::spawn(
        Server::builder()
            .add_service(slow)
            .serve_with_incoming(incoming),
    );
    let channel = connect(addr).await;
    let stack = RescueGrpcLayer::new().layer(TimeoutLayer::new(DEADLINE).layer(channel));
    let mut client = HealthClient::new(stack);
    let ask = HealthCheckRequest {
        service: String::new(),
    };

    let mut stream = client.watch(ask.clone()).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().expect("the current status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let started = tokio::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the deadline ends the stream")
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < DEADLINE + Duration::from_millis(500));

    script.delay(Duration::from_secs(2));
    let e = client.check(ask).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    server.abort();
}
