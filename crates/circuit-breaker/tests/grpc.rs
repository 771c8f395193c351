//! The breaker in a tonic client stack against a real tonic server (tonic-health's ready-made
//! service, no codegen) over loopback HTTP/2: answers count by their `grpc-status`, in the
//! headers (trailers-only) or in the trailers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower::{Layer, Service};
use tower_armor_circuit_breaker::{Builder, CircuitBreaker, OpenDuration, State};
use tower_armor_mcp::{RescueGrpc, RescueGrpcLayer};

const OPEN: Duration = Duration::from_millis(300);

/// What [`Flaky`] answers.
const SERVE: i32 = -1;
/// [`Flaky`] sends a `SERVING` message, then `UNAVAILABLE` in the trailers.
const MESSAGE_THEN_UNAVAILABLE: i32 = -2;

/// In front of the health service: counts requests, and answers per `mode`: [`SERVE`] passes
/// to the service, a `grpc-status` code (`0..=16`) answers trailers-only with that status, and
/// [`MESSAGE_THEN_UNAVAILABLE`] answers a message followed by trailers that say it failed.
#[derive(Clone)]
struct Flaky<S> {
    inner: S,
    mode: Arc<AtomicI32>,
    seen: Arc<AtomicUsize>,
}

impl<S: NamedService> NamedService for Flaky<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Flaky<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            SERVE => Box::pin(self.inner.call(req)),
            MESSAGE_THEN_UNAVAILABLE => Box::pin(async { Ok(message_then_unavailable()) }),
            code => Box::pin(async move {
                Ok(Status::new(Code::from_i32(code), "for the test").into_http())
            }),
        }
    }
}

/// A `HealthCheckResponse { status: SERVING }` in its gRPC frame, then trailers with
/// `grpc-status: 14` (UNAVAILABLE): the status comes after the body, in real HTTP/2 trailers.
fn message_then_unavailable() -> http::Response<Body> {
    let message = Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 0x01]);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("14"));
    trailers.insert("grpc-message", http::HeaderValue::from_static("gone"));
    let body = Full::new(message).with_trailers(std::future::ready(Some(Ok(trailers))));
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(Body::new(body))
        .unwrap()
}

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

/// The health service behind [`Flaky`] on loopback, and a channel to it.
async fn start_server() -> (
    Arc<AtomicI32>,
    Arc<AtomicUsize>,
    Channel,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let mode = Arc::new(AtomicI32::new(SERVE));
    let seen = Arc::new(AtomicUsize::new(0));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let flaky = Flaky {
        inner: health,
        mode: mode.clone(),
        seen: seen.clone(),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .add_service(flaky)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (mode, seen, channel, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_drive_the_breaker_against_a_real_tonic_server() {
    let (mode, seen, channel, server) = start_server().await;
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
    mode.store(Code::Unavailable as i32, Ordering::SeqCst);
    let e = check(&mut client, "").await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(state(), State::Open);
    let before = seen.load(Ordering::SeqCst);
    let e = check(&mut client, "").await.unwrap_err();
    assert!(e.message().contains("circuit open"), "{e:?}");
    assert_eq!(seen.load(Ordering::SeqCst), before, "failed fast, locally");
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
    mode.store(SERVE, Ordering::SeqCst);
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
    let (mode, _seen, channel, server) = start_server().await;
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

    let cases = [
        (
            Code::DeadlineExceeded as i32,
            Some(Code::DeadlineExceeded),
            (1, 1),
        ),
        (
            Code::ResourceExhausted as i32,
            Some(Code::ResourceExhausted),
            (2, 2),
        ),
        (
            Code::InvalidArgument as i32,
            Some(Code::InvalidArgument),
            (2, 2),
        ),
        (
            Code::PermissionDenied as i32,
            Some(Code::PermissionDenied),
            (2, 2),
        ),
        (SERVE, None, (3, 2)),
        (MESSAGE_THEN_UNAVAILABLE, Some(Code::Unavailable), (4, 3)),
    ];
    for (m, code, expected) in cases {
        mode.store(m, Ordering::SeqCst);
        let got = check(&mut client, "").await.err().map(|e| e.code());
        assert_eq!(got, code, "mode {m}");
        assert_eq!(counts(), expected, "mode {m}");
    }
    server.abort();
}
