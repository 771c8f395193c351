//! [`Signal`]: a one-shot switch that many response futures and bodies wait on, cheaply.
//!
//! A server's shutdown must reach every call and stream in flight at once. A
//! `tokio_util::sync::CancellationToken` or a `tokio::sync::Notify` does that, but checking
//! the token takes a mutex shared by every clone, and a waiting `Notified` takes the `Notify`'s
//! mutex on each poll: one shared lock per frame of every stream. Here a check is one atomic
//! load, and a task that must wait registers its waker once (one short lock, and one more when
//! its [`SignalWait`] is dropped), again only if its waker changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// A one-shot switch: [`Signal::fire`] once, and every task waiting on it through
/// [`Signal::poll_fired`] is woken. Clones share the switch.
#[derive(Clone, Debug, Default)]
pub struct Signal {
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    fired: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The wakers of the tasks waiting, in slots reused once free.
#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Signal {
    /// A switch not fired yet.
    pub fn new() -> Self {
        Signal::default()
    }

    /// Fires the switch (idempotent): wakes every task waiting on it; later checks see it fired.
    pub fn fire(&self) {
        self.state.fired.store(true, Ordering::Release);
        let wakers: Vec<Waker> = self
            .lock()
            .slots
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether the switch was fired (one atomic load).
    pub fn is_fired(&self) -> bool {
        self.state.fired.load(Ordering::Acquire)
    }

    /// Ready once the switch is fired (at once if it was); otherwise `wait` holds the task's
    /// waker until then. Use one `wait` per future or body, with one signal (a `wait` moved to
    /// another signal leaves the first one's waiters).
    pub fn poll_fired(&self, wait: &mut SignalWait, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_fired() {
            return Poll::Ready(());
        }
        let mine = wait
            .slot
            .as_ref()
            .map(|(owner, _)| Arc::ptr_eq(&owner.state, &self.state));
        if mine == Some(true) && wait.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        // Waited on another signal before: that place is given back, one is taken here.
        if mine == Some(false)
            && let Some((owner, i)) = wait.slot.take()
        {
            owner.release(i);
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
        // `fire` sets the flag before it takes the lock: if it took the wakers before this one
        // was in, the flag is visible here.
        if self.is_fired() {
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

    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // A panic while holding the lock leaves the slots consistent (no step is half-done).
        self.state
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One task's place among a [`Signal`]'s waiters: empty until it first waits
/// ([`Signal::poll_fired`]), given back when dropped.
#[derive(Debug, Default)]
pub struct SignalWait {
    slot: Option<(Signal, usize)>,
    waker: Option<Waker>,
}

impl Drop for SignalWait {
    fn drop(&mut self) {
        if let Some((signal, i)) = self.slot.take() {
            signal.release(i);
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

    fn poll(signal: &Signal, wait: &mut SignalWait, count: &Arc<Count>) -> Poll<()> {
        let waker = Waker::from(Arc::clone(count));
        signal.poll_fired(wait, &mut Context::from_waker(&waker))
    }

    #[test]
    fn firing_wakes_every_waiting_task_once_and_slots_are_reused() {
        let signal = Signal::new();
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let (mut wa, mut wb) = (SignalWait::default(), SignalWait::default());
        assert!(poll(&signal, &mut wa, &a).is_pending());
        assert!(
            poll(&signal, &mut wa, &a).is_pending(),
            "same waker: no new slot"
        );
        assert!(poll(&signal, &mut wb, &b).is_pending());
        assert_eq!(signal.lock().slots.len(), 2);
        // A finished task gives its slot back; the next one takes it.
        drop(wb);
        let mut wc = SignalWait::default();
        let c = Arc::new(Count::default());
        assert!(poll(&signal, &mut wc, &c).is_pending());
        assert_eq!(signal.lock().slots.len(), 2);
        // A new waker for the same task replaces the old one in its slot.
        let a2 = Arc::new(Count::default());
        assert!(poll(&signal, &mut wa, &a2).is_pending());

        signal.clone().fire();
        assert_eq!(a2.0.load(Ordering::SeqCst), 1, "a waiting task is woken");
        assert_eq!(a.0.load(Ordering::SeqCst), 0, "through its latest waker");
        assert_eq!(c.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 0, "a released one is not");
        assert!(poll(&signal, &mut wa, &a).is_ready());
        assert!(
            poll(&signal, &mut SignalWait::default(), &b).is_ready(),
            "after: at once"
        );
        drop((wa, wc));
        assert_eq!(signal.lock().free.len(), 2, "every slot given back");
    }

    #[test]
    fn a_wait_moved_to_another_signal_moves_its_place() {
        let (first, second) = (Signal::new(), Signal::new());
        let count = Arc::new(Count::default());
        let mut wait = SignalWait::default();
        assert!(poll(&first, &mut wait, &count).is_pending());
        // Another signal, the same waker: registered there (not taken as already waiting), the
        // first one's place given back.
        assert!(poll(&second, &mut wait, &count).is_pending());
        assert_eq!(first.lock().free.len(), 1);
        second.fire();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the second signal wakes it"
        );
        first.fire();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the first no longer does"
        );
        // Back and forth with slots of different indexes: no panic, no stolen slot.
        let (a, b) = (Signal::new(), Signal::new());
        let mut other = SignalWait::default();
        assert!(poll(&b, &mut other, &count).is_pending());
        assert!(poll(&a, &mut wait, &count).is_pending());
        assert!(poll(&b, &mut wait, &count).is_pending());
        assert_eq!(b.lock().slots.iter().filter(|s| s.is_some()).count(), 2);
        drop((wait, other));
        assert_eq!(b.lock().free.len(), 2);
        assert_eq!(a.lock().free.len(), 1);
    }
}
