//! A reference model of one circuit in plain Rust (no atomics, no lock, every sample kept in a
//! list, leases settled eagerly), and a property test feeding random sequences of calls,
//! outcomes, drops, time advances and manual controls to both the model and the real circuit,
//! asserting identical decisions, states, counts and events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower_armor_mcp::classify::BreakerClass;

use crate::backoff::OpenDuration;
use crate::config::{Builder, WindowSpec};
use crate::core::{Admission, Clock, Core, Permit};
use crate::state::{Reason, State};

#[derive(Clone, Debug)]
struct Cfg {
    failure_rate: Option<f64>,
    slow: Option<(f64, u64)>,
    consecutive: Option<u32>,
    window: WindowSpec,
    min_calls: u32,
    open: OpenDuration,
    half_open_calls: u32,
    lease: u64,
    seed: u64,
}

impl Cfg {
    fn builder(&self) -> Builder {
        let mut b = Builder::new()
            .min_calls(self.min_calls)
            .open_duration(self.open)
            .half_open_calls(self.half_open_calls)
            .probe_lease(Duration::from_nanos(self.lease))
            .seed(self.seed);
        b = match self.failure_rate {
            Some(r) => b.failure_rate(r),
            None => b.no_failure_rate(),
        };
        if let Some((r, d)) = self.slow {
            b = b.slow_call_rate(r, Duration::from_nanos(d));
        }
        if let Some(n) = self.consecutive {
            b = b.consecutive_failures(n);
        }
        match self.window {
            WindowSpec::Count(n) => b.count_window(n),
            WindowSpec::Time { duration, buckets } => b.time_window(duration, buckets),
        }
    }
}

/// A call the model admitted.
#[derive(Clone, Copy, Debug)]
struct Call {
    generation: u32,
    /// 0: an ordinary call.
    ticket: u64,
    start: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Decision {
    Call,
    Probe,
    Pass,
    Reject(Duration),
}

struct Model {
    cfg: Cfg,
    state: State,
    generation: u32,
    /// (time, failure, slow), oldest first.
    samples: VecDeque<(u64, bool, bool)>,
    consecutive: u32,
    open_until: u64,
    trips: u32,
    rng: u64,
    probes: Vec<(u64, u64)>,
    permits: u32,
    successes: u32,
    next_ticket: u64,
    events: Vec<(State, State, Reason)>,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Model {
            rng: cfg.seed,
            cfg,
            state: State::Closed,
            generation: 0,
            samples: VecDeque::new(),
            consecutive: 0,
            open_until: 0,
            trips: 0,
            probes: Vec::new(),
            permits: 0,
            successes: 0,
            next_ticket: 1,
            events: Vec::new(),
        }
    }

    fn uses_window(&self) -> bool {
        self.cfg.failure_rate.is_some() || self.cfg.slow.is_some()
    }

    /// (calls, failures, slow) of the window at `now`.
    fn counts(&self, now: u64) -> (u32, u32, u32) {
        if !self.uses_window() {
            return (0, 0, 0);
        }
        let live: Vec<_> = match self.cfg.window {
            WindowSpec::Count(_) => self.samples.iter().collect(),
            WindowSpec::Time { duration, buckets } => {
                let width = (duration / buckets).as_nanos() as u64;
                let cur = now / width;
                self.samples
                    .iter()
                    .filter(|(t, _, _)| {
                        let p = t / width;
                        p <= cur && p + u64::from(buckets) > cur
                    })
                    .collect()
            }
        };
        let calls = live.len() as u32;
        let failures = live.iter().filter(|s| s.1).count() as u32;
        let slow = live.iter().filter(|s| s.2).count() as u32;
        (calls, failures, slow)
    }

    fn clear(&mut self) {
        self.samples.clear();
        self.consecutive = 0;
    }

    fn open_for(&mut self) -> u64 {
        self.trips = self.trips.saturating_add(1);
        self.cfg.open.for_trip(self.trips, &mut self.rng).as_nanos() as u64
    }

    fn go_open_from_half(&mut self, at: u64, reason: Reason) {
        let d = self.open_for();
        self.open_until = at + d;
        self.state = State::Open;
        self.generation = self.generation.wrapping_add(1);
        self.probes.clear();
        self.permits = 0;
        self.successes = 0;
        self.events.push((State::HalfOpen, State::Open, reason));
    }

    fn settle_leases(&mut self, now: u64) {
        if self.state != State::HalfOpen {
            return;
        }
        if let Some(d) = self.probes.iter().map(|p| p.1).min()
            && d <= now
        {
            self.go_open_from_half(d, Reason::ProbeLeaseExpired);
        }
    }

    fn take_probe(&mut self, now: u64) -> (Decision, Option<Call>) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.probes.push((ticket, now + self.cfg.lease));
        self.permits -= 1;
        (
            Decision::Probe,
            Some(Call {
                generation: self.generation,
                ticket,
                start: now,
            }),
        )
    }

    fn base_open(&self) -> Duration {
        self.cfg.open.base()
    }

    fn admit(&mut self, now: u64) -> (Decision, Option<Call>) {
        self.settle_leases(now);
        match self.state {
            State::Closed | State::MetricsOnly => (
                Decision::Call,
                Some(Call {
                    generation: self.generation,
                    ticket: 0,
                    start: now,
                }),
            ),
            State::ForcedClosed => (Decision::Pass, None),
            State::ForcedOpen => (Decision::Reject(self.base_open()), None),
            State::Open => {
                if self.half_open_if_due(now) {
                    self.take_probe(now)
                } else {
                    (
                        Decision::Reject(Duration::from_nanos(self.open_until - now)),
                        None,
                    )
                }
            }
            State::HalfOpen => {
                if self.permits > 0 {
                    self.take_probe(now)
                } else {
                    let earliest = self.probes.iter().map(|p| p.1).min().unwrap_or(u64::MAX);
                    let left = Duration::from_nanos(earliest - now);
                    (Decision::Reject(left.min(self.base_open())), None)
                }
            }
        }
    }

    /// Open, and the open duration has passed: half-open now.
    fn half_open_if_due(&mut self, now: u64) -> bool {
        if self.state != State::Open || now < self.open_until {
            return false;
        }
        self.state = State::HalfOpen;
        self.generation = self.generation.wrapping_add(1);
        self.permits = self.cfg.half_open_calls;
        self.successes = 0;
        self.events
            .push((State::Open, State::HalfOpen, Reason::OpenDurationElapsed));
        true
    }

    fn is_slow(&self, call: &Call, now: u64) -> bool {
        self.cfg.slow.is_some_and(|(_, d)| now - call.start >= d)
    }

    fn complete(&mut self, call: Call, class: BreakerClass, now: u64) {
        let slow = self.is_slow(&call, now);
        if call.ticket != 0 {
            self.settle_leases(now);
            let Some(pos) = self.probes.iter().position(|p| p.0 == call.ticket) else {
                return;
            };
            let failed = match class {
                BreakerClass::Ignored => {
                    self.probes.remove(pos);
                    self.permits += 1;
                    return;
                }
                BreakerClass::Failure | BreakerClass::SlowFailure => true,
                BreakerClass::Success => slow,
            };
            if failed {
                self.go_open_from_half(now, Reason::ProbeFailed);
            } else {
                self.probes.remove(pos);
                self.successes += 1;
                if self.successes >= self.cfg.half_open_calls {
                    self.events
                        .push((State::HalfOpen, State::Closed, Reason::ProbesSucceeded));
                    self.clear();
                    self.trips = 0;
                    self.probes.clear();
                    self.state = State::Closed;
                    self.generation = self.generation.wrapping_add(1);
                    self.permits = 0;
                    self.successes = 0;
                }
            }
            return;
        }
        if call.generation != self.generation
            || !matches!(self.state, State::Closed | State::MetricsOnly)
        {
            return;
        }
        let (failure, slow) = match class {
            BreakerClass::Ignored => return,
            BreakerClass::Success => (false, slow),
            BreakerClass::Failure => (true, slow),
            BreakerClass::SlowFailure => (true, true),
        };
        let mut reason = None;
        if let Some(n) = self.cfg.consecutive {
            if failure {
                self.consecutive += 1;
                if self.consecutive >= n {
                    reason = Some(Reason::ConsecutiveFailures);
                }
            } else {
                self.consecutive = 0;
            }
        }
        if self.uses_window() {
            self.samples.push_back((now, failure, slow));
            if let WindowSpec::Count(n) = self.cfg.window
                && self.samples.len() > n as usize
            {
                self.samples.pop_front();
            }
            if reason.is_none() {
                let (calls, failures, slows) = self.counts(now);
                if calls > 0 && calls >= self.cfg.min_calls {
                    let c = f64::from(calls);
                    if self
                        .cfg
                        .failure_rate
                        .is_some_and(|t| f64::from(failures) / c >= t)
                    {
                        reason = Some(Reason::FailureRate);
                    } else if self
                        .cfg
                        .slow
                        .is_some_and(|(t, _)| f64::from(slows) / c >= t)
                    {
                        reason = Some(Reason::SlowCallRate);
                    }
                }
            }
        }
        let Some(reason) = reason else { return };
        match self.state {
            State::Closed => {
                self.events.push((State::Closed, State::Open, reason));
                let d = self.open_for();
                self.open_until = now + d;
                self.state = State::Open;
                self.generation = self.generation.wrapping_add(1);
            }
            State::MetricsOnly => {
                self.events
                    .push((State::MetricsOnly, State::MetricsOnly, reason));
                self.clear();
                self.generation = self.generation.wrapping_add(1);
            }
            _ => unreachable!(),
        }
    }

    fn force(&mut self, to: State) {
        if self.state == to && to != State::Closed {
            return;
        }
        let reason = match to {
            State::Closed => Reason::Reset,
            State::ForcedOpen => Reason::ForcedOpen,
            State::ForcedClosed => Reason::ForcedClosed,
            _ => Reason::MetricsOnly,
        };
        if self.state != to {
            self.events.push((self.state, to, reason));
        }
        if matches!(to, State::Closed | State::MetricsOnly) {
            self.clear();
        }
        if to == State::Closed {
            self.trips = 0;
        }
        self.probes.clear();
        self.permits = 0;
        self.successes = 0;
        self.state = to;
        self.generation = self.generation.wrapping_add(1);
    }

    fn state(&mut self, now: u64) -> State {
        self.settle_leases(now);
        self.half_open_if_due(now);
        self.state
    }
}

// === the property ===

#[derive(Clone, Debug)]
enum Op {
    Call,
    Finish(usize, BreakerClass),
    Drop(usize),
    Advance(u64),
    Force(State),
    Query,
}

fn class() -> impl Strategy<Value = BreakerClass> {
    prop_oneof![
        4 => Just(BreakerClass::Success),
        4 => Just(BreakerClass::Failure),
        1 => Just(BreakerClass::SlowFailure),
        1 => Just(BreakerClass::Ignored),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Call),
        8 => (any::<usize>(), class()).prop_map(|(i, c)| Op::Finish(i, c)),
        1 => any::<usize>().prop_map(Op::Drop),
        2 => (1u64..400).prop_map(Op::Advance),
        2 => (1u64..8).prop_map(|k| Op::Advance(k * 50)),
        1 => prop_oneof![
            Just(State::Closed),
            Just(State::ForcedOpen),
            Just(State::ForcedClosed),
            Just(State::MetricsOnly),
        ]
        .prop_map(Op::Force),
        1 => Just(Op::Query),
    ]
}

const MS: u64 = 1_000_000;

fn cfg() -> impl Strategy<Value = Cfg> {
    let window = prop_oneof![
        (1u32..8).prop_map(WindowSpec::Count),
        (1u32..5).prop_map(|b| WindowSpec::Time {
            duration: Duration::from_millis(100 * u64::from(b)),
            buckets: b,
        }),
    ];
    let open = prop_oneof![
        (1u64..30).prop_map(|k| OpenDuration::Fixed(Duration::from_millis(k * 10))),
        (10u64..100, 0u32..3).prop_map(|(ms, j)| OpenDuration::Exponential {
            base: Duration::from_millis(ms),
            multiplier: 2.0,
            max: Duration::from_millis(ms * 5),
            jitter: f64::from(j) * 0.25,
        }),
    ];
    (
        prop::option::of(1u32..=10),
        prop::option::of((1u32..=10, 20u64..200)),
        prop::option::of(1u32..5),
        window,
        1u32..6,
        open,
        1u32..4,
        (1u64..16).prop_map(|k| k * 50),
        any::<u64>(),
    )
        .prop_filter_map(
            "needs a policy and reachable min_calls",
            |(rate, slow, consecutive, window, min_calls, open, half, lease, seed)| {
                if rate.is_none() && slow.is_none() && consecutive.is_none() {
                    return None;
                }
                let min_calls = match window {
                    WindowSpec::Count(n) => min_calls.min(n),
                    WindowSpec::Time { .. } => min_calls,
                };
                Some(Cfg {
                    failure_rate: rate.map(|r| f64::from(r) / 10.0),
                    slow: slow.map(|(r, ms)| (f64::from(r) / 10.0, ms * MS)),
                    consecutive,
                    window,
                    min_calls,
                    open,
                    half_open_calls: half,
                    lease: lease * MS,
                    seed,
                })
            },
        )
}

fn run(cfg: Cfg, ops: Vec<Op>) -> Result<Vec<(State, State, Reason)>, TestCaseError> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let (settings, _, _) = cfg
        .builder()
        .on_transition(move |t| sink.lock().unwrap().push((t.from, t.to, t.reason)))
        .validate()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let base = Instant::now();
    let core = Arc::new(Core::new(None, Arc::new(settings), State::Closed).with_base(base));
    let mut model = Model::new(cfg);
    let mut now = 0u64;
    let mut flying: Vec<(Call, Permit)> = Vec::new();
    let at = |n: u64| Clock::at(base + Duration::from_nanos(n));
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Call => {
                let (want, call) = model.admit(now);
                let got = match core.admit(&mut at(now)) {
                    Admission::Permit(p) => {
                        let d = if p.is_probe() {
                            Decision::Probe
                        } else {
                            Decision::Call
                        };
                        if let Some(c) = call {
                            flying.push((c, p));
                        }
                        d
                    }
                    Admission::Pass => Decision::Pass,
                    Admission::Reject(d) => Decision::Reject(d),
                };
                prop_assert_eq!(got, want, "step {}: admission", step);
            }
            Op::Finish(i, class) if !flying.is_empty() => {
                let (c, p) = flying.remove(i % flying.len());
                model.complete(c, class, now);
                p.complete(class, &mut at(now));
            }
            Op::Drop(i) if !flying.is_empty() => {
                let (c, p) = flying.remove(i % flying.len());
                model.complete(c, BreakerClass::Ignored, now);
                p.complete(BreakerClass::Ignored, &mut at(now));
            }
            Op::Finish(..) | Op::Drop(_) => {}
            Op::Advance(ms) => now += ms * MS,
            Op::Force(s) => {
                model.force(s);
                core.force(s, &mut at(now));
            }
            Op::Query => {
                let want = model.state(now);
                prop_assert_eq!(core.state(&mut at(now)), want, "step {}: query", step);
            }
        }
        prop_assert_eq!(core.word().state(), model.state, "step {}: state", step);
        let c = core.counts(now);
        prop_assert_eq!(
            (c.calls, c.failures, c.slow_calls),
            model.counts(now),
            "step {}: counts",
            step
        );
        if model.cfg.consecutive.is_some() {
            prop_assert_eq!(c.consecutive_failures, model.consecutive, "step {}", step);
        }
        prop_assert_eq!(
            &*events.lock().unwrap(),
            &model.events,
            "step {}: events",
            step
        );
    }
    Ok(model.events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_circuit_behaves_like_the_model(cfg in cfg(), ops in prop::collection::vec(op(), 1..160)) {
        run(cfg, ops)?;
    }
}

#[test]
fn the_model_run_covers_every_transition() {
    // A fixed sequence through every state, so the property above is known to reach them.
    let cfg = Cfg {
        failure_rate: Some(0.5),
        slow: Some((0.5, 50 * MS)),
        consecutive: Some(2),
        window: WindowSpec::Count(4),
        min_calls: 2,
        open: OpenDuration::Fixed(Duration::from_millis(100)),
        half_open_calls: 2,
        lease: 300 * MS,
        seed: 1,
    };
    use BreakerClass::*;
    let ops = vec![
        Op::Call,
        Op::Call,
        Op::Call,
        Op::Call,
        Op::Finish(0, Success),
        Op::Finish(0, Failure),
        Op::Finish(0, Success),
        Op::Finish(0, Failure), // 2 of 4 failed: open
        Op::Call,               // rejected
        Op::Advance(100),
        Op::Call, // probe 1
        Op::Call, // probe 2
        Op::Call, // rejected: both slots taken
        Op::Drop(0),
        Op::Call, // probe 3 takes the freed slot
        Op::Finish(0, Success),
        Op::Finish(0, Success), // closed
        Op::Call,
        Op::Advance(60),
        Op::Finish(0, Success), // slow
        Op::Call,
        Op::Finish(0, Success), // 1 of 2 slow: open
        Op::Force(State::MetricsOnly),
        Op::Call,
        Op::Finish(0, Failure),
        Op::Call,
        Op::Finish(0, Failure), // 2 in a row: reported only
        Op::Force(State::Closed),
        Op::Call,
        Op::Finish(0, Success),
        Op::Call,
        Op::Finish(0, Success),
        Op::Call,
        Op::Finish(0, Failure),
        Op::Call,
        Op::Finish(0, Failure), // 2 in a row: open
        Op::Advance(100),
        Op::Call, // probe, never heard of again
        Op::Advance(300),
        Op::Query, // its lease ran out: open
        Op::Advance(100),
        Op::Call,               // probe
        Op::Finish(1, Failure), // fails: open
        Op::Force(State::ForcedOpen),
        Op::Call,
        Op::Force(State::ForcedClosed),
        Op::Call,
    ];
    let events = run(cfg, ops).unwrap();
    use State::*;
    assert_eq!(
        events,
        [
            (Closed, Open, Reason::FailureRate),
            (Open, HalfOpen, Reason::OpenDurationElapsed),
            (HalfOpen, Closed, Reason::ProbesSucceeded),
            (Closed, Open, Reason::SlowCallRate),
            (Open, MetricsOnly, Reason::MetricsOnly),
            (MetricsOnly, MetricsOnly, Reason::ConsecutiveFailures),
            (MetricsOnly, Closed, Reason::Reset),
            (Closed, Open, Reason::ConsecutiveFailures),
            (Open, HalfOpen, Reason::OpenDurationElapsed),
            (HalfOpen, Open, Reason::ProbeLeaseExpired),
            (Open, HalfOpen, Reason::OpenDurationElapsed),
            (HalfOpen, Open, Reason::ProbeFailed),
            (Open, ForcedOpen, Reason::ForcedOpen),
            (ForcedOpen, ForcedClosed, Reason::ForcedClosed),
        ]
    );
}
