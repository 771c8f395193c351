//! The timeout service against `tower-test` mocks and scripted bodies, on paused time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt};
use tower_armor_mcp::error::{BoxError, Elapsed};
use tower_armor_mcp::observe::ObservedBody;
use tower_armor_mcp::{
    CompletionHandle, McpBody, McpRequest, MessageKind, Method, Outcome, ProtocolRevision,
    RequestId, ToolCall, ToolReply,
};
use tower_armor_timeout::{TimeoutBody, TimeoutLayer};
use tower_test::mock;

const V2025: ProtocolRevision = ProtocolRevision::V2025_11_25;
const V2026: ProtocolRevision = ProtocolRevision::V2026_07_28;

// === scripted bodies ===

/// A response body whose frames (or an error) the test sends one by one; dropping the sending
/// end ends it.
struct Script {
    rx: mpsc::UnboundedReceiver<Result<Frame<Bytes>, std::io::Error>>,
    // Reports its end through `is_end_stream` once the sender is gone and nothing is left, as
    // an HTTP/2 body does (a caller such as hyper then stops polling it).
    eager: bool,
}

impl Body for Script {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.rx.poll_recv(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.eager && self.rx.is_closed() && self.rx.is_empty()
    }
}

/// The sending end of a [`Script`]; `is_closed()` tells whether the body was dropped.
#[derive(Clone)]
struct Tx(mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>);

impl Tx {
    fn send(&self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn bytes(&self, b: &[u8]) {
        self.0
            .send(Ok(Frame::data(Bytes::copy_from_slice(b))))
            .expect("body still alive");
    }

    fn trailers(&self, t: http::HeaderMap) {
        self.0
            .send(Ok(Frame::trailers(t)))
            .expect("body still alive");
    }

    /// The body fails (a connection reset mid-stream).
    fn fail(&self) {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        self.0.send(Err(reset)).expect("body still alive");
    }

    fn event(&self, v: Value) {
        self.send(&format!("data: {v}\n\n"));
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

fn script() -> (Tx, Script) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Tx(tx), Script { rx, eager: false })
}

/// A [`script`] whose body reports its end through `is_end_stream`.
fn eager_script() -> (Tx, Script) {
    let (tx, mut body) = script();
    body.eager = true;
    (tx, body)
}

fn answer(content_type: &str, body: Script) -> Response<Script> {
    Response::builder()
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

fn progress(n: u64) -> Value {
    json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":n}})
}

fn result(id: i64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}})
}

// === requests ===

fn facts_req(
    facts: McpRequest,
    session: Option<&'static str>,
    rev: ProtocolRevision,
) -> Request<McpBody> {
    let mut b = Request::post("/mcp")
        .header("host", "127.0.0.1:1")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", rev.as_str());
    let mut facts = facts.with_revision(rev);
    if let Some(s) = session {
        b = b.header("mcp-session-id", s);
        facts = facts.with_session_id(HeaderValue::from_static(s));
    }
    let mut req = b.body(McpBody::from("{}")).unwrap();
    req.extensions_mut().insert(facts);
    req
}

fn call(
    id: i64,
    tool: &str,
    rev: ProtocolRevision,
    session: Option<&'static str>,
) -> Request<McpBody> {
    let facts = McpRequest::new(
        MessageKind::Request,
        Some(Method::ToolsCall),
        Some(id.into()),
    )
    .with_name(tool);
    facts_req(facts, session, rev)
}

type Mock = mock::Mock<Request<McpBody>, Response<Script>>;
type Handle = mock::Handle<Request<McpBody>, Response<Script>>;
type Svc = tower_armor_timeout::Timeout<Mock>;
type Resp = Response<TimeoutBody<ObservedBody<Script>>>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn layer(base: u64) -> TimeoutLayer {
    TimeoutLayer::builder(ms(base)).build().unwrap()
}

fn service(layer: &TimeoutLayer) -> (Svc, Handle) {
    let (mock, handle) = mock::pair();
    (layer.layer(mock), handle)
}

/// Calls `svc` with `req`; the mock answers with `resp` (built from the request it saw).
async fn exchange(
    svc: &mut Svc,
    handle: &mut Handle,
    req: Request<McpBody>,
    resp: Response<Script>,
) -> Resp {
    let fut = ServiceExt::<Request<McpBody>>::ready(svc)
        .await
        .unwrap()
        .call(req);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(resp);
    fut.await.unwrap()
}

/// The next frame if one is ready now, without letting time move.
fn now<B>(body: &mut B) -> Option<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    body.frame().now_or_never()
}

fn text(frame: Option<Option<Result<Frame<Bytes>, BoxError>>>) -> String {
    let frame = frame
        .expect("a frame is ready")
        .expect("not the end")
        .expect("no error");
    String::from_utf8(frame.into_data().expect("data").to_vec()).unwrap()
}

fn is_elapsed(e: &BoxError) -> bool {
    e.downcast_ref::<Elapsed>().is_some()
}

/// Parses `data: {...}\n\n`.
fn event_json(s: &str) -> Value {
    let data = s
        .strip_prefix("data: ")
        .and_then(|d| d.strip_suffix("\n\n"))
        .expect(s);
    serde_json::from_str(data).unwrap()
}

fn assert_timeout_event(s: &str, id: Value) {
    let v = event_json(s);
    assert_eq!(v["id"], id, "{s}");
    assert_eq!(v["error"]["code"], -31504, "{s}");
    assert_eq!(v["error"]["message"], "request timed out");
}

/// The next request reaching the mock within `within` (time auto-advances while waiting).
async fn next_request(handle: &mut Handle, within: Duration) -> Option<Request<McpBody>> {
    let got = tokio::time::timeout(within, handle.next_request())
        .await
        .ok()??;
    let (req, send) = got;
    send.send_response(Response::builder().status(202).body(script().1).unwrap());
    Some(req)
}

/// The layer's `notifications/cancelled` for call `id` of `session` reaches the server.
async fn expect_cancelled(
    handle: &mut Handle,
    id: i64,
    session: &str,
    reason: &str,
) -> Request<McpBody> {
    let n = next_request(handle, ms(100))
        .await
        .expect("notifications/cancelled");
    assert_cancelled(&n, id, session, reason);
    n
}

fn assert_cancelled(req: &Request<McpBody>, id: i64, session: &str, reason: &str) {
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(req.headers()["mcp-session-id"], session);
    assert_eq!(req.headers()["mcp-protocol-version"], "2025-11-25");
    assert_eq!(req.headers()["content-type"], "application/json");
    assert_eq!(req.headers()["host"], "127.0.0.1:1");
    let v: Value = serde_json::from_slice(req.body().bytes()).unwrap();
    assert_eq!(
        v,
        json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":id,"reason":reason}})
    );
}

/// Calls `svc` with `req`; the mock answers with a scripted SSE body. Returns the script's
/// sending end, the answer's completion handle and its body.
async fn open_sse(
    svc: &mut Svc,
    handle: &mut Handle,
    req: Request<McpBody>,
) -> (
    Tx,
    CompletionHandle,
    Pin<Box<TimeoutBody<ObservedBody<Script>>>>,
) {
    let (tx, body) = script();
    let resp = exchange(svc, handle, req, answer("text/event-stream", body)).await;
    let h = handle_of(&resp);
    (tx, h, Box::pin(resp.into_body()))
}

fn handle_of(resp: &Resp) -> CompletionHandle {
    resp.extensions()
        .get::<CompletionHandle>()
        .cloned()
        .expect("observed")
}

// === before the headers ===

#[tokio::test(start_paused = true)]
async fn deadline_before_headers_fails_with_elapsed() {
    let (mut svc, mut handle) = service(&layer(300));
    let start = Instant::now();
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(1, "slow", V2026, None));
    let (_req, send) = handle.next_request().await.unwrap();
    let err = fut.await.unwrap_err();
    assert!(is_elapsed(&err), "{err}");
    assert_eq!(start.elapsed(), ms(300));
    // The inner future was dropped: answering now reaches nobody, and nothing else was sent
    // (under 2026-07-28 dropping is the cancellation).
    send.send_response(answer("text/event-stream", script().1));
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
}

/// `TimeoutLayer::new(d)`, like tower's: the same deadline with default settings; zero times
/// every call out at once instead of being refused.
#[tokio::test(start_paused = true)]
async fn new_gives_every_call_the_deadline() {
    // Zero: at tokio's timer resolution (1 ms).
    for (deadline, waited) in [(ms(250), ms(250)), (Duration::ZERO, ms(1))] {
        let (mut svc, mut handle) = service(&TimeoutLayer::new(deadline));
        let start = Instant::now();
        let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(call(1, "slow", V2026, None));
        let (_req, _send) = handle.next_request().await.unwrap();
        let err = fut.await.unwrap_err();
        assert!(is_elapsed(&err), "{err}");
        assert_eq!(start.elapsed(), waited);
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_before_headers_cancels_a_2025_session_call() {
    let (mut svc, mut handle) = service(&layer(300));
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(4, "slow", V2025, Some("s-1")));
    let _pending = handle.next_request().await.unwrap();
    assert!(is_elapsed(&fut.await.unwrap_err()));
    let n = expect_cancelled(&mut handle, 4, "s-1", "request timed out").await;
    let facts = n.extensions().get::<McpRequest>().unwrap();
    assert_eq!(facts.method(), Some(&Method::NotificationsCancelled));
}

#[tokio::test(start_paused = true)]
async fn a_caller_leaving_before_headers_cancels_a_2025_session_call() {
    let (mut svc, mut handle) = service(&layer(300));
    // The call's case: its correlation id and trace context go with its cancellation (in a
    // client stack that goes to the upstream below the layer that propagates them).
    let mut req = call(5, "slow", V2025, Some("s-1"));
    let case = [
        ("x-request-id", "case-42"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "congo=t61rcWkgMzE"),
    ];
    for (name, value) in case {
        req.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(req);
    let _pending = handle.next_request().await.unwrap();
    drop(fut);
    let n = expect_cancelled(&mut handle, 5, "s-1", "caller went away").await;
    assert_eq!(n.headers()["x-request-id"], "case-42");
    assert_eq!(n.headers()["tracestate"], "congo=t61rcWkgMzE");
    // Another request of the same trace: the trace id and flags, a parent id of its own.
    let tp = n.headers()["traceparent"].to_str().unwrap();
    assert_eq!(tp.len(), 55);
    assert_eq!(&tp[..36], &case[1].1[..36]);
    assert_eq!(&tp[52..], "-01");
    assert_ne!(&tp[36..52], "00f067aa0ba902b7");
    assert!(
        tp[36..52]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    // The case id under another name: the header that carries the call's `CorrelationId`.
    let mut req = call(6, "slow", V2025, Some("s-1"));
    req.headers_mut()
        .insert("x-correlation-id", HeaderValue::from_static("case-43"));
    req.extensions_mut()
        .insert(tower_armor_mcp::CorrelationId::parse("case-43").unwrap());
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(req);
    let _pending = handle.next_request().await.unwrap();
    drop(fut);
    let n = expect_cancelled(&mut handle, 6, "s-1", "caller went away").await;
    assert_eq!(n.headers()["x-correlation-id"], "case-43");
    assert!(!n.headers().contains_key("x-request-id"));
}

#[tokio::test(start_paused = true)]
async fn per_tool_deadlines() {
    let layer = TimeoutLayer::builder(ms(100))
        .tool("report", ms(1000))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    for (tool, want) in [("report", 1000), ("add", 100)] {
        let start = Instant::now();
        let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(call(1, tool, V2026, None));
        let _pending = handle.next_request().await.unwrap();
        assert!(is_elapsed(&fut.await.unwrap_err()));
        assert_eq!(start.elapsed(), ms(want), "{tool}");
    }
}

// === inside an SSE answer ===

#[tokio::test(start_paused = true)]
async fn deadline_in_a_stream_ends_it_with_one_error_event() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(7, "slow", V2026, None)).await;
    tx.event(progress(1));
    assert!(text(now(&mut body)).contains("notifications/progress"));
    assert!(now(&mut body).is_none(), "nothing more yet");
    advance(ms(299)).await;
    assert!(now(&mut body).is_none());
    assert!(!tx.is_closed());
    advance(ms(1)).await;
    assert_timeout_event(&text(now(&mut body)), json!(7));
    assert!(
        tx.is_closed(),
        "the inner stream is closed (2026-07-28: the cancellation)"
    );
    assert!(matches!(now(&mut body), Some(None)), "then the end");
    assert!(body.is_end_stream());
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
    // Nothing sent for 2026-07-28.
    drop(body);
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
}

/// Streams progress to a caller until a 300 ms deadline: each round the server sends one
/// event, the caller takes it, then `waits(elapsed)` says how long the caller leaves the next
/// ready frame untaken and how long the server then keeps it waiting. Returns the outcome.
async fn play_until_the_deadline(waits: impl Fn(Duration) -> (u64, u64)) -> Option<Outcome> {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(7, "progress", V2026, None)).await;
    let start = Instant::now();
    let mut n = 0;
    let last = loop {
        n += 1;
        tx.event(progress(n));
        let frame = text(now(&mut body));
        if !frame.contains("notifications/progress") {
            break frame;
        }
        let (on_caller, on_server) = waits(start.elapsed());
        advance(ms(on_caller)).await;
        if on_server > 0 {
            // The caller is back and waits for the server's next frame.
            if let Some(next) = now(&mut body) {
                break text(Some(next));
            }
            advance(ms(on_server)).await;
        }
        assert!(n < 100, "no deadline");
    };
    assert_timeout_event(&last, json!(7));
    h.outcome()
}

/// A caller that stops reading, or reads slowly, holds the call up itself (the server's stream
/// backs up behind it): the HTTP server polls its body again only once it has read. Its call
/// still ends with the timeout event, but when the answer waited on the caller for at least half
/// its time the outcome is the caller's (`Cancelled`), not a slow failure of the server that a
/// breaker would count against the tool for every caller.
#[tokio::test(start_paused = true)]
async fn a_deadline_the_caller_held_up_is_not_the_servers_slow_failure() {
    // (time the caller leaves a ready frame untaken, time the server keeps it waiting) per
    // round, until the 300 ms deadline.
    for (on_caller, on_server, outcome) in [
        (301, 0, Outcome::Cancelled),
        (60, 40, Outcome::Cancelled),
        (40, 60, Outcome::Elapsed),
        (0, 100, Outcome::Elapsed),
    ] {
        let got = play_until_the_deadline(|_| (on_caller, on_server)).await;
        assert_eq!(got, Some(outcome), "{on_caller}/{on_server}");
    }
}

/// A deadline that passes while the server is mid-event is the server's, even if the caller
/// then holds the answer during the event's grace: the hold began after the deadline.
#[tokio::test(start_paused = true)]
async fn a_hold_during_the_event_grace_does_not_make_the_deadline_the_callers() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(2, "slow", V2026, None)).await;
    tx.send("data: {\"jsonrpc\":\"2.0\",");
    assert!(text(now(&mut body)).starts_with("data: "));
    assert!(now(&mut body).is_none());
    advance(ms(300)).await;
    assert!(
        now(&mut body).is_none(),
        "the deadline waits for the event's end"
    );
    tx.send("\"method\":\"notifications/message\",");
    assert!(!text(now(&mut body)).is_empty());
    // The caller comes back 60 ms later, within the grace; the event ends.
    advance(ms(60)).await;
    tx.send("\"params\":{}}\n\n");
    assert_eq!(text(now(&mut body)), "\"params\":{}}\n\n");
    assert_timeout_event(&text(now(&mut body)), json!(2));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
}

/// With progress resetting the deadline, who held the call up is judged over the last window
/// only: a long call read promptly for most of its life, whose caller then stops reading, is
/// the caller's; one whose caller reads but whose server goes quiet is the server's.
#[tokio::test(start_paused = true)]
async fn who_held_the_call_up_is_judged_over_the_last_deadline_window() {
    for (caller_stops, outcome) in [(true, Outcome::Cancelled), (false, Outcome::Elapsed)] {
        let layer = TimeoutLayer::builder(ms(300))
            .reset_on_progress(true)
            .max_total(ms(60_000))
            .build()
            .unwrap();
        let (mut svc, mut handle) = service(&layer);
        let (tx, h, mut body) =
            open_sse(&mut svc, &mut handle, call(7, "progress", V2026, None)).await;
        for n in 1..=20 {
            tx.event(progress(n));
            assert!(text(now(&mut body)).contains("notifications/progress"));
            assert!(now(&mut body).is_none());
            advance(ms(200)).await;
        }
        tx.event(progress(21));
        assert!(text(now(&mut body)).contains("notifications/progress"));
        if !caller_stops {
            assert!(now(&mut body).is_none());
        }
        advance(ms(301)).await;
        assert_timeout_event(&text(now(&mut body)), json!(7));
        assert_eq!(h.outcome(), Some(outcome), "caller stops: {caller_stops}");
    }
}

/// A caller that read promptly, then stopped (its buffers full) just before the deadline:
/// the deadline passed while the answer waited on it, so the outcome is the caller's even
/// though the server's time dominates the window. A stall earlier in the call, with the caller
/// reading again when the deadline passes, leaves the timeout the server's.
#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_while_the_caller_holds_the_answer_is_the_callers() {
    for (stall_at_ms, outcome) in [(250, Outcome::Cancelled), (0, Outcome::Elapsed)] {
        // The caller is gone for 100 ms once; otherwise it takes each frame at once and the
        // server takes 10 ms.
        let got = play_until_the_deadline(|elapsed| {
            if elapsed == ms(stall_at_ms) {
                (100, 0)
            } else {
                (0, 10)
            }
        })
        .await;
        assert_eq!(got, Some(outcome), "stall at {stall_at_ms} ms");
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_in_a_2025_stream_also_sends_cancelled() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, body) = script();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(8, "slow", V2025, Some("s-9")),
        answer("text/event-stream", body),
    )
    .await;
    let mut body = Box::pin(resp.into_body());
    tx.send("id: 0\nretry: 3000\ndata:\n\n");
    assert_eq!(text(now(&mut body)), "id: 0\nretry: 3000\ndata:\n\n");
    advance(ms(300)).await;
    assert_timeout_event(&text(now(&mut body)), json!(8));
    expect_cancelled(&mut handle, 8, "s-9", "request timed out").await;
    drop(body);
    assert!(
        next_request(&mut handle, ms(1000)).await.is_none(),
        "sent once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_mid_event_waits_for_the_event_to_end() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(2, "slow", V2026, None)).await;
    tx.send("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",");
    assert!(text(now(&mut body)).starts_with("data: "));
    // The caller asks for more at once (as an HTTP server does): the wait is the server's.
    assert!(now(&mut body).is_none());
    advance(ms(350)).await;
    assert!(now(&mut body).is_none(), "no event inside an event");
    assert_eq!(h.outcome(), None);
    // The event ends, and the next one begins in the same frame: cut after the boundary.
    tx.send("\"params\":{}}\n\ndata: {\"jsonrpc\":\"2.0\",");
    assert_eq!(text(now(&mut body)), "\"params\":{}}\n\n");
    assert_timeout_event(&text(now(&mut body)), json!(2));
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
}

#[tokio::test(start_paused = true)]
async fn an_event_that_does_not_end_within_the_grace_is_cut() {
    let layer = TimeoutLayer::builder(ms(300))
        .boundary_grace(ms(50))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(2, "slow", V2026, None)).await;
    tx.send("data: {\"partial\":");
    let _ = text(now(&mut body));
    assert!(now(&mut body).is_none());
    advance(ms(300)).await;
    assert!(now(&mut body).is_none());
    advance(ms(49)).await;
    assert!(now(&mut body).is_none());
    advance(ms(1)).await;
    let err = now(&mut body).unwrap().unwrap().unwrap_err();
    assert!(is_elapsed(&err));
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
    assert!(tx.is_closed());
}

#[tokio::test(start_paused = true)]
async fn the_final_message_before_the_deadline_ends_the_clock() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) =
        open_sse(&mut svc, &mut handle, call(3, "add", V2025, Some("s-1"))).await;
    tx.event(result(3));
    let _ = text(now(&mut body));
    assert_eq!(h.outcome(), Some(Outcome::Success));
    advance(ms(1000)).await;
    assert!(
        now(&mut body).is_none(),
        "no timeout event after the final response"
    );
    tx.send(": trailing comment\n\n");
    assert_eq!(text(now(&mut body)), ": trailing comment\n\n");
    drop(tx);
    assert!(matches!(now(&mut body), Some(None)));
    drop(body);
    assert!(
        next_request(&mut handle, ms(1000)).await.is_none(),
        "a finished call is not cancelled"
    );
}

/// At the deadline, a frame the server has already sent is looked at before the layer gives
/// up, as the response future prefers a ready answer to its deadline: the call's final
/// message ends the call with it (no timeout error after a result), and another event passes
/// whole before the final error.
#[tokio::test(start_paused = true)]
async fn a_frame_waiting_at_the_deadline_is_looked_at_first() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(4, "add", V2026, None)).await;
    tx.event(result(4));
    advance(ms(300)).await;
    assert_eq!(text(now(&mut body)), format!("data: {}\n\n", result(4)));
    assert_eq!(h.outcome(), Some(Outcome::Success));
    assert!(
        now(&mut body).is_none(),
        "no timeout event after the result"
    );
    drop(tx);
    assert!(matches!(now(&mut body), Some(None)));

    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) =
        open_sse(&mut svc, &mut handle, call(5, "slow", V2025, Some("s-1"))).await;
    tx.event(progress(1));
    advance(ms(300)).await;
    assert!(text(now(&mut body)).contains("notifications/progress"));
    assert_timeout_event(&text(now(&mut body)), json!(5));
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
    drop(body);
    expect_cancelled(&mut handle, 5, "s-1", "request timed out").await;
}

#[tokio::test(start_paused = true)]
async fn a_json_body_past_the_deadline_fails() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, body) = script();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(3, "add", V2026, None),
        answer("application/json", body),
    )
    .await;
    let h = handle_of(&resp);
    let mut body = Box::pin(resp.into_body());
    tx.send("{\"jsonrpc\":\"2.0\",");
    let _ = text(now(&mut body));
    assert!(now(&mut body).is_none());
    advance(ms(300)).await;
    assert!(is_elapsed(&now(&mut body).unwrap().unwrap().unwrap_err()));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
}

/// An answer whose headers told its outcome (an error status; a body neither JSON nor SSE) is
/// not read for one, but its body still ends by the deadline: a frame ready passes, a body
/// still waiting then fails, and the outcome stays what the headers said.
#[tokio::test(start_paused = true)]
async fn an_error_or_unframed_body_still_ends_at_the_deadline() {
    for (status, content_type) in [
        (500, "text/plain"),
        (401, "application/json"),
        (200, "text/plain"),
        (200, ""),
    ] {
        let (mut svc, mut handle) = service(&layer(300));
        let (tx, body) = script();
        let mut answer = answer(content_type, body);
        *answer.status_mut() = http::StatusCode::from_u16(status).unwrap();
        if content_type.is_empty() {
            answer.headers_mut().remove(http::header::CONTENT_TYPE);
        }
        let resp = exchange(&mut svc, &mut handle, call(3, "add", V2026, None), answer).await;
        let h = handle_of(&resp);
        let told = h.outcome();
        assert!(
            told.is_some(),
            "{status} {content_type}: known from the headers"
        );
        let mut body = Box::pin(resp.into_body());
        assert!(!body.is_timed(), "the call is over");
        tx.send("partial");
        assert_eq!(text(now(&mut body)), "partial");
        advance(ms(299)).await;
        assert!(
            now(&mut body).is_none(),
            "{status} {content_type}: still waiting"
        );
        tx.send("more");
        assert_eq!(text(now(&mut body)), "more");
        advance(ms(1)).await;
        // Frames keep coming: the deadline still ends the body.
        tx.send("late");
        let end = now(&mut body).expect("ends at the deadline").unwrap();
        assert!(is_elapsed(&end.unwrap_err()), "{status} {content_type}");
        assert_eq!(h.outcome(), told, "the headers' outcome stands");
    }
}

/// Headers that come just before the deadline with an error status leave their body the
/// boundary grace (100 ms by default) to come, not nothing.
#[tokio::test(start_paused = true)]
async fn an_error_answer_at_the_deadline_gets_the_grace_for_its_body() {
    let (mut svc, mut handle) = service(&layer(300));
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(3, "add", V2026, None));
    let (_, send) = handle.next_request().await.unwrap();
    advance(ms(299)).await;
    let (tx, body) = script();
    let mut answer = answer("application/json", body);
    *answer.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    send.send_response(answer);
    let resp = fut.await.unwrap();
    let mut body = Box::pin(resp.into_body());
    assert!(now(&mut body).is_none(), "the body has not come yet");
    advance(ms(50)).await;
    tx.send("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32603,\"message\":\"x\"}}");
    assert!(
        text(now(&mut body)).contains("-32603"),
        "the error body passes"
    );
    advance(ms(50)).await;
    let end = now(&mut body).expect("ends with the grace").unwrap();
    assert!(is_elapsed(&end.unwrap_err()));
}

/// A gRPC message: flag 0, its length, `len` bytes.
fn grpc_message(len: u8) -> Vec<u8> {
    let mut m = vec![0, 0, 0, 0, len];
    m.extend(std::iter::repeat_n(0xAB, usize::from(len)));
    m
}

/// A gRPC answer under way (a gRPC request carries no MCP facts).
async fn open_grpc(
    svc: &mut Svc,
    handle: &mut Handle,
) -> (
    Tx,
    CompletionHandle,
    Pin<Box<TimeoutBody<ObservedBody<Script>>>>,
) {
    let (tx, body) = script();
    let req = Request::post("/grpc.health.v1.Health/Watch")
        .header("content-type", "application/grpc")
        .body(McpBody::empty())
        .unwrap();
    let resp = exchange(svc, handle, req, answer("application/grpc+proto", body)).await;
    let h = handle_of(&resp);
    (tx, h, Box::pin(resp.into_body()))
}

fn data(frame: Option<Option<Result<Frame<Bytes>, BoxError>>>) -> Bytes {
    frame
        .expect("a frame is ready")
        .expect("not the end")
        .expect("no error")
        .into_data()
        .expect("data")
}

fn grpc_status(frame: Option<Option<Result<Frame<Bytes>, BoxError>>>) -> String {
    let trailers = frame
        .expect("a frame is ready")
        .expect("not the end")
        .expect("no error")
        .into_trailers()
        .expect("trailers");
    assert!(trailers.contains_key("grpc-message"), "{trailers:?}");
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

/// Between two messages, the deadline ends a gRPC answer with `DEADLINE_EXCEEDED` trailers
/// (not a reset stream, which a gRPC client reports as `INTERNAL`), once the boundary grace
/// has given the server's own status its chance; a status that comes within it passes.
#[tokio::test(start_paused = true)]
async fn a_grpc_answer_past_the_deadline_ends_with_deadline_exceeded() {
    let (mut svc, mut handle) = service(&layer(300));
    let (tx, h, mut body) = open_grpc(&mut svc, &mut handle).await;
    tx.bytes(&grpc_message(3));
    assert_eq!(data(now(&mut body)).len(), 8);
    assert!(now(&mut body).is_none());
    advance(ms(300)).await;
    assert!(now(&mut body).is_none(), "its status may be next");
    advance(ms(100)).await;
    assert_eq!(grpc_status(now(&mut body)), "4");
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
    assert!(
        tx.is_closed(),
        "the inner body is dropped: the gRPC call ends"
    );

    // A unary reply sent just before the deadline, its status just after: the call's own.
    let (tx, h, mut body) = open_grpc(&mut svc, &mut handle).await;
    tx.bytes(&grpc_message(3));
    let _ = data(now(&mut body));
    assert!(now(&mut body).is_none());
    advance(ms(300)).await;
    assert!(now(&mut body).is_none());
    let mut ok = http::HeaderMap::new();
    ok.insert("grpc-status", HeaderValue::from_static("0"));
    tx.trailers(ok);
    let status = now(&mut body).unwrap().unwrap().unwrap();
    assert_eq!(status.into_trailers().unwrap()["grpc-status"], "0");
    assert_eq!(h.outcome(), Some(Outcome::Success));
}

/// The layer with a 300 ms deadline and a 50 ms boundary grace.
fn grace_layer() -> TimeoutLayer {
    TimeoutLayer::builder(ms(300))
        .boundary_grace(ms(50))
        .build()
        .unwrap()
}

/// A gRPC answer whose first `sent` bytes of message `m` passed when its 300 ms deadline came:
/// the layer waits for the message's end.
async fn grpc_past_its_deadline(
    svc: &mut Svc,
    handle: &mut Handle,
    m: &[u8],
    sent: usize,
) -> (
    Tx,
    CompletionHandle,
    Pin<Box<TimeoutBody<ObservedBody<Script>>>>,
) {
    let (tx, h, mut body) = open_grpc(svc, handle).await;
    tx.bytes(&m[..sent]);
    assert_eq!(data(now(&mut body)).len(), sent);
    // (A server that polls again at once: the caller is not holding the answer up.)
    assert!(now(&mut body).is_none());
    advance(ms(300)).await;
    assert!(now(&mut body).is_none(), "waiting for the message's end");
    (tx, h, body)
}

/// In the middle of a message, the message is forwarded to its end first (the rest of the
/// frame, the start of the next one, is cut), then the trailers; past the grace the body fails.
#[tokio::test(start_paused = true)]
async fn a_grpc_message_in_progress_gets_the_grace() {
    let (mut svc, mut handle) = service(&grace_layer());
    let m = grpc_message(4);
    let (tx, _h, mut body) = grpc_past_its_deadline(&mut svc, &mut handle, &m, 6).await;
    let rest = [&m[6..], &grpc_message(2)[..]].concat();
    tx.bytes(&rest);
    assert_eq!(data(now(&mut body)).len(), 3, "up to the message's end");
    assert_eq!(grpc_status(now(&mut body)), "4");
    assert!(matches!(now(&mut body), Some(None)));

    let (_tx, h, mut body) = grpc_past_its_deadline(&mut svc, &mut handle, &m, 2).await;
    advance(ms(50)).await;
    assert!(is_elapsed(&now(&mut body).unwrap().unwrap().unwrap_err()));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
}

/// A gRPC reply whose message ends in the grace, then its status: the call ended by itself
/// (the server's trailers pass, the outcome is the server's); a message that ends in the grace
/// followed by more data, or by nothing until the grace's end, ends with the layer's
/// `DEADLINE_EXCEEDED` trailers at that boundary.
#[tokio::test(start_paused = true)]
async fn a_grpc_reply_finished_in_the_grace_keeps_its_status() {
    let (mut svc, mut handle) = service(&grace_layer());
    let m = grpc_message(4);

    let (tx, h, mut body) = grpc_past_its_deadline(&mut svc, &mut handle, &m, 6).await;
    tx.bytes(&m[6..]);
    assert_eq!(data(now(&mut body)).len(), 3);
    let mut ok = http::HeaderMap::new();
    ok.insert("grpc-status", HeaderValue::from_static("0"));
    tx.trailers(ok);
    let status = now(&mut body)
        .unwrap()
        .unwrap()
        .unwrap()
        .into_trailers()
        .unwrap();
    assert_eq!(status["grpc-status"], "0", "the server's own status");
    assert_eq!(h.outcome(), Some(Outcome::Success));
    drop(tx);
    assert!(matches!(now(&mut body), Some(None)));

    // More data after the message that ended in the grace: not forwarded.
    let (tx, h, mut body) = grpc_past_its_deadline(&mut svc, &mut handle, &m, 6).await;
    tx.bytes(&m[6..]);
    assert_eq!(data(now(&mut body)).len(), 3);
    tx.bytes(&grpc_message(1));
    assert_eq!(grpc_status(now(&mut body)), "4");
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));

    // Nothing more until the grace ends: the layer's status, at the boundary.
    let (tx, _h, mut body) = grpc_past_its_deadline(&mut svc, &mut handle, &m, 6).await;
    tx.bytes(&m[6..]);
    assert_eq!(data(now(&mut body)).len(), 3);
    assert!(now(&mut body).is_none(), "its status may still come");
    advance(ms(50)).await;
    assert_eq!(grpc_status(now(&mut body)), "4");
    assert!(tx.is_closed());
}

#[tokio::test(start_paused = true)]
async fn an_existing_completion_handle_is_used() {
    let (mut svc, mut handle) = service(&layer(300));
    let (_tx, body) = script();
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(3, "slow", V2026, None));
    let (_, send) = handle.next_request().await.unwrap();
    // An inner layer already observes the answer: its handle is in the extensions.
    let inner_handle = CompletionHandle::new();
    let mut inner = answer("text/event-stream", body);
    inner.extensions_mut().insert(inner_handle.clone());
    send.send_response(inner);
    let resp = fut.await.unwrap();
    let mut body = Box::pin(resp.into_body());
    advance(ms(300)).await;
    assert_timeout_event(&text(now(&mut body)), json!(3));
    assert_eq!(
        inner_handle.outcome(),
        Some(Outcome::Elapsed),
        "the same handle"
    );
}

// === progress and pauses ===

#[tokio::test(start_paused = true)]
async fn progress_resets_the_deadline_but_the_cap_holds() {
    let layer = TimeoutLayer::builder(ms(100))
        .reset_on_progress(true)
        .max_total(ms(250))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let (tx, body) = script();
    let start = Instant::now();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(1, "progress", V2026, None),
        answer("text/event-stream", body),
    )
    .await;
    let mut body = Box::pin(resp.into_body());
    for i in 1..=3 {
        advance(ms(80)).await;
        assert!(now(&mut body).is_none(), "alive at {:?}", start.elapsed());
        tx.event(progress(i));
        let _ = text(now(&mut body));
    }
    // 240 ms: the last reset would allow 340 ms, the cap says 250.
    advance(ms(9)).await;
    assert!(now(&mut body).is_none());
    advance(ms(1)).await;
    assert_timeout_event(&text(now(&mut body)), json!(1));
    assert_eq!(start.elapsed(), ms(250));
}

/// Under reset-on-progress, a progress notification already waiting when the deadline passes
/// counts as if read a moment earlier: it starts the deadline anew, and the call runs on to
/// its result.
#[tokio::test(start_paused = true)]
async fn progress_waiting_at_the_deadline_still_resets_it() {
    let layer = TimeoutLayer::builder(ms(100))
        .reset_on_progress(true)
        .max_total(ms(10_000))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let (tx, body) = script();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(1, "progress", V2026, None),
        answer("text/event-stream", body),
    )
    .await;
    let mut body = Box::pin(resp.into_body());
    tx.event(progress(1));
    advance(ms(100)).await;
    assert!(text(now(&mut body)).contains("progress"));
    assert!(now(&mut body).is_none(), "no timeout error after it");
    advance(ms(99)).await;
    tx.event(result(1));
    assert!(text(now(&mut body)).contains("\"result\""));
    assert!(matches!(now(&mut body), None | Some(None)));
}

#[tokio::test(start_paused = true)]
async fn without_reset_progress_does_not_extend_the_deadline() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, body) = script();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(1, "progress", V2026, None),
        answer("text/event-stream", body),
    )
    .await;
    let mut body = Box::pin(resp.into_body());
    advance(ms(80)).await;
    tx.event(progress(1));
    let _ = text(now(&mut body));
    advance(ms(20)).await;
    assert_timeout_event(&text(now(&mut body)), json!(1));
}

fn elicitation(id: i64) -> Value {
    json!({"jsonrpc":"2.0","id":id,"method":"elicitation/create","params":{"message":"sure?"}})
}

type Stream = Pin<Box<TimeoutBody<ObservedBody<Script>>>>;

/// Calls `svc` with `req`, answered with an SSE stream: the server's script, the answer's
/// completion handle and its body.
async fn open_stream(
    svc: &mut Svc,
    handle: &mut Handle,
    req: Request<McpBody>,
) -> (Tx, CompletionHandle, Stream) {
    let (tx, body) = script();
    let resp = exchange(svc, handle, req, answer("text/event-stream", body)).await;
    let h = handle_of(&resp);
    (tx, h, Box::pin(resp.into_body()))
}

/// The server asks the client (an elicitation, id 900) in the stream; the event goes out.
fn ask_client(tx: &Tx, body: &mut Stream) {
    tx.event(elicitation(900));
    let _ = text(now(body));
    // The caller asks for more at once, as an HTTP server does.
    assert!(now(body).is_none());
}

/// The client's answer to that elicitation: another POST of session `s-1` through the layer.
async fn client_answers(svc: &mut Svc, handle: &mut Handle) -> Resp {
    let answer_post = facts_req(
        McpRequest::new(MessageKind::Response, None, Some(900.into())),
        Some("s-1"),
        V2025,
    );
    let accepted = Response::builder().status(202).body(script().1).unwrap();
    exchange(svc, handle, answer_post, accepted).await
}

#[tokio::test(start_paused = true)]
async fn the_clock_pauses_while_the_client_is_asked() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, h, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "ask", V2025, Some("s-1"))).await;
    advance(ms(30)).await;
    ask_client(&tx, &mut body);
    assert_eq!(h.server_requests_outstanding(), 1);
    // A person takes their time.
    advance(ms(60_000)).await;
    assert!(now(&mut body).is_none(), "paused");

    // The client's answer passes through the layer (another POST of the session).
    let accepted = client_answers(&mut svc, &mut handle).await;
    assert!(!accepted.body().is_timed());
    assert_eq!(h.server_requests_outstanding(), 0);
    // The answer woke the body's task, which polls and sees it.
    assert!(now(&mut body).is_none());

    // 70 ms were left.
    advance(ms(69)).await;
    assert!(now(&mut body).is_none());
    advance(ms(1)).await;
    assert_timeout_event(&text(now(&mut body)), json!(1));
}

#[tokio::test(start_paused = true)]
async fn an_answer_wakes_a_paused_body_that_waits() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, _, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "ask", V2025, Some("s-1"))).await;
    ask_client(&tx, &mut body);
    // A reader waiting on the body (nothing arrives from the server any more).
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let frame = body.frame().await.unwrap().unwrap();
        (
            start.elapsed(),
            String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap(),
        )
    });
    advance(ms(5_000)).await;
    let _ = client_answers(&mut svc, &mut handle).await;
    let (waited, event) = tokio::time::timeout(ms(60_000), reader)
        .await
        .expect("the answer wakes the body")
        .unwrap();
    assert_timeout_event(&event, json!(1));
    assert_eq!(waited, ms(5_100));
}

#[tokio::test(start_paused = true)]
async fn the_cap_bounds_a_pause() {
    let layer = TimeoutLayer::builder(ms(100))
        .max_total(ms(1000))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let (tx, _, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "ask", V2025, Some("s-1"))).await;
    ask_client(&tx, &mut body);
    advance(ms(999)).await;
    assert!(now(&mut body).is_none());
    advance(ms(1)).await;
    assert_timeout_event(&text(now(&mut body)), json!(1));
}

/// An elicitation nobody answers, in a 2025-11-25 session: the pause ends at the layer's
/// default bound (10 min), like a deadline: the error event and `notifications/cancelled`.
#[tokio::test(start_paused = true)]
async fn an_unanswered_pause_ends_at_the_default_bound() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, h, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "ask", V2025, Some("s-1"))).await;
    advance(ms(30)).await;
    ask_client(&tx, &mut body);
    advance(Duration::from_secs(600) - ms(1)).await;
    assert!(now(&mut body).is_none(), "still paused");
    advance(ms(1)).await;
    assert_timeout_event(&text(now(&mut body)), json!(1));
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
    assert!(tx.is_closed());
    expect_cancelled(&mut handle, 1, "s-1", "request timed out").await;
}

/// Under 2026-07-28 nothing could end a pause (no session; the revision has no server requests
/// to answer), so a server request in the answer does not pause the call: it ends at its
/// deadline, not at `max_pause`.
#[tokio::test(start_paused = true)]
async fn a_sessionless_call_is_not_paused() {
    let layer = TimeoutLayer::builder(ms(100))
        .max_pause(ms(5_000))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let start = Instant::now();
    let (tx, h, mut body) = open_stream(&mut svc, &mut handle, call(6, "ask", V2026, None)).await;
    advance(ms(40)).await;
    ask_client(&tx, &mut body);
    assert_eq!(h.server_requests_outstanding(), 1);
    advance(ms(59)).await;
    assert!(now(&mut body).is_none());
    advance(ms(1)).await;
    assert_timeout_event(&text(now(&mut body)), json!(6));
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(start.elapsed(), ms(100));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
    assert!(tx.is_closed(), "closing the stream is the cancellation");
    drop(body);
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
}

/// A reader waiting on a paused body with nothing arriving is woken by the bound.
#[tokio::test(start_paused = true)]
async fn max_pause_wakes_a_waiting_reader() {
    let layer = TimeoutLayer::builder(ms(100))
        .max_pause(ms(2_000))
        .build()
        .unwrap();
    let (mut svc, mut handle) = service(&layer);
    let (tx, _, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "ask", V2025, Some("s-1"))).await;
    ask_client(&tx, &mut body);
    let start = Instant::now();
    let frame = tokio::time::timeout(ms(60_000), body.frame())
        .await
        .expect("the bound ends the pause")
        .unwrap()
        .unwrap();
    assert_timeout_event(
        std::str::from_utf8(frame.data_ref().unwrap()).unwrap(),
        json!(1),
    );
    assert_eq!(start.elapsed(), ms(2_000));
    expect_cancelled(&mut handle, 1, "s-1", "request timed out").await;
}

// === the caller going away ===

#[tokio::test(start_paused = true)]
async fn dropping_a_2025_answer_sends_cancelled() {
    let (mut svc, mut handle) = service(&layer(10_000));
    let (tx, h, mut body) =
        open_sse(&mut svc, &mut handle, call(11, "slow", V2025, Some("s-2"))).await;
    tx.event(progress(1));
    let _ = text(now(&mut body));
    drop(body);
    expect_cancelled(&mut handle, 11, "s-2", "caller went away").await;
    assert_eq!(h.outcome(), Some(Outcome::Cancelled));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_2026_answer_sends_nothing() {
    let (mut svc, mut handle) = service(&layer(10_000));
    let (tx, body) = script();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(11, "slow", V2026, None),
        answer("text/event-stream", body),
    )
    .await;
    let mut body = Box::pin(resp.into_body());
    tx.event(progress(1));
    let _ = text(now(&mut body));
    drop(body);
    assert!(tx.is_closed(), "closing the stream is the cancellation");
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_2025_call_without_a_session_cannot_be_cancelled_by_notification() {
    let (mut svc, mut handle) = service(&layer(10_000));
    let (_tx, body) = script();
    let resp = exchange(
        &mut svc,
        &mut handle,
        call(11, "slow", V2025, None),
        answer("text/event-stream", body),
    )
    .await;
    drop(resp);
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
}

// === exempt requests ===

#[tokio::test(start_paused = true)]
async fn long_lived_streams_notifications_and_responses_are_not_timed() {
    let (mut svc, mut handle) = service(&layer(100));
    let listen = facts_req(
        McpRequest::new(
            MessageKind::Request,
            Some(Method::SubscriptionsListen),
            Some(1.into()),
        ),
        None,
        V2026,
    );
    let notification = facts_req(
        McpRequest::new(
            MessageKind::Notification,
            Some(Method::NotificationsInitialized),
            None,
        ),
        Some("s-1"),
        V2025,
    );
    let response = facts_req(
        McpRequest::new(MessageKind::Response, None, Some(5.into())),
        Some("s-1"),
        V2025,
    );
    for req in [listen, notification, response] {
        let (tx, body) = script();
        let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(req);
        let (_, send) = handle.next_request().await.unwrap();
        // Headers long after the deadline are fine.
        advance(ms(1000)).await;
        send.send_response(answer("text/event-stream", body));
        let resp = fut.await.unwrap();
        assert!(
            resp.extensions().get::<CompletionHandle>().is_none(),
            "not observed here"
        );
        let mut body = Box::pin(resp.into_body());
        assert!(!body.is_timed());
        advance(ms(60_000)).await;
        tx.send(": keep-alive\n\n");
        assert_eq!(text(now(&mut body)), ": keep-alive\n\n");
        assert!(now(&mut body).is_none());
    }
}

// === typed calls ===

#[tokio::test(start_paused = true)]
async fn typed_calls_race_the_deadline() {
    let layer = TimeoutLayer::builder(ms(200))
        .tool("slow", ms(500))
        .build()
        .unwrap();
    let (mock, mut handle) = mock::pair::<ToolCall, ToolReply>();
    let mut svc = layer.layer(mock);

    let start = Instant::now();
    let fut = ServiceExt::<ToolCall>::ready(&mut svc)
        .await
        .unwrap()
        .call(ToolCall::new("slow", Default::default()));
    let _pending = handle.next_request().await.unwrap();
    assert!(is_elapsed(&fut.await.unwrap_err()));
    assert_eq!(start.elapsed(), ms(500));

    let fut = ServiceExt::<ToolCall>::ready(&mut svc)
        .await
        .unwrap()
        .call(ToolCall::new("add", Default::default()));
    let (_, send) = handle.next_request().await.unwrap();
    advance(ms(150)).await;
    let reply = ToolReply::Result {
        is_error: false,
        result: json!({"content": []}),
    };
    send.send_response(reply.clone());
    assert_eq!(fut.await.unwrap(), reply);
}

// === the types ===

#[test]
fn services_and_bodies_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    fn clone<T: Clone>() {}
    send_sync::<TimeoutLayer>();
    send::<Svc>();
    clone::<Svc>();
    send::<TimeoutBody<ObservedBody<Script>>>();
    send::<
        tower_armor_timeout::future::ResponseFuture<mock::future::ResponseFuture<Response<Script>>>,
    >();
}

// === the client cancels ===

/// The client's `notifications/cancelled` for request `id`: another POST of `session`.
async fn client_cancels(
    svc: &mut Svc,
    handle: &mut Handle,
    session: &'static str,
    id: i64,
) -> Resp {
    client_cancels_answered(svc, handle, session, id, 202).await
}

/// [`client_cancels`], the server answering the notification with `status`.
async fn client_cancels_answered(
    svc: &mut Svc,
    handle: &mut Handle,
    session: &'static str,
    id: i64,
    status: u16,
) -> Resp {
    let facts = McpRequest::new(
        MessageKind::Notification,
        Some(Method::NotificationsCancelled),
        None,
    )
    .with_cancelled_request(id.into());
    let post = facts_req(facts, Some(session), V2025);
    let answer = Response::builder().status(status).body(script().1).unwrap();
    exchange(svc, handle, post, answer).await
}

/// A cancellation the server refuses (here 400) cancelled nothing: a call that then ends
/// without its final response is a failure again.
#[tokio::test(start_paused = true)]
async fn a_cancellation_the_server_refuses_is_withdrawn() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, h, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-1"))).await;
    let refused = client_cancels_answered(&mut svc, &mut handle, "s-1", 1, 400).await;
    assert_eq!(refused.status(), 400);
    assert!(!h.is_cancel_requested());
    drop(tx);
    // The layer cancels the call (its own cancellation) and tells the client so.
    let end = text(now(&mut body));
    assert_eq!(event_json(&end)["error"]["code"], -31499, "{end}");
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Incomplete));
    expect_cancelled(&mut handle, 1, "s-1", "answer ended without its response").await;
}

/// A 2025-11-25 call the client cancels ends `Cancelled`, not `Incomplete`, when the server
/// then ends its stream without a final response: no layer counts it against the server, and
/// the layer sends no cancellation of its own.
#[tokio::test(start_paused = true)]
async fn a_call_the_client_cancels_ends_cancelled() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, h, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-1"))).await;
    let (_tx2, h2, _body2) =
        open_stream(&mut svc, &mut handle, call(2, "slow", V2025, Some("s-1"))).await;
    let (_tx3, h3, _body3) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-2"))).await;
    tx.event(progress(1));
    let _ = text(now(&mut body));
    advance(ms(30)).await;

    let passed = client_cancels(&mut svc, &mut handle, "s-1", 1).await;
    assert!(!passed.body().is_timed(), "a notification is not timed");
    assert!(h.is_cancel_requested());
    assert!(!h2.is_cancel_requested(), "another call of the session");
    assert!(!h3.is_cancel_requested(), "the same id in another session");
    assert_eq!(
        h.outcome(),
        None,
        "the call holds what it holds until its answer ends"
    );

    // rmcp ends the cancelled call's stream without a final response.
    drop(tx);
    assert!(matches!(now(&mut body), Some(None)), "the stream ends");
    assert_eq!(h.outcome(), Some(Outcome::Cancelled));
    advance(ms(200)).await;
    assert!(
        next_request(&mut handle, ms(50)).await.is_none(),
        "the server already has the client's cancellation"
    );
}

/// A server that ignores the client's cancellation is still timed, and judged by how its
/// answer ends.
#[tokio::test(start_paused = true)]
async fn a_server_that_ignores_a_cancellation_is_still_timed() {
    let (mut svc, mut handle) = service(&layer(100));
    let (_tx, h, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-1"))).await;
    let _ = client_cancels(&mut svc, &mut handle, "s-1", 1).await;
    assert!(body.is_timed());
    advance(ms(100)).await;
    assert_timeout_event(&text(now(&mut body)), json!(1));
    assert_eq!(h.outcome(), Some(Outcome::Elapsed));
}

/// A cancellation that passes before the call's answer has headers is applied when they come.
#[tokio::test(start_paused = true)]
async fn a_cancellation_before_the_headers_is_applied_to_the_answer() {
    let (mut svc, mut handle) = service(&layer(100));
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(4, "slow", V2025, Some("s-1")));
    let (_, send) = handle.next_request().await.unwrap();
    let _ = client_cancels(&mut svc, &mut handle, "s-1", 4).await;
    let (tx, body) = script();
    send.send_response(answer("text/event-stream", body));
    let resp = fut.await.unwrap();
    let h = handle_of(&resp);
    assert!(h.is_cancel_requested());
    let mut body = Box::pin(resp.into_body());
    drop(tx);
    assert!(matches!(now(&mut body), Some(None)));
    assert_eq!(h.outcome(), Some(Outcome::Cancelled));
}

/// The client's `DELETE` of `session` while the calls `running` of it run: the layer first
/// sends each its `notifications/cancelled` (with the `DELETE`'s headers), and the `DELETE` goes
/// in once the server has read them; the server answers all of them `status`.
async fn client_ends_session_mid_calls(
    svc: &mut Svc,
    handle: &mut Handle,
    session: &'static str,
    status: u16,
    running: &[i64],
) -> Resp {
    let facts = McpRequest::new(MessageKind::NotJsonRpc, None, None);
    let mut delete = facts_req(facts, Some(session), V2025);
    *delete.method_mut() = http::Method::DELETE;
    let fut = tokio::spawn(
        ServiceExt::<Request<McpBody>>::ready(svc)
            .await
            .unwrap()
            .call(delete),
    );
    let mut ids = Vec::new();
    for _ in running {
        let (req, send) = handle.next_request().await.unwrap();
        let v: Value = serde_json::from_slice(req.body().bytes()).unwrap();
        assert_eq!(
            v["method"], "notifications/cancelled",
            "cancellations first"
        );
        assert_eq!(v["params"]["reason"], "session ended by its client");
        assert_eq!(req.headers()["mcp-session-id"], session);
        assert_eq!(
            req.headers()["accept"],
            "application/json, text/event-stream",
            "what a POST needs, whatever the DELETE accepted"
        );
        ids.push(v["params"]["requestId"].as_i64().unwrap());
        send.send_response(Response::builder().status(status).body(script().1).unwrap());
    }
    ids.sort_unstable();
    assert_eq!(ids, running);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.method(), http::Method::DELETE, "then the DELETE");
    send.send_response(Response::builder().status(status).body(script().1).unwrap());
    fut.await.unwrap().unwrap()
}

/// A client that ends its session while calls of it run cancels them: the layer sends their
/// cancellations first (so rmcp stops their tools before it ends their streams), and they end
/// `Cancelled`. A `DELETE` the server refuses (refusing the cancellations alike) cancels
/// nothing.
#[tokio::test(start_paused = true)]
async fn a_client_ending_its_session_cancels_its_calls() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx1, h1, mut body1) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-1"))).await;
    let (tx2, h2, mut body2) =
        open_stream(&mut svc, &mut handle, call(2, "slow", V2025, Some("s-1"))).await;
    let (tx3, h3, mut body3) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-2"))).await;

    let refused = client_ends_session_mid_calls(&mut svc, &mut handle, "s-1", 404, &[1, 2]).await;
    assert_eq!(refused.status(), 404);
    assert!(!h1.is_cancel_requested() && !h2.is_cancel_requested());

    let ended = client_ends_session_mid_calls(&mut svc, &mut handle, "s-1", 202, &[1, 2]).await;
    assert_eq!(ended.status(), 202);
    assert!(!ended.body().is_timed());
    assert!(h1.is_cancel_requested() && h2.is_cancel_requested());
    assert!(!h3.is_cancel_requested(), "another session's call");
    for (tx, body) in [(tx1, &mut body1), (tx2, &mut body2)] {
        drop(tx);
        assert!(matches!(now(body), Some(None)));
    }
    // The other session's call, which the server ended without its response, the layer
    // cancels itself.
    drop(tx3);
    let end = text(now(&mut body3));
    assert_eq!(event_json(&end)["error"]["code"], -31499, "{end}");
    assert!(matches!(now(&mut body3), Some(None)));
    assert_eq!(h1.outcome(), Some(Outcome::Cancelled));
    assert_eq!(h2.outcome(), Some(Outcome::Cancelled));
    assert_eq!(h3.outcome(), Some(Outcome::Incomplete));
}

/// A call the client starts in its session while the layer waits for the server to read the
/// cancellations ahead of the session's `DELETE` ends with the session, by the client's choice
/// (not by the server's failure); unless the server refuses the `DELETE`.
#[tokio::test(start_paused = true)]
async fn a_call_started_while_its_session_ends_is_the_clients_choice_too() {
    for status in [202, 404] {
        let (mut svc, mut handle) = service(&layer(10_000));
        let (_tx1, h1, _body1) =
            open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-1"))).await;
        let facts = McpRequest::new(MessageKind::NotJsonRpc, None, None);
        let mut delete = facts_req(facts, Some("s-1"), V2025);
        *delete.method_mut() = http::Method::DELETE;
        let ended = tokio::spawn(
            ServiceExt::<Request<McpBody>>::ready(&mut svc)
                .await
                .unwrap()
                .call(delete),
        );
        let (cancel, ok) = handle.next_request().await.unwrap();
        assert_cancelled(&cancel, 1, "s-1", "session ended by its client");
        // Not read yet: the `DELETE` waits, and the client starts another call.
        let (_tx2, h2, _body2) =
            open_stream(&mut svc, &mut handle, call(2, "slow", V2025, Some("s-1"))).await;
        ok.send_response(Response::builder().status(status).body(script().1).unwrap());
        drop(cancel);
        let (req, answer) = handle.next_request().await.unwrap();
        assert_eq!(req.method(), http::Method::DELETE);
        answer.send_response(Response::builder().status(status).body(script().1).unwrap());
        assert_eq!(ended.await.unwrap().unwrap().status(), status);
        let accepted = status == 202;
        assert_eq!(h1.is_cancel_requested(), accepted, "{status}");
        assert_eq!(h2.is_cancel_requested(), accepted, "{status}");
    }
}

/// A cancellation naming no call of its session changes nothing.
#[tokio::test(start_paused = true)]
async fn a_cancellation_of_nothing_changes_nothing() {
    let (mut svc, mut handle) = service(&layer(100));
    let (tx, h, mut body) =
        open_stream(&mut svc, &mut handle, call(1, "slow", V2025, Some("s-1"))).await;
    let _ = client_cancels(&mut svc, &mut handle, "s-1", 9).await;
    let _ = client_cancels(&mut svc, &mut handle, "s-9", 1).await;
    assert!(!h.is_cancel_requested());
    tx.event(result(1));
    let _ = text(now(&mut body));
    assert_eq!(h.outcome(), Some(Outcome::Success));
    let _ = client_cancels(&mut svc, &mut handle, "s-1", 1).await;
    assert_eq!(
        h.outcome(),
        Some(Outcome::Success),
        "a finished call stays as it ended"
    );
}

// === the drain deadline (`CallDrain`) ===

fn assert_shutdown_event(s: &str, id: Value) {
    let v = event_json(s);
    assert_eq!(v["id"], id, "{s}");
    assert_eq!(v["error"]["code"], -31510, "{s}");
    assert_eq!(v["error"]["message"], "server shutting down");
}

fn is_shutting_down(e: &BoxError) -> bool {
    e.downcast_ref::<tower_armor_mcp::error::ShuttingDown>()
        .is_some()
}

#[tokio::test(start_paused = true)]
async fn the_drain_ends_a_call_before_its_headers_and_cancels_a_2025_one() {
    let l = layer(60_000);
    let drain = l.drain_handle();
    let (mut svc, mut handle) = service(&l);
    let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(4, "slow", V2025, Some("s-1")));
    let _pending = handle.next_request().await.unwrap();
    let mut fut = Box::pin(fut);
    assert!((&mut fut).now_or_never().is_none(), "running");
    drain.end_calls();
    assert!(drain.is_ended());
    let err = (&mut fut)
        .now_or_never()
        .expect("ends at once")
        .unwrap_err();
    assert!(is_shutting_down(&err), "{err}");
    expect_cancelled(&mut handle, 4, "s-1", "server shutting down").await;
}

#[tokio::test(start_paused = true)]
async fn the_drain_ends_a_stream_with_one_final_event_at_a_boundary() {
    let l = layer(60_000);
    let drain = l.drain_handle();
    let (mut svc, mut handle) = service(&l);
    let (tx, h, mut body) = open_sse(&mut svc, &mut handle, call(7, "slow", V2026, None)).await;
    // In the middle of an event: it is finished first.
    tx.send("data: {\"jsonrpc\":\"2.0\",");
    assert!(text(now(&mut body)).starts_with("data: "));
    drain.end_calls();
    assert!(now(&mut body).is_none(), "waits for the event's end");
    tx.send("\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p\",\"progress\":1}}\n\ndata: {\"jsonrpc\"");
    assert!(
        text(now(&mut body)).ends_with("}}\n\n"),
        "cut after the boundary"
    );
    assert_shutdown_event(&text(now(&mut body)), json!(7));
    assert!(tx.is_closed(), "the inner stream is closed");
    assert!(matches!(now(&mut body), Some(None)), "then the end");
    // No fault of the server: a local rejection, which breakers ignore.
    assert_eq!(
        h.outcome(),
        Some(Outcome::Rejected(
            tower_armor_mcp::error::LocalRejection::ShuttingDown
        ))
    );
    drop(body);
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
}

/// The server ends a call's stream (it cancels its sessions) after the drain ended the call
/// but before the answer was polled again (its client reads slowly): the final error for the
/// call's id still goes out.
#[tokio::test(start_paused = true)]
async fn a_stream_the_server_ends_during_the_drain_still_gets_the_final_error() {
    let l = layer(60_000);
    let drain = l.drain_handle();
    let (mut svc, mut handle) = service(&l);
    let (tx, _h, mut body) = open_sse(&mut svc, &mut handle, call(9, "slow", V2026, None)).await;
    tx.event(progress(1));
    assert!(text(now(&mut body)).contains("progress"));
    drain.end_calls();
    drop(tx);
    assert_shutdown_event(&text(now(&mut body)), json!(9));
    assert!(matches!(now(&mut body), Some(None)), "then the end");
}

/// A stream that always has a frame ready (a tool reporting progress faster than its client
/// reads) cannot outlast the drain: the frame waiting when the drain comes passes whole, then
/// the final event.
#[tokio::test(start_paused = true)]
async fn the_drain_ends_a_stream_that_always_has_a_frame_ready() {
    let l = layer(60_000);
    let drain = l.drain_handle();
    let (mut svc, mut handle) = service(&l);
    let (tx, _h, mut body) = open_sse(&mut svc, &mut handle, call(8, "slow", V2026, None)).await;
    for n in 0..50 {
        tx.event(progress(n));
    }
    assert!(text(now(&mut body)).contains("progress"));
    drain.end_calls();
    assert!(
        text(now(&mut body)).contains("progress"),
        "the frame waiting passes"
    );
    assert_shutdown_event(&text(now(&mut body)), json!(8));
    assert!(matches!(now(&mut body), Some(None)), "then the end");
}

#[tokio::test(start_paused = true)]
async fn after_the_drain_a_call_is_refused_without_reaching_the_server() {
    let l = layer(60_000);
    let (mut svc, mut handle) = service(&l);
    l.drain_handle().end_calls();
    let err = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(call(9, "add", V2026, None))
        .await
        .unwrap_err();
    assert!(is_shutting_down(&err), "{err}");
    assert!(next_request(&mut handle, ms(1000)).await.is_none());
    // Nor does anything else: a server cancelling its sessions would answer a session's
    // request 404 ("start a new session"), not "shutting down".
    let note = McpRequest::new(
        MessageKind::Notification,
        Some(Method::NotificationsCancelled),
        None,
    );
    let list = McpRequest::new(
        MessageKind::Request,
        Some(Method::ToolsList),
        Some(RequestId::Number(3)),
    );
    for facts in [note, list] {
        let err = ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(facts_req(facts, Some("s-2"), V2025))
            .await
            .unwrap_err();
        assert!(is_shutting_down(&err), "{err}");
        assert!(next_request(&mut handle, ms(1000)).await.is_none());
    }
}

/// While draining, a new gRPC call (which has no MCP facts) is refused like any call; another
/// request without facts still passes.
#[tokio::test(start_paused = true)]
async fn while_draining_a_new_grpc_call_is_refused() {
    let l = layer(60_000);
    let (mut svc, mut handle) = service(&l);
    l.drain_handle().refuse_new_calls();
    let grpc = Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .body(McpBody::empty())
        .unwrap();
    let err = ServiceExt::<Request<McpBody>>::ready(&mut svc)
        .await
        .unwrap()
        .call(grpc)
        .await
        .unwrap_err();
    assert!(is_shutting_down(&err), "{err}");
    assert!(next_request(&mut handle, ms(1000)).await.is_none());

    let plain = Request::get("/other").body(McpBody::empty()).unwrap();
    let (tx, body) = script();
    drop(tx);
    let resp = exchange(&mut svc, &mut handle, plain, answer("text/plain", body)).await;
    assert_eq!(resp.status(), 200);
}

/// While draining (`refuse_new_calls`), a new call or listen stream is refused without reaching
/// the server; a call already in flight finishes with its answer, and what concerns calls in
/// flight passes: a client's answer to a server request, `notifications/cancelled`, a
/// session's `DELETE`, a resumption, `ping`, a task's polls and reads of the catalogue.
#[tokio::test(start_paused = true)]
async fn while_draining_new_calls_are_refused_and_follow_ups_pass() {
    let l = layer(60_000);
    let drain = l.drain_handle();
    let (mut svc, mut handle) = service(&l);
    let running = tokio::spawn(
        ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(call(1, "slow", V2025, Some("s-1"))),
    );
    let (_req, send) = handle.next_request().await.unwrap();
    assert!(!drain.refuses_new_calls());
    drain.refuse_new_calls();
    assert!(drain.refuses_new_calls() && !drain.is_ended());

    let listen = McpRequest::new(MessageKind::Request, None, None)
        .with_stream_role(tower_armor_mcp::StreamRole::Listen);
    let init = McpRequest::new(
        MessageKind::Request,
        Some(Method::Initialize),
        Some(RequestId::Number(2)),
    );
    for req in [
        call(3, "add", V2026, None),
        call(4, "add", V2025, Some("s-1")),
        facts_req(init, None, V2025),
        facts_req(listen, Some("s-1"), V2025),
    ] {
        let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(req);
        // Bounded: a request let through would wait for the mock's answer.
        let err = tokio::time::timeout(ms(1000), fut)
            .await
            .expect("refused at once")
            .unwrap_err();
        assert!(is_shutting_down(&err), "{err}");
        assert!(next_request(&mut handle, ms(100)).await.is_none());
    }

    let reply = McpRequest::new(MessageKind::Response, None, Some(RequestId::Number(0)));
    let cancel = McpRequest::new(
        MessageKind::Notification,
        Some(Method::NotificationsCancelled),
        None,
    )
    .with_cancelled_request(RequestId::Number(77));
    let resume = McpRequest::new(MessageKind::Request, None, None).with_stream_role(
        tower_armor_mcp::StreamRole::Resume {
            last_event_id: HeaderValue::from_static("0"),
        },
    );
    let mut delete = facts_req(
        McpRequest::new(MessageKind::NotJsonRpc, None, None),
        Some("s-9"),
        V2025,
    );
    *delete.method_mut() = http::Method::DELETE;
    // `ping`, and a task-augmented call's polls, ask about work already running.
    let ping = McpRequest::new(
        MessageKind::Request,
        Some(Method::Ping),
        Some(RequestId::Number(5)),
    );
    let task = McpRequest::new(
        MessageKind::Request,
        Some(Method::TasksGet),
        Some(RequestId::Number(6)),
    );
    // Catalogue reads run no tool, and a client may need one to read a call's answer (the
    // Python SDK lists the tools after a call).
    let lists = [
        Method::ToolsList,
        Method::ResourcesList,
        Method::ResourceTemplatesList,
        Method::PromptsList,
        Method::ServerDiscover,
    ]
    .map(|m| {
        facts_req(
            McpRequest::new(MessageKind::Request, Some(m), Some(RequestId::Number(7))),
            Some("s-1"),
            V2025,
        )
    });
    for req in [
        facts_req(reply, Some("s-1"), V2025),
        facts_req(cancel, Some("s-1"), V2025),
        facts_req(resume, Some("s-1"), V2025),
        delete,
        facts_req(ping, Some("s-1"), V2025),
        facts_req(task, None, V2026),
    ]
    .into_iter()
    .chain(lists)
    {
        let (_tx, body) = script();
        let mut accepted = answer("application/json", body);
        *accepted.status_mut() = http::StatusCode::ACCEPTED;
        let resp = exchange(&mut svc, &mut handle, req, accepted).await;
        assert_eq!(resp.status(), 202);
    }

    // The call in flight gets its answer.
    let (tx, body) = script();
    tx.send(&result(1).to_string());
    drop(tx);
    send.send_response(answer("application/json", body));
    let resp = tokio::time::timeout(ms(1000), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// An answer the server had ready when the drain came is kept (it may be a final result whose
/// work is done); a 5xx from a server being shut down gets the drain's error instead.
#[tokio::test(start_paused = true)]
async fn at_the_drain_a_ready_answer_is_kept_and_a_server_error_replaced() {
    for (status, kept) in [(200, true), (500, false)] {
        let l = layer(60_000);
        let drain = l.drain_handle();
        let (mut svc, mut handle) = service(&l);
        let fut = ServiceExt::<Request<McpBody>>::ready(&mut svc)
            .await
            .unwrap()
            .call(call(5, "add", V2026, None));
        let mut fut = Box::pin(fut);
        let (_req, send) = handle.next_request().await.unwrap();
        assert!((&mut fut).now_or_never().is_none());
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(script().1)
                .unwrap(),
        );
        drain.end_calls();
        let out = (&mut fut).now_or_never().expect("ready");
        if kept {
            assert_eq!(out.unwrap().status(), status);
        } else {
            assert!(is_shutting_down(&out.unwrap_err()));
        }
    }
}

// === with the inspector in front: ids in progress ===

type Inspected = tower_armor_mcp::inspect::McpInspect<Svc>;

/// A `tools/call` POST of session `s-1` with `id`, or `body` instead of the call.
fn session_post(id: i64, body: Option<Value>) -> Request<String> {
    let body = body.unwrap_or_else(
        || json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"slow"}}),
    );
    Request::post("/mcp")
        .header("host", "127.0.0.1:1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "s-1")
        .header("mcp-protocol-version", V2025.as_str())
        .body(body.to_string())
        .unwrap()
}

/// The status of call `id`, if the inspector answers it at once (one that reaches the silent
/// mock is not answered).
async fn status_now(svc: &Inspected, id: i64) -> Option<http::StatusCode> {
    let call = ServiceExt::oneshot(svc.clone(), session_post(id, None));
    let resp = tokio::time::timeout(ms(100), call).await.ok()?;
    Some(resp.unwrap().status())
}

/// The inspector in front of the layer (a 10 s deadline, `grace` to resume), in front of a
/// mock server.
fn inspected(grace: Duration) -> (Inspected, Handle) {
    let timeout = TimeoutLayer::builder(ms(10_000))
        .resume_grace(grace)
        .build()
        .unwrap();
    inspected_by(timeout)
}

/// The inspector in front of `timeout`, in front of a mock server.
fn inspected_by(timeout: TimeoutLayer) -> (Inspected, Handle) {
    let (mock, handle) = mock::pair::<Request<McpBody>, Response<Script>>();
    let svc = tower_armor_mcp::inspect::McpInspectLayer::new().layer(timeout.layer(mock));
    (svc, handle)
}

/// Starts call `id`; the server lets go of its request at once (as rmcp does for a tool that
/// does not take its `Parts`) and sends one event with rmcp's kind of id (`<index>/<stream>`),
/// which the client reads before it goes away: the call is held for resumption.
async fn hold_a_call(svc: &Inspected, handle: &mut Handle, id: i64) {
    let first = tokio::spawn(ServiceExt::oneshot(svc.clone(), session_post(id, None)));
    let (req, reply) = next_within(handle).await.expect("the call");
    drop(req);
    let (tx, body) = script();
    reply.send_response(answer("text/event-stream", body));
    let mut resp = Box::pin(first.await.unwrap().unwrap().into_body());
    tx.send(&format!("id: 1/st{id}\ndata: {}\n\n", progress(1)));
    let _ = resp.frame().await;
}

/// The client's own `notifications/cancelled` of its call `id` in session `s-1`.
fn client_cancel(id: i64) -> Request<String> {
    let note = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":id,"reason":"user"}});
    session_post(id, Some(note))
}

/// Call `id` reaches the server (its id is free) and is answered 202.
async fn reaches_the_server(svc: &Inspected, handle: &mut Handle, id: i64) {
    let call = tokio::spawn(ServiceExt::oneshot(svc.clone(), session_post(id, None)));
    let (_req, reply) = next_within(handle).await.expect("the id is free again");
    reply.send_response(Response::builder().status(202).body(script().1).unwrap());
    let status = call.await.unwrap().unwrap().status();
    assert_eq!(status, http::StatusCode::ACCEPTED);
}

/// A client that names its call in float form (`12.0`: rmcp reads it as `12` and cancels the
/// call) cancels it here too: the call its server then ends without a response is the
/// client's choice (`Cancelled`), not the server's failure, which a breaker would count.
#[tokio::test(start_paused = true)]
async fn a_cancellation_naming_its_call_in_float_form_is_the_clients() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (body, tx, _, completion) = reading(&svc, &mut handle, 12).await;
    let note = json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":12.0,"reason":"user"}});
    let cancel = tokio::spawn(ServiceExt::oneshot(
        svc.clone(),
        session_post(12, Some(note)),
    ));
    let (_req, reply) = next_within(&mut handle)
        .await
        .expect("the client's cancellation");
    reply.send_response(Response::builder().status(202).body(script().1).unwrap());
    assert_eq!(cancel.await.unwrap().unwrap().status(), 202);
    assert!(completion.is_cancel_requested());
    server_ends(tx, body).await;
    assert_eq!(completion.outcome(), Some(Outcome::Cancelled));
    assert!(
        next_within(&mut handle).await.is_none(),
        "nothing of the layer's own"
    );
}

/// A call its client cancels itself, whose answer it then drops before the server ends it:
/// nothing is held for resumption, and the layer sends no cancellation of its own.
#[tokio::test(start_paused = true)]
async fn a_call_its_client_cancelled_is_not_held_when_its_answer_is_dropped() {
    let (svc, mut handle) = inspected(ms(5_000));
    let first = tokio::spawn(ServiceExt::oneshot(svc.clone(), session_post(8, None)));
    let (req, reply) = next_within(&mut handle).await.expect("the call");
    drop(req);
    let (tx, body) = script();
    reply.send_response(answer("text/event-stream", body));
    let mut resp = Box::pin(first.await.unwrap().unwrap().into_body());
    tx.send(&format!("id: 1/st8\ndata: {}\n\n", progress(1)));
    let _ = resp.frame().await;
    let cancel = tokio::spawn(ServiceExt::oneshot(svc.clone(), client_cancel(8)));
    let (_req, reply) = next_within(&mut handle)
        .await
        .expect("the client's cancellation");
    reply.send_response(Response::builder().status(202).body(script().1).unwrap());
    assert_eq!(cancel.await.unwrap().unwrap().status(), 202);
    drop(resp);
    advance(ms(6_000)).await;
    assert!(
        next_within(&mut handle).await.is_none(),
        "no cancellation of the layer's own"
    );
    drop(tx);

    // The same, but the server refuses the client's cancellation once the answer is gone:
    // nobody else cancels the call, so the layer does.
    let first = tokio::spawn(ServiceExt::oneshot(svc.clone(), session_post(9, None)));
    let (req, reply) = next_within(&mut handle).await.expect("the call");
    drop(req);
    let (tx, body) = script();
    reply.send_response(answer("text/event-stream", body));
    let mut resp = Box::pin(first.await.unwrap().unwrap().into_body());
    tx.send(&format!("id: 1/st9\ndata: {}\n\n", progress(1)));
    let _ = resp.frame().await;
    let cancel = tokio::spawn(ServiceExt::oneshot(svc.clone(), client_cancel(9)));
    let (_req, reply) = next_within(&mut handle)
        .await
        .expect("the client's cancellation");
    drop(resp);
    reply.send_response(Response::builder().status(400).body(script().1).unwrap());
    assert_eq!(cancel.await.unwrap().unwrap().status(), 400);
    let (n, _) = next_within(&mut handle)
        .await
        .expect("the layer's cancellation");
    let facts = n.extensions().get::<McpRequest>().unwrap();
    assert_eq!(facts.method(), Some(&Method::NotificationsCancelled));
    drop(tx);
}

/// The drain cancels the calls held for resumption at once (nothing can resume them once
/// requests are refused): their tools stop, and the server need not wait out their grace.
#[tokio::test(start_paused = true)]
async fn the_drain_cancels_the_held_calls() {
    let timeout = TimeoutLayer::builder(ms(10_000))
        .resume_grace(ms(5_000))
        .build()
        .unwrap();
    let drain = timeout.drain_handle();
    let (svc, mut handle) = inspected_by(timeout);
    hold_a_call(&svc, &mut handle, 7).await;
    assert_eq!(drain.calls_awaiting_resumption(), 1);
    drain.end_calls();
    assert_eq!(drain.calls_awaiting_resumption(), 0);
    let n = next_request(&mut handle, ms(10))
        .await
        .expect("the layer's cancellation, at once");
    assert_cancelled(&n, 7, "s-1", "server shutting down");
}

/// A cancellation the server never takes in (it never gets ready) is given up after a while,
/// and with it what it holds for its call: the id is free again.
#[tokio::test(start_paused = true)]
async fn a_cancellation_the_server_never_takes_lets_go_in_the_end() {
    let (svc, mut handle) = inspected(ms(1_000));
    hold_a_call(&svc, &mut handle, 7).await;
    handle.allow(0);
    // The grace ends: the layer's cancellation waits for the server to get ready.
    advance(ms(1_000)).await;
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    advance(ms(10_500)).await;
    tokio::task::yield_now().await;
    handle.allow(10);
    reaches_the_server(&svc, &mut handle, 7).await;
}

/// A call held for resumption keeps its id in progress in the inspector's table (a reuse is
/// refused), and so does the `notifications/cancelled` the layer sends when the grace ends,
/// until the server has read it. A held call its client cancels itself is withdrawn: no
/// cancellation of the layer's own, and the id is free once the server has read the client's.
#[tokio::test(start_paused = true)]
async fn a_held_call_keeps_its_id_in_progress_until_its_cancellation_is_read() {
    let (svc, mut handle) = inspected(ms(1_000));
    let refused = Some(http::StatusCode::BAD_REQUEST);

    hold_a_call(&svc, &mut handle, 7).await;
    assert_eq!(status_now(&svc, 7).await, refused);
    // The grace ends: the layer cancels the call; the id stays taken until the server has read
    // the notification.
    advance(ms(1_000)).await;
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled");
    assert_cancelled(&cancel, 7, "s-1", "caller went away");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    assert_eq!(status_now(&svc, 7).await, refused);
    drop(cancel);
    reaches_the_server(&svc, &mut handle, 7).await;

    hold_a_call(&svc, &mut handle, 8).await;
    let client_cancel = tokio::spawn(ServiceExt::oneshot(svc.clone(), client_cancel(8)));
    let (read, ok) = next_within(&mut handle)
        .await
        .expect("the client's notification");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    let accepted = client_cancel.await.unwrap().unwrap().status();
    assert_eq!(accepted, http::StatusCode::ACCEPTED);
    assert_eq!(status_now(&svc, 8).await, refused);
    drop(read);
    reaches_the_server(&svc, &mut handle, 8).await;
    advance(ms(2_000)).await;
    assert!(
        next_request(&mut handle, ms(100)).await.is_none(),
        "no cancellation of its own for a call the client cancelled"
    );
}

/// Starts call `id` in session `s-1`, reads its first event (event id `1/<id + 100>`, rmcp's
/// kind, on a stream numbered apart from the id: a `GET` can resume it) and drops the answer;
/// returns a flag its completion handle's release listener sets.
async fn drop_watched(
    svc: &Inspected,
    handle: &mut Handle,
    id: i64,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let (body, _tx, released, completion) = reading(svc, handle, id).await;
    drop(body);
    assert_eq!(completion.outcome(), Some(Outcome::Cancelled));
    released
}

/// A held call keeps what it holds outside the layer — a bulkhead in front waits for its
/// completion handle's release listeners — until it is cancelled when the grace ends, although
/// its outcome (`Cancelled`) is known at the drop. A held call its client cancels itself lets
/// go at once.
#[tokio::test(start_paused = true)]
async fn a_held_call_is_released_only_when_it_is_cancelled() {
    use std::sync::atomic::Ordering;
    let (svc, mut handle) = inspected(ms(1_000));
    let released = drop_watched(&svc, &mut handle, 7).await;
    advance(ms(900)).await;
    tokio::task::yield_now().await;
    assert!(!released.load(Ordering::SeqCst), "held for resumption");
    advance(ms(100)).await;
    cancelled_then_read(&mut handle, 7, "caller went away", &released).await;

    let released = drop_watched(&svc, &mut handle, 8).await;
    assert!(!released.load(Ordering::SeqCst));
    let client_cancel = tokio::spawn(ServiceExt::oneshot(svc.clone(), client_cancel(8)));
    let (read, ok) = next_within(&mut handle)
        .await
        .expect("the client's notification");
    assert!(
        !released.load(Ordering::SeqCst),
        "held until the server has read the client's cancellation"
    );
    drop(read);
    assert!(
        !released.load(Ordering::SeqCst),
        "held until the server has accepted it (refused, the layer cancels the call itself)"
    );
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    assert_eq!(
        client_cancel.await.unwrap().unwrap().status(),
        http::StatusCode::ACCEPTED
    );
    assert!(released.load(Ordering::SeqCst), "the client cancelled it");

    // A resumption the server refuses (404: the session or the stream is gone): the tool may
    // run on with nobody to read it, so it is cancelled at once, not at the grace's end.
    let released = drop_watched(&svc, &mut handle, 9).await;
    let started = Instant::now();
    let (get, _get, not_found) = resumption(&svc, &mut handle, "1/109").await;
    not_found.send_response(Response::builder().status(404).body(script().1).unwrap());
    assert_eq!(get.await.unwrap().unwrap().status(), 404);
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled");
    assert!(
        started.elapsed() < ms(500),
        "at once, not at the grace's end"
    );
    assert_cancelled(&cancel, 9, "s-1", "caller went away");
    assert!(!released.load(Ordering::SeqCst), "held until read");
    drop(cancel);
    assert!(released.load(Ordering::SeqCst));
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());

    // A server error the client may retry: held again for the grace, then cancelled.
    let released = drop_watched(&svc, &mut handle, 10).await;
    let (get, _get, unavailable) = resumption(&svc, &mut handle, "1/110").await;
    unavailable.send_response(Response::builder().status(503).body(script().1).unwrap());
    assert_eq!(get.await.unwrap().unwrap().status(), 503);
    assert!(
        next_request(&mut handle, ms(500)).await.is_none(),
        "held again"
    );
    assert!(!released.load(Ordering::SeqCst));
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled at the grace's end");
    assert_cancelled(&cancel, 10, "s-1", "caller went away");
    drop(cancel);
    assert!(released.load(Ordering::SeqCst));
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
}

/// A held call its client tries to cancel itself, with a cancellation (or session end) the
/// server refuses, is no longer held: the layer cancels it itself at once, keeping what it
/// holds until the server has read that. Otherwise a refused cancellation (a bad `Host`, say)
/// would let the tool run past its deadline with nothing held and nothing to cancel it.
#[tokio::test(start_paused = true)]
async fn a_held_call_whose_client_cancellation_is_refused_is_cancelled_by_the_layer() {
    use std::sync::atomic::Ordering;
    let (svc, mut handle) = inspected(ms(10_000));
    for (id, delete) in [(31, false), (32, true)] {
        let released = drop_watched(&svc, &mut handle, id).await;
        let request = if delete {
            Request::delete("/mcp")
                .header("host", "127.0.0.1:1")
                .header("mcp-session-id", "s-1")
                .header("mcp-protocol-version", V2025.as_str())
                .body(String::new())
                .unwrap()
        } else {
            client_cancel(id)
        };
        let refused = tokio::spawn(ServiceExt::oneshot(svc.clone(), request));
        if delete {
            // The held call's cancellation goes ahead of the `DELETE` (refused alike here),
            // keeping what the call holds until the server has read it.
            let (first, no) = next_within(&mut handle)
                .await
                .expect("the cancellation ahead of the DELETE");
            assert_cancelled(&first, id, "s-1", "session ended by its client");
            no.send_response(Response::builder().status(403).body(script().1).unwrap());
            drop(first);
            assert!(
                !released.load(Ordering::SeqCst),
                "the DELETE still holds it"
            );
        }
        let (read, forbidden) = next_within(&mut handle)
            .await
            .expect("the client's request");
        if delete {
            assert_eq!(read.method(), http::Method::DELETE);
        }
        drop(read);
        forbidden.send_response(Response::builder().status(403).body(script().1).unwrap());
        assert_eq!(refused.await.unwrap().unwrap().status(), 403);
        let (cancel, ok) = next_within(&mut handle)
            .await
            .expect("the layer's own cancellation, at once");
        assert_cancelled(&cancel, id, "s-1", "caller went away");
        assert!(
            !released.load(Ordering::SeqCst),
            "held until the server has read it"
        );
        assert_eq!(
            status_now(&svc, id).await,
            Some(http::StatusCode::BAD_REQUEST),
            "the id stays in progress until then"
        );
        drop(cancel);
        assert!(released.load(Ordering::SeqCst));
        ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    }
}

/// Without a resume grace a dropped call is cancelled at once; a client that resumes it later
/// (the SDKs do, after rmcp's 3 s `retry`) gets what the server replays and then a final error
/// for its id, instead of a stream that ends without one and leaves it waiting until its own
/// timeout: again on a retried resumption, never when the replay carries the call's result,
/// never in another session, and not past two minutes.
#[tokio::test(start_paused = true)]
async fn a_late_resumption_of_a_cancelled_call_ends_with_an_error_for_its_id() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let _released = drop_watched(&svc, &mut handle, 11).await;
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled at once");
    assert_cancelled(&cancel, 11, "s-1", "caller went away");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    drop(cancel);

    // Resumes stream 111 in `session` (its last event `2/111` replayed, then `extra`); returns
    // the errors the client read.
    let mut late = async |session: &'static str, extra: Option<Value>| {
        let mut get = resume_get("1/111");
        get.headers_mut()
            .insert("mcp-session-id", HeaderValue::from_static(session));
        let get = tokio::spawn(ServiceExt::oneshot(svc.clone(), get));
        let (_req, reply) = next_within(&mut handle).await.expect("the resumption");
        let (tx, body) = script();
        tx.send(&format!("id: 2/111\ndata: {}\n\n", progress(2)));
        if let Some(m) = extra {
            tx.send(&format!("id: 3/111\ndata: {m}\n\n"));
        }
        drop(tx);
        reply.send_response(answer("text/event-stream", body));
        let resp = get.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let bytes = tokio::time::timeout(ms(1_000), resp.into_body().collect())
            .await
            .expect("the stream ends")
            .unwrap()
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with("id: 2/111\n"), "{text}");
        text.split("\n\n")
            .filter_map(|e| e.rsplit("data: ").next())
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter(|m| m.get("error").is_some())
            .collect::<Vec<Value>>()
    };
    for _ in 0..2 {
        let errors = late("s-1", None).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0]["id"], 11);
        assert_eq!(errors[0]["error"]["code"], -31499);
    }
    assert!(
        late("s-1", Some(result(11))).await.is_empty(),
        "the result came"
    );
    assert!(
        late("s-2", None).await.is_empty(),
        "another session's stream"
    );
    advance(Duration::from_secs(121)).await;
    assert!(
        late("s-1", None).await.is_empty(),
        "forgotten after two minutes"
    );
}

/// A call dropped after its deadline passed (the layer was waiting for the event in progress to
/// end) is cancelled as timed out, and a late resumption of it ends with the timeout's error.
#[tokio::test(start_paused = true)]
async fn a_late_resumption_of_a_call_past_its_deadline_gets_the_timeout_error() {
    let timeout = TimeoutLayer::builder(ms(300))
        .boundary_grace(ms(50))
        .build()
        .unwrap();
    let (svc, mut handle) = inspected_by(timeout);
    let first = tokio::spawn(ServiceExt::oneshot(svc.clone(), session_post(12, None)));
    let (req, reply) = next_within(&mut handle).await.expect("the call");
    drop(req);
    let (tx, body) = script();
    reply.send_response(answer("text/event-stream", body));
    let mut body = Box::pin(first.await.unwrap().unwrap().into_body());
    tx.send(&format!("id: 1/112\ndata: {}\n\n", progress(1)));
    let _ = body.frame().await;
    tx.send("data: {\"partial\":");
    let _ = body.frame().await;
    advance(ms(310)).await;
    assert!(now(&mut body).is_none(), "waiting for the event's end");
    drop(body);
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled");
    assert_cancelled(&cancel, 12, "s-1", "request timed out");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());

    let (get, _req, reply) = resumption(&svc, &mut handle, "1/112").await;
    let (tx, body) = script();
    drop(tx);
    reply.send_response(answer("text/event-stream", body));
    let resp = get.await.unwrap().unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let end: Value = serde_json::from_str(text.trim().trim_start_matches("data: ")).unwrap();
    assert_eq!(end["id"], 12, "{text}");
    assert_eq!(end["error"]["code"], -31504, "{text}");
}

/// Under reset-on-progress a call held for resumption is judged on its progress again once
/// resumed: the hold does not run its deadline down (the progress it makes meanwhile goes
/// unseen; the server replays it), the grace and the cap bound it. A resumption the server
/// answers with nothing (the call ended meanwhile: rmcp keeps no answer of a call that is
/// over) ends with an error saying the answer is lost, not that its client came back late.
#[tokio::test(start_paused = true)]
async fn a_held_call_is_judged_on_its_progress_again_once_resumed() {
    let timeout = TimeoutLayer::builder(ms(1_000))
        .reset_on_progress(true)
        .max_total(ms(20_000))
        .resume_grace(ms(5_000))
        .build()
        .unwrap();
    let (svc, mut handle) = inspected_by(timeout);
    let (body, _tx, _, _) = reading(&svc, &mut handle, 31).await;
    drop(body);
    advance(ms(3_000)).await;
    assert!(
        handle.next_request().now_or_never().is_none(),
        "not cancelled during the hold, three base deadlines in"
    );
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/131").await;
    // The server replays what came meanwhile, then the call goes on reporting progress.
    tx.send(&format!("id: 2/131\ndata: {}\n\n", progress(2)));
    assert!(next_text(&mut resumed).await.contains("progress"));
    advance(ms(800)).await;
    tx.send(&format!("id: 3/131\ndata: {}\n\n", progress(3)));
    assert!(next_text(&mut resumed).await.contains("progress"));
    advance(ms(800)).await;
    tx.send(&format!("id: 4/131\ndata: {}\n\n", result(31)));
    let last = next_text(&mut resumed).await;
    assert!(last.contains("\"result\""), "{last}");
    assert!(
        handle.next_request().now_or_never().is_none(),
        "never cancelled"
    );

    // Held again, and resumed in time, but the server has nothing left for the stream.
    let (body, _tx, _, _) = reading(&svc, &mut handle, 32).await;
    drop(body);
    advance(ms(2_000)).await;
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/132").await;
    drop(tx);
    let end = next_text(&mut resumed).await;
    let end: Value = serde_json::from_str(end.trim().trim_start_matches("data: ")).unwrap();
    assert_eq!(end["id"], 32);
    assert_eq!(end["error"]["code"], -31499);
    let message = end["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("request's answer lost"), "{message}");
}

/// A 2025-11-25 `GET` of session `s-1` resuming after `last_event_id`.
/// The task of a `GET` of session `s-1` resuming after some event, through the inspector.
type Resumption = tokio::task::JoinHandle<Result<Response<AnswerBody>, BoxError>>;

/// A `GET` of session `s-1` resuming after `last_event_id`, spawned; returns it once the server
/// has its request (not answered yet), with that request and the server's end of the answer.
async fn resumption(
    svc: &Inspected,
    handle: &mut Handle,
    last_event_id: &'static str,
) -> (
    Resumption,
    Request<McpBody>,
    mock::SendResponse<Response<Script>>,
) {
    let get = tokio::spawn(ServiceExt::oneshot(svc.clone(), resume_get(last_event_id)));
    let (req, reply) = next_within(handle).await.expect("the resumption");
    (get, req, reply)
}

fn resume_get(last_event_id: &'static str) -> Request<String> {
    Request::get("/mcp")
        .header("host", "127.0.0.1:1")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", "s-1")
        .header("mcp-protocol-version", V2025.as_str())
        .header("last-event-id", last_event_id)
        .body(String::new())
        .unwrap()
}

/// The next request the mock receives, if one comes within a second.
async fn next_within(
    handle: &mut Handle,
) -> Option<(Request<McpBody>, mock::SendResponse<Response<Script>>)> {
    tokio::time::timeout(ms(1_000), handle.next_request())
        .await
        .ok()
        .flatten()
}

/// The body of an answer through the inspector and the layer.
type AnswerBody = tower_armor_mcp::ResponseBody<TimeoutBody<ObservedBody<Script>>>;

/// An answer being read: its body, the server's end of it, a flag its completion handle's
/// release listener sets, and that handle.
type Answering = (
    Pin<Box<AnswerBody>>,
    Tx,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    CompletionHandle,
);

/// Starts call `id` in session `s-1`, answered with an SSE stream the server has sent nothing
/// on yet; returns the answer's body, the server's end of it, a flag its completion handle's
/// release listener sets, and that handle.
async fn answered(svc: &Inspected, handle: &mut Handle, id: i64) -> Answering {
    answered_with(svc, handle, id, script()).await
}

/// [`answered`] with the server's stream `(tx, body)`.
async fn answered_with(
    svc: &Inspected,
    handle: &mut Handle,
    id: i64,
    (tx, body): (Tx, Script),
) -> Answering {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let first = tokio::spawn(ServiceExt::oneshot(svc.clone(), session_post(id, None)));
    let (req, reply) = next_within(handle).await.expect("the call");
    drop(req);
    reply.send_response(answer("text/event-stream", body));
    let resp = first.await.unwrap().unwrap();
    let completion = resp
        .extensions()
        .get::<CompletionHandle>()
        .cloned()
        .expect("observed");
    let released = Arc::new(AtomicBool::new(false));
    let r = Arc::clone(&released);
    completion.on_release(move || r.store(true, Ordering::SeqCst));
    (Box::pin(resp.into_body()), tx, released, completion)
}

/// [`answered`], and the client reads the answer's first event (on stream `id + 100`).
async fn reading(svc: &Inspected, handle: &mut Handle, id: i64) -> Answering {
    let (mut body, tx, released, completion) = answered(svc, handle, id).await;
    tx.send(&format!("id: 1/{}\ndata: {}\n\n", id + 100, progress(1)));
    let _ = body.frame().await;
    (body, tx, released, completion)
}

/// The layer cancels call `id` of session `s-1` for `reason`: what the call held (`released`
/// once let go) stays taken until the server has read the cancellation, which it accepts.
async fn cancelled_then_read(
    handle: &mut Handle,
    id: i64,
    reason: &str,
    released: &std::sync::atomic::AtomicBool,
) {
    use std::sync::atomic::Ordering;
    let (cancel, ok) = next_within(handle).await.expect("notifications/cancelled");
    assert_cancelled(&cancel, id, "s-1", reason);
    assert!(!released.load(Ordering::SeqCst), "held until read");
    drop(cancel);
    assert!(released.load(Ordering::SeqCst), "released once read");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
}

/// Call `id` of session `s-1` (a 10 s deadline) waits on its client 8 s in: the server asks
/// it `request` (an elicitation), the client reads that, and then its connection breaks (the
/// answer is dropped). Returns the answer's body, not dropped yet, and the server's end.
async fn waiting_on_client(
    svc: &Inspected,
    handle: &mut Handle,
    id: i64,
    request: i64,
) -> (Pin<Box<AnswerBody>>, Tx) {
    let (mut body, tx, _, _) = reading(svc, handle, id).await;
    advance(ms(8_000)).await;
    tx.send(&format!(
        "id: 2/{}\ndata: {}\n\n",
        id + 100,
        elicitation(request)
    ));
    let _ = body.frame().await;
    (body, tx)
}

/// The client answers the server's `request` in session `s-1`; the server accepts it.
async fn client_answers_request(svc: &Inspected, handle: &mut Handle, request: i64) {
    let reply = json!({"jsonrpc":"2.0","id":request,"result":{"action":"accept","content":{}}});
    let answer = tokio::spawn(ServiceExt::oneshot(
        svc.clone(),
        session_post(request, Some(reply)),
    ));
    let (_req, ok) = next_within(handle).await.expect("the client's answer");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    assert_eq!(answer.await.unwrap().unwrap().status(), 202);
}

/// The layer cancels call `id` of session `s-1` for `reason`; the server accepts it.
/// Reads `resumed` to its next event, the timeout error for call `id`; returns how long that
/// took.
async fn timed_out_after<B>(resumed: &mut Pin<Box<B>>, id: i64) -> Duration
where
    B: Body<Data = Bytes>,
{
    let started = Instant::now();
    let end = next_text(resumed).await;
    assert_timeout_event(&end, json!(id));
    started.elapsed()
}

async fn cancellation_accepted(handle: &mut Handle, id: i64, reason: &str) {
    let (cancel, ok) = next_within(handle).await.expect("notifications/cancelled");
    assert_cancelled(&cancel, id, "s-1", reason);
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
}

/// The next frame of an answer's body, as text (it must be one, not an error).
async fn next_text<B>(body: &mut Pin<Box<B>>) -> String
where
    B: Body<Data = Bytes>,
{
    let frame = body
        .frame()
        .await
        .expect("a frame")
        .unwrap_or_else(|_| panic!("no error"));
    String::from_utf8(frame.into_data().expect("data").to_vec()).unwrap()
}

/// Reads `body`'s next event: the layer's final `-31499` for call `id`; returns its text.
async fn late_error<B>(body: &mut Pin<Box<B>>, id: i64) -> String
where
    B: Body<Data = Bytes>,
{
    let end = next_text(body).await;
    assert_eq!(event_json(&end)["id"], id, "{end}");
    assert_eq!(event_json(&end)["error"]["code"], -31499, "{end}");
    end
}

/// The server ended call `id`'s answer early: it ends with the layer's `-31499` for the call,
/// then nothing, and the layer's cancellation keeps what the call holds (`released` once let go)
/// until the server has read it.
async fn ends_late_and_cancelled<B>(
    body: &mut Pin<Box<B>>,
    handle: &mut Handle,
    id: i64,
    released: &std::sync::atomic::AtomicBool,
) where
    B: Body<Data = Bytes>,
{
    late_error(body, id).await;
    assert!(body.frame().await.is_none());
    cancelled_then_read(handle, id, "answer ended without its response", released).await;
}

/// A `GET` of session `s-1` resuming after `last_event_id`, which the server answers with an
/// SSE stream: the server's end of that stream, and the answer's body.
async fn resumed_with_sse(
    svc: &Inspected,
    handle: &mut Handle,
    last_event_id: &'static str,
) -> (Tx, Pin<Box<AnswerBody>>) {
    let (get, _req, reply) = resumption(svc, handle, last_event_id).await;
    let (tx, body) = script();
    reply.send_response(answer("text/event-stream", body));
    (tx, Box::pin(get.await.unwrap().unwrap().into_body()))
}

/// The server ends an answer (`tx`) without its final message; the client reads that end.
async fn server_ends<B: Body<Data = Bytes>>(tx: Tx, mut body: Pin<Box<B>>) {
    drop(tx);
    let _ = body.frame().await;
}

/// A `GET` that took a call over from its answer still in flight, whose client leaves before
/// the `GET`'s headers, gives the call back: the answer goes on to its result, and nothing is
/// cancelled.
#[tokio::test(start_paused = true)]
async fn a_resumption_left_before_its_headers_gives_the_call_back() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, tx, _released, first) = reading(&svc, &mut handle, 27).await;
    let (get, _req, _reply) = resumption(&svc, &mut handle, "1/127").await;
    get.abort();
    let _ = get.await;
    tx.send(&format!("id: 2/127\ndata: {}\n\n", result(27)));
    let _ = body.frame().await;
    assert_eq!(first.outcome(), Some(Outcome::Success));
    drop((body, tx));
    assert!(
        next_request(&mut handle, ms(500)).await.is_none(),
        "nothing cancelled"
    );
}

/// A `GET` that took a call over, whose first answer then carried the result after all (the
/// server had not moved the call yet) and which the server answers with nothing: the call is
/// over; no cancellation, no final error after the result.
#[tokio::test(start_paused = true)]
async fn a_resumption_whose_call_ended_on_its_first_answer_cancels_nothing() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, tx, _released, first) = reading(&svc, &mut handle, 28).await;
    let (get, _req, reply) = resumption(&svc, &mut handle, "1/128").await;
    tx.send(&format!("id: 2/128\ndata: {}\n\n", result(28)));
    let _ = body.frame().await;
    assert_eq!(first.outcome(), Some(Outcome::Success));
    drop((body, tx));
    let (tx2, resumed) = script();
    reply.send_response(answer("text/event-stream", resumed));
    let mut resumed = Box::pin(get.await.unwrap().unwrap().into_body());
    drop(tx2);
    assert!(resumed.frame().await.is_none(), "no -31499 after a result");
    assert!(
        next_request(&mut handle, ms(500)).await.is_none(),
        "nothing cancelled"
    );
}

/// A `GET` resuming a stream whose answer is still in flight (its client resumed before the
/// server saw it go, or while still reading it) takes the call over: rmcp moves the rest of the
/// call onto the `GET` and ends that answer early, which is then no failure of the server
/// (`Cancelled`), nor a reason to cancel or hold the call. The `GET` keeps the call's hold (a
/// bulkhead's permit) until the call's result has passed, answers under the call's id and
/// deadline, and cancels the call if its own client goes away.
#[tokio::test(start_paused = true)]
async fn a_resumption_of_an_answer_still_in_flight_takes_the_call_over() {
    use std::sync::atomic::Ordering;
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, tx, released, first) = reading(&svc, &mut handle, 21).await;
    let (get, _req, reply) = resumption(&svc, &mut handle, "1/121").await;
    let (tx2, resumed) = script();
    reply.send_response(answer("text/event-stream", resumed));
    let resp = get.await.unwrap().unwrap();
    let resumed_handle = resp
        .extensions()
        .get::<CompletionHandle>()
        .cloned()
        .expect("observed");
    let mut resumed = Box::pin(resp.into_body());
    // The server ends the first answer without its final message.
    drop(tx);
    assert!(matches!(body.frame().await, None | Some(Err(_))));
    drop(body);
    assert_eq!(first.outcome(), Some(Outcome::Cancelled), "not Incomplete");
    assert!(
        next_request(&mut handle, ms(500)).await.is_none(),
        "the first answer's end cancels nothing"
    );
    assert!(
        !released.load(Ordering::SeqCst),
        "the call's hold goes on with the resumption"
    );
    tx2.send(&format!("id: 2/121\ndata: {}\n\n", result(21)));
    let _ = resumed.frame().await;
    assert!(released.load(Ordering::SeqCst), "released with its result");
    assert_eq!(resumed_handle.outcome(), Some(Outcome::Success));
    drop((resumed, tx2));
    assert!(next_request(&mut handle, ms(500)).await.is_none());

    // The resuming client goes away in turn: the call is cancelled (no grace here), under its
    // id, and what it held goes.
    // (Its GET names another `Host`: the cancellation goes as the call's own request asked.)
    let (body, tx, released, _) = reading(&svc, &mut handle, 22).await;
    let mut get = resume_get("1/122");
    get.headers_mut()
        .insert("host", HeaderValue::from_static("other.example:1"));
    let get = tokio::spawn(ServiceExt::oneshot(svc.clone(), get));
    let (_req, reply) = next_within(&mut handle).await.expect("the resumption");
    let (tx2, resumed) = script();
    reply.send_response(answer("text/event-stream", resumed));
    let mut resumed = Box::pin(get.await.unwrap().unwrap().into_body());
    server_ends(tx, body).await;
    tx2.send(&format!("id: 2/122\ndata: {}\n\n", progress(2)));
    let _ = resumed.frame().await;
    assert!(!released.load(Ordering::SeqCst));
    drop(resumed);
    cancelled_then_read(&mut handle, 22, "caller went away", &released).await;
    drop(tx2);

    // Taken over twice (a second GET while the first still runs): the first GET's early end
    // does not let go of the call's hold either.
    let (body, tx, released, _) = reading(&svc, &mut handle, 24).await;
    let mut gets = Vec::new();
    for _ in 0..2 {
        gets.push(resumed_with_sse(&svc, &mut handle, "1/124").await);
    }
    server_ends(tx, body).await;
    let (tx1, first_get) = gets.remove(0);
    server_ends(tx1, first_get).await;
    assert!(
        !released.load(Ordering::SeqCst),
        "the second resumption carries the hold"
    );
    let (tx2, mut second_get) = gets.remove(0);
    tx2.send(&format!("id: 2/124\ndata: {}\n\n", result(24)));
    let _ = second_get.frame().await;
    drop((second_get, tx2));
    assert!(released.load(Ordering::SeqCst));
    assert!(next_request(&mut handle, ms(500)).await.is_none());

    // The server moves the call to the GET and then answers it with nothing (rmcp does, for
    // an index past its cache): nobody would read the rest, so the call is cancelled (not held
    // again: the next resumption would be answered so too), the GET ends with the final error
    // for the call's id, and what the call holds goes only once the server has read that.
    let (body, tx, released, _) = reading(&svc, &mut handle, 25).await;
    let (tx2, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/125").await;
    server_ends(tx, body).await;
    drop(tx2);
    ends_late_and_cancelled(&mut resumed, &mut handle, 25, &released).await;
    drop(resumed);

    // A GET the server refuses (406) never got the call: it stays with its answer, which
    // then ends with its result; nothing is cancelled.
    let (mut body, tx, released, first) = reading(&svc, &mut handle, 26).await;
    let (get, _req, reply) = resumption(&svc, &mut handle, "1/126").await;
    reply.send_response(Response::builder().status(406).body(script().1).unwrap());
    assert_eq!(get.await.unwrap().unwrap().status(), 406);
    assert!(
        next_request(&mut handle, ms(500)).await.is_none(),
        "not cancelled"
    );
    tx.send(&format!("id: 2/126\ndata: {}\n\n", result(26)));
    let _ = body.frame().await;
    assert_eq!(first.outcome(), Some(Outcome::Success));
    drop((body, tx));
    assert!(released.load(Ordering::SeqCst));
    assert!(next_request(&mut handle, ms(500)).await.is_none());

    // Taken over, the call keeps its own deadline (10 s from its start), not the GET's; its
    // cancellation then keeps what it holds until the server has read it.
    let started = Instant::now();
    let (body, tx, released, _) = reading(&svc, &mut handle, 23).await;
    advance(ms(6_000)).await;
    let (get, _req, reply) = resumption(&svc, &mut handle, "1/123").await;
    let (_tx2, resumed) = script();
    reply.send_response(answer("text/event-stream", resumed));
    let mut resumed = Box::pin(get.await.unwrap().unwrap().into_body());
    server_ends(tx, body).await;
    let end = next_text(&mut resumed).await;
    assert_timeout_event(&end, json!(23));
    let elapsed = started.elapsed();
    assert!(
        elapsed >= ms(10_000) && elapsed < ms(10_500),
        "timed out after {elapsed:?}"
    );
    cancelled_then_read(&mut handle, 23, "request timed out", &released).await;
}

/// A server may end a call's stream itself for its client to resume it (SEP-1699 polling:
/// rmcp's `close_sse_stream`). Such an answer, ended without the call's final response, is
/// treated like one its client dropped: held for the resume grace (then the client's
/// resumption carries the call on), and without a grace cancelled at once, its late
/// resumption getting a final error for its id.
#[tokio::test(start_paused = true)]
async fn an_answer_the_server_ends_early_is_held_for_resumption() {
    use std::sync::atomic::Ordering;
    let (svc, mut handle) = inspected(ms(5_000));
    // A resumption the server answers with nothing (the call over, or an index past its
    // cache) is not held again, which would keep the call's hold for as long as its client
    // keeps resuming: the call is cancelled, and the answer ends with the final error.
    let released = drop_watched(&svc, &mut handle, 40).await;
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/140").await;
    drop(tx);
    let end = next_text(&mut resumed).await;
    assert_eq!(event_json(&end)["error"]["code"], -31499, "{end}");
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled at once");
    assert_cancelled(&cancel, 40, "s-1", "answer ended without its response");
    drop(cancel);
    assert!(released.load(Ordering::SeqCst));
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    drop(resumed);

    // A resumption the server ends without a byte after it was quiet a while (a server
    // polling its clients again) is no resumption it could not serve: held again.
    let released = drop_watched(&svc, &mut handle, 43).await;
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/143").await;
    assert!(
        tokio::time::timeout(ms(100), resumed.frame())
            .await
            .is_err()
    );
    drop(tx);
    assert!(resumed.frame().await.is_none());
    drop(resumed);
    assert!(
        next_request(&mut handle, ms(3_000)).await.is_none(),
        "held again, not cancelled"
    );
    assert!(!released.load(Ordering::SeqCst));
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/143").await;
    tx.send(&format!("id: 2/143\ndata: {}\n\n", result(43)));
    let _ = resumed.frame().await;
    assert!(released.load(Ordering::SeqCst));
    drop((resumed, tx));

    let (body, tx, released, first) = reading(&svc, &mut handle, 41).await;
    server_ends(tx, body).await;
    assert_eq!(first.outcome(), Some(Outcome::Incomplete));
    assert!(
        next_request(&mut handle, ms(3_000)).await.is_none(),
        "held, not cancelled"
    );
    assert!(!released.load(Ordering::SeqCst));
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/141").await;
    tx.send(&format!("id: 2/141\ndata: {}\n\n", result(41)));
    let _ = resumed.frame().await;
    assert!(released.load(Ordering::SeqCst), "released with its result");
    drop((resumed, tx));
    assert!(next_request(&mut handle, ms(6_000)).await.is_none());

    // Without a grace: cancelled at once, and a late resumption ends with -31499 for its id.
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, tx, _, _) = reading(&svc, &mut handle, 42).await;
    drop(tx);
    // Its client hears why: the layer cancelled the call when the server ended its stream.
    let end = next_text(&mut body).await;
    assert_eq!(event_json(&end)["id"], 42, "{end}");
    let message = event_json(&end)["error"]["message"].clone();
    assert!(
        message
            .as_str()
            .unwrap()
            .starts_with("request abandoned: the server ended its stream"),
        "{end}"
    );
    assert!(body.frame().await.is_none());
    cancellation_accepted(&mut handle, 42, "answer ended without its response").await;
    let (tx, mut late) = resumed_with_sse(&svc, &mut handle, "1/142").await;
    drop(tx);
    late_error(&mut late, 42).await;
}

/// An answer dropped or ended before any event named its stream (nothing a `GET` could resume)
/// cancels its call at once, grace or not, and what the call holds (its bulkhead permit) stays
/// taken until the server has read that cancellation; one the server ended tells its client.
#[tokio::test(start_paused = true)]
async fn an_answer_let_go_before_its_stream_is_named_holds_until_the_cancellation_is_read() {
    for grace in [Duration::ZERO, ms(5_000)] {
        let (svc, mut handle) = inspected(grace);
        let (body, _tx, released, _) = answered(&svc, &mut handle, 48).await;
        drop(body);
        cancelled_then_read(&mut handle, 48, "caller went away", &released).await;

        let (mut body, tx, released, _) = answered(&svc, &mut handle, 49).await;
        drop(tx);
        ends_late_and_cancelled(&mut body, &mut handle, 49, &released).await;
    }
}

/// An answer whose inner body reports its end before it is polled to it (an HTTP/2 upstream's
/// `is_end_stream`, with its last frame or after it) is still read to that end, where the layer
/// lets the call go: a caller that stops polling once the body says it has ended (hyper) still
/// gets the call's final error, and what the call holds stays taken until the server has read
/// the cancellation.
#[tokio::test(start_paused = true)]
async fn an_answer_that_reports_its_end_early_still_gets_the_final_error() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    // The end reported with the last frame (the observer settles the call as it reads it),
    // then reported after it.
    for (id, with_last_frame) in [(45, true), (44, false)] {
        let (mut body, tx, released, first) =
            answered_with(&svc, &mut handle, id, eager_script()).await;
        tx.send(&format!("id: 1/{}\ndata: {}\n\n", id + 100, progress(1)));
        if with_last_frame {
            drop(tx);
            let _ = body.frame().await;
        } else {
            let _ = body.frame().await;
            drop(tx);
        }
        assert!(
            !body.is_end_stream(),
            "the call's final message is still to come"
        );
        assert!(!released.load(std::sync::atomic::Ordering::SeqCst));
        ends_late_and_cancelled(&mut body, &mut handle, id, &released).await;
        assert_eq!(first.outcome(), Some(Outcome::Incomplete));
    }
}

/// An answer that breaks before its call's final message (a body error: an upstream's
/// connection reset) lets the call go like one the server ended early: cancelled at once
/// without a resume grace (a late resumption gets the final error), held with one.
#[tokio::test(start_paused = true)]
async fn an_answer_that_breaks_lets_its_call_go() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, tx, _, first) = reading(&svc, &mut handle, 46).await;
    tx.fail();
    assert!(body.frame().await.expect("the error").is_err());
    assert_eq!(first.outcome(), Some(Outcome::Transport));
    drop(body);
    cancellation_accepted(&mut handle, 46, "answer ended without its response").await;
    let (tx, mut late) = resumed_with_sse(&svc, &mut handle, "1/146").await;
    drop(tx);
    late_error(&mut late, 46).await;

    let (svc, mut handle) = inspected(ms(5_000));
    let (mut body, tx, _, _) = reading(&svc, &mut handle, 47).await;
    tx.fail();
    assert!(body.frame().await.expect("the error").is_err());
    drop(body);
    assert!(
        next_request(&mut handle, ms(3_000)).await.is_none(),
        "held, not cancelled"
    );
    let (tx, mut resumed) = resumed_with_sse(&svc, &mut handle, "1/147").await;
    tx.send(&format!("id: 2/147\ndata: {}\n\n", result(47)));
    let text = next_text(&mut resumed).await;
    assert_eq!(
        event_json(text.split_once('\n').unwrap().1)["id"],
        47,
        "{text}"
    );
    drop((resumed, tx));
    assert!(next_request(&mut handle, ms(6_000)).await.is_none());
}

/// A call waiting on its client (an elicitation a person may be answering) when the client's
/// connection breaks waits on after the client resumes it, although the resumed stream does
/// not replay the request: its clock stays paused until the client's answer comes, then runs
/// with what it had left.
#[tokio::test(start_paused = true)]
async fn a_resumed_call_that_waits_on_its_client_stays_paused() {
    let timeout = TimeoutLayer::builder(ms(10_000))
        .resume_grace(ms(5_000))
        .build()
        .unwrap();
    let (svc, mut handle) = inspected_by(timeout);
    let (body, _tx) = waiting_on_client(&svc, &mut handle, 61, 900).await;
    // Paused with 2 s left; the connection breaks a second later.
    advance(ms(1_000)).await;
    drop(body);
    let (_tx2, mut resumed) = resumed_with_sse(&svc, &mut handle, "2/161").await;
    assert!(
        tokio::time::timeout(ms(5_000), resumed.frame())
            .await
            .is_err(),
        "still waiting on the person: no timeout"
    );
    client_answers_request(&svc, &mut handle, 900).await;
    let elapsed = timed_out_after(&mut resumed, 61).await;
    assert!(
        elapsed >= ms(1_900) && elapsed <= ms(2_100),
        "ran again with the 2 s it had left: {elapsed:?}"
    );
    cancellation_accepted(&mut handle, 61, "request timed out").await;

    // The client answers while the call is held (the SDKs answer at once, and resume only
    // after rmcp's `retry`): the answer counts, and the resumed call's clock runs again.
    let (body, _tx) = waiting_on_client(&svc, &mut handle, 62, 901).await;
    drop(body);
    client_answers_request(&svc, &mut handle, 901).await;
    let (_tx2, mut resumed) = resumed_with_sse(&svc, &mut handle, "2/162").await;
    let elapsed = timed_out_after(&mut resumed, 62).await;
    assert!(elapsed <= ms(2_100), "{:?}", elapsed);
    let (cancel, ok) = next_within(&mut handle)
        .await
        .expect("notifications/cancelled");
    ok.send_response(Response::builder().status(202).body(script().1).unwrap());
    drop(cancel);

    // The client answers while the resumption is on its way (the GET has reached the server,
    // its answer has not come back): the answer counts, and the resumed call runs again.
    let (body, _tx) = waiting_on_client(&svc, &mut handle, 64, 903).await;
    drop(body);
    let (get, _req, reply) = resumption(&svc, &mut handle, "2/164").await;
    client_answers_request(&svc, &mut handle, 903).await;
    let (_tx4, body4) = script();
    reply.send_response(answer("text/event-stream", body4));
    let mut resumed = Box::pin(get.await.unwrap().unwrap().into_body());
    let elapsed = timed_out_after(&mut resumed, 64).await;
    assert!(
        elapsed <= ms(2_100),
        "the answer given meanwhile counted: {:?}",
        elapsed
    );
    cancellation_accepted(&mut handle, 64, "request timed out").await;

    // A resumption that fails before its answer comes (its client gone again), with the
    // client's answer given while it was on its way: it counted, so the next resumption runs
    // again.
    let (body, _tx) = waiting_on_client(&svc, &mut handle, 65, 904).await;
    drop(body);
    let (get, _req, _reply) = resumption(&svc, &mut handle, "2/165").await;
    client_answers_request(&svc, &mut handle, 904).await;
    get.abort();
    let _ = get.await;
    let (_tx5, mut resumed) = resumed_with_sse(&svc, &mut handle, "2/165").await;
    let elapsed = timed_out_after(&mut resumed, 65).await;
    assert!(elapsed <= ms(2_100), "{:?}", elapsed);
    cancellation_accepted(&mut handle, 65, "request timed out").await;

    // A `GET` that takes over an answer still in flight (its client resumed while still
    // reading it), with the client's answer given before the `GET`'s own answer came: it
    // counted on the answer taken over, and moves with the call.
    let (body, tx) = waiting_on_client(&svc, &mut handle, 66, 905).await;
    let (get, _req, reply) = resumption(&svc, &mut handle, "2/166").await;
    client_answers_request(&svc, &mut handle, 905).await;
    let (_tx6, body6) = script();
    reply.send_response(answer("text/event-stream", body6));
    let mut resumed = Box::pin(get.await.unwrap().unwrap().into_body());
    drop((body, tx));
    let elapsed = timed_out_after(&mut resumed, 66).await;
    assert!(elapsed <= ms(2_100), "{:?}", elapsed);
    cancellation_accepted(&mut handle, 66, "request timed out").await;

    // A resumption that fails before its answer comes (its client gone again) holds the
    // call again, still waiting on its client: the next resumption waits on too.
    let (body, _tx) = waiting_on_client(&svc, &mut handle, 63, 902).await;
    drop(body);
    let (get, _req, _reply) = resumption(&svc, &mut handle, "2/163").await;
    get.abort();
    let _ = get.await;
    let (_tx3, mut resumed) = resumed_with_sse(&svc, &mut handle, "2/163").await;
    assert!(
        tokio::time::timeout(ms(5_000), resumed.frame())
            .await
            .is_err(),
        "still waiting on the person"
    );
}

/// A call that times out inside its answer before the answer named its stream (no event id
/// yet) keeps what it holds until the server has read its cancellation too.
#[tokio::test(start_paused = true)]
async fn a_call_timed_out_before_its_first_event_holds_until_its_cancellation_is_read() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, _tx, released, _) = answered(&svc, &mut handle, 71).await;
    let end = next_text(&mut body).await;
    assert_timeout_event(&end, json!(71));
    cancelled_then_read(&mut handle, 71, "request timed out", &released).await;
}

/// A `GET` takes a call over just as its first answer reaches the deadline: that answer gives
/// up without cancelling (the call is no longer its own), and the `GET`, which carries the
/// call's clock, cancels it at that same deadline, even before the server has answered it. So
/// the server refusing the `GET` afterwards leaves no call running with nobody to stop it.
#[tokio::test(start_paused = true)]
async fn a_call_taken_over_at_its_deadline_is_cancelled_by_the_get() {
    let (svc, mut handle) = inspected(Duration::ZERO);
    let (mut body, _tx, _released, first) = reading(&svc, &mut handle, 27).await;
    let (get, _req, reply) = resumption(&svc, &mut handle, "1/127").await;
    advance(ms(10_000)).await;
    let last = next_text(&mut body).await;
    assert_eq!(event_json(&last)["error"]["code"], -31504, "{last}");
    assert_eq!(
        first.outcome(),
        Some(Outcome::Cancelled),
        "taken over: no failure"
    );
    expect_cancelled(&mut handle, 27, "s-1", "request timed out").await;
    reply.send_response(Response::builder().status(406).body(script().1).unwrap());
    assert!(get.await.unwrap().is_err(), "the GET ended at the deadline");
    assert!(
        next_request(&mut handle, ms(500)).await.is_none(),
        "cancelled once"
    );
    drop(body);
}
