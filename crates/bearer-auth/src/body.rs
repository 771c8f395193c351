//! The response body of [`BearerAuth`](crate::BearerAuth).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_armor_mcp::error::CODE_UNAUTHORIZED;
use tower_armor_mcp::sse::SseParser;
use tower_armor_mcp::{CorrelationId, ListenId, Principal, ResponseBody};

use crate::layer::Shared;
use crate::tokens::Watch;

pin_project! {
    /// Response body of [`BearerAuth`](crate::BearerAuth): the inner body or a local answer
    /// ([`ResponseBody`]).
    ///
    /// A long-lived stream (a `GET` listen stream, a `subscriptions/listen` POST) opened with a
    /// token from a token file ends, before its next frame, once a reload of the file has
    /// revoked that token (removed it, or given it to another principal): a rotation retires a
    /// secret from the streams it opened too, not only from new requests. The check runs each
    /// time the stream is polled (the SSE layer's keep-alive polls an idle one; with the
    /// keep-alive off, an idle stream notices at the next request or the server's next event)
    /// and when a reload replaces the tokens; it keeps the token's keyed digest, never the token. The
    /// stream ends between two frames of the server's (rmcp writes one event per frame). A
    /// 2026-07-28 `subscriptions/listen` stream (its id known from the inspector's
    /// [`ListenId`]; uncompressed `text/event-stream`) that is between two events, and whose
    /// server has not sent the subscription's final result itself, then gets one final event
    /// first: the error answer to the listen request, `-31401` "the token that opened this
    /// stream was revoked", so that its client learns why rather than seeing a lost
    /// subscription (and does not resubscribe with the same token). Inside an event, or on a
    /// 2025-11-25 GET stream, it just ends. Other answers pass unchanged.
    pub struct BearerBody<B> {
        #[pin]
        body: ResponseBody<B>,
        grant: Option<Box<Grant>>,
        ended: bool,
    }
}

/// What a long-lived stream opened with a token from the file holds on to.
pub(crate) struct Grant {
    pub(crate) shared: Arc<Shared>,
    pub(crate) principal: Principal,
    pub(crate) watch: Watch,
    /// For the final error event: the request's correlation id.
    pub(crate) correlation: Option<CorrelationId>,
    /// The listen request's id, when the stream is a `subscriptions/listen` answer (set from
    /// the answer's extensions).
    pub(crate) listen: Option<ListenId>,
    /// Where the stream's events end, for a final event of ours (fed only with a listen id).
    pub(crate) events: SseParser,
    /// The server sent the subscription's final result itself.
    pub(crate) closed: bool,
}

/// How much of one event a watched listen stream reads, to see the server's final result (a
/// small message; a longer event is only a notification).
pub(crate) const LISTEN_EVENT_READ: usize = 64 << 10;

/// What the client of a revoked `subscriptions/listen` stream reads last.
pub(crate) const REVOKED_MESSAGE: &str = "the token that opened this stream was revoked";

impl<B> BearerBody<B> {
    pub(crate) fn new(body: ResponseBody<B>, grant: Option<Box<Grant>>) -> Self {
        BearerBody {
            body,
            grant,
            ended: false,
        }
    }
}

impl<B> From<ResponseBody<B>> for BearerBody<B> {
    fn from(body: ResponseBody<B>) -> Self {
        BearerBody::new(body, None)
    }
}

impl<B> fmt::Debug for BearerBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerBody")
            .field("watched", &self.grant.is_some())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<B> Body for BearerBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Some(g) = this.grant {
            let revoked = g
                .shared
                .tokens
                .as_ref()
                .and_then(|t| t.file())
                .is_some_and(|file| file.revoked(&mut g.watch, &g.principal, cx));
            if revoked {
                tracing::info!(
                    principal = %g.principal,
                    "long-lived stream ended: the token file no longer holds the token that opened it"
                );
                *this.ended = true;
                let last = g
                    .listen
                    .as_ref()
                    .filter(|_| g.events.at_boundary() && !g.closed)
                    .map(|listen| {
                        Ok(Frame::data(tower_armor_mcp::sse::error_event(
                            Some(&listen.0),
                            CODE_UNAUTHORIZED,
                            REVOKED_MESSAGE,
                            g.correlation.as_ref(),
                        )))
                    });
                *this.grant = None;
                return Poll::Ready(last);
            }
        }
        let frame = this.body.poll_frame(cx);
        if let (Some(g), Poll::Ready(Some(Ok(f)))) = (this.grant.as_mut(), &frame)
            && let Some(listen) = &g.listen
            && let Some(data) = f.data_ref()
        {
            // The server's own final result ends the subscription: no answer of ours after it.
            let closed = &mut g.closed;
            g.events.feed(data, |e| *closed |= listen.is_final(e.data));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.ended {
            return SizeHint::with_exact(0);
        }
        let mut hint = self.body.size_hint();
        if self.grant.is_some() {
            // It may end early.
            hint.set_lower(0);
        }
        hint
    }
}
