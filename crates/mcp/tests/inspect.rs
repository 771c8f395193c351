//! McpInspectLayer through tower-test mocks.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tower::{Layer, ServiceExt};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{McpBody, McpRequest, MessageKind, Method, StreamRole};
use tower_test::mock;

type Mock = mock::Mock<Request<McpBody>, Response<String>>;
type Handle = mock::Handle<Request<McpBody>, Response<String>>;

fn setup(layer: McpInspectLayer) -> (tower_armor_mcp::inspect::McpInspect<Mock>, Handle) {
    let (svc, handle) = mock::pair::<Request<McpBody>, Response<String>>();
    (layer.layer(svc), handle)
}

async fn body_json(resp: Response<tower_armor_mcp::ResponseBody<String>>) -> serde_json::Value {
    let (parts, body) = resp.into_parts();
    assert_eq!(parts.headers["content-type"], "application/json");
    let b = body.collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap()
}

fn post(body: &'static str) -> Request<String> {
    Request::post("/mcp")
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn facts_reach_the_inner_service_with_the_body_unchanged() {
    let (svc, mut handle) = setup(McpInspectLayer::new());
    let raw = r#"{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let call = tokio::spawn(svc.oneshot(post(raw)));
    let (req, send) = handle.next_request().await.unwrap();
    let facts = req.extensions().get::<McpRequest>().unwrap().clone();
    assert_eq!(facts.method(), Some(&Method::ToolsCall));
    assert_eq!(facts.tool(), Some("echo"));
    assert_eq!(req.body().bytes(), raw.as_bytes());
    send.send_response(Response::new("inner".to_string()));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.body().is_local());
}

/// (The body is drained, not parsed: see `an_oversized_body_is_drained_before_the_413`.)
#[tokio::test(start_paused = true)]
async fn declared_oversize_is_refused_before_reading() {
    let (svc, mut handle) = setup(McpInspectLayer::new().max_body_bytes(16));
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("content-length", "17")
        .body("{\"jsonrpc\":\"2.0\"}".to_string())
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], -31413);
    assert_eq!(v["id"], serde_json::Value::Null);
    // The service was dropped without ever sending a request inward.
    assert!(handle.next_request().await.is_none());
}

/// A content-coded body is refused (415): read as it is, the server would see other bytes
/// than a proxy or firewall that decodes it. `identity` is no coding.
#[tokio::test(start_paused = true)]
async fn content_coded_bodies_are_refused() {
    let raw = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    for coding in [
        "gzip",
        "br",
        "GZIP",
        "identity, gzip",
        ", x-custom",
        "x-custom",
    ] {
        let (svc, mut handle) = setup(McpInspectLayer::new());
        let mut req = post(raw);
        req.headers_mut()
            .insert("content-encoding", coding.parse().unwrap());
        let resp = svc.oneshot(req).await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{coding}"
        );
        assert_eq!(resp.headers()["accept-encoding"], "identity");
        assert_eq!(body_json(resp).await["error"]["code"], -32600, "{coding}");
        assert!(handle.next_request().await.is_none(), "{coding}");
    }
    for coding in ["identity", "Identity", "", " identity , ,IDENTITY"] {
        let (svc, mut handle) = setup(McpInspectLayer::new());
        let mut req = post(raw);
        req.headers_mut()
            .insert("content-encoding", coding.parse().unwrap());
        let call = tokio::spawn(svc.oneshot(req));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Response::new(String::new()));
        assert_eq!(
            call.await.unwrap().unwrap().status(),
            StatusCode::OK,
            "{coding}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn streamed_oversize_is_refused_while_reading() {
    let (svc, _handle) = setup(McpInspectLayer::new().max_body_bytes(10));
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..4)
        .map(|_| Ok(Frame::data(Bytes::from_static(b"abcd"))))
        .collect();
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(StreamBody::new(stream::iter(chunks)))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(start_paused = true)]
async fn multi_frame_bodies_are_joined() {
    let (svc, mut handle) = setup(McpInspectLayer::new());
    let parts = [r#"{"jsonrpc":"2.0","#, r#""id":1,"method":"#, r#""ping"}"#];
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(StreamBody::new(stream::iter(chunks)))
        .unwrap();
    let call = tokio::spawn(svc.oneshot(req));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.body().bytes(), parts.concat().as_bytes());
    assert_eq!(
        req.extensions().get::<McpRequest>().unwrap().method(),
        Some(&Method::Ping)
    );
    send.send_response(Response::new(String::new()));
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn malformed_and_mismatched_requests_are_answered_here() {
    let (svc, _h) = setup(McpInspectLayer::new());
    let resp = svc.clone().oneshot(post("{\"jsonrpc\":")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], -32700);
    assert_eq!(v["id"], serde_json::Value::Null);

    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "=?base64?not base64?=")
        .body(
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add"}}"#.to_string(),
        )
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], -32020);
    assert_eq!(v["id"], 4);

    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2099-01-01")
        .body(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#.to_string())
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v = body_json(resp).await;
    // 2026-07-28's UnsupportedProtocolVersionError: the id, what was asked, what may be asked.
    assert_eq!(v["error"]["code"], -32022);
    assert_eq!(v["id"], 4);
    assert_eq!(v["error"]["data"]["requested"], "2099-01-01");
    let supported = v["error"]["data"]["supported"].as_array().unwrap();
    assert!(supported.contains(&"2026-07-28".into()), "{v}");
    assert!(supported.contains(&"2025-11-25".into()), "{v}");

    // The same from `_meta`, and a hostile value is bounded.
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("mcp-method", "tools/list")
        .body(
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2027-01-01"}}}"#
                .to_string(),
        )
        .unwrap();
    let v = body_json(svc.clone().oneshot(req).await.unwrap()).await;
    assert_eq!(
        (v["id"].clone(), v["error"]["code"].clone()),
        ("x".into(), (-32022).into())
    );
    assert_eq!(v["error"]["data"]["requested"], "2027-01-01");
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "9".repeat(500))
        .body("not json".to_string())
        .unwrap();
    let v = body_json(svc.oneshot(req).await.unwrap()).await;
    assert_eq!(v["error"]["code"], -32022, "the version is answered first");
    assert_eq!(v["id"], serde_json::Value::Null);
    assert_eq!(v["error"]["data"]["requested"], "9".repeat(128));
}

#[tokio::test(start_paused = true)]
async fn get_delete_and_non_json_pass_through() {
    let (svc, mut handle) = setup(McpInspectLayer::new());
    let get = Request::get("/mcp")
        .header("mcp-session-id", "s-1")
        .header("accept", "text/event-stream")
        .body(String::new())
        .unwrap();
    let call = tokio::spawn(svc.clone().oneshot(get));
    let (req, send) = handle.next_request().await.unwrap();
    let facts = req.extensions().get::<McpRequest>().unwrap();
    assert!(facts.is_long_lived());
    assert_eq!(facts.session_id().unwrap(), "s-1");
    send.send_response(Response::new(String::new()));
    call.await.unwrap().unwrap();

    let resume = Request::get("/mcp")
        .header("mcp-session-id", "s-1")
        .header("last-event-id", "3/7")
        .body(String::new())
        .unwrap();
    let call = tokio::spawn(svc.clone().oneshot(resume));
    let (req, send) = handle.next_request().await.unwrap();
    assert!(matches!(
        req.extensions().get::<McpRequest>().unwrap().stream_role(),
        StreamRole::Resume { .. }
    ));
    send.send_response(Response::new(String::new()));
    call.await.unwrap().unwrap();

    // The server reads `+3/+07` as `3/7` (Rust's integer parsing): it goes inward spelt so, for
    // the server and every layer alike.
    let resume = Request::get("/mcp")
        .header("mcp-session-id", "s-1")
        .header("last-event-id", "+3/+07")
        .body(String::new())
        .unwrap();
    let call = tokio::spawn(svc.clone().oneshot(resume));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["last-event-id"], "3/7");
    assert_eq!(
        req.extensions().get::<McpRequest>().unwrap().stream_role(),
        &StreamRole::Resume {
            last_event_id: http::HeaderValue::from_static("3/7")
        }
    );
    send.send_response(Response::new(String::new()));
    call.await.unwrap().unwrap();

    let text = Request::post("/mcp")
        .header("content-type", "text/plain")
        .body("not json at all".to_string())
        .unwrap();
    let call = tokio::spawn(svc.oneshot(text));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(
        req.extensions().get::<McpRequest>().unwrap().kind(),
        MessageKind::NotJsonRpc
    );
    assert_eq!(req.body().bytes(), b"not json at all");
    send.send_response(Response::new(String::new()));
    call.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_body_gets_400() {
    let (svc, _h) = setup(McpInspectLayer::new());
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"{"))),
        Err(std::io::Error::other("reset")),
    ];
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(StreamBody::new(stream::iter(chunks)))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services() {
    let (mut svc, mut handle) = setup(McpInspectLayer::new());
    handle.allow(0);
    let mut ready = tokio_test_ready(&mut svc);
    assert!(
        ready
            .as_mut()
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
            .is_pending()
    );
    handle.allow(1);
    ready.await.unwrap();
}

fn tokio_test_ready<'a>(
    svc: &'a mut tower_armor_mcp::inspect::McpInspect<Mock>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), tower::BoxError>> + 'a>> {
    Box::pin(async move {
        std::future::poll_fn(|cx| tower::Service::<Request<String>>::poll_ready(svc, cx)).await
    })
}

#[test]
fn the_service_is_send_sync_clone() {
    fn assert<T: Send + Sync + Clone>() {}
    assert::<tower_armor_mcp::inspect::McpInspect<Mock>>();
    fn fut<T: Send>() {}
    fut::<tower_armor_mcp::inspect::ResponseFuture<Mock, String>>();
}

// === body-read deadline ===

type Chunk = Result<Frame<Bytes>, Infallible>;

/// A JSON POST whose body the test feeds frame by frame; dropping the sender ends the body.
fn fed_post() -> (
    tokio::sync::mpsc::UnboundedSender<Chunk>,
    Request<StreamBody<impl futures_util::Stream<Item = Chunk> + Send + Unpin>>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Chunk>();
    let body = StreamBody::new(stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    (tx, req)
}

fn chunk(b: &'static str) -> Chunk {
    Ok(Frame::data(Bytes::from_static(b.as_bytes())))
}

const PING: [&str; 2] = [r#"{"jsonrpc":"2.0","id":1,"#, r#""method":"ping"}"#];

async fn assert_body_timeout(resp: Response<tower_armor_mcp::ResponseBody<String>>) {
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(resp.headers()["connection"], "close");
    assert!(resp.body().is_local());
    let v = body_json(resp).await;
    assert_eq!(
        v["error"]["code"],
        tower_armor_mcp::error::CODE_BODY_TIMEOUT
    );
    assert_eq!(v["error"]["code"], -31408);
    assert_eq!(v["id"], serde_json::Value::Null);
}

/// A body over the limit is read to its end and dropped before the 413 goes out: answered while
/// the client is still sending, the connection would close with unread bytes in it, a reset
/// that many clients report instead of the 413. The drain is bounded in time and bytes.
#[tokio::test(start_paused = true)]
async fn an_oversized_body_is_drained_before_the_413() {
    let (svc, mut handle) = setup(McpInspectLayer::new().max_body_bytes(10));
    let (tx, req) = fed_post();
    let call = tokio::spawn(svc.oneshot(req));
    tx.send(chunk("12345678")).unwrap();
    tx.send(chunk("12345678")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!call.is_finished(), "still draining");
    tx.send(chunk("more")).unwrap();
    drop(tx);
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["connection"], "close");
    assert_eq!(body_json(resp).await["error"]["code"], -31413);
    assert!(handle.next_request().await.is_none());

    // Declared over the limit (within the drain's reach): drained to its end, nothing parsed.
    let (svc, _handle) = setup(McpInspectLayer::new().max_body_bytes(10));
    let (tx, mut req) = fed_post();
    req.headers_mut().insert("content-length", 24.into());
    let call = tokio::spawn(svc.oneshot(req));
    tx.send(chunk("12345678")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!call.is_finished(), "still draining");
    tx.send(chunk("1234567812345678")).unwrap();
    drop(tx);
    assert_eq!(
        call.await.unwrap().unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // A body that keeps the connection waiting gets its 413 after a second.
    let (svc, _handle) = setup(McpInspectLayer::new().max_body_bytes(10));
    let (tx, req) = fed_post();
    let call = tokio::spawn(svc.oneshot(req));
    tx.send(chunk("123456789012")).unwrap();
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert!(!call.is_finished());
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_eq!(
        call.await.unwrap().unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Over the limit, and the client waits for `100 Continue` before sending it: answered at
    // once, without reading (which would invite the upload).
    let (svc, _handle) = setup(McpInspectLayer::new().max_body_bytes(10));
    let (_tx, mut req) = fed_post();
    req.headers_mut().insert("content-length", 11.into());
    req.headers_mut()
        .insert("expect", http::HeaderValue::from_static("100-Continue"));
    let resp = tokio::time::timeout(Duration::from_millis(1), svc.oneshot(req))
        .await
        .expect("answered without reading the body")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Declared far over the limit (more than the drain's 8 MiB over): answered at once.
    let (svc, _handle) = setup(McpInspectLayer::new().max_body_bytes(10));
    let (_tx, mut req) = fed_post();
    req.headers_mut()
        .insert("content-length", (10 + (8 << 20) + 1).into());
    let resp = tokio::time::timeout(Duration::from_millis(1), svc.oneshot(req))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(start_paused = true)]
async fn a_slow_body_within_the_deadline_passes() {
    let (svc, mut handle) = setup(McpInspectLayer::new().body_timeout(Duration::from_secs(10)));
    let (tx, req) = fed_post();
    let call = tokio::spawn(svc.oneshot(req));
    tx.send(chunk(PING[0])).unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    tx.send(chunk(PING[1])).unwrap();
    drop(tx);
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.body().bytes(), PING.concat().as_bytes());
    send.send_response(Response::new("inner".to_string()));
    let resp = call.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_body_gets_408_at_the_default_deadline_and_never_goes_inward() {
    let (svc, mut handle) = setup(McpInspectLayer::new());
    let (tx, req) = fed_post();
    tx.send(chunk(PING[0])).unwrap();
    let call = tokio::spawn(svc.oneshot(req));
    tokio::time::sleep(McpInspectLayer::DEFAULT_BODY_TIMEOUT - Duration::from_millis(1)).await;
    assert!(!call.is_finished());
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert_body_timeout(call.await.unwrap().unwrap()).await;
    // The service was dropped without ever sending a request inward; the body too.
    assert!(handle.next_request().await.is_none());
    assert!(tx.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_trickle_does_not_extend_the_deadline() {
    let (svc, _handle) = setup(McpInspectLayer::new().body_timeout(Duration::from_secs(5)));
    let (tx, req) = fed_post();
    let call = tokio::spawn(svc.oneshot(req));
    // One byte a second: never idle for long, but the body is not complete at 5 s.
    for _ in 0..5 {
        tx.send(chunk(" ")).unwrap();
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert!(!call.is_finished());
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_body_timeout(call.await.unwrap().unwrap()).await;
}

#[tokio::test(start_paused = true)]
async fn the_408_carries_the_correlation_id_and_no_connection_header_on_http2() {
    let (svc, _handle) = setup(McpInspectLayer::new().body_timeout(Duration::from_secs(1)));
    let (_tx, mut req) = fed_post();
    *req.version_mut() = http::Version::HTTP_2;
    req.extensions_mut()
        .insert(tower_armor_mcp::CorrelationId::parse(b"req-42").unwrap());
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(resp.headers().get("connection").is_none());
    let v = body_json(resp).await;
    assert_eq!(v["error"]["code"], -31408);
    assert_eq!(v["error"]["data"]["correlationId"], "req-42");
}

#[tokio::test(start_paused = true)]
async fn a_zero_body_timeout_turns_the_deadline_off() {
    let (svc, mut handle) = setup(McpInspectLayer::new().body_timeout(Duration::ZERO));
    let (tx, req) = fed_post();
    tx.send(chunk(PING[0])).unwrap();
    let call = tokio::spawn(svc.oneshot(req));
    tokio::time::sleep(Duration::from_secs(400 * 24 * 60 * 60)).await;
    assert!(!call.is_finished());
    tx.send(chunk(PING[1])).unwrap();
    drop(tx);
    let (_req, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(String::new()));
    assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn an_overlong_body_timeout_is_cut_to_one_day() {
    let max = McpInspectLayer::MAX_BODY_TIMEOUT;
    assert_eq!(max, Duration::from_secs(24 * 60 * 60));
    let (svc, _handle) = setup(McpInspectLayer::new().body_timeout(Duration::MAX));
    let (_tx, req) = fed_post();
    let call = tokio::spawn(svc.oneshot(req));
    tokio::time::sleep(max - Duration::from_secs(1)).await;
    assert!(!call.is_finished());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_body_timeout(call.await.unwrap().unwrap()).await;
}

/// Polls the inspector once, outside any Tokio runtime: creating a `Sleep` there panics, so a
/// request that completes here never armed the body-read timer.
fn poll_without_runtime<B>(layer: &McpInspectLayer, req: Request<B>) -> Option<StatusCode>
where
    B: http_body::Body + Send + 'static,
{
    use futures_util::FutureExt;
    let inner = tower::service_fn(|_req: Request<McpBody>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(String::new())))
    });
    layer
        .layer(inner)
        .oneshot(req)
        .now_or_never()
        .map(|r| r.unwrap().status())
}

#[test]
fn a_ready_body_never_arms_the_timer() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let layer = McpInspectLayer::new();
    // One ready frame.
    assert_eq!(
        poll_without_runtime(&layer, post(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)),
        Some(StatusCode::OK)
    );
    // Several frames, all ready.
    let chunks: Vec<Chunk> = PING.iter().map(|p| chunk(p)).collect();
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .body(StreamBody::new(stream::iter(chunks)))
        .unwrap();
    assert_eq!(poll_without_runtime(&layer, req), Some(StatusCode::OK));
    // With the deadline off, even a body that is not ready creates no timer.
    let (_tx, req) = fed_post();
    let off = layer.clone().body_timeout(Duration::ZERO);
    assert_eq!(poll_without_runtime(&off, req), None);
    // Deadline on, body not ready, and no Tokio runtime to time it: read without a deadline
    // (a warning), never a panic.
    let (_tx, req) = fed_post();
    assert_eq!(poll_without_runtime(&layer, req), None);
}

/// A 2025-11-25 POST of `session`.
fn session_post(body: &'static str, session: &'static str) -> Request<String> {
    let mut req = post(body);
    let h = req.headers_mut();
    h.insert("mcp-session-id", session.parse().unwrap());
    h.insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    req
}

/// MCP forbids reusing an id within a session, and rmcp, which keeps one answer slot per id,
/// would leave one of the two requests unanswered: a request whose id is in progress in its
/// session is answered here, until the first one's answer has ended and the server has let go
/// of the request (rmcp holds it while the handler runs). Here the mock's request stands for
/// the server's hold.
#[tokio::test(start_paused = true)]
async fn an_id_in_progress_in_its_session_is_refused() {
    use tower_armor_mcp::{CompletionHandle, Outcome};
    const CALL: &str =
        r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"slow"}}"#;
    let (svc, mut handle) = setup(McpInspectLayer::new());
    let send =
        |session: &'static str| tokio::spawn(svc.clone().oneshot(session_post(CALL, session)));
    // Answered here at once: a request that reached the (silent) mock would time out.
    type Answer = Result<Response<tower_armor_mcp::ResponseBody<String>>, tower::BoxError>;
    let refused = |call: tokio::task::JoinHandle<Answer>| async move {
        let resp = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("answered by the inspector")
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let v = body_json(resp).await;
        assert_eq!(
            (v["error"]["code"].clone(), v["id"].clone()),
            (serde_json::json!(-32600), serde_json::json!(42))
        );
    };

    let first = send("s-1");
    let (held, reply) = handle.next_request().await.unwrap();
    refused(send("s-1")).await;
    // Another session may use the id, and so may a request without a session.
    let other = send("s-2");
    let (_other_req, other_reply) = handle.next_request().await.unwrap();
    let stateless = tokio::spawn(svc.clone().oneshot(post(CALL)));
    let (_s_req, s_reply) = handle.next_request().await.unwrap();

    // The answer carries a completion handle (per-call layers put one on every call's answer):
    // the id stays in progress until the answer has ended, headers or not, ...
    let done = CompletionHandle::new();
    let mut answer = Response::new(String::new());
    answer.extensions_mut().insert(done.clone());
    reply.send_response(answer);
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
    refused(send("s-1")).await;
    done.complete(Outcome::Success);
    // ... and while the server still holds the request.
    refused(send("s-1")).await;
    drop(held);

    // Free again. An answer without a handle has ended when its headers arrive.
    let again = send("s-1");
    let (held, reply) = handle.next_request().await.unwrap();
    drop(held);
    reply.send_response(Response::new(String::new()));
    assert_eq!(again.await.unwrap().unwrap().status(), StatusCode::OK);

    // A caller that goes away before the answer: the id is in progress while the server
    // still works on the request (its tool runs on), and free once it lets go.
    let gone = send("s-1");
    let (held, _reply) = handle.next_request().await.unwrap();
    gone.abort();
    let _ = gone.await;
    refused(send("s-1")).await;
    drop(held);
    let last = send("s-1");
    let (_req, reply) = handle.next_request().await.unwrap();
    reply.send_response(Response::new(String::new()));
    assert_eq!(last.await.unwrap().unwrap().status(), StatusCode::OK);

    other_reply.send_response(Response::new(String::new()));
    s_reply.send_response(Response::new(String::new()));
    assert_eq!(other.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(stateless.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// With the check off, the inner service sees the reused id (and answers as it will).
#[tokio::test(start_paused = true)]
async fn the_in_progress_check_can_be_turned_off() {
    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (svc, mut handle) = setup(McpInspectLayer::new().max_in_flight_ids(0));
    let a = tokio::spawn(svc.clone().oneshot(session_post(CALL, "s-1")));
    let b = tokio::spawn(svc.clone().oneshot(session_post(CALL, "s-1")));
    for _ in 0..2 {
        let (_req, reply) = handle.next_request().await.unwrap();
        reply.send_response(Response::new(String::new()));
    }
    assert_eq!(a.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(b.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// RFC 9112 §3.2: `Host` repeated or invalid gets 400 here (the server's allowed-hosts check
/// reads the first `Host`), as does an HTTP/2 `Host` that is not `:authority`; an absolute-form
/// target's authority replaces `Host`, as it is the one that counts (§3.2.2); a transfer coding
/// other than `chunked` gets 501 (§6.1). No refused request reaches the server.
#[tokio::test(start_paused = true)]
async fn hosts_and_transfer_codings_the_server_would_misread_are_refused() {
    const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let with = |target: &str, headers: &[(&str, &str)]| {
        let mut req = Request::post(target)
            .header("content-type", "application/json")
            .body(PING.to_string())
            .unwrap();
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().append(name, v.parse().unwrap());
        }
        req
    };
    for (req, status) in [
        (
            with("/mcp", &[("host", "127.0.0.1"), ("host", "evil.example")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("/mcp", &[("host", "user@localhost")]),
            StatusCode::BAD_REQUEST,
        ),
        (with("/mcp", &[("host", "")]), StatusCode::BAD_REQUEST),
        // A port that is not one (rmcp would drop it and judge the name alone).
        (
            with("/mcp", &[("host", "127.0.0.1:abc")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("/mcp", &[("host", "localhost:99999")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            with("/mcp", &[("host", "localhost:80:80")]),
            StatusCode::BAD_REQUEST,
        ),
        (with("/mcp", &[("host", "::1")]), StatusCode::BAD_REQUEST),
        (with("/mcp", &[("host", "[::1")]), StatusCode::BAD_REQUEST),
        (with("/mcp", &[("host", "[::1]x")]), StatusCode::BAD_REQUEST),
        (with("/mcp", &[("host", "a]b")]), StatusCode::BAD_REQUEST),
        (
            {
                let mut r = with("https://evil.example/mcp", &[("host", "127.0.0.1")]);
                *r.version_mut() = http::Version::HTTP_2;
                r
            },
            StatusCode::BAD_REQUEST,
        ),
        (
            with("http://user@evil.example/mcp", &[]),
            StatusCode::BAD_REQUEST,
        ),
        (
            {
                // HTTP/2 without `Host`: `:authority` stands for it, under the same rules.
                let mut r = with("https://localhost:abc/mcp", &[]);
                *r.version_mut() = http::Version::HTTP_2;
                r
            },
            StatusCode::BAD_REQUEST,
        ),
        (
            with("/mcp", &[("transfer-encoding", "gzip, chunked")]),
            StatusCode::NOT_IMPLEMENTED,
        ),
    ] {
        let (svc, mut handle) = setup(McpInspectLayer::new());
        let target = req.uri().clone();
        // Bounded: a request let through would wait for the mock's answer for ever.
        let resp = tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req))
            .await
            .unwrap_or_else(|_| panic!("{target}: not refused"))
            .unwrap();
        assert_eq!(resp.status(), status);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], -32600);
        assert!(handle.next_request().await.is_none());
    }
    // One `Host` (an absolute-form target's authority in its place); plain `chunked`.
    for (req, host) in [
        (
            with("/mcp", &[("host", "127.0.0.1:8080")]),
            Some("127.0.0.1:8080"),
        ),
        (
            with("http://LocalHost:8080/mcp", &[("host", "localhost:8080")]),
            Some("localhost:8080"),
        ),
        (
            with("http://evil.example/mcp", &[("host", "127.0.0.1")]),
            Some("evil.example"),
        ),
        (with("http://[::1]:8080/mcp", &[]), Some("[::1]:8080")),
        (with("/mcp", &[("host", "[::1]")]), Some("[::1]")),
        (
            with("/mcp", &[("host", "localhost:65535")]),
            Some("localhost:65535"),
        ),
        (with("/mcp", &[("host", "localhost:")]), Some("localhost:")),
        (with("/mcp", &[("transfer-encoding", "chunked")]), None),
        (with("/mcp", &[]), None),
    ] {
        let (svc, mut handle) = setup(McpInspectLayer::new());
        let call = tokio::spawn(svc.oneshot(req));
        let (inner, reply) = handle.next_request().await.expect("passed inward");
        let seen = inner.headers().get("host").map(|h| h.to_str().unwrap());
        assert_eq!(seen, host);
        reply.send_response(Response::new(String::new()));
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}

/// Framing and media-type headers a proxy in front could read otherwise than the server: a
/// repeated `Content-Type` (RFC 9110 §8.3: a singleton) and `chunked` applied twice (RFC 9112
/// §6.1) get 400, a JSON body declared in a charset other than UTF-8 gets 415 (RFC 8259 §8.1).
/// None of them reaches the server; a UTF-8 charset, however spelt, does.
#[tokio::test(start_paused = true)]
async fn content_types_and_codings_a_proxy_could_read_otherwise_are_refused() {
    const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let with = |headers: &[(&str, &str)]| {
        let mut req = Request::post("/mcp").body(PING.to_string()).unwrap();
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().append(name, v.parse().unwrap());
        }
        req
    };
    const JSON: (&str, &str) = ("content-type", "application/json");
    for (req, status) in [
        (
            with(&[JSON, ("content-type", "text/plain")]),
            StatusCode::BAD_REQUEST,
        ),
        (with(&[JSON, JSON]), StatusCode::BAD_REQUEST),
        (
            with(&[JSON, ("transfer-encoding", "chunked, chunked")]),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(&[
                JSON,
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "Chunked"),
            ]),
            StatusCode::BAD_REQUEST,
        ),
        (
            with(&[("content-type", "application/json; charset=latin1")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            with(&[("content-type", "Application/JSON;charset=\"utf-16\"")]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            with(&[(
                "content-type",
                "application/json; charset=utf-8; charset=latin1",
            )]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let (svc, mut handle) = setup(McpInspectLayer::new());
        // Bounded: a request let through would wait for the mock's answer forever.
        let resp = tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req))
            .await
            .expect("answered here, not passed inward")
            .unwrap();
        assert_eq!(resp.status(), status);
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], -32600);
        assert!(handle.next_request().await.is_none());
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
        "application/json; profile=x",
        "application/json; charset=UTF8",
        "application/json; charset=us-ascii",
    ] {
        let (svc, mut handle) = setup(McpInspectLayer::new());
        let call = tokio::spawn(svc.oneshot(with(&[
            ("content-type", ct),
            ("transfer-encoding", "chunked"),
        ])));
        let (inner, reply) = handle.next_request().await.expect("passed inward");
        assert!(inner.extensions().get::<McpRequest>().is_some(), "{ct}");
        reply.send_response(Response::new(String::new()));
        assert_eq!(call.await.unwrap().unwrap().status(), StatusCode::OK);
    }
}
