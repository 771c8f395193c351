//! The bulkhead service against `tower_test` mocks, on paused time.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde_json::{Map, json};
use tokio::sync::mpsc;
use tower::{Layer, Service, ServiceExt};
use tower_armor_bulkhead::{
    BackpressureLayer, Bulkhead, BulkheadLayer, BulkheadStats, RESUME_KEY, STREAMS_KEY,
};
use tower_armor_mcp::error::BulkheadFull;
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::observe::{ObservedBody, observe_response};
use tower_armor_mcp::{
    BoxError, CompletionHandle, KnownTools, McpBody, McpRequest, MessageKind, Method, Outcome,
    Principal, RequestId, ToolCall, ToolReply,
};
use tower_test::mock;

// === helpers ===

/// Polls once with a waker that does nothing (the tests poll again themselves).
fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

fn pending<F: Future>(f: Pin<&mut F>) {
    assert!(poll(f).is_pending(), "expected the future to be pending");
}

fn refused<T: std::fmt::Debug>(r: Result<T, BoxError>) -> BulkheadFull {
    let e = r.expect_err("expected a refusal");
    e.downcast_ref::<BulkheadFull>()
        .unwrap_or_else(|| panic!("not BulkheadFull: {e}"))
        .clone()
}

fn counts(stats: &BulkheadStats) -> (usize, usize, u64) {
    (stats.running(), stats.queued(), stats.rejected())
}

/// Each pool's key, running calls and refusals, in the order the stats list them.
fn key_counts(stats: &BulkheadStats) -> Vec<(String, usize, u64)> {
    stats
        .keys()
        .into_iter()
        .map(|k| (k.key.unwrap().to_string(), k.running, k.rejected))
        .collect()
}

fn ok_reply() -> ToolReply {
    ToolReply::Result {
        is_error: false,
        result: json!({}),
    }
}

fn tool(name: &str) -> ToolCall {
    ToolCall::new(name, Map::new())
}

/// A body fed frame by frame through a channel; ends when the sender is dropped.
struct ChanBody(mpsc::UnboundedReceiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn sse() -> (mpsc::UnboundedSender<Bytes>, Response<ChanBody>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let resp = Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChanBody(rx))
        .unwrap();
    (tx, resp)
}

fn progress_event() -> Bytes {
    Bytes::from_static(
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n",
    )
}

fn final_event(id: i64) -> Bytes {
    Bytes::from(format!(
        "data: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[]}}}}\n\n"
    ))
}

fn http_call(tool: &str, id: i64) -> Request<McpBody> {
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut().insert(
        McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsCall),
            Some(id.into()),
        )
        .with_name(tool),
    );
    req
}

fn listen(principal: Option<&str>, id: i64) -> Request<McpBody> {
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut().insert(McpRequest::new(
        MessageKind::Request,
        Some(Method::SubscriptionsListen),
        Some(id.into()),
    ));
    if let Some(p) = principal {
        req.extensions_mut().insert(Principal::new(p));
    }
    req
}

/// A JSON-RPC request (or, with `kind`, a notification or response) of `method`.
fn rpc(kind: MessageKind, method: Option<Method>, id: Option<i64>) -> Request<McpBody> {
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut()
        .insert(McpRequest::new(kind, method, id.map(RequestId::from)));
    req
}

/// A call of `method` that the mock answers at once; fails if the bulkhead refuses it.
async fn answered(svc: &mut Bulkhead<HttpMock>, handle: &mut HttpHandle, req: Request<McpBody>) {
    let fut = start(svc, req).await;
    let (_, send) = next(handle).await;
    send.send_response(Response::new(ChanBody(mpsc::unbounded_channel().1)));
    fut.await.expect("the bulkhead refused the request");
}

fn notification() -> Request<McpBody> {
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut().insert(McpRequest::new(
        MessageKind::Notification,
        Some(Method::NotificationsCancelled),
        None,
    ));
    req
}

type TypedMock = mock::Mock<ToolCall, ToolReply>;
type TypedHandle = mock::Handle<ToolCall, ToolReply>;
type HttpMock = mock::Mock<Request<McpBody>, Response<ChanBody>>;
type HttpHandle = mock::Handle<Request<McpBody>, Response<ChanBody>>;

fn typed(layer: &BulkheadLayer) -> (Bulkhead<TypedMock>, TypedHandle) {
    let (m, h) = mock::pair();
    (layer.layer(m), h)
}

fn http(layer: &BulkheadLayer) -> (Bulkhead<HttpMock>, HttpHandle) {
    let (m, h) = mock::pair();
    (layer.layer(m), h)
}

/// The next request the inner service receives; fails (on paused time, at once) if none comes.
async fn next<T, U>(handle: &mut mock::Handle<T, U>) -> (T, mock::SendResponse<U>) {
    tokio::time::timeout(Duration::from_secs(60), handle.next_request())
        .await
        .expect("no request reached the inner service")
        .expect("mock closed")
}

/// `svc.ready().call(req)` without polling the response future.
async fn start<S, R>(svc: &mut S, req: R) -> S::Future
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(req)
}

// === line, wait, order ===

#[tokio::test(start_paused = true)]
async fn a_full_line_refuses_at_once_and_waiters_run_in_turn() {
    let layer = BulkheadLayer::new(1).max_queue(1);
    let stats = layer.stats();
    let (mut svc, mut handle) = typed(&layer);

    let mut a = Box::pin(start(&mut svc, tool("a")).await);
    let mut b = Box::pin(start(&mut svc, tool("b")).await);
    let c = start(&mut svc, tool("c")).await;
    assert_eq!(refused(c.await), BulkheadFull::new(None));
    assert_eq!(counts(&stats), (1, 1, 1));

    pending(a.as_mut());
    pending(b.as_mut());
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.tool(), "a");
    // b waits: the mock has seen nothing more.
    assert!(handle.poll_request().is_pending());

    send.send_response(ok_reply());
    assert!(matches!(poll(a.as_mut()), Poll::Ready(Ok(_))));
    // a's permit went straight to b.
    assert_eq!(counts(&stats), (1, 0, 1));
    pending(b.as_mut());
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.tool(), "b");
    send.send_response(ok_reply());
    assert!(matches!(poll(b.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(counts(&stats), (0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let layer = BulkheadLayer::new(1).max_queue(8);
    let stats = layer.stats();
    let (mut svc, mut handle) = typed(&layer);

    let mut first = Box::pin(start(&mut svc, tool("w0")).await);
    let mut waiting = Vec::new();
    for i in 1..=5 {
        waiting.push(Box::pin(start(&mut svc, tool(&format!("w{i}"))).await));
    }
    pending(first.as_mut());
    let (_, mut send) = next(&mut handle).await;
    assert_eq!(stats.queued(), 5);

    let mut order = Vec::new();
    for _ in 0..5 {
        send.send_response(ok_reply());
        // Poll the finished call, then every waiter, last first: order must not depend on it.
        let _ = poll(first.as_mut());
        for w in waiting.iter_mut().rev() {
            let _ = poll(w.as_mut());
        }
        let (req, s) = next(&mut handle).await;
        order.push(req.tool().to_string());
        assert!(handle.poll_request().is_pending(), "one permit, one call");
        send = s;
        let i: usize = req.tool()[1..].parse().unwrap();
        first = waiting.remove(waiting.iter().position(|_| true).unwrap());
        assert_eq!(i, order.len());
    }
    assert_eq!(order, ["w1", "w2", "w3", "w4", "w5"]);
    send.send_response(ok_reply());
    assert!(matches!(poll(first.as_mut()), Poll::Ready(Ok(_))));
    assert_eq!(counts(&stats), (0, 0, 0));
}

/// A waiter is refused once its wait limit passes; a zero limit refuses a call that would have
/// to wait at its first poll (it holds no place in line for a timer tick).
#[tokio::test(start_paused = true)]
async fn max_wait_refuses_a_waiter_after_the_deadline() {
    for wait in [Duration::from_millis(100), Duration::ZERO] {
        let layer = BulkheadLayer::new(1)
            .max_queue(4)
            .max_wait(wait)
            .by_tool(KnownTools::from_names(["slow"]));
        let stats = layer.stats();
        let (mut svc, mut handle) = typed(&layer);

        let mut a = Box::pin(start(&mut svc, tool("slow")).await);
        pending(a.as_mut());
        let (_, send) = next(&mut handle).await;
        // Between two timer ticks (1 ms), as a real clock almost always is: a timer fires only
        // at the tick after its deadline.
        tokio::time::advance(Duration::from_micros(500)).await;
        let mut b = Box::pin(start(&mut svc, tool("slow")).await);
        if !wait.is_zero() {
            pending(b.as_mut());
            tokio::time::advance(wait - Duration::from_millis(1)).await;
            pending(b.as_mut());
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let err = match poll(b.as_mut()) {
            Poll::Ready(r) => refused(r),
            Poll::Pending => panic!("still waiting after max_wait {wait:?}"),
        };
        assert_eq!(err.key.as_deref(), Some("slow"));
        assert_eq!(counts(&stats), (1, 0, 1));
        send.send_response(ok_reply());
        assert!(matches!(poll(a.as_mut()), Poll::Ready(Ok(_))));
        assert_eq!(counts(&stats), (0, 0, 1));
    }
}

// === drop at every await ===

/// Every point where a call can be dropped: the bulkhead ends with every permit and place back.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_at_any_point_gives_back_its_place_or_permit() {
    #[derive(Debug, Clone, Copy)]
    enum DropAt {
        WaitingNeverPolled,
        WaitingPolled,
        HandedPermitNotPolled,
        RunningNeverPolled,
        RunningPolled,
        AnswerHeadersOnly,
        AnswerMidStream,
        AnswerEnded,
        InnerFailed,
    }
    for at in [
        DropAt::WaitingNeverPolled,
        DropAt::WaitingPolled,
        DropAt::HandedPermitNotPolled,
        DropAt::RunningNeverPolled,
        DropAt::RunningPolled,
        DropAt::AnswerHeadersOnly,
        DropAt::AnswerMidStream,
        DropAt::AnswerEnded,
        DropAt::InnerFailed,
    ] {
        let layer = BulkheadLayer::new(1).max_queue(2);
        let stats = layer.stats();
        let (mut svc, mut handle) = http(&layer);

        // A blocker holds the permit, the call under test waits behind it, a third waits too.
        let mut blocker = Box::pin(start(&mut svc, http_call("x", 1)).await);
        pending(blocker.as_mut());
        let (_, blocker_send) = next(&mut handle).await;
        let mut call = Box::pin(start(&mut svc, http_call("x", 2)).await);
        let mut third = Box::pin(start(&mut svc, http_call("x", 3)).await);
        pending(third.as_mut());
        assert_eq!(counts(&stats), (1, 2, 0), "{at:?}");

        match at {
            DropAt::WaitingNeverPolled | DropAt::WaitingPolled => {
                if let DropAt::WaitingPolled = at {
                    pending(call.as_mut());
                }
                drop(call);
                assert_eq!(counts(&stats), (1, 1, 0), "{at:?}: its place is given back");
                blocker_send.send_response(Response::new(ChanBody(mpsc::unbounded_channel().1)));
                assert!(matches!(poll(blocker.as_mut()), Poll::Ready(Ok(_))));
            }
            _ => {
                pending(call.as_mut());
                let (tx, resp) = sse();
                blocker_send.send_response(resp);
                let blocker_resp = match poll(blocker.as_mut()) {
                    Poll::Ready(Ok(r)) => r,
                    other => panic!("{at:?}: {other:?}"),
                };
                drop(tx);
                drop(blocker_resp); // blocker done: its permit goes to `call`
                if let DropAt::HandedPermitNotPolled = at {
                    drop(call);
                } else {
                    pending(call.as_mut());
                    let (req, send) = next(&mut handle).await;
                    assert_eq!(
                        req.extensions().get::<McpRequest>().unwrap().id(),
                        Some(&RequestId::Number(2))
                    );
                    match at {
                        DropAt::RunningNeverPolled => {
                            drop(send);
                            drop(call);
                        }
                        DropAt::RunningPolled => {
                            pending(call.as_mut());
                            drop(call);
                            drop(send);
                        }
                        DropAt::InnerFailed => {
                            send.send_error(std::io::Error::other("boom"));
                            assert!(matches!(poll(call.as_mut()), Poll::Ready(Err(_))));
                        }
                        _ => {
                            let (tx, resp) = sse();
                            send.send_response(resp);
                            let resp = match poll(call.as_mut()) {
                                Poll::Ready(Ok(r)) => r,
                                other => panic!("{at:?}: {other:?}"),
                            };
                            drop(call);
                            assert_eq!(stats.running(), 1, "{at:?}: held while the answer streams");
                            let mut body = resp.into_body();
                            match at {
                                DropAt::AnswerHeadersOnly => drop(body),
                                DropAt::AnswerMidStream => {
                                    tx.send(progress_event()).unwrap();
                                    body.frame().await.unwrap().unwrap();
                                    assert_eq!(stats.running(), 1, "{at:?}");
                                    drop(body);
                                }
                                _ => {
                                    tx.send(progress_event()).unwrap();
                                    tx.send(final_event(2)).unwrap();
                                    body.frame().await.unwrap().unwrap();
                                    assert_eq!(
                                        stats.running(),
                                        1,
                                        "{at:?}: progress is not the end"
                                    );
                                    body.frame().await.unwrap().unwrap();
                                    // The final response passed: released before the body ends.
                                    assert_eq!(
                                        (stats.running(), stats.queued()),
                                        (1, 0),
                                        "{at:?}: the permit passed to the third call"
                                    );
                                    drop(tx);
                                    assert!(body.frame().await.is_none());
                                }
                            }
                        }
                    }
                }
            }
        }
        // Whatever happened, the third waiter now gets the permit and the pool ends whole.
        pending(third.as_mut());
        let (_, send) = next(&mut handle).await;
        assert_eq!(counts(&stats), (1, 0, 0), "{at:?}");
        send.send_response(Response::new(ChanBody(mpsc::unbounded_channel().1)));
        let resp = match poll(third.as_mut()) {
            Poll::Ready(Ok(r)) => r,
            other => panic!("{at:?}: {other:?}"),
        };
        // A body without content type: complete from its status at once.
        assert_eq!(counts(&stats), (0, 0, 0), "{at:?}");
        drop(resp);
    }
}

// === permit lifetime ===

#[tokio::test(start_paused = true)]
async fn an_sse_answer_holds_its_permit_until_the_final_message() {
    let layer = BulkheadLayer::new(1).max_queue(0);
    let stats = layer.stats();
    let (mut svc, mut handle) = http(&layer);

    let fut = start(&mut svc, http_call("progress", 7)).await;
    let (_, send) = next(&mut handle).await;
    let (tx, resp) = sse();
    send.send_response(resp);
    let resp = fut.await.unwrap();
    assert!(resp.extensions().get::<CompletionHandle>().is_some());
    // Headers are out; the call is not over.
    assert_eq!(stats.running(), 1);
    assert_eq!(
        refused(start(&mut svc, http_call("add", 8)).await.await).key,
        None
    );

    let mut body = resp.into_body();
    tx.send(progress_event()).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(stats.running(), 1);
    // A response to another id is not the end either.
    tx.send(final_event(99)).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(stats.running(), 1);
    tx.send(final_event(7)).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(stats.running(), 0);
    assert_eq!(stats.rejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_handle_already_in_the_answer_is_reused() {
    // An inner layer (a timeout, say) observed the answer already: the bulkhead subscribes to
    // its handle instead of parsing the stream again.
    let layer = BulkheadLayer::new(1);
    let stats = layer.stats();
    let (m, mut handle) = mock::pair::<Request<McpBody>, Response<ObservedBody<ChanBody>>>();
    let mut svc = layer.layer(m);

    let fut = start(&mut svc, http_call("progress", 1)).await;
    let (_, send) = next(&mut handle).await;
    let (_tx, resp) = sse();
    let (resp, inner_handle) = observe_response(resp, Some(&RequestId::Number(1)));
    send.send_response(resp);
    let resp = fut.await.unwrap();
    let outer = resp.extensions().get::<CompletionHandle>().unwrap().clone();
    assert_eq!(stats.running(), 1);
    inner_handle.complete(Outcome::Success);
    assert_eq!(outer.outcome(), Some(Outcome::Success), "one handle");
    assert_eq!(stats.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn typed_calls_release_when_the_reply_arrives() {
    let layer = BulkheadLayer::new(2);
    let stats = layer.stats();
    let (mut svc, mut handle) = typed(&layer);
    let fut = start(&mut svc, tool("add")).await;
    assert_eq!(stats.running(), 1, "taken at call when free");
    let (_, send) = next(&mut handle).await;
    send.send_response(ToolReply::Error {
        code: -32603,
        message: "x".into(),
    });
    assert!(matches!(
        fut.await.unwrap(),
        ToolReply::Error { code: -32603, .. }
    ));
    assert_eq!(counts(&stats), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn notifications_pass_without_a_permit() {
    let layer = BulkheadLayer::new(1).max_queue(0);
    let stats = layer.stats();
    let (mut svc, mut handle) = http(&layer);
    let _running = start(&mut svc, http_call("slow", 1)).await;
    let _ = next(&mut handle).await;
    let note = start(&mut svc, notification()).await;
    let (_, send) = next(&mut handle).await;
    send.send_response(Response::new(ChanBody(mpsc::unbounded_channel().1)));
    note.await.unwrap();
    assert_eq!(counts(&stats), (1, 0, 0));
}

// === long-lived streams ===

#[tokio::test(start_paused = true)]
async fn long_lived_streams_take_a_slot_per_principal_not_a_permit() {
    let layer = BulkheadLayer::new(1).max_queue(0).streams_per_principal(2);
    let stats = layer.stats();
    let (mut svc, mut handle) = http(&layer);

    // The only call permit is busy; streams do not need it.
    let _call = start(&mut svc, http_call("slow", 1)).await;
    let _ = next(&mut handle).await;

    let mut bodies = Vec::new();
    for (who, id) in [
        (Some("alice"), 10),
        (Some("alice"), 11),
        (Some("bob"), 12),
        (None, 13),
    ] {
        let fut = start(&mut svc, listen(who, id)).await;
        let (_, send) = next(&mut handle).await;
        let (tx, resp) = sse();
        send.send_response(resp);
        bodies.push((tx, fut.await.unwrap().into_body()));
    }
    assert_eq!(stats.streams_open(), 4);
    let alice = Principal::new("alice");
    assert_eq!(stats.streams_open_for(Some(&alice)), 2);
    let err = refused(start(&mut svc, listen(Some("alice"), 14)).await.await);
    assert_eq!(err.key.as_deref(), Some(STREAMS_KEY));
    assert_eq!(stats.streams_rejected(), 1);
    assert_eq!(counts(&stats), (1, 0, 0), "no call permit taken or refused");

    // A notification in a listen stream is not its end; dropping the body is.
    let (tx, mut body) = bodies.remove(0);
    tx.send(progress_event()).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(stats.streams_open(), 4);
    drop(body);
    assert_eq!(stats.streams_open_for(Some(&alice)), 1);
    // ...and so is the stream ending.
    let (tx, mut body) = bodies.remove(0);
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(stats.streams_open_for(Some(&alice)), 0);

    let fut = start(&mut svc, listen(Some("alice"), 15)).await;
    let (_, send) = next(&mut handle).await;
    send.send_response(sse().1);
    fut.await.unwrap();
}

/// Without authentication, each client's streams count against its own peer address.
#[tokio::test(start_paused = true)]
async fn anonymous_streams_count_per_peer_address() {
    let from = |peer: Option<&str>, id: i64| {
        let mut req = listen(None, id);
        if let Some(p) = peer {
            req.extensions_mut()
                .insert(p.parse::<SocketAddr>().unwrap());
        }
        req
    };
    let layer = BulkheadLayer::new(1).streams_per_principal(1);
    let stats = layer.stats();
    let (mut svc, mut handle) = http(&layer);
    let mut open = Vec::new();
    // Two clients (the second on two connections of one IP), then one with no known address.
    for (peer, id) in [
        (Some("10.0.0.1:5000"), 1),
        (Some("10.0.0.2:5000"), 2),
        (None, 3),
    ] {
        let fut = start(&mut svc, from(peer, id)).await;
        let (_, send) = next(&mut handle).await;
        let (tx, resp) = sse();
        send.send_response(resp);
        open.push((tx, fut.await.expect("each peer has its own allowance")));
    }
    let err = refused(start(&mut svc, from(Some("10.0.0.2:6000"), 4)).await.await);
    assert_eq!(err.key.as_deref(), Some(STREAMS_KEY));
    refused(start(&mut svc, from(None, 5)).await.await);
    assert_eq!(stats.streams_open_from("10.0.0.1".parse().unwrap()), 1);
    assert_eq!(stats.streams_open_for(None), 3);
    assert_eq!(stats.streams_rejected(), 2);

    // The address can come from elsewhere, such as axum's `ConnectInfo`.
    let layer = BulkheadLayer::new(1)
        .streams_per_principal(1)
        .peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0));
    let (mut svc, mut handle) = http(&layer);
    for (peer, id) in [("10.0.0.1:1", 1), ("10.0.0.2:1", 2)] {
        let mut req = listen(None, id);
        req.extensions_mut()
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        let fut = start(&mut svc, req).await;
        let (_, send) = next(&mut handle).await;
        let (tx, resp) = sse();
        send.send_response(resp);
        open.push((tx, fut.await.expect("each peer has its own allowance")));
    }
    assert_eq!(layer.stats().streams_open(), 2);
}

#[tokio::test(start_paused = true)]
async fn stream_limits_can_be_turned_off() {
    let layer = BulkheadLayer::new(1).no_stream_limit();
    let stats = layer.stats();
    let (mut svc, mut handle) = http(&layer);
    let mut open = Vec::new();
    for id in 0..20 {
        let fut = start(&mut svc, listen(Some("alice"), id)).await;
        let (_, send) = next(&mut handle).await;
        let (tx, resp) = sse();
        send.send_response(resp);
        open.push((tx, fut.await.unwrap()));
    }
    assert_eq!((stats.streams_open(), stats.streams_rejected()), (0, 0));
    assert_eq!(stats.streams_per_principal(), None);
}

/// GET facts come from the inspector: a GET listen stream is long-lived, and so is one that
/// reconnects it (rmcp's bare `<index>` event id); a GET with a call's `Last-Event-ID`
/// (`<index>/<request>`) resumes that call and takes a call permit.
#[tokio::test(start_paused = true)]
async fn a_resumption_is_a_call_and_a_get_listen_stream_is_not() {
    let layer = BulkheadLayer::new(1)
        .max_queue(0)
        .by_tool(KnownTools::from_names(["progress"]));
    let stats = layer.stats();
    let (m, mut handle) = mock::pair::<Request<McpBody>, Response<ChanBody>>();
    let mut svc = McpInspectLayer::new().layer(layer.layer(m));

    let get = |resume: Option<&str>| {
        let mut b = Request::get("/mcp")
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", "s1");
        if let Some(id) = resume {
            b = b.header("last-event-id", id);
        }
        b.body(http_body_util::Empty::<Bytes>::new()).unwrap()
    };

    let fut = start(&mut svc, get(None)).await;
    let (_, send) = next(&mut handle).await;
    let (_listen_tx, resp) = sse();
    send.send_response(resp);
    let listen = fut.await.unwrap();
    assert_eq!((stats.streams_open(), stats.running()), (1, 0));

    // The listen stream reconnecting: another stream slot, never a call permit (it would hold
    // one for as long as it stays open).
    let fut = start(&mut svc, get(Some("7"))).await;
    let (_, send) = next(&mut handle).await;
    let (_relisten_tx, resp) = sse();
    send.send_response(resp);
    let relisten = fut.await.unwrap();
    assert_eq!((stats.streams_open(), stats.running()), (2, 0));
    drop(relisten);
    assert_eq!(stats.streams_open(), 1);

    let fut = start(&mut svc, get(Some("0/3"))).await;
    let (_, send) = next(&mut handle).await;
    let (tx, resp) = sse();
    send.send_response(resp);
    let resumed = fut.await.unwrap();
    assert_eq!((stats.streams_open(), stats.running()), (1, 1));
    assert_eq!(
        stats.key(RESUME_KEY).unwrap().running,
        1,
        "a GET names neither tool nor method"
    );
    assert!(stats.key("unknown").is_none());
    // While the resumed call runs, another call of that pool is refused.
    let again = start(&mut svc, get(Some("0/4"))).await.await;
    assert_eq!(refused(again).key.as_deref(), Some(RESUME_KEY));

    let mut body = resumed.into_body();
    tx.send(final_event(5)).unwrap(); // a resumption has no id: its first response is final
    body.frame().await.unwrap().unwrap();
    assert_eq!(stats.running(), 0);
    drop(listen);
    assert_eq!(stats.streams_open(), 0);
}

// === shared state, keys ===

#[tokio::test(start_paused = true)]
async fn every_layer_call_and_clone_shares_the_pools() {
    let layer = BulkheadLayer::new(1).max_queue(0);
    let stats = layer.stats();
    let (mut one, mut h1) = typed(&layer);
    let (mut two, _h2) = typed(&layer.clone());
    let mut three = one.clone();

    let _held = start(&mut one, tool("a")).await;
    let _ = next(&mut h1).await;
    refused(start(&mut two, tool("b")).await.await);
    refused(start(&mut three, tool("c")).await.await);
    assert_eq!(counts(&stats), (1, 0, 2));
    assert_eq!(counts(&layer.clone().stats()), (1, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn keyed_by_tool_each_known_tool_has_its_pool() {
    let tools = KnownTools::from_names(["add", "slow"]);
    let layer = BulkheadLayer::new(1).max_queue(0).by_tool(tools.clone());
    let stats = layer.stats();
    let (mut svc, mut handle) = typed(&layer);

    let _slow = start(&mut svc, tool("slow")).await;
    let _ = next(&mut handle).await;
    assert_eq!(
        refused(start(&mut svc, tool("slow")).await.await)
            .key
            .as_deref(),
        Some("slow")
    );
    let add = start(&mut svc, tool("add")).await;
    let (_, send) = next(&mut handle).await;
    send.send_response(ok_reply());
    add.await.unwrap();

    let _made_up = start(&mut svc, tool("made-up-1")).await;
    let _ = next(&mut handle).await;
    assert_eq!(
        refused(start(&mut svc, tool("made-up-2")).await.await)
            .key
            .as_deref(),
        Some("unknown")
    );
    let keys = key_counts(&stats);
    assert_eq!(
        keys,
        [
            ("add".to_string(), 0, 0),
            ("slow".to_string(), 1, 1),
            ("unknown".to_string(), 1, 1)
        ]
    );

    // A tool learned later gets its own pool from then on.
    tools.learn(["echo"]);
    let _echo = start(&mut svc, tool("echo")).await;
    assert_eq!(stats.key("echo").unwrap().running, 1);
}

/// Keyed by tool, only `tools/call` takes the tool pools: a slow tool and a flood of made-up
/// tool names (which fill `unknown`) refuse no handshake, `ping` or other method; each other
/// method is bounded in a pool of its own.
#[tokio::test(start_paused = true)]
async fn keyed_by_tool_other_methods_never_wait_behind_tools() {
    let layer = BulkheadLayer::new(1)
        .max_queue(0)
        .by_tool(KnownTools::from_names(["slow"]));
    let stats = layer.stats();
    let (mut svc, mut handle) = http(&layer);
    let req = |m: Method, id: i64| rpc(MessageKind::Request, Some(m), Some(id));

    // `slow` and `unknown` are both busy.
    let _slow = start(&mut svc, http_call("slow", 1)).await;
    let _ = next(&mut handle).await;
    let _made_up = start(&mut svc, http_call("made-up", 2)).await;
    let _ = next(&mut handle).await;
    let err = refused(start(&mut svc, http_call("made-up-too", 3)).await.await);
    assert_eq!(err.key.as_deref(), Some("unknown"));

    // The handshake and ping take no permit: two at once (one permit, no line) both pass.
    let init_a = start(&mut svc, req(Method::Initialize, 4)).await;
    let init_b = start(&mut svc, req(Method::Initialize, 5)).await;
    for _ in 0..2 {
        let (_, send) = next(&mut handle).await;
        send.send_response(Response::new(ChanBody(mpsc::unbounded_channel().1)));
    }
    init_a.await.unwrap();
    init_b.await.unwrap();
    answered(&mut svc, &mut handle, req(Method::Ping, 6)).await;
    answered(&mut svc, &mut handle, req(Method::ServerDiscover, 7)).await;
    // Notifications and the client's responses take nothing either.
    answered(
        &mut svc,
        &mut handle,
        rpc(
            MessageKind::Notification,
            Some(Method::NotificationsInitialized),
            None,
        ),
    )
    .await;
    answered(
        &mut svc,
        &mut handle,
        rpc(MessageKind::Response, None, Some(0)),
    )
    .await;

    // tools/list has its own pool: it runs while the tools are busy, and is bounded there.
    let _list = start(&mut svc, req(Method::ToolsList, 8)).await;
    let _ = next(&mut handle).await;
    let err = refused(start(&mut svc, req(Method::ToolsList, 9)).await.await);
    assert_eq!(err.key.as_deref(), Some("method:tools/list"));
    answered(&mut svc, &mut handle, req(Method::ResourcesRead, 10)).await;
    // Made-up methods share one pool, apart from the rest.
    let _other = start(&mut svc, req(Method::Other("x/made-up".into()), 11)).await;
    let _ = next(&mut handle).await;
    let err = refused(
        start(&mut svc, req(Method::Other("y/made-up".into()), 12))
            .await
            .await,
    );
    assert_eq!(
        err.key.as_deref(),
        Some(tower_armor_bulkhead::OTHER_METHODS_KEY)
    );

    // The stats list the tool pools, then the method pools.
    let keys = key_counts(&stats);
    assert_eq!(
        keys,
        [
            ("slow".to_string(), 1, 0),
            ("unknown".to_string(), 1, 1),
            ("method:other".to_string(), 1, 1),
            ("method:resources/read".to_string(), 0, 0),
            ("method:tools/list".to_string(), 1, 1),
        ]
    );
    assert_eq!(stats.key("method:tools/list").unwrap().running, 1);
    assert_eq!(counts(&stats), (4, 0, 3));
}

/// The global bulkhead is one pool for every call, the handshake included.
#[tokio::test(start_paused = true)]
async fn unkeyed_every_call_shares_the_one_pool() {
    let layer = BulkheadLayer::new(1).max_queue(0);
    let (mut svc, mut handle) = http(&layer);
    let _slow = start(&mut svc, http_call("slow", 1)).await;
    let _ = next(&mut handle).await;
    let init = rpc(MessageKind::Request, Some(Method::Initialize), Some(2));
    assert_eq!(refused(start(&mut svc, init).await.await).key, None);
}

// === backpressure mode ===

#[tokio::test(start_paused = true)]
async fn backpressure_reserves_in_poll_ready_and_clones_do_not_copy_it() {
    let layer = BackpressureLayer::new(1);
    let stats = layer.stats();
    let (m, mut handle) = mock::pair::<ToolCall, ToolReply>();
    let mut one = layer.layer(m);
    let cx = &mut Context::from_waker(Waker::noop());

    assert!(matches!(
        Service::<ToolCall>::poll_ready(&mut one, cx),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(stats.running(), 1, "reserved by readiness");
    let mut two = one.clone();
    assert!(
        Service::<ToolCall>::poll_ready(&mut two, cx).is_pending(),
        "the clone has no reservation"
    );
    assert_eq!(stats.queued(), 1);

    // Dropping the readied service returns its reservation to the waiting clone.
    drop(one);
    assert!(matches!(
        Service::<ToolCall>::poll_ready(&mut two, cx),
        Poll::Ready(Ok(()))
    ));
    let fut = two.call(tool("a"));
    let (_, send) = next(&mut handle).await;
    send.send_response(ok_reply());
    fut.await.unwrap();
    assert_eq!(counts(&stats), (0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn backpressure_returns_the_reservation_for_requests_without_a_permit() {
    let layer = BackpressureLayer::new(1);
    let stats = layer.stats();
    let (m, mut handle) = mock::pair::<Request<McpBody>, Response<ChanBody>>();
    let mut svc = layer.layer(m);
    let note = start(&mut svc, notification()).await;
    assert_eq!(stats.running(), 0);
    let (_, send) = next(&mut handle).await;
    send.send_response(Response::new(ChanBody(mpsc::unbounded_channel().1)));
    note.await.unwrap();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "without poll_ready")]
async fn backpressure_call_without_readiness_panics_clearly() {
    let (m, _handle) = mock::pair::<ToolCall, ToolReply>();
    let mut svc = BackpressureLayer::new(1).layer(m);
    drop(svc.call(tool("a")));
}

#[tokio::test(start_paused = true)]
async fn an_inner_readiness_error_is_boxed() {
    let (mut svc, mut handle) = typed(&BulkheadLayer::new(1));
    handle.send_error(std::io::Error::other("not ready"));
    let cx = &mut Context::from_waker(Waker::noop());
    match Service::<ToolCall>::poll_ready(&mut svc, cx) {
        Poll::Ready(Err(e)) => assert!(e.to_string().contains("not ready")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn services_and_futures_are_send_sync_clone() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync_clone::<Bulkhead<TypedMock>>();
    send_sync_clone::<Bulkhead<HttpMock>>();
    send_sync_clone::<BulkheadLayer>();
    send_sync_clone::<BackpressureLayer>();
    send_sync_clone::<BulkheadStats>();
    send::<<Bulkhead<HttpMock> as Service<Request<McpBody>>>::Future>();
    send::<<Bulkhead<TypedMock> as Service<ToolCall>>::Future>();
}

#[test]
fn bad_settings_are_refused_when_built() {
    assert!(BulkheadLayer::try_new(0).is_err());
    assert!(BackpressureLayer::try_new(0).is_err());
    assert!(BulkheadLayer::try_new(usize::MAX).is_err());
    assert!(BulkheadLayer::try_new(1).is_ok());
}
