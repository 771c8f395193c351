//! The response future of [`Bulkhead`](crate::Bulkhead).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::HeaderValue;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_armor_mcp::error::{BulkheadFull, CancelledInLine};
use tower_armor_mcp::{BoxError, CallResponse, Completion, RequestId};
use tower_service::Service;

use crate::continued::{Adoption, Continued, SessionPermit};
use crate::inline::Registration;
use crate::pool::{Permit, Waiter};
use crate::streams::StreamSlot;

/// What a call holds until its answer ends.
#[derive(Debug)]
pub(crate) enum Hold {
    None,
    Call(#[allow(dead_code)] Permit),
    // Boxed (streams, sessions and resumptions are rarer): the hold of every call stays two
    // words.
    Stream(#[allow(dead_code)] Box<StreamSlot>),
    /// The permit of a call in a 2025-11-25 session: counted while a continuation holds it
    /// past its answer, for a resumption to adopt.
    Session(Box<SessionPermit>),
    /// A resumption's claim on such a permit, instead of a permit of its own.
    Adopted(#[allow(dead_code)] Box<Adoption>),
}

impl Hold {
    /// Gives back what is held, now.
    #[inline]
    fn release(&mut self) {
        match std::mem::replace(self, Hold::None) {
            Hold::None => {}
            Hold::Call(permit) => drop(permit),
            other => drop(other),
        }
    }

    /// Keeps the permit or stream slot until the call completes: at once for answers known
    /// complete (typed replies, JSON answers already read, error statuses), at the end or drop of
    /// the body for streamed answers, and past that for as long as a layer inside keeps the call
    /// going ([`CompletionHandle::continuation`](tower_armor_mcp::CompletionHandle::continuation):
    /// a dropped 2025-11-25 call the timeout layer holds for its client to resume).
    fn until(self, completion: Completion) {
        match self {
            Hold::None => {}
            Hold::Session(permit) => completion.on_release_with(permit),
            hold => completion.on_release(move || drop(hold)),
        }
    }

    /// The hold of a call granted `permit`: in a 2025-11-25 session (`session`), one a
    /// resumption can adopt while the call goes on past its answer.
    #[inline]
    pub(crate) fn call(permit: Permit, session: Option<(HeaderValue, Arc<Continued>)>) -> Hold {
        match session {
            None => Hold::Call(permit),
            Some((s, continued)) => {
                Hold::Session(Box::new(SessionPermit::new(permit, s, continued)))
            }
        }
    }
}

pin_project! {
    /// Response future of [`Bulkhead`](crate::Bulkhead).
    ///
    /// While the call waits in line it holds the readied inner service and the request; dropping
    /// the future gives up its place (or passes on a permit it was just handed). Once the inner
    /// service answers, the permit goes back at once if the answer is already complete (typed
    /// replies, JSON answers already read, error statuses), and otherwise moves into the answer's
    /// completion callback.
    pub struct ResponseFuture<F, S, R> {
        #[pin]
        state: State<F, S, R>,
        // What the running call holds (outside `state`, so finishing the call moves nothing).
        hold: Hold,
        id: Option<RequestId>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        // Boxed: only calls that wait pay for the room the request and service take, and the
        // future of the usual call (a permit free at once) stays small.
        Waiting {
            wait: Pin<Box<Wait<S, R>>>,
        },
        Running {
            #[pin]
            future: F,
        },
        Failed {
            error: Option<BoxError>,
        },
        Done,
    }
}

pin_project! {
    #[project = WaitProj]
    struct Wait<S, R> {
        waiter: Waiter,
        // Set for a call its client can cancel while it waits (a session and an id).
        cancellable: Option<Registration>,
        deadline: Option<Instant>,
        #[pin]
        sleep: Option<Sleep>,
        service: Option<S>,
        request: Option<R>,
        // The call's 2025-11-25 session, for its hold once granted.
        session: Option<(HeaderValue, Arc<Continued>)>,
    }
}

impl<F, S, R> ResponseFuture<F, S, R> {
    #[inline]
    pub(crate) fn running(future: F, hold: Hold, id: Option<RequestId>) -> Self {
        ResponseFuture {
            state: State::Running { future },
            hold,
            id,
        }
    }

    pub(crate) fn waiting(
        waiter: Waiter,
        cancellable: Option<Registration>,
        deadline: Option<Instant>,
        (service, request): (S, R),
        session: Option<(HeaderValue, Arc<Continued>)>,
        id: Option<RequestId>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                wait: Box::pin(Wait {
                    waiter,
                    cancellable,
                    deadline,
                    sleep: None,
                    service: Some(service),
                    request: Some(request),
                    session,
                }),
            },
            hold: Hold::None,
            id,
        }
    }

    pub(crate) fn failed(error: BoxError, id: Option<RequestId>) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
            hold: Hold::None,
            id,
        }
    }
}

impl<F, S, R> fmt::Debug for ResponseFuture<F, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
            State::Failed { .. } => "failed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("id", &self.id)
            .finish()
    }
}

impl<F, S, R> Future for ResponseFuture<F, S, R>
where
    S: Service<R, Future = F>,
    F: Future<Output = Result<S::Response, S::Error>>,
    S::Response: CallResponse,
    S::Error: Into<BoxError>,
{
    type Output = Result<<S::Response as CallResponse>::Observed, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.as_mut().project();
        // The usual case first, inlined; waiting, refusals and misuse out of line.
        if let StateProj::Running { future } = this.state.as_mut().project() {
            let out = ready!(future.poll(cx));
            this.state.set(State::Done);
            return Poll::Ready(match out {
                Ok(resp) => {
                    let (observed, completion) = resp.observe(this.id.as_ref());
                    match completion {
                        // Complete already (typed replies, answers already read): the permit
                        // goes back now.
                        Completion::Ready(_) => this.hold.release(),
                        completion => std::mem::replace(this.hold, Hold::None).until(completion),
                    }
                    Ok(observed)
                }
                // No answer: the permit goes back now.
                Err(e) => {
                    this.hold.release();
                    Err(e.into())
                }
            });
        }
        self.poll_not_running(cx)
    }
}

impl<F, S, R> ResponseFuture<F, S, R>
where
    S: Service<R, Future = F>,
    F: Future<Output = Result<S::Response, S::Error>>,
    S::Response: CallResponse,
    S::Error: Into<BoxError>,
{
    /// [`poll`](Future::poll) of a call that waits in line, was refused, or is done.
    #[inline(never)]
    fn poll_not_running(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<<Self as Future>::Output> {
        let this = self.as_mut().project();
        let mut state = this.state;
        match state.as_mut().project() {
            StateProj::Waiting { wait } => {
                let WaitProj {
                    waiter,
                    cancellable,
                    deadline,
                    mut sleep,
                    service,
                    request,
                    session,
                } = wait.as_mut().project();
                if cancellable
                    .as_ref()
                    .is_some_and(|c| c.poll_cancelled(cx.waker()))
                {
                    // Drops the waiter: its place goes, or a permit just handed to it passes
                    // to the next in line.
                    state.set(State::Done);
                    tracing::debug!(id = ?this.id, "call cancelled by its client while waiting in line");
                    return Poll::Ready(Err(Box::new(CancelledInLine::new())));
                }
                if let Poll::Ready(permit) = waiter.poll_acquire(cx.waker()) {
                    let (Some(mut service), Some(request)) = (service.take(), request.take())
                    else {
                        unreachable!("a waiting call holds its service and request");
                    };
                    let session = session.take();
                    let future = service.call(request);
                    state.set(State::Running { future });
                    *this.hold = Hold::call(permit, session);
                    return self.poll(cx);
                }
                if let Some(deadline) = *deadline {
                    // Checked against the clock too: a timer rounds its deadline up to the next
                    // tick, so a zero wait limit would otherwise hold a place in line for one.
                    let expired = Instant::now() >= deadline || {
                        if sleep.is_none() {
                            sleep.set(Some(tokio::time::sleep_until(deadline)));
                        }
                        sleep
                            .as_mut()
                            .as_pin_mut()
                            .is_some_and(|s| s.poll(cx).is_ready())
                    };
                    if expired {
                        let pool = Arc::clone(waiter.pool());
                        // Drops the waiter: its place goes, or a permit just handed to it
                        // passes to the next in line.
                        state.set(State::Done);
                        pool.count_rejection();
                        tracing::debug!(
                            key = ?pool.key().map(|k| &**k),
                            "bulkhead wait limit passed; call refused"
                        );
                        return Poll::Ready(Err(Box::new(BulkheadFull::new(pool.key().cloned()))));
                    }
                }
                Poll::Pending
            }
            StateProj::Running { .. } => self.poll(cx),
            StateProj::Failed { error } => {
                let error = error.take();
                state.set(State::Done);
                Poll::Ready(Err(
                    error.expect("bulkhead ResponseFuture polled after completion")
                ))
            }
            StateProj::Done => panic!("bulkhead ResponseFuture polled after completion"),
        }
    }
}
