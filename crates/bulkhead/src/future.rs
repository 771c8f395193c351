//! The response future of [`Bulkhead`](crate::Bulkhead).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_armor_mcp::error::BulkheadFull;
use tower_armor_mcp::{BoxError, CallResponse, Completion, RequestId};
use tower_service::Service;

use crate::pool::{Permit, Waiter};
use crate::streams::StreamSlot;

/// What a call holds until its answer ends.
#[derive(Debug)]
pub(crate) enum Hold {
    None,
    Call(#[allow(dead_code)] Permit),
    Stream(#[allow(dead_code)] StreamSlot),
}

impl Hold {
    /// Keeps the permit or stream slot until the call completes: at once for answers known
    /// complete (typed replies, JSON answers already read, error statuses), at the end or drop of
    /// the body for streamed answers.
    fn until(self, completion: Completion) {
        if !matches!(self, Hold::None) {
            completion.on_complete(move |_| drop(self));
        }
    }
}

pin_project! {
    /// Response future of [`Bulkhead`](crate::Bulkhead).
    ///
    /// While the call waits in line it holds the readied inner service and the request; dropping
    /// the future gives up its place (or passes on a permit it was just handed). Once the inner
    /// service answers, the permit moves into the answer's completion callback.
    pub struct ResponseFuture<F, S, R> {
        #[pin]
        state: State<F, S, R>,
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
            hold: Hold,
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
        deadline: Option<Instant>,
        #[pin]
        sleep: Option<Sleep>,
        service: Option<S>,
        request: Option<R>,
    }
}

impl<F, S, R> ResponseFuture<F, S, R> {
    pub(crate) fn running(future: F, hold: Hold, id: Option<RequestId>) -> Self {
        ResponseFuture {
            state: State::Running { future, hold },
            id,
        }
    }

    pub(crate) fn waiting(
        waiter: Waiter,
        deadline: Option<Instant>,
        service: S,
        request: R,
        id: Option<RequestId>,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                wait: Box::pin(Wait {
                    waiter,
                    deadline,
                    sleep: None,
                    service: Some(service),
                    request: Some(request),
                }),
            },
            id,
        }
    }

    pub(crate) fn failed(error: BoxError, id: Option<RequestId>) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { wait } => {
                    let WaitProj {
                        waiter,
                        deadline,
                        mut sleep,
                        service,
                        request,
                    } = wait.as_mut().project();
                    if let Poll::Ready(permit) = waiter.poll_acquire(cx.waker()) {
                        let (Some(mut service), Some(request)) = (service.take(), request.take())
                        else {
                            unreachable!("a waiting call holds its service and request");
                        };
                        let future = service.call(request);
                        this.state.set(State::Running {
                            future,
                            hold: Hold::Call(permit),
                        });
                        continue;
                    }
                    if let Some(deadline) = *deadline {
                        if sleep.is_none() {
                            sleep.set(Some(tokio::time::sleep_until(deadline)));
                        }
                        let expired = sleep
                            .as_mut()
                            .as_pin_mut()
                            .is_some_and(|s| s.poll(cx).is_ready());
                        if expired {
                            let pool = Arc::clone(waiter.pool());
                            // Drops the waiter: its place goes, or a permit just handed to it
                            // passes to the next in line.
                            this.state.set(State::Done);
                            pool.count_rejection();
                            tracing::debug!(
                                key = ?pool.key().map(|k| &**k),
                                "bulkhead wait limit passed; call refused"
                            );
                            return Poll::Ready(Err(Box::new(BulkheadFull::new(
                                pool.key().cloned(),
                            ))));
                        }
                    }
                    return Poll::Pending;
                }
                StateProj::Running { future, hold } => {
                    let out = ready!(future.poll(cx));
                    let hold = std::mem::replace(hold, Hold::None);
                    this.state.set(State::Done);
                    return Poll::Ready(match out {
                        Ok(resp) => {
                            let (observed, completion) = resp.observe(this.id.as_ref());
                            hold.until(completion);
                            Ok(observed)
                        }
                        // No answer: the permit goes back now.
                        Err(e) => Err(e.into()),
                    });
                }
                StateProj::Failed { error } => {
                    let error = error.take();
                    this.state.set(State::Done);
                    return Poll::Ready(Err(
                        error.expect("bulkhead ResponseFuture polled after completion")
                    ));
                }
                StateProj::Done => panic!("bulkhead ResponseFuture polled after completion"),
            }
        }
    }
}
