//! Waiting a moment, when a 2025-11-25 caller drops its answer, for it to resume.
//!
//! Both official SDKs resume a broken call stream with `GET` + `Last-Event-ID`, and the MCP
//! specification says a disconnection should not be read as a cancellation. With a resume grace
//! ([`TimeoutBuilder::resume_grace`](crate::TimeoutBuilder::resume_grace)), the layer holds the
//! dropped call's `notifications/cancelled` for that long, keyed by the session and the stream
//! part of rmcp's event ids (`<index>/<stream>`); a `GET` of the session resuming that stream
//! withdraws it, any other outcome sends it when the grace ends.
//!
//! Calls cancelled because their client went away (at the drop without a grace, or when the
//! grace ends) are remembered a while after ([`Held::bury`]): rmcp answers a late resumption
//! with what it cached and no message for the id, and the layer adds a final error for it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;
use tower_armor_mcp::inspect::event_stream;
use tower_armor_mcp::{Continuation, RequestId};

use crate::calls::{CallEntry, Calls};
use crate::cancel::{CancelTarget, REASON_GONE, REASON_SHUTDOWN, REASON_TIMEOUT};
use crate::clock::{Clock, after};
use crate::pause::Registration;

/// A held cancellation: the session, and the stream part of its event ids.
type Key = (HeaderValue, Box<str>);

/// What a dropped call keeps while it waits to be resumed: its cancellation, its clock (a
/// resumed call goes on under its own deadline and cap, not fresh ones), which hold this is (a
/// stream dropped, resumed and dropped again is held anew: the first hold's timer must not end
/// the second), and the continuations of its answers, which keep what the call holds outside
/// this layer (its bulkhead permit) taken while the tool runs.
type Call = (CancelTarget, Clock, u64, Keeps);

/// What a held call keeps while it waits to be resumed.
#[derive(Debug)]
pub(crate) struct Keeps {
    /// Its holds on what it holds outside the layer (a bulkhead permit).
    pub(crate) continues: Vec<Continuation>,
    /// Its place among the calls waiting on their clients, if it waits on one (an answer the
    /// client gives meanwhile still counts).
    pub(crate) pause: Option<Registration>,
    /// Without that place (a resumption that failed before its answer came): the requests it
    /// was taken on with.
    pub(crate) waiting: u32,
}

/// A held call a `GET` resumed ([`Held::resumed`]): its cancellation, clock and hold, and its
/// place among the running calls.
pub(crate) struct Resumed {
    pub(crate) target: CancelTarget,
    pub(crate) clock: Clock,
    pub(crate) continues: Vec<Continuation>,
    pub(crate) entry: CallEntry,
    /// Requests of the server to the client the call still waits on (an elicitation).
    pub(crate) waiting: u32,
    /// The held call's place among the calls waiting on their clients, kept until the resumed
    /// answer takes over from it ([`Pauses::hand_over`](crate::pause::Pauses)): an answer
    /// the client gives meanwhile still counts.
    pub(crate) prior: Option<Registration>,
}

/// The cancellations held for a resume grace (entries live at most one grace each, and only for
/// calls that were running: a bulkhead outside bounds how many), and the calls cancelled because
/// their client went away (see [`Held::bury`]).
#[derive(Debug, Default)]
pub(crate) struct Held {
    calls: Mutex<HashMap<Key, Call>>,
    holds: AtomicU64,
    /// Calls the layer cancelled because their client went away: a late resumption gets a
    /// final error for the id (see [`Held::late`]).
    gone: Mutex<Graveyard>,
}

/// How long a call cancelled because its client went away is remembered for a late
/// resumption: the SDKs resume after rmcp's 3 s `retry`, and retry for a while.
pub(crate) const GONE_KEPT: Duration = Duration::from_secs(120);

/// The most such calls remembered at once (a few hundred bytes each at most: an id is at most
/// 256 bytes, and the session id is copied out of its request); past it the oldest goes.
pub(crate) const GONE_MAX: usize = 4096;

/// A call cancelled because its client went away: its id, and whether its deadline had passed.
#[derive(Clone, Debug)]
pub(crate) struct Gone {
    pub(crate) id: RequestId,
    pub(crate) timed_out: bool,
}

/// [`Gone`] calls by session and stream, and their keys oldest first (a late resumption comes
/// seconds after the drop: the newest matter most).
#[derive(Debug, Default)]
struct Graveyard {
    /// Each call, when it was buried, and its burial's number.
    calls: HashMap<Key, (Gone, Instant, u64)>,
    order: VecDeque<(u64, Instant, Key)>,
    burials: u64,
}

impl Graveyard {
    /// Forgets the calls kept longer than [`GONE_KEPT`], and the oldest beyond `keep`.
    fn sweep(&mut self, now: Instant, keep: usize) {
        let Graveyard { calls, order, .. } = self;
        while let Some((_, at, _)) = order.front() {
            let expired = now.saturating_duration_since(*at) >= GONE_KEPT;
            if !expired && calls.len() <= keep {
                break;
            }
            let Some((n, _, key)) = order.pop_front() else {
                break;
            };
            // Unless the key was buried again since (its entry is then another burial's).
            if calls.get(&key).is_some_and(|(_, _, m)| *m == n) {
                calls.remove(&key);
            }
        }
    }
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Call>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `target` for `grace`, or until the call's clock runs out if that comes first,
    /// then sends it unless the stream was resumed meanwhile; returns the hold's number (for
    /// [`Held::unhold`]). Without a runtime to wait on, gives it back (to be sent now).
    pub(crate) fn hold(
        self: &Arc<Self>,
        session: HeaderValue,
        stream: Box<str>,
        target: CancelTarget,
        clock: Clock,
        grace: Duration,
        keeps: Keeps,
    ) -> Result<u64, Box<CancelTarget>> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Err(Box::new(target));
        };
        let key = (tower_armor_mcp::detached(&session), stream);
        // Its progress goes unseen until it is resumed (see `Clock::hold`).
        let mut clock = clock;
        clock.hold();
        let until = after(Instant::now(), grace).min(clock.wake_at());
        let hold = self.holds.fetch_add(1, Ordering::Relaxed);
        // The same stream dropped again (resumed, then broken again): one cancellation.
        // A call this replaces (none expected: a resumption took it out) goes after the lock.
        let replaced = self
            .lock()
            .insert(key.clone(), (target, clock, hold, keeps));
        drop(replaced);
        let held = Arc::clone(self);
        rt.spawn(async move {
            tokio::time::sleep_until(until).await;
            let call = {
                let mut calls = held.lock();
                match calls.get(&key) {
                    Some((t, clock, h, ..)) if *h == hold => {
                        // Buried before it leaves the held calls: a resumption finds it in one
                        // or the other, never in neither. (The graveyard's lock is only ever
                        // taken inside this one, never around it.)
                        let timed_out = clock.expired(Instant::now());
                        let gone = Gone {
                            id: t.id().clone(),
                            timed_out,
                        };
                        held.bury(key.0.clone(), key.1.clone(), gone);
                        calls.remove(&key).map(|c| (c, timed_out))
                    }
                    _ => None,
                }
            };
            // What the call held is released once the server has read its cancellation.
            if let Some(((t, _, _, keeps), timed_out)) = call {
                let reason = if timed_out {
                    REASON_TIMEOUT
                } else {
                    REASON_GONE
                };
                tracing::debug!(reason, "dropped call not resumed in time; cancelling it");
                t.send_holding(reason, keeps.continues);
            }
        });
        Ok(hold)
    }

    /// The server's drain ended the calls in flight: the held ones are cancelled now too
    /// (nothing can resume them once every request is refused), and remembered for a late
    /// resumption like any call cancelled because its client went away. Their timers then find
    /// nothing to send.
    pub(crate) fn end_all(&self) {
        let calls: Vec<_> = self.lock().drain().collect();
        let now = Instant::now();
        for ((session, stream), (t, clock, _, keeps)) in calls {
            let gone = Gone {
                id: t.id().clone(),
                timed_out: clock.expired(now),
            };
            self.bury(session, stream, gone);
            tracing::debug!("held call ended by the drain; cancelling it");
            t.send_holding(REASON_SHUTDOWN, keeps.continues);
        }
    }

    /// Takes back hold number `hold` of `stream` (if it is still there), without cancelling
    /// anything: a `GET` took the call over from its answer while the answer was handing it
    /// to this table, and carries it on (with copies of what the hold kept).
    pub(crate) fn unhold(&self, session: &HeaderValue, stream: &str, hold: u64) {
        let key = (session.clone(), Box::from(stream));
        let taken = {
            let mut calls = self.lock();
            match calls.get(&key) {
                Some((_, _, h, _)) if *h == hold => calls.remove(&key),
                _ => None,
            }
        };
        // Its continuations are let go of after the lock.
        drop(taken);
    }

    /// Remembers that a call of `session`, answered on `stream`, was cancelled because its
    /// client went away (or its deadline passed inside the stream), for [`GONE_KEPT`].
    /// Bounded: past [`GONE_MAX`] calls the oldest goes.
    pub(crate) fn bury(&self, session: HeaderValue, stream: Box<str>, gone: Gone) {
        let now = Instant::now();
        let mut yard = self.gone.lock().unwrap_or_else(PoisonError::into_inner);
        yard.sweep(now, GONE_MAX - 1);
        let Graveyard {
            calls,
            order,
            burials,
        } = &mut *yard;
        *burials += 1;
        let key = (tower_armor_mcp::detached(&session), stream);
        order.push_back((*burials, now, key.clone()));
        calls.insert(key, (gone, now, *burials));
    }

    /// A `GET` of `session` resuming after `last_event_id`, for a call this layer cancelled
    /// because its client went away: that call (the resumption then ends with a final error
    /// for its id instead of a stream that ends without one, which leaves the client waiting).
    /// Kept until it expires: a resumption that fails may be tried again.
    pub(crate) fn late(&self, session: &HeaderValue, last_event_id: &[u8]) -> Option<Gone> {
        let stream = event_stream(last_event_id)?;
        let mut yard = self.gone.lock().unwrap_or_else(PoisonError::into_inner);
        if yard.calls.is_empty() {
            return None;
        }
        // Expired calls go here too, not only at the next burial: a server that falls quiet
        // after a burst of dropped calls does not keep them.
        yard.sweep(Instant::now(), GONE_MAX);
        let (gone, _, _) = yard.calls.get(&(session.clone(), Box::from(stream)))?;
        Some(gone.clone())
    }

    /// How many calls are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// A `GET` of `session` resuming after `last_event_id`: takes back the cancellation held for
    /// that stream, which the resumed answer then carries (sent if it too is dropped, or times
    /// out), with the call's clock and continuations.
    ///
    /// The resumed call is registered in `running` (with its stream and what it carries)
    /// before this table lets go of it: a second `GET` of the stream racing this one finds it
    /// there, running, and takes it over ([`Calls::take_over`]), instead of finding it nowhere
    /// and reaching the server as a resumption of nothing this layer knows.
    pub(crate) fn resumed(
        &self,
        session: &HeaderValue,
        last_event_id: &[u8],
        running: &Arc<Calls>,
    ) -> Option<Resumed> {
        let stream = event_stream(last_event_id)?;
        let mut calls = self.lock();
        if calls.is_empty() {
            return None;
        }
        let (target, mut clock, _, keeps) = calls.remove(&(session.clone(), Box::from(stream)))?;
        clock.resume(Instant::now());
        let Keeps {
            continues,
            pause,
            waiting,
        } = keeps;
        // Answers the client gave while the call was held were counted on its dropped answer
        // (still registered as waiting): what is left, the resumed answer waits on (what its
        // place still counts when the answer comes, if it keeps it).
        let waiting = pause.as_ref().map_or(waiting, |p| p.entry.outstanding());
        tracing::debug!("dropped call resumed within the grace; not cancelled");
        let entry = running.register(
            session.clone(),
            target.id().clone(),
            clock,
            Some(target.clone()),
        );
        entry.set_stream(stream);
        entry.set_carried(&continues);
        entry.set_waiting(waiting);
        Some(Resumed {
            target,
            clock,
            continues,
            entry,
            waiting,
            prior: pause,
        })
    }

    /// The client cancelled call `id` of `session` itself (`None`: ended the whole session):
    /// nothing is left to resume or cancel, so the held cancellations go, unsent. Returns them,
    /// with the calls' continuations (to keep until the server has read the client's own
    /// cancellation; released outside the lock).
    pub(crate) fn withdraw(
        &self,
        session: &HeaderValue,
        id: Option<&RequestId>,
    ) -> Vec<(CancelTarget, Vec<Continuation>)> {
        let mut calls = self.lock();
        if calls.is_empty() {
            return Vec::new();
        }
        let keys: Vec<Key> = calls
            .iter()
            .filter(|((s, _), (t, ..))| s == session && id.is_none_or(|id| t.id() == id))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter()
            .filter_map(|k| calls.remove(k))
            .map(|(t, _, _, keeps)| (t, keeps.continues))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(session: &HeaderValue) -> CancelTarget {
        let req = http::Request::post("/mcp").body(()).unwrap();
        let facts = tower_armor_mcp::McpRequest::new(
            tower_armor_mcp::MessageKind::Request,
            Some(tower_armor_mcp::Method::ToolsCall),
            Some(tower_armor_mcp::RequestId::Number(1)),
        )
        .with_session_id(session.clone());
        CancelTarget::capture(&req, &facts, &Arc::default()).unwrap()
    }

    fn clock() -> Clock {
        let hour = Duration::from_secs(3600);
        Clock::start(Instant::now(), hour, false, None, hour)
    }

    /// At the bound the oldest buried call goes, not the newest (a late resumption comes
    /// seconds after its drop); expired ones go too.
    #[tokio::test(start_paused = true)]
    async fn the_newest_cancelled_calls_are_remembered() {
        let held = Held::default();
        let s = HeaderValue::from_static("s1");
        let gone = |n: i64| Gone {
            id: RequestId::Number(n),
            timed_out: false,
        };
        for n in 0..=GONE_MAX as i64 {
            held.bury(s.clone(), n.to_string().into(), gone(n));
        }
        assert!(held.late(&s, b"1/0").is_none(), "the oldest went");
        assert!(held.late(&s, b"1/1").is_some());
        let newest = format!("1/{GONE_MAX}");
        assert!(held.late(&s, newest.as_bytes()).is_some());
        // Buried again: kept as the newest, not evicted by its older place in line.
        held.bury(s.clone(), "2".into(), gone(2));
        held.bury(s.clone(), "x".into(), gone(-1));
        held.bury(s.clone(), "w".into(), gone(-3));
        assert!(held.late(&s, b"1/1").is_none());
        assert!(held.late(&s, b"1/2").is_some());
        assert!(
            held.late(&s, b"1/3").is_none(),
            "the oldest in line went instead"
        );
        assert!(held.late(&s, b"1/4").is_some());
        tokio::time::advance(GONE_KEPT).await;
        held.bury(s.clone(), "y".into(), gone(-2));
        assert!(held.late(&s, b"1/x").is_none(), "expired");
        assert_eq!(held.gone.lock().unwrap().calls.len(), 1);
        // A lookup forgets expired calls too (a server that falls quiet keeps none).
        tokio::time::advance(GONE_KEPT).await;
        assert!(held.late(&s, b"1/y").is_none());
        assert_eq!(held.gone.lock().unwrap().calls.len(), 0);
    }

    /// A call whose answer is dropped while a `GET` resumes its stream has one owner, whatever
    /// the order: the answer holds the call first, then releases it; a take-over before the
    /// release wins (the hold is taken back), after it the `GET` finds the call held.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_answer_and_a_resuming_get_never_both_own_the_call() {
        let s = HeaderValue::from_static("s1");
        let keeps = || Keeps {
            continues: Vec::new(),
            pause: None,
            waiting: 0,
        };
        let grace = Duration::from_secs(5);
        for take_over_first in [false, true] {
            let held = Arc::new(Held::default());
            let running = Arc::new(Calls::default());
            let entry = running.register(s.clone(), RequestId::Number(1), clock(), None);
            entry.answered(&tower_armor_mcp::CompletionHandle::new());
            entry.set_stream("0");
            // The `GET` looks in the held calls first: nothing yet.
            assert!(held.resumed(&s, b"3/0", &running).is_none());
            let taken = take_over_first.then(|| running.take_over(&s, "0"));
            // The answer is dropped: held, then released.
            let hold = held
                .hold(s.clone(), "0".into(), target(&s), clock(), grace, keeps())
                .unwrap();
            if entry.release() {
                assert!(!take_over_first);
            } else {
                held.unhold(&s, "0", hold);
            }
            if take_over_first {
                assert!(taken.unwrap().is_some(), "the GET took the call over");
                assert_eq!(held.len(), 0, "and the hold was taken back");
            } else {
                assert!(
                    running.take_over(&s, "0").is_none(),
                    "a released answer is not taken over"
                );
                assert!(
                    held.resumed(&s, b"3/0", &running).is_some(),
                    "the GET's second look finds it held"
                );
                assert_eq!(held.len(), 0);
            }
        }
    }

    /// A session id sliced out of a large request head is copied, not kept with its buffer.
    #[tokio::test(start_paused = true)]
    async fn session_ids_are_copied_out_of_their_request() {
        let sliced = tower_armor_test_support::SlicedHeader::new();
        let session = sliced.value.clone();
        let within = |v: &HeaderValue| sliced.shares_head(v);
        assert!(within(&session));
        let held = Arc::new(Held::default());
        let gone = Gone {
            id: RequestId::Number(1),
            timed_out: false,
        };
        held.bury(session.clone(), "0".into(), gone);
        let yard = held.gone.lock().unwrap();
        let (key, _) = yard.calls.iter().next().unwrap();
        assert_eq!(key.0, session);
        assert!(!within(&key.0));
        drop(yard);
        let hold = held.hold(
            session.clone(),
            "1".into(),
            target(&session),
            clock(),
            Duration::from_secs(5),
            Keeps {
                continues: Vec::new(),
                pause: None,
                waiting: 0,
            },
        );
        assert!(hold.is_ok());
        assert_eq!(held.len(), 1);
        assert!(held.lock().keys().all(|k| !within(&k.0)));
    }

    /// A stream dropped, resumed and dropped again is held anew: the first hold's timer does
    /// not end the second hold early.
    #[tokio::test(start_paused = true)]
    async fn each_hold_keeps_its_own_grace() {
        let held = Arc::new(Held::default());
        let s = HeaderValue::from_static("s1");
        let grace = Duration::from_secs(5);
        let hold = || {
            held.hold(
                s.clone(),
                "0".into(),
                target(&s),
                clock(),
                grace,
                Keeps {
                    continues: Vec::new(),
                    pause: None,
                    waiting: 0,
                },
            )
        };
        assert!(hold().is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(held.resumed(&s, b"3/0", &Arc::default()).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(hold().is_ok());
        // Past the first hold's end (5 s), within the second's (7 s): still held.
        tokio::time::advance(Duration::from_millis(3500)).await;
        tokio::task::yield_now().await;
        assert_eq!(held.lock().len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(held.lock().len(), 0, "sent when its own grace ended");
        assert!(held.resumed(&s, b"4/0", &Arc::default()).is_none());
    }
}
