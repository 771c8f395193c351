//! The ids of the requests in progress in each session (2025-11-25 and earlier revisions; the
//! stateless 2026-07-28 has no sessions).
//!
//! MCP forbids a client to reuse a request id within a session. rmcp keeps one answer slot per
//! id, so a second request under an id still in progress takes the first one's slot: one of
//! them is never answered, and waits for the call deadline. Past the stack's timeout that is a
//! slow failure of a tool that did nothing wrong, and enough of them open its circuit for every
//! client. The inspector therefore refuses a request whose id is in progress in its session.
//!
//! An entry is a keyed hash of (session, id), so a client cannot choose colliding keys; the
//! table takes about 18 bytes per entry when full (hash-table overhead included). An entry
//! lives while its [`InProgress`] token does, in any of its clones:
//!
//! - the inspector's, until the answer has ended, as the answer's
//!   [`CompletionHandle`](crate::CompletionHandle) tells (a per-call layer further in puts one
//!   on every call's answer); an answer without one has ended when its headers arrive;
//! - the request's extensions: a server that keeps them while it works on the request keeps the
//!   id in progress. rmcp keeps them for a tool that takes `Extension<Parts>` or its
//!   `RequestContext` (until it returns), and drops them once the tool's arguments are
//!   extracted otherwise;
//! - a layer that keeps a call alive past its answer: the timeout layer holds one with a
//!   dropped call waiting to be resumed, and in the `notifications/cancelled` it sends, until
//!   the server has read it.
//!
//! The table is bounded: past the bound new calls are not tracked (they go on, unprotected),
//! rather than refused.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;

use crate::jsonrpc::RequestId;

/// Shards of the table, so calls of different sessions rarely meet on one lock.
const SHARDS: usize = 16;

/// The in-progress ids of every session, for one inspector layer and all its clones.
pub(crate) struct InFlightIds {
    keys: RandomState,
    /// Most entries per shard.
    per_shard: usize,
    shards: [Mutex<HashSet<u64, BuildHasherDefault<KeyHasher>>>; SHARDS],
}

impl std::fmt::Debug for InFlightIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlightIds")
            .field("max", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

/// An id already in progress in the session.
#[derive(Debug)]
pub(crate) struct InUse;

impl InFlightIds {
    /// A table of at most about `max` entries (rounded up to a multiple of the shard count).
    pub(crate) fn new(max: usize) -> Self {
        InFlightIds {
            keys: RandomState::new(),
            per_shard: max.div_ceil(SHARDS),
            shards: std::array::from_fn(|_| Mutex::new(HashSet::default())),
        }
    }

    fn shard(&self, key: u64) -> MutexGuard<'_, HashSet<u64, BuildHasherDefault<KeyHasher>>> {
        // Middle bits pick the shard: the set uses the low bits for its buckets and the top
        // seven for its tags.
        let i = usize::try_from((key >> 32) & 0xff).unwrap_or(0) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `id` in progress in `session`: it stays so while the returned token (or a clone)
    /// lives. `Ok(None)` when the table is full (the call goes on untracked).
    pub(crate) fn begin(
        self: &Arc<Self>,
        session: &HeaderValue,
        id: &RequestId,
    ) -> Result<Option<InProgress>, InUse> {
        let key = self.keys.hash_one((session.as_bytes(), id));
        let mut shard = self.shard(key);
        if shard.contains(&key) {
            return Err(InUse);
        }
        if shard.len() >= self.per_shard {
            drop(shard);
            tracing::debug!("in-progress id table full; call not tracked");
            return Ok(None);
        }
        shard.insert(key);
        Ok(Some(InProgress(Arc::new(InFlight {
            table: Arc::clone(self),
            key,
        }))))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// The mark of a request's id in progress in its session (see
/// [Ids in progress](super::McpInspectLayer#ids-in-progress)): the id is free again once every
/// clone is dropped.
///
/// The inspector puts one in the extensions of each request it tracks. A layer that keeps a
/// call alive past its answer keeps a clone for that long, as the timeout layer does with a
/// call held for resumption.
#[derive(Clone)]
pub struct InProgress(Arc<InFlight>);

impl std::fmt::Debug for InProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a keyed hash: nothing to learn from it, but it tells marks apart.
        f.debug_tuple("InProgress").field(&self.0.key).finish()
    }
}

/// One entry of the table; removes it when dropped.
#[derive(Debug)]
struct InFlight {
    table: Arc<InFlightIds>,
    key: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.table.shard(self.key).remove(&self.key);
    }
}

/// The set's hasher: its keys are already keyed hashes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_in_progress_is_refused_in_its_session_only() {
        let t = Arc::new(InFlightIds::new(1024));
        let (s1, s2) = (
            HeaderValue::from_static("s1"),
            HeaderValue::from_static("s2"),
        );
        let id = RequestId::Number(42);
        let g = t.begin(&s1, &id).unwrap().expect("tracked");
        assert!(t.begin(&s1, &id).is_err());
        // Another session, another id, or the same digits as a string: all free.
        let other = t.begin(&s2, &id).unwrap();
        let next = t.begin(&s1, &RequestId::Number(43)).unwrap();
        let text = t.begin(&s1, &RequestId::from("42")).unwrap();
        assert_eq!(t.len(), 4);
        // In progress while any clone lives.
        let held = g.clone();
        drop(g);
        assert!(t.begin(&s1, &id).is_err());
        drop(held);
        let again = t.begin(&s1, &id).unwrap();
        assert!(again.is_some());
        drop((other, next, text, again));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_full_table_tracks_no_more_and_refuses_nothing() {
        let t = Arc::new(InFlightIds::new(16));
        let s = HeaderValue::from_static("s");
        let guards: Vec<_> = (0..1000)
            .map(|i| t.begin(&s, &RequestId::Number(i)).unwrap())
            .collect();
        // One entry per shard; 1,000 keys reach every shard.
        let tracked = guards.iter().filter(|g| g.is_some()).count();
        assert_eq!(tracked, 16);
        assert_eq!(t.len(), tracked);
        drop(guards);
        assert_eq!(t.len(), 0);
    }
}
