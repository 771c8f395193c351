//! Waiting a moment, when a 2025-11-25 caller drops its answer, for it to resume.
//!
//! Both official SDKs resume a broken call stream with `GET` + `Last-Event-ID`, and the MCP
//! specification says a disconnection should not be read as a cancellation. With a resume grace
//! ([`TimeoutBuilder::resume_grace`](crate::TimeoutBuilder::resume_grace)), the layer holds the
//! dropped call's `notifications/cancelled` for that long, keyed by the session and the stream
//! part of rmcp's event ids (`<index>/<stream>`); a `GET` of the session resuming that stream
//! withdraws it, any other outcome sends it when the grace ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;
use tower_armor_mcp::inspect::event_stream;
use tower_armor_mcp::{Continuation, RequestId};

use crate::cancel::{CancelTarget, REASON_GONE, REASON_TIMEOUT};
use crate::clock::{Clock, after};

/// A held cancellation: the session, and the stream part of its event ids.
type Key = (HeaderValue, Box<str>);

/// What a dropped call keeps while it waits to be resumed: its cancellation, its clock (a
/// resumed call goes on under its own deadline and cap, not fresh ones), which hold this is (a
/// stream dropped, resumed and dropped again is held anew: the first hold's timer must not end
/// the second), and the continuations of its answers, which keep what the call holds outside
/// this layer (its bulkhead permit) taken while the tool runs.
type Call = (CancelTarget, Clock, u64, Vec<Continuation>);

/// The cancellations held for a resume grace. Entries live at most one grace each, and only
/// for calls that were running (a bulkhead outside bounds how many).
#[derive(Debug, Default)]
pub(crate) struct Held {
    calls: Mutex<HashMap<Key, Call>>,
    holds: AtomicU64,
    /// Calls the layer cancelled because their client went away, by session and stream, with
    /// when: a late resumption gets a final error for the id (see [`Held::late`]).
    gone: Mutex<HashMap<Key, (RequestId, Instant)>>,
}

/// How long a call cancelled because its client went away is remembered for a late
/// resumption: the SDKs resume after rmcp's 3 s `retry`, and retry for a while.
pub(crate) const GONE_KEPT: Duration = Duration::from_secs(120);

/// The most such calls remembered at once (about 100 bytes each).
pub(crate) const GONE_MAX: usize = 4096;

impl Held {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Call>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `target` for `grace`, or until the call's clock runs out if that comes first,
    /// then sends it unless the stream was resumed meanwhile. Without a runtime to wait on,
    /// gives it back (to be sent now).
    pub(crate) fn hold(
        self: &Arc<Self>,
        session: HeaderValue,
        stream: Box<str>,
        target: CancelTarget,
        clock: Clock,
        grace: Duration,
        continues: Vec<Continuation>,
    ) -> Option<CancelTarget> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Some(target);
        };
        let key = (session, stream);
        let until = after(Instant::now(), grace).min(clock.wake_at());
        let hold = self.holds.fetch_add(1, Ordering::Relaxed);
        // The same stream dropped again (resumed, then broken again): one cancellation.
        // A call this replaces (none expected: a resumption took it out) goes after the lock.
        let replaced = self
            .lock()
            .insert(key.clone(), (target, clock, hold, continues));
        drop(replaced);
        let held = Arc::clone(self);
        rt.spawn(async move {
            tokio::time::sleep_until(until).await;
            let call = {
                let mut calls = held.lock();
                match calls.get(&key) {
                    Some((_, _, h, _)) if *h == hold => calls.remove(&key),
                    _ => None,
                }
            };
            // The call's continuations go with it: what it held is released as it is cancelled.
            if let Some((t, clock, _, _continues)) = call {
                let reason = if clock.expired(Instant::now()) {
                    REASON_TIMEOUT
                } else {
                    REASON_GONE
                };
                tracing::debug!(reason, "dropped call not resumed in time; cancelling it");
                held.bury(key.0, key.1, t.id().clone());
                t.send(reason);
            }
        });
        None
    }

    /// Remembers that the call `id` of `session`, answered on `stream`, was cancelled because
    /// its client went away. Bounded: past [`GONE_MAX`] entries, expired ones go first, and if
    /// none has, this one is not remembered.
    pub(crate) fn bury(&self, session: HeaderValue, stream: Box<str>, id: RequestId) {
        let now = Instant::now();
        let mut gone = self.gone.lock().unwrap_or_else(PoisonError::into_inner);
        if gone.len() >= GONE_MAX {
            gone.retain(|_, (_, at)| now.saturating_duration_since(*at) < GONE_KEPT);
            if gone.len() >= GONE_MAX {
                return;
            }
        }
        gone.insert((session, stream), (id, now));
    }

    /// A `GET` of `session` resuming after `last_event_id`, for a call this layer cancelled
    /// because its client went away: its id, once (the resumption then ends with a final error
    /// for it instead of a stream that ends without one, which leaves the client waiting).
    pub(crate) fn late(&self, session: &HeaderValue, last_event_id: &[u8]) -> Option<RequestId> {
        let stream = event_stream(last_event_id)?;
        let mut gone = self.gone.lock().unwrap_or_else(PoisonError::into_inner);
        if gone.is_empty() {
            return None;
        }
        let (id, at) = gone.remove(&(session.clone(), Box::from(stream)))?;
        (Instant::now().saturating_duration_since(at) < GONE_KEPT).then_some(id)
    }

    /// How many calls are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// A `GET` of `session` resuming after `last_event_id`: takes back the cancellation held for
    /// that stream, which the resumed answer then carries (sent if it too is dropped, or times
    /// out), with the call's clock and continuations.
    pub(crate) fn resumed(
        &self,
        session: &HeaderValue,
        last_event_id: &[u8],
    ) -> Option<(CancelTarget, Clock, Vec<Continuation>)> {
        let stream = event_stream(last_event_id)?;
        let mut calls = self.lock();
        if calls.is_empty() {
            return None;
        }
        let found = calls.remove(&(session.clone(), Box::from(stream)));
        if found.is_some() {
            tracing::debug!("dropped call resumed within the grace; not cancelled");
        }
        found.map(|(t, clock, _, continues)| (t, clock, continues))
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
            .map(|(t, _, _, continues)| (t, continues))
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
                Vec::new(),
            )
        };
        assert!(hold().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(held.resumed(&s, b"3/0").is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(hold().is_none());
        // Past the first hold's end (5 s), within the second's (7 s): still held.
        tokio::time::advance(Duration::from_millis(3500)).await;
        tokio::task::yield_now().await;
        assert_eq!(held.lock().len(), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(held.lock().len(), 0, "sent when its own grace ended");
        assert!(held.resumed(&s, b"4/0").is_none());
    }
}
