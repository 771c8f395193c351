//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_armor_mcp::error::{CODE_TIMEOUT, CircuitOpen, local_error};
use tower_armor_mcp::observe::Completion;
use tower_armor_mcp::{BoxError, CallResponse, Outcome, RequestId};

use crate::core::{Clock, Permit};

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker): the inner call, or a
    /// rejection. Dropping it before the inner call answered counts as nothing (a probe's slot
    /// is returned at once).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            id: Option<RequestId>,
            has_session: bool,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(
        future: F,
        permit: Option<Permit>,
        id: Option<RequestId>,
        has_session: bool,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit,
                id,
                has_session,
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { permit, .. } => match permit {
                Some(p) if p.is_probe() => "probe",
                Some(_) => "counted",
                None => "not counted",
            },
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

/// The outcome an error of the inner service stands for: our own local errors by their kind
/// (rejections are ignored, `Elapsed` is a slow failure, auth and size errors are the
/// caller's), anything else a transport failure.
pub(crate) fn error_outcome(e: &(dyn Error + 'static)) -> Outcome {
    match local_error(e) {
        Some(l) => match l.rejection() {
            Some(r) => Outcome::Rejected(r),
            None if l.code() == CODE_TIMEOUT => Outcome::Elapsed,
            None => Outcome::Status(l.status()),
        },
        None => Outcome::Transport,
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    T: CallResponse,
    E: Into<BoxError>,
{
    type Output = Result<T::Observed, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                id,
                has_session,
            } => {
                let res = ready!(future.poll(cx));
                let has_session = *has_session;
                match res {
                    Ok(resp) => {
                        let (observed, completion) = resp.observe(id.as_ref());
                        if let Some(p) = permit.take() {
                            match completion {
                                Completion::Ready(o) => settle(p, &o, has_session),
                                // A streamed answer: its outcome is known when it ends (or is
                                // dropped: `Cancelled`, ignored).
                                Completion::Pending(h) => {
                                    h.on_complete(move |o| settle(p, o, has_session))
                                }
                            }
                        }
                        Poll::Ready(Ok(observed))
                    }
                    Err(e) => {
                        let e: BoxError = e.into();
                        if let Some(p) = permit.take() {
                            settle(p, &error_outcome(&*e), has_session);
                        }
                        Poll::Ready(Err(e))
                    }
                }
            }
            KindProj::Rejected { error } => {
                let e = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(e)))
            }
        }
    }
}

#[inline]
fn settle(permit: Permit, outcome: &Outcome, has_session: bool) {
    let class = permit
        .core()
        .settings
        .classifier
        .classify(outcome, has_session)
        .breaker;
    permit.complete(class, &mut Clock::new());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower_armor_mcp::error::{
        BulkheadFull, Elapsed, LocalRejection, RateLimited, Unauthorized,
    };

    use super::*;

    #[test]
    fn inner_errors_map_to_outcomes() {
        let o = |e: BoxError| error_outcome(&*e);
        assert_eq!(o(Box::new(Elapsed::new())), Outcome::Elapsed);
        assert_eq!(
            o(Box::new(BulkheadFull::new(None))),
            Outcome::Rejected(LocalRejection::BulkheadFull)
        );
        assert_eq!(
            o(Box::new(RateLimited::new(Duration::from_secs(1)))),
            Outcome::Rejected(LocalRejection::RateLimited)
        );
        assert_eq!(
            o(Box::new(Unauthorized::new())),
            Outcome::Status(http::StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            o(Box::new(std::io::Error::other("reset"))),
            Outcome::Transport
        );
    }
}
