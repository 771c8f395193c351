//! Names of the request span's fields, and helpers that record them.
//!
//! The correlation-id layer opens one span per request with these fields empty; the layers
//! further in record them once they know them (`tracing` ignores a record for a field the current
//! span does not have, so each layer also works alone).

use std::fmt;

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
        record_current(TOOL, &tracing::field::debug(LoggedName(t)));
    }
    if let Some(s) = facts.session_id().and_then(|s| s.to_str().ok()) {
        // Servers make ids of a few dozen characters; a longer one (up to the header limit) is a
        // client's invention, and is cut like a name.
        if s.len() <= MAX_LOGGED_NAME {
            record_current(SESSION, &s);
        } else {
            record_current(SESSION, &tracing::field::display(LoggedName(s)));
        }
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

/// The most bytes of a client-chosen name (an unknown method, a tool name) written into a log
/// line; past it the name is cut and its length given, so that one request cannot make every
/// line of its span as long as its body.
pub const MAX_LOGGED_NAME: usize = 128;

/// A client-chosen name as it goes into logs: escaped like `str`'s `Debug` (quoted, control
/// characters as escapes, so it cannot forge log lines) and cut after [`MAX_LOGGED_NAME`] bytes
/// (at a character boundary), followed by its whole length. `Display` and `Debug` write the same.
///
/// ```
/// use tower_armor_mcp::span::LoggedName;
///
/// assert_eq!(LoggedName("add").to_string(), r#""add""#);
/// let long = "x".repeat(1000);
/// assert_eq!(LoggedName(&long).to_string(), format!("\"{}\"… (1000 bytes)", "x".repeat(128)));
/// ```
#[derive(Clone, Copy)]
pub struct LoggedName<'a>(pub &'a str);

impl fmt::Debug for LoggedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.len() <= MAX_LOGGED_NAME {
            return fmt::Debug::fmt(s, f);
        }
        let mut end = MAX_LOGGED_NAME;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{:?}… ({} bytes)", &s[..end], s.len())
    }
}

impl fmt::Display for LoggedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_names_are_escaped_and_cut_at_a_character_boundary() {
        assert_eq!(LoggedName("a\nb").to_string(), r#""a\nb""#);
        // 127 ASCII bytes, then a 3-byte character across the cut.
        let name = format!("{}€tail", "a".repeat(127));
        let shown = LoggedName(&name).to_string();
        assert_eq!(
            shown,
            format!("\"{}\"… ({} bytes)", "a".repeat(127), name.len())
        );
        let hostile = "\n".repeat(100_000);
        assert!(LoggedName(&hostile).to_string().len() < 300);
    }
}
