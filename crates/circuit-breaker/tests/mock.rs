//! The breaker as a service, against `tower_test` mocks on paused time: streamed answers,
//! probes, leases, drops at every await point, keys, local errors, gRPC answers, controls.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt};
use tower_armor_circuit_breaker::{
    Builder, CircuitBreaker, CircuitBreakerLayer, KeyBy, OTHER_KEY, OpenDuration, Reason, State,
    Transition, UNKNOWN_KEY,
};
use tower_armor_mcp::error::{
    BulkheadFull, CircuitOpen, Elapsed, InvalidToken, RateLimited, TokenUnavailable,
};
use tower_armor_mcp::{
    BoxError, HalfOpenProbe, KnownTools, McpRequest, MessageKind, Method, RequestId, StreamRole,
};
use tower_test::mock;

// === helpers ===

type Frames = mpsc::UnboundedSender<Result<Frame<Bytes>, io::Error>>;

/// A response body fed frame by frame by the test.
struct ChannelBody(mpsc::UnboundedReceiver<Result<Frame<Bytes>, io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx)
    }
}

fn body() -> (ChannelBody, Frames) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ChannelBody(rx), tx)
}

fn answer(status: StatusCode, content_type: &str) -> (Response<ChannelBody>, Frames) {
    let (b, tx) = body();
    let mut resp = Response::new(b);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_str(content_type).unwrap());
    (resp, tx)
}

fn sse() -> (Response<ChannelBody>, Frames) {
    answer(StatusCode::OK, "text/event-stream")
}

/// A complete JSON answer.
fn json_answer(v: serde_json::Value) -> Response<ChannelBody> {
    let (resp, tx) = answer(StatusCode::OK, "application/json");
    tx.send(Ok(Frame::data(Bytes::from(v.to_string()))))
        .unwrap();
    resp
}

fn status(s: u16) -> Response<ChannelBody> {
    answer(StatusCode::from_u16(s).unwrap(), "text/plain").0
}

fn event(v: serde_json::Value) -> Result<Frame<Bytes>, io::Error> {
    Ok(Frame::data(Bytes::from(format!("data: {v}\n\n"))))
}

fn progress() -> Result<Frame<Bytes>, io::Error> {
    event(
        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}),
    )
}

fn rpc_error(id: i64, code: i64) -> Result<Frame<Bytes>, io::Error> {
    event(json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":"x"}}))
}

fn rpc_ok(id: i64) -> Result<Frame<Bytes>, io::Error> {
    event(json!({"jsonrpc":"2.0","id":id,"result":{"content":[],"isError":false}}))
}

fn call_of(id: i64, method: Method, name: Option<&str>) -> Request<()> {
    let mut facts = McpRequest::new(
        MessageKind::Request,
        Some(method),
        Some(RequestId::Number(id)),
    );
    if let Some(n) = name {
        facts = facts.with_name(n);
    }
    Request::post("http://upstream:1/mcp")
        .extension(facts)
        .body(())
        .unwrap()
}

fn tool(id: i64, name: &str) -> Request<()> {
    call_of(id, Method::ToolsCall, Some(name))
}

type Mock = mock::Mock<Request<()>, Response<ChannelBody>>;
type Handle = mock::Handle<Request<()>, Response<ChannelBody>>;

struct H {
    svc: CircuitBreaker<Mock>,
    mock: Handle,
    layer: CircuitBreakerLayer,
}

impl H {
    fn new(b: Builder) -> Self {
        let layer = b.build().unwrap();
        let (m, mock) = mock::pair();
        H {
            svc: layer.layer(m),
            mock,
            layer,
        }
    }

    async fn start(
        &mut self,
        req: Request<()>,
    ) -> <CircuitBreaker<Mock> as Service<Request<()>>>::Future {
        self.svc.ready().await.unwrap().call(req)
    }

    /// The request the mock received, if any (without waiting).
    fn received(&mut self) -> Option<mock::SendResponse<Response<ChannelBody>>> {
        match self.mock.poll_request() {
            Poll::Ready(Some((_, send))) => Some(send),
            _ => None,
        }
    }

    fn received_req(&mut self) -> (Request<()>, mock::SendResponse<Response<ChannelBody>>) {
        match self.mock.poll_request() {
            Poll::Ready(Some(r)) => r,
            _ => panic!("the inner service got no request"),
        }
    }

    /// Calls, answers with `resp`, and returns the breaker's answer.
    async fn exchange(
        &mut self,
        req: Request<()>,
        resp: Response<ChannelBody>,
    ) -> Result<Response<tower_armor_mcp::observe::ObservedBody<ChannelBody>>, BoxError> {
        let fut = self.start(req).await;
        if let Some(send) = self.received() {
            send.send_response(resp);
        }
        fut.await
    }

    fn state(&self) -> State {
        self.layer.handle().circuits()[0].state()
    }

    fn state_of(&self, key: &str) -> State {
        self.layer.handle().circuit(key).unwrap().state()
    }

    /// The keys of the circuits that exist, in the handle's order.
    fn keys(&self) -> Vec<String> {
        let circuits = self.layer.handle().circuits();
        circuits
            .iter()
            .map(|c| c.key().unwrap().to_owned())
            .collect()
    }
}

fn open_error(r: Result<impl Sized, BoxError>) -> CircuitOpen {
    match r {
        Ok(_) => panic!("expected CircuitOpen, the call passed"),
        Err(e) => e
            .downcast_ref::<CircuitOpen>()
            .unwrap_or_else(|| panic!("expected CircuitOpen, got {e}"))
            .clone(),
    }
}

fn one_failure_opens() -> Builder {
    Builder::new()
        .no_failure_rate()
        .consecutive_failures(1)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
        .probe_lease(Duration::from_secs(5))
}

/// Opens the circuit with one failed call and lets the open duration pass.
async fn open_then_wait(h: &mut H, id: i64) {
    h.exchange(tool(id, "x"), status(503)).await.unwrap();
    assert_eq!(h.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
}

/// Once the open duration has passed, the handle reports half-open (Resilience4j's automatic
/// transition, made when asked), with its event, and the next call is the first probe.
#[tokio::test(start_paused = true)]
async fn the_handle_reports_half_open_once_the_open_duration_passed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let mut h = H::new(
        one_failure_opens().on_transition(move |t| sink.lock().unwrap().push((t.from, t.to))),
    );
    h.exchange(tool(1, "x"), status(503)).await.unwrap();
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(h.state(), State::Open);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(h.state(), State::HalfOpen);
    assert_eq!(
        h.state(),
        State::HalfOpen,
        "asked again: no second transition"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [(State::Closed, State::Open), (State::Open, State::HalfOpen)]
    );
    let fut = h.start(tool(2, "x")).await;
    let (req, send) = h.received_req();
    assert_eq!(
        req.extensions().get::<HalfOpenProbe>(),
        Some(&HalfOpenProbe)
    );
    send.send_response(status(200));
    fut.await.unwrap();
    assert_eq!(h.state(), State::Closed);
}

/// Metrics-only: failures are counted and a crossing is reported (once) with its counts, but
/// nothing is ever refused; a call admitted before the reported crossing does not count after
/// it, as for a real trip.
#[tokio::test(start_paused = true)]
async fn metrics_only_reports_crossings_once_and_never_refuses() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let mut h = H::new(
        Builder::new()
            .no_failure_rate()
            .consecutive_failures(2)
            .on_transition(move |t| sink.lock().unwrap().push((t.from, t.to, t.reason))),
    );
    h.layer.handle().metrics_only();
    assert_eq!(h.state(), State::MetricsOnly);
    // Admitted now, finished after the crossing below.
    let early = h.start(tool(1, "x")).await;
    let early_send = h.received().unwrap();
    for id in 2..=3 {
        h.exchange(tool(id, "x"), status(503)).await.unwrap();
    }
    assert_eq!(h.state(), State::MetricsOnly, "never opens");
    early_send.send_response(status(503));
    early.await.unwrap();
    // One more failure: the count restarted at the crossing and the early call is not in it.
    h.exchange(tool(4, "x"), status(503)).await.unwrap();
    for id in 5..=20 {
        let r = h.exchange(tool(id, "x"), status(200)).await;
        assert!(r.is_ok(), "metrics-only refuses nothing");
    }
    let crossings: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(from, to, _)| (*from, *to) == (State::MetricsOnly, State::MetricsOnly))
        .cloned()
        .collect();
    assert_eq!(
        crossings,
        [(
            State::MetricsOnly,
            State::MetricsOnly,
            Reason::ConsecutiveFailures
        )]
    );
}

/// An exponential open duration grows with each trip (a failed probe is one more), capped, and
/// starts over once the circuit closes.
#[tokio::test(start_paused = true)]
async fn exponential_open_durations_grow_per_trip_and_reset_on_close() {
    let mut h = H::new(
        one_failure_opens().open_duration(OpenDuration::Exponential {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(3),
            jitter: 0.0,
        }),
    );
    let retry_after = |h: &H| {
        h.layer.handle().circuits()[0]
            .retry_after()
            .expect("open")
            .as_millis()
    };
    h.exchange(tool(1, "x"), status(503)).await.unwrap();
    for (id, want_ms) in [(2, 1000), (3, 2000), (4, 3000), (5, 3000)] {
        assert_eq!(retry_after(&h), want_ms, "trip before call {id}");
        tokio::time::advance(Duration::from_millis(want_ms as u64)).await;
        // The probe fails: open again, for longer.
        h.exchange(tool(id, "x"), status(503)).await.unwrap();
    }
    tokio::time::advance(Duration::from_secs(3)).await;
    h.exchange(tool(6, "x"), status(200)).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    h.exchange(tool(7, "x"), status(503)).await.unwrap();
    assert_eq!(retry_after(&h), 1000, "back to the base after closing");
}

/// A user callback that panics neither aborts nor fails the call that changed the state, here
/// also when the change happens in a drop (a probe dropped in half-open).
#[tokio::test(start_paused = true)]
async fn a_panicking_transition_callback_changes_nothing() {
    let calls = Arc::new(Mutex::new(0));
    let count = Arc::clone(&calls);
    let mut h = H::new(one_failure_opens().on_transition(move |_| {
        *count.lock().unwrap() += 1;
        panic!("callback bug");
    }));
    h.exchange(tool(1, "x"), status(503)).await.unwrap();
    assert_eq!(h.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(h.state(), State::HalfOpen);
    // A probe whose future is dropped gives its slot back (no transition), then one that
    // succeeds closes the circuit.
    drop(h.start(tool(2, "x")).await);
    assert!(
        h.received().is_some(),
        "the dropped probe had reached the mock"
    );
    let fut = h.start(tool(3, "x")).await;
    let (_, send) = h.received_req();
    send.send_response(status(200));
    fut.await.unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(*calls.lock().unwrap(), 3, "called for each change");
}

// === streams ===

#[tokio::test(start_paused = true)]
async fn a_streamed_failure_opens_and_a_streamed_probe_success_closes() {
    let mut h = H::new(one_failure_opens());

    let (resp, tx) = sse();
    let fut = h.start(tool(1, "x")).await;
    let (req, send) = h.received_req();
    assert!(req.extensions().get::<HalfOpenProbe>().is_none());
    send.send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    tx.send(progress()).unwrap();
    body.frame().await.unwrap().unwrap();
    // Headers and progress passed: the call has no outcome yet.
    assert_eq!(h.state(), State::Closed);
    tx.send(rpc_error(1, -32603)).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(h.state(), State::Open);

    // Open: fail fast, nothing reaches the inner service.
    let e = open_error(h.exchange(tool(2, "x"), status(200)).await);
    assert_eq!(e.retry_after, Duration::from_secs(1));
    assert!(h.received().is_none());

    tokio::time::advance(Duration::from_secs(1)).await;
    let (resp, tx) = sse();
    let fut = h.start(tool(3, "x")).await;
    let (req, send) = h.received_req();
    assert_eq!(
        req.extensions().get::<HalfOpenProbe>(),
        Some(&HalfOpenProbe)
    );
    assert_eq!(h.state(), State::HalfOpen);
    send.send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    // One probe at a time.
    open_error(h.exchange(tool(4, "x"), status(200)).await);
    tx.send(progress()).unwrap();
    tx.send(rpc_ok(3)).unwrap();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_stream_frees_its_slot_at_once() {
    let mut h = H::new(one_failure_opens());
    open_then_wait(&mut h, 1).await;

    let (resp, tx) = sse();
    let fut = h.start(tool(2, "x")).await;
    h.received().unwrap().send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    tx.send(progress()).unwrap();
    body.frame().await.unwrap().unwrap();
    open_error(h.exchange(tool(3, "x"), status(200)).await);
    drop(body);
    // The slot is back: the next call is a probe, and it closes the circuit.
    assert_eq!(h.state(), State::HalfOpen);
    let resp = h
        .exchange(
            tool(4, "x"),
            json_answer(json!({"jsonrpc":"2.0","id":4,"result":{}})),
        )
        .await
        .unwrap();
    assert_eq!(
        h.state(),
        State::HalfOpen,
        "counted when the JSON body has passed"
    );
    resp.into_body().collect().await.unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_silent_probe_is_settled_as_failed_by_its_lease() {
    let mut h = H::new(one_failure_opens());
    open_then_wait(&mut h, 1).await;

    // The probe's answer starts and then says nothing, and is not dropped.
    let (resp, _tx) = sse();
    let fut = h.start(tool(2, "x")).await;
    h.received().unwrap().send_response(resp);
    let _body = fut.await.unwrap().into_body();
    tokio::time::advance(Duration::from_millis(4_999)).await;
    assert_eq!(h.state(), State::HalfOpen);
    let e = open_error(h.exchange(tool(3, "x"), status(200)).await);
    assert_eq!(
        e.retry_after,
        Duration::from_millis(1),
        "until the lease ends"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    // Lease over: failed at its end, open for the open duration from then.
    let e = open_error(h.exchange(tool(4, "x"), status(200)).await);
    assert_eq!(e.retry_after, Duration::from_secs(1));
    assert_eq!(h.state(), State::Open);
    tokio::time::advance(Duration::from_secs(1)).await;
    h.exchange(tool(5, "x"), status(200)).await.unwrap();
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_future_is_settled_by_its_lease_too() {
    let mut h = H::new(one_failure_opens());
    open_then_wait(&mut h, 1).await;
    let _hung = h.start(tool(2, "x")).await;
    let _send = h.received().unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    open_error(h.exchange(tool(3, "x"), status(200)).await);
    assert_eq!(h.state(), State::Open);
}

// === drops at every await point ===

#[tokio::test(start_paused = true)]
async fn a_probe_dropped_at_any_point_returns_its_slot() {
    let mut h = H::new(one_failure_opens());
    open_then_wait(&mut h, 1).await;
    let mut id = 10;

    // 1. The response future, before the inner service answered.
    let fut = h.start(tool(id, "x")).await;
    let _send = h.received().unwrap();
    drop(fut);
    assert_eq!(h.state(), State::HalfOpen);

    // 2. The response future, never polled.
    id += 1;
    let fut = h.start(tool(id, "x")).await;
    let _send = h.received().unwrap();
    drop(fut);

    // 3. The response, before its body was polled.
    id += 1;
    let (resp, _tx) = sse();
    let fut = h.start(tool(id, "x")).await;
    h.received().unwrap().send_response(resp);
    drop(fut.await.unwrap());

    // 4. The body, after some frames.
    id += 1;
    let (resp, tx) = sse();
    let fut = h.start(tool(id, "x")).await;
    h.received().unwrap().send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    tx.send(progress()).unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);

    // 5. The body, while a frame is awaited.
    id += 1;
    let (resp, _tx) = sse();
    let fut = h.start(tool(id, "x")).await;
    h.received().unwrap().send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    assert!(
        tokio::time::timeout(Duration::from_millis(10), body.frame())
            .await
            .is_err()
    );
    drop(body);

    // Every slot came back: a probe still passes and decides.
    assert_eq!(h.state(), State::HalfOpen);
    id += 1;
    h.exchange(tool(id, "x"), status(503)).await.unwrap();
    assert_eq!(h.state(), State::Open);

    // 6. Dropped after the outcome: changes nothing.
    tokio::time::advance(Duration::from_secs(1)).await;
    id += 1;
    let (resp, tx) = sse();
    let fut = h.start(tool(id, "x")).await;
    h.received().unwrap().send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    tx.send(rpc_ok(id)).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(h.state(), State::Closed);
    drop(body);
    assert_eq!(h.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_calls_are_not_counted() {
    let mut h = H::new(one_failure_opens());
    for id in 0..5 {
        let (resp, tx) = sse();
        let fut = h.start(tool(id, "x")).await;
        h.received().unwrap().send_response(resp);
        let mut body = fut.await.unwrap().into_body();
        tx.send(progress()).unwrap();
        body.frame().await.unwrap().unwrap();
        drop(body);
        let fut = h.start(tool(100 + id, "x")).await;
        let _send = h.received().unwrap();
        drop(fut);
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(
        h.layer.handle().circuits()[0].counts().consecutive_failures,
        0
    );
}

// === what counts ===

#[tokio::test(start_paused = true)]
async fn caller_errors_and_local_rejections_are_not_counted() {
    let mut h = H::new(
        Builder::new()
            .count_window(4)
            .min_calls(1)
            .failure_rate(0.5)
            .slow_call_rate(1.0, Duration::from_secs(10)),
    );
    for s in [400, 401, 404, 405, 413, 422] {
        h.exchange(tool(1, "x"), status(s)).await.unwrap();
    }
    for code in [-32700, -32600, -32601, -32602, -32002] {
        h.exchange(
            tool(2, "x"),
            json_answer(json!({"jsonrpc":"2.0","id":2,"error":{"code":code,"message":"x"}})),
        )
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    }
    for e in [
        Box::new(BulkheadFull::new(None)) as BoxError,
        Box::new(RateLimited::new(Duration::from_secs(1))),
        Box::new(CircuitOpen::new(None, Duration::from_secs(1))),
        // A client stack's token source failing (bearer-auth's client layer, inside the breaker):
        // the call never left, so the peer is not to blame.
        Box::new(TokenUnavailable::new("vault down".into())),
        Box::new(InvalidToken::new()),
    ] {
        let fut = h.start(tool(3, "x")).await;
        h.received().unwrap().send_error(e);
        let err = fut.await.unwrap_err();
        assert!(tower_armor_mcp::error::local_error(&*err).is_some());
    }
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.layer.handle().circuits()[0].counts().calls, 0);
    // A tool error (`isError: true`) is a success by default.
    h.exchange(
        tool(4, "x"),
        json_answer(json!({"jsonrpc":"2.0","id":4,"result":{"isError":true}})),
    )
    .await
    .unwrap()
    .into_body()
    .collect()
    .await
    .unwrap();
    let c = h.layer.handle().circuits()[0].counts();
    assert_eq!((c.calls, c.failures), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn elapsed_from_inside_is_a_slow_failure_and_transport_errors_fail() {
    let mut h = H::new(
        Builder::new()
            .no_failure_rate()
            .count_window(10)
            .min_calls(1)
            .slow_call_rate(1.0, Duration::from_secs(10)),
    );
    let fut = h.start(tool(1, "x")).await;
    h.received().unwrap().send_error(Elapsed::new());
    fut.await.unwrap_err().downcast::<Elapsed>().unwrap();
    assert_eq!(h.state(), State::Open);

    // Without a slow-call policy it is still counted slow (and failed): only the trip needs
    // the policy.
    let mut h = H::new(Builder::new().count_window(10).min_calls(5));
    let fut = h.start(tool(1, "x")).await;
    h.received().unwrap().send_error(Elapsed::new());
    fut.await.unwrap_err().downcast::<Elapsed>().unwrap();
    let c = h.layer.handle().circuits()[0].counts();
    assert_eq!((c.calls, c.failures, c.slow_calls), (1, 1, 1));

    let mut h = H::new(one_failure_opens());
    let fut = h.start(tool(1, "x")).await;
    h.received()
        .unwrap()
        .send_error(io::Error::other("connection reset"));
    assert!(fut.await.unwrap_err().is::<io::Error>());
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_successes_trip_the_slow_call_rate() {
    let mut h = H::new(
        Builder::new()
            .no_failure_rate()
            .count_window(4)
            .min_calls(2)
            .slow_call_rate(0.5, Duration::from_millis(300)),
    );
    h.exchange(tool(1, "x"), status(200)).await.unwrap();
    let fut = h.start(tool(2, "x")).await;
    let send = h.received().unwrap();
    tokio::time::advance(Duration::from_millis(300)).await;
    send.send_response(status(200));
    fut.await.unwrap();
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_old_failures() {
    let mut h = H::new(
        Builder::new()
            .failure_rate(0.5)
            .time_window(Duration::from_secs(10), 10)
            .min_calls(4),
    );
    for id in 0..3 {
        h.exchange(tool(id, "x"), status(500)).await.unwrap();
    }
    // Those three failures leave the window before the fourth call.
    tokio::time::advance(Duration::from_secs(10)).await;
    h.exchange(tool(3, "x"), status(500)).await.unwrap();
    assert_eq!(h.state(), State::Closed);
    assert_eq!(h.layer.handle().circuits()[0].counts().calls, 1);
    for id in 4..7 {
        h.exchange(tool(id, "x"), status(500)).await.unwrap();
    }
    assert_eq!(h.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn long_lived_streams_notifications_and_responses_are_never_counted_or_rejected() {
    let mut h = H::new(one_failure_opens());
    h.layer.handle().force_open();
    let listen = call_of(1, Method::SubscriptionsListen, None);
    let (resp, tx) = sse();
    let fut = h.start(listen).await;
    let (req, send) = h.received_req();
    assert!(req.extensions().get::<HalfOpenProbe>().is_none());
    send.send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    tx.send(rpc_error(1, -32603)).unwrap();
    body.frame().await.unwrap().unwrap();

    let note = Request::post("/mcp")
        .extension(McpRequest::new(
            MessageKind::Notification,
            Some(Method::NotificationsCancelled),
            None,
        ))
        .body(())
        .unwrap();
    h.exchange(note, status(202)).await.unwrap();
    let reply = Request::post("/mcp")
        .extension(McpRequest::new(
            MessageKind::Response,
            None,
            Some(RequestId::Number(9)),
        ))
        .body(())
        .unwrap();
    h.exchange(reply, status(202)).await.unwrap();
    // Calls are rejected.
    open_error(h.exchange(tool(2, "x"), status(200)).await);

    // Closed again, a failing listen stream does not open it.
    h.layer.handle().reset();
    let (resp, tx) = sse();
    let fut = h.start(call_of(3, Method::SubscriptionsListen, None)).await;
    h.received().unwrap().send_response(resp);
    let mut body = fut.await.unwrap().into_body();
    tx.send(Err(io::Error::other("reset"))).unwrap();
    assert!(body.frame().await.unwrap().is_err());
    assert_eq!(h.state(), State::Closed);
}

/// A GET resuming a call's stream (2025-11-25, `Last-Event-ID` of a call) is that call's
/// continuation: never rejected (the answer of a call that ran would be lost) and never counted
/// (it names no tool; pooled under one key, one client's resumptions would open it for all).
#[tokio::test(start_paused = true)]
async fn resumptions_are_never_counted_or_rejected() {
    let mut h = H::new(one_failure_opens());
    let resume = || {
        let facts = McpRequest::new(MessageKind::NotJsonRpc, None, None).with_stream_role(
            StreamRole::Resume {
                last_event_id: HeaderValue::from_static("0/0"),
            },
        );
        Request::get("http://upstream:1/mcp")
            .extension(facts)
            .body(())
            .unwrap()
    };
    // Ending without the call's answer (rmcp replayed nothing), or with an error: not counted.
    for frame in [None, Some(rpc_error(1, -32603))] {
        let (resp, tx) = sse();
        let fut = h.start(resume()).await;
        let (req, send) = h.received_req();
        assert!(req.extensions().get::<HalfOpenProbe>().is_none());
        send.send_response(resp);
        let mut body = fut.await.unwrap().into_body();
        if let Some(f) = frame {
            tx.send(f).unwrap();
            body.frame().await.unwrap().unwrap();
        }
        drop(tx);
        assert!(body.frame().await.is_none());
        assert_eq!(h.state(), State::Closed);
    }
    // Open: passed through all the same.
    h.layer.handle().force_open();
    let (resp, _tx) = sse();
    let fut = h.start(resume()).await;
    h.received().unwrap().send_response(resp);
    assert_eq!(fut.await.unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn grpc_answers_count_by_grpc_status_in_headers_or_trailers() {
    let mut h = H::new(
        Builder::new()
            .count_window(10)
            .min_calls(1)
            .failure_rate(1.0),
    );
    let grpc = |code: Option<&str>| {
        let (mut resp, tx) = answer(StatusCode::OK, "application/grpc");
        if let Some(c) = code {
            resp.headers_mut()
                .insert("grpc-status", HeaderValue::from_str(c).unwrap());
        }
        (resp, tx)
    };
    let trailers = |code: &str| {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_str(code).unwrap());
        Ok(Frame::trailers(t))
    };
    // Trailers-only INVALID_ARGUMENT and NOT_FOUND: the caller's fault, not counted.
    for code in ["3", "5"] {
        h.exchange(tool(1, "x"), grpc(Some(code)).0).await.unwrap();
    }
    // OK in trailers: a success.
    let (resp, tx) = grpc(None);
    let mut body = h.exchange(tool(2, "x"), resp).await.unwrap().into_body();
    tx.send(Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))))
        .unwrap();
    tx.send(trailers("0")).unwrap();
    drop(tx);
    while body.frame().await.is_some() {}
    let c = h.layer.handle().circuits()[0].counts();
    assert_eq!((c.calls, c.failures), (1, 0));
    // UNAVAILABLE in trailers: a failure; 1 of 2 is not yet 100%.
    let (resp, tx) = grpc(None);
    let mut body = h.exchange(tool(3, "x"), resp).await.unwrap().into_body();
    tx.send(trailers("14")).unwrap();
    body.frame().await.unwrap().unwrap();
    let c = h.layer.handle().circuits()[0].counts();
    assert_eq!((c.calls, c.failures), (2, 1));
    // A breaker judging only gRPC failures: trailers-only UNAVAILABLE opens it.
    let mut h = H::new(one_failure_opens());
    h.exchange(tool(4, "x"), grpc(Some("14")).0).await.unwrap();
    assert_eq!(h.state(), State::Open);
}

// === keys ===

#[tokio::test(start_paused = true)]
async fn keyed_per_tool_one_bad_tool_opens_only_its_own_circuit() {
    let known = KnownTools::from_names(["add", "crash"]);
    let mut h = H::new(one_failure_opens().key_by(KeyBy::Tool(known.clone())));
    h.exchange(tool(1, "crash"), status(500)).await.unwrap();
    assert_eq!(h.state_of("crash"), State::Open);
    let e = open_error(h.exchange(tool(2, "crash"), status(200)).await);
    assert_eq!(e.key.as_deref(), Some("crash"));
    h.exchange(tool(3, "add"), status(200)).await.unwrap();
    assert_eq!(h.state_of("add"), State::Closed);

    // Unknown names share one circuit, whatever the client makes up.
    h.exchange(tool(4, "made-up-1"), status(500)).await.unwrap();
    let e = open_error(h.exchange(tool(5, "made-up-2"), status(200)).await);
    assert_eq!(e.key.as_deref(), Some("unknown"));
    // Other methods get their own keys.
    h.exchange(call_of(6, Method::ToolsList, None), status(200))
        .await
        .unwrap();
    let keys: Vec<_> = h
        .layer
        .handle()
        .circuits()
        .iter()
        .map(|c| (c.key().unwrap().to_owned(), c.state()))
        .collect();
    assert_eq!(
        keys,
        [
            ("add".to_owned(), State::Closed),
            ("crash".to_owned(), State::Open),
            ("tools/list".to_owned(), State::Closed),
            ("unknown".to_owned(), State::Open),
        ]
    );
    assert!(h.layer.handle().circuit("made-up-1").is_none());
    assert!(
        h.layer.handle().circuit("tools/call").is_none(),
        "tool calls are keyed by tool: a `tools/call` circuit would have no effect"
    );

    // A tool learned later gets its own key.
    known.learn(["late"]);
    h.exchange(tool(7, "late"), status(200)).await.unwrap();
    assert_eq!(h.state_of("late"), State::Closed);

    // Per key: force open one, reset another.
    h.layer.handle().circuit("add").unwrap().force_open();
    open_error(h.exchange(tool(8, "add"), status(200)).await);
    h.layer.handle().circuit("crash").unwrap().reset();
    h.exchange(tool(9, "crash"), status(200)).await.unwrap();
    h.layer.handle().circuit("add").unwrap().reset();
    h.exchange(tool(10, "add"), status(200)).await.unwrap();
}

/// A server's tools named like the shared keys (`unknown`, `other`) share those circuits, as
/// the bulkhead's pools do: each key names one circuit, which the handle reaches.
#[tokio::test(start_paused = true)]
async fn tools_named_like_the_shared_keys_share_them() {
    let known = KnownTools::from_names(["unknown", "other"]);
    let mut h = H::new(one_failure_opens().key_by(KeyBy::Tool(known)));
    h.exchange(tool(1, "unknown"), status(500)).await.unwrap();
    let e = open_error(h.exchange(tool(2, "made-up"), status(200)).await);
    assert_eq!(e.key.as_deref(), Some(UNKNOWN_KEY));
    h.exchange(tool(3, "other"), status(500)).await.unwrap();
    let e = open_error(
        h.exchange(call_of(4, Method::Other("x/y".into()), None), status(200))
            .await,
    );
    assert_eq!(e.key.as_deref(), Some(OTHER_KEY));
    let mut keys = h.keys();
    keys.sort();
    assert_eq!(keys, [OTHER_KEY, UNKNOWN_KEY]);
    h.layer.handle().circuit(UNKNOWN_KEY).unwrap().reset();
    h.exchange(tool(5, "unknown"), status(200)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn handle_wide_controls_reach_circuits_created_later() {
    let known = KnownTools::from_names(["a", "b"]);
    let mut h = H::new(one_failure_opens().key_by(KeyBy::Tool(known)));
    h.exchange(tool(1, "a"), status(200)).await.unwrap();
    let handle = h.layer.handle();
    handle.force_open();
    open_error(h.exchange(tool(2, "a"), status(200)).await);
    // "b" had no circuit yet: it is created forced open.
    let e = open_error(h.exchange(tool(3, "b"), status(200)).await);
    assert_eq!(e.key.as_deref(), Some("b"));
    assert_eq!(h.state_of("b"), State::ForcedOpen);

    handle.force_closed();
    for id in 0..5 {
        h.exchange(tool(10 + id, "a"), status(500)).await.unwrap();
    }
    assert_eq!(h.state_of("a"), State::ForcedClosed);

    handle.reset();
    assert_eq!(h.state_of("a"), State::Closed);
    h.exchange(tool(20, "a"), status(500)).await.unwrap();
    assert_eq!(h.state_of("a"), State::Open);
}

#[tokio::test(start_paused = true)]
async fn keyed_by_method_and_by_authority() {
    let mut h = H::new(one_failure_opens().key_by(KeyBy::Method));
    h.exchange(
        call_of(1, Method::ResourcesRead, Some("file:///x")),
        status(502),
    )
    .await
    .unwrap();
    assert_eq!(h.state_of("resources/read"), State::Open);
    h.exchange(tool(2, "anything"), status(200)).await.unwrap();
    assert_eq!(h.state_of("tools/call"), State::Closed);
    h.exchange(call_of(3, Method::parse("x/custom"), None), status(500))
        .await
        .unwrap();
    assert_eq!(h.state_of("other"), State::Open);
    assert!(h.layer.handle().circuit("x/custom").is_none());

    let mut h = H::new(one_failure_opens().key_by(KeyBy::Authority).max_keys(1));
    let to = |host: &str| {
        Request::post(format!("http://{host}/mcp"))
            .extension(McpRequest::new(
                MessageKind::Request,
                Some(Method::Ping),
                Some(RequestId::Number(1)),
            ))
            .body(())
            .unwrap()
    };
    h.exchange(to("a:1"), status(503)).await.unwrap();
    assert_eq!(h.state_of("a:1"), State::Open);
    // The table holds one key: the next authority shares `other`.
    h.exchange(to("b:1"), status(200)).await.unwrap();
    assert_eq!(h.keys(), ["a:1", "other"]);
    // An upstream named `other` shares that key's circuit: one circuit per key.
    let mut h = H::new(one_failure_opens().key_by(KeyBy::Authority));
    h.exchange(to("other"), status(503)).await.unwrap();
    assert_eq!(h.keys(), ["other"]);
    assert_eq!(h.state_of("other"), State::Open);
}

// === events, readiness, sharing ===

#[tokio::test(start_paused = true)]
async fn transitions_reach_the_callback_with_key_reason_and_counts() {
    let seen: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let sink = seen.clone();
    let mut h = H::new(
        Builder::new()
            .count_window(4)
            .min_calls(2)
            .failure_rate(0.5)
            .key_by(KeyBy::Tool(KnownTools::from_names(["t"])))
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
            .on_transition(move |t| sink.lock().unwrap().push(t.clone())),
    );
    h.exchange(tool(1, "t"), status(200)).await.unwrap();
    h.exchange(tool(2, "t"), status(500)).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    h.exchange(tool(3, "t"), status(200)).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let got: Vec<_> = seen.iter().map(|t| (t.from, t.to, t.reason)).collect();
    assert_eq!(
        got,
        [
            (State::Closed, State::Open, Reason::FailureRate),
            (State::Open, State::HalfOpen, Reason::OpenDurationElapsed),
            (State::HalfOpen, State::Closed, Reason::ProbesSucceeded),
        ]
    );
    assert_eq!(seen[0].key.as_deref(), Some("t"));
    assert_eq!((seen[0].counts.calls, seen[0].counts.failures), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services_and_clones_share_circuits() {
    let layer = one_failure_opens().build().unwrap();
    let (m, mut mock) = mock::pair::<Request<()>, Response<ChannelBody>>();
    let mut a = layer.layer(m);
    let mut b = a.clone();
    mock.allow(0);
    let mut ready = tokio_test_ready(&mut a);
    assert!(ready.is_pending());
    mock.allow(1);
    ready = tokio_test_ready(&mut a);
    assert!(matches!(ready, Poll::Ready(Ok(()))));
    let fut = a.call(tool(1, "x"));
    match mock.poll_request() {
        Poll::Ready(Some((_, send))) => send.send_response(status(503)),
        _ => panic!("no request"),
    }
    fut.await.unwrap();
    // The clone sees the open circuit without reaching the inner service.
    mock.allow(1);
    let e = open_error(b.ready().await.unwrap().call(tool(2, "x")).await);
    assert_eq!(e.key, None);
    // An error from the inner poll_ready is passed on, boxed.
    mock.send_error(io::Error::other("down"));
    assert!(b.ready().await.is_err());

    // Another `layer()` call shares them too.
    let (m2, _mock2) = mock::pair::<Request<()>, Response<ChannelBody>>();
    let mut c = layer.layer(m2);
    open_error(c.ready().await.unwrap().call(tool(3, "x")).await);
}

fn tokio_test_ready<S: Service<Request<()>>>(s: &mut S) -> Poll<Result<(), S::Error>> {
    let waker = std::task::Waker::noop();
    s.poll_ready(&mut Context::from_waker(waker))
}

#[test]
fn public_types_are_send_sync_and_clone() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_clone<T: Clone>() {}
    type Svc =
        CircuitBreaker<tower::util::BoxCloneSyncService<Request<()>, Response<String>, Infallible>>;
    assert_send_sync::<Svc>();
    assert_clone::<Svc>();
    assert_send_sync::<CircuitBreakerLayer>();
    assert_send_sync::<tower_armor_circuit_breaker::CircuitBreakerHandle>();
    assert_send_sync::<tower_armor_circuit_breaker::Circuit>();
    fn assert_send<T: Send>(_: &T) {}
    let layer = Builder::new().build().unwrap();
    let mut svc = layer.layer(tower::service_fn(|_r: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let fut = svc.call(tool(1, "x"));
    assert_send(&fut);
}
