//! [`BulkheadStats`]: a cloneable handle on a bulkhead's live counters.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use tower_armor_mcp::Principal;

use crate::layer::Shared;
use crate::pool::Pool;

/// Live counters of one bulkhead, from [`BulkheadLayer::stats`](crate::BulkheadLayer::stats).
///
/// Cheap to clone; every clone reads the same state as every service the layer made. Values are
/// read without locking the whole bulkhead, so a set of values read one after another may straddle
/// a change.
#[derive(Clone)]
pub struct BulkheadStats {
    shared: Arc<Shared>,
}

/// The counters of one pool.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The pool's key (`None` for an unkeyed bulkhead).
    pub key: Option<Arc<str>>,
    /// Permits in use: calls running (until their answer ends).
    pub running: usize,
    /// Calls waiting for a permit.
    pub queued: usize,
    /// Calls refused so far (line full, or waited too long).
    pub rejected: u64,
    /// The pool's permits.
    pub max_concurrent: usize,
}

impl KeyStats {
    fn of(pool: &Pool) -> Self {
        KeyStats {
            key: pool.key().cloned(),
            running: pool.running(),
            queued: pool.queued(),
            rejected: pool.rejected(),
            max_concurrent: pool.max(),
        }
    }
}

impl fmt::Debug for BulkheadStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadStats")
            .field("running", &self.running())
            .field("queued", &self.queued())
            .field("rejected", &self.rejected())
            .field("streams_open", &self.streams_open())
            .finish()
    }
}

impl BulkheadStats {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        BulkheadStats { shared }
    }

    /// Calls holding a permit, all pools together.
    pub fn running(&self) -> usize {
        self.shared.pools.all().iter().map(|p| p.running()).sum()
    }

    /// Calls waiting for a permit, all pools together.
    pub fn queued(&self) -> usize {
        self.shared.pools.all().iter().map(|p| p.queued()).sum()
    }

    /// Calls refused so far, all pools together (long-lived streams not included; see
    /// [`streams_rejected`](Self::streams_rejected)).
    pub fn rejected(&self) -> u64 {
        self.shared.pools.all().iter().map(|p| p.rejected()).sum()
    }

    /// The counters of every pool created so far: the key table's by key (tools and `unknown`,
    /// or upstreams), then, keyed by tool, the method pools by key (`method:…`,
    /// [`RESUME_KEY`](crate::RESUME_KEY)), and the `overflow` pool last, once used.
    pub fn keys(&self) -> Vec<KeyStats> {
        self.shared
            .pools
            .all()
            .iter()
            .map(|p| KeyStats::of(p))
            .collect()
    }

    /// The counters of one key's pool, if it has been created.
    pub fn key(&self, key: &str) -> Option<KeyStats> {
        self.shared.pools.get(key).map(|p| KeyStats::of(&p))
    }

    /// Open long-lived streams, all principals together (0 when streams are not bounded: they
    /// are not counted then).
    pub fn streams_open(&self) -> usize {
        self.shared.streams.as_ref().map_or(0, |s| s.open_total())
    }

    /// Open long-lived streams of one principal (`None`: streams without a principal, every peer
    /// together).
    pub fn streams_open_for(&self, principal: Option<&Principal>) -> usize {
        self.shared
            .streams
            .as_ref()
            .map_or(0, |s| s.open_for(principal))
    }

    /// Open long-lived streams without a principal counted against `peer`'s allowance (for an
    /// IPv6 peer, its /64's).
    pub fn streams_open_from(&self, peer: IpAddr) -> usize {
        self.shared
            .streams
            .as_ref()
            .map_or(0, |s| s.open_from(peer))
    }

    /// Long-lived streams refused so far.
    pub fn streams_rejected(&self) -> u64 {
        self.shared.streams.as_ref().map_or(0, |s| s.rejected())
    }

    /// The configured streams per principal (`None`: not bounded).
    pub fn streams_per_principal(&self) -> Option<usize> {
        self.shared.streams.as_ref().map(|s| s.per_principal())
    }
}
