//! A scriptable gRPC service for tests of layers in tonic stacks (feature `grpc`): it wraps a
//! real tonic service (tonic-health's, which needs no codegen) and, per the test's script,
//! waits before each call, passes it on, or answers with a chosen `grpc-status`; plus loopback
//! server and channel helpers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::Service;

/// What a [`Scripted`] service does with each call; shared with the test. A new (or default)
/// script passes every call on at once.
#[derive(Clone, Debug)]
pub struct GrpcScript {
    delay_ms: Arc<AtomicU64>,
    mode: Arc<AtomicI32>,
    seen: Arc<AtomicUsize>,
}

/// Pass calls to the wrapped service (the default).
const SERVE: i32 = -1;
/// Answer a `SERVING` health message, then `UNAVAILABLE` in real trailers.
const MESSAGE_THEN_UNAVAILABLE: i32 = -2;

impl GrpcScript {
    /// A script that passes every call on at once.
    pub fn new() -> Self {
        GrpcScript {
            delay_ms: Arc::default(),
            mode: Arc::new(AtomicI32::new(SERVE)),
            seen: Arc::default(),
        }
    }

    /// Calls pass to the wrapped service.
    pub fn serve(&self) {
        self.mode.store(SERVE, Ordering::SeqCst);
    }

    /// Calls are answered trailers-only with `code`.
    pub fn fail_with(&self, code: Code) {
        self.mode.store(code as i32, Ordering::SeqCst);
    }

    /// Calls are answered with a `SERVING` health message followed by trailers that say
    /// `UNAVAILABLE`: a failure known only when the body ends.
    pub fn message_then_unavailable(&self) {
        self.mode.store(MESSAGE_THEN_UNAVAILABLE, Ordering::SeqCst);
    }

    /// Each call waits `delay` first.
    pub fn delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// How many calls reached the service.
    pub fn seen(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// `inner` under this script.
    pub fn wrap<S>(&self, inner: S) -> Scripted<S> {
        Scripted {
            inner,
            script: self.clone(),
        }
    }
}

impl Default for GrpcScript {
    fn default() -> Self {
        Self::new()
    }
}

/// A tonic service under a [`GrpcScript`].
#[derive(Clone, Debug)]
pub struct Scripted<S> {
    inner: S,
    script: GrpcScript,
}

impl<S: NamedService> NamedService for Scripted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Scripted<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let s = &self.script;
        s.seen.fetch_add(1, Ordering::SeqCst);
        let delay = Duration::from_millis(s.delay_ms.load(Ordering::SeqCst));
        let mode = s.mode.load(Ordering::SeqCst);
        // The readied service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            match mode {
                SERVE => inner.call(req).await,
                MESSAGE_THEN_UNAVAILABLE => Ok(message_then_unavailable()),
                code => Ok(Status::new(Code::from_i32(code), "for the test").into_http()),
            }
        })
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
        .unwrap_or_default()
}

/// A listener on a free loopback port, for a tonic server (`serve_with_incoming`), and its
/// address.
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn loopback() -> (TcpIncoming, SocketAddr) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    (listener.into(), addr)
}

/// A channel to the tonic server at `addr`.
///
/// # Panics
///
/// When the server does not accept the connection.
pub async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("a connection to the server")
}
