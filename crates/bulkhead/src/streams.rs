//! The pool of long-lived streams (a 2025-11-25 GET listen stream, a 2026-07-28
//! `subscriptions/listen`): no call permits, but at most `per_principal` open streams per
//! [`Principal`], so no token holder can open thousands of idle streams. Streams without a
//! principal (authentication off) count per peer IP instead, so each client has its own
//! allowance.
//!
//! Pure: a small table under a mutex (stream opens are rare next to calls), no runtime.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tower_armor_mcp::Principal;

/// Whose streams a slot counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Owner {
    Principal(Principal),
    /// Streams without a `Principal`, from one peer (see [`peer_key`]).
    Peer(IpAddr),
    /// Every stream with neither a `Principal` nor a known peer address.
    Anonymous,
    /// Principals beyond the table's bound share this entry (and its limit).
    Overflow,
}

/// Open long-lived streams per principal.
pub(crate) struct StreamPool {
    per_principal: usize,
    max_principals: usize,
    open: Mutex<HashMap<Owner, usize>>,
    rejected: AtomicU64,
}

impl std::fmt::Debug for StreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPool")
            .field("per_principal", &self.per_principal)
            .field("max_principals", &self.max_principals)
            .field("open", &self.open_total())
            .finish()
    }
}

impl StreamPool {
    /// A pool allowing `per_principal` open streams to each principal, tracking at most
    /// `max_principals` principals with open streams at once.
    pub(crate) fn new(per_principal: usize, max_principals: usize) -> Self {
        StreamPool {
            per_principal,
            max_principals,
            open: Mutex::new(HashMap::new()),
            rejected: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Owner, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a stream for `principal`, or without one for `peer` (`None` for both: the one
    /// anonymous allowance), or refuses when that owner has `per_principal` streams open
    /// already.
    pub(crate) fn try_open(
        self: &Arc<Self>,
        principal: Option<&Principal>,
        peer: Option<IpAddr>,
    ) -> Option<StreamSlot> {
        let mut open = self.lock();
        let mut owner = match (principal, peer) {
            (Some(p), _) => Owner::Principal(p.clone()),
            (None, Some(ip)) => Owner::Peer(peer_key(ip)),
            (None, None) => Owner::Anonymous,
        };
        // The shared overflow entry is not a principal of the bound.
        let tracked = open.len() - usize::from(open.contains_key(&Owner::Overflow));
        if !open.contains_key(&owner) && tracked >= self.max_principals {
            owner = Owner::Overflow;
        }
        let n = open.get(&owner).copied().unwrap_or(0);
        if n >= self.per_principal {
            drop(open);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        open.insert(owner.clone(), n + 1);
        Some(StreamSlot {
            pool: Arc::clone(self),
            owner,
        })
    }

    /// The configured limit per principal.
    pub(crate) fn per_principal(&self) -> usize {
        self.per_principal
    }

    /// Streams open now, all principals together.
    pub(crate) fn open_total(&self) -> usize {
        self.lock().values().sum()
    }

    /// Streams open now for `principal` (`None`: every stream without one, all peers together).
    pub(crate) fn open_for(&self, principal: Option<&Principal>) -> usize {
        let open = self.lock();
        match principal {
            Some(p) => open.get(&Owner::Principal(p.clone())).copied().unwrap_or(0),
            None => open
                .iter()
                .filter(|(o, _)| matches!(o, Owner::Peer(_) | Owner::Anonymous))
                .map(|(_, n)| n)
                .sum(),
        }
    }

    /// Streams without a principal open now from `peer`'s allowance.
    pub(crate) fn open_from(&self, peer: IpAddr) -> usize {
        let owner = Owner::Peer(peer_key(peer));
        self.lock().get(&owner).copied().unwrap_or(0)
    }

    /// Streams refused so far.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    fn close(&self, owner: &Owner) {
        let mut open = self.lock();
        if let Some(n) = open.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                // Entries exist only while streams are open: the table never outgrows them.
                open.remove(owner);
            }
        }
    }
}

/// The allowance a peer's anonymous streams count against: an IPv4 address as is, an IPv6
/// address by its /64 (one allocation is one client: a host can pick any address inside it).
/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// One open long-lived stream; closed when dropped.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    pool: Arc<StreamPool>,
    owner: Owner,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.pool.close(&self.owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_principal_and_streams_without_peer_share_one_key() {
        let pool = Arc::new(StreamPool::new(2, 100));
        let alice = Principal::new("alice");
        let bob = Principal::new("bob");
        let a1 = pool.try_open(Some(&alice), None).unwrap();
        let _a2 = pool.try_open(Some(&alice), None).unwrap();
        assert!(pool.try_open(Some(&alice), None).is_none());
        let _b1 = pool.try_open(Some(&bob), None).unwrap();
        let _n1 = pool.try_open(None, None).unwrap();
        let _n2 = pool.try_open(None, None).unwrap();
        assert!(pool.try_open(None, None).is_none());
        assert_eq!(pool.rejected(), 2);
        assert_eq!(pool.open_total(), 5);
        drop(a1);
        assert_eq!(pool.open_for(Some(&alice)), 1);
        let _a3 = pool.try_open(Some(&alice), None).unwrap();
    }

    /// Without a principal, each peer has its own allowance; IPv6 peers by their /64.
    #[test]
    fn anonymous_streams_count_per_peer() {
        let pool = Arc::new(StreamPool::new(1, 100));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let _a = pool.try_open(None, Some(ip("10.0.0.1"))).unwrap();
        assert!(pool.try_open(None, Some(ip("10.0.0.1"))).is_none());
        assert!(pool.try_open(None, Some(ip("::ffff:10.0.0.1"))).is_none());
        let _b = pool.try_open(None, Some(ip("10.0.0.2"))).unwrap();
        let _c = pool.try_open(None, Some(ip("2001:db8:0:1::1"))).unwrap();
        assert!(pool.try_open(None, Some(ip("2001:db8:0:1::2"))).is_none());
        let _d = pool.try_open(None, Some(ip("2001:db8:0:2::1"))).unwrap();
        // No peer address known: the one anonymous allowance.
        let _e = pool.try_open(None, None).unwrap();
        assert!(pool.try_open(None, None).is_none());
        // A principal's allowance is its own, wherever it connects from.
        let alice = Principal::new("alice");
        let _f = pool.try_open(Some(&alice), Some(ip("10.0.0.1"))).unwrap();
        assert_eq!(pool.open_from(ip("10.0.0.1")), 1);
        assert_eq!(pool.open_from(ip("2001:db8:0:1::ffff")), 1);
        assert_eq!(pool.open_for(None), 5);
        assert_eq!(pool.rejected(), 4);
    }

    #[test]
    fn the_table_is_bounded_and_emptied() {
        let pool = Arc::new(StreamPool::new(1, 2));
        let p: Vec<Principal> = (0..4).map(|i| Principal::new(format!("p{i}"))).collect();
        let s0 = pool.try_open(Some(&p[0]), None).unwrap();
        let _s1 = pool.try_open(Some(&p[1]), None).unwrap();
        // The table is full: p2 counts against the shared overflow entry, p3 finds it taken.
        let s2 = pool.try_open(Some(&p[2]), None).unwrap();
        assert!(pool.try_open(Some(&p[3]), None).is_none());
        assert_eq!(pool.lock().len(), 3);
        // p0's place is free again: p3 takes it, though the overflow entry is still in use.
        drop(s0);
        let s3 = pool.try_open(Some(&p[3]), None).unwrap();
        assert_eq!(pool.open_for(Some(&p[3])), 1);
        assert_eq!(pool.lock().len(), 3);
        drop(s2);
        drop(s3);
        assert_eq!(pool.lock().len(), 1);
        assert_eq!(pool.open_total(), 1);
    }

    #[test]
    fn zero_allows_no_stream() {
        let pool = Arc::new(StreamPool::new(0, 10));
        assert!(pool.try_open(None, None).is_none());
        assert_eq!(pool.open_total(), 0);
    }
}
