//! tower-armor-circuit-breaker: in progress.
