//! The response future of [`CircuitBreaker`](crate::CircuitBreaker).

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_armor_mcp::error::{CODE_TIMEOUT, CircuitOpen, local_error};
use tower_armor_mcp::observe::{Completion, CompletionHandle};
use tower_armor_mcp::{BoxError, CallResponse, Outcome, RequestId};

use crate::core::{Clock, Core, Permit};

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker): the inner call, or a
    /// rejection. Dropping it before the inner call answered counts as nothing (a probe's slot
    /// is returned at once).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        held: Held,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
        },
        Rejected,
    }
}

/// What a call holds until it answers: its permit (counted calls), its JSON-RPC id (to observe
/// the answer) and whether it carried a session; or a rejection's error.
///
/// Released by hand (the fields are `ManuallyDrop`, taken by `poll` or `drop`): once the call
/// answered nothing is left but a flag, so dropping a finished future costs one check the
/// compiler sees through, and no code out of line is ever handed a pointer into the future.
struct Held {
    /// Whether anything below may still be held.
    live: bool,
    has_session: bool,
    permit: ManuallyDrop<Option<Permit>>,
    id: ManuallyDrop<Option<RequestId>>,
    error: ManuallyDrop<Option<BoxError>>,
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        if self.live {
            self.live = false;
            // Values, not a pointer into the future, go out of line.
            release(self.permit.take(), self.id.take(), self.error.take());
        }
    }
}

/// Drops what a future dropped before its call answered still holds (taking the values out of
/// their `Option`s: see `settle_later`).
#[cold]
#[inline(never)]
fn release(mut permit: Option<Permit>, mut id: Option<RequestId>, mut error: Option<BoxError>) {
    drop((permit.take(), id.take(), error.take()));
}

// Both constructors are always inlined: a future written through a pointer by a function call
// could not be built in place (the caller would copy it once more).
impl<F> ResponseFuture<F> {
    #[inline(always)]
    pub(crate) fn called(
        future: F,
        permit: Option<Permit>,
        id: Option<RequestId>,
        has_session: bool,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Called { future },
            held: Held {
                live: true,
                has_session,
                permit: ManuallyDrop::new(permit),
                id: ManuallyDrop::new(id),
                error: ManuallyDrop::new(None),
            },
        }
    }

    /// A call rejected by `core`'s open circuit.
    #[inline(always)]
    pub(crate) fn rejected(core: &Core, retry_after: Duration) -> Self {
        ResponseFuture {
            kind: Kind::Rejected,
            held: Held {
                live: true,
                has_session: false,
                permit: ManuallyDrop::new(None),
                id: ManuallyDrop::new(None),
                error: ManuallyDrop::new(Some(circuit_open(core, retry_after))),
            },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match (&self.kind, &*self.held.permit) {
            (Kind::Rejected, _) => "rejected",
            (Kind::Called { .. }, Some(p)) if p.is_probe() => "probe",
            (Kind::Called { .. }, Some(_)) => "counted",
            (Kind::Called { .. }, None) => "not counted",
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let held = this.held;
        let KindProj::Called { future } = this.kind.project() else {
            held.live = false;
            return Poll::Ready(Err(held
                .error
                .take()
                .expect("ResponseFuture polled after completion")));
        };
        let res = ready!(future.poll(cx));
        held.live = false;
        let permit = held.permit.take();
        let id = held.id.take();
        let has_session = held.has_session;
        Poll::Ready(match res {
            Ok(resp) => {
                let (observed, completion) = resp.observe(id.as_ref());
                match completion {
                    // Typed replies and answers already read: counted now.
                    Completion::Ready(o) => {
                        if let Some(p) = permit {
                            settle(p, &o, has_session);
                        }
                    }
                    // A streamed answer: its outcome is known when it ends (or is dropped:
                    // `Cancelled`, ignored).
                    Completion::Pending(h) => settle_later(permit, h, has_session),
                }
                Ok(observed)
            }
            Err(e) => {
                let e: BoxError = e.into();
                settle_error(permit, &*e, has_session);
                Err(e)
            }
        })
    }
}

/// The error of a call rejected by `core`'s open circuit (boxed at once: it is all the future
/// holds).
#[cold]
#[inline(never)]
fn circuit_open(core: &Core, retry_after: Duration) -> BoxError {
    Box::new(CircuitOpen::new(core.key.clone(), retry_after))
}

#[inline(always)]
fn settle(permit: Permit, outcome: &Outcome, has_session: bool) {
    let class = permit
        .core()
        .settings
        .classifier
        .classify(outcome, has_session)
        .breaker;
    permit.complete(class, &mut Clock::new());
}

// Out of line, these take the permit out of its `Option` (a mutation) on purpose: an argument
// a function only reads may be handed to it as a pointer into the response future it was
// taken from, and the compiler could then no longer build that future in place (it would copy
// it once more on every call).

#[inline(never)]
fn settle_later(mut permit: Option<Permit>, handle: CompletionHandle, has_session: bool) {
    if let Some(permit) = permit.take() {
        handle.on_complete(move |o| settle(permit, o, has_session));
    }
}

#[inline(never)]
fn settle_error(mut permit: Option<Permit>, e: &(dyn Error + 'static), has_session: bool) {
    if let Some(permit) = permit.take() {
        settle(permit, &error_outcome(e), has_session);
    }
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
            o(Box::new(tower_armor_mcp::error::CancelledInLine::new())),
            Outcome::Rejected(LocalRejection::Cancelled)
        );
        assert_eq!(
            o(Box::new(tower_armor_mcp::error::TokenUnavailable::new(
                "vault down".into()
            ))),
            Outcome::Rejected(LocalRejection::NoCredentials)
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
