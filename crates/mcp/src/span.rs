//! Names of the request span's fields, and helpers that record them.
//!
//! The correlation-id layer opens one span per request with these fields empty; the layers
//! further in record them once they know them (`tracing` ignores a record for a field the current
//! span does not have, so each layer also works alone).

use crate::{McpRequest, Principal};

/// The authenticated principal's name.
pub const PRINCIPAL: &str = "principal";
/// The JSON-RPC method.
pub const METHOD: &str = "mcp.method";
/// The tool of a `tools/call`.
pub const TOOL: &str = "mcp.tool";
/// The 2025-11-25 session id.
pub const SESSION: &str = "mcp.session";

/// Records the request's method, tool and session in the current span.
pub fn record_request(facts: &McpRequest) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    if let Some(m) = facts.method() {
        span.record(METHOD, tracing::field::display(m));
    }
    if let Some(t) = facts.tool() {
        span.record(TOOL, tracing::field::debug(t));
    }
    if let Some(s) = facts.session_id().and_then(|s| s.to_str().ok()) {
        span.record(SESSION, s);
    }
}

/// Records the principal in the current span.
pub fn record_principal(p: &Principal) {
    tracing::Span::current().record(PRINCIPAL, p.name());
}
