//! [`CallDrain`]: ending every call when a server's drain deadline passes.

use tokio_util::sync::CancellationToken;

/// Ends every call of one [`TimeoutLayer`](crate::TimeoutLayer) at once, for a server whose
/// drain deadline passed (see the [crate docs](crate#shutdown)). Get it from
/// [`TimeoutLayer::drain_handle`](crate::TimeoutLayer::drain_handle); clones share the switch.
///
/// After [`CallDrain::end_calls`], a call in flight ends as at its deadline, with
/// [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown) (503, `-31510`) instead of `Elapsed`:
/// before its answer's headers the inner future is dropped and the call fails with that error;
/// inside an SSE answer the stream gets one final event carrying that error for the call's id
/// (at an event boundary) and ends; a 2025-11-25 call is sent `notifications/cancelled`. A call
/// that reaches the layer afterwards is refused with the same error without reaching the inner
/// service (a call that waited in a bulkhead's line never starts). Long-lived streams and
/// other requests pass as before.
#[derive(Clone, Debug, Default)]
pub struct CallDrain {
    token: CancellationToken,
}

impl CallDrain {
    /// Ends every call in flight now and refuses every later call. Idempotent.
    pub fn end_calls(&self) {
        self.token.cancel();
    }

    /// Whether [`CallDrain::end_calls`] was called.
    pub fn is_ended(&self) -> bool {
        self.token.is_cancelled()
    }

    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }
}
