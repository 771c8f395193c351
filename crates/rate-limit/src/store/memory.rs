//! [`InMemoryStore`]: governor's GCRA over a bounded, sharded key table.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;
use tokio::time::Instant;

use super::{Checks, Decision, KeyStore, Outcome, RateKey, StoreError};
use crate::clock::TokioClock;
use crate::key::ClientKey;
use crate::policy::Policies;

/// Table operations (per thread) between two incremental sweeps.
const SWEEP_EVERY: u32 = 64;
/// Buckets examined by an incremental sweep.
const SWEEP_BATCH: usize = 128;
/// How long an entry's bucket must have been full before an incremental sweep removes it. A busy
/// client's bucket may be full again between two of its requests (a generous quota); removing
/// it then only makes the next request insert it again, under the shard's write lock. A full
/// shard's sweep and [`InMemoryStore::sweep_all`] take every full bucket.
const SWEEP_IDLE: Duration = Duration::from_secs(1);
/// Buckets examined when a new key finds its shard full.
const FULL_SWEEP_BATCH: usize = 256;
/// The least clock time between two sweeps of a full shard (no entry turns stale while the
/// clock stands still, so sweeping again would find nothing).
const FULL_SWEEP_GAP: Duration = Duration::from_millis(10);
/// Tables of at most this many buckets are not shrunk.
const MIN_SHRINK_BUCKETS: usize = 64;
/// The most shards.
const MAX_SHARDS: usize = 64;
/// Keys per shard before another shard is added.
const KEYS_PER_SHARD: usize = 1024;

type Limiter = RateLimiter<RateKey, TableRef, TokioClock, StateInformationMiddleware>;

/// The default [`KeyStore`]: per-key GCRA state in memory, bounded and swept.
///
/// - **GCRA**: one governor [`RateLimiter`] per policy (the policy's quota, [`TokioClock`]), all
///   over one shared table that implements governor's [`StateStore`]. Each entry holds a
///   governor [`InMemoryState`] (one `AtomicU64`: the theoretical arrival time), updated by
///   governor's compare-and-swap under the shard's *read* lock.
/// - **Bounded**: at most `max_keys` entries, split over up to 64 shards (each holds
///   `max_keys / shards`). When a new key finds its shard full, the shard is swept first; if it
///   is still full the key is **not** inserted: it counts against its policy's shared *overflow
///   bucket* (one bucket per policy, the policy's quota). Existing clients keep their exact state
///   — a flood of fresh keys (spoofed IPv6 addresses, made-up API keys) cannot push a known
///   client out and reset its quota — and the flood itself shares one quota. The price: while the
///   table is full, new clients share that bucket too; [`StoreStats::overflowed`] counts them
///   and the first overflow is logged.
/// - **Swept incrementally**: an entry is *stale* once its bucket is full again (its arrival time
///   is not in the future); forgetting it changes no decision. Every 64th table operation (on
///   each thread) sweeps the next 128 buckets of one shard, removing entries full for at least
///   a second (so a busy client with a generous quota is not removed and re-inserted between
///   its requests), the shards taking turns
///   (`try_write`: skipped if that shard is busy), so sweeping keeps pace with traffic (two
///   buckets per request); and a full shard is swept (256 buckets, at most once per 10 ms of
///   clock time) before a new key overflows. No background task, no pass over the whole table in
///   a request. After a complete pass, a shard whose table is under an eighth full gives memory
///   back. Between passes the table also holds keys gone stale since the sweep last went by
///   (a pass over a full 100,000-key table takes about 65,000 requests).
/// - **Hashed** with folded multiplies seeded at random per store (foldhash's construction): a
///   few instructions per key, and no client can predict which shard or bucket its key takes.
/// - **Size**: an entry is 56 bytes (key and state) plus hash-table overhead. Measured: 100,000
///   keys (the default `max_keys`) take 7.1 MiB; after heavy churn a shard's table may double
///   rather than rehash in place (removals leave tombstones), so the bound is about twice that.
///
/// Cheap to clone; clones share the table (the layer and every service built from it use one).
#[derive(Clone)]
pub struct InMemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per policy, in policy order.
    policies: Box<[PolicyState]>,
    table: Arc<Table>,
}

/// A policy's limiter, and what its outcomes are computed from.
struct PolicyState {
    limiter: Limiter,
    /// [`Limit::replenish_interval`](crate::Limit::replenish_interval) (a division: computed once).
    interval: Duration,
    /// [`Limit::burst_size`](crate::Limit::burst_size).
    burst: u32,
}

impl PolicyState {
    /// Spends one request from `key`'s quota. `Ok(None)` when allowed and `state` is false (the
    /// caller needs no outcome: the remaining burst is not computed).
    #[inline(always)]
    fn check(&self, key: &RateKey, state: bool) -> Result<Option<Outcome>, Outcome> {
        match self.limiter.check_key(key) {
            Ok(snapshot) => Ok(state.then(|| {
                let remaining = snapshot.remaining_burst_capacity();
                Outcome::allowed(key.policy(), remaining, self.time_to_full(remaining))
            })),
            Err(not_until) => Err(Outcome::denied(
                key.policy(),
                not_until.wait_time_from(self.limiter.clock().now()),
            )),
        }
    }

    /// How long until a bucket with `remaining` requests left is full again: at most one
    /// replenish interval more than the exact value (GCRA state is not exposed by governor).
    #[inline]
    fn time_to_full(&self, remaining: u32) -> Duration {
        self.interval
            .saturating_mul(self.burst.saturating_sub(remaining))
    }
}

/// The key table's size and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Keys held now.
    pub entries: usize,
    /// The most keys held.
    pub max_keys: usize,
    /// Heap bytes of the key tables (entries and their hash tables; principal names and tool
    /// names are shared with the rest of the program and not counted).
    pub bytes: usize,
    /// Requests of new keys that found the table full and counted against an overflow bucket.
    pub overflowed: u64,
    /// Stale keys removed by sweeps.
    pub evicted: u64,
}

impl InMemoryStore {
    /// A store for these policies holding at most `max_keys` keys (at least 1).
    pub fn new(policies: &Policies, max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = (max_keys / KEYS_PER_SHARD)
            .next_power_of_two()
            .clamp(1, MAX_SHARDS);
        let table = Arc::new(Table {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            mask: shards - 1,
            shard_cap: (max_keys / shards).max(1),
            max_keys,
            hasher: KeyHasherBuilder::random(),
            overflow: policies.iter().map(|_| InMemoryState::default()).collect(),
            start: OnceLock::new(),
            sweep_next: AtomicUsize::new(0),
            overflowed: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        });
        let states = policies
            .iter()
            .map(|p| PolicyState {
                limiter: RateLimiter::new(p.quota(), TableRef(Arc::clone(&table)), TokioClock),
                interval: p.limit().replenish_interval(),
                burst: p.limit().burst_size(),
            })
            .collect();
        // Taken after every limiter's own start, so "stale" is judged conservatively: an entry
        // is only dropped once its bucket is full by every limiter's reckoning.
        let _ = table.start.set(Instant::now());
        InMemoryStore {
            inner: Arc::new(Inner {
                policies: states,
                table,
            }),
        }
    }

    /// The table's size and counters. Takes each shard's read lock in turn.
    pub fn stats(&self) -> StoreStats {
        let t = &self.inner.table;
        let mut entries = 0;
        let mut bytes = std::mem::size_of_val::<[Shard]>(&t.shards)
            + std::mem::size_of_val::<[InMemoryState]>(&t.overflow);
        for s in t.shards.iter() {
            let map = s.read();
            entries += map.table.len();
            bytes += map.table.allocation_size();
        }
        StoreStats {
            entries,
            max_keys: t.max_keys,
            bytes,
            overflowed: t.overflowed.load(Ordering::Relaxed),
            evicted: t.evicted.load(Ordering::Relaxed),
        }
    }

    /// Removes every stale key now, shard by shard (each under its write lock for one pass).
    /// Not needed in normal operation (sweeps are incremental); for tests and maintenance.
    pub fn sweep_all(&self) -> usize {
        let t = &self.inner.table;
        let Some(now) = t.now() else { return 0 };
        let mut removed = 0;
        for s in t.shards.iter() {
            let mut map = s.write();
            let buckets = map.table.num_buckets();
            removed += map.sweep(buckets, now).0;
        }
        t.evicted.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Spends one request from each key's quota, stopping at the first denial. A denied request
    /// spends nothing: what it took from the keys before the denied one is given back, so a
    /// client waiting out the `Retry-After` of one quota does not find another spent by the
    /// refusals meanwhile.
    #[inline]
    pub fn check_now(&self, checks: &Checks) -> Decision {
        let mut decision = Decision::new();
        for (i, key) in checks.iter().enumerate() {
            let Some(policy) = self.inner.policies.get(key.policy().index()) else {
                // Keys come from the layer that built this store; an unknown policy has no quota.
                continue;
            };
            match policy.check(key, true) {
                Ok(allowed) => {
                    if let Some(o) = allowed {
                        decision.push(o);
                    }
                }
                Err(denied) => {
                    self.give_back(checks.iter().take(i), &mut decision);
                    decision.push(denied);
                    break;
                }
            }
        }
        decision
    }

    /// Gives back the request a refused request spent from each of `keys` (allowed before the
    /// key that refused it), and shows it in their outcomes.
    #[cold]
    fn give_back<'a>(&self, keys: impl Iterator<Item = &'a RateKey>, decision: &mut Decision) {
        for key in keys {
            let Some(policy) = self.inner.policies.get(key.policy().index()) else {
                continue;
            };
            if self.inner.table.give_back(key, policy.interval)
                && let Some(o) = decision.outcomes[..decision.len]
                    .iter_mut()
                    .flatten()
                    .find(|o| o.policy == key.policy())
            {
                o.remaining = o.remaining.saturating_add(1).min(policy.burst);
                o.reset = o.reset.saturating_sub(policy.interval);
            }
        }
    }

    /// [`InMemoryStore::check_now`] for one key, the layer's common case: `Ok` when allowed,
    /// with the key's outcome if `state` is true; `Err` with the outcome when denied.
    #[inline]
    pub(crate) fn check_one(&self, key: &RateKey, state: bool) -> Result<Option<Outcome>, Outcome> {
        match self.inner.policies.get(key.policy().index()) {
            Some(policy) => policy.check(key, state),
            None => Ok(None),
        }
    }
}

impl KeyStore for InMemoryStore {
    type Future = std::future::Ready<Result<Decision, StoreError>>;

    #[inline]
    fn check(&self, checks: &Checks) -> Self::Future {
        std::future::ready(Ok(self.check_now(checks)))
    }
}

impl fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.inner.table;
        f.debug_struct("InMemoryStore")
            .field("policies", &self.inner.policies.len())
            .field("shards", &t.shards.len())
            .field("max_keys", &t.max_keys)
            .finish_non_exhaustive()
    }
}

// === the table's hash ===

/// The table's hash: keyed folded multiplies (the construction of foldhash, hashbrown's default
/// hasher, with a final multiply) over the hand-written [`RateKey`] hash, seeded at random per
/// store. Two or three multiplications for an IP or digest key, where SipHash takes over a
/// hundred instructions; the random seeds keep the bucket of a key unpredictable to clients.
#[derive(Clone, Copy)]
struct KeyHasherBuilder {
    seeds: [u64; 4],
}

impl KeyHasherBuilder {
    fn random() -> Self {
        let std = RandomState::new();
        KeyHasherBuilder {
            seeds: [1u8, 2, 3, 4].map(|i| std.hash_one(i)),
        }
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;

    #[inline]
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            acc: self.seeds[0],
            seeds: [self.seeds[1], self.seeds[2], self.seeds[3]],
        }
    }
}

struct KeyHasher {
    acc: u64,
    /// For the words, the byte strings and the finish.
    seeds: [u64; 3],
}

/// The high and low halves of the full product, folded.
#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl KeyHasher {
    #[inline(always)]
    fn mix(&mut self, lo: u64, hi: u64) {
        self.acc = folded_multiply(lo ^ self.acc, hi ^ self.seeds[0]);
    }
}

impl Hasher for KeyHasher {
    // Out of line: only principal and tool names are hashed as bytes.
    #[inline(never)]
    fn write(&mut self, bytes: &[u8]) {
        // A length-dependent rotation first: zero padding of the tail cannot make two lengths
        // collide.
        self.acc = self.acc.rotate_right(bytes.len() as u32) ^ self.seeds[1];
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            let (lo, hi) = c.split_at(8);
            self.mix(le_u64(lo), le_u64(hi));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 16];
            tail[..rest.len()].copy_from_slice(rest);
            let (lo, hi) = tail.split_at(8);
            self.mix(le_u64(lo), le_u64(hi));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.mix(i, 0);
    }

    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.mix(i as u64, (i >> 64) as u64);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // One more multiply: a key whose varying bits are all in one half of a word (an IPv4
        // address next to constant bits) would otherwise leave the low bits, which pick the
        // bucket, following the address in a straight line, and the table would fill unevenly.
        folded_multiply(self.acc, self.seeds[2])
    }
}

/// Eight little-endian bytes (`bytes` is eight long).
#[inline(always)]
fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

// === the table ===

/// The table as governor's state store (one per limiter, all sharing the table).
struct TableRef(Arc<Table>);

impl fmt::Debug for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TableRef")
    }
}

impl StateStore for TableRef {
    type Key = RateKey;

    fn measure_and_replace<T, F, E>(&self, key: &RateKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

struct Table {
    shards: Box<[Shard]>,
    mask: usize,
    shard_cap: usize,
    max_keys: usize,
    hasher: KeyHasherBuilder,
    /// One shared bucket per policy for new keys that find their shard full.
    overflow: Box<[InMemoryState]>,
    /// The reference point of "now" for staleness (set once, after the limiters).
    start: OnceLock<Instant>,
    /// The shard the next incremental sweep visits.
    sweep_next: AtomicUsize,
    overflowed: AtomicU64,
    evicted: AtomicU64,
    warned_full: AtomicBool,
}

// Padded to its own cache lines: shards are locked from every core.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    map: RwLock<ShardMap>,
}

thread_local! {
    /// Table operations on this thread, for pacing the sweeps. Per thread rather than per
    /// table: no shared counter for every request to bump.
    static OPS: Cell<u32> = const { Cell::new(0) };
}

/// Whether this operation is the one in [`SWEEP_EVERY`] that sweeps.
#[inline]
fn sweep_due() -> bool {
    OPS.with(|ops| {
        let n = ops.get().wrapping_add(1);
        ops.set(n);
        n % SWEEP_EVERY == 0
    })
}

#[derive(Default)]
struct ShardMap {
    table: HashTable<Entry>,
    /// The next bucket the incremental sweep looks at.
    cursor: usize,
    /// Clock time (nanos since `start`) of the last sweep of this shard while full.
    last_full_sweep: Option<u64>,
}

struct Entry {
    key: RateKey,
    state: InMemoryState,
}

impl Shard {
    // A poisoned lock only means a panic elsewhere while holding it; the table is still
    // consistent (no operation leaves an entry half-written), so keep going.
    #[inline]
    fn read(&self) -> std::sync::RwLockReadGuard<'_, ShardMap> {
        self.map.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ShardMap> {
        self.map.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// Nanoseconds since `start`.
    fn now(&self) -> Option<u64> {
        let start = self.start.get()?;
        let d = Instant::now().saturating_duration_since(*start);
        Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    #[inline]
    fn hash(&self, key: &RateKey) -> u64 {
        if let (ClientKey::Ip(IpAddr::V4(ip)), None) = (key.client(), key.scope()) {
            // The common peer-IP key: what its `Hash` writes, without the code for the others.
            let mut h = self.hasher.build_hasher();
            h.write_u64(u64::from(key.policy().raw()) | 2 << 24 | u64::from(ip.to_bits()) << 32);
            return h.finish();
        }
        self.hash_any(key)
    }

    #[inline(never)]
    fn hash_any(&self, key: &RateKey) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &RateKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let (hash, shard) = self.locate(key);
        let map = shard.read();
        let result = match map.find(hash, key) {
            Some(state) => {
                let result = state.measure_and_replace(&NotKeyed::NonKey, &f);
                drop(map);
                result
            }
            None => {
                // A full shard whose sweep is not due: the new key goes to the overflow bucket
                // without the write lock, so a flood of new keys does not queue the shard's
                // known clients behind it.
                let overflow =
                    map.table.len() >= self.shard_cap && self.full_sweep_due(&map).is_none();
                drop(map);
                if overflow {
                    self.measure_overflow(key, &f)
                } else {
                    self.insert_and_measure(shard, hash, key, &f)
                }
            }
        };
        if sweep_due() {
            self.sweep_next_shard();
        }
        result
    }

    /// `key`'s hash and shard.
    #[inline]
    fn locate(&self, key: &RateKey) -> (u64, &Shard) {
        let hash = self.hash(key);
        // hashbrown indexes buckets with the low bits and tags with the top 7; shard on others.
        (hash, &self.shards[(hash >> 32) as usize & self.mask])
    }

    /// Takes one request of `interval` off `key`'s bucket (undoing a check that spent it), if
    /// the table holds the key. Returns whether it did.
    fn give_back(&self, key: &RateKey, interval: Duration) -> bool {
        let (hash, shard) = self.locate(key);
        let map = shard.read();
        let Some(state) = map.find(hash, key) else {
            // Swept meanwhile (nothing left to give back) or counted in the overflow bucket,
            // which is shared and left as it is.
            return false;
        };
        let interval = Nanos::from(interval);
        state
            .measure_and_replace(&NotKeyed::NonKey, |tat| {
                Ok::<_, std::convert::Infallible>((
                    (),
                    tat.unwrap_or_default().saturating_sub(interval),
                ))
            })
            .is_ok()
    }

    /// The incremental sweep's turn: shards are swept in turn, not the one just used, so a
    /// shard that no request hashes to any more is still swept.
    #[cold]
    #[inline(never)]
    fn sweep_next_shard(&self) {
        let next = self.sweep_next.fetch_add(1, Ordering::Relaxed) & self.mask;
        self.sweep_some(&self.shards[next]);
    }

    /// A key not in its shard yet (or not any more): insert it, or count it against the
    /// overflow bucket when the shard is full.
    #[cold]
    #[inline(never)]
    fn insert_and_measure<T, F, E>(
        &self,
        shard: &Shard,
        hash: u64,
        key: &RateKey,
        f: &F,
    ) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = shard.write();
        if map.table.len() >= self.shard_cap {
            // Another request may have inserted it meanwhile.
            if let Some(e) = map.table.find(hash, |e| e.key == *key) {
                return e.state.measure_and_replace(&NotKeyed::NonKey, f);
            }
            self.sweep_full(&mut map);
            if map.table.len() >= self.shard_cap {
                drop(map);
                return self.measure_overflow(key, f);
            }
        }
        // One probe finds the key (inserted meanwhile by another request) or its free slot.
        let entry = match map
            .table
            .entry(hash, |e| e.key == *key, |e| self.hash(&e.key))
        {
            Slot::Occupied(e) => e,
            Slot::Vacant(slot) => slot.insert(Entry {
                key: key.clone(),
                state: InMemoryState::default(),
            }),
        };
        entry.get().state.measure_and_replace(&NotKeyed::NonKey, f)
    }

    fn measure_overflow<T, F, E>(&self, key: &RateKey, f: &F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.overflowed.fetch_add(1, Ordering::Relaxed);
        if !self.warned_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_keys = self.max_keys,
                "rate-limit key table full: new clients share an overflow bucket until stale keys \
                 are swept (raise max_keys if this is not an attack)"
            );
        }
        match self.overflow.get(key.policy().index()) {
            Some(state) => state.measure_and_replace(&NotKeyed::NonKey, f),
            None => InMemoryState::default().measure_and_replace(&NotKeyed::NonKey, f),
        }
    }

    /// Whether a full shard is due a sweep (the clock has moved enough since the last one):
    /// the time to sweep it, if so.
    fn full_sweep_due(&self, map: &ShardMap) -> Option<u64> {
        let now = self.now()?;
        let gap = u64::try_from(FULL_SWEEP_GAP.as_nanos()).unwrap_or(u64::MAX);
        let recent = map
            .last_full_sweep
            .is_some_and(|last| now.saturating_sub(last) < gap);
        (!recent).then_some(now)
    }

    /// A full shard: sweep a batch, unless the clock has not moved enough since the last time.
    fn sweep_full(&self, map: &mut ShardMap) {
        let Some(now) = self.full_sweep_due(map) else {
            return;
        };
        map.last_full_sweep = Some(now);
        let (removed, _) = map.sweep(FULL_SWEEP_BATCH, now);
        self.evicted.fetch_add(removed as u64, Ordering::Relaxed);
    }

    /// The incremental sweep: a batch of buckets, if the shard is free right now.
    fn sweep_some(&self, shard: &Shard) {
        let mut map = match shard.map.try_write() {
            Ok(m) => m,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let pass_done = if map.table.is_empty() {
            true
        } else {
            let Some(now) = self.now() else { return };
            let idle = u64::try_from(SWEEP_IDLE.as_nanos()).unwrap_or(u64::MAX);
            let (removed, pass_done) = map.sweep(SWEEP_BATCH, now.saturating_sub(idle));
            self.evicted.fetch_add(removed as u64, Ordering::Relaxed);
            pass_done
        };
        // After a pass (or on an empty shard), give memory back once the table is mostly empty
        // (after a flood, say).
        let (len, buckets) = (map.table.len(), map.table.num_buckets());
        if pass_done && buckets > MIN_SHRINK_BUCKETS && len * 8 < buckets {
            let hasher = &self.hasher;
            map.table.shrink_to(len * 2, |e| hasher.hash_one(&e.key));
            map.cursor = 0;
        }
    }
}

impl ShardMap {
    /// The state of `key`, if the shard has it.
    #[inline]
    fn find(&self, hash: u64, key: &RateKey) -> Option<&InMemoryState> {
        let entry = match (key.client(), key.scope()) {
            // The common peer-IP key, compared as two integers (a probe compares the keys of
            // every entry whose hash tag matches).
            (ClientKey::Ip(IpAddr::V4(ip)), None) => {
                let (policy, ip) = (key.policy(), *ip);
                self.table.find(hash, |e| {
                    e.key.policy() == policy
                        && e.key.scope().is_none()
                        && matches!(e.key.client(), ClientKey::Ip(IpAddr::V4(x)) if *x == ip)
                })
            }
            _ => self.table.find(hash, |e| e.key == *key),
        };
        entry.map(|e| &e.state)
    }

    /// Looks at up to `budget` buckets from the cursor, removing stale entries. Returns how
    /// many were removed, and whether the cursor went past the last bucket (a pass ended).
    fn sweep(&mut self, budget: usize, now: u64) -> (usize, bool) {
        let buckets = self.table.num_buckets();
        if buckets == 0 {
            return (0, false);
        }
        let mut removed = 0;
        let mut pass_done = false;
        // The cursor may be past the end after a shrink.
        let mut next = if self.cursor < buckets {
            self.cursor
        } else {
            0
        };
        for _ in 0..budget.min(buckets) {
            let i = next;
            next += 1;
            if next == buckets {
                next = 0;
                pass_done = true;
            }
            if let Ok(entry) = self.table.get_bucket_entry(i)
                && is_stale(&entry.get().state, now)
            {
                entry.remove();
                removed += 1;
            }
        }
        self.cursor = next;
        (removed, pass_done)
    }
}

/// Whether a bucket is full again: its theoretical arrival time is not after `now`. Forgetting
/// such an entry changes no decision (a new entry starts full).
fn is_stale(state: &InMemoryState, now: u64) -> bool {
    // Reads the state without changing it: the closure refuses, handing the value out.
    let tat = state
        .measure_and_replace(&NotKeyed::NonKey, |tat| {
            Err::<((), Nanos), u64>(tat.map_or(0, Nanos::as_u64))
        })
        .err()
        .unwrap_or(u64::MAX);
    tat <= now
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::policy::{Limit, PolicyId, Target};

    fn store(limit: Limit, max_keys: usize) -> InMemoryStore {
        let policies = Policies::new(limit, &[]).unwrap();
        InMemoryStore::new(&policies, max_keys)
    }

    fn ip_key(n: u32) -> Checks {
        let mut c = Checks::new();
        c.push(RateKey::new(
            PolicyId::BASE,
            None,
            ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(n))),
        ));
        c
    }

    #[test]
    fn the_peer_ip_hash_is_the_key_hash() {
        let p = Policies::new(
            Limit::per_minute(60),
            &[(Target::Tool("x".into()), Limit::per_minute(1))],
        )
        .unwrap();
        let s = InMemoryStore::new(&p, 100);
        let t = &s.inner.table;
        let tool = p.iter().nth(1).unwrap().id();
        for n in [0, 1, 0x0a00_0001, u32::MAX] {
            for policy in [PolicyId::BASE, tool] {
                let key = RateKey::new(policy, None, ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(n))));
                assert_eq!(t.hash(&key), t.hasher.hash_one(&key));
            }
        }
        // Every other kind of key goes through `Hash`.
        let key = RateKey::new(
            PolicyId::BASE,
            Some("add".into()),
            ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        );
        assert_eq!(t.hash(&key), t.hasher.hash_one(&key));
    }

    #[test]
    fn keys_spread_over_shards_and_buckets() {
        // Sequential addresses, the worst case for a weak hash: every shard gets its share.
        let s = store(Limit::per_minute(60), 100_000);
        let t = &s.inner.table;
        let shards = t.shards.len();
        let mut per_shard = vec![0usize; shards];
        let mut low_bits = std::collections::HashSet::new();
        let n = 64 * 1024;
        for i in 0..n {
            let key = RateKey::new(
                PolicyId::BASE,
                None,
                ClientKey::Ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
            );
            let h = t.hash(&key);
            per_shard[(h >> 32) as usize & t.mask] += 1;
            low_bits.insert(h & 0xffff);
        }
        let mean = n as usize / shards;
        for (i, &c) in per_shard.iter().enumerate() {
            assert!(
                c > mean * 3 / 4 && c < mean * 5 / 4,
                "shard {i}: {c} of {mean}"
            );
        }
        // Bucket indexes (the low bits) and tags (the top 7) vary too.
        assert!(low_bits.len() > 40_000, "{}", low_bits.len());
        let principals: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| {
                let p = tower_armor_mcp::Principal::new(format!("client-{i}"));
                t.hash(&RateKey::new(PolicyId::BASE, None, ClientKey::Principal(p))) >> 57
            })
            .collect();
        assert_eq!(principals.len(), 128);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_entry_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 56);
    }

    #[tokio::test(start_paused = true)]
    async fn gcra_quota_and_burst_on_paused_time() {
        let s = store(Limit::per_minute(60).burst(3), 100);
        let k = ip_key(1);
        for left in [2, 1, 0] {
            let d = s.check_now(&k);
            assert!(d.denied().is_none());
            assert_eq!(d.outcomes().iter().next().unwrap().remaining(), left);
        }
        let d = s.check_now(&k);
        let o = d.denied().unwrap();
        assert_eq!(o.retry_after(), Some(Duration::from_secs(1)));
        // Another key is unaffected.
        assert!(s.check_now(&ip_key(2)).denied().is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s.check_now(&k).denied().is_none());
        assert!(s.check_now(&k).denied().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn full_table_sends_new_keys_to_the_overflow_bucket() {
        let s = store(Limit::per_minute(60).burst(2), 4);
        for n in 0..4 {
            assert!(s.check_now(&ip_key(n)).denied().is_none());
        }
        assert_eq!(s.stats().entries, 4);
        // Table full, nothing stale (no time passed): new keys share one bucket of burst 2.
        assert!(s.check_now(&ip_key(100)).denied().is_none());
        assert!(s.check_now(&ip_key(101)).denied().is_none());
        assert!(s.check_now(&ip_key(102)).denied().is_some());
        assert_eq!(s.stats().entries, 4);
        assert_eq!(s.stats().overflowed, 3);
        // Known keys kept their own state.
        assert!(s.check_now(&ip_key(0)).denied().is_none());
        assert!(s.check_now(&ip_key(0)).denied().is_some());
        // Once the old keys are full again they are swept and new keys get their own entries.
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(s.check_now(&ip_key(200)).denied().is_none());
        let st = s.stats();
        assert!(st.evicted >= 3, "{st:?}");
        assert!(st.entries <= 4, "{st:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_keys_are_swept_incrementally_and_memory_returns() {
        let s = store(Limit::per_second(10), 100_000);
        for n in 0..20_000 {
            assert!(s.check_now(&ip_key(n)).denied().is_none());
        }
        let full = s.stats();
        assert_eq!(full.entries, 20_000);
        tokio::time::advance(Duration::from_secs(2)).await;
        // Ordinary traffic on a few keys sweeps the rest, a batch at a time.
        for i in 0..400_000u32 {
            let _ = s.check_now(&ip_key(1_000_000 + i % 64));
        }
        let after = s.stats();
        assert!(after.entries <= 64 + 1, "{after:?}");
        assert!(after.evicted >= 19_000, "{after:?}");
        assert!(after.bytes < full.bytes / 4, "{full:?} -> {after:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn incremental_sweeps_keep_a_key_used_within_the_last_second() {
        // A generous quota: the bucket is full again 1 ms after each request.
        let s = store(Limit::per_second(1000), 100);
        let k = ip_key(7);
        let other = ip_key(8);
        s.check_now(&k);
        tokio::time::advance(Duration::from_millis(500)).await;
        // Enough operations for several passes over the shard's buckets.
        for _ in 0..10_000 {
            s.check_now(&other);
        }
        assert_eq!(s.stats().evicted, 0, "{:?}", s.stats());
        assert_eq!(s.stats().entries, 2);
        tokio::time::advance(Duration::from_millis(600)).await;
        for _ in 0..10_000 {
            s.check_now(&other);
        }
        let st = s.stats();
        assert_eq!((st.entries, st.evicted), (1, 1), "{st:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn sweeping_never_forgets_a_client_that_is_not_full() {
        let s = store(Limit::per_minute(60).burst(2), 100);
        let k = ip_key(7);
        s.check_now(&k);
        s.check_now(&k);
        assert!(s.check_now(&k).denied().is_some());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(s.sweep_all(), 0);
        assert!(s.check_now(&k).denied().is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(s.sweep_all(), 1);
        assert_eq!(s.stats().entries, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn policies_share_the_table_but_not_buckets() {
        let p = Policies::new(
            Limit::per_minute(60).burst(5),
            &[(Target::Tool("x".into()), Limit::per_minute(60).burst(1))],
        )
        .unwrap();
        let s = InMemoryStore::new(&p, 100);
        let client = ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut c = Checks::new();
        c.push(RateKey::new(PolicyId::BASE, None, client.clone()));
        c.push(RateKey::new(
            p.iter().nth(1).unwrap().id(),
            None,
            client.clone(),
        ));
        let d = s.check_now(&c);
        assert_eq!(d.outcomes().len(), 2);
        assert!(d.denied().is_none());
        assert_eq!(d.outcomes().iter().next().unwrap().remaining(), 4);
        // Refused by the tool's quota: what the base quota spent is given back.
        for _ in 0..10 {
            let d = s.check_now(&c);
            assert_eq!(d.outcomes().iter().next().unwrap().remaining(), 4);
            assert!(d.denied().unwrap().policy() != PolicyId::BASE);
        }
        let mut base = Checks::new();
        base.push(RateKey::new(PolicyId::BASE, None, client));
        assert_eq!(
            s.check_now(&base)
                .outcomes()
                .iter()
                .next()
                .unwrap()
                .remaining(),
            3
        );
        assert_eq!(s.stats().entries, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_refused_by_a_later_quota_spends_none_of_the_earlier() {
        // The tool's quota is checked first; the base quota refuses.
        let p = Policies::new(
            Limit::per_minute(60).burst(2),
            &[(Target::Tool("add".into()), Limit::per_minute(6))],
        )
        .unwrap();
        let s = InMemoryStore::new(&p, 100);
        let client = ClientKey::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let tool = RateKey::new(p.iter().nth(1).unwrap().id(), None, client.clone());
        let base = RateKey::new(PolicyId::BASE, None, client);
        let mut c = Checks::new();
        c.push(tool.clone());
        c.push(base);
        assert!(s.check_now(&c).denied().is_none());
        assert!(s.check_now(&c).denied().is_none());
        for _ in 0..20 {
            assert_eq!(s.check_now(&c).denied().unwrap().policy(), PolicyId::BASE);
        }
        // Two tool calls served: four left of six, not none.
        let mut t = Checks::new();
        t.push(tool);
        assert_eq!(
            s.check_now(&t)
                .outcomes()
                .iter()
                .next()
                .unwrap()
                .remaining(),
            3
        );
        // The base bucket refills one request per second: the next call passes both.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(s.check_now(&c).denied().is_none());
    }
}
