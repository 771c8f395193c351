//! The response future of [`ToolAllowList`](super::ToolAllowList).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_armor_mcp::observe::{BodyKind, body_kind};

use super::body::{AllowBody, ListFilter};

pin_project! {
    /// Response future of [`ToolAllowList`](super::ToolAllowList): the inner answer (with a
    /// `tools/list` body filtered), or the local answer to a refused call.
    pub struct AllowFuture<F> {
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
            filter: Option<ListFilter>,
        },
        Local {
            answer: Option<(Response<()>, Bytes)>,
        },
    }
}

impl<F> AllowFuture<F> {
    pub(crate) fn inner(future: F, filter: Option<ListFilter>) -> Self {
        AllowFuture {
            kind: Kind::Inner { future, filter },
        }
    }

    pub(crate) fn local(answer: (Response<()>, Bytes)) -> Self {
        AllowFuture {
            kind: Kind::Local {
                answer: Some(answer),
            },
        }
    }
}

impl<F> fmt::Debug for AllowFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Local { .. } => "local",
        };
        f.debug_struct("AllowFuture")
            .field("state", &state)
            .finish()
    }
}

/// Whether `body` is known to hold nothing.
fn empty<B: Body>(body: &B) -> bool {
    body.is_end_stream() || body.size_hint().exact() == Some(0)
}

/// The answer that replaces one the filter cannot read (fail closed): 502 with a JSON-RPC
/// error (local code `-31502`) for the request.
fn unfilterable(filter: &ListFilter) -> (Response<()>, Bytes) {
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    (resp, filter.error_message(None))
}

impl<F, B, E> Future for AllowFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<AllowBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, filter } => {
                let mut resp = ready!(future.poll(cx))?;
                let Some(filter) = filter.take() else {
                    return Poll::Ready(Ok(resp.map(AllowBody::inner)));
                };
                // Fail closed on what cannot be read: an encoded JSON or SSE answer, or a
                // success answer to a `tools/list` request with a body that is neither (a client
                // may still decode or read either, hidden names and all). A GET's answer of
                // another type is no MCP stream (a non-MCP route behind the layer): it passes.
                let kind = body_kind(resp.headers());
                let unreadable = match kind {
                    BodyKind::Json | BodyKind::Sse => {
                        tower_armor_mcp::observe::is_encoded(resp.headers())
                    }
                    // (gRPC is neither JSON nor SSE: as any other type.)
                    _ => {
                        filter.single()
                            && resp.status().is_success()
                            && (tower_armor_mcp::observe::is_encoded(resp.headers())
                                || !empty(resp.body()))
                    }
                };
                if unreadable {
                    tracing::error!(
                        status = resp.status().as_u16(),
                        "an answer the tool allow-list must filter is encoded or neither JSON \
                         nor SSE: refused (fail closed)"
                    );
                    let (head, body) = unfilterable(&filter);
                    return Poll::Ready(Ok(head.map(|()| AllowBody::local(body))));
                }
                let resp = match kind {
                    BodyKind::Json => {
                        resp.headers_mut().remove(header::CONTENT_LENGTH);
                        resp.map(|b| AllowBody::json(b, filter))
                    }
                    BodyKind::Sse => {
                        resp.headers_mut().remove(header::CONTENT_LENGTH);
                        resp.map(|b| AllowBody::sse(b, filter))
                    }
                    _ => resp.map(AllowBody::inner),
                };
                Poll::Ready(Ok(resp))
            }
            KindProj::Local { answer } => {
                let (resp, body) = answer.take().expect("AllowFuture polled after completion");
                Poll::Ready(Ok(resp.map(|()| AllowBody::local(body))))
            }
        }
    }
}
