//! tower-armor-correlation-id: in progress.
