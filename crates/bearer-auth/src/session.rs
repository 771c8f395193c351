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
//! The table is bounded: when full, the least recently used binding makes room. Its session then
//! gets the unknown-session answer, and the client re-initializes (rmcp's client does so by
//! itself), which is safe: a session never outlives its binding.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderValue;
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
}

impl SessionTable {
    pub(crate) fn new(capacity: usize) -> Self {
        SessionTable {
            map: Mutex::new(Map::default()),
            capacity,
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
                SessionCheck::Owner
            }
            Some(_) => SessionCheck::Foreign,
            None => SessionCheck::Unknown,
        }
    }

    /// Binds a session the server just created. Copies the id (so a header value sliced out of a
    /// large read buffer does not keep that buffer alive).
    pub(crate) fn bind(&self, session: &HeaderValue, principal: &Principal) {
        let Ok(key) = HeaderValue::from_bytes(session.as_bytes()) else {
            return;
        };
        let mut m = self.lock();
        m.clock += 1;
        let now = m.clock;
        if !m.entries.contains_key(&key) && m.entries.len() >= self.capacity {
            let lru = m
                .entries
                .iter()
                .min_by_key(|(_, b)| b.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = lru {
                m.entries.remove(&k);
                tracing::debug!(
                    capacity = self.capacity,
                    "session table full; least recently used binding dropped"
                );
            }
        }
        let old = m.entries.insert(
            key,
            Bound {
                principal: principal.clone(),
                last_used: now,
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

    pub(crate) fn forget(&self, session: &HeaderValue) {
        self.lock().entries.remove(session);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn binds_checks_and_forgets() {
        let t = SessionTable::new(8);
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
        let t = SessionTable::new(2);
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
}
