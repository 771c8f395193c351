//! Sliding windows of call outcomes: count-based (the last N calls) and time-based (bucketed).
//!
//! Both are lock-free: recording a call is a handful of atomic operations, and the count-based
//! window gives a consistent snapshot of its counts from the very operation that recorded the
//! call. Pure logic, tested without a runtime.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// One recorded outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

/// The counts of a window at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

/// A window of either kind.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// Records `sample` at `now` (nanoseconds since the breaker's base instant; only the
    /// time-based window reads it). Returns the counts after recording, or `None` when the
    /// counts did not change (so no threshold can have been crossed).
    #[inline]
    pub(crate) fn record(&self, sample: Sample, now: u64) -> Option<Snapshot> {
        match self {
            Window::Count(w) => w.record(sample),
            Window::Time(w) => Some(w.record(sample, now)),
        }
    }

    /// The counts at `now`.
    pub(crate) fn snapshot(&self, now: u64) -> Snapshot {
        match self {
            Window::Count(w) => w.snapshot(),
            Window::Time(w) => w.snapshot(now),
        }
    }

    /// Empties the window.
    pub(crate) fn reset(&self) {
        match self {
            Window::Count(w) => w.reset(),
            Window::Time(w) => w.reset(),
        }
    }

    /// Whether recording needs the current time.
    pub(crate) fn needs_time(&self) -> bool {
        matches!(self, Window::Time(_))
    }
}

// === packed counts ===
//
// Three signed 20-bit fields (calls, failures, slow) in the low 60 bits of a `u64`. Packing is
// linear, so adding `pack(new) - pack(old)` (modulo 2^60) updates all three at once and the
// value written is a consistent snapshot. A field may be transiently negative (a slot
// overwritten by a second writer before the first applied its delta); decoding sign-extends
// field by field, so the packed value stays exact as long as every true value is within
// ±2^19. The count-based window keeps its epoch in the top 4 bits.

const FIELD: u32 = 20;
const MASK: u64 = (1 << FIELD) - 1;
/// The bits of the three fields.
const FIELDS: u64 = (1 << (3 * FIELD)) - 1;
/// Where the count-based window's epoch (4 bits) starts in its packed word.
const EPOCH_SHIFT: u32 = 3 * FIELD;
/// Epochs are counted modulo 16 (in the packed word and in each slot's tag).
const EPOCH_MASK: u8 = 0xf;

fn pack(calls: i64, failures: i64, slow: i64) -> u64 {
    (calls as u64)
        .wrapping_add((failures as u64) << FIELD)
        .wrapping_add((slow as u64) << (2 * FIELD))
}

fn sign_extend(v: u64) -> i64 {
    let v = (v & MASK) as i64;
    if v >= 1 << (FIELD - 1) {
        v - (1 << FIELD)
    } else {
        v
    }
}

fn unpack(v: u64) -> Snapshot {
    let calls = sign_extend(v);
    let v = v.wrapping_sub(calls as u64) >> FIELD;
    let failures = sign_extend(v);
    let v = v.wrapping_sub(failures as u64) >> FIELD;
    let slow = sign_extend(v);
    let clamp = |x: i64| x.clamp(0, i64::from(u32::MAX)) as u32;
    Snapshot {
        calls: clamp(calls),
        failures: clamp(failures),
        slow: clamp(slow),
    }
}

// Slot encoding of the count-based window: the sample in the low 3 bits, the epoch it was
// written in above them (a slot of an older epoch reads as empty).
const PRESENT: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;
const TAG_SHIFT: u32 = 3;

fn tag(slot: u8) -> u8 {
    slot >> TAG_SHIFT
}

/// What a slot holds in `epoch`: its contribution, or nothing if written in another epoch.
fn live(slot: u8, epoch: u8) -> (i64, i64, i64) {
    if tag(slot) == epoch {
        contribution(slot)
    } else {
        (0, 0, 0)
    }
}

#[inline]
fn encode(s: Sample) -> u8 {
    PRESENT | if s.failure { FAILED } else { 0 } | if s.slow { SLOW } else { 0 }
}

fn contribution(slot: u8) -> (i64, i64, i64) {
    (
        i64::from(slot & PRESENT != 0),
        i64::from(slot & FAILED != 0),
        i64::from(slot & SLOW != 0),
    )
}

/// The largest count-based window (the packed fields hold ±2^19).
pub(crate) const MAX_COUNT_WINDOW: u32 = 100_000;

/// The last `size` calls, in a ring of one byte per call.
///
/// A reset (on a trip, or an operator's reset) starts a new epoch instead of racing the
/// recorders: a recorder tags its slot with the epoch it read, and its change reaches the
/// counts only if the epoch is still current when it applies it (a compare-and-swap on the
/// packed word, which holds the epoch). A recorder that lost that race leaves a slot of an old
/// epoch, which reads as empty, and takes back what it overwrote if the new epoch had counted
/// it. So the counts always equal what the slots of the current epoch hold, however resets and
/// recordings interleave.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    head: AtomicUsize,
    /// The current epoch, as the packed word has it (written after it): read by every
    /// recording, so kept apart from the word the failures update.
    epoch: AtomicU8,
    /// The packed counts, with the epoch in the top bits.
    counts: AtomicU64,
    /// The number of slots, and `⌈2^64 / len⌉` (wrapping: 0 for one slot) for [`fastmod`].
    len: u32,
    magic: u64,
}

/// `a % d` without a division (Lemire, Kaser and Kurz, "Faster remainder by direct
/// computation", 2019): exact for every 32-bit `a` and `d`, given `magic = ⌈2^64 / d⌉`
/// (wrapping).
#[inline]
fn fastmod(a: u32, d: u32, magic: u64) -> u32 {
    let low = magic.wrapping_mul(u64::from(a));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        debug_assert!((1..=MAX_COUNT_WINDOW).contains(&size));
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            head: AtomicUsize::new(0),
            epoch: AtomicU8::new(0),
            counts: AtomicU64::new(0),
            len: size,
            magic: (u64::MAX / u64::from(size)).wrapping_add(1),
        }
    }

    #[inline(always)]
    pub(crate) fn record(&self, sample: Sample) -> Option<Snapshot> {
        let epoch = self.epoch.load(Ordering::Acquire);
        let new = encode(sample) | epoch << TAG_SHIFT;
        // The counter modulo the window, in 32 bits (the window holds at most
        // `MAX_COUNT_WINDOW` slots): when the counter wraps, one slot is skipped once, which
        // leaves the counts exact.
        let i = fastmod(
            self.head.fetch_add(1, Ordering::Relaxed) as u32,
            self.len,
            self.magic,
        ) as usize;
        let slot = &self.slots[i];
        // The common case once the window is full: a success replacing a success. Nothing
        // changes, so skip the write (and the threshold check).
        if slot.load(Ordering::Relaxed) == new {
            return None;
        }
        self.replace(slot, new, epoch)
    }

    #[inline(never)]
    fn replace(&self, slot: &AtomicU8, new: u8, epoch: u8) -> Option<Snapshot> {
        let old = slot.swap(new, Ordering::AcqRel);
        if old == new {
            return None;
        }
        let (c1, f1, s1) = contribution(new);
        let (c0, f0, s0) = live(old, epoch);
        let delta = pack(c1, f1, s1).wrapping_sub(pack(c0, f0, s0));
        let mut cur = self.counts.load(Ordering::Acquire);
        loop {
            let current = (cur >> EPOCH_SHIFT) as u8;
            let d = if current == epoch {
                delta
            } else {
                // Reset since this call read the epoch: the slot it wrote reads as empty, so
                // its change is dropped; what it overwrote leaves the counts if the current
                // epoch had counted it (a recorder of that epoch wrote it).
                let (c0, f0, s0) = live(old, current);
                if (c0, f0, s0) == (0, 0, 0) {
                    return None;
                }
                0u64.wrapping_sub(pack(c0, f0, s0))
            };
            let next = (cur & FIELDS).wrapping_add(d) & FIELDS | cur & !FIELDS;
            match self
                .counts
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (current == epoch).then(|| unpack(next)),
                Err(now) => cur = now,
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        unpack(self.counts.load(Ordering::Acquire))
    }

    /// Empties the window: a new epoch (callers serialise resets). Slots of older epochs are
    /// cleared for tidiness (they read as empty anyway), never one a recorder of the new epoch
    /// has already written.
    fn reset(&self) {
        let next = (self.epoch.load(Ordering::Acquire) + 1) & EPOCH_MASK;
        self.counts
            .store(u64::from(next) << EPOCH_SHIFT, Ordering::Release);
        self.epoch.store(next, Ordering::Release);
        self.head.store(0, Ordering::Relaxed);
        for s in self.slots.iter() {
            let _ = s.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v != 0 && tag(v) != next).then_some(0)
            });
        }
    }
}

/// The largest number of buckets of a time-based window.
pub(crate) const MAX_BUCKETS: u32 = 100;

/// Bit of a bucket's slot word while one thread re-initialises it for a new period.
const BUSY: u64 = 1 << 63;
/// Largest count a bucket field holds. A bucket that reaches it halves its three counts
/// ([`halved`]) and goes on counting: at very high rates its calls weigh less than another
/// bucket's (at most 2×), but its failures still count (a bucket that stopped sampling would
/// hide a dependency that starts failing under load until the next bucket period).
const BUCKET_CAP: u64 = MASK;

/// A time bucket's counts (unsigned fields), each halved, rounded down (the failure and slow
/// counts stay at most the call count).
fn halved(c: u64) -> u64 {
    const HALF: u64 = MASK >> 1;
    (c >> 1) & (HALF | HALF << FIELD | HALF << (2 * FIELD))
}

/// Calls of the last `buckets × width`, in buckets of `width`.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    width: u64,
    buckets: Box<[Bucket]>,
}

#[derive(Debug)]
struct Bucket {
    /// The bucket period (index since the base instant) plus one; 0 = never used.
    period: AtomicU64,
    /// Unsigned packed calls / failures / slow of that period.
    counts: AtomicU64,
}

impl TimeWindow {
    /// A window of `buckets` buckets of `width_nanos` each.
    pub(crate) fn new(width_nanos: u64, buckets: u32) -> Self {
        debug_assert!(width_nanos > 0 && buckets > 0);
        TimeWindow {
            width: width_nanos,
            buckets: (0..buckets)
                .map(|_| Bucket {
                    period: AtomicU64::new(0),
                    counts: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn record(&self, sample: Sample, now: u64) -> Snapshot {
        let period = now / self.width;
        let tag = period + 1;
        let b = &self.buckets[(period % self.buckets.len() as u64) as usize];
        let (_, f, s) = contribution(encode(sample));
        let add = pack(1, f, s);
        // Bounded: a lost race at a bucket boundary drops this one sample.
        for _ in 0..4 {
            let t = b.period.load(Ordering::Acquire);
            if t == tag {
                let mut c = b.counts.load(Ordering::Relaxed);
                loop {
                    let base = if c & MASK >= BUCKET_CAP { halved(c) } else { c };
                    match b.counts.compare_exchange_weak(
                        c,
                        base + add,
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(cur) => c = cur,
                    }
                }
                break;
            }
            if t & BUSY != 0 || t > tag {
                // Being re-initialised by another thread, or already used for a later
                // period (this call read the clock earlier): drop the sample.
                break;
            }
            if b.period
                .compare_exchange(t, tag | BUSY, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                b.counts.store(add, Ordering::Release);
                b.period.store(tag, Ordering::Release);
                break;
            }
        }
        self.snapshot(now)
    }

    fn snapshot(&self, now: u64) -> Snapshot {
        let period = now / self.width;
        let n = self.buckets.len() as u64;
        let (mut calls, mut failures, mut slow) = (0u64, 0u64, 0u64);
        for b in self.buckets.iter() {
            let t = b.period.load(Ordering::Acquire);
            if t == 0 || t & BUSY != 0 {
                continue;
            }
            let p = t - 1;
            if p <= period && p + n > period {
                let c = b.counts.load(Ordering::Acquire);
                calls += c & MASK;
                failures += (c >> FIELD) & MASK;
                slow += (c >> (2 * FIELD)) & MASK;
            }
        }
        let sat = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        Snapshot {
            calls: sat(calls),
            failures: sat(failures),
            slow: sat(slow),
        }
    }

    fn reset(&self) {
        for b in self.buckets.iter() {
            b.period.store(0, Ordering::Release);
            b.counts.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };
    const SLOW_FAIL: Sample = Sample {
        failure: true,
        slow: true,
    };
    const SLOW_OK: Sample = Sample {
        failure: false,
        slow: true,
    };

    fn snap(calls: u32, failures: u32, slow: u32) -> Snapshot {
        Snapshot {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn packing_is_linear_and_survives_transient_negatives() {
        for (c, f, s) in [(0, 0, 0), (5, 3, 1), (100_000, 99_999, 1), (-1, 2, -3)] {
            let v = pack(c, f, s);
            let back = (
                sign_extend(v),
                sign_extend(v.wrapping_sub(sign_extend(v) as u64) >> FIELD),
            );
            assert_eq!(back, (c, f), "{c} {f} {s}");
        }
        // -1 failure then +1 failure: exact again.
        let v = pack(3, 1, 0)
            .wrapping_add(pack(0, -2, 0))
            .wrapping_add(pack(0, 2, 1));
        assert_eq!(unpack(v), snap(3, 1, 1));
        // A transiently negative field clamps to zero in the snapshot.
        assert_eq!(unpack(pack(2, -1, 0)), snap(2, 0, 0));
    }

    #[test]
    fn fastmod_is_the_remainder() {
        for d in [1u32, 2, 3, 7, 64, 100, 1000, 99_991, MAX_COUNT_WINDOW] {
            let magic = (u64::MAX / u64::from(d)).wrapping_add(1);
            let mut a = 0u32;
            for _ in 0..2000 {
                assert_eq!(fastmod(a, d, magic), a % d, "{a} % {d}");
                a = a.wrapping_mul(2_654_435_761).wrapping_add(12345);
            }
            for a in [0, 1, d - 1, d, d + 1, u32::MAX - 1, u32::MAX] {
                assert_eq!(fastmod(a, d, magic), a % d, "{a} % {d}");
            }
        }
    }

    #[test]
    fn count_window_keeps_the_last_n_calls() {
        let w = CountWindow::new(3);
        assert_eq!(w.record(OK), Some(snap(1, 0, 0)));
        assert_eq!(w.record(FAIL), Some(snap(2, 1, 0)));
        assert_eq!(w.record(SLOW_FAIL), Some(snap(3, 2, 1)));
        // Replaces the first OK.
        assert_eq!(w.record(FAIL), Some(snap(3, 3, 1)));
        // Replaces FAIL with FAIL: nothing changes.
        assert_eq!(w.record(FAIL), None);
        assert_eq!(w.record(SLOW_OK), Some(snap(3, 2, 1)));
        assert_eq!(w.snapshot(), snap(3, 2, 1));
        w.reset();
        assert_eq!(w.snapshot(), Snapshot::default());
        assert_eq!(w.record(OK), Some(snap(1, 0, 0)));
    }

    #[test]
    fn count_window_concurrent_writers_keep_counts_consistent() {
        let w = std::sync::Arc::new(CountWindow::new(64));
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        let s = match (i + t) % 3 {
                            0 => OK,
                            1 => FAIL,
                            _ => SLOW_OK,
                        };
                        w.record(s);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(w.snapshot(), held(&w));
        assert_eq!(w.snapshot().calls, 64);
    }

    /// What the slots of the current epoch hold.
    fn held(w: &CountWindow) -> Snapshot {
        let epoch = w.epoch.load(Ordering::Acquire);
        let (mut c, mut f, mut s) = (0, 0, 0);
        for slot in w.slots.iter() {
            let (a, b, d) = live(slot.load(Ordering::Relaxed), epoch);
            c += a;
            f += b;
            s += d;
        }
        snap(c as u32, f as u32, s as u32)
    }

    /// Resets (trips, an operator's reset) racing two recorders: once they stop, the counts
    /// are exactly what the current epoch's slots hold. (Before epochs, a recorder between its
    /// slot write and its count update when a reset came left a call and a failure that no
    /// slot held, for good.)
    #[test]
    fn count_window_resets_racing_writers_keep_counts_exact() {
        let w = std::sync::Arc::new(CountWindow::new(8));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads: Vec<_> = (0..2u32)
            .map(|t| {
                let (w, stop) = (w.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        w.record(if i % 2 == 0 { OK } else { FAIL });
                        i = i.wrapping_add(1);
                    }
                })
            })
            .collect();
        // Until both recorders have run for a while alongside the resets (bounded: at most
        // 2,000,000 resets).
        let (mut resets, mut recorded) = (0u32, 0usize);
        while resets < 2_000_000 && recorded < 400_000 {
            // The recordings since the last reset (which sets the ring's head back to 0).
            recorded += w.head.load(Ordering::Relaxed);
            w.reset();
            resets += 1;
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let got = w.snapshot();
        assert_eq!(got, held(&w));
        assert!(got.calls <= 8 && got.failures <= got.calls, "{got:?}");
        // And it goes on counting from there.
        for _ in 0..8 {
            w.record(FAIL);
        }
        assert_eq!(w.snapshot(), snap(8, 8, 0));
    }

    #[test]
    fn time_window_forgets_old_buckets() {
        // 4 buckets of 10 ns: a window of 40 ns.
        let w = TimeWindow::new(10, 4);
        assert_eq!(w.record(FAIL, 0), snap(1, 1, 0));
        assert_eq!(w.record(OK, 5), snap(2, 1, 0));
        assert_eq!(w.record(SLOW_OK, 15), snap(3, 1, 1));
        assert_eq!(w.snapshot(39), snap(3, 1, 1));
        // Period 4: period 0 has left the window.
        assert_eq!(w.snapshot(40), snap(1, 0, 1));
        // Period 4 reuses bucket 0.
        assert_eq!(w.record(FAIL, 41), snap(2, 1, 1));
        // Long idle: everything expires, including a bucket whose slot matches modulo n.
        assert_eq!(w.snapshot(10_000), Snapshot::default());
        assert_eq!(w.record(OK, 10_001), snap(1, 0, 0));
        w.reset();
        assert_eq!(w.snapshot(10_001), Snapshot::default());
    }

    #[test]
    fn a_full_time_bucket_halves_its_counts_and_keeps_counting() {
        let w = TimeWindow::new(10, 1);
        w.record(OK, 0);
        // A bucket one call short of full: 1/4 of its calls failed, 1/8 slow.
        let full = BUCKET_CAP - 1;
        w.buckets[0].counts.store(
            pack(full as i64, (full / 4) as i64, (full / 8) as i64),
            Ordering::Relaxed,
        );
        let at_cap = w.record(OK, 1);
        assert_eq!(at_cap.calls, BUCKET_CAP as u32);
        // Failures past the cap still count (the rates are kept, at half weight).
        let mut last = at_cap;
        for _ in 0..100 {
            last = w.record(FAIL, 2);
        }
        let half = (BUCKET_CAP / 2) as u32;
        assert_eq!(last.calls, half + 100);
        assert_eq!(last.failures, (full / 4 / 2) as u32 + 100);
        assert_eq!(last.slow, (full / 8 / 2) as u32);
        assert_eq!(halved(pack(7, 3, 1)), pack(3, 1, 0));
    }

    #[test]
    fn time_window_drops_samples_from_the_past_period_of_a_reused_bucket() {
        let w = TimeWindow::new(10, 2);
        w.record(OK, 25); // period 2, bucket 0
        // A call that read the clock in period 0 (same bucket) arrives late: dropped.
        assert_eq!(w.record(FAIL, 3), snap(0, 0, 0));
        assert_eq!(w.snapshot(25), snap(1, 0, 0));
    }
}
