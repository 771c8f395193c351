//! [`RescueLayer`]: the one place that turns call-plane errors into MCP-correct answers.
//!
//! Call-plane layers (circuit breaker, retry, bulkhead, timeout) fail with [`BoxError`]. Below
//! rescue, those errors become HTTP answers with a JSON-RPC error body carrying a local code, the
//! request's id and the correlation id, plus `Retry-After` where the error knows one:
//!
//! | error | answer |
//! |---|---|
//! | [`CircuitOpen`](crate::error::CircuitOpen) | 503, `-31503`, `Retry-After` |
//! | [`BulkheadFull`](crate::error::BulkheadFull) | 503, `-31509` |
//! | [`ShuttingDown`](crate::error::ShuttingDown) | 503, `-31510` |
//! | [`Elapsed`](crate::error::Elapsed) | 504, `-31504` |
//! | [`RateLimited`](crate::error::RateLimited) | 429, `-31429`, `Retry-After` |
//! | [`TokenUnavailable`](crate::error::TokenUnavailable), [`InvalidToken`](crate::error::InvalidToken) (client stacks) | 500, `-31520` |
//! | anything else | 502, `-31502` |
//! | (not an error) the server's own 5xx answer to a call, with neither JSON nor SSE (rmcp's bare `500` for a handler that ended without a response) | 502, `-31502` |
//!
//! The result has `Error = Infallible`, so it drops into axum's `Router::layer` /
//! `nest_service` (which require it). Without rescue, use axum's `HandleErrorLayer`.
//!
//! In tonic stacks, the `tonic` feature adds the tonic form: `RescueGrpcLayer` turns the same
//! errors into `tonic::Status` (`UNAVAILABLE`, `RESOURCE_EXHAUSTED`, `DEADLINE_EXCEEDED`, with
//! `retry-after` metadata); see [`grpc_status`] for the table.
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, BoxError};
//! use tower_armor_mcp::{McpBody, RescueLayer, error::BulkheadFull};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(RescueLayer::new())
//!     .service_fn(|_req: Request<McpBody>| async {
//!         Err::<Response<String>, BoxError>(Box::new(BulkheadFull::new(None)))
//!     });
//! let resp = svc.oneshot(Request::new(McpBody::empty())).await.unwrap();
//! assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::{ResponseBody, local_error_response};
use crate::error::{BoxError, CODE_BAD_GATEWAY, LocalRejection, local_error, retry_after_secs};
use crate::observe::BodyKind;
use crate::{CorrelationId, McpRequest, RequestId};

/// Applies [`Rescue`]; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct RescueLayer {
    _priv: (),
}

impl RescueLayer {
    /// The layer.
    pub fn new() -> Self {
        RescueLayer { _priv: () }
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue {
            inner,
            ready_error: None,
        }
    }
}

/// Turns the inner service's errors into answers; see the [module docs](self).
pub struct Rescue<S> {
    inner: S,
    /// An error from the inner `poll_ready`, answered on the next call.
    ready_error: Option<BoxError>,
}

impl<S: Clone> Clone for Rescue<S> {
    /// Clones the service, not a pending readiness error (that belongs to the next call of this
    /// instance only).
    fn clone(&self) -> Self {
        Rescue {
            inner: self.inner.clone(),
            ready_error: None,
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Rescue<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rescue")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Rescue<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.ready_error.is_some() {
            return Poll::Ready(Ok(()));
        }
        if let Err(e) = ready!(self.inner.poll_ready(cx)) {
            self.ready_error = Some(e.into());
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // A request's id: the answer is its response. (A client's response to a server request
        // carries that request's id, which an error answer to the POST must not reuse.)
        let id = req
            .extensions()
            .get::<McpRequest>()
            .filter(|m| m.kind() == crate::MessageKind::Request)
            .and_then(|m| m.id().cloned());
        let correlation = req.extensions().get::<CorrelationId>().cloned();
        let kind = match self.ready_error.take() {
            Some(e) => Kind::Failed { error: Some(e) },
            None => Kind::Called {
                future: self.inner.call(req),
            },
        };
        ResponseFuture {
            kind,
            id,
            correlation,
        }
    }
}

pin_project! {
    /// Response future of [`Rescue`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        id: Option<RequestId>,
        correlation: Option<CorrelationId>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<B>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error = match this.kind.project() {
            KindProj::Called { future } => match ready!(future.poll(cx)) {
                Ok(resp) if resp.status().is_server_error() && this.id.is_some() => {
                    return Poll::Ready(Ok(without_message(
                        resp,
                        this.id.as_ref(),
                        this.correlation.as_ref(),
                    )));
                }
                Ok(resp) => return Poll::Ready(Ok(resp.map(ResponseBody::inner))),
                Err(e) => e.into(),
            },
            KindProj::Failed { error } => error.take().expect("polled after completion"),
        };
        Poll::Ready(Ok(error_response(
            &*error,
            this.id.as_ref(),
            this.correlation.as_ref(),
        )))
    }
}

/// The answer for a call-plane error: status, JSON-RPC error body (local code, request id,
/// correlation id in `data`), and `Retry-After` when known. See the [module docs](self).
pub fn error_response<B>(
    error: &(dyn std::error::Error + 'static),
    id: Option<&RequestId>,
    correlation: Option<&CorrelationId>,
) -> Response<ResponseBody<B>> {
    let (status, code, retry_after) = match local_error(error) {
        Some(l) if l.rejection() == Some(LocalRejection::Cancelled) => {
            tracing::debug!("call cancelled by the client while waiting in line");
            return cancelled_answer();
        }
        Some(l) => {
            tracing::debug!(code = l.code(), error = %error, "call rejected locally");
            (l.status(), l.code(), l.retry_after())
        }
        None => {
            tracing::warn!(error = %error, "call failed");
            (StatusCode::BAD_GATEWAY, CODE_BAD_GATEWAY, None)
        }
    };
    let message = match local_error(error) {
        Some(l) => l.public_message(),
        // Inner error texts can carry upstream details; the caller gets a generic message.
        None => String::from("upstream call failed"),
    };
    let mut resp = local_error_response(status, id, code, &message, correlation);
    if let Some(d) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs(d)));
    }
    resp
}

/// A server error (5xx) answering a call: passed on when it carries a JSON-RPC message (JSON or
/// SSE), otherwise replaced by 502 and a JSON-RPC error for the call's id. rmcp answers a call
/// whose handler ended without a response (its session or service shut down under it) with a
/// bare `500` and a text body: a client waiting for its id could not tell what happened.
#[cold]
#[inline(never)]
fn without_message<B>(
    resp: Response<B>,
    id: Option<&RequestId>,
    correlation: Option<&CorrelationId>,
) -> Response<ResponseBody<B>> {
    if crate::observe::is_json(resp.headers()) || crate::observe::is_event_stream(resp.headers()) {
        return resp.map(ResponseBody::inner);
    }
    tracing::warn!(
        status = resp.status().as_u16(),
        "the server answered a call with an error and no JSON-RPC message"
    );
    local_error_response(
        StatusCode::BAD_GATEWAY,
        id,
        CODE_BAD_GATEWAY,
        "the server failed without a JSON-RPC answer",
        correlation,
    )
}

/// What a server answers for a call it cancelled: an SSE stream that ends without a message.
fn cancelled_answer<B>() -> Response<ResponseBody<B>> {
    let mut resp = Response::new(ResponseBody::empty());
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::error::{CircuitOpen, Elapsed, RateLimited};

    async fn answer(
        e: BoxError,
        id: Option<RequestId>,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let c = CorrelationId::parse(b"case-1").unwrap();
        let resp = error_response::<String>(&*e, id.as_ref(), Some(&c));
        let status = resp.status();
        let ra = resp
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ra, serde_json::from_slice(&body).unwrap())
    }

    /// A server's 5xx to a call without a JSON-RPC message (rmcp's bare 500 when the handler
    /// ended without a response) becomes a JSON-RPC error for the call's id; one that carries
    /// a message, or answers no call, passes untouched.
    #[tokio::test]
    async fn a_server_error_without_a_message_gets_one() {
        use crate::MessageKind::{Request as Call, Response as Reply};
        use tower::ServiceExt;
        let answer = |status: u16,
                      content_type: Option<&'static str>,
                      message: Option<(crate::MessageKind, i64)>| async move {
            let svc =
                RescueLayer::new().layer(tower::service_fn(move |_req: Request<()>| async move {
                    let mut resp = Response::builder().status(status);
                    if let Some(ct) = content_type {
                        resp = resp.header(header::CONTENT_TYPE, ct);
                    }
                    Ok::<_, BoxError>(resp.body(String::from("Encounter an error")).unwrap())
                }));
            let mut req = Request::new(());
            if let Some((kind, id)) = message {
                let method = (kind == Call).then_some(crate::Method::ToolsCall);
                req.extensions_mut().insert(McpRequest::new(
                    kind,
                    method,
                    Some(RequestId::Number(id)),
                ));
            }
            let resp = svc.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8(body.to_vec()).unwrap())
        };
        let (s, body) = answer(500, Some("text/plain"), Some((Call, 3))).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (v["id"].as_i64(), v["error"]["code"].as_i64()),
            (Some(3), Some(-31502))
        );
        assert!(!body.contains("Encounter"));
        let (s, _) = answer(503, None, Some((Call, 3))).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        for (status, ct, message) in [
            (500, Some("application/json"), Some((Call, 3))),
            (500, Some("text/event-stream"), Some((Call, 3))),
            (500, Some("text/plain"), None),
            (404, Some("text/plain"), Some((Call, 3))),
            // A client's response to a server request (its id is the server's): not a call
            // this answer could be the response to.
            (500, Some("text/plain"), Some((Reply, 3))),
        ] {
            let (s, body) = answer(status, ct, message).await;
            assert_eq!((s.as_u16(), body.as_str()), (status, "Encounter an error"));
        }
    }

    #[tokio::test]
    async fn each_error_gets_its_answer() {
        let (s, ra, v) = answer(
            Box::new(CircuitOpen::new(
                Some("crash".into()),
                Duration::from_millis(1500),
            )),
            Some(RequestId::Number(9)),
        )
        .await;
        assert_eq!(
            (s, ra.as_deref()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("2"))
        );
        assert_eq!(v["id"], 9);
        assert_eq!(v["error"]["code"], -31503);
        assert_eq!(v["error"]["data"]["correlationId"], "case-1");
        // The key stays out of the answer: keyed by upstream, it is an internal address.
        assert_eq!(v["error"]["message"], "circuit open");
        let (_, _, v) = answer(
            Box::new(crate::error::BulkheadFull::new(Some(
                "10.0.3.7:8443".into(),
            ))),
            None,
        )
        .await;
        assert_eq!(v["error"]["message"], "bulkhead full");
        let keyed = CircuitOpen::new(Some("10.0.3.7:8443".into()), Duration::from_secs(1));
        assert_eq!(grpc_status(&keyed).message, "circuit open");
        assert!(keyed.to_string().contains("10.0.3.7"), "logs keep it");

        let (s, ra, v) = answer(Box::new(Elapsed), Some("a".into())).await;
        assert_eq!((s, ra), (StatusCode::GATEWAY_TIMEOUT, None));
        assert_eq!(v["error"]["code"], -31504);
        assert_eq!(v["id"], "a");

        let (s, ra, v) = answer(Box::new(crate::error::ShuttingDown), Some(5.into())).await;
        assert_eq!((s, ra), (StatusCode::SERVICE_UNAVAILABLE, None));
        assert_eq!(
            (v["id"].as_i64(), v["error"]["code"].as_i64()),
            (Some(5), Some(-31510))
        );
        assert_eq!(v["error"]["message"], "server shutting down");

        let (s, ra, _) = answer(Box::new(RateLimited::new(Duration::from_secs(3))), None).await;
        assert_eq!(
            (s, ra.as_deref()),
            (StatusCode::TOO_MANY_REQUESTS, Some("3"))
        );

        let (s, _, v) = answer(
            Box::new(std::io::Error::other("secret upstream detail")),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        assert_eq!(v["error"]["code"], -31502);
        assert!(!v.to_string().contains("secret"));

        // A call the client cancelled in line: a stream that ends without a message.
        let e: BoxError = Box::new(crate::error::CancelledInLine::new());
        let resp = error_response::<String>(&*e, Some(&RequestId::Number(4)), None);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        assert!(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
    }
}

/// A gRPC status for a call-plane error, without a tonic dependency: the table behind the tonic
/// form of rescue (`RescueGrpcLayer` and `tonic_status`, with the `tonic` feature), the
/// trailers-only answers layers make for gRPC callers ([`grpc_error_response`]) and the
/// timeout's trailers at a gRPC answer's deadline.
///
/// | error | gRPC code |
/// |---|---|
/// | [`CircuitOpen`](crate::error::CircuitOpen), [`ShuttingDown`](crate::error::ShuttingDown) | `UNAVAILABLE` (14) |
/// | [`BulkheadFull`](crate::error::BulkheadFull), [`RateLimited`](crate::error::RateLimited) | `RESOURCE_EXHAUSTED` (8) |
/// | [`Elapsed`](crate::error::Elapsed) | `DEADLINE_EXCEEDED` (4) |
/// | [`Unauthorized`](crate::error::Unauthorized) | `UNAUTHENTICATED` (16) |
/// | [`Forbidden`](crate::error::Forbidden) | `PERMISSION_DENIED` (7) |
/// | [`PayloadTooLarge`](crate::error::PayloadTooLarge) | `INVALID_ARGUMENT` (3) |
/// | [`TokenUnavailable`](crate::error::TokenUnavailable), [`InvalidToken`](crate::error::InvalidToken) | `INTERNAL` (13) |
/// | anything else | `UNAVAILABLE` (14), generic message (the HTTP form's 502) |
///
/// The tonic form (`tonic_status`, with the `tonic` feature) looks first for a `tonic::Status`
/// (or an error tonic maps, such as a connection error) inside an error that is none of these,
/// and keeps its code, with the generic message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcStatus {
    /// The gRPC status code.
    pub code: i32,
    /// The status message (never an inner error's text, which may carry upstream details).
    pub message: String,
    /// Seconds until the caller may retry, for a `retry-after`-style metadata entry.
    pub retry_after_secs: Option<u64>,
}

/// Maps a call-plane error to its [`GrpcStatus`].
pub fn grpc_status(error: &(dyn std::error::Error + 'static)) -> GrpcStatus {
    let Some(l) = local_error(error) else {
        return GrpcStatus {
            code: 14,
            message: String::from("upstream call failed"),
            retry_after_secs: None,
        };
    };
    let code = match l.status().as_u16() {
        // CANCELLED
        _ if l.rejection() == Some(LocalRejection::Cancelled) => 1,
        503 if l.rejection() == Some(LocalRejection::BulkheadFull) => 8,
        503 => 14,
        429 => 8,
        504 => 4,
        401 => 16,
        403 => 7,
        413 => 3,
        500 => 13,
        _ => 14,
    };
    GrpcStatus {
        code,
        message: l.public_message(),
        retry_after_secs: l.retry_after().map(retry_after_secs),
    }
}

/// The delay before a retry, in whole milliseconds rounded up, for `grpc-retry-pushback-ms`.
fn pushback_ms(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    local_error(error)
        .and_then(|l| l.retry_after())
        .map(|d| u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// The `content-type` in `headers` when it is gRPC's or gRPC-Web's ([`BodyKind::Grpc`],
/// [`BodyKind::GrpcWeb`]: any case, with or without parameters), or `None`.
///
/// An HTTP-plane layer that answers a request by itself (bearer-auth's 401, rate-limit's 429)
/// answers a gRPC caller with [`grpc_error_response`] instead of its JSON-RPC body: a gRPC
/// client reads an HTTP error with a JSON body as a protocol error (`INTERNAL`), not as the
/// refusal it was.
pub fn grpc_content_type(headers: &http::HeaderMap) -> Option<&HeaderValue> {
    match crate::observe::body_kind(headers) {
        BodyKind::Grpc | BodyKind::GrpcWeb => headers.get(header::CONTENT_TYPE),
        _ => None,
    }
}

/// `grpc-status` and `grpc-message` (percent-encoded as gRPC requires) for `code` and
/// `message`: the trailers that end a gRPC answer, or the headers of a trailers-only one.
pub fn grpc_status_headers(code: i32, message: &str) -> http::HeaderMap {
    use std::fmt::Write;
    let mut encoded = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            encoded.push(char::from(b));
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    let mut map = http::HeaderMap::with_capacity(2);
    map.insert("grpc-status", HeaderValue::from(code));
    // Printable ASCII once encoded: never fails.
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        map.insert("grpc-message", v);
    }
    map
}

/// A local error as a gRPC *trailers-only* answer, which every gRPC client understands: HTTP
/// 200, the request's gRPC `content_type` (see [`grpc_content_type`]), no body, and in
/// the headers `grpc-status` and `grpc-message` from [`grpc_status`] (`UNAUTHENTICATED` for
/// [`Unauthorized`](crate::error::Unauthorized), `RESOURCE_EXHAUSTED` for
/// [`RateLimited`](crate::error::RateLimited), …), with `retry-after` (whole seconds) and
/// `grpc-retry-pushback-ms` when the error knows when to try again: the same answer
/// `RescueGrpcLayer`'s `tonic::Status` becomes (with the `tonic` feature).
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_armor_mcp::error::RateLimited;
/// use tower_armor_mcp::rescue::{grpc_error_response, grpc_content_type};
///
/// let mut req = HeaderMap::new();
/// req.insert("content-type", "application/grpc".parse().unwrap());
/// let ct = grpc_content_type(&req).expect("a gRPC request");
/// let resp = grpc_error_response::<()>(&RateLimited::new(Duration::from_millis(1500)), ct);
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.headers()["grpc-status"], "8");
/// assert_eq!(resp.headers()["retry-after"], "2");
/// assert_eq!(resp.headers()["grpc-retry-pushback-ms"], "1500");
/// ```
pub fn grpc_error_response<B>(
    error: &(dyn std::error::Error + 'static),
    content_type: &HeaderValue,
) -> Response<ResponseBody<B>> {
    let s = grpc_status(error);
    let mut resp = Response::new(ResponseBody::empty());
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type.clone());
    headers.extend(grpc_status_headers(s.code, &s.message));
    if let Some(secs) = s.retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(ms) = pushback_ms(error) {
        headers.insert("grpc-retry-pushback-ms", HeaderValue::from(ms));
    }
    resp
}

/// The tonic form of rescue: a `tonic::Status` for a call-plane error, with the code and message
/// of [`grpc_status`] and the error kept as the status's source. When the error knows when to
/// try again, two metadata entries say so: `retry-after` (whole seconds) and
/// `grpc-retry-pushback-ms` (the same delay in milliseconds: what gRPC clients' retry policies
/// read).
///
/// A `tonic::Status` already (an inner tonic layer's) is returned as is. An error that is not
/// one of ours is given to `tonic::Status::try_from_error`, which finds a `Status` deeper in
/// its source chain and maps connection errors (and, with tonic's `server` feature, HTTP/2
/// errors: a `CANCEL` stays `CANCELLED`): its code is kept, with a generic message and none of
/// its metadata (which may carry an upstream's text and headers). Anything left is
/// `UNAVAILABLE` with a generic message. Needs the `tonic` feature.
#[cfg(feature = "tonic")]
pub fn tonic_status(error: BoxError) -> tonic::Status {
    let error = match error.downcast::<tonic::Status>() {
        Ok(status) => return *status,
        Err(error) => error,
    };
    // Not one of ours: a `Status` (or an error tonic maps) deeper in the chain keeps its code.
    let error = if local_error(&*error).is_none() {
        match tonic::Status::try_from_error(error) {
            Ok(found) => {
                let mut status = tonic::Status::new(found.code(), "upstream call failed");
                status.set_source(std::sync::Arc::new(found));
                return status;
            }
            Err(error) => error,
        }
    } else {
        error
    };
    let pushback_ms = pushback_ms(&*error);
    let s = grpc_status(&*error);
    let mut status = tonic::Status::new(tonic::Code::from_i32(s.code), s.message);
    let meta = status.metadata_mut();
    if let Some(secs) = s.retry_after_secs {
        meta.insert("retry-after", secs.into());
    }
    if let Some(ms) = pushback_ms {
        meta.insert("grpc-retry-pushback-ms", ms.into());
    }
    status.set_source(std::sync::Arc::from(error));
    status
}

/// The tonic form of [`RescueLayer`]: the wrapped service's errors become `tonic::Status`
/// ([`tonic_status`]: `UNAVAILABLE` for an open circuit, `RESOURCE_EXHAUSTED` for a full
/// bulkhead or a rate limit, `DEADLINE_EXCEEDED` for a timeout, with `retry-after` metadata).
///
/// In a tonic client stack it goes outermost, around the call-plane layers, so the generated
/// client (which keeps a `Status` it finds as the error) hands the caller that code instead of
/// `UNKNOWN`; in a tonic server stack (`Server::builder().layer(..)`) tonic answers with it.
/// Needs the `tonic` feature.
///
/// ```
/// use tower::{Layer, Service, ServiceExt, service_fn, BoxError};
/// use std::time::Duration;
/// use tower_armor_mcp::{error::CircuitOpen, rescue::RescueGrpcLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = RescueGrpcLayer::new().layer(service_fn(|_req: ()| async {
///     Err::<(), BoxError>(Box::new(CircuitOpen::new(None, Duration::from_secs(2))))
/// }));
/// let status = svc.oneshot(()).await.unwrap_err();
/// assert_eq!(status.code(), tonic::Code::Unavailable);
/// # }
/// ```
#[cfg(feature = "tonic")]
#[derive(Clone, Copy, Debug, Default)]
pub struct RescueGrpcLayer {
    _priv: (),
}

#[cfg(feature = "tonic")]
impl RescueGrpcLayer {
    /// The layer.
    pub fn new() -> Self {
        RescueGrpcLayer::default()
    }
}

#[cfg(feature = "tonic")]
impl<S> Layer<S> for RescueGrpcLayer {
    type Service = RescueGrpc<S>;

    fn layer(&self, inner: S) -> RescueGrpc<S> {
        RescueGrpc { inner }
    }
}

/// The service of [`RescueGrpcLayer`].
#[cfg(feature = "tonic")]
#[derive(Clone, Debug)]
pub struct RescueGrpc<S> {
    inner: S,
}

#[cfg(feature = "tonic")]
impl<S> RescueGrpc<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The response future of [`RescueGrpc`].
#[cfg(feature = "tonic")]
pub type RescueGrpcFuture<F, E> = futures_util::future::MapErr<F, fn(E) -> tonic::Status>;

#[cfg(feature = "tonic")]
impl<S, R> Service<R> for RescueGrpc<S>
where
    S: Service<R>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = tonic::Status;
    type Future = RescueGrpcFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        self.inner.poll_ready(cx).map_err(into_status)
    }

    fn call(&mut self, req: R) -> Self::Future {
        use futures_util::TryFutureExt;
        self.inner
            .call(req)
            .map_err(into_status::<S::Error> as fn(S::Error) -> tonic::Status)
    }
}

#[cfg(feature = "tonic")]
fn into_status<E: Into<BoxError>>(error: E) -> tonic::Status {
    tonic_status(error.into())
}

#[cfg(test)]
mod grpc_tests {
    use std::time::Duration;

    use super::*;
    use crate::error::{BulkheadFull, CircuitOpen, Elapsed, RateLimited};

    #[test]
    fn grpc_answers() {
        use crate::error::Unauthorized;
        let mut h = http::HeaderMap::new();
        assert!(grpc_content_type(&h).is_none());
        for (v, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("application/grpc-web-text", true),
            ("application/grpc-web+proto", true),
            ("application/grpc-foo", false),
            ("application/grpc-webx", false),
            ("application/grpc-web-textual", false),
            ("APPLICATION/GRPC;charset=x", true),
            ("application/grpcx", false),
            ("application/json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(grpc_content_type(&h).is_some(), grpc, "{v}");
        }
        let t = grpc_status_headers(4, "50% done\n\u{e9}");
        assert_eq!(t["grpc-status"], "4");
        assert_eq!(t["grpc-message"], "50%25 done%0A%C3%A9");
        let ct = HeaderValue::from_static("application/grpc+proto");
        let resp = grpc_error_response::<()>(&Unauthorized, &ct);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], ct);
        assert_eq!(resp.headers()["grpc-status"], "16");
        assert_eq!(resp.headers()["grpc-message"], "unauthorized");
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn grpc_codes() {
        let s = grpc_status(&CircuitOpen::new(None, Duration::from_millis(200)));
        assert_eq!((s.code, s.retry_after_secs), (14, Some(1)));
        assert_eq!(grpc_status(&BulkheadFull::new(None)).code, 8);
        assert_eq!(
            grpc_status(&RateLimited::new(Duration::from_secs(2))).code,
            8
        );
        assert_eq!(grpc_status(&Elapsed).code, 4);
        assert_eq!(grpc_status(&crate::error::ShuttingDown).code, 14);
        assert_eq!(grpc_status(&crate::error::CancelledInLine).code, 1);
        let s = grpc_status(&std::io::Error::other("secret"));
        assert_eq!(s.code, 14);
        assert!(!s.message.contains("secret"));
        let no_token = crate::error::TokenUnavailable::new("vault down".into());
        assert_eq!(grpc_status(&no_token).code, 13);
        assert_eq!(grpc_status(&crate::error::InvalidToken).code, 13);
    }

    /// An error wrapping another as its source (what a client stack's own layers may do).
    #[cfg(feature = "tonic")]
    #[derive(Debug)]
    struct Wrapped(tonic::Status);

    #[cfg(feature = "tonic")]
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    #[cfg(feature = "tonic")]
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn tonic_form_keeps_inner_statuses_and_sends_pushback() {
        let mut inner = tonic::Status::invalid_argument("upstream detail");
        inner
            .metadata_mut()
            .insert("x-upstream", "secret".parse().unwrap());
        let s = tonic_status(Box::new(Wrapped(inner)));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::InvalidArgument, "upstream call failed")
        );
        assert!(s.metadata().get("x-upstream").is_none());
        let s = tonic_status(Box::new(tonic::Status::cancelled("gone")));
        assert_eq!(s.code(), tonic::Code::Cancelled);

        let s = tonic_status(Box::new(RateLimited::new(Duration::from_millis(1500))));
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.metadata().get("retry-after").unwrap(), "2");
        assert_eq!(s.metadata().get("grpc-retry-pushback-ms").unwrap(), "1500");

        let s = tonic_status(Box::new(BulkheadFull::new(None)));
        assert!(s.metadata().get("grpc-retry-pushback-ms").is_none());
        let s = tonic_status(Box::new(std::io::Error::other("upstream detail")));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(!s.message().contains("upstream detail"));
    }
}
