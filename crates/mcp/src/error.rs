//! Local errors: failures that tower-armor itself produces, each with its HTTP status, its JSON-RPC
//! code and, where it helps the caller, a `Retry-After`.
//!
//! Local codes live in `-31999..=-31000`, outside JSON-RPC's reserved `-32768..=-32000`, so a
//! client can never mistake a middleware answer for the peer's own error (MCP 2026-07-28 asks
//! for exactly that). The last three digits repeat the HTTP status.
//!
//! | error | HTTP status | JSON-RPC code | `Retry-After` |
//! |---|---|---|---|
//! | [`Unauthorized`] | 401 | `-31401` | no |
//! | [`Forbidden`] (reserved: no layer returns it today) | 403 | `-31403` | no |
//! | the request body did not arrive in time (answered by the inspector itself, see [`CODE_BODY_TIMEOUT`]) | 408 | `-31408` | no |
//! | [`PayloadTooLarge`] | 413 | `-31413` | no |
//! | [`RateLimited`] | 429 | `-31429` | yes, whole seconds rounded up, at least 1 |
//! | [`CircuitOpen`] | 503 | `-31503` | yes (time until a probe may pass) |
//! | [`BulkheadFull`] | 503 | `-31509` | no |
//! | [`ShuttingDown`] | 503 | `-31510` | no |
//! | [`Elapsed`] | 504 | `-31504` | no |
//! | a second standalone `GET` stream of a session (the SSE layer, [`CODE_STREAM_CONFLICT`]) | 409 | `-31409` | no |
//! | [`CancelledInLine`] (answered as a server answers a call it cancelled: 200 and an SSE stream that ends without a message) | 200 | (`-31499`, not sent) | no |
//! | a late resumption of a call the timeout layer cancelled because its client went away (the end of the server's replay) | 200 (SSE) | `-31499` in the stream (`-31504` if its deadline had passed) | no |
//! | [`TokenUnavailable`], [`InvalidToken`] (a client had no usable token for an outgoing call) | 500 | `-31520` | no |
//! | anything else (see [`local_error`]) | 502 | `-31502` | no |
//! | the stack is misconfigured (a layer misses what it needs, e.g. no inspector facts, no peer address) | 500 | `-31500` | no |
//!
//! Call-plane layers fail with `BoxError` wrapping one of these structs; the rescue layer turns
//! them into answers.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

/// The boxed error type of call-plane layers.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// JSON-RPC code for [`Unauthorized`].
pub const CODE_UNAUTHORIZED: i64 = -31401;
/// JSON-RPC code for [`Forbidden`].
pub const CODE_FORBIDDEN: i64 = -31403;
/// JSON-RPC code of the inspector's 408: the request body did not arrive within
/// [`McpInspectLayer::body_timeout`](crate::inspect::McpInspectLayer::body_timeout). The client's
/// fault (or its network's), answered before the call plane: no breaker or retry layer inside the
/// inspector ever sees it.
pub const CODE_BODY_TIMEOUT: i64 = -31408;
/// JSON-RPC code of the SSE layer's 409: a second standalone `GET` stream for a session that
/// has one open (the official TypeScript and Python servers refuse it the same way).
pub const CODE_STREAM_CONFLICT: i64 = -31409;
/// JSON-RPC code for [`PayloadTooLarge`].
pub const CODE_PAYLOAD_TOO_LARGE: i64 = -31413;
/// JSON-RPC code for [`RateLimited`].
pub const CODE_RATE_LIMITED: i64 = -31429;
/// JSON-RPC code for a misconfigured stack: a layer did not get what it needs from the layers
/// around it (for example no `McpRequest` because the inspector is missing, or no peer address).
pub const CODE_MISCONFIGURED: i64 = -31500;
/// JSON-RPC code for an upstream failure with no more specific local error.
pub const CODE_BAD_GATEWAY: i64 = -31502;
/// JSON-RPC code for [`CircuitOpen`].
pub const CODE_CIRCUIT_OPEN: i64 = -31503;
/// JSON-RPC code for [`Elapsed`].
pub const CODE_TIMEOUT: i64 = -31504;
/// JSON-RPC code for [`BulkheadFull`].
pub const CODE_BULKHEAD_FULL: i64 = -31509;
/// JSON-RPC code for [`ShuttingDown`] (answered with 503, like the other two `-315xx` codes
/// above 503: the breaker has `-31503`).
pub const CODE_SHUTTING_DOWN: i64 = -31510;
/// JSON-RPC code for [`TokenUnavailable`] and [`InvalidToken`]: the client side had no usable
/// token, so the call was never sent (500: this side's fault, not the peer's).
pub const CODE_NO_CREDENTIALS: i64 = -31520;
/// The code of [`CancelledInLine`] (nginx's "client closed request"), for logs and the
/// classification table (its answer carries no JSON-RPC message); and of the final error the
/// timeout layer adds to a late resumption of a call it cancelled because its client went away.
pub const CODE_CANCELLED: i64 = -31499;

/// tower-armor's local codes: the `CODE_*` constants of this module. Their last three digits
/// are an HTTP status (`-31503`: 503), which a layer further out reads when another
/// tower-armor hop answered.
pub const LOCAL_CODES: [i64; 14] = [
    CODE_UNAUTHORIZED,
    CODE_FORBIDDEN,
    CODE_BODY_TIMEOUT,
    CODE_STREAM_CONFLICT,
    CODE_PAYLOAD_TOO_LARGE,
    CODE_RATE_LIMITED,
    CODE_CANCELLED,
    CODE_MISCONFIGURED,
    CODE_BAD_GATEWAY,
    CODE_CIRCUIT_OPEN,
    CODE_TIMEOUT,
    CODE_BULKHEAD_FULL,
    CODE_SHUTTING_DOWN,
    CODE_NO_CREDENTIALS,
];

/// Whether a JSON-RPC code is one of tower-armor's local codes ([`LOCAL_CODES`]). Any other
/// code, in the `-31xxx` range too, is an application's own: JSON-RPC leaves codes outside
/// `-32768..=-32000` to applications, and an upstream that is no tower-armor hop may use them.
pub fn is_local_code(code: i64) -> bool {
    LOCAL_CODES.contains(&code)
}

/// What every local error tells the layer that answers for it.
pub trait LocalError: Error + Send + Sync + 'static {
    /// The HTTP status of the answer.
    fn status(&self) -> StatusCode;
    /// The JSON-RPC error code (outside `-32768..=-32000`).
    fn code(&self) -> i64;
    /// When the caller may try again, if known.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
    /// Which local rejection this is, for the classification table.
    fn rejection(&self) -> Option<LocalRejection> {
        None
    }
    /// The message the caller gets (the JSON-RPC error's `message`, a gRPC status's): by
    /// default the error's text. [`CircuitOpen`] and [`BulkheadFull`] leave their key out: keyed
    /// by upstream it is an address the caller has no business knowing. Logs, the handles and
    /// the error itself keep it.
    fn public_message(&self) -> String {
        self.to_string()
    }
}

/// Local rejections: our own refusals, never the dependency's fault (see the classification
/// table in [`crate::classify`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocalRejection {
    /// The circuit breaker is open.
    CircuitOpen,
    /// The bulkhead had no room.
    BulkheadFull,
    /// The rate limit was exceeded.
    RateLimited,
    /// The client cancelled the call while it waited in line ([`CancelledInLine`]).
    Cancelled,
    /// The server is shutting down and ended the call or refused it ([`ShuttingDown`]).
    ShuttingDown,
    /// A client layer had no usable token for the outgoing call ([`TokenUnavailable`],
    /// [`InvalidToken`]): the call was never sent, so it says nothing of the peer's health.
    NoCredentials,
}

/// Rounds a duration up to whole seconds, at least 1: the `Retry-After` header value.
pub fn retry_after_secs(d: Duration) -> u64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

macro_rules! simple_error {
    ($(#[$m:meta])* $name:ident, $msg:expr, $status:expr, $code:expr $(, $rejection:expr)?) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl $name {
            /// Creates the error.
            pub fn new() -> Self {
                $name
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($msg)
            }
        }

        impl Error for $name {}

        impl LocalError for $name {
            fn status(&self) -> StatusCode {
                $status
            }
            fn code(&self) -> i64 {
                $code
            }
            $(
                fn rejection(&self) -> Option<LocalRejection> {
                    Some($rejection)
                }
            )?
        }
    };
}

simple_error!(
    /// The request carried no valid credentials (401).
    Unauthorized,
    "unauthorized",
    StatusCode::UNAUTHORIZED,
    CODE_UNAUTHORIZED
);
simple_error!(
    /// The principal may not do this (403).
    Forbidden,
    "forbidden",
    StatusCode::FORBIDDEN,
    CODE_FORBIDDEN
);
simple_error!(
    /// A per-call deadline passed before the call's final answer (504).
    Elapsed,
    "request timed out",
    StatusCode::GATEWAY_TIMEOUT,
    CODE_TIMEOUT
);

/// The client cancelled the call (a 2025-11-25 `notifications/cancelled` naming it, in its
/// session) while it waited in a bulkhead's line: it never reached the server.
///
/// [`RescueLayer`](crate::RescueLayer) answers it as a server answers a call it cancelled:
/// `200` and an SSE stream that ends without a message (MCP: no response to a cancelled
/// request). The caller's choice: never a breaker failure, never retried.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CancelledInLine;

impl CancelledInLine {
    /// Creates the error.
    pub fn new() -> Self {
        CancelledInLine
    }
}

impl fmt::Display for CancelledInLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled by the client while waiting in line")
    }
}

impl Error for CancelledInLine {}

impl LocalError for CancelledInLine {
    fn status(&self) -> StatusCode {
        StatusCode::OK
    }
    fn code(&self) -> i64 {
        CODE_CANCELLED
    }
    fn rejection(&self) -> Option<LocalRejection> {
        Some(LocalRejection::Cancelled)
    }
}

/// The request body exceeded the configured limit (413).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadTooLarge {
    /// The limit in bytes.
    pub limit: usize,
}

impl PayloadTooLarge {
    /// Creates the error for a limit in bytes.
    pub fn new(limit: usize) -> Self {
        PayloadTooLarge { limit }
    }
}

impl fmt::Display for PayloadTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request body exceeds {} bytes", self.limit)
    }
}

impl Error for PayloadTooLarge {}

impl LocalError for PayloadTooLarge {
    fn status(&self) -> StatusCode {
        StatusCode::PAYLOAD_TOO_LARGE
    }
    fn code(&self) -> i64 {
        CODE_PAYLOAD_TOO_LARGE
    }
}

/// A rate limit was exceeded (429).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// When the next request would be allowed.
    pub retry_after: Duration,
}

impl RateLimited {
    /// Creates the error.
    pub fn new(retry_after: Duration) -> Self {
        RateLimited { retry_after }
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited; retry after {} s",
            retry_after_secs(self.retry_after)
        )
    }
}

impl Error for RateLimited {}

impl LocalError for RateLimited {
    fn status(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }
    fn code(&self) -> i64 {
        CODE_RATE_LIMITED
    }
    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
    fn rejection(&self) -> Option<LocalRejection> {
        Some(LocalRejection::RateLimited)
    }
}

/// The circuit breaker for `key` is open: the call failed fast without reaching the dependency
/// (503).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    /// The breaker key (tool, method or upstream), if the breaker is keyed.
    pub key: Option<Arc<str>>,
    /// Time until the breaker lets a probe through.
    pub retry_after: Duration,
}

impl CircuitOpen {
    /// Creates the error.
    pub fn new(key: Option<Arc<str>>, retry_after: Duration) -> Self {
        CircuitOpen { key, retry_after }
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "circuit open for {k:?}"),
            None => f.write_str("circuit open"),
        }
    }
}

impl Error for CircuitOpen {}

impl LocalError for CircuitOpen {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> i64 {
        CODE_CIRCUIT_OPEN
    }
    fn retry_after(&self) -> Option<Duration> {
        Some(self.retry_after)
    }
    fn rejection(&self) -> Option<LocalRejection> {
        Some(LocalRejection::CircuitOpen)
    }
    fn public_message(&self) -> String {
        String::from("circuit open")
    }
}

/// The bulkhead had no free slot and its queue was full, or the wait limit passed (503).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkheadFull {
    /// The bulkhead key, if the bulkhead is keyed.
    pub key: Option<Arc<str>>,
}

impl BulkheadFull {
    /// Creates the error.
    pub fn new(key: Option<Arc<str>>) -> Self {
        BulkheadFull { key }
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "bulkhead full for {k:?}"),
            None => f.write_str("bulkhead full"),
        }
    }
}

impl Error for BulkheadFull {}

impl LocalError for BulkheadFull {
    fn status(&self) -> StatusCode {
        StatusCode::SERVICE_UNAVAILABLE
    }
    fn code(&self) -> i64 {
        CODE_BULKHEAD_FULL
    }
    fn rejection(&self) -> Option<LocalRejection> {
        Some(LocalRejection::BulkheadFull)
    }
    fn public_message(&self) -> String {
        String::from("bulkhead full")
    }
}

simple_error!(
    /// The server is shutting down: its drain deadline passed while the call ran, or the call came
    /// after it (503). Nothing about the dependency's health: this stack's own breaker never counts
    /// it (a local rejection). Seen from a tower-armor hop further out, whose dependency this
    /// server is, another hop's `-31510` counts like a 503 (that dependency is unavailable; retry
    /// elsewhere), see the classification table. A client may try again on another replica or
    /// once the server is back.
    ShuttingDown,
    "server shutting down",
    StatusCode::SERVICE_UNAVAILABLE,
    CODE_SHUTTING_DOWN,
    LocalRejection::ShuttingDown
);

/// A client's [`TokenSource`](crate::TokenSource) failed: the request was not sent (500,
/// [`CODE_NO_CREDENTIALS`]). The source's error is kept as [`source`](Error::source); it is not
/// part of the message, which is all an answer shows.
///
/// A local rejection: a breaker never counts it against the peer (a secret store's outage is not
/// the upstream's), and it is not retried.
#[derive(Debug)]
pub struct TokenUnavailable {
    source: BoxError,
}

impl TokenUnavailable {
    /// Wraps the token source's error.
    pub fn new(source: BoxError) -> Self {
        TokenUnavailable { source }
    }
}

impl fmt::Display for TokenUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no bearer token available for the outgoing request")
    }
}

impl Error for TokenUnavailable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

impl LocalError for TokenUnavailable {
    fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
    fn code(&self) -> i64 {
        CODE_NO_CREDENTIALS
    }
    fn rejection(&self) -> Option<LocalRejection> {
        Some(LocalRejection::NoCredentials)
    }
}

simple_error!(
    /// The token from a client's [`TokenSource`](crate::TokenSource) cannot be sent: empty, or
    /// not an RFC 6750 `b64token` (a character a header or a bearer credential may not hold).
    /// The request was not sent (500, [`CODE_NO_CREDENTIALS`]); a local rejection, like
    /// [`TokenUnavailable`].
    InvalidToken,
    "bearer token is empty or not a valid b64token",
    StatusCode::INTERNAL_SERVER_ERROR,
    CODE_NO_CREDENTIALS,
    LocalRejection::NoCredentials
);

/// Finds the local error inside a boxed error, looking through `source()` chains.
///
/// Returns `None` for any other error; the rescue layer answers those with 502 and
/// [`CODE_BAD_GATEWAY`].
pub fn local_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a dyn LocalError> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        macro_rules! try_as {
            ($($t:ty),*) => {$(
                if let Some(l) = e.downcast_ref::<$t>() {
                    return Some(l);
                }
            )*};
        }
        try_as!(
            CircuitOpen,
            BulkheadFull,
            RateLimited,
            Elapsed,
            PayloadTooLarge,
            Unauthorized,
            Forbidden,
            CancelledInLine,
            ShuttingDown,
            TokenUnavailable,
            InvalidToken
        );
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_outside_the_reserved_range() {
        let errs: Vec<Box<dyn LocalError>> = vec![
            Box::new(Unauthorized),
            Box::new(Forbidden),
            Box::new(PayloadTooLarge::new(1)),
            Box::new(RateLimited::new(Duration::from_millis(1))),
            Box::new(CircuitOpen::new(None, Duration::ZERO)),
            Box::new(BulkheadFull::new(None)),
            Box::new(ShuttingDown),
            Box::new(Elapsed),
            Box::new(InvalidToken),
        ];
        let mut seen = std::collections::HashSet::new();
        for e in &errs {
            assert!(!(-32768..=-32000).contains(&e.code()), "{e}");
            assert!(is_local_code(e.code()));
            assert!(seen.insert(e.code()), "duplicate code {}", e.code());
            assert_eq!(
                (-e.code()) % 1000 / 100,
                i64::from(e.status().as_u16()) / 100
            );
        }
        assert!(!is_local_code(-32603));
        // Answered by the inspector, not a `LocalError`: same scheme, unused by the others.
        assert!(is_local_code(CODE_BODY_TIMEOUT));
        assert_eq!(-CODE_BODY_TIMEOUT % 1000, 408);
        assert!(!seen.contains(&CODE_BODY_TIMEOUT));
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn local_error_finds_through_boxes() {
        let e: BoxError = Box::new(Elapsed);
        assert_eq!(local_error(&*e).unwrap().code(), CODE_TIMEOUT);
        let e: BoxError = Box::new(std::io::Error::other("x"));
        assert!(local_error(&*e).is_none());
    }
}
