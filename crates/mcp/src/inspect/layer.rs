use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::in_flight::InFlightIds;
use super::parse::Limits;
use super::service::McpInspect;

/// Applies [`McpInspect`]: see the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use tower_armor_mcp::inspect::McpInspectLayer;
/// let layer = McpInspectLayer::new()
///     .max_body_bytes(1 << 20)
///     .body_timeout(Duration::from_secs(10));
/// # let _ = layer;
/// ```
///
/// # Body-read deadline
///
/// The inspector reads the whole body before any layer inside it sees the request, so rate
/// limits and bulkheads further in do not count a request whose body is still arriving. A
/// client that sends its headers and then trickles the body (slowloris) would hold the
/// connection, a task and up to [`max_body_bytes`](Self::max_body_bytes) of buffer for as long
/// as it likes. [`body_timeout`](Self::body_timeout) bounds that read (default
/// [30 s](Self::DEFAULT_BODY_TIMEOUT)): past it the inspector answers 408 +
/// [`CODE_BODY_TIMEOUT`](crate::error::CODE_BODY_TIMEOUT) with `id: null` and the correlation id
/// (when a `CorrelationId` extension is present) in `data`, and `Connection: close` on HTTP/1
/// (the rest of the body is never read, so the connection cannot be reused). The inner service
/// is never called.
///
/// It bounds only the body read, never the call: once the body is in, the deadline is gone. It
/// is a deadline for the whole body, not an idle timeout, so a trickle of bytes does not extend
/// it. It counts from the first poll that finds the body not ready; a body already complete
/// when the request is called (one ready frame) never sets a timer. The timer is a Tokio
/// `Sleep`: a slow body needs a Tokio runtime with time enabled (as hyper servers have).
///
/// # Ids in progress
///
/// A request of a session (2025-11-25 and earlier revisions) whose id is still in progress in
/// that session (MCP forbids reusing an id within a session) gets 400 + `-32600` with that id,
/// and never reaches the server. rmcp keeps one answer slot per id: the second request would
/// take the first one's, one of them would wait unanswered until the call deadline, and those
/// timeouts, counted as failures of a tool that did nothing wrong, could open its circuit for
/// every client.
///
/// An id is in progress while its [`InProgress`](super::InProgress) mark lives, in any clone:
/// the inspector's, until the answer has ended (the answer's
/// [`CompletionHandle`](crate::CompletionHandle), which per-call layers further in, such as the
/// circuit breaker, bulkhead or timeout, put on every call's answer; an answer without one has
/// ended when its headers arrive); the request's extensions, for as long as the server keeps
/// them (rmcp: while a tool that takes `Extension<Parts>` or its `RequestContext` runs); and the
/// timeout layer's, while it holds a dropped call for resumption and until the server has read
/// the `notifications/cancelled` it sends. A tool that takes neither and ignores its
/// cancellation runs on after its answer is gone; its late result would go to a request that
/// reused the id meanwhile (which MCP forbids).
///
/// The table holds a keyed hash per call, at most
/// [`max_in_flight_ids`](Self::max_in_flight_ids) of them (about 1.2 MiB at the default);
/// beyond that calls go on untracked. Clones of the layer share the table.
#[derive(Clone, Debug)]
pub struct McpInspectLayer {
    pub(crate) max_body: usize,
    pub(crate) limits: Limits,
    /// `None`: no deadline.
    pub(crate) body_timeout: Option<Duration>,
    /// `None`: ids in progress are not tracked.
    pub(crate) in_flight: Option<Arc<InFlightIds>>,
}

impl Default for McpInspectLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl McpInspectLayer {
    /// The default body limit: 4 MiB.
    pub const DEFAULT_MAX_BODY: usize = 4 << 20;
    /// The default limit on a string id's length: 256 bytes.
    pub const DEFAULT_MAX_ID_LEN: usize = 256;
    /// The default body-read deadline: 30 seconds.
    pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// The longest body-read deadline: one day. Longer settings are cut to it.
    pub const MAX_BODY_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default bound of the table of ids in progress: 65,536 calls (about 1.2 MiB when
    /// full).
    pub const DEFAULT_MAX_IN_FLIGHT_IDS: usize = 1 << 16;

    /// A layer with the defaults: 4 MiB bodies read within 30 s, ids up to 256 bytes, unknown
    /// protocol versions rejected, ids in progress tracked for up to 65,536 calls.
    pub fn new() -> Self {
        McpInspectLayer {
            max_body: Self::DEFAULT_MAX_BODY,
            limits: Limits {
                max_id_len: Self::DEFAULT_MAX_ID_LEN,
                reject_unknown_versions: true,
            },
            body_timeout: Some(Self::DEFAULT_BODY_TIMEOUT),
            in_flight: Some(Arc::new(InFlightIds::new(Self::DEFAULT_MAX_IN_FLIGHT_IDS))),
        }
    }

    /// The largest request body read; larger ones get 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long the request body may take to arrive; past it the inspector answers 408 (see
    /// [Body-read deadline](Self#body-read-deadline)). Default
    /// [30 s](Self::DEFAULT_BODY_TIMEOUT).
    ///
    /// `Duration::ZERO` turns the deadline off (the `0 = off` of the crate's settings). A
    /// duration above [`MAX_BODY_TIMEOUT`](Self::MAX_BODY_TIMEOUT) (one day) is cut to it, with
    /// a warning: a longer deadline is no bound at all.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = if timeout.is_zero() {
            None
        } else if timeout > Self::MAX_BODY_TIMEOUT {
            tracing::warn!(
                requested_secs = timeout.as_secs(),
                max_secs = Self::MAX_BODY_TIMEOUT.as_secs(),
                "McpInspectLayer::body_timeout above one day; using one day"
            );
            Some(Self::MAX_BODY_TIMEOUT)
        } else {
            Some(timeout)
        };
        self
    }

    /// The longest string id accepted; longer ones get 400 + `-32600`.
    pub fn max_id_len(mut self, len: usize) -> Self {
        self.limits.max_id_len = len;
        self
    }

    /// Passes requests with an unknown `MCP-Protocol-Version` inward (with no revision in their
    /// facts) instead of answering 400 + `-32022`. Use when the inner server speaks revisions
    /// newer than this crate knows.
    pub fn allow_unknown_versions(mut self) -> Self {
        self.limits.reject_unknown_versions = false;
        self
    }

    /// How many calls the table of ids in progress tracks at most (see
    /// [Ids in progress](Self#ids-in-progress)); `0` turns the check off. Default
    /// [65,536](Self::DEFAULT_MAX_IN_FLIGHT_IDS). Starts a new table, shared by the clones
    /// made from here on.
    pub fn max_in_flight_ids(mut self, max: usize) -> Self {
        self.in_flight = (max > 0).then(|| Arc::new(InFlightIds::new(max)));
        self
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }
}

impl<S> Layer<S> for McpInspectLayer {
    type Service = McpInspect<S>;

    fn layer(&self, inner: S) -> McpInspect<S> {
        McpInspect::new(inner, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_timeout_defaults_turns_off_and_clamps() {
        let l = McpInspectLayer::new;
        assert_eq!(
            l().body_timeout,
            Some(McpInspectLayer::DEFAULT_BODY_TIMEOUT)
        );
        let d = Duration::from_millis(1500);
        assert_eq!(l().body_timeout(d).body_timeout, Some(d));
        assert_eq!(l().body_timeout(Duration::ZERO).body_timeout, None);
        let max = McpInspectLayer::MAX_BODY_TIMEOUT;
        assert_eq!(l().body_timeout(max).body_timeout, Some(max));
        for long in [max + Duration::from_nanos(1), Duration::MAX] {
            assert_eq!(l().body_timeout(long).body_timeout, Some(max));
        }
        // Off, then on again.
        let again = l().body_timeout(Duration::ZERO).body_timeout(d);
        assert_eq!(again.body_timeout, Some(d));
    }

    #[test]
    fn clones_share_the_in_flight_table_and_zero_turns_it_off() {
        let l = McpInspectLayer::new();
        let c = l.clone();
        assert!(Arc::ptr_eq(
            l.in_flight.as_ref().unwrap(),
            c.in_flight.as_ref().unwrap()
        ));
        assert!(l.max_in_flight_ids(0).in_flight.is_none());
    }
}
