//! The breaker in a tonic client stack against a real tonic server (tonic-health's ready-made
//! service, no codegen) over loopback HTTP/2: answers count by their `grpc-status`, in the
//! headers (trailers-only) or in the trailers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

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

/// In front of the health service: counts requests, and answers `UNAVAILABLE` while `down`.
#[derive(Clone)]
struct Flaky<S> {
    inner: S,
    down: Arc<AtomicBool>,
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
        if self.down.load(Ordering::SeqCst) {
            Box::pin(async { Ok(Status::unavailable("down for the test").into_http()) })
        } else {
            Box::pin(self.inner.call(req))
        }
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_drive_the_breaker_against_a_real_tonic_server() {
    let down = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let (_reporter, health) = tonic_health::server::health_reporter();
    let flaky = Flaky {
        inner: health,
        down: down.clone(),
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
    down.store(true, Ordering::SeqCst);
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
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(OPEN).await;
    check(&mut client, "").await.unwrap();
    assert_eq!(state(), State::Closed);
    server.abort();
}
