//! Outcomes of calls, and the one classification table every layer uses.
//!
//! The table (DESIGN §5), by sets, top to bottom; the first matching row wins:
//!
//! | outcome | breaker | retry |
//! |---|---|---|
//! | JSON-RPC result | success | no |
//! | tool result with `isError: true` | success, unless [`Classifier::tool_error_is_failure`] | no |
//! | transport error, stream ended without its final answer, 502, 503, 504 | failure | if safe |
//! | 429 | failure, unless [`Classifier::rate_limit_is_failure`] is off | if safe, after `Retry-After` |
//! | 408, our [`Elapsed`](crate::error::Elapsed), local code `-31504` in a stream | slow failure | if safe |
//! | 500, other 5xx, JSON-RPC `-32603` | failure | no |
//! | 404 on a request carrying `Mcp-Session-Id` | ignored (session expired) | re-initialize |
//! | 400, 401, 403, 404, 405, 406, 413, 415, 422, other 4xx; `-32700`, `-32600`, `-32601`, `-32602`, `-32099..=-32020` | ignored (caller error) | no |
//! | another tower-armor hop's local code ([`LOCAL_CODES`](crate::error::LOCAL_CODES)) | as the HTTP status in its last three digits (`-31503`: 503), with `-31509` and `-31510` as 503 | as that status |
//! | legacy `-32019..=-32000` and application codes (other `-31xxx` codes included) | ignored, unless listed in [`Classifier::failure_code`] | no |
//! | local rejection: `CircuitOpen`, `RateLimited` | ignored | no |
//! | local rejection: `BulkheadFull` | ignored | yes, with backoff |
//! | the caller dropped the answer | ignored | no |
//! | gRPC `UNAVAILABLE` (14) | failure | if safe |
//! | gRPC `DEADLINE_EXCEEDED` (4) | slow failure | if safe |
//! | gRPC `RESOURCE_EXHAUSTED` (8) | failure, unless [`Classifier::rate_limit_is_failure`] is off | if safe, after `Retry-After` |
//! | gRPC `UNKNOWN`, `INTERNAL`, `DATA_LOSS` | failure | no |
//! | other gRPC statuses (`INVALID_ARGUMENT`, `NOT_FOUND`, `PERMISSION_DENIED`…) | ignored (caller error) | no |
//! | anything else (1xx, 3xx) | ignored | no |
//!
//! "If safe" means the retry layer also checks the method's [`RetrySafety`](crate::RetrySafety).

use std::fmt;

use http::StatusCode;

use crate::error::{
    CODE_BULKHEAD_FULL, CODE_NO_CREDENTIALS, CODE_SHUTTING_DOWN, CODE_TIMEOUT, LocalRejection,
    is_local_code,
};
use crate::jsonrpc;

/// How one call ended, as observed by the shared body wrapper or a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The final JSON-RPC response carried a `result`.
    Success,
    /// The final response was a tool result with `isError: true`.
    ToolError,
    /// The final JSON-RPC response carried an `error` with this code.
    RpcError(i64),
    /// The answer had this non-success HTTP status.
    Status(StatusCode),
    /// A transport error: connection refused or reset, or the body failed.
    Transport,
    /// The stream ended cleanly but without the call's final JSON-RPC response.
    Incomplete,
    /// A local per-call deadline passed.
    Elapsed,
    /// One of our own layers refused the call.
    Rejected(LocalRejection),
    /// The caller dropped the answer before its end (the client went away).
    Cancelled,
    /// A gRPC answer ended with this non-zero `grpc-status`.
    Grpc(i32),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::ToolError => f.write_str("tool error"),
            Outcome::RpcError(c) => write!(f, "JSON-RPC error {c}"),
            Outcome::Status(s) => write!(f, "HTTP {}", s.as_u16()),
            Outcome::Transport => f.write_str("transport error"),
            Outcome::Incomplete => f.write_str("stream ended without a final response"),
            Outcome::Elapsed => f.write_str("timed out"),
            Outcome::Rejected(r) => write!(f, "rejected locally ({r:?})"),
            Outcome::Cancelled => f.write_str("cancelled by the caller"),
            Outcome::Grpc(c) => write!(f, "grpc-status {c}"),
        }
    }
}

/// What a circuit breaker makes of an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerClass {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Counts as a failure and as a slow call.
    SlowFailure,
    /// Not counted: the caller's fault, or not the dependency's.
    Ignored,
}

/// What a retry layer makes of an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Never retried.
    No,
    /// Retried if the call is safe to repeat.
    IfSafe,
    /// Retried if safe, not before the answer's `Retry-After`.
    IfSafeAfterRetryAfter,
    /// A local `BulkheadFull`: retried with backoff (nothing reached the dependency).
    Backoff,
    /// The 2025-11-25 session expired (404 with `Mcp-Session-Id`): the client re-initializes.
    Reinitialize,
}

/// One row's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// For circuit breakers (and metrics).
    pub breaker: BreakerClass,
    /// For retry layers.
    pub retry: RetryClass,
}

impl Verdict {
    const fn new(breaker: BreakerClass, retry: RetryClass) -> Self {
        Verdict { breaker, retry }
    }
}

/// Statuses of transient dependency failures (retried when safe).
pub const TRANSIENT_STATUSES: [StatusCode; 3] = [
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// JSON-RPC codes that are the caller's fault.
pub const CALLER_CODES: [i64; 4] = [
    jsonrpc::PARSE_ERROR,
    jsonrpc::INVALID_REQUEST,
    jsonrpc::METHOD_NOT_FOUND,
    jsonrpc::INVALID_PARAMS,
];

/// Spec-reserved MCP codes (caller errors such as header mismatch, unsupported version).
pub const SPEC_CODES: std::ops::RangeInclusive<i64> = -32099..=-32020;

/// Legacy implementation-defined codes (for example `-32002` resource not found).
pub const LEGACY_CODES: std::ops::RangeInclusive<i64> = -32019..=-32000;

/// The classification table, with its few settings. Cheap to copy; `Default` is the table above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classifier {
    rate_limit_is_failure: bool,
    tool_error_is_failure: bool,
    failure_codes: Vec<i64>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier {
            rate_limit_is_failure: true,
            tool_error_is_failure: false,
            failure_codes: Vec::new(),
        }
    }
}

impl Classifier {
    /// The default table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the dependency limiting the rate (HTTP 429, gRPC `RESOURCE_EXHAUSTED`) counts as
    /// a breaker failure (default: yes).
    pub fn rate_limit_is_failure(mut self, yes: bool) -> Self {
        self.rate_limit_is_failure = yes;
        self
    }

    /// Whether a tool result with `isError: true` counts as a breaker failure (default: no; the
    /// tool ran and reported a problem with its input or its world).
    pub fn tool_error_is_failure(mut self, yes: bool) -> Self {
        self.tool_error_is_failure = yes;
        self
    }

    /// Counts a legacy (`-32019..=-32000`) or application error code as a breaker failure.
    ///
    /// # Errors
    ///
    /// [`TableCode`] for a code the table itself decides (`-32603`, the caller codes,
    /// `-32099..=-32020`, and tower-armor's local codes,
    /// [`LOCAL_CODES`](crate::error::LOCAL_CODES)), which this setting could not change. Other
    /// `-31xxx` codes are an application's own, as any code outside `-32768..=-32000` is.
    pub fn failure_code(mut self, code: i64) -> Result<Self, TableCode> {
        if code == jsonrpc::INTERNAL_ERROR
            || is_local_code(code)
            || CALLER_CODES.contains(&code)
            || SPEC_CODES.contains(&code)
        {
            return Err(TableCode(code));
        }
        if !self.failure_codes.contains(&code) {
            self.failure_codes.push(code);
        }
        Ok(self)
    }

    /// Classifies an outcome. `has_session` says whether the request carried `Mcp-Session-Id`
    /// (a 404 then means the session expired).
    #[inline]
    pub fn classify(&self, outcome: &Outcome, has_session: bool) -> Verdict {
        use BreakerClass as B;
        use RetryClass as R;
        match *outcome {
            Outcome::Success => Verdict::new(B::Success, R::No),
            Outcome::ToolError if self.tool_error_is_failure => Verdict::new(B::Failure, R::No),
            Outcome::ToolError => Verdict::new(B::Success, R::No),
            Outcome::Transport | Outcome::Incomplete => Verdict::new(B::Failure, R::IfSafe),
            Outcome::Elapsed => Verdict::new(B::SlowFailure, R::IfSafe),
            Outcome::Rejected(LocalRejection::BulkheadFull) => Verdict::new(B::Ignored, R::Backoff),
            Outcome::Rejected(_) | Outcome::Cancelled => Verdict::new(B::Ignored, R::No),
            Outcome::Status(s) => self.classify_status(s, has_session),
            Outcome::RpcError(code) => self.classify_code(code, has_session),
            Outcome::Grpc(code) => self.classify_grpc(code),
        }
    }

    fn classify_grpc(&self, code: i32) -> Verdict {
        use BreakerClass as B;
        use RetryClass as R;
        match code {
            0 => Verdict::new(B::Success, R::No),
            // UNAVAILABLE
            14 => Verdict::new(B::Failure, R::IfSafe),
            // DEADLINE_EXCEEDED
            4 => Verdict::new(B::SlowFailure, R::IfSafe),
            // RESOURCE_EXHAUSTED
            8 => Verdict::new(self.rate_limited(), R::IfSafeAfterRetryAfter),
            // UNKNOWN, INTERNAL, DATA_LOSS
            2 | 13 | 15 => Verdict::new(B::Failure, R::No),
            // CANCELLED, INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED,
            // FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, UNAUTHENTICATED, others.
            _ => Verdict::new(B::Ignored, R::No),
        }
    }

    /// What the dependency limiting the rate counts as.
    fn rate_limited(&self) -> BreakerClass {
        if self.rate_limit_is_failure {
            BreakerClass::Failure
        } else {
            BreakerClass::Ignored
        }
    }

    fn classify_status(&self, s: StatusCode, has_session: bool) -> Verdict {
        use BreakerClass as B;
        use RetryClass as R;
        if s.is_success() {
            Verdict::new(B::Success, R::No)
        } else if TRANSIENT_STATUSES.contains(&s) {
            Verdict::new(B::Failure, R::IfSafe)
        } else if s == StatusCode::TOO_MANY_REQUESTS {
            Verdict::new(self.rate_limited(), R::IfSafeAfterRetryAfter)
        } else if s == StatusCode::REQUEST_TIMEOUT {
            Verdict::new(B::SlowFailure, R::IfSafe)
        } else if s.is_server_error() {
            Verdict::new(B::Failure, R::No)
        } else if s == StatusCode::NOT_FOUND && has_session {
            Verdict::new(B::Ignored, R::Reinitialize)
        } else {
            // 4xx: the caller's fault; 1xx/3xx: the default row.
            Verdict::new(B::Ignored, R::No)
        }
    }

    fn classify_code(&self, code: i64, has_session: bool) -> Verdict {
        use BreakerClass as B;
        use RetryClass as R;
        if code == jsonrpc::INTERNAL_ERROR {
            Verdict::new(B::Failure, R::No)
        } else if code == CODE_TIMEOUT {
            // A local timeout written into a stream by a tower-armor layer further in.
            Verdict::new(B::SlowFailure, R::IfSafe)
        } else if code == CODE_BULKHEAD_FULL || code == CODE_SHUTTING_DOWN {
            // Another hop's bulkhead, or a hop shutting down: answered as 503 (509 and 510 are
            // not their statuses), a transient failure of that dependency.
            self.classify_status(StatusCode::SERVICE_UNAVAILABLE, has_session)
        } else if code == CODE_NO_CREDENTIALS {
            // A hop that had no token for its own upstream answered 500.
            self.classify_status(StatusCode::INTERNAL_SERVER_ERROR, has_session)
        } else if is_local_code(code) {
            // Another tower-armor hop answered: its last three digits are the HTTP status.
            match u16::try_from(-code % 1000)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
            {
                Some(s) => self.classify_status(s, has_session),
                None => Verdict::new(B::Ignored, R::No),
            }
        } else if CALLER_CODES.contains(&code) || SPEC_CODES.contains(&code) {
            Verdict::new(B::Ignored, R::No)
        } else if self.failure_codes.contains(&code) {
            Verdict::new(B::Failure, R::No)
        } else {
            // Legacy and application codes.
            Verdict::new(B::Ignored, R::No)
        }
    }
}

/// [`Classifier::failure_code`] was given a code the table decides itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableCode(pub i64);

impl fmt::Display for TableCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JSON-RPC code {} is classified by the table itself; only legacy (-32019..=-32000) \
             and application codes can be made failures",
            self.0
        )
    }
}

impl std::error::Error for TableCode {}

#[cfg(test)]
mod tests {
    use super::*;
    use BreakerClass as B;
    use RetryClass as R;

    fn c(o: Outcome) -> (BreakerClass, RetryClass) {
        let v = Classifier::default().classify(&o, false);
        (v.breaker, v.retry)
    }

    fn st(code: u16) -> Outcome {
        Outcome::Status(StatusCode::from_u16(code).unwrap())
    }

    #[test]
    fn row_success_and_tool_error() {
        assert_eq!(c(Outcome::Success), (B::Success, R::No));
        assert_eq!(c(st(200)), (B::Success, R::No));
        assert_eq!(c(st(202)), (B::Success, R::No));
        assert_eq!(c(Outcome::ToolError), (B::Success, R::No));
        let strict = Classifier::new().tool_error_is_failure(true);
        assert_eq!(
            strict.classify(&Outcome::ToolError, false).breaker,
            B::Failure
        );
    }

    #[test]
    fn row_transport_and_transient_statuses() {
        for o in [
            Outcome::Transport,
            Outcome::Incomplete,
            st(502),
            st(503),
            st(504),
        ] {
            assert_eq!(c(o), (B::Failure, R::IfSafe), "{o}");
        }
    }

    #[test]
    fn row_429() {
        assert_eq!(c(st(429)), (B::Failure, R::IfSafeAfterRetryAfter));
        let lenient = Classifier::new().rate_limit_is_failure(false);
        assert_eq!(
            lenient.classify(&st(429), false),
            Verdict::new(B::Ignored, R::IfSafeAfterRetryAfter)
        );
    }

    #[test]
    fn row_slow() {
        assert_eq!(c(st(408)), (B::SlowFailure, R::IfSafe));
        assert_eq!(c(Outcome::Elapsed), (B::SlowFailure, R::IfSafe));
        assert_eq!(
            c(Outcome::RpcError(CODE_TIMEOUT)),
            (B::SlowFailure, R::IfSafe)
        );
        // Another hop's inspector gave up on our body: the 408 row, however it is seen.
        assert_eq!(
            c(Outcome::RpcError(crate::error::CODE_BODY_TIMEOUT)),
            (B::SlowFailure, R::IfSafe)
        );
    }

    #[test]
    fn row_internal_errors() {
        for o in [
            st(500),
            st(501),
            st(507),
            st(599),
            Outcome::RpcError(-32603),
        ] {
            assert_eq!(c(o), (B::Failure, R::No), "{o}");
        }
    }

    #[test]
    fn row_caller_errors() {
        for s in [400, 401, 403, 404, 405, 406, 409, 413, 415, 422] {
            assert_eq!(c(st(s)), (B::Ignored, R::No), "{s}");
        }
        for code in [-32700, -32600, -32601, -32602, -32099, -32020, -32022] {
            assert_eq!(c(Outcome::RpcError(code)), (B::Ignored, R::No), "{code}");
        }
    }

    #[test]
    fn row_expired_session() {
        let v = Classifier::default().classify(&st(404), true);
        assert_eq!(v, Verdict::new(B::Ignored, R::Reinitialize));
        assert_eq!(c(st(404)), (B::Ignored, R::No));
    }

    #[test]
    fn row_legacy_and_application_codes() {
        for code in [-32019, -32002, -32000, 1, 42, -1] {
            assert_eq!(c(Outcome::RpcError(code)), (B::Ignored, R::No), "{code}");
        }
        let k = Classifier::new().failure_code(-32002).unwrap();
        assert_eq!(
            k.classify(&Outcome::RpcError(-32002), false).breaker,
            B::Failure
        );
        assert_eq!(
            k.classify(&Outcome::RpcError(-32001), false).breaker,
            B::Ignored
        );
        // Codes the table decides itself are refused, not stored to no effect.
        for code in [-32603, -32602, -32700, -32020, -32099, -31504, -31429] {
            assert_eq!(
                Classifier::new().failure_code(code),
                Err(TableCode(code)),
                "{code}"
            );
        }
    }

    #[test]
    fn row_local_rejections() {
        assert_eq!(
            c(Outcome::Rejected(LocalRejection::CircuitOpen)),
            (B::Ignored, R::No)
        );
        assert_eq!(
            c(Outcome::Rejected(LocalRejection::RateLimited)),
            (B::Ignored, R::No)
        );
        assert_eq!(
            c(Outcome::Rejected(LocalRejection::BulkheadFull)),
            (B::Ignored, R::Backoff)
        );
        assert_eq!(c(Outcome::Cancelled), (B::Ignored, R::No));
        assert_eq!(
            c(Outcome::Rejected(LocalRejection::Cancelled)),
            (B::Ignored, R::No)
        );
        assert_eq!(
            c(Outcome::Rejected(LocalRejection::ShuttingDown)),
            (B::Ignored, R::No)
        );
    }

    #[test]
    fn local_codes_from_another_hop_follow_their_status() {
        assert_eq!(c(Outcome::RpcError(-31503)), (B::Failure, R::IfSafe));
        assert_eq!(c(Outcome::RpcError(-31401)), (B::Ignored, R::No));
        // A bulkhead answers 503: its code says 509, which is no status of its.
        assert_eq!(
            c(Outcome::RpcError(CODE_BULKHEAD_FULL)),
            c(Outcome::RpcError(-31503))
        );
        assert_eq!(
            c(Outcome::RpcError(CODE_SHUTTING_DOWN)),
            c(Outcome::RpcError(-31503))
        );
        assert_eq!(
            c(Outcome::RpcError(CODE_NO_CREDENTIALS)),
            c(Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR))
        );
        assert_eq!(
            c(Outcome::Rejected(LocalRejection::NoCredentials)),
            (B::Ignored, R::No)
        );
        assert_eq!(
            c(Outcome::RpcError(-31429)),
            (B::Failure, R::IfSafeAfterRetryAfter)
        );
        // Codes of the range tower-armor defines none of are an application's own (an
        // upstream that is no tower-armor hop): ignored, unless configured as failures.
        for code in [-31200, -31498, -31777, -31000, -31999] {
            assert!(!crate::error::is_local_code(code), "{code}");
            assert_eq!(c(Outcome::RpcError(code)), (B::Ignored, R::No), "{code}");
        }
        // `-31499` is local (a caller that went away): a caller-side 499, never configurable.
        assert_eq!(
            c(Outcome::RpcError(crate::error::CODE_CANCELLED)),
            c(Outcome::Status(http::StatusCode::from_u16(499).unwrap()))
        );
        assert!(
            Classifier::new()
                .failure_code(crate::error::CODE_CANCELLED)
                .is_err()
        );
        let k = Classifier::new().failure_code(-31777).unwrap();
        assert_eq!(
            k.classify(&Outcome::RpcError(-31777), false).breaker,
            B::Failure
        );
    }

    #[test]
    fn grpc_rows() {
        assert_eq!(c(Outcome::Grpc(14)), (B::Failure, R::IfSafe));
        assert_eq!(c(Outcome::Grpc(4)), (B::SlowFailure, R::IfSafe));
        assert_eq!(c(Outcome::Grpc(8)), (B::Failure, R::IfSafeAfterRetryAfter));
        for code in [2, 13, 15] {
            assert_eq!(c(Outcome::Grpc(code)), (B::Failure, R::No));
        }
        for code in [1, 3, 5, 6, 7, 9, 10, 11, 12, 16] {
            assert_eq!(c(Outcome::Grpc(code)), (B::Ignored, R::No), "{code}");
        }
    }

    #[test]
    fn rate_limit_setting_covers_http_and_grpc() {
        let k = Classifier::new().rate_limit_is_failure(false);
        for o in [st(429), Outcome::Grpc(8)] {
            assert_eq!(
                k.classify(&o, false),
                Verdict::new(B::Ignored, R::IfSafeAfterRetryAfter),
                "{o}"
            );
        }
    }

    #[test]
    fn default_row() {
        assert_eq!(c(st(302)), (B::Ignored, R::No));
        assert_eq!(c(st(101)), (B::Ignored, R::No));
    }
}
