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
    if let Some(m) = facts.method() {
        record_current(METHOD, &tracing::field::display(m));
    }
    if let Some(t) = facts.tool() {
        record_current(TOOL, &tracing::field::debug(t));
    }
    if let Some(s) = facts.session_id().and_then(|s| s.to_str().ok()) {
        record_current(SESSION, &s);
    }
}

/// Records the principal in the current span.
pub fn record_principal(p: &Principal) {
    record_current(PRINCIPAL, &p.name());
}

/// Records `value` as the field `name` of the current span, if it has that field. Unlike
/// `Span::current().record(..)` this does not clone (and then close) a handle to the span,
/// which costs two trips through the subscriber's span registry per record.
fn record_current(name: &str, value: &dyn tracing::Value) {
    tracing::dispatcher::get_default(|dispatch| {
        let current = dispatch.current_span();
        let (Some(id), Some(meta)) = (current.id(), current.metadata()) else {
            return;
        };
        let fields = meta.fields();
        if let Some(field) = fields.field(name) {
            let values = [(&field, Some(value))];
            dispatch.record(id, &tracing::span::Record::new(&fields.value_set(&values)));
        }
    });
}
