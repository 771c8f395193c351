//! Matching a client's `notifications/cancelled` with the call it cancels.
//!
//! Under 2025-11-25 a client cancels a call by POSTing `notifications/cancelled` with the
//! call's JSON-RPC id in the same session; rmcp then stops the tool and ends the call's stream
//! without a final response. Seen from the answer alone that is
//! [`Outcome::Incomplete`](tower_armor_mcp::Outcome::Incomplete), which a circuit breaker
//! counts as a failure of the server: the client's own change of mind would trip the circuit.
//! So every 2025-11-25 call with an id registers here under `(session, id)` while it runs, and
//! a cancellation passing through the layer marks the named call
//! ([`CompletionHandle::cancel_requested`]) before it is forwarded. When the answer then ends
//! without its final response the call completes
//! [`Outcome::Cancelled`](tower_armor_mcp::Outcome::Cancelled), on the completion handle every
//! layer shares (breaker, bulkhead, metrics), and no layer counts it against the server. The
//! call keeps everything else until its answer really ends: a server that ignores the
//! cancellation still holds its bulkhead permit, runs under its deadline, and is judged by how
//! its answer ends.
//!
//! A client that ends its session (`DELETE` with its `Mcp-Session-Id`) while calls of it run
//! cancels them all the same way: rmcp ends their streams without final responses, and the
//! client's own decision is no failure of the server. (The layer sends those calls'
//! cancellations ahead of the `DELETE`, see [`Marked::running`]: rmcp would otherwise let
//! their tools run on for up to 5 s after their streams, and permits, ended.)
//!
//! A cancellation may pass before the call's answer has headers (before there is a handle):
//! it is remembered on the call's entry and applied when the handle comes.
//!
//! Under 2026-07-28 there is nothing to match: closing the answer's stream is the cancellation,
//! and the answer's body, dropped, completes with `Cancelled` already. A cancellation naming no
//! running call of the session (already over, never seen, another session's) changes nothing.
//!
//! The table holds only calls whose answers are in flight (until the answer's body is
//! dropped; a bulkhead outside bounds how many); its lock is taken when a call starts and ends
//! and for each cancellation, never per frame.
//!
//! A cancellation (or `DELETE`) the server does not accept (its answer is not a success: a bad
//! request, an unknown session) did not cancel anything: the marks it set are withdrawn when its answer
//! comes, so a call that later ends without its final response is still a failure. Marks are
//! counted per call: withdrawing one leaves another that the server accepted.
//!
//! The table also knows each call's stream (the part of rmcp's event ids after the `/`) once
//! its answer names it, and its clock, so that a `GET` resuming a stream whose answer is still
//! in flight can take the call over ([`Calls::take_over`]): rmcp moves the rest of the call
//! onto the `GET` and ends the first answer without its final message. The `GET` answers under
//! the call's id and clock, keeps what the call holds (a continuation of its completion handle:
//! its bulkhead permit) until it ends, and cancels the call if it is dropped or times out; the
//! first answer's early end is no failure of the server (`Cancelled`), and that answer no
//! longer cancels or holds the call.

use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;
use tower_armor_mcp::{CompletionHandle, Continuation, RequestId};

use crate::cancel::CancelTarget;
use crate::clock::Clock;
use crate::sessions::{BySession, Registered};

/// What a running call's entry knows.
#[derive(Debug, Default)]
struct Slot {
    /// The answer's completion handle, once the answer came.
    handle: Option<CompletionHandle>,
    /// Cancellations and session ends that named the call and were not withdrawn. Counted, so
    /// withdrawing a refused one leaves the mark of another that the server accepted (a
    /// `DELETE` refused after the call's own `notifications/cancelled` went through).
    marks: u32,
    /// The handle's cancel request was set by these marks (not by anything else), so the
    /// last withdrawal clears it.
    flagged: bool,
    /// The stream the answer's event ids name, once seen.
    stream: Option<Box<str>>,
    /// The call's clock (its deadline, cap and pauses), for a `GET` that takes it over.
    clock: Option<Clock>,
    /// A `GET` resuming the stream took the call over: this answer no longer acts on it.
    moved: bool,
    /// This answer handed the call to the held calls (its client dropped it): a `GET` finds it
    /// there, not here.
    released: bool,
    /// What this answer carries for the answers it continues (a resumption): a `GET` taking
    /// the call over from it must carry that on too.
    carried: Vec<Continuation>,
    /// How to cancel the call, as its request asked (its `Host`, `Origin`, protocol version and
    /// case, and the inspector's mark of its id in progress): a `GET` taking the call over
    /// cancels it so, not with the `GET`'s own headers.
    target: Option<CancelTarget>,
    /// The answer has ended (its place in the table is gone).
    ended: bool,
    /// A resumption that took on a call waiting on its client: how many requests it waits on
    /// (its own answer, once it comes, counts them).
    waiting: u32,
}

/// One call in flight.
#[derive(Debug)]
pub(crate) struct Entry {
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
pub(crate) type Calls = BySession<Entry>;

/// A running call's place in [`Calls`]; removes it when dropped.
#[derive(Debug)]
pub(crate) struct CallEntry(Registered<Entry>);

impl Drop for CallEntry {
    fn drop(&mut self) {
        self.0.entry.slot().ended = true;
    }
}

/// What a `GET` taking a call over ([`Calls::take_over`]) carries on.
pub(crate) struct TakenOver {
    pub(crate) id: RequestId,
    pub(crate) clock: Clock,
    /// Keep what the call holds outside the layer (its first answer's permit) until the
    /// `GET`'s answer ends.
    pub(crate) continues: Vec<Continuation>,
    /// How to cancel the call (a clone of its own target).
    pub(crate) target: Option<CancelTarget>,
    /// The answer it was taken from, to give it back if the server refuses the `GET`.
    pub(crate) source: Arc<Entry>,
    /// Requests of the server the call waits on its client to answer (an elicitation).
    pub(crate) waiting: u32,
    /// The handle of the answer it was taken from, where its client's answers count until the
    /// `GET`'s own answer comes.
    pub(crate) from: Option<CompletionHandle>,
}

impl Calls {
    /// Registers call `id` of `session`; it stays registered until the returned guard is
    /// dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        session: HeaderValue,
        id: RequestId,
        clock: Clock,
        target: Option<CancelTarget>,
    ) -> CallEntry {
        let slot = Slot {
            clock: Some(clock),
            target,
            ..Slot::default()
        };
        CallEntry(self.insert(
            session,
            Entry {
                id,
                slot: Mutex::new(slot),
            },
        ))
    }

    /// A `GET` of `session` resumes `stream` while the answer that names it is still in flight
    /// (its client resumed before the server saw it go, or while still reading it): the `GET`
    /// takes the call over. That answer's early end reads as `Cancelled` (the client's doing,
    /// no failure of the server), and it no longer cancels or holds the call. The `GET` is
    /// registered in its place before the table lets go (its stream, clock and what it carries
    /// set), so a third `GET` racing it takes the call over from it in turn. `None` if no
    /// answer in flight names the stream.
    pub(crate) fn take_over(
        self: &Arc<Self>,
        session: &HeaderValue,
        stream: &str,
    ) -> Option<(TakenOver, CallEntry)> {
        let (taken, registered) = self.with_then_insert(session, |calls| {
            calls.iter().rev().find_map(|e| {
                let mut slot = e.slot();
                if slot.moved || slot.released || slot.stream.as_deref() != Some(stream) {
                    return None;
                }
                let clock = slot.clock?;
                // What holds the call's own permit: what a resumption carries (the first
                // answer's), or the first answer's own. Not a resumption's own hold (its
                // `stream:resume` permit), which ends with its stream.
                let continues = if slot.carried.is_empty() {
                    slot.handle
                        .iter()
                        .map(CompletionHandle::continuation)
                        .collect()
                } else {
                    slot.carried.clone()
                };
                if let Some(handle) = &slot.handle {
                    handle.cancel_requested();
                }
                let waiting = slot
                    .handle
                    .as_ref()
                    .map_or(slot.waiting, CompletionHandle::server_requests_outstanding);
                slot.moved = true;
                let next = Slot {
                    stream: Some(Box::from(stream)),
                    clock: Some(clock),
                    carried: continues.clone(),
                    target: slot.target.clone(),
                    waiting,
                    ..Slot::default()
                };
                let taken = TakenOver {
                    id: e.id.clone(),
                    clock,
                    continues,
                    target: slot.target.clone(),
                    source: Arc::clone(e),
                    waiting,
                    from: slot.handle.clone(),
                };
                let entry = Entry {
                    id: e.id.clone(),
                    slot: Mutex::new(next),
                };
                Some((taken, entry))
            })
        })?;
        Some((taken, CallEntry(registered)))
    }

    /// The client cancelled request `id` of `session`: marks every running call of the session
    /// with that id (now, or when its answer comes). Returns the calls this cancellation
    /// marked, for [`Marked::withdraw`].
    pub(crate) fn cancel(&self, session: &HeaderValue, id: &RequestId) -> Marked {
        self.mark(session, |e| e.id == *id)
    }

    /// The client ends `session` (`DELETE`): marks every running call of it, as
    /// [`Calls::cancel`] marks one.
    pub(crate) fn end_session(&self, session: &HeaderValue) -> Marked {
        self.mark(session, |_| true)
    }

    fn mark(&self, session: &HeaderValue, which: impl Fn(&Entry) -> bool) -> Marked {
        let marked = self.with(session, |calls| {
            let mut marked = Vec::new();
            for entry in calls.iter().filter(|e| which(e)) {
                let mut slot = entry.slot();
                slot.marks = slot.marks.saturating_add(1);
                if slot.marks == 1
                    && let Some(h) = &slot.handle
                {
                    slot.flagged = h.cancel_requested();
                }
                marked.push(Arc::clone(entry));
            }
            marked
        });
        Marked(marked.unwrap_or_default())
    }
}

/// The calls one cancellation marked.
pub(crate) struct Marked(Vec<Arc<Entry>>);

impl Marked {
    /// How many calls were marked.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The ids of the marked calls that still run: their answers are in flight and not
    /// complete, and the layer could cancel them (2025-11-25 calls in a session).
    pub(crate) fn running(&self) -> Vec<RequestId> {
        self.0
            .iter()
            .filter(|e| {
                let slot = e.slot();
                !slot.ended
                    && !slot.moved
                    && slot.target.is_some()
                    && !slot
                        .handle
                        .as_ref()
                        .is_some_and(CompletionHandle::is_complete)
            })
            .map(|e| e.id.clone())
            .collect()
    }

    /// The server did not accept the cancellation: its marks are taken back. A call stays
    /// cancel-requested while another mark (one the server accepted) remains.
    pub(crate) fn withdraw(self) {
        let mut orphans = Vec::new();
        for entry in self.0 {
            let mut slot = entry.slot();
            slot.marks = slot.marks.saturating_sub(1);
            // (A call taken over by a resumption stays cancel-requested: its answer's early
            // end is the resumption's doing.)
            if slot.marks == 0
                && std::mem::take(&mut slot.flagged)
                && !slot.moved
                && let Some(h) = &slot.handle
            {
                h.withdraw_cancel_request();
                // Its client let go of the answer meanwhile, counting on its own cancellation:
                // nothing else will cancel the call now.
                if slot.ended
                    && h.outcome() == Some(tower_armor_mcp::Outcome::Cancelled)
                    && let Some(t) = slot.target.take()
                {
                    orphans.push(t);
                }
            }
        }
        for t in orphans {
            t.send(crate::cancel::REASON_GONE);
        }
    }
}

impl CallEntry {
    /// The call's answer came, with `handle`: a cancellation that came first is applied to it.
    pub(crate) fn answered(&self, handle: &CompletionHandle) {
        let mut slot = self.0.entry.slot();
        if slot.moved {
            // Taken over before its answer came: that answer's early end is no failure.
            handle.cancel_requested();
        } else if slot.marks > 0 {
            slot.flagged = handle.cancel_requested();
        }
        slot.handle = Some(handle.clone());
    }

    /// The call's answer names `stream` (a resumption of it continues the call).
    pub(crate) fn set_stream(&self, stream: &str) {
        self.0.entry.slot().stream = Some(Box::from(stream));
    }

    /// This answer continues the answers `continues` hold (it resumed them): a `GET` taking
    /// the call over from it carries them on.
    pub(crate) fn set_carried(&self, continues: &[Continuation]) {
        let replaced = std::mem::replace(&mut self.0.entry.slot().carried, continues.to_vec());
        // Dropping a continuation may release what the call held (a bulkhead permit, its
        // listeners' callbacks): after the entry's lock, not under it.
        drop(replaced);
    }

    /// A resumption that took on a call waiting on its client on `waiting` requests.
    pub(crate) fn set_waiting(&self, waiting: u32) {
        self.0.entry.slot().waiting = waiting;
    }

    /// The call's clock moved on (progress, a pause): what a `GET` taking it over goes on with.
    pub(crate) fn set_clock(&self, clock: Clock) {
        self.0.entry.slot().clock = Some(clock);
    }

    /// Whether a `GET` resuming the stream took the call over ([`Calls::take_over`]).
    pub(crate) fn is_moved(&self) -> bool {
        self.0.entry.slot().moved
    }

    /// This answer has handed the call to the held calls: unless a `GET` took the call over
    /// first (then `false`, and the hold is to be taken back), a `GET` from now on looks for
    /// it there ([`Calls::take_over`] skips it). Decided under the entry's lock, so exactly
    /// one of the two owns the call.
    pub(crate) fn release(&self) -> bool {
        let mut slot = self.0.entry.slot();
        if slot.moved {
            return false;
        }
        slot.released = true;
        true
    }
}

impl Entry {
    /// Whether this answer carried its call's final response (a result or a JSON-RPC error):
    /// the call is over, whatever a `GET` that took it over gets afterwards.
    pub(crate) fn answered(&self) -> bool {
        use tower_armor_mcp::Outcome;
        self.slot()
            .handle
            .as_ref()
            .and_then(CompletionHandle::outcome)
            .is_some_and(|o| {
                matches!(
                    o,
                    Outcome::Success | Outcome::ToolError | Outcome::RpcError(_)
                )
            })
    }

    /// The server refused the `GET` that took this answer's call over (it never got the
    /// call's stream): the call is this answer's again. `false` if the answer has ended
    /// meanwhile, leaving the call to whoever refused `GET` still holds it.
    pub(crate) fn give_back(&self) -> bool {
        let mut slot = self.slot();
        if slot.ended {
            return false;
        }
        slot.moved = false;
        if slot.marks == 0
            && let Some(h) = &slot.handle
        {
            h.withdraw_cancel_request();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use tower_armor_mcp::Outcome;

    use super::*;

    fn s(v: &'static str) -> HeaderValue {
        HeaderValue::from_static(v)
    }

    fn clock() -> Clock {
        let d = std::time::Duration::from_secs(10);
        Clock::start(tokio::time::Instant::now(), d, false, None, d)
    }

    #[test]
    fn a_cancellation_marks_the_named_call_of_the_session_only() {
        let calls = Arc::new(Calls::default());
        let a = calls.register(s("s1"), 1.into(), clock(), None);
        let b = calls.register(s("s1"), 2.into(), clock(), None);
        let other = calls.register(s("s2"), 1.into(), clock(), None);
        let (ha, hb, ho) = (
            CompletionHandle::new(),
            CompletionHandle::new(),
            CompletionHandle::new(),
        );
        a.answered(&ha);
        b.answered(&hb);
        other.answered(&ho);
        assert_eq!(calls.cancel(&s("s1"), &1.into()).len(), 1);
        assert!(ha.is_cancel_requested());
        assert_eq!(calls.cancel(&s("s1"), &1.into()).len(), 1, "marked again");
        assert!(!hb.is_cancel_requested());
        assert!(
            !ho.is_cancel_requested(),
            "another session's call of the same id"
        );
        assert_eq!(
            calls.cancel(&s("s1"), &RequestId::String("1".into())).len(),
            0
        );
        assert_eq!(calls.cancel(&s("s3"), &2.into()).len(), 0);
        // The server ends the cancelled call's stream without a final response.
        ha.complete(Outcome::Incomplete);
        assert_eq!(ha.outcome(), Some(Outcome::Cancelled));
        drop((a, b, other));
        assert_eq!(calls.len(), 0);
        assert_eq!(
            calls.cancel(&s("s1"), &2.into()).len(),
            0,
            "a call that ended"
        );
    }

    #[test]
    fn a_cancellation_before_the_answer_is_applied_when_it_comes() {
        let calls = Arc::new(Calls::default());
        let a = calls.register(s("s1"), 5.into(), clock(), None);
        assert_eq!(calls.cancel(&s("s1"), &5.into()).len(), 1);
        let h = CompletionHandle::new();
        a.answered(&h);
        assert!(h.is_cancel_requested());
    }

    #[test]
    fn a_refused_cancellation_is_withdrawn_and_only_its_own_marks() {
        let calls = Arc::new(Calls::default());
        let early = calls.register(s("s1"), 5.into(), clock(), None);
        calls.cancel(&s("s1"), &5.into()).withdraw();
        let h = CompletionHandle::new();
        early.answered(&h);
        assert!(!h.is_cancel_requested(), "withdrawn before the answer came");

        let accepted = calls.cancel(&s("s1"), &5.into());
        assert!(h.is_cancel_requested());
        // A second cancellation of the same call, refused, leaves the first one's mark.
        calls.cancel(&s("s1"), &5.into()).withdraw();
        assert!(h.is_cancel_requested());
        accepted.withdraw();
        assert!(!h.is_cancel_requested());
        h.complete(tower_armor_mcp::Outcome::Incomplete);
        assert_eq!(h.outcome(), Some(tower_armor_mcp::Outcome::Incomplete));
    }

    /// A `DELETE` marks the call first, the call's own cancellation then goes through, and the
    /// server refuses the `DELETE`: the accepted cancellation's mark stays.
    #[test]
    fn a_refused_session_end_keeps_an_accepted_cancellation() {
        let calls = Arc::new(Calls::default());
        for answered_first in [true, false] {
            let call = calls.register(s("s1"), 7.into(), clock(), None);
            let h = CompletionHandle::new();
            if answered_first {
                call.answered(&h);
            }
            let delete = calls.end_session(&s("s1"));
            let _accepted = calls.cancel(&s("s1"), &7.into());
            delete.withdraw();
            if !answered_first {
                call.answered(&h);
            }
            assert!(h.is_cancel_requested(), "answered first: {answered_first}");
            h.complete(tower_armor_mcp::Outcome::Incomplete);
            assert_eq!(h.outcome(), Some(tower_armor_mcp::Outcome::Cancelled));
        }
    }

    /// A handle some other layer flagged keeps its flag when a refused cancellation is
    /// withdrawn.
    #[test]
    fn a_withdrawal_leaves_a_flag_it_did_not_set() {
        let calls = Arc::new(Calls::default());
        let call = calls.register(s("s1"), 8.into(), clock(), None);
        let h = CompletionHandle::new();
        call.answered(&h);
        assert!(h.cancel_requested());
        calls.cancel(&s("s1"), &8.into()).withdraw();
        assert!(h.is_cancel_requested());
    }
}
