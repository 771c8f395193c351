//! The break-glass handle: list circuits, read their state and counts, force them open or
//! closed, switch them to metrics-only, reset them. No redeploy needed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::core::{Clock, Core};
use crate::layer::Shared;
use crate::state::{Counts, State};

/// Controls the circuits of one [`CircuitBreakerLayer`](crate::CircuitBreakerLayer). Cheap to
/// clone; every clone controls the same circuits.
///
/// Handle-wide controls ([`force_open`](Self::force_open), …) apply to every circuit that
/// exists and to every circuit a keyed breaker creates afterwards, until
/// [`reset`](Self::reset). Per-key controls go through [`Circuit`].
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerHandle")
            .field("circuits", &self.circuits())
            .finish()
    }
}

impl CircuitBreakerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        CircuitBreakerHandle { shared }
    }

    /// Every circuit that exists, sorted by key (an unkeyed breaker has exactly one, with no
    /// key).
    pub fn circuits(&self) -> Vec<Circuit> {
        let mut v: Vec<Circuit> = self
            .shared
            .all()
            .into_iter()
            .map(|core| Circuit { core })
            .collect();
        v.sort_by(|a, b| a.key().cmp(&b.key()));
        v
    }

    /// The circuit of `key` of a keyed breaker, created if calls could use that key (a known
    /// tool, a method, an authority, `unknown`, `other`), so an operator can force a circuit
    /// open before its first call. `None` for other keys (keyed by tool, `tools/call` is one:
    /// tool calls use their tool's circuit) and for an unkeyed breaker.
    pub fn circuit(&self, key: &str) -> Option<Circuit> {
        self.shared.circuit(key).map(|core| Circuit {
            core: Arc::clone(core),
        })
    }

    /// Forces every circuit open: all calls fail fast with `CircuitOpen`.
    pub fn force_open(&self) {
        self.apply(State::ForcedOpen);
    }

    /// Forces every circuit closed (disabled): all calls pass, nothing is counted.
    pub fn force_closed(&self) {
        self.apply(State::ForcedClosed);
    }

    /// Switches every circuit to metrics-only: calls pass and are counted; a tripped threshold
    /// is reported but never opens the circuit.
    pub fn metrics_only(&self) {
        self.apply(State::MetricsOnly);
    }

    /// Resets every circuit to closed with empty counts, and new circuits start closed again.
    pub fn reset(&self) {
        self.apply(State::Closed);
    }

    fn apply(&self, state: State) {
        self.shared.set_mode(state);
        for core in self.shared.all() {
            core.force(state, &mut Clock::new());
        }
    }
}

/// One circuit (one key), as seen and controlled through the [`CircuitBreakerHandle`].
#[derive(Clone)]
pub struct Circuit {
    core: Arc<Core>,
}

impl fmt::Debug for Circuit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Circuit")
            .field("key", &self.key())
            .field("state", &self.state())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Circuit {
    /// The key (`None` for an unkeyed breaker).
    pub fn key(&self) -> Option<&str> {
        self.core.key.as_deref()
    }

    /// The state. An open circuit whose open duration has passed turns half-open when asked (with
    /// its transition event, as if a call had come; the next call is its first probe), and a
    /// probe whose lease ran out is settled first.
    pub fn state(&self) -> State {
        self.core.state(&mut Clock::new())
    }

    /// The counts of the window and the consecutive-failure counter.
    pub fn counts(&self) -> Counts {
        self.core.counts_now(&mut Clock::new())
    }

    /// How long until an open circuit lets a probe through (`None` unless open).
    pub fn retry_after(&self) -> Option<Duration> {
        self.core.retry_after(&mut Clock::new())
    }

    /// Forces this circuit open.
    pub fn force_open(&self) {
        self.core.force(State::ForcedOpen, &mut Clock::new());
    }

    /// Forces this circuit closed (disabled).
    pub fn force_closed(&self) {
        self.core.force(State::ForcedClosed, &mut Clock::new());
    }

    /// Switches this circuit to metrics-only.
    pub fn metrics_only(&self) {
        self.core.force(State::MetricsOnly, &mut Clock::new());
    }

    /// Resets this circuit to closed with empty counts.
    pub fn reset(&self) {
        self.core.force(State::Closed, &mut Clock::new());
    }
}
