//! LearnToolsLayer: tool names learned from `tools/list` answers (JSON and SSE, both revisions),
//! frames forwarded untouched one by one, bounded side buffer.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::tools::UNKNOWN_TOOL;
use tower_armor_mcp::{
    KnownTools, LearnTools, LearnToolsBody, LearnToolsLayer, McpBody, McpRequest, MessageKind,
    Method, ProtocolRevision, RequestId,
};
use tower_test::mock;

/// An answer body: fixed chunks (reporting its end with the last one, as `Full` does), or a
/// channel the test feeds while the answer is being read.
enum TestBody {
    Chunks(VecDeque<Result<Bytes, std::io::Error>>),
    Chan(mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>),
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let next = match self.get_mut() {
            TestBody::Chunks(q) => Poll::Ready(q.pop_front()),
            TestBody::Chan(rx) => rx.poll_recv(cx),
        };
        next.map(|o| o.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, TestBody::Chunks(q) if q.is_empty())
    }
}

type Answer = Response<LearnToolsBody<TestBody>>;

fn chunks(parts: &[&str]) -> TestBody {
    TestBody::Chunks(
        parts
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p.as_bytes())))
            .collect(),
    )
}

fn answer(status: u16, content_type: &str, body: TestBody) -> Response<TestBody> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(body)
        .unwrap()
}

fn facts(method: Method, id: i64) -> McpRequest {
    McpRequest::new(
        MessageKind::Request,
        Some(method),
        Some(RequestId::Number(id)),
    )
    .with_revision(ProtocolRevision::V2026_07_28)
}

/// Sends a request with these facts through `layer` to a mock answering `resp`.
async fn call(
    layer: &LearnToolsLayer,
    facts: Option<McpRequest>,
    resp: Response<TestBody>,
) -> Answer {
    let (svc, mut handle) = mock::pair::<Request<()>, Response<TestBody>>();
    let svc = layer.layer(svc);
    let mut req = Request::post("/mcp").body(()).unwrap();
    if let Some(f) = facts {
        req.extensions_mut().insert(f);
    }
    let call = tokio::spawn(svc.oneshot(req));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(resp);
    call.await.unwrap().unwrap()
}

/// Reads the answer to its end: the frames as they came, and whether it failed.
/// The answer to `tools/list` id `id`, of this content type, whose body is fed through the
/// returned sender.
async fn fed_answer(
    layer: &LearnToolsLayer,
    id: i64,
    content_type: &str,
) -> (mpsc::UnboundedSender<Result<Bytes, std::io::Error>>, Answer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let resp = call(
        layer,
        Some(facts(Method::ToolsList, id)),
        answer(200, content_type, TestBody::Chan(rx)),
    )
    .await;
    (tx, resp)
}

async fn frames(resp: Answer) -> (Vec<Bytes>, bool) {
    let mut body = std::pin::pin!(resp.into_body());
    let mut out = Vec::new();
    while let Some(f) = body.frame().await {
        match f {
            Ok(f) => out.push(f.into_data().unwrap()),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

fn list(id: i64, names: &[&str]) -> String {
    let tools: Vec<_> = names
        .iter()
        .map(|n| serde_json::json!({"name": n, "inputSchema": {"type": "object"}}))
        .collect();
    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}).to_string()
}

#[tokio::test(start_paused = true)]
async fn json_answer_is_learned_and_forwarded_unchanged() {
    let known = KnownTools::default();
    let layer = known.learn_layer();
    let msg = list(1, &["add", "echo"]);
    let (a, b) = msg.split_at(20);
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "application/json", chunks(&[a, b])),
    )
    .await;
    assert!(resp.body().is_learning());
    let (out, failed) = frames(resp).await;
    assert!(!failed);
    assert_eq!(out, [a, b], "frames pass one by one, unchanged");
    assert_eq!(
        known.names().iter().map(|n| &**n).collect::<Vec<_>>(),
        ["add", "echo"]
    );
    assert_eq!(&*known.key(Some("add")), "add");

    // The same through a channel: the end is seen as `None`, not from `is_end_stream`.
    let (tx, resp) = fed_answer(&layer, 2, "application/json; charset=utf-8").await;
    tx.send(Ok(Bytes::from(list(2, &["slow"])))).unwrap();
    drop(tx);
    frames(resp).await;
    assert!(known.contains("slow"));
}

/// Both revisions, through the inspector: a notification first, then the result.
#[tokio::test(start_paused = true)]
async fn sse_result_after_a_notification_is_learned_at_its_event_frames_one_by_one() {
    for rev in ["2025-11-25", "2026-07-28"] {
        let known = KnownTools::default();
        let (mock, mut handle) = mock::pair::<Request<McpBody>, Response<TestBody>>();
        let svc = McpInspectLayer::new().layer(known.learn_layer().layer(mock));
        let mut req = Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", rev);
        if rev == "2026-07-28" {
            req = req.header("mcp-method", "tools/list");
        } else {
            req = req.header("mcp-session-id", "s-1");
        }
        // Every 2026-07-28 request carries the protocol facts in `_meta` (the inspector checks).
        let params = if rev == "2026-07-28" {
            r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}"#
        } else {
            "{}"
        };
        let req = req
            .body(format!(
                r#"{{"jsonrpc":"2.0","id":"l-1","method":"tools/list","params":{params}}}"#
            ))
            .unwrap();
        let call = tokio::spawn(svc.oneshot(req));
        let (_, send) = handle.next_request().await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        send.send_response(answer(200, "text/event-stream", TestBody::Chan(rx)));
        let resp = call.await.unwrap().unwrap();
        let mut body = std::pin::pin!(resp.into_body());
        // A buffering or delaying body would leave the frame pending: paused time fails it.
        let mut next = async || {
            tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .expect("a frame that arrived is forwarded at once")
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()
        };
        let cache = if rev == "2026-07-28" {
            r#","ttlMs":60000,"cacheScope":"public""#
        } else {
            ""
        };
        let sent = [
            "id: 0\ndata:\n\n".to_string(),
            "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"x\"}}\n\n".to_string(),
            // A response to another id is not this list.
            format!("data: {}\n\n", list(99, &["other"])),
            "id: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"l-1\",\"result\":{\"tools\":[{\"name\":\"add\"},".to_string(),
            format!("{{\"name\":\"echo\"}}],\"nextCursor\":\"p2\"{cache}}}}}\r\n\r\n"),
            ": trailing comment\n\n".to_string(),
        ];
        // Two frames queued at once still come out as two.
        tx.send(Ok(Bytes::from(sent[0].clone()))).unwrap();
        tx.send(Ok(Bytes::from(sent[1].clone()))).unwrap();
        assert_eq!(next().await, sent[0]);
        assert_eq!(next().await, sent[1]);
        for (i, s) in sent.iter().enumerate().skip(2) {
            tx.send(Ok(Bytes::from(s.clone()))).unwrap();
            assert_eq!(next().await, *s, "{rev}: frame {i} unchanged");
            match i {
                2 | 3 => assert!(
                    known.is_empty(),
                    "{rev}: nothing learned before the event ends"
                ),
                // Learned as the event passes, while the stream is still open.
                _ => assert_eq!(known.len(), 2, "{rev}"),
            }
        }
        assert!(!known.contains("other"));
        drop(tx);
        assert!(body.frame().await.is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn other_requests_are_not_watched() {
    let known = KnownTools::default();
    let layer = known.learn_layer();
    let msg = list(1, &["add"]);
    for facts in [
        Some(facts(Method::ToolsCall, 1)),
        Some(facts(Method::PromptsList, 1)),
        // A notification (no id) or a client's response is not a list request.
        Some(McpRequest::new(
            MessageKind::Notification,
            Some(Method::ToolsList),
            None,
        )),
        Some(McpRequest::new(
            MessageKind::Response,
            None,
            Some(RequestId::Number(1)),
        )),
        // No facts at all: the inspector is missing.
        None,
    ] {
        let resp = call(
            &layer,
            facts,
            answer(200, "application/json", chunks(&[&msg])),
        )
        .await;
        assert!(!resp.body().is_learning());
        let (out, _) = frames(resp).await;
        assert_eq!(out, [msg.as_str()]);
    }
    assert!(known.is_empty());

    // A tools/list answer that is neither JSON nor SSE is not watched either.
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "text/plain", chunks(&[&msg])),
    )
    .await;
    assert!(!resp.body().is_learning());
    frames(resp).await;
    assert!(known.is_empty());
}

#[tokio::test(start_paused = true)]
async fn error_statuses_and_error_results_teach_nothing() {
    let known = KnownTools::default();
    let layer = known.learn_layer();
    let msg = list(1, &["add"]);
    for status in [400, 404, 500, 503] {
        for ct in ["application/json", "text/event-stream"] {
            let body = if ct == "application/json" {
                msg.clone()
            } else {
                format!("data: {msg}\n\n")
            };
            let resp = call(
                &layer,
                Some(facts(Method::ToolsList, 1)),
                answer(status, ct, chunks(&[&body])),
            )
            .await;
            assert_eq!(resp.status(), StatusCode::from_u16(status).unwrap());
            assert!(!resp.body().is_learning());
            frames(resp).await;
        }
    }
    let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"boom","data":{"tools":[{"name":"add"}]}}}"#;
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "application/json", chunks(&[err])),
    )
    .await;
    frames(resp).await;
    // In a stream, watching stops at the error: a later list-shaped message is not the answer.
    let sse = [format!("data: {err}\n\n"), format!("data: {msg}\n\n")];
    let (tx, resp) = fed_answer(&layer, 1, "text/event-stream").await;
    let mut body = std::pin::pin!(resp.into_body());
    tx.send(Ok(Bytes::from(sse[0].clone()))).unwrap();
    body.frame().await.unwrap().unwrap();
    assert!(!body.is_learning());
    tx.send(Ok(Bytes::from(sse[1].clone()))).unwrap();
    drop(tx);
    while body.frame().await.is_some() {}
    assert!(known.is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_oversized_answer_is_forwarded_but_not_learned() {
    let known = KnownTools::default();
    let layer = LearnToolsLayer::new(known.clone()).max_bytes(64);
    let names: Vec<String> = (0..10).map(|i| format!("tool-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let msg = list(1, &names);
    assert!(msg.len() > 64);
    let parts: Vec<&str> = vec![&msg[..30], &msg[30..60], &msg[60..]];

    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "application/json", chunks(&parts)),
    )
    .await;
    let mut body = std::pin::pin!(resp.into_body());
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        parts[0]
    );
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        parts[1]
    );
    assert!(body.is_learning(), "60 bytes are within the bound");
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        parts[2]
    );
    assert!(!body.is_learning(), "past the bound, watching stops");
    assert!(body.frame().await.is_none());

    // SSE: the oversized event is dropped from learning; the stream goes on unchanged. Earlier
    // events, each within the bound, do not add up.
    let note = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n";
    let sse: Vec<String> = vec![
        note.into(),
        note.into(),
        format!("data: {}", &msg[..40]),
        format!("{}\n\n", &msg[40..]),
        note.into(),
    ];
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(
            200,
            "text/event-stream",
            chunks(&sse.iter().map(String::as_str).collect::<Vec<_>>()),
        ),
    )
    .await;
    let (out, failed) = frames(resp).await;
    assert!(!failed);
    assert_eq!(out, sse);
    assert!(known.is_empty());

    // The bound covers the whole event being read: its data lines and its partial line together.
    let split = format!("data: {}\ndata: {}", "x".repeat(40), "y".repeat(30));
    let (tx, resp) = fed_answer(&layer, 1, "text/event-stream").await;
    let mut body = std::pin::pin!(resp.into_body());
    tx.send(Ok(Bytes::from(split.clone()))).unwrap();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        split
    );
    assert!(
        !body.is_learning(),
        "77 bytes held for one event: past the bound"
    );
    drop(tx);
    assert!(body.frame().await.is_none());

    // A small list through the same layer is learned.
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 2)),
        answer(
            200,
            "text/event-stream",
            chunks(&[
                note,
                note,
                "data: {\"id\":2,\"result\":{\"tools\":[{\"name\":\"a\"}]}}\n\n",
            ]),
        ),
    )
    .await;
    frames(resp).await;
    assert_eq!(known.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn failed_or_dropped_answers_teach_nothing() {
    let known = KnownTools::default();
    let layer = known.learn_layer();
    let msg = list(1, &["add"]);
    let (a, _) = msg.split_at(20);
    let body = TestBody::Chunks(VecDeque::from([
        Ok(Bytes::copy_from_slice(a.as_bytes())),
        Err(std::io::Error::other("reset")),
    ]));
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "application/json", body),
    )
    .await;
    let (out, failed) = frames(resp).await;
    assert!(failed);
    assert_eq!(out, [a]);

    let (tx, resp) = fed_answer(&layer, 1, "application/json").await;
    tx.send(Ok(Bytes::copy_from_slice(a.as_bytes()))).unwrap();
    let mut body = Box::pin(resp.into_body());
    body.frame().await.unwrap().unwrap();
    drop(body);
    drop(tx);

    // An SSE stream that ends inside the result event: the partial event is not a list.
    let cut = format!("data: {msg}\n");
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "text/event-stream", chunks(&[&cut])),
    )
    .await;
    frames(resp).await;
    assert!(known.is_empty());
}

#[tokio::test(start_paused = true)]
async fn pages_add_up_within_capacity_and_long_names_are_ignored() {
    let known = KnownTools::new(3);
    let layer = known.learn_layer();
    let long = "x".repeat(KnownTools::MAX_NAME_LEN + 1);
    let page1 = serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name": long}],"nextCursor":"2"}}).to_string();
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 1)),
        answer(200, "application/json", chunks(&[&page1])),
    )
    .await;
    frames(resp).await;
    assert_eq!(known.len(), 1);
    assert!(!known.contains(&long));
    assert!(
        !known.contains(&long[..KnownTools::MAX_NAME_LEN]),
        "not truncated either"
    );

    let page2 = list(2, &["b", "c", "d", "e"]);
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 2)),
        answer(200, "application/json", chunks(&[&page2])),
    )
    .await;
    frames(resp).await;
    assert_eq!(
        known.names().iter().map(|n| &**n).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(
        &*known.key(Some("d")),
        UNKNOWN_TOOL,
        "beyond capacity: the unknown key"
    );

    // Learning the same catalogue again changes nothing.
    let resp = call(
        &layer,
        Some(facts(Method::ToolsList, 3)),
        answer(200, "application/json", chunks(&[&list(3, &["a", "b"])])),
    )
    .await;
    frames(resp).await;
    assert_eq!(known.len(), 3);
}

#[test]
fn the_layer_and_service_constructors_share_the_set() {
    let known = KnownTools::default();
    let layer = known.learn_layer();
    known.learn(["a"]);
    assert!(layer.known_tools().contains("a"));
    let svc = LearnTools::new(
        tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }),
        known.clone(),
    );
    let _ = svc.get_ref();
    assert!(format!("{layer:?}").contains("max_bytes"));
}
