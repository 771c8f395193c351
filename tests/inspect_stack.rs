//! `McpInspectLayer` and the outcome observer in front of a real rmcp server (and a scripted
//! upstream) over real HTTP on loopback, under both protocol revisions.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{Service, ServiceBuilder};
use tower_armor_mcp::classify::RetryClass;
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::observe::ObservedBody;
use tower_armor_mcp::{CallRequest, CallResponse, Classifier, Outcome, RequestId};
use tower_armor_test_support::upstream::{ScriptedUpstream, Step, jsonrpc_error};
use tower_armor_test_support::{
    RawClient, Revision, ServerOptions, SseStream, demo_service, serve,
};

use support::bounded;

#[derive(Clone, Debug)]
struct Seen {
    id: Option<RequestId>,
    has_session: bool,
    outcome: Outcome,
    progress: u64,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn has(&self, id: i64) -> bool {
        self.all()
            .iter()
            .any(|s| s.id == Some(RequestId::Number(id)))
    }

    /// Waits (bounded) until a call with `id` has an outcome.
    async fn wait_for(&self, id: i64) -> Seen {
        let want = RequestId::Number(id);
        for _ in 0..400 {
            if let Some(s) = self
                .all()
                .into_iter()
                .find(|s| s.id.as_ref() == Some(&want))
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no outcome for id {id}; seen {:?}", self.all());
    }
}

/// A test layer that observes every call through the shared traits and logs its outcome.
#[derive(Clone)]
struct Observe<S> {
    inner: S,
    log: Log,
}

impl<S, B, RB> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ObservedBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = CallRequest::id(&req).cloned();
        let has_session = req.has_session();
        let is_call = req.mcp().is_some_and(|m| m.is_call());
        let fut = self.inner.call(req);
        let log = self.log.clone();
        Box::pin(async move {
            let resp = fut.await?;
            let (resp, completion) = resp.observe(id.as_ref());
            if is_call {
                let handle = resp
                    .extensions()
                    .get::<tower_armor_mcp::CompletionHandle>()
                    .cloned();
                completion.on_complete(move |o| {
                    let progress = handle.map_or(0, |h| h.progress_count());
                    log.0.lock().unwrap().push(Seen {
                        id,
                        has_session,
                        outcome: *o,
                        progress,
                    });
                });
            }
            Ok(resp)
        })
    }
}

fn stack<S>(inner: S, log: &Log) -> Router
where
    S: Service<
            Request<tower_armor_mcp::McpBody>,
            Response = Response<axum::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let log = log.clone();
    let svc = ServiceBuilder::new()
        .layer(McpInspectLayer::new().max_body_bytes(64 << 10))
        .layer_fn(move |inner| Observe {
            inner,
            log: log.clone(),
        })
        .service(inner);
    Router::new().nest_service("/mcp", svc)
}

async fn rmcp_stack(log: &Log) -> tower_armor_test_support::TestServer {
    let rmcp = demo_service(&ServerOptions::default());
    let rmcp = tower::util::MapResponseLayer::new(|r: Response<_>| r.map(axum::body::Body::new))
        .layer(rmcp);
    serve(stack(rmcp, log)).await
}

use tower::Layer;

async fn post_raw(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = bounded(10, req.body(body).send()).await.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_before_the_server() {
    let log = Log::default();
    let server = rmcp_stack(&log).await;
    let url = server.url();

    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(70 << 10)
    );
    let (s, v) = post_raw(&url, &[], big.into_bytes()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(v["error"]["code"], -31413);

    type Case = (Vec<(&'static str, &'static str)>, Vec<u8>, StatusCode, i64);
    let cases: Vec<Case> = vec![
        (
            vec![],
            b"{\"jsonrpc\":\"2.0\",\"id\":1,".to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            vec![],
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xc3\x28\",\"method\":\"ping\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            vec![],
            format!("{}{}", "[".repeat(500), "]".repeat(500)).into_bytes(),
            StatusCode::BAD_REQUEST,
            -32700,
        ),
        (
            vec![],
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            vec![],
            format!(
                r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
                "i".repeat(1000)
            )
            .into_bytes(),
            StatusCode::BAD_REQUEST,
            -32600,
        ),
        (
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
            ],
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?@@@@?="),
            ],
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32020,
        ),
        (
            vec![("mcp-protocol-version", "1999-12-31")],
            br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            -32022,
        ),
    ];
    for (headers, body, status, code) in cases {
        let (s, v) = post_raw(&url, &headers, body).await;
        assert_eq!(
            (s, v["error"]["code"].as_i64()),
            (status, Some(code)),
            "{v}"
        );
    }
    assert!(
        log.all().is_empty(),
        "nothing reached the server: {:?}",
        log.all()
    );

    // The server still works afterwards.
    let c = RawClient::connect(url, Revision::V2025_11_25)
        .await
        .unwrap();
    assert_eq!(
        c.call_tool("add", json!({"a": 2, "b": 3}))
            .await
            .unwrap()
            .tool_text(),
        Some("5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_of_real_calls_under_both_revisions() {
    for rev in Revision::ALL {
        let log = Log::default();
        let server = rmcp_stack(&log).await;
        let c = RawClient::connect(server.url(), rev).await.unwrap();

        let id = c.next_id();
        let r = c
            .call_with_id(
                id,
                "tools/call",
                json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
            )
            .await
            .unwrap();
        assert_eq!(r.tool_text(), Some("3"));
        assert_eq!(log.wait_for(id).await.outcome, Outcome::Success, "{rev}");

        let id = c.next_id();
        c.call_with_id(id, "tools/call", json!({"name": "crash", "arguments": {}}))
            .await
            .unwrap();
        assert_eq!(
            log.wait_for(id).await.outcome,
            Outcome::RpcError(-32603),
            "{rev}"
        );

        let id = c.next_id();
        c.call_with_id(
            id,
            "tools/call",
            json!({"name": "fail", "arguments": {"message": "no"}}),
        )
        .await
        .unwrap();
        assert_eq!(log.wait_for(id).await.outcome, Outcome::ToolError, "{rev}");

        let id = c.next_id();
        c.call_with_id(id, "tools/call", json!({"name": "nope", "arguments": {}}))
            .await
            .unwrap();
        assert_eq!(
            log.wait_for(id).await.outcome,
            Outcome::RpcError(-32602),
            "{rev}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_completes_at_its_final_message_not_at_its_headers() {
    for rev in Revision::ALL {
        let log = Log::default();
        let server = rmcp_stack(&log).await;
        let c = RawClient::connect(server.url(), rev).await.unwrap();
        let id = c.next_id();
        let resp = c
            .open_call_stream_with_id(
                id,
                "progress",
                json!({"steps": 3, "interval_ms": 80}),
                Some(json!("tok")),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // Headers are here (at once for 2025-11-25, with the first progress for 2026-07-28),
        // but the call is not over.
        assert!(!log.has(id), "{rev}: completed at headers");
        let mut stream = SseStream::new(resp);
        let mut progress = 0;
        while let Some(m) = bounded(10, stream.next_message()).await {
            if m["method"] == "notifications/progress" {
                progress += 1;
                // The last progress and the result leave back to back; the first is well before.
                if progress == 1 {
                    assert!(
                        !log.has(id),
                        "{rev}: completed at the first progress notification"
                    );
                }
            }
            if m.get("result").is_some() {
                break;
            }
        }
        assert!(progress >= 1);
        let seen = log.wait_for(id).await;
        assert_eq!(seen.outcome, Outcome::Success, "{rev}");
        assert!(seen.progress >= 1, "{rev}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_midway_is_cancelled() {
    for rev in Revision::ALL {
        let log = Log::default();
        let server = rmcp_stack(&log).await;
        let c = RawClient::connect(server.url(), rev).await.unwrap();
        let id = c.next_id();
        let resp = c
            .open_call_stream_with_id(
                id,
                "progress",
                json!({"steps": 10, "interval_ms": 100}),
                Some(json!(1)),
            )
            .await
            .unwrap();
        let mut stream = SseStream::new(resp);
        loop {
            let m = bounded(10, stream.next_message())
                .await
                .expect("a progress notification");
            if m["method"] == "notifications/progress" {
                break;
            }
        }
        drop(stream);
        assert_eq!(log.wait_for(id).await.outcome, Outcome::Cancelled, "{rev}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_a_404_that_means_reinitialize() {
    let log = Log::default();
    let server = rmcp_stack(&log).await;
    let mut c = RawClient::connect(server.url(), Revision::V2025_11_25)
        .await
        .unwrap();
    c.set_session_id(Some("expired-or-unknown".into()));
    let id = c.next_id();
    let r = c.call_with_id(id, "tools/list", json!({})).await.unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let seen = log.wait_for(id).await;
    assert_eq!(seen.outcome, Outcome::Status(StatusCode::NOT_FOUND));
    assert!(seen.has_session);
    let verdict = Classifier::default().classify(&seen.outcome, seen.has_session);
    assert_eq!(verdict.retry, RetryClass::Reinitialize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_internal_error_after_progress_is_a_failure() {
    let log = Log::default();
    let upstream = ScriptedUpstream::new();
    let progress = json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}});
    upstream.push(Step::sse_messages(
        Duration::from_millis(30),
        &[
            progress.clone(),
            progress,
            jsonrpc_error(json!("$request_id"), -32603, "boom"),
        ],
    ));
    let server = serve(stack(upstream.router(), &log)).await;
    let c = RawClient::new(server.url(), Revision::V2025_11_25);
    let id = c.next_id();
    let r = c
        .call_with_id(id, "tools/call", json!({"name": "x", "arguments": {}}))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some(-32603));
    let seen = log.wait_for(id).await;
    assert_eq!(seen.outcome, Outcome::RpcError(-32603));
    assert_eq!(seen.progress, 2);
    let v = Classifier::default().classify(&seen.outcome, false);
    assert_eq!(v.breaker, tower_armor_mcp::classify::BreakerClass::Failure);
}
