//! The response future of [`RateLimit`](crate::RateLimit).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_armor_mcp::ResponseBody;
use tower_service::Service;

use crate::service::{RateHeaders, Shared, Verdict};
use crate::store::KeyStore;

pin_project! {
    /// Response future of [`RateLimit`](crate::RateLimit): the inner call (with the rate-limit
    /// headers added to its answer), a local answer (429, 500), or — only with a store that
    /// answers asynchronously — the wait for the store first.
    pub struct ResponseFuture<S, St, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        St: KeyStore,
    {
        #[pin]
        state: State<S, St, ReqBody, ResBody>,
        // Added to the inner call's answer. Outside the state, so the inner future is written
        // straight into its place.
        headers: Option<RateHeaders>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, St, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        St: KeyStore,
    {
        // Boxed: rare (only stores that answer asynchronously), and it keeps the common
        // future small.
        Checking {
            waiting: Option<Box<Waiting<S, St, ReqBody>>>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Answered {
            response: Option<Response<ResponseBody<ResBody>>>,
        },
    }
}

/// What a request waiting for its store's answer holds on to.
struct Waiting<S, St: KeyStore, ReqBody> {
    check: St::Future,
    req: Request<ReqBody>,
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S, St, ReqBody, ResBody> ResponseFuture<S, St, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: KeyStore,
{
    #[inline]
    pub(crate) fn calling(future: S::Future, headers: Option<RateHeaders>) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            headers,
        }
    }

    pub(crate) fn answered(response: Response<ResponseBody<ResBody>>) -> Self {
        ResponseFuture {
            state: State::Answered {
                response: Some(response),
            },
            headers: None,
        }
    }

    pub(crate) fn checking(
        check: St::Future,
        req: Request<ReqBody>,
        inner: S,
        shared: Arc<Shared<St>>,
    ) -> Self {
        ResponseFuture {
            state: State::Checking {
                waiting: Some(Box::new(Waiting {
                    check,
                    req,
                    inner,
                    shared,
                })),
            },
            headers: None,
        }
    }
}

impl<S, St, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, St, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: KeyStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Checking { .. } => "Checking",
            State::Calling { .. } => "Calling",
            State::Answered { .. } => "Answered",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, St, ReqBody, ResBody> Future for ResponseFuture<S, St, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: KeyStore,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        loop {
            match state.as_mut().project() {
                StateProj::Calling { future } => {
                    let mut resp = ready!(future.poll(cx))?;
                    if let Some(h) = this.headers.take() {
                        h.apply(resp.headers_mut());
                    }
                    return Poll::Ready(Ok(resp.map(ResponseBody::inner)));
                }
                StateProj::Answered { response } => {
                    let resp = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(resp));
                }
                StateProj::Checking { waiting } => {
                    let next = ready!(checked(waiting, this.headers, cx));
                    state.set(next);
                }
            }
        }
    }
}

/// The store's answer, once it is there: the next state (out of line: only stores that answer
/// asynchronously get here).
#[inline(never)]
fn checked<S, St, ReqBody, ResBody>(
    waiting: &mut Option<Box<Waiting<S, St, ReqBody>>>,
    headers: &mut Option<RateHeaders>,
    cx: &mut Context<'_>,
) -> Poll<State<S, St, ReqBody, ResBody>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: KeyStore,
{
    let w = waiting
        .as_mut()
        .expect("ResponseFuture polled after completion");
    let result = ready!(Pin::new(&mut w.check).poll(cx));
    let Waiting {
        req,
        mut inner,
        shared,
        ..
    } = *waiting
        .take()
        .expect("ResponseFuture polled after completion");
    Poll::Ready(match shared.verdict(result, &req) {
        Verdict::Pass(h) => {
            *headers = h;
            State::Calling {
                future: inner.call(req),
            }
        }
        Verdict::Answer(resp) => State::Answered {
            response: Some(resp),
        },
    })
}
