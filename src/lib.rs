//! Root test package of tower-armor: owns `tests/` and `examples/`; no library code.
