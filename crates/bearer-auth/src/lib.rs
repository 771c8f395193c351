//! tower-armor-bearer-auth: in progress.
