//! The client stack of `examples/orchestrator.rs` (correlation inject → breaker per upstream →
//! bulkhead per upstream → timeout → bearer inject → hyper) against two real example servers
//! with bearer auth on 127.0.0.1: calls reach both with the token, the case id and a child
//! trace; one upstream going away opens its breaker only, after which its calls fail fast.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use tower::ServiceExt;
use tower_armor_circuit_breaker::State;
use tower_armor_correlation_id::TraceContext;
use tower_armor_mcp::error::CircuitOpen;
use tower_armor_mcp::{CorrelationId, McpBody};

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/orchestrator.rs"]
mod orchestrator;

use orchestrator::{ClientSettings, call_tool, client_stack, start_upstream};

/// The authority (`host:port`) of an upstream's URL: its breaker key.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").trim_end_matches("/mcp")
}

/// Bounds a step, so that a regression fails instead of hanging.
async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("step finished in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_stack_calls_upstreams_and_isolates_the_one_that_fails() {
    const TOKEN: &str = "orchestrator-test-token";
    let (a, _stop_a, _served_a) = start_upstream(TOKEN).await;
    let (b, stop_b, served_b) = start_upstream(TOKEN).await;
    let settings = ClientSettings::new(TOKEN);
    assert!(
        !format!("{settings:?}").contains(TOKEN),
        "settings print without the token"
    );
    let (client, breakers) = client_stack(&settings).unwrap();

    // The token, the case id and a child of the case's trace reach the upstream: it serves the
    // call (its bearer auth passed) and echoes the case id.
    let case = CorrelationId::parse("case-42").unwrap();
    let trace = TraceContext::new_root();
    let body = Bytes::from_static(
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#,
    );
    let mut req = Request::post(&a)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "add")
        .body(McpBody::from(body))
        .unwrap();
    req.extensions_mut().insert(case.clone());
    req.extensions_mut().insert(trace.clone());
    let resp = bounded(client.clone().oneshot(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-request-id"], "case-42");

    for (i, url) in [&a, &b, &a, &b].into_iter().enumerate() {
        let id = i64::try_from(i).unwrap() + 10;
        let result = bounded(call_tool(
            &client,
            url,
            id,
            "add",
            serde_json::json!({"a": id, "b": 1}),
        ))
        .await
        .unwrap();
        assert_eq!(result["content"][0]["text"], (id + 1).to_string());
    }

    // B goes away: its calls fail (connection refused) until its breaker opens, then fail fast
    // with `CircuitOpen` for its authority; A's circuit and calls are untouched.
    stop_b.cancel();
    bounded(served_b).await.unwrap();
    let add_one = async |url: &str, id: i64| {
        bounded(call_tool(
            &client,
            url,
            id,
            "add",
            serde_json::json!({"a": 1, "b": 1}),
        ))
        .await
    };
    let b_key = authority(&b);
    for n in 0..settings.trip_after {
        let err = add_one(&b, 100).await.unwrap_err();
        assert!(
            err.downcast_ref::<CircuitOpen>().is_none(),
            "call {n}: {err}"
        );
    }
    let circuit = breakers
        .circuit(b_key)
        .expect("a circuit for B's authority");
    assert_eq!(circuit.state(), State::Open);
    for _ in 0..3 {
        let err = add_one(&b, 101).await.unwrap_err();
        let open = err
            .downcast_ref::<CircuitOpen>()
            .unwrap_or_else(|| panic!("fails fast once open: {err}"));
        assert_eq!(open.key.as_deref(), Some(b_key));
        assert!(open.retry_after > Duration::ZERO);

        let result = add_one(&a, 102).await.unwrap();
        assert_eq!(result["content"][0]["text"], "2");
    }
    assert_eq!(
        breakers.circuit(authority(&a)).unwrap().state(),
        State::Closed
    );
}

/// A wrong token is the upstream's 401, which the breaker does not count: the caller's
/// mistake, not the upstream's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_not_an_upstream_failure() {
    let (a, _stop, _served) = start_upstream("the-right-token").await;
    let settings = ClientSettings::new("a-wrong-token");
    let (client, breakers) = client_stack(&settings).unwrap();
    for id in 0..settings.trip_after + 2 {
        let err = bounded(call_tool(
            &client,
            &a,
            i64::from(id),
            "add",
            serde_json::json!({"a": 1, "b": 1}),
        ))
        .await
        .unwrap_err();
        assert!(err.downcast_ref::<CircuitOpen>().is_none(), "{err}");
        assert!(err.to_string().contains("-31401"), "{err}");
    }
    assert_eq!(
        breakers.circuit(authority(&a)).unwrap().state(),
        State::Closed
    );
}

/// An upstream is not trusted with the orchestrator's memory: an answer longer than
/// `MAX_ANSWER_BYTES` is an error, not read to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_is_read_up_to_a_bound() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            (
                [(http::header::CONTENT_TYPE, "text/event-stream")],
                vec![b':'; orchestrator::MAX_ANSWER_BYTES + 1],
            )
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (client, _) = client_stack(&ClientSettings::new("a-token")).unwrap();
    let err = bounded(call_tool(&client, &url, 1, "add", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the answer"), "{err}");
    server.abort();
}

/// Settings the layers refuse are an error of `client_stack`, not a panic.
#[test]
fn refused_settings_are_an_error() {
    let mut settings = ClientSettings::new("a-token");
    settings.max_concurrent = 0;
    let Err(err) = client_stack(&settings) else {
        panic!("max_concurrent 0 accepted");
    };
    assert!(err.contains("max_concurrent"), "{err}");
}

/// A fake upstream on 127.0.0.1 answering every POST with `answer`; its URL.
async fn fake_upstream<F, Fut>(answer: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = axum::response::Response> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/mcp", axum::routing::post(answer));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, server)
}

/// An answer of `status` and `content_type` whose body is `first`, then nothing more, ever
/// (the connection stays open).
fn hanging(
    status: u16,
    content_type: &'static str,
    first: &'static str,
) -> axum::response::Response {
    let frames =
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) })
            .chain(futures_util::stream::pending());
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(axum::body::Body::from_stream(frames))
        .unwrap()
}

/// Settings with a short deadline and a breaker that opens after two failures.
fn short_settings() -> ClientSettings {
    let mut settings = ClientSettings::new("a-token");
    settings.call_timeout = Duration::from_millis(500);
    settings.trip_after = 2;
    settings
}

/// An upstream that keeps its SSE answer open after the call's response: the call returns with
/// the response, without waiting for the stream's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_answer_is_read_up_to_the_calls_response() {
    let (url, server) = fake_upstream(|| async {
        hanging(
            200,
            "text/event-stream",
            "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n\n",
        )
    })
    .await;
    let (client, _) = client_stack(&ClientSettings::new("a-token")).unwrap();
    let started = tokio::time::Instant::now();
    let result = bounded(call_tool(&client, &url, 7, "add", serde_json::json!({})))
        .await
        .unwrap();
    assert_eq!(result, serde_json::json!({"content": []}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    server.abort();
}

/// An error status, or an answer neither JSON nor SSE, is an error of the call whatever its
/// body says; and a body that stops coming ends at the call's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_no_mcp_answer_is_an_error_and_ends_at_the_deadline() {
    const RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
    let cases: [(u16, &'static str, &'static str, bool, &str); 6] = [
        // status, content type, body so far, body ends, error says
        (500, "application/json", RESULT, true, "HTTP 500"),
        (307, "application/json", RESULT, true, "HTTP 307"),
        (200, "text/plain", RESULT, true, "not an MCP answer"),
        (500, "text/plain", "partial", false, "request timed out"),
        (401, "text/plain", "partial", false, "request timed out"),
        (
            200,
            "application/octet-stream",
            "partial",
            false,
            "not an MCP answer",
        ),
    ];
    for (status, content_type, first, ends, says) in cases {
        let (url, server) = fake_upstream(move || async move {
            if ends {
                http::Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, content_type)
                    .body(axum::body::Body::from(first))
                    .unwrap()
            } else {
                hanging(status, content_type, first)
            }
        })
        .await;
        let (client, _) = client_stack(&short_settings()).unwrap();
        let started = tokio::time::Instant::now();
        let err = bounded(call_tool(&client, &url, 1, "add", serde_json::json!({})))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(says),
            "{status} {content_type}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{status} {content_type}: {:?}",
            started.elapsed()
        );
        server.abort();
    }
}

/// A JSON answer to another id is no answer to the call, for the caller and for the breaker
/// alike: the upstream's failures open its circuit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_answer_to_another_id_counts_as_a_failure() {
    let (url, server) = fake_upstream(|| async {
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(
                r#"{"jsonrpc":"2.0","id":999,"result":{"content":[]}}"#,
            ))
            .unwrap()
    })
    .await;
    let settings = short_settings();
    let (client, breakers) = client_stack(&settings).unwrap();
    for id in 0..settings.trip_after {
        let err = bounded(call_tool(
            &client,
            &url,
            i64::from(id),
            "add",
            serde_json::json!({}),
        ))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("without an answer"), "{err}");
    }
    assert_eq!(
        breakers.circuit(authority(&url)).unwrap().state(),
        State::Open
    );
    let err = bounded(call_tool(&client, &url, 9, "add", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<CircuitOpen>().is_some(), "{err}");
    server.abort();
}

/// A response with neither `result` nor `error` answers nothing: the call fails instead of
/// returning a null result. And a tool name of `Mcp-Name`'s encoded shape is refused before
/// anything is sent (a server would decode it into another name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_without_result_or_error_is_no_answer() {
    let (url, server) = fake_upstream(|| async {
        http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(r#"{"jsonrpc":"2.0","id":1}"#))
            .unwrap()
    })
    .await;
    let (client, _) = client_stack(&short_settings()).unwrap();
    let err = bounded(call_tool(&client, &url, 1, "add", serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("without an answer"), "{err}");
    let err = bounded(call_tool(
        &client,
        &url,
        2,
        "=?base64?YWRk?=",
        serde_json::json!({}),
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("base64"), "{err}");
    server.abort();
}
