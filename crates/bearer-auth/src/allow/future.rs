//! The response future of [`ToolAllowList`](super::ToolAllowList).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use pin_project_lite::pin_project;

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

enum Content {
    Json,
    Sse,
    Other,
}

fn content(headers: &http::HeaderMap) -> Content {
    use tower_armor_mcp::observe::{is_event_stream, is_json};
    if is_json(headers) {
        Content::Json
    } else if is_event_stream(headers) {
        Content::Sse
    } else {
        Content::Other
    }
}

impl<F, B, E> Future for AllowFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<AllowBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, filter } => {
                let mut resp = ready!(future.poll(cx))?;
                let Some(filter) = filter.take() else {
                    return Poll::Ready(Ok(resp.map(AllowBody::inner)));
                };
                if resp.status() != StatusCode::OK {
                    return Poll::Ready(Ok(resp.map(AllowBody::inner)));
                }
                let resp = match content(resp.headers()) {
                    Content::Json => {
                        resp.headers_mut().remove(header::CONTENT_LENGTH);
                        resp.map(|b| AllowBody::json(b, filter))
                    }
                    Content::Sse => {
                        resp.headers_mut().remove(header::CONTENT_LENGTH);
                        resp.map(|b| AllowBody::sse(b, filter))
                    }
                    Content::Other => resp.map(AllowBody::inner),
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
