//! Matching a client's `notifications/cancelled` with the call it cancels.
//!
//! Under 2025-11-25 a client cancels a call by POSTing `notifications/cancelled` with the
//! call's JSON-RPC id in the same session; rmcp then stops the tool and ends the call's stream
//! without a final response. Seen from the answer alone that is
//! [`Outcome::Incomplete`], which a circuit breaker counts as a failure of the server: the
//! client's own change of mind would trip the circuit. So every 2025-11-25 call with an id
//! registers here under `(session, id)` while it runs, and a cancellation passing through the
//! layer completes the named call with [`Outcome::Cancelled`] before it is forwarded. The
//! completion handle is shared by every layer that observes the call (breaker, bulkhead,
//! metrics), so all of them see `Cancelled`, which no layer counts against the server. The
//! call's clock stops too, and the layer sends no `notifications/cancelled` of its own for it.
//!
//! A cancellation may pass before the call's answer has headers (before there is a handle):
//! it is remembered on the call's entry and applied when the handle comes.
//!
//! Under 2026-07-28 there is nothing to match: closing the answer's stream is the cancellation,
//! and the answer's body, dropped, completes with `Cancelled` already. A cancellation naming no
//! running call of the session (already over, never seen, another session's) changes nothing.
//!
//! The table holds only calls in flight (which the bulkhead bounds); its lock is taken when a
//! call starts and ends and for each cancellation, never per frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;
use tower_armor_mcp::{CompletionHandle, Outcome, RequestId};

/// What a running call's entry knows.
#[derive(Debug)]
enum Slot {
    /// No answer yet.
    Waiting,
    /// The answer's completion handle.
    Answered(CompletionHandle),
    /// The client cancelled the call before its answer came.
    Cancelled,
}

#[derive(Debug)]
struct Entry {
    id: RequestId,
    slot: Mutex<Slot>,
}

impl Entry {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A `Slot` is written whole: a panic elsewhere cannot leave it half-written.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The calls in flight, per session; shared by every service of one layer.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    by_session: Mutex<HashMap<HeaderValue, Vec<Arc<Entry>>>>,
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, HashMap<HeaderValue, Vec<Arc<Entry>>>> {
        // Nothing here can be left half-written by a panic: recover the guard.
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers call `id` of `session`; it stays registered until the returned guard is
    /// dropped.
    pub(crate) fn register(self: &Arc<Self>, session: HeaderValue, id: RequestId) -> CallEntry {
        let entry = Arc::new(Entry {
            id,
            slot: Mutex::new(Slot::Waiting),
        });
        self.lock()
            .entry(session.clone())
            .or_default()
            .push(Arc::clone(&entry));
        CallEntry {
            calls: Arc::clone(self),
            session,
            entry,
        }
    }

    /// The client cancelled request `id` of `session`: completes every running call of the
    /// session with that id with [`Outcome::Cancelled`] (now, or when its answer comes).
    /// Returns how many calls it named.
    pub(crate) fn cancel(&self, session: &HeaderValue, id: &RequestId) -> usize {
        let named: Vec<Arc<Entry>> = match self.lock().get(session) {
            Some(calls) => calls.iter().filter(|e| e.id == *id).cloned().collect(),
            None => return 0,
        };
        for entry in &named {
            let handle = {
                let mut slot = entry.slot();
                match &*slot {
                    Slot::Answered(h) => Some(h.clone()),
                    Slot::Waiting => {
                        *slot = Slot::Cancelled;
                        None
                    }
                    Slot::Cancelled => None,
                }
            };
            // Outside the slot's lock: completing runs the listeners of every layer.
            if let Some(h) = handle {
                h.complete(Outcome::Cancelled);
            }
        }
        named.len()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// A running call's place in [`Calls`]; removes it when dropped.
pub(crate) struct CallEntry {
    calls: Arc<Calls>,
    session: HeaderValue,
    entry: Arc<Entry>,
}

impl CallEntry {
    /// The call's answer came, with `handle`. Returns false, having completed the handle with
    /// [`Outcome::Cancelled`], if the client cancelled the call before.
    pub(crate) fn answered(&self, handle: &CompletionHandle) -> bool {
        let mut slot = self.entry.slot();
        if matches!(*slot, Slot::Cancelled) {
            drop(slot);
            handle.complete(Outcome::Cancelled);
            return false;
        }
        *slot = Slot::Answered(handle.clone());
        true
    }
}

impl Drop for CallEntry {
    fn drop(&mut self) {
        let mut map = self.calls.lock();
        if let Some(calls) = map.get_mut(&self.session) {
            calls.retain(|e| !Arc::ptr_eq(e, &self.entry));
            if calls.is_empty() {
                map.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &'static str) -> HeaderValue {
        HeaderValue::from_static(v)
    }

    #[test]
    fn a_cancellation_completes_the_named_call_of_the_session_only() {
        let calls = Arc::new(Calls::default());
        let a = calls.register(s("s1"), 1.into());
        let b = calls.register(s("s1"), 2.into());
        let other = calls.register(s("s2"), 1.into());
        let (ha, hb, ho) = (
            CompletionHandle::new(),
            CompletionHandle::new(),
            CompletionHandle::new(),
        );
        assert!(a.answered(&ha) && b.answered(&hb) && other.answered(&ho));
        assert_eq!(calls.cancel(&s("s1"), &1.into()), 1);
        assert_eq!(ha.outcome(), Some(Outcome::Cancelled));
        assert_eq!(hb.outcome(), None);
        assert_eq!(ho.outcome(), None, "another session's call of the same id");
        assert_eq!(calls.cancel(&s("s1"), &RequestId::String("1".into())), 0);
        assert_eq!(calls.cancel(&s("s3"), &2.into()), 0);
        assert_eq!(hb.outcome(), None);
        drop((a, b, other));
        assert_eq!(calls.len(), 0);
        assert_eq!(calls.cancel(&s("s1"), &2.into()), 0, "a call that ended");
    }

    #[test]
    fn a_cancellation_before_the_answer_is_applied_when_it_comes() {
        let calls = Arc::new(Calls::default());
        let a = calls.register(s("s1"), 5.into());
        assert_eq!(calls.cancel(&s("s1"), &5.into()), 1);
        let h = CompletionHandle::new();
        assert!(!a.answered(&h));
        assert_eq!(h.outcome(), Some(Outcome::Cancelled));
    }

    #[test]
    fn an_outcome_known_first_is_kept() {
        let calls = Arc::new(Calls::default());
        let a = calls.register(s("s1"), 5.into());
        let h = CompletionHandle::new();
        assert!(a.answered(&h));
        h.complete(Outcome::Success);
        calls.cancel(&s("s1"), &5.into());
        assert_eq!(h.outcome(), Some(Outcome::Success));
    }
}
