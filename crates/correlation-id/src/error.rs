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
/// the server assigned, as `grpc-status` turn every gRPC answer's status into a UUID, as `allow`
/// write its id over a 405's allowed methods, and as a key or cookie log a secret in every
/// request span. The list holds the standard fields a request or an answer of an MCP server
/// can carry; a name of your own (`x-request-id`, `x-correlation-id`, `request-id`) is none.
pub const RESERVED_HEADERS: [&str; 71] = [
    // Credentials, keys and signatures (which the id would log or replace).
    "authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "dpop",
    "signature",
    "signature-input",
    "authentication-info",
    // SSE resumption (MCP's own `mcp-*` headers are refused by prefix).
    "last-event-id",
    // Trace context (this layer's too).
    "traceparent",
    "tracestate",
    "baggage",
    // Message framing, routing and hop-by-hop fields (`content-*` and `proxy-*` by prefix).
    "host",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "accept",
    "expect",
    "max-forwards",
    "via",
    "forwarded",
    "x-real-ip",
    "origin",
    "referer",
    "user-agent",
    "from",
    "dnt",
    "early-data",
    "upgrade-insecure-requests",
    // Ranges, conditions (`if-*` by prefix) and preferences.
    "range",
    "prefer",
    "preference-applied",
    "priority",
    // What the answers' other layers, the server or HTTP itself set.
    "allow",
    "www-authenticate",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "cache-control",
    "pragma",
    "expires",
    "age",
    "etag",
    "last-modified",
    "x-accel-buffering",
    "location",
    "refresh",
    "link",
    "vary",
    "date",
    "server",
    "server-timing",
    "timing-allow-origin",
    "alt-svc",
    "warning",
    "digest",
    "repr-digest",
    "want-digest",
    // Security policies of the answer.
    "strict-transport-security",
    "referrer-policy",
    "permissions-policy",
    "clear-site-data",
    "x-frame-options",
    "x-content-type-options",
    "x-xss-protection",
    "nel",
    "report-to",
];

/// Prefixes of header families with a meaning of their own, refused as the correlation id's
/// name: MCP's (`Mcp-Session-Id`, `Mcp-Method`, `Mcp-Param-*`, …), gRPC's (`grpc-status`,
/// `grpc-message`, `grpc-timeout`, …: the status of a gRPC answer, which bearer-auth, rate-limit
/// and the timeout set), CORS's (`access-control-*`), the body's description
/// (`content-type`, `content-length`, `content-encoding`, `content-range`, …), content
/// negotiation (`accept-*`), conditional requests (`if-match`, `if-none-match`, …), the
/// browser's own (`sec-fetch-*`, `sec-websocket-*`, …), proxies' (`proxy-authorization`,
/// `proxy-connection`, …), cross-origin isolation (`cross-origin-*`), the body's security
/// policy (`content-security-policy` is a `content-*`) and the forwarding fields
/// (`x-forwarded-for`, `x-forwarded-host`, …).
pub const RESERVED_PREFIXES: [&str; 10] = [
    "mcp-",
    "grpc-",
    "access-control-",
    "content-",
    "accept-",
    "if-",
    "sec-",
    "proxy-",
    "cross-origin-",
    "x-forwarded-",
];

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
