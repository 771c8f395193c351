//! [`SseBody`]: the response body of [`Sse`](crate::Sse).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_armor_mcp::ListenId;
use tower_armor_mcp::signal::SignalWait;
use tower_armor_mcp::sse::{SseParser, lines};

use crate::layer::{ListenPlace, Shared};

/// The keep-alive comment: an empty comment line, then the blank line that ends it.
pub const KEEP_ALIVE_COMMENT: &[u8] = b":\n\n";

/// The most bytes of a resumed stream's first event held back to read its id; past it the event
/// is forwarded as it is.
const MAX_HELD: usize = 64 * 1024;

/// The parser only tracks boundaries and counts data events: a few bytes of each line are enough
/// (field names are short), so memory per stream stays small however large events are.
const PARSER_MAX_EVENT: usize = 256;

/// For a listen stream the layer may close, events are read whole (up to this size), to see
/// whether the server sent the subscription's final result itself.
const LISTEN_MAX_EVENT: usize = 16 * 1024;

pin_project! {
    /// The body of an answer that went through [`Sse`](crate::Sse): other answers pass through
    /// untouched; `text/event-stream` answers are forwarded frame by frame as they arrive (no
    /// coalescing, no buffering; except the first event of a resumed call stream, held until
    /// complete and dropped if it is the one `Last-Event-ID` named), with keep-alive comments
    /// inserted at event boundaries, the
    /// idle timeout of long-lived streams, and the end on shutdown.
    pub struct SseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Passthrough {
            #[pin]
            body: B,
        },
        /// A compressed stream: its bytes are not events (no keep-alive, no idle timeout), but
        /// it still ends on shutdown, cut where it is (no boundary can be found in it).
        Compressed {
            #[pin]
            body: B,
            state: CompressedState,
        },
        Stream {
            #[pin]
            body: B,
            // Created on first need, then reset in place: no allocation per frame.
            #[pin]
            sleep: Option<Sleep>,
            state: State,
        },
        /// An answer of the layer's own (the 409 of a second standalone stream).
        Local {
            bytes: Option<Bytes>,
        },
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Shut down while inside an event: forwarding until its end, at most until the instant.
    Draining(Instant),
    Done,
}

struct State {
    parser: SseParser,
    shared: OpenStream,
    /// Whether the idle timeout applies ([`idle_timeout_applies`](crate::idle_timeout_applies)).
    long_lived: bool,
    started: bool,
    keep_alive_due: Option<Instant>,
    idle_due: Option<Instant>,
    /// The idle timeout passed inside an event: end at the next boundary unless data came.
    idle_overdue: bool,
    /// When an overdue idle timeout cuts the stream if the event in flight has not ended (a
    /// server stalled mid-event would otherwise hold its slots for ever): the shutdown grace
    /// after the timeout.
    idle_cut: Option<Instant>,
    /// The server's first bytes: not yet seen (`Some`), and whether the layer has written a
    /// keep-alive before them. A byte order mark is only one at the very start of a stream:
    /// after the layer's comment, the client would read the server's as part of a field name
    /// and lose its first event, so the layer drops it then.
    before_server: Option<bool>,
    /// Ending at a boundary (a drain, an idle timeout): the inner body gets one look first,
    /// and `looking` says this poll is it. A frame already waiting is passed if it holds whole
    /// events (a layer further in may have ended its call with a final event: the drain's
    /// `-31510` is the last thing a client must get); a frame that starts an event is passed
    /// and the stream ends at that event's end. `looked`: the one look was given.
    looking: bool,
    looked: bool,
    /// The deadline the sleep is set to and has not fired at yet.
    armed: Option<Instant>,
    phase: Phase,
    /// A resumed call stream: its first event is held back until complete, and dropped if it is
    /// the one the client named in `Last-Event-ID` (which it has already).
    resumed: Option<Resumed>,
    /// A frame that came while the first event was held back, sent after it; or the graceful
    /// close of a listen stream the layer ends, sent after its last frame.
    stashed: Option<Frame<Bytes>>,
    /// A 2026-07-28 `subscriptions/listen` answer (the inspector put its id on it): ended by
    /// the layer at an event boundary, it gets the subscription's final result first.
    listen: Option<ListenId>,
    /// Where the stream waits for its shutdown signal.
    shutdown_wait: SignalWait,
    /// The place of the session whose standalone stream this is, given back when it ends.
    _listen_place: Option<ListenPlace>,
}

struct Resumed {
    last_event_id: Bytes,
    held: BytesMut,
    /// Reads the held bytes line by line, to find where the first event ends and its id.
    parser: SseParser,
}

/// What to do with the bytes of a resumed stream's first event.
enum Held {
    /// Not complete yet: keep holding.
    More,
    /// Forward these bytes (possibly empty: the event was dropped and nothing followed it).
    Forward(Bytes),
}

impl Resumed {
    fn new(last_event_id: Bytes) -> Self {
        Resumed {
            last_event_id,
            held: BytesMut::new(),
            parser: SseParser::new(PARSER_MAX_EVENT),
        }
    }

    /// Takes `data` in. Once the first event is complete (or too large to hold), says what to
    /// forward: everything, or everything after the first event when its id is the one the
    /// client resumed from. rmcp 3.11 replays that event again (an off-by-one); a server that
    /// does not never sends an event with that id after it, so dropping it is always safe.
    fn take(&mut self, data: &[u8]) -> Held {
        let from = self.held.len();
        self.held.extend_from_slice(data);
        // Fed one line at a time, so that the offset where the parser dispatches the first
        // event is the offset where that event ends.
        let mut repeat = None;
        let mut at = from;
        let last_event_id = &self.last_event_id[..];
        for (end, line) in lines(&self.held[from..]) {
            self.parser
                .feed(line, |ev| repeat = Some(ev.id == Some(last_event_id)));
            at = from + end;
            if repeat.is_some() {
                break;
            }
        }
        match repeat {
            None if self.held.len() <= MAX_HELD => Held::More,
            None => Held::Forward(self.held.split().freeze()),
            Some(false) => Held::Forward(self.held.split().freeze()),
            Some(true) => {
                tracing::debug!("dropped the replayed event the client resumed from");
                Held::Forward(self.held.split().freeze().slice(at..))
            }
        }
    }
}

/// `frame` without a leading byte order mark (a data frame that starts with one whole; one
/// split over two frames is left as it is).
fn without_bom(frame: Frame<Bytes>) -> Frame<Bytes> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    match frame.into_data() {
        Ok(data) if data.starts_with(BOM) => {
            tracing::debug!("dropped the byte order mark that followed a keep-alive");
            Frame::data(data.slice(BOM.len()..))
        }
        Ok(data) => Frame::data(data),
        Err(frame) => frame,
    }
}

/// A stream the layer counts as open ([`SseShutdown::open_streams`](crate::SseShutdown)) for
/// as long as this lives.
struct OpenStream(Arc<Shared>);

impl OpenStream {
    fn new(shared: Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::AcqRel);
        OpenStream(shared)
    }
}

impl std::ops::Deref for OpenStream {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a compressed stream keeps: the shutdown it ends on (it counts as an open stream), and
/// its session's place when it is a standalone `GET` stream.
struct CompressedState {
    shared: OpenStream,
    _place: Option<ListenPlace>,
    long_lived: bool,
    shutdown_wait: SignalWait,
    done: bool,
}

impl State {
    fn start(&mut self) {
        self.started = true;
        let now = Instant::now();
        self.keep_alive_due = self.shared.keep_alive.map(|d| now + d);
        if self.long_lived {
            self.idle_due = self.shared.idle_timeout.map(|d| now + d);
        }
    }

    fn on_data(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut data_event = false;
        let mut server_closed = false;
        let listen = &self.listen;
        self.parser.feed(data, |ev| {
            data_event = true;
            // The server ended the subscription itself: the layer must not end it again.
            server_closed |= listen
                .as_ref()
                .is_some_and(|l| !ev.truncated && l.is_final(ev.data));
        });
        if server_closed {
            self.listen = None;
        }
        let idle = if data_event && self.long_lived {
            self.shared.idle_timeout
        } else {
            None
        };
        if self.shared.keep_alive.is_some() || idle.is_some() {
            let now = Instant::now();
            self.keep_alive_due = self.shared.keep_alive.map(|d| now + d);
            if let Some(idle) = idle {
                self.idle_due = Some(now + idle);
                self.idle_overdue = false;
                self.idle_cut = None;
            }
        }
    }

    /// Whether the layer waits for an event boundary to end the stream at: draining, or an
    /// idle timeout that passed inside an event.
    fn ending(&self) -> bool {
        matches!(self.phase, Phase::Draining(_)) || self.idle_overdue
    }

    /// Why the layer ends the stream it waits to end ([`ending`](Self::ending)).
    fn ending_reason(&self) -> &'static str {
        if matches!(self.phase, Phase::Draining(_)) {
            "shutdown"
        } else {
            "idle timeout"
        }
    }

    /// Takes in a frame's `data` while [`ending`](Self::ending), one line at a time: the
    /// offset just past the last event boundary in it at which the stream is still to end, if
    /// any. What comes after it (the start of an event the client would never see whole) is
    /// not sent. An idle timeout no longer ends the stream once an event carrying data
    /// completes (it restarts the idle clock).
    fn feed_to_end(&mut self, data: &[u8]) -> Option<usize> {
        let mut cut = None;
        for (end, line) in lines(data) {
            self.on_data(line);
            if !self.ending() {
                cut = None;
            } else if self.parser.at_boundary() {
                cut = Some(end);
            }
        }
        cut
    }

    fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Draining(cut) => Some(cut),
            Phase::Done => None,
            Phase::Running => [self.keep_alive_due, self.idle_due, self.idle_cut]
                .into_iter()
                .flatten()
                .min(),
        }
    }

    /// The layer ends the stream. At an event boundary a listen stream gets its graceful close
    /// next (returned, to send before the end); inside an event (the client drops the
    /// unfinished event) nothing may follow.
    fn end(&mut self, why: &'static str, at_boundary: bool) -> Option<Frame<Bytes>> {
        self.phase = Phase::Done;
        tracing::debug!(reason = why, "SSE stream ended by the layer");
        let listen = self.listen.take().filter(|_| at_boundary)?;
        Some(Frame::data(listen.graceful_close_event()))
    }

    /// [`State::end`] as the body's next poll result.
    fn finish<E>(
        &mut self,
        why: &'static str,
        at_boundary: bool,
    ) -> Poll<Option<Result<Frame<Bytes>, E>>> {
        Poll::Ready(self.end(why, at_boundary).map(Ok))
    }
}

impl<B> SseBody<B> {
    pub(crate) fn passthrough(body: B) -> Self {
        SseBody {
            kind: Kind::Passthrough { body },
        }
    }

    pub(crate) fn compressed(
        body: B,
        shared: Arc<Shared>,
        long_lived: bool,
        place: Option<ListenPlace>,
    ) -> Self {
        SseBody {
            kind: Kind::Compressed {
                body,
                state: CompressedState {
                    shared: OpenStream::new(shared),
                    _place: place,
                    long_lived,
                    shutdown_wait: SignalWait::default(),
                    done: false,
                },
            },
        }
    }

    pub(crate) fn local(bytes: Bytes) -> Self {
        SseBody {
            kind: Kind::Local { bytes: Some(bytes) },
        }
    }

    pub(crate) fn stream(
        body: B,
        shared: Arc<Shared>,
        long_lived: bool,
        resumed_from: Option<Bytes>,
        listen: Option<ListenId>,
        listen_place: Option<ListenPlace>,
    ) -> Self {
        let shared = OpenStream::new(shared);
        let max_event = if listen.is_some() {
            LISTEN_MAX_EVENT
        } else {
            PARSER_MAX_EVENT
        };
        SseBody {
            kind: Kind::Stream {
                body,
                sleep: None,
                state: State {
                    parser: SseParser::new(max_event),
                    shared,
                    long_lived,
                    started: false,
                    keep_alive_due: None,
                    idle_due: None,
                    idle_overdue: false,
                    idle_cut: None,
                    before_server: Some(false),
                    looking: false,
                    looked: false,
                    armed: None,
                    phase: Phase::Running,
                    resumed: resumed_from.map(Resumed::new),
                    stashed: None,
                    listen,
                    shutdown_wait: SignalWait::default(),
                    _listen_place: listen_place,
                },
            },
        }
    }

    /// Whether the answer is an SSE stream handled by the layer (not passed through).
    pub fn is_stream(&self) -> bool {
        matches!(self.kind, Kind::Stream { .. })
    }
}

impl<B> fmt::Debug for SseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Passthrough { .. } => f.write_str("SseBody::Passthrough"),
            Kind::Compressed { .. } => f.write_str("SseBody::Compressed"),
            Kind::Local { .. } => f.write_str("SseBody::Local"),
            Kind::Stream { state, .. } => f
                .debug_struct("SseBody::Stream")
                .field("long_lived", &state.long_lived)
                .field("phase", &state.phase)
                .finish_non_exhaustive(),
        }
    }
}

impl<B> Body for SseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => body.poll_frame(cx),
            KindProj::Compressed { body, state } => {
                if state.done {
                    return Poll::Ready(None);
                }
                let shutdown = state.shared.shutdown_of(state.long_lived);
                if shutdown.poll_fired(&mut state.shutdown_wait, cx).is_ready() {
                    state.done = true;
                    tracing::warn!(
                        "compressed SSE stream cut on shutdown (no event boundary known)"
                    );
                    return Poll::Ready(None);
                }
                let frame = ready!(body.poll_frame(cx));
                state.done = frame.is_none();
                Poll::Ready(frame)
            }
            KindProj::Local { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            KindProj::Stream {
                mut body,
                mut sleep,
                state,
            } => {
                if let Some(frame) = state.stashed.take() {
                    return Poll::Ready(Some(Ok(frame)));
                }
                if state.phase == Phase::Done {
                    return Poll::Ready(None);
                }
                if !state.started {
                    state.start();
                }
                loop {
                    if state.phase == Phase::Running
                        && state.shared.shutdown_of(state.long_lived).is_fired()
                    {
                        state.phase = Phase::Draining(Instant::now() + state.shared.shutdown_grace);
                        if state.parser.at_boundary() {
                            (state.looking, state.looked) = (true, true);
                        }
                    }
                    match body.as_mut().poll_frame(cx) {
                        Poll::Ready(Some(Ok(mut frame))) => {
                            if let Some(r) = state.resumed.as_mut() {
                                match frame.into_data() {
                                    Ok(data) => match r.take(&data) {
                                        Held::More => continue,
                                        Held::Forward(data) => {
                                            state.resumed = None;
                                            if data.is_empty() {
                                                continue;
                                            }
                                            frame = Frame::data(data);
                                        }
                                    },
                                    // Not data (trailers): send what is held first.
                                    Err(other) => {
                                        let held = r.held.split().freeze();
                                        state.resumed = None;
                                        if held.is_empty() {
                                            frame = other;
                                        } else {
                                            state.stashed = Some(other);
                                            frame = Frame::data(held);
                                        }
                                    }
                                }
                            }
                            if let Some(wrote) = state.before_server
                                && frame.data_ref().is_some_and(|d| !d.is_empty())
                            {
                                state.before_server = None;
                                if wrote {
                                    frame = without_bom(frame);
                                }
                            }
                            let Some(data) = frame.data_ref() else {
                                return Poll::Ready(Some(Ok(frame)));
                            };
                            if !state.ending() {
                                state.on_data(data);
                                return Poll::Ready(Some(Ok(frame)));
                            }
                            let why = state.ending_reason();
                            state.looking = false;
                            if let Some(n) = state.feed_to_end(data) {
                                if n == data.len() && !state.looked {
                                    // The event in flight is complete: one look at what
                                    // follows, then the end.
                                    (state.looking, state.looked) = (true, true);
                                    return Poll::Ready(Some(Ok(frame)));
                                }
                                // This frame, up to there, is the last (but for a listen
                                // stream's graceful close).
                                if n < data.len() {
                                    frame = match frame.into_data() {
                                        Ok(data) => Frame::data(data.slice(..n)),
                                        Err(frame) => frame,
                                    };
                                }
                                if let Some(close) = state.end(why, true) {
                                    state.stashed = Some(close);
                                }
                            }
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        Poll::Ready(Some(Err(e))) => {
                            state.phase = Phase::Done;
                            return Poll::Ready(Some(Err(e)));
                        }
                        Poll::Ready(None) => {
                            state.phase = Phase::Done;
                            // An unfinished first event of a resumed stream: send what came.
                            if let Some(r) = state.resumed.take()
                                && !r.held.is_empty()
                            {
                                return Poll::Ready(Some(Ok(Frame::data(r.held.freeze()))));
                            }
                            return Poll::Ready(None);
                        }
                        Poll::Pending if std::mem::take(&mut state.looking) => {
                            // Nothing waiting at the boundary: the end.
                            let why = state.ending_reason();
                            return state.finish(why, true);
                        }
                        Poll::Pending => {}
                    }
                    if state.phase == Phase::Running
                        && state
                            .shared
                            .shutdown_of(state.long_lived)
                            .poll_fired(&mut state.shutdown_wait, cx)
                            .is_ready()
                    {
                        continue;
                    }
                    let Some(deadline) = state.deadline() else {
                        return Poll::Pending;
                    };
                    if state.armed != Some(deadline) {
                        match sleep.as_mut().as_pin_mut() {
                            Some(s) => s.reset(deadline),
                            None => sleep.set(Some(tokio::time::sleep_until(deadline))),
                        }
                        state.armed = Some(deadline);
                    }
                    let Some(s) = sleep.as_mut().as_pin_mut() else {
                        return Poll::Pending;
                    };
                    if s.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Fired: everything due at or before the deadline is due now.
                    state.armed = None;
                    match state.phase {
                        Phase::Draining(_) => {
                            tracing::warn!(
                                "SSE stream still inside an event when the shutdown grace ran \
                                 out; cut (the client drops the unfinished event)"
                            );
                            return state.finish("shutdown grace elapsed", false);
                        }
                        Phase::Done => return Poll::Ready(None),
                        Phase::Running => {}
                    }
                    let at_boundary = state.parser.at_boundary();
                    if state.idle_cut.is_some_and(|t| t <= deadline) {
                        tracing::warn!(
                            "SSE stream still inside an event a shutdown grace after its idle \
                             timeout; cut (the client drops the unfinished event)"
                        );
                        return state.finish("idle timeout, event unfinished", false);
                    }
                    if state.idle_due.is_some_and(|t| t <= deadline) {
                        if at_boundary {
                            return state.finish("idle timeout", true);
                        }
                        // Inside an event: end at its end, unless it carries data (which
                        // restarts the idle clock).
                        state.idle_due = None;
                        state.idle_overdue = true;
                        state.idle_cut = Some(deadline + state.shared.shutdown_grace);
                    }
                    if state.keep_alive_due.is_some_and(|t| t <= deadline) {
                        if at_boundary {
                            state.keep_alive_due = state
                                .shared
                                .keep_alive
                                .map(|d| deadline.max(Instant::now()) + d);
                            if let Some(wrote) = state.before_server.as_mut() {
                                *wrote = true;
                            }
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                                KEEP_ALIVE_COMMENT,
                            )))));
                        }
                        // Never inside an event: the next frame restarts the keep-alive clock.
                        state.keep_alive_due = None;
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Compressed { body, state } => state.done || body.is_end_stream(),
            Kind::Local { bytes } => bytes.is_none(),
            // A stashed frame (a listen stream's graceful close), or the held start of a
            // resumed stream, is still to come.
            Kind::Stream { body, state, .. } => {
                state.stashed.is_none()
                    && state.resumed.as_ref().is_none_or(|r| r.held.is_empty())
                    && (state.phase == Phase::Done || body.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            // It may be cut short on shutdown.
            Kind::Compressed { body, .. } => {
                let mut hint = SizeHint::new();
                if let Some(upper) = body.size_hint().upper() {
                    hint.set_upper(upper);
                }
                hint
            }
            Kind::Local { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            // Keep-alive comments may be added: the length is never known.
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}
