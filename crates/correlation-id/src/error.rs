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
/// take one of them, nor any name starting with one of the [`RESERVED_PREFIXES`]. The layer
/// replaces an invalid incoming value and echoes its own on every answer, so as
/// `authorization` it would replace every credential, as `mcp-session-id` overwrite the session
/// the server assigned, as `grpc-status` turn every gRPC answer's status into a UUID, and as a
/// key or cookie log a secret in every request span.
pub const RESERVED_HEADERS: [&str; 39] = [
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
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "origin",
    // What the answers' other layers set.
    "www-authenticate",
    "proxy-authenticate",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "cache-control",
    "x-accel-buffering",
    "location",
    "vary",
    "date",
];

/// Prefixes of header families with a meaning of their own, refused as the correlation id's
/// name: MCP's (`Mcp-Session-Id`, `Mcp-Method`, `Mcp-Param-*`, …), gRPC's (`grpc-status`,
/// `grpc-message`, `grpc-timeout`, …: the status of a gRPC answer, which bearer-auth, rate-limit
/// and the timeout set) and CORS's (`access-control-*`).
pub const RESERVED_PREFIXES: [&str; 3] = ["mcp-", "grpc-", "access-control-"];

/// Parses a header name for the correlation id: a valid, lowercase-normalised HTTP header name
/// that is none of the [`RESERVED_HEADERS`] and starts with none of the [`RESERVED_PREFIXES`].
pub(crate) fn header_name(
    value: &str,
    variable: Option<&'static str>,
) -> Result<http::HeaderName, ConfigError> {
    let name = http::HeaderName::from_bytes(value.trim_ascii().as_bytes()).map_err(|_| {
        ConfigError::new(
            variable,
            format!(
                "not a valid HTTP header name: {}",
                tower_armor_mcp::env::shown(value)
            ),
        )
    })?;
    if RESERVED_HEADERS.contains(&name.as_str())
        || RESERVED_PREFIXES
            .iter()
            .any(|p| name.as_str().starts_with(p))
    {
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
