//! [`CallDrain`]: ending every call when a server's drain deadline passes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tower_armor_mcp::Outcome;
use tower_armor_mcp::error::{BoxError, Elapsed, LocalRejection, ShuttingDown};

use crate::cancel::{REASON_SHUTDOWN, REASON_TIMEOUT};

/// Ends every call of one [`TimeoutLayer`](crate::TimeoutLayer) at once, for a server whose
/// drain deadline passed (see the [crate docs](crate#shutdown)). Get it from
/// [`TimeoutLayer::drain_handle`](crate::TimeoutLayer::drain_handle); clones share the switch.
///
/// After [`CallDrain::end_calls`], a call in flight ends as at its deadline, with
/// [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown) (503, `-31510`) instead of `Elapsed`:
/// before its answer's headers the inner future is dropped and the call fails with that error
/// (an answer the inner service had ready is kept, unless it is a 5xx: a server being shut down
/// answers with its own error then); inside an SSE answer the stream gets one final event
/// carrying that error for the call's id (at an event boundary, once no frame of the answer is
/// ready) and ends; a 2025-11-25 call is sent `notifications/cancelled`. A call that reaches
/// the layer afterwards is refused with the same error without reaching the inner service (a
/// call that waited in a bulkhead's line never starts). Long-lived streams and other requests
/// pass as before.
///
/// Cost per call: each poll checks the switch with one atomic load; a response future or body
/// that has to wait registers its task's waker once (one short lock, and one more when it is
/// dropped), and again only if the task's waker changes.
#[derive(Clone, Debug, Default)]
pub struct CallDrain {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    ended: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The wakers of the calls waiting, in slots reused once free.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl CallDrain {
    /// Ends every call in flight now and refuses every later call. Idempotent.
    pub fn end_calls(&self) {
        self.state.ended.store(true, Ordering::Release);
        let wakers: Vec<Waker> = {
            let mut w = self.lock();
            w.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether [`CallDrain::end_calls`] was called.
    pub fn is_ended(&self) -> bool {
        self.state.ended.load(Ordering::Acquire)
    }

    /// Ready once [`CallDrain::end_calls`] was called (at once if it was); otherwise `wait`
    /// holds the task's waker until then.
    pub(crate) fn poll_ended(&self, wait: &mut DrainWait, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_ended() {
            return Poll::Ready(());
        }
        if wait.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        {
            let mut w = self.lock();
            let waker = Some(cx.waker().clone());
            match &wait.slot {
                Some((_, i)) => w.slots[*i] = waker,
                None => {
                    let i = match w.free.pop() {
                        Some(i) => {
                            w.slots[i] = waker;
                            i
                        }
                        None => {
                            w.slots.push(waker);
                            w.slots.len() - 1
                        }
                    };
                    wait.slot = Some((self.clone(), i));
                }
            }
        }
        wait.waker = Some(cx.waker().clone());
        // `end_calls` sets the flag before it takes the lock: if it took the wakers before this
        // one was in, the flag is already visible here.
        if self.is_ended() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Gives slot `i` back.
    fn release(&self, i: usize) {
        let mut w = self.lock();
        w.slots[i] = None;
        w.free.push(i);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiters> {
        // A panic while holding the lock leaves the slots consistent (no step is half-done).
        self.state
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One call's place among the waiters of a [`CallDrain`]: empty until the call first waits
/// ([`CallDrain::poll_ended`]), given back when dropped (with the call's future or body).
#[derive(Debug, Default)]
pub(crate) struct DrainWait {
    slot: Option<(CallDrain, usize)>,
    waker: Option<Waker>,
}

impl Drop for DrainWait {
    fn drop(&mut self) {
        if let Some((drain, i)) = self.slot.take() {
            drain.release(i);
        }
    }
}

/// What ended a call the layer gave up on: its own deadline or the server's drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Deadline,
    Drain,
}

impl Ending {
    /// The error of a call that ends so before its headers, or of a body that must be cut.
    pub(crate) fn error(self) -> BoxError {
        match self {
            Ending::Deadline => Elapsed::new().into(),
            Ending::Drain => ShuttingDown::new().into(),
        }
    }

    /// What the call's completion handle records.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Ending::Deadline => Outcome::Elapsed,
            // No fault of the server: breakers ignore it.
            Ending::Drain => Outcome::Rejected(LocalRejection::ShuttingDown),
        }
    }

    /// The `reason` of the `notifications/cancelled` a 2025-11-25 call is sent.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Ending::Deadline => REASON_TIMEOUT,
            Ending::Drain => REASON_SHUTDOWN,
        }
    }

    /// The JSON-RPC code and message of the final error event.
    pub(crate) fn code_and_message(self) -> (i64, &'static str) {
        use tower_armor_mcp::error::{CODE_SHUTTING_DOWN, CODE_TIMEOUT};
        match self {
            Ending::Deadline => (CODE_TIMEOUT, "request timed out"),
            Ending::Drain => (CODE_SHUTTING_DOWN, "server shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(drain: &CallDrain, wait: &mut DrainWait, count: &Arc<Count>) -> Poll<()> {
        let waker = Waker::from(Arc::clone(count));
        drain.poll_ended(wait, &mut Context::from_waker(&waker))
    }

    #[test]
    fn the_drain_wakes_every_waiting_task_once_and_slots_are_reused() {
        let drain = CallDrain::default();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (mut wa, mut wb) = (DrainWait::default(), DrainWait::default());
        assert!(poll(&drain, &mut wa, &a).is_pending());
        assert!(
            poll(&drain, &mut wa, &a).is_pending(),
            "same waker: no new slot"
        );
        assert!(poll(&drain, &mut wb, &b).is_pending());
        assert_eq!(drain.lock().slots.len(), 2);
        // A finished call gives its slot back; the next one takes it.
        drop(wb);
        let mut wc = DrainWait::default();
        let c = Arc::new(Count::default());
        assert!(poll(&drain, &mut wc, &c).is_pending());
        assert_eq!(drain.lock().slots.len(), 2);

        drain.clone().end_calls();
        assert_eq!(a.0.load(Ordering::SeqCst), 1, "a waiting task is woken");
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 0, "a released one is not");
        assert!(poll(&drain, &mut wa, &a).is_ready());
        assert!(
            poll(&drain, &mut DrainWait::default(), &b).is_ready(),
            "after: at once"
        );
        drop((wa, wc));
        assert_eq!(drain.lock().free.len(), 2, "every slot given back");
    }
}
