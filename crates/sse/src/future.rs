//! The response future of [`Sse`](crate::Sse).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_armor_mcp::ListenId;

use crate::body::SseBody;
use crate::layer::{Credential, ListenPlace, Shared};
use crate::policy;

/// The session's standalone-stream place of a request (see
/// [One listen stream per session](crate#one-listen-stream-per-session)).
pub(crate) enum Place {
    /// Not a standalone `GET` of a session.
    None,
    /// Taken when the request came.
    Held(ListenPlace),
    /// Held by a request with another credential when this one came: asked for again if the
    /// answer is a stream (409 then if still held).
    Wanted(HeaderValue, Credential),
}

pin_project! {
    /// Waits for the inner answer; an SSE answer gets its headers fixed and its body wrapped in
    /// the stream state machine, any other answer passes through. A second standalone stream of
    /// a session is answered 409 without calling the inner service.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Calling {
            #[pin]
            inner: F,
            shared: Option<Arc<Shared>>,
            long_lived: bool,
            resumed_from: Option<Bytes>,
            place: Place,
        },
        Conflict,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        shared: Arc<Shared>,
        long_lived: bool,
        resumed_from: Option<Bytes>,
        place: Place,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Calling {
                inner,
                shared: Some(shared),
                long_lived,
                resumed_from,
                place,
            },
        }
    }

    pub(crate) fn conflict() -> Self {
        ResponseFuture {
            kind: Kind::Conflict,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Calling { long_lived, .. } => f
                .debug_struct("ResponseFuture")
                .field("long_lived", long_lived)
                .finish_non_exhaustive(),
            Kind::Conflict => f.write_str("ResponseFuture::Conflict"),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<SseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (inner, shared, long_lived, resumed_from, place) = match self.project().kind.project() {
            KindProj::Conflict => return Poll::Ready(Ok(conflict())),
            KindProj::Calling {
                inner,
                shared,
                long_lived,
                resumed_from,
                place,
            } => (inner, shared, long_lived, resumed_from, place),
        };
        let resp = ready!(inner.poll(cx))?;
        let shared = shared
            .take()
            .expect("ResponseFuture polled after completion");
        // Not a stream (the server refused the GET), or a compressed one: the session's place,
        // if this request took it, is given back when this future is dropped.
        if !policy::is_event_stream(resp.headers()) {
            return Poll::Ready(Ok(resp.map(SseBody::passthrough)));
        }
        let (mut parts, body) = resp.into_parts();
        if policy::prepare_sse_headers(&mut parts.headers) {
            tracing::error!(
                content_encoding = ?parts.headers.get(http::header::CONTENT_ENCODING),
                "a text/event-stream answer is compressed: events are held back until the \
                 compressor flushes; exclude SSE from compression (see tower_armor_sse::compression). \
                 Passed through without keep-alives or idle timeout",
            );
            // Its bytes are not events: no boundary can be found in them, and a keep-alive
            // comment written into them would corrupt the compressed stream.
            return Poll::Ready(Ok(Response::from_parts(parts, SseBody::passthrough(body))));
        }
        // The stream holds the session's place until it ends. A request that found the place
        // held by another credential asks for it now: the server let it in, so it is the
        // session's client (or the holder's request was refused and has let go of it).
        let place = match std::mem::replace(place, Place::None) {
            Place::None => None,
            Place::Held(place) => Some(place),
            Place::Wanted(session, credential) => {
                match ListenPlace::take(&shared, session, credential) {
                    Ok(place) => Some(place),
                    Err(_) => {
                        tracing::debug!(
                            "a second standalone SSE stream for one session refused (409)"
                        );
                        return Poll::Ready(Ok(conflict()));
                    }
                }
            }
        };
        // The inspector names a `subscriptions/listen` answer's request (for its graceful close).
        let listen = if *long_lived {
            parts.extensions.get::<ListenId>().cloned()
        } else {
            None
        };
        Poll::Ready(Ok(Response::from_parts(
            parts,
            SseBody::stream(
                body,
                shared,
                *long_lived,
                resumed_from.take(),
                listen,
                place,
            ),
        )))
    }
}

/// The 409 for a second standalone stream of a session.
fn conflict<B>() -> Response<SseBody<B>> {
    let body = tower_armor_mcp::jsonrpc::error_body(
        None,
        tower_armor_mcp::error::CODE_STREAM_CONFLICT,
        "Conflict: only one standalone SSE stream is allowed per session",
        None,
    );
    let mut resp = Response::new(SseBody::local(body));
    *resp.status_mut() = StatusCode::CONFLICT;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
