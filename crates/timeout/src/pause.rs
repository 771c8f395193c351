//! Matching a client's answer to a server request with the call that is waiting for it.
//!
//! The shared observer counts the server's requests to the client in a call's stream
//! (`elicitation/create`, `sampling/createMessage`…) on the call's
//! [`CompletionHandle`]; the client answers them in separate POSTs of the same 2025-11-25
//! session, which pass through this layer too. A call whose clock is paused registers here
//! under its session; an answer POST in that session counts one server request of the oldest
//! such call as answered ([`CompletionHandle::server_request_answered`]) and wakes its body,
//! whose clock then runs again.
//!
//! Answers are matched by session, not by JSON-RPC id: the observer does not record the ids of
//! the server's requests (and this layer does not parse the stream again to find them). So with
//! several calls of one session waiting at once, an answer may be counted for another waiting
//! call of that session than the one it answers, and an answer to a request of the session's
//! GET stream is counted for a waiting call too. A call without a session is never paused (see
//! the crate docs). In every case the clock's pause budget (`max_pause`) bounds how long
//! a call stays paused, whether or not its answer is ever matched.
//!
//! The table holds only calls that are waiting on the client (and resumed answers of calls
//! that were, from the moment their answer comes), so it is small; its lock is
//! taken when a call starts or stops waiting and for each answer POST, never per frame.

use std::sync::Arc;

use futures_util::task::AtomicWaker;
use http::HeaderValue;
use tower_armor_mcp::CompletionHandle;

use crate::sessions::{BySession, Registered};

/// One call waiting on the client.
#[derive(Debug)]
pub(crate) struct Waiting {
    handle: CompletionHandle,
    pub(crate) waker: AtomicWaker,
}

impl Waiting {
    /// The waiting call's completion handle (its answer's).
    pub(crate) fn handle(&self) -> &CompletionHandle {
        &self.handle
    }

    /// How many of its requests the client has not answered yet.
    pub(crate) fn outstanding(&self) -> u32 {
        self.handle.server_requests_outstanding()
    }
}

/// The table of waiting calls, per session; shared by every service of one layer.
pub(crate) type Pauses = BySession<Waiting>;

/// A call's place in [`Pauses`]; removes it when dropped.
pub(crate) type Registration = Registered<Waiting>;

impl Pauses {
    /// Registers a call of `session` that waits on the client; it stays registered until the
    /// returned guard is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        session: HeaderValue,
        handle: CompletionHandle,
    ) -> Registration {
        self.insert(
            session,
            Waiting {
                handle,
                waker: AtomicWaker::new(),
            },
        )
    }

    /// A resumed call's answer takes over from `from`, the handle of the answer the call's
    /// client answers counted on until now (its dropped answer's, whose place the held call
    /// kept; or the answer a `GET` took the call over from): in one step with the answers
    /// (under the table's lock), the requests still outstanding there move onto `to`, the new
    /// answer's handle, which is registered before. An answer the client gives while
    /// the call is being resumed counts on the old place until then, on the new one after:
    /// never on neither. Returns how many moved.
    pub(crate) fn hand_over(
        &self,
        session: &HeaderValue,
        from: &CompletionHandle,
        to: &CompletionHandle,
    ) -> u32 {
        self.with(session, |_| {
            let mut moved = 0;
            while from.server_request_answered() {
                to.carry_server_request();
                moved += 1;
            }
            moved
        })
        .unwrap_or(0)
    }

    /// A client answered a server request in `session`: counts it for the oldest call of the
    /// session still waiting, and wakes that call. Returns whether one was found.
    pub(crate) fn answered(&self, session: &HeaderValue) -> bool {
        // The count is taken where it is checked (one atomic step): two answers racing for
        // the same call's last outstanding request cannot both count there, leaving another
        // call paused on an answer it already got.
        let found = self
            .with(session, |calls| {
                calls
                    .iter()
                    .find(|w| w.handle.server_request_answered())
                    .cloned()
            })
            .flatten();
        match found {
            Some(w) => {
                w.waker.wake();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle with `n` server requests outstanding, made through the real observer.
    fn waiting_handle(n: usize) -> CompletionHandle {
        use bytes::Bytes;
        use http_body::Body;
        let mut sse = String::new();
        for i in 0..n {
            sse.push_str(&format!(
                "data: {{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"elicitation/create\",\"params\":{{}}}}\n\n"
            ));
        }
        let resp = http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(http_body_util::Full::new(Bytes::from(sse)))
            .unwrap();
        let (resp, handle) = tower_armor_mcp::observe::observe_response(resp, Some(&7.into()));
        let mut body = std::pin::pin!(resp.into_body());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = body.as_mut().poll_frame(&mut cx);
        handle
    }

    #[test]
    fn answers_go_to_the_oldest_waiting_call_of_the_session() {
        let pauses = Arc::new(Pauses::default());
        let s = HeaderValue::from_static("s1");
        let a = waiting_handle(1);
        let b = waiting_handle(1);
        let ra = pauses.register(s.clone(), a.clone());
        let rb = pauses.register(s.clone(), b.clone());
        assert_eq!(pauses.len(), 2);
        assert!(!pauses.answered(&HeaderValue::from_static("other")));
        assert!(pauses.answered(&s));
        assert_eq!(a.server_requests_outstanding(), 0);
        assert_eq!(b.server_requests_outstanding(), 1);
        assert!(pauses.answered(&s));
        assert_eq!(b.server_requests_outstanding(), 0);
        assert!(!pauses.answered(&s), "nobody waits any more");
        assert_eq!(b.server_requests_outstanding(), 0, "never below zero");
        drop(ra);
        drop(rb);
        assert_eq!(pauses.len(), 0);
    }
}
