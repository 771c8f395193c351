//! [`CallDrain`]: ending every call when a server's drain deadline passes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tower_armor_mcp::Outcome;
use tower_armor_mcp::error::{BoxError, Elapsed, LocalRejection, ShuttingDown};
use tower_armor_mcp::signal::{Signal, SignalWait};

use crate::cancel::{REASON_SHUTDOWN, REASON_TIMEOUT};
use crate::resume::Held;

/// Ends every call of one [`TimeoutLayer`](crate::TimeoutLayer) at once, for a server whose
/// drain deadline passed (see the [crate docs](crate#shutdown)). Get it from
/// [`TimeoutLayer::drain_handle`](crate::TimeoutLayer::drain_handle); clones share the switch.
///
/// After [`CallDrain::end_calls`], a call in flight ends as at its deadline, with
/// [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown) (503, `-31510`) instead of `Elapsed`:
/// before its answer's headers the inner future is dropped and the call fails with that error
/// (an answer the inner service had ready is kept, unless it is a 5xx: a server being shut down
/// answers with its own error then); inside an SSE answer the stream gets one final event
/// carrying that error for the call's id (at an event boundary; a frame already waiting, which
/// may be the final message, is looked at first) and ends; a 2025-11-25 call is sent
/// `notifications/cancelled`, and so is a call held for its client to resume it. Any request
/// that reaches the layer afterwards (a call that waited in a bulkhead's line, a listen stream,
/// a session's `tools/list` or notification) is refused with the same error without reaching the
/// inner service: a server cancelling its sessions would answer a session's request 404, which
/// tells a client to start a new session on a server that is leaving.
///
/// Cost per call: each poll checks the switch with one atomic load; a response future or body
/// that has to wait registers its task's waker once (a [`Signal`]).
///
/// Before that, while the calls in flight may still finish, [`CallDrain::refuse_new_calls`]
/// turns new work away with the same error: a request that would start a call (a JSON-RPC
/// request, `initialize` included; any gRPC call) or a long-lived stream is refused without reaching the inner
/// service, while what concerns the calls in flight passes: a client's answer to a server
/// request (an elicitation a person answered), notifications (`notifications/cancelled`), a
/// session's `DELETE`, a `GET` resuming a call's stream, `ping`, the `tasks/*` requests
/// that poll, fetch or cancel a task-augmented call, and reads of the catalogue (`tools/list`,
/// `resources/list`, `resources/templates/list`, `prompts/list`, `server/discover`: a client
/// may need them to read a call's answer). So a server can keep taking connections
/// during its grace (a client's follow-up about a call often comes on a new one) without
/// starting anything new; a load balancer retries the refused calls elsewhere. The switch acts
/// where this layer sits: a call that was still waiting in a bulkhead's line outside it when
/// the drain began is refused when it gets there, like a new one.
#[derive(Clone, Debug, Default)]
pub struct CallDrain {
    signal: Signal,
    new_calls_refused: Arc<AtomicBool>,
    held: Arc<Held>,
}

impl CallDrain {
    /// The switch of a layer whose dropped calls wait in `held`.
    pub(crate) fn new(held: Arc<Held>) -> Self {
        CallDrain {
            held,
            ..CallDrain::default()
        }
    }

    /// How many 2025-11-25 calls whose caller dropped the answer wait for it to resume them
    /// (within [`resume_grace`](crate::TimeoutBuilder::resume_grace)): their tools run, and
    /// their clients will come back on a new connection. A draining server with no connection
    /// left stays reachable while this is not zero.
    pub fn calls_awaiting_resumption(&self) -> usize {
        self.held.len()
    }

    /// Refuses every request that would start a call or a long-lived stream, from now on; calls
    /// in flight, and what concerns them, go on (see above). Idempotent; [`end_calls`] later
    /// ends what is still running.
    ///
    /// [`end_calls`]: CallDrain::end_calls
    pub fn refuse_new_calls(&self) {
        self.new_calls_refused.store(true, Ordering::Relaxed);
    }

    /// Whether [`CallDrain::refuse_new_calls`] (or [`CallDrain::end_calls`]) was called: the
    /// server is draining (for a readiness check).
    pub fn refuses_new_calls(&self) -> bool {
        self.new_calls_refused.load(Ordering::Relaxed) || self.is_ended()
    }

    /// Ends every call in flight now and refuses every later call; a call held for its client to
    /// resume it is cancelled now too. Idempotent.
    pub fn end_calls(&self) {
        self.signal.fire();
        self.held.end_all();
    }

    /// Whether [`CallDrain::end_calls`] was called.
    pub fn is_ended(&self) -> bool {
        self.signal.is_fired()
    }

    /// Ready once [`CallDrain::end_calls`] was called (at once if it was); otherwise `wait`
    /// holds the task's waker until then.
    pub(crate) fn poll_ended(&self, wait: &mut SignalWait, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll_fired(wait, cx)
    }
}

/// What ended a call the layer gave up on: its own deadline or the server's drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Deadline,
    Drain,
}

impl Ending {
    /// The error of a call that ends so before its headers, or of a body that must be cut.
    pub(crate) fn error(self) -> BoxError {
        match self {
            Ending::Deadline => Elapsed::new().into(),
            Ending::Drain => ShuttingDown::new().into(),
        }
    }

    /// What the call's completion handle records.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Ending::Deadline => Outcome::Elapsed,
            // No fault of the server: breakers ignore it.
            Ending::Drain => Outcome::Rejected(LocalRejection::ShuttingDown),
        }
    }

    /// The `reason` of the `notifications/cancelled` a 2025-11-25 call is sent.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Ending::Deadline => REASON_TIMEOUT,
            Ending::Drain => REASON_SHUTDOWN,
        }
    }

    /// The JSON-RPC code and message of the final error event.
    pub(crate) fn code_and_message(self) -> (i64, &'static str) {
        use tower_armor_mcp::error::{CODE_SHUTTING_DOWN, CODE_TIMEOUT};
        match self {
            Ending::Deadline => (CODE_TIMEOUT, "request timed out"),
            Ending::Drain => (CODE_SHUTTING_DOWN, "server shutting down"),
        }
    }
}
