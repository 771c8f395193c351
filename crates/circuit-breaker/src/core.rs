//! One circuit: its state machine, counted on atomics, with a lock taken only to change state
//! (trip, half-open bookkeeping, manual controls) and never across an await or a callback.
//!
//! The state lives in one `AtomicU64` word: the state, a generation bumped on every change of
//! state (and on a metrics-only crossing, which counts as a trip), and while half-open the free probe slots and the successful probes. It is written
//! only under the lock and read without it, so a closed circuit admits a call with one atomic
//! load. A call remembers the generation it was admitted in; its outcome counts only if the
//! circuit is still in that generation (a call admitted before a trip does not count after it).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tower_armor_mcp::classify::BreakerClass;

use crate::backoff;
use crate::config::{Settings, WindowSpec};
use crate::state::{Counts, Reason, State, Transition};
use crate::window::{CountWindow, Sample, Snapshot, TimeWindow, Window};

// === state word ===

const STATE_MASK: u64 = 0x7;
const FIELD_MASK: u64 = 0xFFF;
const PERMITS_SHIFT: u32 = 4;
const SUCCESSES_SHIFT: u32 = 16;
const GEN_SHIFT: u32 = 32;

/// The packed state word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    #[inline]
    fn new(state: State, generation: u32, permits: u32, successes: u32) -> Word {
        Word(
            state.to_bits()
                | (u64::from(permits) & FIELD_MASK) << PERMITS_SHIFT
                | (u64::from(successes) & FIELD_MASK) << SUCCESSES_SHIFT
                | u64::from(generation) << GEN_SHIFT,
        )
    }

    #[inline]
    pub(crate) fn state(self) -> State {
        State::from_bits(self.0 & STATE_MASK)
    }

    #[inline]
    pub(crate) fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }

    /// Free probe slots (half-open only).
    fn permits(self) -> u32 {
        ((self.0 >> PERMITS_SHIFT) & FIELD_MASK) as u32
    }

    /// Probes that succeeded (half-open only).
    fn successes(self) -> u32 {
        ((self.0 >> SUCCESSES_SHIFT) & FIELD_MASK) as u32
    }
}

// === clock ===

/// Reads the clock at most once per operation, and only if the operation needs it.
#[derive(Debug, Default)]
pub(crate) struct Clock(Option<Instant>);

impl Clock {
    pub(crate) fn new() -> Self {
        Clock(None)
    }

    #[cfg(test)]
    pub(crate) fn at(now: Instant) -> Self {
        Clock(Some(now))
    }

    pub(crate) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// === core ===

/// What the lock protects: the half-open probe book and what open durations need.
#[derive(Debug)]
struct Locked {
    /// Openings since the circuit last closed.
    trips: u32,
    rng: u64,
    /// Outstanding probes of the current half-open period.
    probes: Vec<Probe>,
    next_ticket: u64,
}

#[derive(Clone, Copy, Debug)]
struct Probe {
    ticket: u64,
    /// Lease deadline, in nanoseconds since the base instant.
    deadline: u64,
}

/// One circuit (one key of a keyed breaker).
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) key: Option<Arc<str>>,
    pub(crate) settings: Arc<Settings>,
    base: Instant,
    state: AtomicU64,
    /// When an open circuit lets a probe through (nanoseconds since `base`).
    open_until: AtomicU64,
    /// The earliest lease deadline of an outstanding probe (`u64::MAX`: none).
    lease_hint: AtomicU64,
    window: Option<Window>,
    /// Consecutive failures (stays 0 without a consecutive-failures policy).
    consecutive: AtomicU32,
    /// No slow-call policy: a closed circuit admits a call without reading the clock.
    lean: bool,
    locked: Mutex<Locked>,
}

/// The outcome of [`Core::admit`].
#[derive(Debug)]
pub(crate) enum Admission {
    /// Call, and report the outcome through the permit.
    Permit(Permit),
    /// Call; nothing is counted (forced closed).
    Pass,
    /// Fail fast; retry after this long.
    Reject(Duration),
}

/// State changes made under the lock, emitted after it is released.
#[derive(Default)]
struct Fired([Option<Transition>; 2]);

impl Fired {
    fn push(&mut self, t: Transition) {
        if self.0[0].is_none() {
            self.0[0] = Some(t);
        } else {
            self.0[1] = Some(t);
        }
    }
}

/// How a probe ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProbeEnd {
    Success,
    Failure,
    Ignored,
}

impl Core {
    pub(crate) fn new(key: Option<Arc<str>>, settings: Arc<Settings>, state: State) -> Self {
        let window = settings.needs_window().then(|| match settings.window {
            WindowSpec::Count(n) => Window::Count(CountWindow::new(n)),
            WindowSpec::Time { duration, buckets } => {
                Window::Time(TimeWindow::new(nanos(duration / buckets).max(1), buckets))
            }
        });
        let rng = settings.seed.unwrap_or_else(backoff::seed);
        Core {
            key,
            base: Instant::now(),
            state: AtomicU64::new(Word::new(state, 0, 0, 0).0),
            open_until: AtomicU64::new(0),
            lease_hint: AtomicU64::new(u64::MAX),
            window,
            consecutive: AtomicU32::new(0),
            lean: settings.slow.is_none(),
            locked: Mutex::new(Locked {
                trips: 0,
                rng,
                probes: Vec::new(),
                next_ticket: 1,
            }),
            settings,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_base(mut self, base: Instant) -> Self {
        self.base = base;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        // Nothing in `Locked` is left half-written by a panic: recover the guard.
        self.locked.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[inline]
    pub(crate) fn word(&self) -> Word {
        Word(self.state.load(Ordering::Acquire))
    }

    fn store(&self, w: Word) {
        self.state.store(w.0, Ordering::Release);
    }

    fn now(&self, clock: &mut Clock) -> u64 {
        nanos(clock.now().saturating_duration_since(self.base))
    }

    fn slow_threshold(&self) -> Option<Duration> {
        self.settings.slow.map(|(_, d)| d)
    }

    /// The hot path: a closed circuit without a slow-call policy admits a call with one atomic
    /// load, and never reads the clock. Returns the generation to make the call's
    /// [`Permit::plain`] with, or `None` when [`admit`](Self::admit) must decide.
    #[inline]
    pub(crate) fn admits_plain(&self) -> Option<u32> {
        let w = self.word();
        (w.state() == State::Closed && self.lean).then(|| w.generation())
    }

    /// Decides whether a call may pass.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>, clock: &mut Clock) -> Admission {
        let w = self.word();
        if w.state() == State::Closed && self.lean {
            return Admission::Permit(Permit::plain(self, w.generation()));
        }
        self.admit_word(w, clock)
    }

    #[inline(never)]
    fn admit_word(self: &Arc<Self>, w: Word, clock: &mut Clock) -> Admission {
        match w.state() {
            State::Closed | State::MetricsOnly => {
                Admission::Permit(self.permit(w.generation(), 0, clock))
            }
            State::ForcedClosed => Admission::Pass,
            State::ForcedOpen => Admission::Reject(self.settings.open.base()),
            State::Open => {
                let now = self.now(clock);
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return Admission::Reject(Duration::from_nanos(until - now));
                }
                self.admit_locked(clock)
            }
            State::HalfOpen => {
                if w.permits() == 0 {
                    let now = self.now(clock);
                    let hint = self.lease_hint.load(Ordering::Acquire);
                    if now < hint {
                        return Admission::Reject(self.half_open_retry(hint, now));
                    }
                }
                self.admit_locked(clock)
            }
        }
    }

    #[inline]
    fn permit(self: &Arc<Self>, generation: u32, ticket: u64, clock: &mut Clock) -> Permit {
        let start = self.slow_threshold().map(|_| clock.now());
        let kind = match (ticket, start) {
            (0, None) => PermitKind::Plain,
            (0, Some(start)) => PermitKind::Timed(start),
            (ticket, start) => PermitKind::Probe(Box::new(Probing {
                slot: ProbeSlot {
                    core: Arc::clone(self),
                    ticket,
                },
                start,
            })),
        };
        Permit {
            core: Arc::clone(self),
            generation,
            kind,
        }
    }

    fn half_open_retry(&self, hint: u64, now: u64) -> Duration {
        Duration::from_nanos(hint.saturating_sub(now)).min(self.settings.open.base())
    }

    fn admit_locked(self: &Arc<Self>, clock: &mut Clock) -> Admission {
        let mut fired = Fired::default();
        let admission = {
            let mut g = self.lock();
            let now = self.now(clock);
            self.expire_leases(&mut g, now, &mut fired);
            let w = self.word();
            match w.state() {
                State::Closed | State::MetricsOnly => {
                    Admission::Permit(self.permit(w.generation(), 0, clock))
                }
                State::ForcedClosed => Admission::Pass,
                State::ForcedOpen => Admission::Reject(self.settings.open.base()),
                State::Open => match self.half_open_if_due(now, &mut fired) {
                    Some(half) => self.take_probe(&mut g, half, now, clock),
                    None => {
                        let until = self.open_until.load(Ordering::Acquire);
                        Admission::Reject(Duration::from_nanos(until.saturating_sub(now)))
                    }
                },
                State::HalfOpen => {
                    if w.permits() > 0 {
                        self.take_probe(&mut g, w, now, clock)
                    } else {
                        let hint = self.lease_hint.load(Ordering::Acquire);
                        Admission::Reject(self.half_open_retry(hint, now))
                    }
                }
            }
        };
        self.emit(fired);
        admission
    }

    /// An open circuit whose open duration has passed becomes half-open (called with the lock
    /// held): the new word, or `None` if it is not open or not yet due.
    fn half_open_if_due(&self, now: u64, fired: &mut Fired) -> Option<Word> {
        let w = self.word();
        if w.state() != State::Open || now < self.open_until.load(Ordering::Acquire) {
            return None;
        }
        let half = Word::new(
            State::HalfOpen,
            w.generation().wrapping_add(1),
            self.settings.half_open_calls,
            0,
        );
        self.store(half);
        fired.push(self.transition(
            State::Open,
            State::HalfOpen,
            Reason::OpenDurationElapsed,
            now,
        ));
        Some(half)
    }

    fn take_probe(
        self: &Arc<Self>,
        g: &mut Locked,
        w: Word,
        now: u64,
        clock: &mut Clock,
    ) -> Admission {
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        g.probes.push(Probe {
            ticket,
            deadline: now.saturating_add(nanos(self.settings.lease)),
        });
        // The hint first: a caller that sees no permit left reads the lease it waits for.
        self.update_hint(g);
        self.store(Word::new(
            State::HalfOpen,
            w.generation(),
            w.permits() - 1,
            w.successes(),
        ));
        Admission::Permit(self.permit(w.generation(), ticket, clock))
    }

    fn update_hint(&self, g: &Locked) {
        let hint = g
            .probes
            .iter()
            .map(|p| p.deadline)
            .min()
            .unwrap_or(u64::MAX);
        self.lease_hint.store(hint, Ordering::Release);
    }

    /// Settles the earliest outstanding probe whose lease has run out as failed, at its
    /// deadline (as if a timer had fired then).
    fn expire_leases(&self, g: &mut Locked, now: u64, fired: &mut Fired) {
        if self.word().state() != State::HalfOpen {
            return;
        }
        if let Some(deadline) = g.probes.iter().map(|p| p.deadline).min()
            && deadline <= now
        {
            self.open_from_half_open(g, deadline, Reason::ProbeLeaseExpired, fired);
        }
    }

    fn open_from_half_open(&self, g: &mut Locked, at: u64, reason: Reason, fired: &mut Fired) {
        let w = self.word();
        g.trips = g.trips.saturating_add(1);
        let d = self.settings.open.for_trip(g.trips, &mut g.rng);
        self.open_until
            .store(at.saturating_add(nanos(d)), Ordering::Release);
        self.store(Word::new(State::Open, w.generation().wrapping_add(1), 0, 0));
        g.probes.clear();
        self.lease_hint.store(u64::MAX, Ordering::Release);
        fired.push(self.transition(State::HalfOpen, State::Open, reason, at));
    }

    /// Empties the counts (on entering closed or metrics-only).
    fn clear_counts(&self) {
        if let Some(w) = &self.window {
            w.reset();
        }
        self.consecutive.store(0, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self, now: u64) -> Counts {
        let s = self
            .window
            .as_ref()
            .map_or(Snapshot::default(), |w| w.snapshot(now));
        Counts {
            calls: s.calls,
            failures: s.failures,
            slow_calls: s.slow,
            consecutive_failures: self.consecutive.load(Ordering::Relaxed),
        }
    }

    fn transition(&self, from: State, to: State, reason: Reason, now: u64) -> Transition {
        Transition {
            key: self.key.clone(),
            from,
            to,
            reason,
            counts: self.counts(now),
        }
    }

    fn emit(&self, fired: Fired) {
        for t in fired.0.into_iter().flatten() {
            let key = t.key.as_deref().unwrap_or("");
            let c = t.counts;
            if matches!(t.to, State::Open | State::ForcedOpen)
                || (t.from == State::MetricsOnly && t.to == State::MetricsOnly)
            {
                tracing::warn!(
                    key,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reason = t.reason.as_str(),
                    calls = c.calls,
                    failures = c.failures,
                    slow_calls = c.slow_calls,
                    consecutive_failures = c.consecutive_failures,
                    "circuit breaker state changed"
                );
            } else {
                tracing::info!(
                    key,
                    from = t.from.as_str(),
                    to = t.to.as_str(),
                    reason = t.reason.as_str(),
                    calls = c.calls,
                    failures = c.failures,
                    slow_calls = c.slow_calls,
                    consecutive_failures = c.consecutive_failures,
                    "circuit breaker state changed"
                );
            }
            if let Some(f) = &self.settings.on_transition {
                // A panicking callback must not abort the process (this may run in a drop,
                // while unwinding) nor take the call with it: logged, and the change stands.
                let call = std::panic::AssertUnwindSafe(|| f(&t));
                if std::panic::catch_unwind(call).is_err() {
                    tracing::error!(key, "circuit breaker on_transition callback panicked");
                }
            }
        }
    }

    /// Records a success (not slow) of an ordinary call admitted in `generation`: the hot path
    /// of a healthy circuit (inlined; everything else out of line).
    #[inline(always)]
    fn record_success(&self, generation: u32, clock: &mut Clock) {
        // Still closed, in the generation the call was admitted in (a closed word has no other
        // bits set). Otherwise: stale (nothing to count) or metrics-only.
        if self.state.load(Ordering::Acquire) != Word::new(State::Closed, generation, 0, 0).0 {
            return self.record_success_other(generation, clock);
        }
        // The counter stays 0 without a consecutive-failures policy.
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        match &self.window {
            None => {}
            // A success can still trip a failure rate: it may be the call that reaches
            // `min_calls`.
            Some(Window::Count(window)) => {
                if let Some(snap) = window.record(SUCCESS) {
                    self.judge_and_trip(generation, snap, clock);
                }
            }
            // Needs the clock (`record` finds the consecutive counter reset already).
            Some(Window::Time(_)) => self.record_success_other(generation, clock),
        }
    }

    /// Records a success of an ordinary call timed for the slow-call policy: one that was not
    /// slow is recorded as a plain success; a slow one goes to [`record`](Self::record).
    #[inline]
    fn record_timed_success(&self, generation: u32, start: Instant, clock: &mut Clock) {
        let slow = self.settings.slow.is_some_and(|(_, threshold)| {
            clock.now().saturating_duration_since(start) >= threshold
        });
        if slow {
            self.record_slow_success(generation, clock);
        } else {
            self.record_success(generation, clock);
        }
    }

    #[inline(never)]
    fn record_slow_success(&self, generation: u32, clock: &mut Clock) {
        const SLOW_SUCCESS: Sample = Sample {
            failure: false,
            slow: true,
        };
        self.record(generation, SLOW_SUCCESS, clock);
    }

    /// A success [`record_success`](Self::record_success) leaves to [`record`](Self::record).
    #[inline(never)]
    fn record_success_other(&self, generation: u32, clock: &mut Clock) {
        self.record(generation, SUCCESS, clock);
    }

    #[inline(never)]
    fn judge_and_trip(&self, generation: u32, snap: Snapshot, clock: &mut Clock) {
        if let Some(reason) = self.judge(snap) {
            self.trip(generation, reason, clock);
        }
    }

    /// Records the outcome of a call admitted while closed (or metrics-only) in `generation`.
    fn record(&self, generation: u32, sample: Sample, clock: &mut Clock) {
        let w = self.word();
        if w.generation() != generation || !matches!(w.state(), State::Closed | State::MetricsOnly)
        {
            return;
        }
        let mut reason = None;
        if let Some(threshold) = self.settings.consecutive {
            if sample.failure {
                let n = self.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
                if self.word().generation() != generation {
                    // The circuit moved on since the check above (tripped and closed again, or
                    // an operator's reset), clearing its counts: this failure belongs to the
                    // period before. Taken back (never below zero), and recorded nowhere.
                    let _ =
                        self.consecutive
                            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |c| {
                                c.checked_sub(1)
                            });
                    return;
                }
                if n >= threshold {
                    reason = Some(Reason::ConsecutiveFailures);
                }
            } else if self.consecutive.load(Ordering::Relaxed) != 0 {
                self.consecutive.store(0, Ordering::Relaxed);
            }
        }
        if let Some(window) = &self.window {
            let now = if window.needs_time() {
                self.now(clock)
            } else {
                0
            };
            if let Some(snap) = window.record(sample, now)
                && reason.is_none()
            {
                reason = self.judge(snap);
            }
        }
        if let Some(reason) = reason {
            self.trip(generation, reason, clock);
        }
    }

    /// Whether the window's counts trip a rate policy.
    fn judge(&self, s: Snapshot) -> Option<Reason> {
        if s.calls == 0 || s.calls < self.settings.min_calls {
            return None;
        }
        let calls = f64::from(s.calls);
        if let Some(t) = self.settings.failure_rate
            && f64::from(s.failures) / calls >= t
        {
            return Some(Reason::FailureRate);
        }
        if let Some((t, _)) = self.settings.slow
            && f64::from(s.slow) / calls >= t
        {
            return Some(Reason::SlowCallRate);
        }
        None
    }

    fn trip(&self, generation: u32, reason: Reason, clock: &mut Clock) {
        let mut fired = Fired::default();
        {
            let mut g = self.lock();
            let w = self.word();
            if w.generation() != generation {
                return;
            }
            let now = self.now(clock);
            match w.state() {
                State::Closed => {
                    fired.push(self.transition(State::Closed, State::Open, reason, now));
                    g.trips = g.trips.saturating_add(1);
                    let d = self.settings.open.for_trip(g.trips, &mut g.rng);
                    self.open_until
                        .store(now.saturating_add(nanos(d)), Ordering::Release);
                    self.store(Word::new(State::Open, generation.wrapping_add(1), 0, 0));
                }
                State::MetricsOnly => {
                    fired.push(self.transition(
                        State::MetricsOnly,
                        State::MetricsOnly,
                        reason,
                        now,
                    ));
                    // A new generation, as for a real trip: calls admitted before it no longer
                    // count, and a second caller that saw the same crossing returns above
                    // instead of reporting it again on the cleared counts.
                    self.store(Word::new(
                        State::MetricsOnly,
                        generation.wrapping_add(1),
                        0,
                        0,
                    ));
                    self.clear_counts();
                }
                _ => return,
            }
        }
        self.emit(fired);
    }

    fn settle_probe(&self, ticket: u64, end: ProbeEnd, clock: &mut Clock) {
        let mut fired = Fired::default();
        {
            let mut g = self.lock();
            let now = self.now(clock);
            self.expire_leases(&mut g, now, &mut fired);
            // Gone: settled by its lease, or the half-open period is over.
            if let Some(pos) = g.probes.iter().position(|p| p.ticket == ticket) {
                let w = self.word();
                match end {
                    ProbeEnd::Ignored => {
                        g.probes.swap_remove(pos);
                        self.store(Word::new(
                            State::HalfOpen,
                            w.generation(),
                            w.permits() + 1,
                            w.successes(),
                        ));
                        self.update_hint(&g);
                    }
                    ProbeEnd::Failure => {
                        self.open_from_half_open(&mut g, now, Reason::ProbeFailed, &mut fired);
                    }
                    ProbeEnd::Success => {
                        g.probes.swap_remove(pos);
                        let successes = w.successes() + 1;
                        if successes >= self.settings.half_open_calls {
                            fired.push(self.transition(
                                State::HalfOpen,
                                State::Closed,
                                Reason::ProbesSucceeded,
                                now,
                            ));
                            self.clear_counts();
                            g.trips = 0;
                            g.probes.clear();
                            self.store(Word::new(
                                State::Closed,
                                w.generation().wrapping_add(1),
                                0,
                                0,
                            ));
                        } else {
                            self.store(Word::new(
                                State::HalfOpen,
                                w.generation(),
                                w.permits(),
                                successes,
                            ));
                        }
                        self.update_hint(&g);
                    }
                }
            }
        }
        self.emit(fired);
    }

    /// The state now (settling an expired probe lease first).
    pub(crate) fn state(&self, clock: &mut Clock) -> State {
        let due = match self.word().state() {
            State::HalfOpen => self.now(clock) >= self.lease_hint.load(Ordering::Acquire),
            State::Open => self.now(clock) >= self.open_until.load(Ordering::Acquire),
            _ => false,
        };
        if due {
            let mut fired = Fired::default();
            {
                let mut g = self.lock();
                let now = self.now(clock);
                self.expire_leases(&mut g, now, &mut fired);
                self.half_open_if_due(now, &mut fired);
            }
            self.emit(fired);
        }
        self.word().state()
    }

    /// Counts now.
    pub(crate) fn counts_now(&self, clock: &mut Clock) -> Counts {
        let now = self.now(clock);
        self.counts(now)
    }

    /// Manual control: moves to `to` (`Closed` = reset).
    pub(crate) fn force(&self, to: State, clock: &mut Clock) {
        let reason = match to {
            State::Closed => Reason::Reset,
            State::ForcedOpen => Reason::ForcedOpen,
            State::ForcedClosed => Reason::ForcedClosed,
            State::MetricsOnly => Reason::MetricsOnly,
            State::Open | State::HalfOpen => return,
        };
        let mut fired = Fired::default();
        {
            let mut g = self.lock();
            let w = self.word();
            if w.state() == to && to != State::Closed {
                return;
            }
            let now = self.now(clock);
            if w.state() != to {
                fired.push(self.transition(w.state(), to, reason, now));
            }
            if matches!(to, State::Closed | State::MetricsOnly) {
                self.clear_counts();
            }
            if to == State::Closed {
                g.trips = 0;
            }
            g.probes.clear();
            self.lease_hint.store(u64::MAX, Ordering::Release);
            self.store(Word::new(to, w.generation().wrapping_add(1), 0, 0));
        }
        self.emit(fired);
    }

    /// Time until an open circuit lets a probe through, if it is open.
    pub(crate) fn retry_after(&self, clock: &mut Clock) -> Option<Duration> {
        match self.word().state() {
            State::Open => {
                let now = self.now(clock);
                let until = self.open_until.load(Ordering::Acquire);
                Some(Duration::from_nanos(until.saturating_sub(now)))
            }
            State::ForcedOpen => Some(self.settings.open.base()),
            _ => None,
        }
    }
}

const SUCCESS: Sample = Sample {
    failure: false,
    slow: false,
};

// === permit ===

/// A call's right to pass; reports the call's outcome once. Dropped without an outcome, it
/// counts as ignored (a probe's slot is returned at once).
///
/// No `Drop` of its own (a probe's [`ProbeSlot`] has one): completing a permit takes it apart,
/// and the hot path moves nothing but the circuit's `Arc` and the generation.
#[derive(Debug)]
pub(crate) struct Permit {
    core: Arc<Core>,
    generation: u32,
    kind: PermitKind,
}

#[derive(Debug)]
enum PermitKind {
    /// An ordinary call without a slow-call policy (the hot path): nothing else to know.
    Plain,
    /// An ordinary call, timed for the slow-call policy.
    Timed(Instant),
    /// A half-open probe (boxed: probes are rare, and every other permit stays small).
    Probe(Box<Probing>),
}

/// A half-open probe in flight.
#[derive(Debug)]
struct Probing {
    slot: ProbeSlot,
    /// Its start, timed for the slow-call policy.
    start: Option<Instant>,
}

/// A half-open probe's slot until the probe is settled: dropped unsettled (the call's future
/// or answer dropped), it is returned to the circuit at once.
#[derive(Debug)]
struct ProbeSlot {
    core: Arc<Core>,
    /// The probe's ticket; 0 once settled.
    ticket: u64,
}

impl ProbeSlot {
    fn settle(mut self, end: ProbeEnd, clock: &mut Clock) {
        let ticket = std::mem::take(&mut self.ticket);
        self.core.settle_probe(ticket, end, clock);
    }
}

impl Drop for ProbeSlot {
    fn drop(&mut self) {
        if self.ticket != 0 {
            self.core
                .settle_probe(self.ticket, ProbeEnd::Ignored, &mut Clock::new());
        }
    }
}

impl Permit {
    /// The permit of an ordinary call admitted by a closed circuit in `generation`, without a
    /// slow-call policy (see [`Core::admits_plain`]).
    #[inline]
    pub(crate) fn plain(core: &Arc<Core>, generation: u32) -> Permit {
        Permit {
            core: Arc::clone(core),
            generation,
            kind: PermitKind::Plain,
        }
    }

    /// Whether this call is a half-open probe.
    pub(crate) fn is_probe(&self) -> bool {
        matches!(self.kind, PermitKind::Probe(_))
    }

    /// The circuit.
    #[inline]
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Reports the call's outcome, classified.
    #[inline(always)]
    pub(crate) fn complete(self, class: BreakerClass, clock: &mut Clock) {
        let Permit {
            core,
            generation,
            kind,
        } = self;
        if matches!(kind, PermitKind::Plain) && class == BreakerClass::Success {
            // A success of an ordinary call without a slow-call policy (the hot path).
            core.record_success(generation, clock);
        } else {
            complete_slow(&core, generation, kind, class, clock);
        }
    }
}

#[inline(never)]
fn complete_slow(
    core: &Core,
    generation: u32,
    kind: PermitKind,
    class: BreakerClass,
    clock: &mut Clock,
) {
    if let PermitKind::Timed(start) = kind
        && class == BreakerClass::Success
    {
        // The usual case with a slow-call policy.
        return core.record_timed_success(generation, start, clock);
    }
    let slow_policy = core.settings.slow;
    let start = match &kind {
        PermitKind::Plain => None,
        PermitKind::Timed(start) => Some(*start),
        PermitKind::Probe(probe) => probe.start,
    };
    let slow = match (slow_policy, start) {
        (Some((_, threshold)), Some(start)) => {
            clock.now().saturating_duration_since(start) >= threshold
        }
        _ => false,
    };
    if let PermitKind::Probe(probe) = kind {
        let end = match class {
            BreakerClass::Ignored => ProbeEnd::Ignored,
            BreakerClass::Failure | BreakerClass::SlowFailure => ProbeEnd::Failure,
            BreakerClass::Success if slow => ProbeEnd::Failure,
            BreakerClass::Success => ProbeEnd::Success,
        };
        probe.slot.settle(end, clock);
    } else {
        let sample = match class {
            BreakerClass::Ignored => return,
            BreakerClass::Success => Sample {
                failure: false,
                slow,
            },
            BreakerClass::Failure => Sample {
                failure: true,
                slow,
            },
            // A call that ran out of time is slow whatever the policy: counted as such (the
            // slow-call rate trips only with a slow-call policy).
            BreakerClass::SlowFailure => Sample {
                failure: true,
                slow: true,
            },
        };
        core.record(generation, sample, clock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Builder;

    fn core(b: Builder) -> Arc<Core> {
        let (s, _, _) = b.seed(7).validate().unwrap();
        Arc::new(Core::new(Some("k".into()), Arc::new(s), State::Closed))
    }

    fn call(c: &Arc<Core>, now: Instant) -> Admission {
        c.admit(&mut Clock::at(now))
    }

    fn finish(a: Admission, class: BreakerClass, now: Instant) {
        match a {
            Admission::Permit(p) => p.complete(class, &mut Clock::at(now)),
            other => panic!("not admitted: {other:?}"),
        }
    }

    #[test]
    fn word_round_trips() {
        let w = Word::new(State::HalfOpen, u32::MAX, 1000, 999);
        assert_eq!(w.state(), State::HalfOpen);
        assert_eq!(w.generation(), u32::MAX);
        assert_eq!(w.permits(), 1000);
        assert_eq!(w.successes(), 999);
    }

    #[test]
    fn trips_on_failure_rate_then_probes_and_closes() {
        let c = core(
            Builder::new()
                .count_window(4)
                .min_calls(4)
                .failure_rate(0.5)
                .open_duration(crate::OpenDuration::Fixed(Duration::from_secs(1))),
        );
        let t0 = Instant::now();
        finish(call(&c, t0), BreakerClass::Success, t0);
        finish(call(&c, t0), BreakerClass::Failure, t0);
        finish(call(&c, t0), BreakerClass::Success, t0);
        assert_eq!(c.word().state(), State::Closed);
        finish(call(&c, t0), BreakerClass::Failure, t0);
        assert_eq!(c.word().state(), State::Open);
        match call(&c, t0 + Duration::from_millis(400)) {
            Admission::Reject(d) => assert_eq!(d, Duration::from_millis(600)),
            other => panic!("{other:?}"),
        }
        let t1 = t0 + Duration::from_secs(1);
        let probe = call(&c, t1);
        assert_eq!(c.word().state(), State::HalfOpen);
        assert!(matches!(&probe, Admission::Permit(p) if p.is_probe()));
        // Only one probe at a time.
        assert!(matches!(call(&c, t1), Admission::Reject(_)));
        finish(probe, BreakerClass::Success, t1);
        assert_eq!(c.word().state(), State::Closed);
        assert_eq!(c.counts(0), Counts::default());
    }

    #[test]
    fn a_dropped_probe_frees_its_slot_and_a_silent_one_is_settled_by_its_lease() {
        let c = core(
            Builder::new()
                .no_failure_rate()
                .consecutive_failures(1)
                .probe_lease(Duration::from_secs(5))
                .open_duration(crate::OpenDuration::Fixed(Duration::from_secs(1))),
        );
        let t0 = Instant::now();
        finish(call(&c, t0), BreakerClass::Failure, t0);
        let t1 = t0 + Duration::from_secs(1);
        let probe = call(&c, t1);
        assert!(matches!(call(&c, t1), Admission::Reject(_)));
        drop(probe);
        assert_eq!(c.word().state(), State::HalfOpen);
        let _hung = call(&c, t1);
        // The lease runs out 5 s later: the probe failed then, open for 1 s more.
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(c.state(&mut Clock::at(t2)), State::Open);
        match call(&c, t2 + Duration::from_millis(300)) {
            Admission::Reject(d) => assert_eq!(d, Duration::from_millis(700)),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod stress {
    //! Two threads hammer one circuit through open / half-open / closed cycles (real time, a
    //! 1 ms open duration, bounded loops) and check that half-open never lets more probes through
    //! than configured.

    use std::collections::HashMap;

    use super::*;
    use crate::config::Builder;

    const PROBES: u32 = 3;

    fn circuit() -> Arc<Core> {
        let (s, _, _) = Builder::new()
            .no_failure_rate()
            .consecutive_failures(1)
            .half_open_calls(PROBES)
            .open_duration(crate::OpenDuration::Fixed(Duration::from_millis(1)))
            .probe_lease(Duration::from_secs(60))
            .validate()
            .unwrap();
        Arc::new(Core::new(None, Arc::new(s), State::Closed))
    }

    /// Probes in flight per half-open period (generation), and the most seen in one period.
    /// Per period: a probe of an earlier period may still be held (its period ended when another
    /// probe failed) while the next period admits its own.
    #[derive(Default)]
    struct InFlight {
        per_gen: HashMap<u32, i64>,
        max: i64,
    }

    impl InFlight {
        fn admitted(&mut self, generation: u32) {
            let n = self.per_gen.entry(generation).or_default();
            *n += 1;
            self.max = self.max.max(*n);
        }

        fn released(&mut self, generation: u32) {
            *self.per_gen.entry(generation).or_default() -= 1;
        }
    }

    /// Runs two threads; each holds up to 5 permits at a time. Returns per thread the
    /// generations of the probes it was admitted, and the most probes of one half-open period
    /// in flight seen.
    fn hammer(drops: bool) -> (Vec<u32>, i64) {
        let core = circuit();
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let core = Arc::clone(&core);
                let in_flight = Arc::clone(&in_flight);
                std::thread::spawn(move || {
                    let mut rng = t + 1;
                    let mut held: Vec<Permit> = Vec::new();
                    let mut gens = Vec::new();
                    let started = std::time::SystemTime::now();
                    // Bounded: at least 200,000 iterations, then stop once this thread saw 30
                    // half-open periods (each needs the 1 ms open duration to pass, so a loaded
                    // machine needs longer), or after 30 s, or 5,000,000 iterations. (With 5 s,
                    // a debug build on a loaded machine once stopped before 10 periods.)
                    for i in 0..5_000_000u32 {
                        if i % 1024 == 0 {
                            let periods =
                                gens.iter().collect::<std::collections::HashSet<_>>().len();
                            let elapsed = started.elapsed().unwrap_or_default();
                            if (i >= 200_000 && periods >= 30) || elapsed > Duration::from_secs(30)
                            {
                                break;
                            }
                        }
                        if held.len() < 5
                            && let Admission::Permit(p) = core.admit(&mut Clock::new())
                        {
                            if p.is_probe() {
                                in_flight.lock().unwrap().admitted(p.generation);
                                gens.push(p.generation);
                            }
                            held.push(p);
                        }
                        if !held.is_empty() && backoff::next(&mut rng).is_multiple_of(3) {
                            let p =
                                held.swap_remove((backoff::next(&mut rng) as usize) % held.len());
                            if p.is_probe() {
                                in_flight.lock().unwrap().released(p.generation);
                            }
                            let r = backoff::next(&mut rng) % 8;
                            if drops && r == 0 {
                                drop(p);
                            } else if p.is_probe() && r < 6 {
                                p.complete(BreakerClass::Success, &mut Clock::new());
                            } else {
                                p.complete(BreakerClass::Failure, &mut Clock::new());
                            }
                        }
                    }
                    // What is still held ends too: without drops, as a failure (a dropped
                    // probe returns its slot, and the other thread, maybe still running, would
                    // take it in the same half-open period: more probes than configured in all,
                    // though never more at once).
                    for p in held {
                        if p.is_probe() {
                            in_flight.lock().unwrap().released(p.generation);
                        }
                        if drops {
                            drop(p);
                        } else {
                            p.complete(BreakerClass::Failure, &mut Clock::new());
                        }
                    }
                    gens
                })
            })
            .collect();
        let gens = threads
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let max = in_flight.lock().unwrap().max;
        (gens, max)
    }

    #[test]
    fn half_open_never_admits_more_probes_than_configured() {
        // Without drops every probe ends in an outcome, so one half-open period (one
        // generation) admits at most PROBES probes in all.
        let (gens, max) = hammer(false);
        let mut per_gen: HashMap<u32, u32> = HashMap::new();
        for g in &gens {
            *per_gen.entry(*g).or_default() += 1;
        }
        assert!(
            per_gen.len() >= 10,
            "too few half-open periods: {}",
            per_gen.len()
        );
        let worst = per_gen.values().max().copied().unwrap_or(0);
        assert!(
            worst <= PROBES,
            "a half-open period admitted {worst} probes"
        );
        assert!(max <= i64::from(PROBES), "{max} probes in flight");
        // The bound was reached, so the test can fail.
        assert_eq!(worst, PROBES, "no period filled its probe slots");
    }

    #[test]
    fn dropped_probes_return_slots_but_never_exceed_the_bound() {
        let (gens, max) = hammer(true);
        assert!(!gens.is_empty());
        assert!(max <= i64::from(PROBES), "{max} probes in flight");
        assert_eq!(max, i64::from(PROBES), "the bound was never reached");
    }
}
