//! [`CallDrain`]: ending every call when a server's drain deadline passes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::sync::{Notify, futures::OwnedNotified};

/// Ends every call of one [`TimeoutLayer`](crate::TimeoutLayer) at once, for a server whose
/// drain deadline passed (see the [crate docs](crate#shutdown)). Get it from
/// [`TimeoutLayer::drain_handle`](crate::TimeoutLayer::drain_handle); clones share the switch.
///
/// After [`CallDrain::end_calls`], a call in flight ends as at its deadline, with
/// [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown) (503, `-31510`) instead of `Elapsed`:
/// before its answer's headers the inner future is dropped and the call fails with that error
/// (even if the inner service answered in the same instant: a server that is being shut down
/// may answer with its own error then); inside an SSE answer the stream gets one final event
/// carrying that error for the call's id (at an event boundary) and ends; a 2025-11-25 call is
/// sent `notifications/cancelled`. A call that reaches the layer afterwards is refused with the
/// same error without reaching the inner service (a call that waited in a bulkhead's line never
/// starts). Long-lived streams and other requests pass as before.
///
/// Cost per call: checking the switch is one atomic load; a call still waiting for its answer
/// registers once with the switch's waiter list (one lock, like its deadline's timer entry).
#[derive(Clone, Debug, Default)]
pub struct CallDrain {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    ended: AtomicBool,
    notify: Arc<Notify>,
}

impl CallDrain {
    /// Ends every call in flight now and refuses every later call. Idempotent.
    pub fn end_calls(&self) {
        self.state.ended.store(true, Ordering::Release);
        self.state.notify.notify_waiters();
    }

    /// Whether [`CallDrain::end_calls`] was called.
    pub fn is_ended(&self) -> bool {
        self.state.ended.load(Ordering::Acquire)
    }

    /// A registration for [`CallDrain::poll_ended`]: it sees an `end_calls` from its creation
    /// on, polled or not.
    pub(crate) fn wait(&self) -> DrainWait {
        DrainWait {
            notified: Arc::clone(&self.state.notify).notified_owned(),
        }
    }

    /// Ready once [`CallDrain::end_calls`] was called (at once if it was), waking the task
    /// through `wait` (made by this drain).
    pub(crate) fn poll_ended(&self, wait: Pin<&mut DrainWait>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_ended() {
            return Poll::Ready(());
        }
        wait.project().notified.poll(cx)
    }
}

pin_project! {
    /// See [`CallDrain::wait`].
    pub(crate) struct DrainWait {
        #[pin]
        notified: OwnedNotified,
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn a_wait_ends_with_the_drain_polled_or_not() {
        let drain = CallDrain::default();
        let ended = |wait: &mut Pin<Box<DrainWait>>| {
            std::future::poll_fn(|cx| drain.poll_ended(wait.as_mut(), cx))
                .now_or_never()
                .is_some()
        };
        let mut polled = Box::pin(drain.wait());
        let mut unpolled = Box::pin(drain.wait());
        assert!(!ended(&mut polled));
        assert!(!drain.is_ended());
        drain.clone().end_calls();
        assert!(drain.is_ended());
        assert!(ended(&mut polled));
        assert!(ended(&mut unpolled));
        // Also through the registration alone (the flag is checked first otherwise).
        let mut fresh = Box::pin(CallDrain::default().wait());
        assert!(
            std::future::poll_fn(|cx| fresh.as_mut().project().notified.poll(cx))
                .now_or_never()
                .is_none()
        );
    }
}
