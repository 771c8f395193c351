//! tower-armor-bulkhead: in progress.
