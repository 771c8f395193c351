//! The breaker in a tonic client stack against a real tonic server (tonic-health's ready-made
//! service, no codegen) over loopback HTTP/2: answers count by their `grpc-status`, in the
//! headers (trailers-only) or in the trailers.

use std::time::Duration;

use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::Layer;
use tower_armor_circuit_breaker::{Builder, CircuitBreaker, OpenDuration, State};
use tower_armor_mcp::{RescueGrpc, RescueGrpcLayer};
use tower_armor_test_support::grpc::{GrpcScript, connect, loopback};

const OPEN: Duration = Duration::from_millis(300);

async fn check(
    client: &mut HealthClient<RescueGrpc<CircuitBreaker<Channel>>>,
    service: &str,
) -> Result<(), Status> {
    tokio::time::timeout(
        Duration::from_secs(5),
        client.check(HealthCheckRequest {
            service: service.to_owned(),
        }),
    )
    .await
    .expect("an answer within 5 s")
    .map(|_| ())
}

/// The health service under a [`GrpcScript`] on loopback, and a channel to it.
async fn start_server() -> (
    GrpcScript,
    Channel,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let script = GrpcScript::new();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let (incoming, addr) = loopback().await;
    let server = tokio::spawn(
        Server::builder()
            .add_service(script.wrap(health))
            .serve_with_incoming(incoming),
    );
    (script, connect(addr).await, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_drive_the_breaker_against_a_real_tonic_server() {
    let (script, channel, server) = start_server().await;
    let layer = Builder::new()
        .count_window(4)
        .min_calls(2)
        .failure_rate(0.5)
        .open_duration(OpenDuration::Fixed(OPEN))
        .build()
        .unwrap();
    let handle = layer.handle();
    // Rescue's tonic form outermost: the breaker's rejection reaches the caller as a status.
    let mut client = HealthClient::new(RescueGrpcLayer::new().layer(layer.layer(channel)));
    let state = || handle.circuits()[0].state();
    let counts = || handle.circuits()[0].counts();

    // SERVING: OK with `grpc-status: 0` in the trailers: a success.
    check(&mut client, "").await.unwrap();
    assert_eq!((counts().calls, counts().failures), (1, 0));
    // An unknown service: NOT_FOUND (trailers-only), the caller's fault, not counted.
    let e = check(&mut client, "no.such.Service").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(counts().calls, 1);

    // UNAVAILABLE (trailers-only, in the headers): a failure; 1 of 2 opens the circuit.
    script.fail_with(Code::Unavailable);
    let e = check(&mut client, "").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(state(), State::Open);
    let before = script.seen();
    let e = check(&mut client, "").await.unwrap_err();
    assert!(e.message().contains("circuit open"), "{e:?}");
    assert_eq!(script.seen(), before, "failed fast, locally");
    // The tonic form of rescue: the caller gets UNAVAILABLE (not UNKNOWN) with a retry hint.
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let retry: u64 = e
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");

    // The dependency recovers; after the open duration one probe closes the circuit.
    script.serve();
    tokio::time::sleep(OPEN).await;
    check(&mut client, "").await.unwrap();
    assert_eq!(state(), State::Closed);
    server.abort();
}

/// Each status of the classifier, as a real tonic server sends it: `DEADLINE_EXCEEDED` and
/// `RESOURCE_EXHAUSTED` are failures, `INVALID_ARGUMENT` and `PERMISSION_DENIED` the caller's
/// (not counted), and a failure status in the trailers after a message is a failure too (known
/// only when the body ends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_status_class_counts_as_the_classifier_says() {
    let (script, channel, server) = start_server().await;
    // A breaker that never opens here: only its counts are read.
    let layer = Builder::new()
        .count_window(100)
        .min_calls(100)
        .failure_rate(1.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut client = HealthClient::new(RescueGrpcLayer::new().layer(layer.layer(channel)));
    let counts = || {
        let c = handle.circuits()[0].counts();
        (c.calls, c.failures)
    };

    /// What the server does for one case.
    #[derive(Debug)]
    enum Act {
        Fail(Code),
        Serve,
        MessageThenUnavailable,
    }
    let cases = [
        (
            Act::Fail(Code::DeadlineExceeded),
            Some(Code::DeadlineExceeded),
            (1, 1),
        ),
        (
            Act::Fail(Code::ResourceExhausted),
            Some(Code::ResourceExhausted),
            (2, 2),
        ),
        (
            Act::Fail(Code::InvalidArgument),
            Some(Code::InvalidArgument),
            (2, 2),
        ),
        (
            Act::Fail(Code::PermissionDenied),
            Some(Code::PermissionDenied),
            (2, 2),
        ),
        (Act::Serve, None, (3, 2)),
        (Act::MessageThenUnavailable, Some(Code::Unavailable), (4, 3)),
    ];
    for (act, code, expected) in cases {
        match act {
            Act::Fail(c) => script.fail_with(c),
            Act::Serve => script.serve(),
            Act::MessageThenUnavailable => script.message_then_unavailable(),
        }
        let got = check(&mut client, "").await.err().map(|e| e.code());
        assert_eq!(got, code, "{act:?}");
        assert_eq!(counts(), expected, "{act:?}");
    }
    server.abort();
}
