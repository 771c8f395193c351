//! The response future of [`BearerAuth`](crate::BearerAuth).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_armor_mcp::body::{json_rpc_error_response, local_error_response};
use tower_armor_mcp::error::CODE_UNAUTHORIZED;
use tower_armor_mcp::error::Unauthorized;
use tower_armor_mcp::grpc_error_response;
use tower_armor_mcp::jsonrpc::INVALID_REQUEST;
use tower_armor_mcp::observe::is_event_stream;
use tower_armor_mcp::{CorrelationId, ListenId, ResponseBody};

use crate::body::{BearerBody, Grant};
use crate::parse::AuthFailure;
use crate::service::Binding;

/// The body rmcp answers for an unknown (or expired) session, mirrored byte for byte so that a
/// session bound to another principal is indistinguishable from one that does not exist.
pub(crate) const UNKNOWN_SESSION_BODY: &str = "Not Found: Session not found";

pin_project! {
    /// Response future of [`BearerAuth`](crate::BearerAuth): the inner service's answer (after
    /// learning session bindings from it), or a local 401 / unknown-session answer.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner {
            #[pin]
            future: F,
            binding: Option<Binding>,
            grant: Option<Box<Grant>>,
        },
        Unauthorized {
            failure: AuthFailure,
            challenge: Option<HeaderValue>,
            correlation: Option<CorrelationId>,
            // The request's content type, when it is a gRPC call.
            grpc: Option<HeaderValue>,
        },
        UnknownSession,
        // `Mcp-Session-Id` more than once.
        RepeatedSession {
            correlation: Option<CorrelationId>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F, binding: Option<Binding>, grant: Option<Box<Grant>>) -> Self {
        ResponseFuture {
            kind: Kind::Inner {
                future,
                binding,
                grant,
            },
        }
    }

    pub(crate) fn unauthorized(
        failure: AuthFailure,
        challenge: HeaderValue,
        correlation: Option<CorrelationId>,
        grpc: Option<HeaderValue>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Unauthorized {
                failure,
                challenge: Some(challenge),
                correlation,
                grpc,
            },
        }
    }

    pub(crate) fn unknown_session() -> Self {
        ResponseFuture {
            kind: Kind::UnknownSession,
        }
    }

    pub(crate) fn repeated_session(correlation: Option<CorrelationId>) -> Self {
        ResponseFuture {
            kind: Kind::RepeatedSession { correlation },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Unauthorized { .. } => "unauthorized",
            Kind::UnknownSession => "unknown_session",
            Kind::RepeatedSession { .. } => "repeated_session",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<BearerBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                future,
                binding,
                grant,
            } => {
                let resp = ready!(future.poll(cx))?;
                if let Some(b) = binding.take() {
                    b.observe(resp.status(), resp.headers());
                }
                let mut grant = grant.take();
                // A final event of ours only goes into an uncompressed SSE stream (not a JSON
                // error answer to the listen request, nor bytes a compressor wrote).
                if let Some(g) = grant.as_mut()
                    && is_event_stream(resp.headers())
                    && !tower_armor_mcp::observe::is_encoded(resp.headers())
                {
                    g.listen = resp.extensions().get::<ListenId>().cloned();
                }
                Poll::Ready(Ok(
                    resp.map(|body| BearerBody::new(ResponseBody::inner(body), grant))
                ))
            }
            KindProj::Unauthorized {
                failure,
                challenge,
                correlation,
                grpc,
            } => {
                if let Some(content_type) = grpc {
                    // A gRPC caller: `UNAUTHENTICATED` in a trailers-only answer (a 401 with a
                    // JSON body reaches a gRPC client as a protocol error), with the challenge.
                    let mut resp = grpc_error_response(&Unauthorized, content_type);
                    if let Some(c) = challenge.take() {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
                    }
                    return Poll::Ready(Ok(resp.map(BearerBody::from)));
                }
                // As every local error answer: the correlation id in `data`, when known.
                let data = match correlation {
                    Some(c) => {
                        serde_json::json!({ "reason": failure.as_str(), "correlationId": c.as_str() })
                    }
                    None => serde_json::json!({ "reason": failure.as_str() }),
                };
                let mut resp = json_rpc_error_response(
                    StatusCode::UNAUTHORIZED,
                    None,
                    CODE_UNAUTHORIZED,
                    "unauthorized",
                    Some(&data),
                );
                if let Some(c) = challenge.take() {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, c);
                }
                Poll::Ready(Ok(resp.map(BearerBody::from)))
            }
            KindProj::RepeatedSession { correlation } => {
                // The answer the inspector gives the same request (it would refuse it next),
                // but with `id: null`: this layer reads no body, and it must not let the
                // request on (a stack without the inspector would hand the server a session
                // that was never checked against the principal).
                let resp = local_error_response(
                    StatusCode::BAD_REQUEST,
                    None,
                    INVALID_REQUEST,
                    "Mcp-Session-Id header repeated",
                    correlation.as_ref(),
                );
                Poll::Ready(Ok(resp.map(BearerBody::from)))
            }
            KindProj::UnknownSession => {
                // rmcp's answer to an unknown session: a plain-text 404 (no Content-Type). For a
                // `DELETE` too, where rmcp itself answers an empty 202: the MCP spec's answer to
                // a session id that is not valid is 404, and a 202 would tell the caller that it
                // ended a session it has no part in.
                let mut resp = Response::new(BearerBody::from(ResponseBody::local(
                    Bytes::from_static(UNKNOWN_SESSION_BODY.as_bytes()),
                )));
                *resp.status_mut() = StatusCode::NOT_FOUND;
                Poll::Ready(Ok(resp))
            }
        }
    }
}
