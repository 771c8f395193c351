//! Session binding (2025-11-25): which principal created each `Mcp-Session-Id`.
//!
//! A session id is learned from the `Mcp-Session-Id` header of a successful answer to a request
//! that carried none (the `initialize` answer) and bound to that request's principal. A request
//! presenting a session id passes only for the principal it is bound to; any other principal, and
//! any id the table does not hold, gets the answer the MCP server gives for an unknown session
//! (so there is no oracle telling whether another principal's session exists). A binding is
//! forgotten when its `DELETE` succeeds or when the server answers 404 for it (expired).
//! Requests of the stateless revision (`MCP-Protocol-Version: 2026-07-28`) are outside all
//! this: the server ignores `Mcp-Session-Id` on them (except on `initialize`, which joins the
//! session it names), so the layer removes the header from them instead of checking it.
//!
//! The table is bounded. A session the server expires unseen (idle) keeps its binding, as the
//! layer never hears of it; so when the table is full, every binding idle for longer than the
//! staleness bound (default 10 minutes, twice rmcp's default idle expiry) goes first, all at
//! once (one pass, then room for many). If that frees nothing, the least recently used binding
//! *of the principal holding the most* makes room, so a principal holding fewer bindings than
//! another never loses one to it: one principal creating sessions in a loop evicts its own,
//! and another's only down to parity. The evicted session then gets the unknown-session answer,
//! and its client re-initializes (rmcp's client does so by itself), which is safe: nobody can
//! use a session without its binding. The server keeps the session itself until its idle
//! expiry (rmcp's `LocalSessionManager`: 5 minutes by default).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;
use tower_armor_mcp::Principal;

/// What the table says about a presented session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionCheck {
    /// Bound to the presenting principal.
    Owner,
    /// Bound to another principal.
    Foreign,
    /// Not in the table.
    Unknown,
}

#[derive(Debug)]
struct Bound {
    principal: Principal,
    last_used: u64,
    /// When it was last bound or presented.
    seen: Instant,
}

#[derive(Debug, Default)]
struct Map {
    entries: HashMap<HeaderValue, Bound>,
    clock: u64,
}

/// The bounded session → principal table. Locked briefly, never across an await.
#[derive(Debug)]
pub(crate) struct SessionTable {
    map: Mutex<Map>,
    capacity: usize,
    /// A binding idle for longer is dropped first when the table is full.
    stale_after: Duration,
}

impl SessionTable {
    /// How long a binding may go unused before a full table drops it first (twice rmcp's
    /// default session idle expiry).
    pub(crate) const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(600);

    pub(crate) fn new(capacity: usize, stale_after: Duration) -> Self {
        SessionTable {
            map: Mutex::new(Map::default()),
            capacity,
            stale_after,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map> {
        // Every critical section leaves the map consistent: recover from a poisoned lock.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn check(&self, session: &HeaderValue, principal: &Principal) -> SessionCheck {
        let mut m = self.lock();
        m.clock += 1;
        let now = m.clock;
        match m.entries.get_mut(session) {
            Some(b) if b.principal == *principal => {
                b.last_used = now;
                b.seen = Instant::now();
                SessionCheck::Owner
            }
            Some(_) => SessionCheck::Foreign,
            None => SessionCheck::Unknown,
        }
    }

    /// Binds a session the server just created. Copies the id (so a header value sliced out of a
    /// large read buffer does not keep that buffer alive).
    pub(crate) fn bind(&self, session: &HeaderValue, principal: &Principal) {
        let key = tower_armor_mcp::detached(session);
        let seen = Instant::now();
        let mut m = self.lock();
        m.clock += 1;
        let now = m.clock;
        let full = |m: &Map| !m.entries.contains_key(&key) && m.entries.len() >= self.capacity;
        if full(&m)
            && let Some(cut) = seen.checked_sub(self.stale_after)
        {
            let before = m.entries.len();
            m.entries.retain(|_, b| b.seen > cut);
            if m.entries.len() < before {
                tracing::debug!(
                    dropped = before - m.entries.len(),
                    "session table full; bindings idle past the staleness bound dropped"
                );
            }
        }
        if full(&m)
            && let Some((k, holder)) = eviction(&m.entries, principal)
        {
            m.entries.remove(&k);
            tracing::debug!(
                capacity = self.capacity,
                principal = %holder,
                "session table full; the least recently used binding of the principal \
                 holding the most dropped"
            );
        }
        let old = m.entries.insert(
            key,
            Bound {
                principal: principal.clone(),
                last_used: now,
                seen,
            },
        );
        if let Some(old) = old
            && old.principal != *principal
        {
            tracing::warn!(
                principal = %principal,
                previous = %old.principal,
                "server re-issued a bound session id; rebinding it"
            );
        }
    }

    /// Forgets a session's binding (its `DELETE` succeeded, or the server no longer knows it).
    pub(crate) fn forget(&self, session: &HeaderValue) {
        self.lock().entries.remove(session);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

/// The binding to drop from a full table: the least recently used of the principal holding the
/// most (`binder`, about to add one, counts one more and wins ties; between others, the one with
/// the older binding), so a principal holding fewer than another never loses one to it. One
/// pass to count and find each principal's oldest: only when full.
fn eviction(
    entries: &HashMap<HeaderValue, Bound>,
    binder: &Principal,
) -> Option<(HeaderValue, Principal)> {
    // Per principal: how many it holds, and its least recently used binding.
    let mut held: HashMap<&Principal, (usize, &HeaderValue, u64)> = HashMap::new();
    for (k, b) in entries {
        let e = held.entry(&b.principal).or_insert((0, k, b.last_used));
        e.0 += 1;
        if b.last_used < e.2 {
            (e.1, e.2) = (k, b.last_used);
        }
    }
    let rank = |p: &Principal, n: usize, oldest: u64| {
        let is_binder = p == binder;
        (
            n + usize::from(is_binder),
            is_binder,
            std::cmp::Reverse(oldest),
        )
    };
    held.into_iter()
        .max_by_key(|(p, (n, _, oldest))| rank(p, *n, *oldest))
        .map(|(p, (_, k, _))| (k.clone(), p.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn binds_checks_and_forgets() {
        let t = SessionTable::new(8, SessionTable::DEFAULT_STALE_AFTER);
        let alice = Principal::new("alice");
        let bob = Principal::new("bob");
        assert_eq!(t.check(&hv("s1"), &alice), SessionCheck::Unknown);
        t.bind(&hv("s1"), &alice);
        assert_eq!(t.check(&hv("s1"), &alice), SessionCheck::Owner);
        assert_eq!(t.check(&hv("s1"), &bob), SessionCheck::Foreign);
        t.forget(&hv("s1"));
        assert_eq!(t.check(&hv("s1"), &alice), SessionCheck::Unknown);
    }

    #[test]
    fn bounded_with_least_recently_used_eviction() {
        let t = SessionTable::new(2, SessionTable::DEFAULT_STALE_AFTER);
        let a = Principal::new("a");
        t.bind(&hv("s1"), &a);
        t.bind(&hv("s2"), &a);
        // s1 used more recently than s2: s2 makes room.
        assert_eq!(t.check(&hv("s1"), &a), SessionCheck::Owner);
        t.bind(&hv("s3"), &a);
        assert_eq!(t.len(), 2);
        assert_eq!(t.check(&hv("s2"), &a), SessionCheck::Unknown);
        assert_eq!(t.check(&hv("s1"), &a), SessionCheck::Owner);
        assert_eq!(t.check(&hv("s3"), &a), SessionCheck::Owner);
        // Re-binding an existing id does not evict.
        t.bind(&hv("s3"), &a);
        assert_eq!(t.len(), 2);
    }

    /// Sessions the server expired unseen keep their bindings; a full table drops every
    /// binding idle past the staleness bound first, before any live binding is evicted.
    #[tokio::test(start_paused = true)]
    async fn a_full_table_drops_stale_bindings_first() {
        let t = SessionTable::new(4, Duration::from_secs(600));
        let (alice, bob) = (Principal::new("alice"), Principal::new("bob"));
        t.bind(&hv("a1"), &alice);
        t.bind(&hv("a2"), &alice);
        tokio::time::advance(Duration::from_secs(601)).await;
        t.bind(&hv("b1"), &bob);
        t.bind(&hv("b2"), &bob);
        // Full: bob, about to hold the most, would lose b1 to the largest-holder rule.
        t.bind(&hv("b3"), &bob);
        assert_eq!(t.len(), 3, "both stale bindings went, at once");
        for s in ["b1", "b2", "b3"] {
            assert_eq!(t.check(&hv(s), &bob), SessionCheck::Owner, "{s}");
        }
        assert_eq!(t.check(&hv("a1"), &alice), SessionCheck::Unknown);
        // A binding presented recently is not stale.
        tokio::time::advance(Duration::from_secs(500)).await;
        assert_eq!(t.check(&hv("b1"), &bob), SessionCheck::Owner);
        tokio::time::advance(Duration::from_secs(200)).await;
        t.bind(&hv("a3"), &alice);
        t.bind(&hv("a4"), &alice);
        assert_eq!(t.check(&hv("b1"), &bob), SessionCheck::Owner);
        assert_eq!(
            t.check(&hv("b2"), &bob),
            SessionCheck::Unknown,
            "idle 700 s"
        );
    }

    /// One principal creating sessions in a loop evicts only its own bindings: another's
    /// sessions, however long idle (within the staleness bound), stay bound.
    #[test]
    fn a_full_table_evicts_from_the_principal_holding_the_most() {
        let t = SessionTable::new(10, SessionTable::DEFAULT_STALE_AFTER);
        let (alice, bob) = (Principal::new("alice"), Principal::new("bob"));
        t.bind(&hv("alice-1"), &alice);
        t.bind(&hv("alice-2"), &alice);
        for i in 0..1000 {
            let s = HeaderValue::from_str(&format!("bob-{i}")).unwrap();
            t.bind(&s, &bob);
        }
        assert_eq!(t.len(), 10);
        assert_eq!(t.check(&hv("alice-1"), &alice), SessionCheck::Owner);
        assert_eq!(t.check(&hv("alice-2"), &alice), SessionCheck::Owner);
        // Bob's newest are kept, his oldest went.
        assert_eq!(t.check(&hv("bob-999"), &bob), SessionCheck::Owner);
        assert_eq!(t.check(&hv("bob-0"), &bob), SessionCheck::Unknown);
        // Alice, holding fewer, takes her room from bob.
        t.bind(&hv("alice-3"), &alice);
        assert_eq!(t.check(&hv("alice-3"), &alice), SessionCheck::Owner);
        assert_eq!(t.check(&hv("alice-1"), &alice), SessionCheck::Owner);
        assert_eq!(t.len(), 10);
    }
}
