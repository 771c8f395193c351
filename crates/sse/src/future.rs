//! The response future of [`Sse`](crate::Sse).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use tower_armor_mcp::{CorrelationId, ListenId};
use tower_service::Service;

use crate::body::SseBody;
use crate::layer::{Credential, ListenPlace, Shared, Taken};
use crate::policy;

/// The session's standalone-stream place of a request (see
/// [One listen stream per session](crate#one-listen-stream-per-session)).
pub(crate) enum Place {
    /// Not a standalone `GET` of a session.
    None,
    /// Taken when the request came (or once the request before it was answered).
    Held(ListenPlace),
    /// The session's stream was open with another credential when this request came: it went
    /// on to authentication; if the server lets it in with a stream, that is a second stream
    /// (rmcp made it an idle one: the first was open when it came), refused with 409, which
    /// carries the request's correlation id.
    WentOn(Option<CorrelationId>),
}

/// What the stream wrapper needs once the inner answer comes.
pub(crate) struct Call {
    pub(crate) shared: Arc<Shared>,
    pub(crate) long_lived: bool,
    pub(crate) resumed_from: Option<Bytes>,
}

/// A standalone `GET` waiting for the request of its session in flight to be answered.
struct Waiting<S, B> {
    req: Request<B>,
    inner: S,
    session: HeaderValue,
    credential: Credential,
    call: Call,
}

pin_project! {
    /// Waits for the inner answer; an SSE answer gets its headers fixed and its body wrapped in
    /// the stream state machine, any other answer passes through. A second standalone stream of
    /// a session is answered 409 without calling the inner service; a standalone `GET` that
    /// comes while another of its session is in flight waits for that one's answer first.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        kind: Kind<S, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, B>
    where
        S: Service<Request<B>>,
    {
        Calling {
            #[pin]
            inner: S::Future,
            call: Option<Call>,
            place: Place,
        },
        // Boxed: rare, and it keeps the common future small.
        Waiting {
            waiting: Option<Box<Waiting<S, B>>>,
        },
        Conflict {
            correlation: Option<CorrelationId>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(inner: S::Future, call: Call, place: Place) -> Self {
        ResponseFuture {
            kind: Kind::Calling {
                inner,
                call: Some(call),
                place,
            },
        }
    }

    pub(crate) fn waiting(
        req: Request<B>,
        inner: S,
        session: HeaderValue,
        credential: Credential,
        call: Call,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Waiting {
                waiting: Some(Box::new(Waiting {
                    req,
                    inner,
                    session,
                    credential,
                    call,
                })),
            },
        }
    }

    pub(crate) fn conflict(correlation: Option<CorrelationId>) -> Self {
        ResponseFuture {
            kind: Kind::Conflict { correlation },
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Calling { call, .. } => f
                .debug_struct("ResponseFuture")
                .field("long_lived", &call.as_ref().map(|c| c.long_lived))
                .finish_non_exhaustive(),
            Kind::Waiting { .. } => f.write_str("ResponseFuture::Waiting"),
            Kind::Conflict { .. } => f.write_str("ResponseFuture::Conflict"),
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Output = Result<Response<SseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let (inner, call, place) = match kind.as_mut().project() {
                KindProj::Conflict { correlation } => {
                    return Poll::Ready(Ok(conflict(correlation.as_ref())));
                }
                KindProj::Waiting { waiting } => {
                    let next = ready!(waited(waiting, cx));
                    kind.set(next);
                    continue;
                }
                KindProj::Calling { inner, call, place } => (inner, call, place),
            };
            let resp = ready!(inner.poll(cx))?;
            let call = call.take().expect("ResponseFuture polled after completion");
            return Poll::Ready(Ok(answered(resp, call, place)));
        }
    }
}

/// The request in flight before this one was answered (or was dropped): this one's turn, to be
/// refused, or to wait again.
#[inline(never)]
fn waited<S, B>(waiting: &mut Option<Box<Waiting<S, B>>>, cx: &mut Context<'_>) -> Poll<Kind<S, B>>
where
    S: Service<Request<B>>,
{
    let w = waiting
        .as_ref()
        .expect("ResponseFuture polled after completion");
    let place = match ListenPlace::take(&w.call.shared, &w.session, w.credential, Some(cx.waker()))
    {
        Taken::Busy => return Poll::Pending,
        Taken::OpenBySame => {
            return Poll::Ready(Kind::Conflict {
                correlation: correlation_of(&w.req),
            });
        }
        Taken::Place(place) => Place::Held(place),
        Taken::OpenByOther => Place::WentOn(correlation_of(&w.req)),
    };
    let Waiting {
        req,
        mut inner,
        call,
        ..
    } = *waiting
        .take()
        .expect("ResponseFuture polled after completion");
    Poll::Ready(Kind::Calling {
        inner: inner.call(req),
        call: Some(call),
        place,
    })
}

/// The inner answer: passed through, or wrapped as a stream (holding the session's place).
fn answered<B>(resp: Response<B>, call: Call, place: &mut Place) -> Response<SseBody<B>> {
    let Call {
        shared,
        long_lived,
        resumed_from,
    } = call;
    // Not a stream (the server refused the GET): the session's place, if this request took
    // it, is given back when this future is dropped.
    if !policy::is_event_stream(resp.headers()) {
        return resp.map(SseBody::passthrough);
    }
    let (mut parts, body) = resp.into_parts();
    let compressed = policy::prepare_sse_headers(&mut parts.headers);
    // The stream (compressed or not) holds the session's place until it ends; requests waiting
    // for it learn that it is open. One that went on while another credential's stream was
    // open is a second stream: refused, even if the first has ended since (it would be the
    // idle one).
    let place = match std::mem::replace(place, Place::None) {
        Place::None => None,
        Place::Held(place) => {
            place.opened();
            Some(place)
        }
        Place::WentOn(correlation) => return conflict(correlation.as_ref()),
    };
    if compressed {
        tracing::error!(
            content_encoding = ?parts.headers.get(http::header::CONTENT_ENCODING),
            "a text/event-stream answer is compressed: events are held back until the \
             compressor flushes; exclude SSE from compression (see tower_armor_sse::compression). \
             Passed through without keep-alives or idle timeout (cut where it is on shutdown)",
        );
        // Its bytes are not events: no boundary can be found in them, and a keep-alive
        // comment written into them would corrupt the compressed stream. It still ends on
        // shutdown, which must not wait for it.
        return Response::from_parts(parts, SseBody::compressed(body, shared, long_lived, place));
    }
    // The inspector names a `subscriptions/listen` answer's request (for its graceful close).
    let listen = if long_lived {
        parts.extensions.get::<ListenId>().cloned()
    } else {
        None
    };
    Response::from_parts(
        parts,
        SseBody::stream(body, shared, long_lived, resumed_from, listen, place),
    )
}

/// The request's correlation id, for the 409 a second standalone stream gets.
pub(crate) fn correlation_of<B>(req: &Request<B>) -> Option<CorrelationId> {
    req.extensions().get::<CorrelationId>().cloned()
}

/// The 409 for a second standalone stream of a session.
fn conflict<B>(correlation: Option<&CorrelationId>) -> Response<SseBody<B>> {
    tracing::debug!("a second standalone SSE stream for one session refused (409)");
    let body = tower_armor_mcp::jsonrpc::local_error_body(
        None,
        tower_armor_mcp::error::CODE_STREAM_CONFLICT,
        "Conflict: only one standalone SSE stream is allowed per session",
        correlation,
    );
    let mut resp = Response::new(SseBody::local(body));
    *resp.status_mut() = StatusCode::CONFLICT;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
