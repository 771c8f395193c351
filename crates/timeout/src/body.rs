//! [`TimeoutBody`]: the answer's body under the call's deadline.
//!
//! It forwards every frame of the inner body untouched and at once. The deadline keeps running
//! after the headers, until the call's [`CompletionHandle`] completes (the final JSON-RPC
//! response passed, the body failed or ended). When the deadline passes first:
//!
//! - **SSE answer** (`text/event-stream`), at an event boundary: the inner body is dropped (under
//!   2026-07-28 that cancels the call), the handle completes with [`Outcome::Elapsed`], a
//!   2025-11-25 session call is sent `notifications/cancelled`, and the body ends with one
//!   last event of its own:
//!   `data: {"jsonrpc":"2.0","id":<id>,"error":{"code":-31504,"message":"request timed out"}}`
//!   (with `"data":{"correlationId":…}` when the request had one). A frame the server has
//!   already sent is looked at first, as the response future prefers a ready answer to its
//!   deadline: when it holds the call's final message the call ends with it (no error after a
//!   result); another event in it passes whole, and the layer gives up after it, unless it
//!   moved the deadline (progress under reset-on-progress, a server request that pauses the
//!   clock): then the call runs on.
//! - **SSE answer, in the middle of an event**: that event is forwarded to its end first (an
//!   event cannot be interrupted without corrupting it), for at most the boundary grace; a frame
//!   that ends one event and starts another is cut after the boundary (the cut part is the
//!   beginning of an event the caller would never see whole). If the grace passes with no
//!   boundary, the body fails with [`Elapsed`] instead: the connection is cut and the partial
//!   event is discarded by the client.
//! - **gRPC answer** (`application/grpc`, `application/grpc+<codec>`): the answer gets the
//!   boundary grace to reach a message boundary (a message in progress is forwarded to its
//!   end; a frame that ends it and starts another is cut after it) and, from there, for its
//!   status: if the server's own trailers come within the grace (a unary reply sent just
//!   before the deadline, or being sent at it), they pass and the call ends with its own
//!   status. Otherwise (more data, or the grace's end) the inner body is dropped (which ends
//!   the call in a gRPC server), the handle completes with [`Outcome::Elapsed`], and the body
//!   ends at that boundary with trailers of its own, `grpc-status: 4` (`DEADLINE_EXCEEDED`)
//!   and a `grpc-message`: what a gRPC caller expects of a deadline. Past the grace with a
//!   message unfinished, the body fails with [`Elapsed`] (the stream is reset).
//! - **Any other answer** (a JSON body still being read): the body fails with [`Elapsed`] (there
//!   is no way to add a message to a JSON body).
//!
//! The server's drain ([`CallDrain::end_calls`](crate::CallDrain::end_calls)) is a deadline too:
//! for an SSE or gRPC answer at once (a frame already waiting, which may be its final message,
//! gets the same look and grace as at the deadline, so a stream that always has a frame ready
//! cannot outlast the drain), for any other answer once no frame of it is ready: the same steps,
//! with [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown) (`-31510`, "server shutting down") in the final event and as the body's
//! error (`grpc-status: 14`, `UNAVAILABLE`, in a gRPC answer's trailers), and a local rejection
//! as the handle's outcome instead of `Elapsed`.
//!
//! Writing that one final event (or a gRPC answer's trailers) is the only thing this layer writes
//! into a stream, apart from
//! the final error of a late resumption of a call it cancelled (its client went away, or its
//! deadline passed inside the stream), at the end of what the server replays, at an event
//! boundary.
//!
//! If the caller drops a 2025-11-25 SSE answer before its final message, the call is sent
//! `notifications/cancelled` too (the client went away; otherwise the tool keeps running).
//!
//! [`Elapsed`]: tower_armor_mcp::error::Elapsed
//! [`Outcome::Elapsed`]: tower_armor_mcp::Outcome::Elapsed

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_armor_mcp::error::{BoxError, CODE_CANCELLED};
use tower_armor_mcp::inspect::event_stream;
use tower_armor_mcp::signal::SignalWait;
use tower_armor_mcp::sse::SseParser;
use tower_armor_mcp::{CompletionHandle, Continuation, CorrelationId, Outcome, RequestId};

use crate::calls::CallEntry;
use crate::cancel::{CancelTarget, REASON_ENDED, REASON_GONE, REASON_TIMEOUT};
use crate::clock::{Clock, after};
use crate::drain::{CallDrain, Ending};
use crate::grpc::{self, GrpcFrames};
use crate::pause::{Pauses, Registration};
use crate::resume::{Gone, Held, Keeps};

/// A boundary-only SSE parser: events are not collected (1 byte kept per line and event), but
/// lines and fields are tracked exactly, which is all [`SseParser::at_boundary`] needs.
fn boundary_parser() -> SseParser {
    SseParser::new(1)
}

/// How an answer's body is framed, which decides how the layer can end it early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// SSE: a final error event at an event boundary.
    Sse,
    /// gRPC: trailers at a message boundary.
    Grpc,
    /// Anything else: the body fails.
    Plain,
}

/// What a call carries from its request to its answer's body.
pub(crate) struct CallState {
    pub(crate) id: Option<RequestId>,
    pub(crate) clock: Clock,
    pub(crate) cancel: Option<CancelTarget>,
    pub(crate) correlation: Option<CorrelationId>,
    /// The 2025-11-25 session, for matching the client's answers to server requests.
    pub(crate) session: Option<(HeaderValue, std::sync::Arc<Pauses>)>,
    /// The 2025-11-25 call's place in the table the client's cancellations are matched with.
    pub(crate) entry: Option<CallEntry>,
    pub(crate) grace: Duration,
    /// For a call a `notifications/cancelled` can cancel: where a dropped call's cancellation
    /// is held, and for how long (the resume grace, maybe zero).
    pub(crate) resume: Option<(std::sync::Arc<Held>, Duration)>,
    /// The call's answer is known to be lost if the stream ends without a final message for
    /// the id (a late resumption of a call the layer cancelled because its client went away or
    /// its deadline passed; a resumption the server had nothing for): one final error is added
    /// then, saying which.
    pub(crate) late: Option<Late>,
    /// The stream part of the answer's event ids (rmcp's `<index>/<stream>`), once seen: what
    /// a resuming `GET` names.
    pub(crate) stream: Option<Box<str>>,
    /// The layer's drain switch ([`CallDrain`](crate::CallDrain)).
    pub(crate) drain: CallDrain,
    /// A resumed call: the continuations of the answers it was dropped from, which keep what
    /// those calls held (their bulkhead permits) until this answer ends too.
    pub(crate) continues: Vec<Continuation>,
    /// A `GET` that took the call over from this answer in flight
    /// ([`Calls::take_over`](crate::calls::Calls::take_over)).
    pub(crate) taken_from: Option<std::sync::Arc<crate::calls::Entry>>,
    /// This answer's own hold on the call (for a call the layer may cancel), taken when its
    /// answer comes and again, naming the stream, once its stream is known (a `GET` could
    /// resume it): should the answer end or be dropped before the call's final response, what
    /// the call holds (its bulkhead permit) stays taken while the layer holds the call for
    /// resumption or until the server has read its cancellation.
    pub(crate) own: Option<Continuation>,
    /// A resumed call that waits on its client: how many of its requests (an elicitation)
    /// the client has not answered, which the resumed stream does not replay.
    pub(crate) waiting: u32,
    /// Where a resumed call's client answers counted until this answer came: what it takes
    /// over from (then `waiting` is what is still outstanding there).
    pub(crate) prior: Option<Prior>,
}

/// Where the answers to a resumed call's requests counted before its new answer came.
#[derive(Debug)]
pub(crate) enum Prior {
    /// The place among the waiting calls its dropped answer kept while the call was held.
    Held(Registration),
    /// The answer a `GET` took the call over from (registered by its own body while that
    /// body lives).
    TakenFrom(CompletionHandle),
}

impl Prior {
    fn handle(&self) -> &CompletionHandle {
        match self {
            Prior::Held(r) => r.entry.handle(),
            Prior::TakenFrom(h) => h,
        }
    }
}

impl fmt::Debug for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallState")
            .field("id", &self.id)
            .field("wake_at", &self.clock.wake_at())
            .field("cancellable", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

impl CallState {
    /// Whether this answers a `GET` that resumed a held call (it carries the call's
    /// continuations).
    pub(crate) fn is_resumed(&self) -> bool {
        !self.continues.is_empty()
    }

    /// Sends `notifications/cancelled` if this call needs it and it was not sent yet (and no
    /// `GET` took the call over: the call is the `GET`'s to cancel now).
    pub(crate) fn send_cancel(&mut self, reason: &'static str) {
        if let Some(t) = self.cancel.take()
            && !self.is_moved()
        {
            let holds = self.take_continues();
            t.send_holding(reason, holds);
        }
    }

    /// The server ended this answer without the call's final response (or the answer broke:
    /// a body error), with no cancellation by its client and no resumption taking the call
    /// over. Under 2025-11-25 that ends no
    /// tool: the server may want the client to resume (SEP-1699 polling: rmcp's
    /// `close_sse_stream`), or rmcp moved the rest of the call to a stream nobody reads (a
    /// resumption it then answered with nothing). Either way the call is treated as if its
    /// caller had dropped the answer ([`CallState::gone`]): held for the resume grace, else
    /// cancelled at once (its late resumption then gets a final error for its id).
    ///
    /// A resumption the server could not serve (rmcp answers one for a call already over, or
    /// an index past its cache, with a stream that ends at once, nothing in it: `!served`) is
    /// not held again: the client's next resumption would be answered so too, keeping the
    /// call's hold all the while. The call is cancelled at once; returns `Some(timed out)`
    /// then, for the final error the answer ends with.
    pub(crate) fn ended_without_response(
        &mut self,
        handle: &CompletionHandle,
        pause: Option<Registration>,
        served: bool,
    ) -> Option<bool> {
        tracing::debug!(id = ?self.id, "answer ended without its response");
        if self.source_answered() {
            return None;
        }
        let hold = served || !self.is_resumed();
        self.let_go(Some(handle), REASON_ENDED, pause, hold)
    }

    /// Whether this `GET` took its call over from an answer that then carried the call's final
    /// response after all (the server had not moved the call yet): the call is over, nothing is
    /// cancelled or told, and what it held goes.
    pub(crate) fn source_answered(&mut self) -> bool {
        if !self.taken_from.as_ref().is_some_and(|s| s.answered()) {
            return false;
        }
        tracing::debug!(id = ?self.id, "the answer this resumption took over from carried the result");
        self.cancel = None;
        drop(self.take_continues());
        true
    }

    /// The layer ends this call at its deadline inside its answer (its final timeout event is
    /// on the way): remembered like a call cancelled because its client went away, so that a
    /// client that missed that event (its connection broke at the deadline) and resumes the
    /// stream gets rmcp's replay and then the same error, not a stream without a final message.
    /// Only a call the layer is to cancel (2025-11-25, in a session, not taken over by a `GET`)
    /// whose stream a `GET` can name.
    pub(crate) fn remember_timed_out(&mut self) {
        let Some(t) = &self.cancel else {
            return;
        };
        if self.is_moved() {
            return;
        }
        if let (Some((held, _)), Some(stream), Some((session, _))) =
            (&self.resume, self.stream.take(), &self.session)
        {
            let gone = Gone {
                id: t.id().clone(),
                timed_out: true,
            };
            held.bury(session.clone(), stream, gone);
        }
    }

    /// What this answer holds for the answers it continues, taken (its entry's copy for a
    /// `GET` taking the call over goes too), and its own hold.
    pub(crate) fn take_continues(&mut self) -> Vec<Continuation> {
        if !self.continues.is_empty()
            && let Some(entry) = &self.entry
        {
            entry.set_carried(&[]);
        }
        let mut holds = std::mem::take(&mut self.continues);
        holds.extend(self.own.take());
        holds
    }

    /// Whether a `GET` resuming this call's stream took it over while this answer was in
    /// flight ([`Calls::take_over`](crate::calls::Calls::take_over)).
    fn is_moved(&self) -> bool {
        self.entry.as_ref().is_some_and(CallEntry::is_moved)
    }

    /// The caller dropped the answer before its final message: the call is cancelled, at once
    /// or, with a resume grace and a stream a `GET` can name, once the grace passes unless the
    /// client resumes the stream first. A held call keeps going (`handle`'s continuation), so
    /// what it holds outside this layer (a bulkhead permit) stays taken until it is resumed and
    /// ends, or is cancelled.
    pub(crate) fn gone(&mut self, handle: Option<&CompletionHandle>) {
        self.let_go(handle, REASON_GONE, None, true);
    }

    /// [`CallState::gone`] for an answer whose call waits on its client (`pause`: its place
    /// among the calls waiting on their clients, kept while the call is held, so that an
    /// answer the client gives meanwhile still counts).
    pub(crate) fn gone_waiting(&mut self, handle: &CompletionHandle, pause: Option<Registration>) {
        self.let_go(Some(handle), REASON_GONE, pause, true);
    }

    /// This answer lets go of the call ([`CallState::gone`]; not held if `!hold`); `reason`
    /// names why in a cancellation sent at once, which keeps what the answer holds for the
    /// call until the server has read it. Returns `Some(timed out)` if the call was cancelled
    /// and remembered for its late resumption.
    fn let_go(
        &mut self,
        handle: Option<&CompletionHandle>,
        reason: &'static str,
        pause: Option<Registration>,
        hold: bool,
    ) -> Option<bool> {
        let t = self.cancel.take()?;
        if self.is_moved() {
            // A `GET` took the call over: it is that answer's to hold or cancel.
            return None;
        }
        if handle.is_some_and(CompletionHandle::is_cancel_requested) {
            // The client cancelled the call itself (or ended its session) before letting go of
            // its answer: nothing is left to resume, and the layer sends no cancellation of
            // its own (should the server refuse the client's, `Marked::withdraw` sends it).
            return None;
        }
        let (Some((held, grace)), Some(stream), Some((session, _))) =
            (&self.resume, self.stream.take(), &self.session)
        else {
            // No stream a `GET` could name: nothing to resume; cancelled at once (what the
            // call holds stays taken until the server has read the cancellation).
            let timed_out = self.clock.expired(Instant::now());
            let reason = if timed_out { REASON_TIMEOUT } else { reason };
            t.send_holding(reason, self.take_continues());
            return Some(timed_out);
        };
        // A call past its deadline is not held either: its hold would end at once (and its
        // timer could fire before a `GET` racing this drop was told apart from it); nor once
        // the drain has ended the calls (nothing could resume it).
        if grace.is_zero() || !hold || self.clock.expired(Instant::now()) || self.drain.is_ended() {
            // Cancelled at once; a late resumption gets a final error for the id (the timeout's,
            // if the deadline had passed: dropped while the layer waited for an event boundary).
            let timed_out = self.clock.expired(Instant::now());
            let gone = Gone {
                id: t.id().clone(),
                timed_out,
            };
            held.bury(session.clone(), stream, gone);
            let reason = if timed_out { REASON_TIMEOUT } else { reason };
            t.send_holding(reason, self.take_continues());
            return Some(timed_out);
        }
        // The first drop keeps this answer's hold; a resumed answer dropped again keeps the
        // first one's (the call's own), not its own on top (the resuming `GET`'s).
        let own = self.own.take();
        let mut continues = std::mem::take(&mut self.continues);
        if continues.is_empty() {
            match (own, handle) {
                (Some(own), _) => continues.push(own),
                (None, Some(h)) => continues.push(h.continuation_resumable_as(&stream)),
                (None, None) => {}
            }
        }
        let keeps = Keeps {
            continues,
            // A resumption that failed before its answer came still has the place the call
            // kept while it was held: kept again (answers given meanwhile counted there).
            pause: pause.or_else(|| match self.prior.take() {
                Some(Prior::Held(r)) => Some(r),
                _ => None,
            }),
            waiting: self.waiting,
        };
        let named = stream.clone();
        match held.hold(session.clone(), stream, t, self.clock, *grace, keeps) {
            Err(t) => t.send(REASON_GONE),
            // Held first, then released: a `GET` racing this drop either took the call over
            // before the release (the hold is taken back: the `GET` carries the call) or finds
            // it held (see `Timeout::call`, which looks there again when the take-over finds
            // nothing).
            Ok(hold) => {
                if self.entry.as_ref().is_some_and(|e| !e.release()) {
                    held.unhold(session, &named, hold);
                }
            }
        }
        None
    }
}

/// The message of the final error of a late resumption of a call cancelled because its client
/// went away.
pub(crate) const LATE_MESSAGE: &str = "request abandoned: its client went away and did not resume it in time; \
     it was cancelled if it still ran, and any result is lost";

/// The message of the final error of a resumption the server had nothing for (the call ended
/// while its client was away, and rmcp keeps no answer of a call that is over).
pub(crate) const LOST_MESSAGE: &str = "request's answer lost: the server's stream ended without it \
     (a call that ends while its client is away leaves no answer to replay); its result is not known";

/// The message of the final error of an answer the server ended early, without the call's
/// response, when there is no resume grace to wait for the client to resume it (or no stream
/// it could name yet): the layer cancelled the call.
pub(crate) const ENDED_MESSAGE: &str = "request abandoned: the server ended its stream without the \
     answer, and the call was cancelled; any result is lost";

/// Why an answer may end without its call's final message ([`CallState::late`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Late {
    /// A late resumption of a call the layer cancelled because its client went away (or, with
    /// `timed_out`, its deadline passed).
    Gone { timed_out: bool },
    /// A resumption the server answered with nothing: the call ended meanwhile.
    Lost { timed_out: bool },
    /// The server ended the call's first answer early, and the layer, with no grace to hold it
    /// for a resumption (or no stream a resumption could name), cancelled it.
    Ended { timed_out: bool },
}

/// The bytes of the final error event: the call's deadline passed, or the drain deadline.
fn final_error_event(
    id: Option<&RequestId>,
    correlation: Option<&CorrelationId>,
    ending: Ending,
) -> Bytes {
    let (code, message) = ending.code_and_message();
    tower_armor_mcp::sse::error_event(id, code, message, correlation)
}

/// Feeds `data` line by line and returns the end of the last event boundary in it, if any.
fn feed_to_boundary(parser: &mut SseParser, data: &[u8]) -> Option<usize> {
    let mut last = None;
    for (end, line) in tower_armor_mcp::sse::lines(data) {
        parser.feed(line, |_| {});
        if parser.at_boundary() {
            last = Some(end);
        }
    }
    last
}

pin_project! {
    /// The response body of [`Timeout`](crate::Timeout); see the [module docs](self).
    ///
    /// Its error type is [`BoxError`]: the inner body's errors, boxed, or [`Elapsed`] (at the
    /// drain, [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown)).
    pub struct TimeoutBody<B> {
        #[pin]
        kind: Kind<B>,
    }

    impl<B> PinnedDrop for TimeoutBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let KindProj::Timed { state, .. } = this.project().kind.project() {
                state.dropped();
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough {
            #[pin]
            body: B,
        },
        Timed {
            #[pin]
            body: B,
            #[pin]
            sleep: Sleep,
            state: Timed,
        },
        // The call's outcome came with the headers (an error status, an answer neither JSON
        // nor SSE), but its body must still end by the deadline.
        Bounded {
            #[pin]
            body: B,
            #[pin]
            sleep: Sleep,
        },
        Ending {
            last: Option<Last>,
        },
    }
}

enum Last {
    Event(Bytes),
    /// A gRPC answer's trailers.
    Trailers(HeaderMap),
    /// The body fails with the ending's error ([`Ending::error`]).
    Error(Ending),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The deadline runs.
    Running,
    /// The deadline passed in the middle of an SSE event (or a gRPC message): waiting for its
    /// end.
    Grace,
    /// A gRPC answer past its deadline at a message boundary (when the deadline came, or once
    /// the message in progress ended in the grace): the server's trailers (the call's status)
    /// may come next, and pass if they come within the grace; more data or the grace's end
    /// gives up (the layer's trailers).
    Settling,
    /// Gave up at a boundary that a frame just reached: the final event (or trailers) comes
    /// next.
    Finishing,
    /// The call ended (or the layer gave up): frames pass, nothing else happens.
    Finished,
}

struct Timed {
    handle: CompletionHandle,
    call: CallState,
    /// For SSE answers: tracks event boundaries.
    sse: Option<SseParser>,
    /// For gRPC answers: tracks message boundaries.
    grpc: Option<GrpcFrames>,
    phase: Phase,
    /// The instant the sleep is set to. There always is one: a pause is bounded too.
    armed: Instant,
    pause: Option<Registration>,
    /// The drain deadline ended the call (not its own deadline).
    drained: bool,
    /// Who held the call up, for the outcome at its deadline.
    waits: Waits,
    /// Where the body waits for the server's drain.
    drain_wait: SignalWait,
    /// Any bytes of the answer passed.
    carried: bool,
    /// The answer was ever not ready (a server that cannot serve a resumption answers with a
    /// stream that ends at once).
    pended: bool,
    /// The deadline passed at an event boundary: the next frame, if one is ready now, may be
    /// the call's final message, so the layer looks at it once before giving up.
    peek: bool,
}

/// The least time waiting on the caller that counts as the caller holding a call up.
const CALLER_HOLD_MIN: Duration = Duration::from_millis(50);

/// How long the answer waited on the caller, against how long it has run since its deadline was
/// last set (progress that resets the deadline, or the end of a pause, starts a new window), and
/// whether the deadline passed during such a wait.
///
/// An HTTP server polls a body again as soon as it can take another frame; one whose caller
/// does not read (its socket and write buffer full) is polled again only once the caller has
/// read enough. So the time from a poll that handed out a frame to the next poll is time the
/// answer spent waiting on the caller, while the server's stream backed up behind it. When that
/// is at least half of the answer's time at its deadline, the call ran out of time on the
/// caller's side: it still ends with the timeout error, but with the caller's outcome
/// ([`Outcome::Cancelled`](tower_armor_mcp::Outcome::Cancelled), which a breaker ignores)
/// instead of a slow failure of the server. Otherwise one client that reads a tool's streams
/// slowly, or not at all, could open that tool's circuit for everyone. The same holds when the
/// deadline passed during a wait on the caller (the first poll after it ends that wait). A wait
/// counts only from [`CALLER_HOLD_MIN`] on. One clock read per poll.
struct Waits {
    started: Instant,
    /// The last poll's start.
    last_poll: Instant,
    /// The last poll handed out a frame.
    handed: bool,
    on_caller: Duration,
    /// The wait on the caller that this poll ended: from the previous poll, which handed out a
    /// frame, to this one's start (zero if the previous poll handed out nothing).
    hold: Duration,
    /// The deadline that passed, once the call waits for the end of an event (its grace).
    due: Option<Instant>,
}

impl Waits {
    fn new() -> Self {
        let now = Instant::now();
        Waits {
            started: now,
            last_poll: now,
            handed: false,
            on_caller: Duration::ZERO,
            hold: Duration::ZERO,
            due: None,
        }
    }

    /// A poll starts.
    fn polled(&mut self) {
        let now = Instant::now();
        self.hold = if self.handed {
            now.saturating_duration_since(self.last_poll)
        } else {
            Duration::ZERO
        };
        self.on_caller += self.hold;
        self.last_poll = now;
        self.handed = false;
    }

    /// The deadline moved: judge from `now` on.
    fn restart(&mut self, now: Instant) {
        self.started = now;
        self.on_caller = Duration::ZERO;
    }

    /// Whether the caller held the call up, by a hold long enough to be one at all (a reading
    /// caller's HTTP server comes back for the next frame within microseconds): the deadline
    /// (`due`) passed while the caller held the answer (it stopped reading, and this is the first
    /// poll since), or holds took half of the current window or more (it reads slowly).
    fn caller_bound(&self, due: Instant) -> bool {
        let hold_began = self.last_poll.checked_sub(self.hold);
        let held_at_deadline =
            self.hold >= CALLER_HOLD_MIN && hold_began.is_some_and(|began| due > began);
        let mostly_held = self.on_caller >= CALLER_HOLD_MIN
            && self.on_caller * 2 >= self.last_poll.saturating_duration_since(self.started);
        held_at_deadline || mostly_held
    }
}

impl<B> TimeoutBody<B> {
    /// A body the layer does not time (not a call, a long-lived stream, or an empty answer).
    /// (An answer whose headers told the outcome still ends by the deadline: see the crate
    /// docs' table.)
    pub fn passthrough(body: B) -> Self {
        TimeoutBody {
            kind: Kind::Passthrough { body },
        }
    }

    /// A body whose call ended with its headers (the outcome is known): it passes untouched
    /// until `deadline`, then fails with [`Elapsed`] (a stream that never stalls too). An empty
    /// body is not timed.
    pub(crate) fn bounded(body: B, deadline: Instant) -> Self
    where
        B: Body,
    {
        if body.is_end_stream() {
            return TimeoutBody::passthrough(body);
        }
        TimeoutBody {
            kind: Kind::Bounded {
                body,
                sleep: tokio::time::sleep_until(deadline),
            },
        }
    }

    pub(crate) fn timed(
        body: B,
        handle: CompletionHandle,
        mut call: CallState,
        framing: Framing,
    ) -> Self {
        call.clock.seen_progress(handle.progress_count());
        // A resumption took on a call waiting on its client (an elicitation a person may be
        // answering, which the resumed stream does not replay): it waits on, until the client's
        // answer comes (or the pause budget ends), instead of its clock running again at once.
        let mut pause = None;
        match (&call.session, call.prior.take()) {
            // Where its client's answers counted meanwhile (its dropped answer's kept place, or
            // the answer it took the call over from): this answer takes a place first, then what
            // is still outstanding there.
            (Some((session, pauses)), Some(prior)) => {
                let own = pauses.register(session.clone(), handle.clone());
                pauses.hand_over(session, prior.handle(), &handle);
                drop(prior);
                pause = Some(own);
            }
            (Some(_), None) => {
                for _ in 0..call.waiting {
                    handle.carry_server_request();
                }
            }
            (None, _) => {}
        }
        if framing == Framing::Sse
            && call.cancel.is_some()
            && call.own.is_none()
            && !call.is_resumed()
        {
            // A hold from the start (the one taken once the stream is named replaces it): a
            // call let go before its stream is named keeps what it holds (its bulkhead permit)
            // until the server has read its cancellation too.
            call.own = Some(handle.continuation());
        }
        let armed = call.clock.wake_at();
        let sleep = tokio::time::sleep_until(armed);
        TimeoutBody {
            kind: Kind::Timed {
                body,
                sleep,
                state: Timed {
                    handle,
                    call,
                    sse: (framing == Framing::Sse).then(boundary_parser),
                    grpc: (framing == Framing::Grpc).then(GrpcFrames::default),
                    phase: Phase::Running,
                    armed,
                    pause,
                    drained: false,
                    waits: Waits::new(),
                    drain_wait: SignalWait::default(),
                    carried: false,
                    pended: false,
                    peek: false,
                },
            },
        }
    }

    /// Whether the body's deadline is running (it is timed and the call has not ended).
    pub fn is_timed(&self) -> bool {
        matches!(&self.kind, Kind::Timed { state, .. } if state.phase != Phase::Finished)
    }
}

impl<B> fmt::Debug for TimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TimeoutBody");
        match &self.kind {
            Kind::Passthrough { .. } => d.field("kind", &"passthrough"),
            Kind::Bounded { sleep, .. } => d
                .field("kind", &"bounded")
                .field("deadline", &sleep.deadline()),
            Kind::Timed { state, .. } => d
                .field("kind", &"timed")
                .field("phase", &state.phase)
                .field("call", &state.call),
            Kind::Ending { .. } => d.field("kind", &"ending"),
        };
        d.finish()
    }
}

enum Step {
    Frame(Poll<Option<Result<Frame<Bytes>, BoxError>>>),
    End(Last),
}

impl Timed {
    /// Brings the call's clock up to what the observer has counted: progress (which starts the
    /// deadline anew under reset-on-progress) and the server's requests outstanding (which
    /// pause it).
    fn sync_clock(&mut self) {
        let progress = self.handle.progress_count();
        // Only a call of a 2025-11-25 session can be answered: its client POSTs the answer in
        // the session. Without one (2026-07-28 has no server requests to answer; a sessionless
        // server has nowhere to route an answer) nothing could end a pause, so the deadline
        // keeps running.
        let outstanding = match &self.call.session {
            Some(_) => self.handle.server_requests_outstanding(),
            None => 0,
        };
        if self.call.clock.changed(progress, outstanding) {
            let now = Instant::now();
            let before = self.call.clock.wake_at();
            self.call.clock.update(now, progress, outstanding);
            if let Some(entry) = &self.call.entry {
                // What a `GET` taking the call over goes on with.
                entry.set_clock(self.call.clock);
            }
            if self.call.clock.wake_at() != before {
                // The deadline moved (progress, a pause): who held the call up is judged over
                // the new window only.
                self.waits.restart(now);
            }
        }
    }

    /// Re-reads the answer's counters: progress resets, pauses, resumptions; re-arms the sleep.
    fn tick(&mut self, sleep: Pin<&mut Sleep>, cx: &mut Context<'_>) {
        if self.phase != Phase::Running {
            return;
        }
        // Register before reading the counters, so an answer in between still wakes us.
        if let Some(r) = &self.pause {
            r.entry.waker.register(cx.waker());
        }
        self.sync_clock();
        // (Also on an answer that took on a call already paused: see `timed`.)
        if self.call.clock.is_paused()
            && self.pause.is_none()
            && let Some((session, pauses)) = &self.call.session
        {
            let r = pauses.register(session.clone(), self.handle.clone());
            r.entry.waker.register(cx.waker());
            self.pause = Some(r);
        }
        let wake = self.call.clock.wake_at();
        if wake != self.armed {
            sleep.reset(wake);
            self.armed = wake;
        }
    }

    /// The call ended: stop timing.
    fn finish(&mut self) {
        self.phase = Phase::Finished;
        self.pause = None;
        // A resumed call is over: what its dropped answers held goes now, not when this body
        // is dropped.
        drop(self.call.take_continues());
    }

    /// What ends the call when the layer gives up on it.
    fn ending(&self) -> Ending {
        if self.drained {
            Ending::Drain
        } else {
            Ending::Deadline
        }
    }

    /// Gives up on the call: records the ending's outcome (`Elapsed`, or at the drain a local
    /// rejection) and cancels a 2025-11-25 call. Returns false if the call had already ended
    /// after all.
    fn give_up(&mut self) -> bool {
        let ending = self.ending();
        let due = self.waits.due.unwrap_or(self.armed);
        let caller_bound = ending == Ending::Deadline && self.waits.caller_bound(due);
        let outcome = if caller_bound {
            tower_armor_mcp::Outcome::Cancelled
        } else {
            ending.outcome()
        };
        // (What the call holds stays taken until the server has read the cancellation below:
        // the answer's own hold goes with it.)
        if !self.handle.complete(outcome) {
            self.finish();
            return false;
        }
        self.pause = None;
        tracing::debug!(
            id = ?self.call.id,
            ?ending,
            caller_bound,
            "the layer ends the call inside the answer"
        );
        if self.sse.is_some() {
            if ending == Ending::Deadline {
                self.call.remember_timed_out();
            }
            self.call.send_cancel(ending.reason());
        }
        true
    }

    fn final_event(&mut self) -> Last {
        self.phase = Phase::Finished;
        if self.grpc.is_some() {
            return Last::Trailers(grpc::trailers(self.ending()));
        }
        Last::Event(final_error_event(
            self.call.id.as_ref(),
            self.call.correlation.as_ref(),
            self.ending(),
        ))
    }

    fn error(&self) -> Last {
        Last::Error(self.ending())
    }

    /// Whether the call is over for this answer: its handle completed, other than with an SSE
    /// answer's `Incomplete`. The observer settles that one as soon as the inner body reports
    /// its end (with its last frame, as HTTP/2 does), before this body has polled that end:
    /// what the end brings (the call let go and cancelled, its final error) comes then, and
    /// until it does the call keeps what it holds.
    fn over(&self) -> bool {
        match self.handle.outcome() {
            None => false,
            Some(Outcome::Incomplete) => self.sse.is_none(),
            Some(_) => true,
        }
    }

    /// The sleep fired.
    fn on_deadline(&mut self, mut sleep: Pin<&mut Sleep>, cx: &mut Context<'_>) -> Option<Last> {
        if self.handle.is_complete() {
            // (An answer whose end is yet to be polled: handled there.)
            if self.over() {
                self.finish();
            }
            return None;
        }
        let now = Instant::now();
        match self.phase {
            Phase::Running => {
                if !self.drained && !self.call.clock.expired(now) {
                    return None;
                }
                // What the answer gets before the layer gives up: an SSE event or a gRPC
                // message in progress gets to its end, and a gRPC answer between messages gets
                // the same grace for its status (trailers), which may be the very next frame.
                let wait = match (&self.sse, &self.grpc) {
                    // At a boundary, a frame already waiting gets one look (see `peek`), and
                    // the grace if it starts an event.
                    (Some(p), _) => {
                        self.peek = p.at_boundary();
                        Some(Phase::Grace)
                    }
                    (None, Some(g)) if !g.at_boundary() => Some(Phase::Grace),
                    (None, Some(_)) => Some(Phase::Settling),
                    (None, None) => None,
                };
                let Some(phase) = wait else {
                    return self.give_up().then(|| self.error());
                };
                self.phase = phase;
                // The deadline that passed, for who held the call up (`armed` now becomes the
                // end of the grace).
                self.waits.due = Some(self.armed);
                let until = after(now, self.call.grace);
                sleep.as_mut().reset(until);
                self.armed = until;
                if sleep.poll(cx).is_pending() {
                    return None;
                }
                self.grace_over()
            }
            Phase::Grace | Phase::Settling => self.grace_over(),
            Phase::Finishing | Phase::Finished => None,
        }
    }

    /// The grace ended: mid-event (or mid-message) the body fails; at an event boundary (no
    /// frame came in it) or a gRPC message boundary the layer's final event or trailers end
    /// the answer cleanly.
    fn grace_over(&mut self) -> Option<Last> {
        if self.phase == Phase::Settling || self.sse.as_ref().is_some_and(SseParser::at_boundary) {
            self.give_up().then(|| self.final_event())
        } else {
            self.give_up().then(|| self.error())
        }
    }

    /// A frame passed the inner body (and the observer inside it).
    fn on_frame(&mut self, frame: Frame<Bytes>) -> Frame<Bytes> {
        let Some(data) = frame.data_ref() else {
            return frame;
        };
        if let Some(frames) = self.grpc.as_mut() {
            return match self.phase {
                Phase::Running => {
                    frames.feed(data);
                    frame
                }
                Phase::Grace => match frames.feed_to_boundary(data) {
                    // The message ends with this frame: its status may follow.
                    Some(n) if n == data.len() && !self.handle.is_complete() => {
                        self.phase = Phase::Settling;
                        frame
                    }
                    n => self.in_grace(frame, n),
                },
                // (`poll` ends the answer before a data frame gets here.)
                Phase::Settling | Phase::Finishing | Phase::Finished => frame,
            };
        }
        let Some(parser) = self.sse.as_mut() else {
            return frame;
        };
        self.carried |= !data.is_empty();
        match self.phase {
            Phase::Running => {
                // (An empty feed would settle a pending `\r` early; skip it.)
                if !data.is_empty() {
                    if self.call.resume.is_some() && self.call.stream.is_none() {
                        let stream = &mut self.call.stream;
                        parser.feed(data, |ev| {
                            if stream.is_none() {
                                *stream = ev.id.and_then(event_stream).map(Box::from);
                            }
                        });
                        if let Some(stream) = &self.call.stream {
                            // A `GET` resuming the stream now takes the call over.
                            if let Some(entry) = &self.call.entry {
                                entry.set_stream(stream);
                            }
                            if !self.handle.is_complete() {
                                self.call.own = Some(self.handle.continuation_resumable_as(stream));
                            }
                        }
                    } else {
                        parser.feed(data, |_| {});
                    }
                }
                frame
            }
            Phase::Grace => {
                let n = feed_to_boundary(parser, data);
                self.in_grace(frame, n)
            }
            Phase::Settling | Phase::Finishing | Phase::Finished => frame,
        }
    }

    /// A data frame that came in the grace, with the offset of the boundary in it where the
    /// layer gives up (if any): it passes up to there, and the final event (or trailers) comes
    /// next.
    fn in_grace(&mut self, frame: Frame<Bytes>, boundary: Option<usize>) -> Frame<Bytes> {
        if self.handle.is_complete() {
            // The final message made it in this frame (or the answer's end comes next).
            if self.over() {
                self.finish();
            }
            return frame;
        }
        let Some(n) = boundary else {
            return frame;
        };
        if !self.give_up() {
            return frame;
        }
        self.phase = Phase::Finishing;
        match frame.into_data() {
            Ok(bytes) if n < bytes.len() => Frame::data(bytes.slice(..n)),
            Ok(bytes) => Frame::data(bytes),
            Err(frame) => frame,
        }
    }

    fn poll<B>(
        &mut self,
        body: Pin<&mut B>,
        mut sleep: Pin<&mut Sleep>,
        cx: &mut Context<'_>,
    ) -> Step
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match self.phase {
            Phase::Finished => {
                return Step::Frame(
                    body.poll_frame(cx)
                        .map(|f| f.map(|r| r.map_err(Into::into))),
                );
            }
            Phase::Finishing => return Step::End(self.final_event()),
            Phase::Running | Phase::Grace | Phase::Settling => {}
        }
        self.waits.polled();
        self.tick(sleep.as_mut(), cx);
        if sleep.as_mut().poll(cx).is_ready()
            && let Some(last) = self.on_deadline(sleep.as_mut(), cx)
        {
            return Step::End(last);
        }
        // The server's drain makes now this call's deadline. An SSE or gRPC answer is judged
        // at once (a frame already waiting, which may be its final message, gets the look and
        // the grace the deadline gives it), so a stream that always has a frame ready cannot
        // outlast the drain; any other answer once no frame of it is ready.
        let framed = self.sse.is_some() || self.grpc.is_some();
        if framed
            && self.drain_due(cx)
            && let Some(last) = self.on_deadline(sleep.as_mut(), cx)
        {
            return Step::End(last);
        }
        let res = match body.poll_frame(cx) {
            Poll::Pending => {
                self.pended = true;
                if !framed
                    && self.drain_due(cx)
                    && let Some(last) = self.on_deadline(sleep, cx)
                {
                    return Step::End(last);
                }
                // Past the deadline at a boundary, and no frame waiting: the layer gives up.
                if std::mem::take(&mut self.peek) && self.give_up() {
                    return Step::End(self.final_event());
                }
                return Step::Frame(Poll::Pending);
            }
            Poll::Ready(res) => res,
        };
        let res = match res {
            // Settling: data instead of the call's status. It is not forwarded: the answer
            // ends at the boundary it waited at, with the layer's trailers.
            Some(Ok(frame)) if self.phase == Phase::Settling && frame.is_data() => {
                if self.give_up() {
                    return Step::End(self.final_event());
                }
                Some(Ok(frame))
            }
            Some(Ok(frame)) => {
                if std::mem::take(&mut self.peek) && !self.drained {
                    // The frame waiting at the deadline: if what it carries moved the deadline
                    // (progress under reset-on-progress, a server request that pauses the
                    // clock), the call runs on, as if it had been read a moment earlier.
                    self.sync_clock();
                    if !self.call.clock.expired(Instant::now()) {
                        self.phase = Phase::Running;
                        self.waits.due = None;
                    }
                }
                self.waits.handed = true;
                let frame = self.on_frame(frame);
                // A resumed call's result has passed: what its dropped answers held goes now
                // (a resumption could otherwise adopt it while this body is still read).
                if self.over() {
                    if self.phase == Phase::Settling {
                        // The server's status came in the grace: the call ended by itself.
                        self.finish();
                    }
                    // (The call is over: nothing to hold.)
                    self.call.own = None;
                    if !self.call.continues.is_empty() {
                        drop(self.call.take_continues());
                    }
                }
                // Pick up what the observer saw in this frame before the caller sees it (a
                // server request must be registered before the client can answer it).
                self.tick(sleep, cx);
                Some(Ok(frame))
            }
            Some(Err(e)) => {
                if self.sse.is_some()
                    && matches!(self.phase, Phase::Running | Phase::Grace)
                    && matches!(self.handle.outcome(), Some(Outcome::Transport))
                {
                    // The answer broke before the call's final message (an upstream's
                    // connection reset mid-stream): the call did not end with it. Under
                    // 2025-11-25 it is let go like an answer the server ended early: held for
                    // the resume grace, else cancelled at once (nothing can follow the error
                    // in this answer; a late resumption gets the final error).
                    let pause = self.pause.take();
                    let _ = self.call.ended_without_response(&self.handle, pause, true);
                }
                self.finish();
                Some(Err(e.into()))
            }
            None => {
                if self.sse.as_ref().is_some_and(SseParser::at_boundary)
                    && matches!(self.phase, Phase::Running | Phase::Grace)
                    && self.call.drain.is_ended()
                    && matches!(self.handle.outcome(), Some(Outcome::Incomplete))
                {
                    // The server ended the stream while the drain was ending the call (it
                    // cancels its sessions), before this body was polled again (a client that
                    // reads slowly): the call's final error still goes out.
                    tracing::debug!(id = ?self.call.id, "answer ended during the drain; final error added");
                    self.drained = true;
                    return Step::End(self.final_event());
                }
                if self.sse.is_some() && matches!(self.handle.outcome(), Some(Outcome::Incomplete))
                {
                    let pause = self.pause.take();
                    let served = self.carried || self.pended;
                    let resumed = self.call.is_resumed();
                    if let Some(timed_out) =
                        self.call
                            .ended_without_response(&self.handle, pause, served)
                    {
                        // Its client hears of it now: the answer ends with the final error.
                        self.call.late = Some(if resumed {
                            Late::Lost { timed_out }
                        } else {
                            Late::Ended { timed_out }
                        });
                    }
                }
                self.finish();
                if let Some(last) = self.late_end() {
                    return Step::End(last);
                }
                None
            }
        };
        Step::Frame(Poll::Ready(res))
    }

    /// Whether the server's drain has just ended this call (the first time it is seen; the
    /// call then ends as at its deadline).
    fn drain_due(&mut self, cx: &mut Context<'_>) -> bool {
        let due = self.phase == Phase::Running
            && !self.drained
            && self
                .call
                .drain
                .poll_ended(&mut self.drain_wait, cx)
                .is_ready();
        self.drained |= due;
        due
    }

    /// A late resumption's stream ended without the call's final message: one final error for
    /// its id, at an event boundary (a cut event would corrupt it).
    fn late_end(&mut self) -> Option<Last> {
        let at_boundary = self.sse.as_ref().is_some_and(SseParser::at_boundary);
        let no_final = matches!(
            self.handle.outcome(),
            Some(Outcome::Incomplete | Outcome::Cancelled)
        );
        let late = self.call.late.take().filter(|_| at_boundary && no_final)?;
        tracing::debug!(id = ?self.call.id, ?late, "answer lost; final error added");
        // Whether the tool had finished first is not known (rmcp drops a call's stream with
        // its result), so the error says no more.
        let (code, message) = match late {
            Late::Gone { timed_out: true }
            | Late::Lost { timed_out: true }
            | Late::Ended { timed_out: true } => Ending::Deadline.code_and_message(),
            Late::Gone { timed_out: false } => (CODE_CANCELLED, LATE_MESSAGE),
            Late::Lost { timed_out: false } => (CODE_CANCELLED, LOST_MESSAGE),
            Late::Ended { timed_out: false } => (CODE_CANCELLED, ENDED_MESSAGE),
        };
        let (id, correlation) = (self.call.id.as_ref(), self.call.correlation.as_ref());
        Some(Last::Event(tower_armor_mcp::sse::error_event(
            id,
            code,
            message,
            correlation,
        )))
    }

    /// The caller dropped the body.
    fn dropped(&mut self) {
        match self.phase {
            Phase::Running | Phase::Grace => {
                if self.sse.is_some() && !self.over() {
                    tracing::debug!(id = ?self.call.id, "answer dropped before its final message");
                    let pause = self.pause.take();
                    self.call.gone_waiting(&self.handle, pause);
                }
            }
            Phase::Settling | Phase::Finishing | Phase::Finished => {}
        }
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        loop {
            let last = match this.kind.as_mut().project() {
                KindProj::Passthrough { body } => {
                    return body
                        .poll_frame(cx)
                        .map(|f| f.map(|r| r.map_err(Into::into)));
                }
                KindProj::Bounded { body, sleep } => {
                    if sleep.poll(cx).is_pending() {
                        return body
                            .poll_frame(cx)
                            .map(|f| f.map(|r| r.map_err(Into::into)));
                    }
                    tracing::debug!("an answer's body was still coming at the call's deadline");
                    Last::Error(Ending::Deadline)
                }
                KindProj::Ending { last } => {
                    return Poll::Ready(match last.take() {
                        Some(Last::Event(bytes)) => Some(Ok(Frame::data(bytes))),
                        Some(Last::Trailers(map)) => Some(Ok(Frame::trailers(map))),
                        Some(Last::Error(ending)) => Some(Err(ending.error())),
                        None => None,
                    });
                }
                KindProj::Timed { body, sleep, state } => match state.poll(body, sleep, cx) {
                    Step::Frame(p) => return p,
                    Step::End(last) => last,
                },
            };
            // Dropping the inner body here closes the stream (the cancellation under
            // 2026-07-28); the loop then yields `last`.
            this.kind.set(Kind::Ending { last: Some(last) });
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } | Kind::Bounded { body, .. } => body.is_end_stream(),
            Kind::Timed { body, state, .. } => {
                // Only an answer whose call is over ends with its inner body: one still running
                // is polled to the inner body's end (`None`), which may still add the call's
                // final error or let the call go (an HTTP/2 upstream reports its end early).
                let over = state.phase == Phase::Finished
                    || state.phase != Phase::Finishing && state.over();
                over && state.call.late.is_none() && body.is_end_stream()
            }
            Kind::Ending { last } => last.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } | Kind::Bounded { body, .. } => body.size_hint(),
            // An SSE answer may get one more event, and either may be cut short at a
            // boundary: no bound holds.
            Kind::Timed { state, .. } if state.sse.is_some() || state.grpc.is_some() => {
                SizeHint::new()
            }
            Kind::Timed { body, .. } => body.size_hint(),
            Kind::Ending { last } => match last {
                Some(Last::Event(b)) => SizeHint::with_exact(b.len() as u64),
                _ => SizeHint::with_exact(0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tower_armor_mcp::error::{CODE_SHUTTING_DOWN, CODE_TIMEOUT, Elapsed, ShuttingDown};

    use super::*;

    #[test]
    fn the_final_event_is_one_json_rpc_error() {
        let c = CorrelationId::parse(b"corr-1").unwrap();
        let ev = final_error_event(Some(&RequestId::Number(7)), Some(&c), Ending::Deadline);
        let text = std::str::from_utf8(&ev).unwrap();
        assert!(text.starts_with("data: ") && text.ends_with("\n\n"));
        assert_eq!(text.matches('\n').count(), 2, "one data line");
        let v: serde_json::Value = serde_json::from_str(&text[6..]).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], CODE_TIMEOUT);
        assert_eq!(v["error"]["message"], Elapsed::new().to_string());
        assert_eq!(v["error"]["data"]["correlationId"], "corr-1");
        let ev = final_error_event(None, None, Ending::Deadline);
        let v: serde_json::Value = serde_json::from_slice(&ev[6..ev.len() - 2]).unwrap();
        assert!(v["id"].is_null());
        assert!(v["error"].get("data").is_none());
        // At the drain deadline: the shutdown error instead.
        let ev = final_error_event(Some(&RequestId::Number(8)), None, Ending::Drain);
        let v: serde_json::Value = serde_json::from_slice(&ev[6..ev.len() - 2]).unwrap();
        assert_eq!(v["id"], 8);
        assert_eq!(v["error"]["code"], CODE_SHUTTING_DOWN);
        assert_eq!(v["error"]["message"], ShuttingDown::new().to_string());
    }

    #[test]
    fn boundaries_inside_a_frame() {
        let mut p = boundary_parser();
        assert_eq!(feed_to_boundary(&mut p, b"ta: x\n\ndata: y"), Some(7));
        assert!(!p.at_boundary());
        let mut p = boundary_parser();
        p.feed(b"da", |_| {});
        assert_eq!(feed_to_boundary(&mut p, b"ta: x\r"), None);
        assert_eq!(feed_to_boundary(&mut p, b"\n\r\n: c\n\n"), Some(8));
        assert!(p.at_boundary());
        let mut p = boundary_parser();
        assert_eq!(feed_to_boundary(&mut p, b"data: x\n"), None);
    }

    proptest! {
        /// The boundary-only parser tracks boundaries exactly like a full one, however the
        /// stream is split.
        #[test]
        fn boundary_parser_agrees_with_a_full_parser(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "data: {\"a\":1}", "data:", "\n", "\r", "\r\n", ": keep-alive", "id: 3",
                    "event: message", "retry: 10", "x", "\u{feff}", "",
                ]),
                0..40,
            ),
            cuts in proptest::collection::vec(0usize..64, 0..8),
        ) {
            let stream: Vec<u8> = parts.concat().into_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= stream.len()).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut small = boundary_parser();
            let mut full = SseParser::default();
            let mut at = 0;
            for c in cuts {
                small.feed(&stream[at..c], |_| {});
                full.feed(&stream[at..c], |_| {});
                prop_assert_eq!(small.at_boundary(), full.at_boundary());
                at = c;
            }
        }

        /// `feed_to_boundary` leaves the parser where feeding the whole frame would, and its
        /// offset is a real boundary.
        #[test]
        fn feed_to_boundary_finds_the_last_boundary(
            parts in proptest::collection::vec(
                proptest::sample::select(vec!["data: 1", "\n", "\r", ": c", "x"]),
                0..30,
            ),
            split in 0usize..100,
        ) {
            let stream: Vec<u8> = parts.concat().into_bytes();
            let split = split.min(stream.len());
            let (head, frame) = stream.split_at(split);
            let mut a = boundary_parser();
            a.feed(head, |_| {});
            let mut b = a.clone();
            let found = feed_to_boundary(&mut a, frame);
            if !frame.is_empty() {
                b.feed(frame, |_| {});
            }
            prop_assert_eq!(a.at_boundary(), b.at_boundary());
            let mut last = None;
            for n in 1..=frame.len() {
                let mut c = boundary_parser();
                c.feed(head, |_| {});
                c.feed(&frame[..n], |_| {});
                // A `\r` at the end may still become `\r\n`: not a boundary yet.
                if c.at_boundary() {
                    last = Some(n);
                }
            }
            prop_assert_eq!(found, last);
        }
    }
}
