//! A per-call deadline for MCP that follows the call to its final JSON-RPC response: through the
//! headers, into an SSE answer, to its last event.
//!
//! A plain timeout around an MCP server ends when the headers leave; under 2025-11-25 rmcp sends
//! SSE headers at once and the result much later, so such a timeout bounds nothing. This layer
//! bounds the whole call:
//!
//! | when the deadline passes | what happens |
//! |---|---|
//! | before the headers | the inner future is dropped; the call fails with [`Elapsed`] (rescued to 504 + `-31504`) |
//! | inside an SSE answer, between events | the stream ends with one last event of the layer's own: a JSON-RPC error for the call's id with the local code `-31504` ([`CODE_TIMEOUT`](error::CODE_TIMEOUT)). A frame the server has already sent is looked at first: if it holds the call's final message, the call ends with it; another event passes whole, then the error, unless it moved the deadline (a progress notification under reset-on-progress, a server request that pauses the clock): then the call runs on |
//! | inside an SSE answer, mid-event | that event is forwarded to its end first (at most [`boundary_grace`](TimeoutBuilder::boundary_grace), 100 ms by default), then as above; past the grace the body fails with [`Elapsed`] (connection cut) |
//! | inside a gRPC answer (`application/grpc`, `application/grpc+<codec>`; not gRPC-Web) | a message in progress is forwarded to its end and the server's own status (trailers) still passes, within the same grace; then the answer ends at that boundary with trailers of the layer's own: `grpc-status: 4` (`DEADLINE_EXCEEDED`) |
//! | inside a JSON body (or any other) | the body fails with [`Elapsed`] |
//! | inside the body of an answer whose headers told its outcome (an error status; a body neither JSON nor SSE) | the body fails with [`Elapsed`] (not before the [`boundary_grace`](TimeoutBuilder::boundary_grace) after its headers); the outcome stays the one its headers gave |
//! | after the final response | nothing: the call is over |
//!
//! The answer's end is known from the shared observer
//! ([`observe_response`](tower_armor_mcp::observe::observe_response)): the layer reuses the
//! [`CompletionHandle`](tower_armor_mcp::CompletionHandle) an inner layer left in the response,
//! or observes the answer itself, once. At the deadline it completes the handle with
//! [`Outcome::Elapsed`](tower_armor_mcp::Outcome::Elapsed), so a circuit breaker further out
//! counts a slow failure. Unless the caller held the answer up: an HTTP server polls a body
//! again as soon as it can take another frame, so the time between a poll that handed out a
//! frame and the next poll is time the answer waited on the caller (the server's stream backing
//! up behind a caller that reads slowly, or not at all). When the deadline passes during such a
//! wait (of 50 ms or more), or such waits took half the time since the deadline was last set
//! or more, the call ends with the same timeout error but with
//! [`Outcome::Cancelled`](tower_armor_mcp::Outcome::Cancelled), the caller's doing, which a
//! breaker ignores: one client that reads a tool's streams slowly must not open the tool's
//! circuit for everyone. (A breaker's slow-call rate, when configured, still measures such a
//! call's whole duration when it succeeds.)
//!
//! The deadline acts when the answer's body is polled: an HTTP server whose caller reads
//! nothing (its socket and write buffer full) stops polling it, so such a call ends, and its
//! bulkhead permit is returned, only once the caller reads again or its connection is dropped.
//! Bound that in the server: the example sets a 60 s `TCP_USER_TIMEOUT` on its connections,
//! which drops one whose peer has taken nothing for a minute.
//!
//! **This layer writes into streams**: the one final error event above, and the one a late
//! resumption of a call it cancelled ends with (see [Cancellation](#cancellation)), nothing
//! else. Every other frame passes untouched and at once.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use futures_util::{StreamExt, stream};
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, StreamBody};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_armor_mcp::{McpBody, RescueLayer, inspect::McpInspectLayer};
//! use tower_armor_timeout::TimeoutLayer;
//!
//! type Frames = stream::BoxStream<'static, Result<http_body::Frame<Bytes>, Infallible>>;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let timeout = TimeoutLayer::builder(Duration::from_millis(500))
//!     .tool("report", Duration::from_secs(30))
//!     .build()?;
//!
//! // An MCP server whose `slow` tool answers after 10 s, and whose `stream` tool sends SSE
//! // headers and a priming event at once, then nothing.
//! let server = tower::service_fn(|req: Request<McpBody>| async move {
//!     let body: Frames = if std::str::from_utf8(req.body().bytes())?.contains("\"slow\"") {
//!         tokio::time::sleep(Duration::from_secs(10)).await;
//!         stream::empty().boxed()
//!     } else {
//!         stream::iter([Ok(http_body::Frame::data(Bytes::from_static(b"data:\n\n")))])
//!             .chain(stream::pending())
//!             .boxed()
//!     };
//!     let resp = Response::builder()
//!         .header("content-type", "text/event-stream")
//!         .body(StreamBody::new(body))?;
//!     Ok::<_, tower::BoxError>(resp)
//! });
//!
//! // In the documented order: inspect → rescue → … → timeout → the MCP service.
//! let svc = ServiceBuilder::new()
//!     .layer(McpInspectLayer::new())
//!     .layer(RescueLayer::new())
//!     .layer(timeout)
//!     .service(server);
//!
//! let call = |tool: &str| {
//!     Request::post("/mcp")
//!         .header("content-type", "application/json")
//!         .body(format!(
//!             r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
//!         ))
//!         .unwrap()
//! };
//!
//! // No headers before the deadline: 504 with the local JSON-RPC error.
//! let resp = svc.clone().oneshot(call("slow")).await?;
//! assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
//! let body = resp.into_body().collect().await?.to_bytes();
//! let v: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!((v["id"].as_i64(), v["error"]["code"].as_i64()), (Some(7), Some(-31504)));
//!
//! // Headers at once, then silence: the stream ends with the timeout error event.
//! let resp = svc.clone().oneshot(call("stream")).await?;
//! assert_eq!(resp.status(), StatusCode::OK);
//! let body = resp.into_body().collect().await?.to_bytes();
//! let text = std::str::from_utf8(&body)?;
//! assert!(text.starts_with("data:\n\ndata: {"));
//! assert!(text.contains(r#""id":7"#) && text.contains("-31504"));
//! # Ok(())
//! # }
//! ```
//!
//! # What is timed
//!
//! Calls: requests whose [`McpRequest::is_call`](tower_armor_mcp::McpRequest::is_call) holds
//! (a 2025-11-25 GET resumption with `Last-Event-ID` is the same call and is timed again; its
//! error event has `id: null`, as the id is not known from a GET). Never timed: long-lived
//! streams ([`is_long_lived`](tower_armor_mcp::McpRequest::is_long_lived): GET listen,
//! `subscriptions/listen`), notifications and the client's responses. A request without
//! [`McpRequest`](tower_armor_mcp::McpRequest) facts is one opaque call (so keep the layer
//! under the inspector, or a GET listen stream would be timed).
//!
//! The deadline is the default, or the tool's own ([`TimeoutBuilder::tool`]), or what a
//! per-request function chooses ([`TimeoutBuilder::per_request`]), in that order of precedence
//! reversed: the function first, then the tool table, then the default.
//!
//! Deadlines run on tokio's timer: the runtime must have time enabled (axum's does; one built
//! without `enable_time` panics at the first timed call, as every tokio timer does), and paused
//! time drives them in tests.
//!
//! # Progress, pauses and tasks
//!
//! - With [`reset_on_progress`](TimeoutBuilder::reset_on_progress), each
//!   `notifications/progress` in the answer starts the deadline anew; the absolute cap
//!   ([`max_total`](TimeoutBuilder::max_total), required then) bounds the call from its start
//!   whatever happens (the MCP spec's guidance).
//! - While the server has a request of its own outstanding to the client in the answer
//!   (`elicitation/create`, `sampling/createMessage`: a person may be answering), the deadline
//!   is paused; it runs again, with the time it had left, when the client's answer passes
//!   through this layer (a POST of the same session).
//! - A pause is always bounded: a call may stay paused for
//!   [`max_pause`](TimeoutBuilder::max_pause) in all (10 minutes by default), and the cap, if
//!   set, is not paused either; the earlier of the two applies. When the bound runs out the
//!   call times out exactly as at its deadline (the error event, `notifications/cancelled`
//!   under 2025-11-25). So without a cap a call lasts at most its deadline plus `max_pause`.
//! - Answers are matched by session, not by JSON-RPC id: the shared observer counts the
//!   server's requests in the answer but does not keep their ids, and this layer does not parse
//!   the stream a second time to find them. So any client response POSTed in the session
//!   counts for the session's oldest call that waits, whichever server request it answers (one
//!   of another call, or of the GET stream). A call resumed by mistake runs its deadline again
//!   with the time it had left; a call left waiting by mistake is still ended by `max_pause`.
//! - Only a call of a 2025-11-25 session is paused: that is where its client POSTs the answer.
//!   Without a session nothing could end a pause: 2026-07-28 has no server requests for a
//!   client to answer (the inspector and rmcp refuse a response POSTed under it; the revision
//!   asks for input through the call's result instead), and a sessionless server has nowhere to
//!   route an answer. So a server request in such a call's answer leaves its deadline running.
//! - A task-augmented `tools/call` answers at once with its task; that answer is the call's
//!   final response, so the deadline covers only the immediate answer. The task's work is not
//!   timed by this layer; `tasks/get`, `tasks/result`, `tasks/cancel` are calls of their own,
//!   each with its own deadline (give the long-polling `tasks/result` a longer one with
//!   [`per_request`](TimeoutBuilder::per_request)).
//!
//! # Cancellation
//!
//! Under 2026-07-28 closing an answer's stream cancels the call; the layer closes it by dropping
//! the inner future or body. Under 2025-11-25 closing does not cancel (rmcp keeps the handler
//! running), so when the layer gives up on a call of a session (before or after the headers),
//! or when the caller drops the answer before its final message (the client went away), it
//! also sends the inner service `notifications/cancelled` for the call's id, with the call's
//! `Mcp-Session-Id`, `MCP-Protocol-Version`, `Host`, `Origin` and `Accept` headers, and its case
//! (`x-request-id`, `traceparent`, `tracestate`): a POST on a clone of the inner service,
//! spawned on the current tokio runtime, whose answer is dropped. Without that the tool would
//! keep running after a bulkhead further out returned its permit. An answer the server ends
//! without the call's final response, unless the client cancelled the call itself or a
//! resumption took it over (below), is treated as one the client dropped: the server may want
//! the client to resume (SEP-1699 polling, rmcp's `close_sse_stream`: give the layer a resume
//! grace longer than the server's `retry`), or rmcp moved the rest of the call to a stream
//! nobody reads (a resumption it then answered with nothing). Either way the call is held for
//! the resume grace, else cancelled at once; a cancellation keeps what the call holds (its
//! bulkhead permit) until the server has read it (not for a call ended before its answer's
//! headers: its error goes out at once, and a bulkhead in front lets go then), and changes
//! nothing for a call already over.
//!
//! By default a 2025-11-25 client that lost its connection and meant to resume the call with
//! `Last-Event-ID` finds it cancelled: to this layer a dropped answer is a client gone away,
//! which keeps a bulkhead's count of running tools true. Its resumption gets what the server
//! replays and then a final error for the call's id: `-31499` ("request abandoned: its client
//! went away and did not resume it in time; it was cancelled if it still ran, and any result is
//! lost": rmcp drops a call's stream with its result, so whether the tool had finished is not
//! known), or `-31504` if the call's deadline had passed. rmcp alone would end the replay
//! without a message for the id, and the SDKs would wait for one until their own timeout. Such
//! calls are remembered for two minutes, the newest 4,096; the same holds for a call not
//! resumed within the grace below, and for a call the layer ended at its deadline inside its
//! stream (a client whose connection broke before that final event came resumes to the replay
//! and `-31504`). The MCP specification says a
//! disconnection should not be read as a cancellation, and both official SDKs resume after a
//! broken stream: [`TimeoutBuilder::resume_grace`] (`MCP_CALL_RESUME_GRACE_MS`) holds the
//! dropped call's cancellation that long, keyed by its session and the stream part of rmcp's
//! event ids (`<index>/<stream>`, learned from the answer). A `GET` of the session resuming
//! that stream takes it back and carries it, with the call's clock: the resumed answer runs
//! under the call's id, deadline and cap (dropping and resuming never starts them over); past
//! its deadline it is cancelled, and dropped again it is held for a new grace like the first
//! time (each drop may be resumed; the deadline and cap still bound the whole call). A call
//! nobody resumes is cancelled when the grace ends, or at its deadline if that comes first;
//! one its client cancels itself (`notifications/cancelled`, or the end of its session) is
//! not held any longer, and the layer sends no cancellation of its own for it, unless the
//! server refuses the client's (a bad `Host`, an unknown session) or the client leaves before
//! its answer: then the layer cancels it at once itself, as the client asked. While held the
//! call keeps what it holds outside this layer: it takes a
//! [`Continuation`](tower_armor_mcp::Continuation) of its answer's completion handle, so a
//! bulkhead in front keeps the tool's permit taken until the call is cancelled, or resumed and
//! ended (the resuming `GET` adopts that permit instead of taking one: the continuation names
//! the stream). Without that, a client could start a tool, drop the stream, and start it again,
//! past the tool's limit. A resumption the server refuses (a client error: the session is
//! gone) cancels the call at once; one that fails otherwise (a server error, a transport
//! failure), which the client may retry, holds the call again for the grace. (rmcp answers a
//! resumption it cannot serve, a call already over or an index past its cache, with a stream
//! that ends at once, nothing in it: the call is then cancelled, below.)
//! A call waiting on its client (an elicitation: its clock paused) when its answer breaks
//! waits on after a resumption, although the resumed stream does not replay the request: its
//! clock stays paused until the client's answer comes (or the pause budget ends). An answer
//! the client gives while the call is held counts too (the SDKs answer at once and resume
//! only after rmcp's `retry`), except while it is held again after a resumption that failed
//! before its answer came: that answer is not counted, and the call stays paused until its
//! pause budget ends. A request the resumed stream does replay (the client never got
//! it) counts twice, and its one answer leaves the call paused until the pause budget ends.
//! A resumption the server answers with a stream that ends at once, never pending, nothing in
//! it (rmcp's answer when the call is over, or the index past its cache) is not held again,
//! which would keep the call's hold for as long as its client keeps resuming: the call is
//! cancelled, and that answer ends with the final error for its id: `-31499` "request's answer
//! lost: the server's stream ended without it (a call that ends while its client is away
//! leaves no answer to replay); its result is not known" (`-31504` if its deadline had passed).
//! (One that was quiet a while before the server ended it is held again, like any answer ended
//! early; ended early with no resume grace, or before any event named its stream, the call is
//! cancelled and its answer ends with `-31499` "request abandoned: the server ended its stream
//! without the answer, …". An answer
//! that breaks before the call's final message, a body error such as an upstream's connection
//! reset, is let go the same way: held for the grace, else cancelled at once; nothing can
//! follow the error in that answer, and a late resumption gets the final error.) The layer
//! cannot see a held call end (nothing reads its stream until the client is back), so a call
//! that finishes while held keeps its hold (the bulkhead's permit) until its client resumes,
//! the grace ends, or its cap (or a fixed deadline) passes.
//!
//! With [`reset_on_progress`](TimeoutBuilder::reset_on_progress), the progress a held call
//! makes goes unseen until it is resumed (the server replays it then), so the hold does not run
//! the deadline down: a held call is bounded by the grace and the cap
//! ([`max_total`](TimeoutBuilder::max_total)), and its deadline starts again at the resumption.
//! A fixed deadline runs on through the hold.
//!
//! A `GET` that resumes a stream whose answer is still in flight (a resumption racing the
//! disconnect, before the server has seen the drop, as when the connection died silently; or
//! a client resuming while it still reads the answer) takes the call over, grace or not: rmcp
//! moves the rest of the call onto the `GET` and ends the first answer without its final
//! message. The `GET` answers under the call's id and clock, keeps what the call holds (its
//! bulkhead permit) until the call's result has passed, and cancels the call if it is dropped
//! or times out, as the first answer would have (with that answer's request headers, not the
//! `GET`'s); the first answer's early end counts as
//! `Cancelled` (no failure of the server) and no longer cancels or holds the call. A second
//! `GET` taking the call over from the first carries all of that on in turn. A `GET` the
//! server refuses (an error status: it never got the stream) gives the call back to the answer
//! it took it from, if that is still in flight. rmcp (3.11) drops a call's replay cache once
//! its final response is sent, so resuming a call that already ended yields an empty stream,
//! grace or not; nor is the in-stream timeout error this layer emits in rmcp's cache.
//!
//! With the inspector in front, a call's id stays in progress in its session while the layer
//! can still resume or cancel the call: the layer keeps the request's
//! [`InProgress`](tower_armor_mcp::inspect::InProgress) mark with the call, and passes it on
//! in the `notifications/cancelled` it sends, so the id is free for another request only once
//! the server has read the cancellation (its own, or the client's for a held call). So a held
//! call's id stays taken until the grace ends even if its tool finished sooner: the layer
//! cannot see a tool finish once its answer is gone.
//!
//! A 2025-11-25 client cancels a call itself with `notifications/cancelled` naming the call's
//! id in its session; rmcp then ends the call's stream without a final response, which on its
//! own reads as [`Outcome::Incomplete`](tower_armor_mcp::Outcome::Incomplete), a failure of
//! the server to a circuit breaker. The layer matches each such notification passing through
//! it (by session and `params.requestId`, read by the inspector) with the call in flight and
//! marks that call before forwarding it
//! ([`CompletionHandle::cancel_requested`](tower_armor_mcp::CompletionHandle::cancel_requested)):
//! when its answer then ends without the final response, the call completes
//! [`Outcome::Cancelled`](tower_armor_mcp::Outcome::Cancelled), which no layer sharing the
//! handle (breaker, bulkhead) counts against the server, and the layer sends no cancellation of
//! its own. Until its answer ends the call keeps its deadline and whatever outer layers hold
//! for it: a server that ignores the cancellation is still bounded and judged. A client that
//! ends its session (`DELETE`) while calls of it run cancels them all alike; the layer sends
//! `notifications/cancelled` for each first (running calls with the `DELETE`'s headers, calls
//! held for resumption as it would at their grace's end, keeping what they hold until the
//! server has read it) and forwards the `DELETE` once the server has read them all (at most
//! 1 s later), because rmcp, given the `DELETE` alone, ends the calls' streams at once (and
//! with them the bulkhead permits they hold) but lets their tools run on for up to 5 s.
//! Calls the client starts in the session during that wait are marked as its choice too. A circuit
//! breaker used without this layer inside it cannot tell the two apart.
//!
//! # Shutdown
//!
//! A server that drains (stops taking connections, lets calls in flight finish) needs its last
//! word on the calls still running when its grace runs out: [`TimeoutLayer::drain_handle`]
//! gives a [`CallDrain`], and [`CallDrain::end_calls`] makes that moment every HTTP call's
//! deadline. Each ends as it would at its own deadline, with
//! [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown) (503, `-31510`, "server shutting
//! down") instead of `Elapsed`: before its headers it fails with that error (the rescue layer
//! answers 503 with the call's id); in an SSE answer one final event carries the error for the
//! call's id, at an event boundary; a 2025-11-25 call is sent `notifications/cancelled`. Its
//! completion handle records a local rejection (no breaker counts it). Any request that reaches
//! the layer afterwards (a call that waited in a bulkhead's line, a session's `tools/list`, a
//! listen stream) is refused with the same error without reaching the server. Typed calls
//! ([`ToolCall`](tower_armor_mcp::ToolCall)) are not affected: a typed client drops its futures
//! to stop. The example server calls it when `MCP_DRAIN_GRACE_MS` runs out.
//!
//! During the grace, [`CallDrain::refuse_new_calls`] refuses new calls (gRPC calls too) and
//! long-lived streams with the same error, while the calls in flight finish and what concerns them (a client's
//! answer to a server request, `notifications/cancelled`, a `DELETE`, a resumption, `ping`, a
//! task's polls, reads of the catalogue such as `tools/list`) still passes. The example server calls it at the first signal, keeps accepting connections for
//! such follow-ups, and answers `/readyz` with 503 from then on.
//!
//! # Types
//!
//! For HTTP the layer's service is `Service<http::Request<ReqB>>` for any request body `ReqB`
//! the layer can build its cancellation requests in (`ReqB: From<McpBody>`):
//! [`McpBody`](tower_armor_mcp::McpBody), what the inspector produces, and `tonic::body::Body`
//! (with this crate's `tonic` feature), so the layer also sits in a tonic stack
//! (`Server::builder().layer(..)`, or around a `Channel`), where it bounds each gRPC call and
//! a gRPC caller gets `DEADLINE_EXCEEDED`, as a status (with `RescueGrpcLayer` further out) or
//! as trailers. For an inner service answering `http::Response<B>` it answers
//! `http::Response<TimeoutBody<ObservedBody<B>>>`: [`TimeoutBody`] holds the rest of
//! the deadline, [`ObservedBody`](tower_armor_mcp::observe::ObservedBody) is the shared
//! observer (or a pass-through when an inner layer already observes). Its error type is
//! `BoxError`. For typed calls it is `Service<ToolCall>`
//! ([`ToolCall`](tower_armor_mcp::ToolCall)), answering the inner response unchanged: the
//! inner future simply races the deadline, and dropping it is the cancellation.
//!
//! Each call uses one `tokio::time::Sleep` in its response future and one in its body, each
//! reset in place (progress, pauses, grace); nothing is boxed per call. The shared observer
//! allocates its completion handle as usual.
//!
//! # Configuration
//!
//! [`TimeoutLayer::builder`] checks the settings in [`build`](TimeoutBuilder::build):
//!
//! | setting | default | meaning |
//! |---|---|---|
//! | [`builder(d)`](TimeoutLayer::builder) | — | the default deadline (positive) |
//! | [`tool`](TimeoutBuilder::tool) / [`per_request`](TimeoutBuilder::per_request) | none | deadlines per tool / per request |
//! | [`max_total`](TimeoutBuilder::max_total) | none | absolute cap from the call's start |
//! | [`reset_on_progress`](TimeoutBuilder::reset_on_progress) | off | progress starts the deadline anew (needs the cap) |
//! | [`max_pause`](TimeoutBuilder::max_pause) | 10 min | longest a call may stay paused waiting on its client, in all (positive, at most 24 h) |
//! | [`boundary_grace`](TimeoutBuilder::boundary_grace) | 100 ms | how long an event cut by the deadline gets to end |
//! | [`resume_grace`](TimeoutBuilder::resume_grace) | zero | how long a dropped 2025-11-25 call waits to be resumed before it is cancelled (at most 60 s) |
//!
//! [`TimeoutLayer::from_env`] reads `MCP_CALL_TIMEOUT_MS` (unset: no layer),
//! `MCP_CALL_TIMEOUT_MAX_MS`, `MCP_CALL_TIMEOUT_RESET_ON_PROGRESS`, `MCP_CALL_MAX_PAUSE_MS` and
//! `MCP_CALL_RESUME_GRACE_MS`, with errors naming the variable.
//!
//! # Ordering
//!
//! The innermost call-plane layer, right around the MCP service (DESIGN §4):
//!
//! ```text
//! … → McpInspectLayer → … → RescueLayer → circuit-breaker → retry → bulkhead → TimeoutLayer → MCP service
//! ```
//!
//! - Inside the bulkhead: a call that times out ends, so the bulkhead's permit (held until the
//!   answer's end) is freed at the deadline, and under 2025-11-25 the tool is cancelled too.
//! - Inside retry: each attempt gets its own deadline (and a timed-out safe call may be retried).
//! - Inside the breaker: the breaker sees `Elapsed` (before the headers) or the handle's
//!   `Outcome::Elapsed` (in the stream) and counts a slow failure (not when the caller held the
//!   answer up, above).
//! - Under [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer): it needs the
//!   request's facts. A request without them (gRPC, a route the inspector does not cover) gets
//!   the default deadline and no cancellation: closing an HTTP/2 stream, which the layer does
//!   by dropping the answer, is what ends such a call.
//! - Under [`RescueLayer`](tower_armor_mcp::RescueLayer) (or axum's `HandleErrorLayer`) in axum:
//!   the layer fails with `BoxError`, and axum's `Router::layer` / `route_service` need
//!   `Error = Infallible`. Rescue turns `Elapsed` into 504 + `-31504`.
//! - In a client stack (an orchestrator calling several MCP servers) the layer matches
//!   cancellations, elicitation answers and resumptions with calls by `Mcp-Session-Id` and
//!   JSON-RPC id, which each upstream chooses: two upstreams issuing the same session id
//!   (rmcp's are random UUIDs) would have their calls matched across them. Give each such
//!   upstream a layer of its own.
//!
//! # Errors
//!
//! The service fails with [`BoxError`](error::BoxError): [`Elapsed`] when the deadline passes
//! before the headers, otherwise the inner service's error, boxed. [`TimeoutBody`] fails with
//! [`Elapsed`] when it must cut an answer (a JSON body, or an SSE event that did not end within
//! the grace), otherwise with the inner body's error, boxed. In a stream the timeout is the
//! final error event (code `-31504`, message `request timed out`), not a body error. After
//! [`CallDrain::end_calls`] the same places carry [`ShuttingDown`](tower_armor_mcp::error::ShuttingDown)
//! instead (code `-31510`, message `server shutting down`).
//! Configuration errors are [`ConfigError`](error::ConfigError).
//!
//! [`Elapsed`]: error::Elapsed

pub mod body;
mod calls;
mod cancel;
mod clock;
mod drain;
pub mod error;
pub mod future;
mod grpc;
mod layer;
mod pause;
mod policy;
mod resume;
mod service;
mod sessions;

pub use self::body::TimeoutBody;
pub use self::drain::CallDrain;
pub use self::layer::{
    ENV_MAX_MS, ENV_MAX_PAUSE_MS, ENV_RESET_ON_PROGRESS, ENV_RESUME_GRACE_MS, ENV_TIMEOUT_MS,
    ENV_VARS, TimeoutBuilder, TimeoutLayer,
};
pub use self::service::Timeout;
pub use tower_armor_mcp::error::Elapsed;
