//! tower-armor-sse: in progress.
