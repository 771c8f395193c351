//! tower-armor-rate-limit: in progress.
