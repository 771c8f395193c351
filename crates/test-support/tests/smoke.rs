//! The demo server answers both protocol revisions through the raw client.

use std::{future::Future, time::Duration};

use serde_json::json;
use tower_armor_test_support::{
    DEMO_TOOLS, RawClient, Revision, ScriptedUpstream, ServerOptions, SseStream, Step, TestServer,
    spawn_demo,
};

const BOUND: Duration = Duration::from_secs(5);

async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, work)
        .await
        .expect("test step took longer than its bound")
}

async fn demo() -> TestServer {
    spawn_demo(ServerOptions::default()).await
}

async fn client(server: &TestServer, revision: Revision) -> RawClient {
    bounded(RawClient::connect(server.url(), revision))
        .await
        .unwrap_or_else(|error| panic!("{revision}: connect failed: {error}"))
}

#[tokio::test]
async fn handshake_depends_on_the_revision() {
    let server = demo().await;
    let legacy = client(&server, Revision::V2025_11_25).await;
    assert!(legacy.session_id().is_some(), "2025-11-25 gets a session");
    let stateless = client(&server, Revision::V2026_07_28).await;
    assert!(
        stateless.session_id().is_none(),
        "2026-07-28 has no session"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tools_list_has_the_demo_tools() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.list_tools()).await.expect("tools/list");
        assert_eq!(reply.status, 200, "{revision}");
        let mut names = reply.tool_names();
        names.sort();
        let mut expected: Vec<String> = DEMO_TOOLS.iter().map(|name| (*name).to_owned()).collect();
        expected.sort();
        assert_eq!(names, expected, "{revision}: {reply:?}");
    }
}

#[tokio::test]
async fn add_answers_the_sum() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.call_tool("add", json!({ "a": 2, "b": 3 })))
            .await
            .expect("add");
        assert_eq!(reply.status, 200, "{revision}");
        assert_eq!(reply.tool_text(), Some("5"), "{revision}: {reply:?}");
        assert!(!reply.is_tool_error(), "{revision}");
    }
}

#[tokio::test]
async fn progress_notifications_come_before_the_result() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.call_tool_with_progress(
            "progress",
            json!({ "steps": 2, "interval_ms": 50 }),
            json!("tok-1"),
        ))
        .await
        .expect("progress");
        assert_eq!(reply.status, 200, "{revision}");
        assert!(reply.is_sse(), "{revision}: progress needs a stream");
        let messages = reply.messages();
        let first_progress = messages
            .iter()
            .position(|m| m["method"] == "notifications/progress")
            .unwrap_or_else(|| panic!("{revision}: no progress in {messages:?}"));
        let result = messages
            .iter()
            .position(|m| m.get("result").is_some())
            .expect("a result");
        assert!(first_progress < result, "{revision}");
        assert_eq!(
            reply.progress().len(),
            3,
            "{revision}: one at once, one per step"
        );
        assert_eq!(reply.progress()[0]["params"]["progressToken"], "tok-1");
        assert_eq!(reply.tool_text(), Some("done after 2 steps"), "{revision}");
    }
}

#[tokio::test]
async fn progress_without_token_just_answers() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.call_tool("progress", json!({ "steps": 2, "interval_ms": 10 })))
            .await
            .expect("progress");
        assert!(reply.progress().is_empty(), "{revision}");
        assert_eq!(reply.tool_text(), Some("done after 2 steps"), "{revision}");
    }
}

#[tokio::test]
async fn crash_is_an_internal_error() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.call_tool("crash", json!({})))
            .await
            .expect("crash");
        assert_eq!(reply.status, 200, "{revision}");
        assert_eq!(reply.error_code(), Some(-32603), "{revision}: {reply:?}");

        let reply = bounded(client.call_tool("unstable", json!({ "fail": true })))
            .await
            .expect("unstable");
        assert_eq!(reply.error_code(), Some(-32603), "{revision}");
        let reply = bounded(client.call_tool("unstable", json!({ "fail": false })))
            .await
            .expect("unstable");
        assert_eq!(reply.tool_text(), Some("ok"), "{revision}");
    }
}

#[tokio::test]
async fn fail_is_a_tool_error() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.call_tool("fail", json!({ "message": "nope" })))
            .await
            .expect("fail");
        assert_eq!(reply.status, 200, "{revision}");
        assert!(reply.is_tool_error(), "{revision}: {reply:?}");
        assert_eq!(reply.tool_text(), Some("nope"), "{revision}");
        assert!(reply.error().is_none(), "{revision}");
    }
}

#[tokio::test]
async fn echo_and_slow_answer() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let reply = bounded(client.call_tool("echo", json!({ "text": "héllo" })))
            .await
            .expect("echo");
        assert_eq!(reply.tool_text(), Some("héllo"), "{revision}");
        let reply = bounded(client.call_tool("slow", json!({ "ms": 30 })))
            .await
            .expect("slow");
        let elapsed: u64 = reply.tool_text().expect("text").parse().expect("a number");
        assert!(elapsed >= 30, "{revision}: {elapsed}");
    }
}

/// Under 2025-11-25 the headers and a priming event come at once; under 2026-07-28 rmcp
/// waits for the handler's first message (here: the result of a 400 ms call).
#[tokio::test]
async fn headers_timing_follows_the_revision() {
    let server = demo().await;
    for revision in Revision::ALL {
        let client = client(&server, revision).await;
        let started = tokio::time::Instant::now();
        let response = bounded(client.open_call_stream_with_id(
            client.next_id(),
            "slow",
            json!({ "ms": 400 }),
            None,
        ))
        .await
        .expect("open");
        let headers_after = started.elapsed();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = SseStream::new(response);
        let first = bounded(stream.next_event()).await.expect("an event");
        match revision {
            Revision::V2025_11_25 => {
                assert!(
                    headers_after < Duration::from_millis(300),
                    "{headers_after:?}"
                );
                assert!(first.is_priming(), "{first:?}");
            }
            Revision::V2026_07_28 => {
                assert!(
                    headers_after >= Duration::from_millis(350),
                    "{headers_after:?}"
                );
                assert!(first.json().is_some(), "{first:?}");
            }
        }
        let result = bounded(stream.next_message()).await;
        if revision == Revision::V2025_11_25 {
            assert!(result.is_some_and(|m| m.get("result").is_some()));
        }
    }
}

/// A 2026-07-28 call whose tool sends progress first gets its headers with that first
/// notification, long before the result.
#[tokio::test]
async fn stateless_headers_leave_with_the_first_progress() {
    let server = demo().await;
    let client = client(&server, Revision::V2026_07_28).await;
    let started = tokio::time::Instant::now();
    let response = bounded(client.open_call_stream_with_id(
        client.next_id(),
        "progress",
        json!({ "steps": 1, "interval_ms": 400 }),
        Some(json!("early")),
    ))
    .await
    .expect("open");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let mut stream = SseStream::new(response);
    let first = bounded(stream.next_message()).await.expect("a message");
    assert_eq!(first["method"], "notifications/progress");
    let mut last = first;
    while let Some(message) = bounded(stream.next_message()).await {
        last = message;
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(last["result"]["content"][0]["text"], "done after 1 steps");
}

/// What rmcp 3.11 checks on a 2026-07-28 POST, and that it ignores session ids there.
#[tokio::test]
async fn stateless_wire_rules() {
    let server = demo().await;
    let client = client(&server, Revision::V2026_07_28).await;

    // Without the mirrored Mcp-Method header: 400 + -32020.
    let body = client.body(Some(90), "tools/list", json!({}));
    let builder = client
        .http()
        .post(client.url())
        .headers(client.base_headers())
        .body(body.to_string());
    let reply = bounded(client.exchange(builder, Some(json!(90))))
        .await
        .expect("send");
    assert_eq!(
        (reply.status.as_u16(), reply.error_code()),
        (400, Some(-32020))
    );

    // Without the per-request _meta: 400 + -32602.
    let body = json!({ "jsonrpc": "2.0", "id": 91, "method": "tools/list", "params": {} });
    let reply = bounded(client.exchange(client.post_json(&body), Some(json!(91))))
        .await
        .expect("send");
    assert_eq!(
        (reply.status.as_u16(), reply.error_code()),
        (400, Some(-32602))
    );

    // Unknown method: 404 + -32601; GET: 405.
    let reply = bounded(client.call("foo/bar", json!({})))
        .await
        .expect("send");
    assert_eq!(
        (reply.status.as_u16(), reply.error_code()),
        (404, Some(-32601))
    );
    let get = bounded(client.open_get_stream()).await.expect("get");
    assert_eq!(get.status(), 405);

    // A session id on a 2026-07-28 request is ignored.
    let with_session = RawClient::new(server.url(), Revision::V2026_07_28)
        .with_header("mcp-session-id", "no-such-session");
    let reply = bounded(with_session.call_tool("add", json!({ "a": 1, "b": 1 })))
        .await
        .expect("send");
    assert_eq!(reply.tool_text(), Some("2"));
}

/// Closing a 2026-07-28 stream cancels the call; a 2025-11-25 call is cancelled by
/// `notifications/cancelled`, not by closing its stream.
#[tokio::test]
async fn cancellation_reaches_the_slow_tool() {
    let opts = ServerOptions::default();
    let stats = opts.stats.clone();
    let server = spawn_demo(opts).await;

    // 2026-07-28: drop the stream once the progress notification shows the handler runs.
    let stateless = client(&server, Revision::V2026_07_28).await;
    // rmcp holds 2026-07-28 headers until the first message: this task waits while the
    // handler sleeps, and aborting it drops the request.
    let waiter = tokio::spawn(async move {
        let _ = stateless
            .open_call_stream("slow", json!({ "ms": 3000 }))
            .await;
    });
    assert!(stats.wait_until(BOUND, |s| s.slow_started() == 1).await);
    waiter.abort();
    assert!(
        stats.wait_until(BOUND, |s| s.slow_cancelled() == 1).await,
        "dropping a 2026-07-28 request cancels it: {stats:?}"
    );
    assert!(stats.wait_until(BOUND, |s| s.in_flight() == 0).await);

    // 2025-11-25: closing the stream does not cancel; notifications/cancelled does.
    let legacy = client(&server, Revision::V2025_11_25).await;
    let id = legacy.next_id();
    let response =
        bounded(legacy.open_call_stream_with_id(id, "slow", json!({ "ms": 3000 }), None))
            .await
            .expect("open");
    assert!(stats.wait_until(BOUND, |s| s.slow_started() == 2).await);
    drop(response);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stats.slow_cancelled(),
        1,
        "closing a 2025-11-25 stream is not cancellation"
    );
    assert_eq!(stats.in_flight(), 1);
    let reply = bounded(legacy.cancel(id, "test")).await.expect("cancel");
    assert_eq!(reply.status, 202);
    assert!(
        stats.wait_until(BOUND, |s| s.slow_cancelled() == 2).await,
        "notifications/cancelled cancels: {stats:?}"
    );
    assert!(stats.wait_until(BOUND, |s| s.in_flight() == 0).await);
    assert_eq!(stats.slow_finished(), 0);
}

#[tokio::test]
async fn discover_and_healthz() {
    let server = demo().await;
    let client = client(&server, Revision::V2026_07_28).await;
    let reply = bounded(client.discover()).await.expect("discover");
    assert_eq!(reply.status, 200);
    let versions = &reply.result().expect("result")["supportedVersions"];
    assert!(
        versions
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v == "2026-07-28")),
        "{reply:?}"
    );
    let ping = bounded(client.ping()).await.expect("ping");
    assert_eq!(ping.status, 404, "no ping in 2026-07-28");
    assert_eq!(ping.error_code(), Some(-32601));

    let health = bounded(reqwest::get(server.url_for("/healthz")))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn scripted_upstream_follows_its_script() {
    let upstream = ScriptedUpstream::with_steps([
        Step::tool_text("first"),
        Step::sse_messages(
            Duration::from_millis(20),
            &[
                json!({ "jsonrpc": "2.0", "method": "notifications/progress",
                        "params": { "progressToken": 1, "progress": 0 } }),
                json!({ "jsonrpc": "2.0", "id": "$request_id",
                        "result": { "content": [{ "type": "text", "text": "second" }] } }),
            ],
        ),
        Step::Status(http::StatusCode::SERVICE_UNAVAILABLE),
    ]);
    let server = upstream.spawn().await;
    let client = RawClient::new(server.url(), Revision::V2026_07_28);

    let reply = bounded(client.call_tool("x", json!({})))
        .await
        .expect("first");
    assert_eq!(reply.tool_text(), Some("first"));
    let reply = bounded(client.call_tool("x", json!({})))
        .await
        .expect("second");
    assert!(reply.is_sse());
    assert_eq!(reply.progress().len(), 1);
    assert_eq!(reply.tool_text(), Some("second"));
    let reply = bounded(client.call_tool("x", json!({})))
        .await
        .expect("third");
    assert_eq!(reply.status, 503);
    let reply = bounded(client.call_tool("x", json!({})))
        .await
        .expect("fourth");
    assert_eq!(reply.status, 500, "empty script answers 500");

    assert_eq!(upstream.request_count(), 4);
    let bodies = upstream.bodies();
    assert_eq!(bodies[0]["method"], "tools/call");
    assert_eq!(upstream.requests()[0].header("mcp-name"), Some("x"));
}
