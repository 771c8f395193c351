//! Calls waiting in line that their client cancels.
//!
//! Under 2025-11-25 a client cancels a call with a `notifications/cancelled` naming its id in
//! the same session. A call still waiting for a permit has not reached the server, which
//! ignores a cancellation of a request it does not know: without this, the call would run in
//! full once its turn came, and hold a permit for nothing. Under 2026-07-28 the client closes
//! the call's stream instead, which drops the waiting future and gives its place back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use http::HeaderValue;
use tower_armor_mcp::RequestId;

/// A waiting call: its session and its JSON-RPC id.
type Key = (HeaderValue, RequestId);

#[derive(Default)]
struct Entry {
    cancelled: bool,
    waker: Option<Waker>,
}

/// The waiting calls a client can name in a cancellation (those with a session and an id).
/// Bounded by the lines themselves: every entry is a call waiting in one.
#[derive(Default)]
pub(crate) struct InLine {
    /// Entries, read without the lock to keep cancellations off the usual path.
    len: AtomicUsize,
    calls: Mutex<HashMap<Key, Entry>>,
}

impl InLine {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic elsewhere while holding the lock leaves the map consistent.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a call that waits in line, until the registration is dropped. `None` when a
    /// call of that session with that id waits already (a client reusing ids: only the first
    /// is cancellable).
    pub(crate) fn register(
        this: &Arc<InLine>,
        session: &HeaderValue,
        id: &RequestId,
    ) -> Option<Registration> {
        // Copied out of the request's read buffer: a call may wait long (see
        // `tower_armor_mcp::detached`).
        let key = (tower_armor_mcp::detached(session), id.clone());
        let mut calls = this.lock();
        if calls.contains_key(&key) {
            return None;
        }
        calls.insert(key.clone(), Entry::default());
        this.len.fetch_add(1, Ordering::Release);
        Some(Registration {
            in_line: Arc::clone(this),
            key,
        })
    }

    /// A `notifications/cancelled` of `session` naming `id`: marks that call if it waits in
    /// line, and wakes it. Returns whether one did.
    pub(crate) fn cancel(&self, session: &HeaderValue, id: &RequestId) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let waker = {
            let mut calls = self.lock();
            let Some(entry) = calls.get_mut(&(session.clone(), id.clone())) else {
                return false;
            };
            entry.cancelled = true;
            entry.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }
}

/// A waiting call's entry; dropping it (the call got its permit, gave up or ended) removes it.
pub(crate) struct Registration {
    in_line: Arc<InLine>,
    key: Key,
}

impl Registration {
    /// Whether the client cancelled the call; if not yet, `waker` is woken when it does.
    pub(crate) fn poll_cancelled(&self, waker: &Waker) -> bool {
        let mut calls = self.in_line.lock();
        let Some(entry) = calls.get_mut(&self.key) else {
            return false;
        };
        if entry.cancelled {
            return true;
        }
        if !entry.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            entry.waker = Some(waker.clone());
        }
        false
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.in_line.lock().remove(&self.key).is_some() {
            self.in_line.len.fetch_sub(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A waiting call's session id sliced out of a large request head is copied, not kept
    /// with its buffer (a call may wait long).
    #[test]
    fn a_waiting_call_keeps_a_copy_of_its_session_id() {
        let sliced = tower_armor_test_support::SlicedHeader::new();
        let session = sliced.value.clone();
        let in_line = Arc::new(InLine::default());
        let r = InLine::register(&in_line, &session, &RequestId::Number(1)).unwrap();
        assert_eq!(r.key.0, session);
        assert!(!sliced.shares_head(&r.key.0), "copied");
        assert!(in_line.cancel(&session, &RequestId::Number(1)));
    }

    #[test]
    fn a_cancellation_reaches_only_the_call_it_names() {
        let in_line = Arc::new(InLine::default());
        let (s1, s2) = (
            HeaderValue::from_static("s1"),
            HeaderValue::from_static("s2"),
        );
        let id = RequestId::Number(7);
        let a = InLine::register(&in_line, &s1, &id).unwrap();
        let b = InLine::register(&in_line, &s2, &id).unwrap();
        assert!(
            InLine::register(&in_line, &s1, &id).is_none(),
            "one per session and id"
        );
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(Arc::clone(&flag));
        assert!(!a.poll_cancelled(&waker));
        assert!(!in_line.cancel(&s1, &RequestId::Number(8)));
        assert!(in_line.cancel(&s1, &id));
        assert!(flag.0.load(Ordering::SeqCst), "woken");
        assert!(a.poll_cancelled(&waker));
        assert!(
            !b.poll_cancelled(&waker),
            "another session's call is untouched"
        );
        drop((a, b));
        assert_eq!(in_line.len(), 0);
        assert!(!in_line.cancel(&s1, &id), "gone with its registration");
    }
}
