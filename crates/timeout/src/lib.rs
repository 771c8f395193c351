//! tower-armor-timeout: in progress.
