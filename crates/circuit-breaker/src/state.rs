//! The breaker's states, the reasons it changes state, and what it reports about itself.

use std::fmt;
use std::sync::Arc;

/// The state of one circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass and their outcomes are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`](tower_armor_mcp::error::CircuitOpen) until the open
    /// duration has passed.
    Open,
    /// A bounded number of probe calls pass; their outcomes decide between closed and open.
    HalfOpen,
    /// Opened by hand (break-glass): every call fails fast until [`Circuit::reset`] or another
    /// forced state.
    ///
    /// [`Circuit::reset`]: crate::Circuit::reset
    ForcedOpen,
    /// Disabled by hand: every call passes and nothing is counted.
    ForcedClosed,
    /// Every call passes; outcomes are counted and a tripped threshold is reported (event and
    /// callback), but the circuit never opens.
    MetricsOnly,
}

impl State {
    pub(crate) const fn to_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::ForcedClosed => 4,
            State::MetricsOnly => 5,
        }
    }

    pub(crate) const fn from_bits(bits: u64) -> State {
        match bits {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::ForcedClosed,
            _ => State::MetricsOnly,
        }
    }

    /// The state's name in events and logs (`closed`, `open`, `half_open`, `forced_open`,
    /// `forced_closed`, `metrics_only`).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::ForcedClosed => "forced_closed",
            State::MetricsOnly => "metrics_only",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The failure rate over the window reached its threshold.
    FailureRate,
    /// The slow-call rate over the window reached its threshold.
    SlowCallRate,
    /// The number of consecutive failures reached its threshold.
    ConsecutiveFailures,
    /// The open duration passed; a call arrived and became the first probe.
    OpenDurationElapsed,
    /// A probe failed (or was slow, when a slow-call policy is set).
    ProbeFailed,
    /// A probe neither completed nor was dropped within the probe lease.
    ProbeLeaseExpired,
    /// Every probe of the half-open period succeeded.
    ProbesSucceeded,
    /// Forced open by hand.
    ForcedOpen,
    /// Forced closed (disabled) by hand.
    ForcedClosed,
    /// Switched to metrics-only by hand.
    MetricsOnly,
    /// Reset by hand.
    Reset,
}

impl Reason {
    /// The reason's name in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::FailureRate => "failure_rate",
            Reason::SlowCallRate => "slow_call_rate",
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::OpenDurationElapsed => "open_duration_elapsed",
            Reason::ProbeFailed => "probe_failed",
            Reason::ProbeLeaseExpired => "probe_lease_expired",
            Reason::ProbesSucceeded => "probes_succeeded",
            Reason::ForcedOpen => "forced_open",
            Reason::ForcedClosed => "forced_closed",
            Reason::MetricsOnly => "metrics_only",
            Reason::Reset => "reset",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The counts a circuit holds: its window and its consecutive-failure counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Calls in the window.
    pub calls: u32,
    /// Failed calls in the window.
    pub failures: u32,
    /// Slow calls in the window (only counted when a slow-call policy is set).
    pub slow_calls: u32,
    /// Failures in a row (only counted when a consecutive-failures policy is set).
    pub consecutive_failures: u32,
}

impl Counts {
    /// `failures / calls`, or `None` with no calls.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| f64::from(self.failures) / f64::from(self.calls))
    }

    /// `slow_calls / calls`, or `None` with no calls.
    pub fn slow_call_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| f64::from(self.slow_calls) / f64::from(self.calls))
    }
}

/// One state change of one circuit, as given to the [transition
/// callback](crate::Builder::on_transition) and logged as a `tracing` event.
///
/// In [metrics-only](State::MetricsOnly) mode a tripped threshold is reported as a transition
/// from `MetricsOnly` to `MetricsOnly` with the trip's reason; the window then starts over.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The circuit's key (`None` for an unkeyed breaker).
    pub key: Option<Arc<str>>,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// Why.
    pub reason: Reason,
    /// The counts when it happened (before the window was cleared).
    pub counts: Counts,
}
