//! Configuration errors.

use std::fmt;

/// A configuration value that cannot be used; names the environment variable when it came from
/// one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    variable: Option<&'static str>,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(variable: Option<&'static str>, reason: String) -> Self {
        ConfigError { variable, reason }
    }

    /// The environment variable that held the bad value, if it came from one.
    pub fn variable(&self) -> Option<&'static str> {
        self.variable
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variable {
            Some(v) => write!(f, "{v}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Header names HTTP, MCP or the other layers give a meaning to: the correlation id must not
/// take one of them, nor any name starting with `mcp-` (MCP's own: `Mcp-Session-Id`,
/// `Mcp-Method`, `Mcp-Param-*`, …). The layer replaces an invalid incoming value and echoes its own on every
/// answer, so as `authorization` it would replace every credential, as `mcp-session-id`
/// overwrite the session the server assigned, and as a key or cookie log a secret in every
/// request span.
pub const RESERVED_HEADERS: [&str; 34] = [
    // Credentials and keys (which the id would log).
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    // SSE resumption (MCP's own `mcp-*` headers are refused by prefix).
    "last-event-id",
    // Trace context (this layer's too).
    "traceparent",
    "tracestate",
    "baggage",
    // Message framing, routing and hop-by-hop fields.
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "accept",
    "accept-encoding",
    "forwarded",
    "x-forwarded-for",
    "origin",
    // What the answers' other layers set.
    "www-authenticate",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "cache-control",
    "x-accel-buffering",
    "location",
    "vary",
    "date",
];

/// Parses a header name for the correlation id: a valid, lowercase-normalised HTTP header name
/// that is none of the [`RESERVED_HEADERS`].
pub(crate) fn header_name(
    value: &str,
    variable: Option<&'static str>,
) -> Result<http::HeaderName, ConfigError> {
    let name = http::HeaderName::from_bytes(value.trim().as_bytes()).map_err(|_| {
        ConfigError::new(variable, format!("not a valid HTTP header name: {value:?}"))
    })?;
    if RESERVED_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("mcp-") {
        return Err(ConfigError::new(
            variable,
            format!(
                "{name} has a meaning of its own in HTTP or MCP (or carries a secret); \
                 pick a name of its own for the correlation id, such as x-request-id"
            ),
        ));
    }
    Ok(name)
}
