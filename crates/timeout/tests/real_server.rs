//! The timeout layer in front of the real rmcp demo server, over real HTTP on loopback, under
//! both protocol revisions: `McpInspectLayer` → `RescueLayer` → `TimeoutLayer` → rmcp.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tower::ServiceBuilder;
use tower_armor_mcp::RescueLayer;
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_test_support::{
    DemoStats, RawClient, Revision, ServerOptions, SseStream, TestServer, demo_service, serve,
};
use tower_armor_timeout::TimeoutLayer;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn stack(layer: TimeoutLayer) -> (TestServer, Arc<DemoStats>) {
    let opts = ServerOptions::default();
    let stats = Arc::clone(&opts.stats);
    let svc = ServiceBuilder::new()
        .layer(McpInspectLayer::new())
        .layer(RescueLayer::new())
        .layer(layer)
        .service(demo_service(&opts));
    (serve(Router::new().nest_service("/mcp", svc)).await, stats)
}

async fn client(server: &TestServer, rev: Revision) -> RawClient {
    timeout(
        Duration::from_secs(5),
        RawClient::connect(server.url(), rev),
    )
    .await
    .expect("connect in time")
    .expect("connect")
    .with_timeout(Duration::from_secs(5))
}

fn assert_timeout_error(message: &Value, id: i64) {
    assert_eq!(message["id"], id, "{message}");
    assert_eq!(message["error"]["code"], -31504, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_without_headers_gets_504_under_2026() {
    let (server, stats) = stack(TimeoutLayer::builder(ms(300)).build().unwrap()).await;
    let c = client(&server, Revision::V2026_07_28).await;
    let id = c.next_id();
    let start = Instant::now();
    let reply = c
        .call_with_id(
            id,
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": 1500}}),
        )
        .await
        .unwrap();
    let took = start.elapsed();
    // rmcp sends 2026-07-28 headers only with the first message: none came before the deadline.
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{reply:?}");
    assert_timeout_error(reply.final_message.as_ref().expect("a JSON-RPC error"), id);
    assert!(
        took >= ms(290) && took < ms(1200),
        "answered after {took:?}"
    );
    assert!(
        stats.wait_until(ms(3000), |s| s.slow_started() == 1).await,
        "the call reached the tool"
    );
    assert_eq!(
        stats.slow_finished(),
        0,
        "the answer came from the deadline, not the tool"
    );
    // Dropping the call under 2026-07-28 is its cancellation: the tool stops early.
    assert!(
        stats
            .wait_until(ms(1000), |s| s.slow_cancelled() == 1)
            .await,
        "slow_cancelled = {}, slow_finished = {}",
        stats.slow_cancelled(),
        stats.slow_finished()
    );
    assert!(
        start.elapsed() < ms(1500),
        "cancelled before the tool would have finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_in_a_2025_stream_ends_with_the_timeout_event_and_is_cancelled() {
    let (server, stats) = stack(TimeoutLayer::builder(ms(300)).build().unwrap()).await;
    let c = client(&server, Revision::V2025_11_25).await;
    let id = c.next_id();
    let start = Instant::now();
    let resp = c
        .open_call_stream_with_id(id, "slow", json!({"ms": 1500}), None)
        .await
        .unwrap();
    let headers_after = start.elapsed();
    // rmcp sends 2025-11-25 SSE headers at once: the deadline passes inside the stream.
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(headers_after < ms(300), "headers after {headers_after:?}");

    let mut stream = SseStream::new(resp);
    let mut events = Vec::new();
    let last = timeout(Duration::from_secs(3), async {
        while let Some(ev) = stream.next_event().await {
            if let Some(m) = ev.json() {
                return m;
            }
            events.push(ev);
        }
        panic!("the stream ended without a message; saw {events:?}");
    })
    .await
    .expect("the timeout event in time");
    let took = start.elapsed();
    assert_timeout_error(&last, id);
    assert!(
        took >= ms(290) && took < ms(1200),
        "timed out after {took:?}"
    );
    let end = timeout(Duration::from_secs(3), stream.next_event())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "nothing after the final event: {end:?}");

    // The server saw `notifications/cancelled`: the tool stopped early.
    assert!(
        stats
            .wait_until(ms(1000), |s| s.slow_cancelled() == 1)
            .await,
        "slow_cancelled = {}, slow_finished = {}",
        stats.slow_cancelled(),
        stats.slow_finished()
    );
    assert_eq!(stats.slow_finished(), 0);
    assert!(
        start.elapsed() < ms(1500),
        "cancelled before the tool would have finished"
    );

    // A client that missed the final event (its connection broke at the deadline) and resumes
    // the stream after the last event it saw gets the replay, then the same timeout error.
    let seen = events
        .iter()
        .rev()
        .find_map(|ev| ev.id.clone())
        .expect("the stream's events carry ids");
    let resumed = c.open_get_stream_after(&seen).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let mut stream = SseStream::new(resumed);
    let last = timeout(Duration::from_secs(3), async {
        while let Some(ev) = stream.next_event().await {
            if let Some(m) = ev.json().filter(|m| m["id"] == id) {
                return m;
            }
        }
        panic!("the resumption ended without a final message for the call");
    })
    .await
    .expect("the resumption ends in time");
    assert_timeout_error(&last, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_resets_the_deadline_up_to_the_cap() {
    let layer = TimeoutLayer::builder(ms(300))
        .reset_on_progress(true)
        .max_total(ms(1200))
        .build()
        .unwrap();
    let (server, stats) = stack(layer).await;
    for rev in Revision::ALL {
        let c = client(&server, rev).await;

        // 4 steps of 200 ms: 800 ms in all, past the 300 ms deadline, inside the cap.
        let reply = c
            .call_tool_with_progress(
                "progress",
                json!({"steps": 4, "interval_ms": 200}),
                json!("p"),
            )
            .await
            .unwrap();
        assert_eq!(
            reply.tool_text(),
            Some("done after 4 steps"),
            "{rev}: {reply:?}"
        );
        assert_eq!(reply.progress().len(), 5, "{rev}");

        // 10 steps of 200 ms: 2 s, past the 1.2 s cap.
        let id = c.next_id();
        let start = Instant::now();
        let reply = c
            .call_with_id(
                id,
                "tools/call",
                json!({"name": "progress", "arguments": {"steps": 10, "interval_ms": 200},
                       "_meta": {"progressToken": "q"}}),
            )
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{rev}: in-stream, after progress"
        );
        assert!(reply.is_sse());
        assert_timeout_error(reply.final_message.as_ref().expect("the timeout event"), id);
        assert!(reply.progress().len() >= 5, "{rev}: progress passed first");
        assert!(
            took >= ms(1150) && took < ms(1900),
            "{rev}: ended after {took:?}"
        );
        // Closed stream (2026-07-28) or notifications/cancelled (2025-11-25): the handler
        // stops long before its 2 s.
        assert!(
            stats.wait_until(ms(500), |s| s.in_flight() == 0).await,
            "{rev}: the progress handler still runs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reset_progress_does_not_keep_a_call_alive() {
    let (server, _stats) = stack(TimeoutLayer::builder(ms(300)).build().unwrap()).await;
    let c = client(&server, Revision::V2026_07_28).await;
    let id = c.next_id();
    let start = Instant::now();
    let reply = c
        .call_with_id(
            id,
            "tools/call",
            json!({"name": "progress", "arguments": {"steps": 4, "interval_ms": 200},
                   "_meta": {"progressToken": "p"}}),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_timeout_error(reply.final_message.as_ref().expect("the timeout event"), id);
    assert!(
        start.elapsed() < ms(700),
        "ended after {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_calls_pass_untouched_under_both_revisions() {
    let (server, _stats) = stack(TimeoutLayer::builder(ms(2000)).build().unwrap()).await;
    for rev in Revision::ALL {
        let c = client(&server, rev).await;
        let reply = c.call_tool("add", json!({"a": 2, "b": 3})).await.unwrap();
        assert_eq!(reply.tool_text(), Some("5"), "{rev}");
        let timeouts = reply
            .messages()
            .iter()
            .filter(|m| m["error"]["code"] == -31504)
            .count();
        assert_eq!(timeouts, 0, "{rev}");
    }
}

/// With a resume grace, a 2025-11-25 caller that drops its answer and resumes the stream
/// (`GET` + `Last-Event-ID`) in time gets the result: the call was not cancelled. One that does
/// not resume is cancelled once the grace passes. Without a grace (the default) a dropped call
/// is cancelled at once (see the tests above and the example stack's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_resumed_within_the_grace_is_not_cancelled() {
    let layer = TimeoutLayer::builder(ms(5000))
        .resume_grace(ms(1000))
        .build()
        .unwrap();
    let (server, stats) = stack(layer).await;
    let c = client(&server, Revision::V2025_11_25).await;

    // Dropped, then resumed: the result arrives on the resumed stream.
    let id = c.next_id();
    let last_id = c.drop_call_at_first_progress(id).await;
    tokio::time::sleep(ms(200)).await;
    let resumed = c.open_get_stream_after(&last_id).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let mut stream = SseStream::new(resumed);
    let result = timeout(
        Duration::from_secs(3),
        stream.next_event_where(|m| m["id"] == id),
    )
    .await
    .unwrap()
    .and_then(|ev| ev.json())
    .expect("the resumed result");
    assert!(result["result"].is_object(), "{result}");

    // Dropped and not resumed: cancelled once the grace passes, not before.
    let start = Instant::now();
    let resp = c
        .open_call_stream_with_id(c.next_id(), "slow", json!({"ms": 4000}), None)
        .await
        .unwrap();
    let mut stream = SseStream::new(resp);
    let _priming = timeout(Duration::from_secs(3), stream.next_event())
        .await
        .unwrap();
    drop(stream);
    tokio::time::sleep(ms(500)).await;
    assert_eq!(stats.slow_cancelled(), 0, "held during the grace");
    assert!(
        stats
            .wait_until(ms(2000), |s| s.slow_cancelled() == 1)
            .await,
        "cancelled after the grace"
    );
    assert!(
        start.elapsed() < ms(4000),
        "before the tool would have ended"
    );

    // A grace over a minute is refused.
    assert!(
        TimeoutLayer::builder(ms(5000))
            .resume_grace(Duration::from_secs(61))
            .build()
            .is_err()
    );
}

/// A dropped call waiting to be resumed, and a resumed one, run under the call's own clock:
/// dropping and resuming never restarts the deadline, and a deadline that passes during the
/// grace cancels the call then, not when the grace ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_call_keeps_its_deadline() {
    let layer = TimeoutLayer::builder(ms(1500))
        .resume_grace(ms(5000))
        .build()
        .unwrap();
    let (server, stats) = stack(layer).await;
    let c = client(&server, Revision::V2025_11_25).await;

    // Resumed before the deadline: the timeout error comes at the call's deadline.
    let id = c.next_id();
    let start = Instant::now();
    let resp = c
        .open_call_stream_with_id(id, "slow", json!({"ms": 5000}), None)
        .await
        .unwrap();
    let mut stream = SseStream::new(resp);
    let first = timeout(Duration::from_secs(3), stream.next_event())
        .await
        .unwrap()
        .expect("rmcp's first event");
    let last_id = first.id.expect("rmcp numbers its events");
    drop(stream);
    tokio::time::sleep(ms(500)).await;
    let mut stream = SseStream::new(c.open_get_stream_after(&last_id).await.unwrap());
    let message = timeout(Duration::from_secs(5), stream.next_message())
        .await
        .unwrap()
        .expect("the timeout error");
    assert_timeout_error(&message, id);
    let took = start.elapsed();
    assert!(
        took >= ms(1400) && took < ms(1900),
        "at the call's deadline: {took:?}"
    );
    assert!(
        stats
            .wait_until(ms(1000), |s| s.slow_cancelled() == 1)
            .await
    );

    // Not resumed, the deadline passing within the grace: cancelled at the deadline.
    let start = Instant::now();
    let resp = c
        .open_call_stream_with_id(c.next_id(), "slow", json!({"ms": 5000}), None)
        .await
        .unwrap();
    let mut stream = SseStream::new(resp);
    let _first = timeout(Duration::from_secs(3), stream.next_event())
        .await
        .unwrap();
    drop(stream);
    assert!(
        stats
            .wait_until(ms(3000), |s| s.slow_cancelled() == 2)
            .await
    );
    let took = start.elapsed();
    assert!(
        took < ms(2500),
        "at the deadline, not the grace's end: {took:?}"
    );
}

/// A 2025-11-25 client ends its session (`DELETE`) while a call of it runs. rmcp alone would
/// end the call's stream at once but let the tool run on for up to 5 s, past the permit the
/// stream held and past its deadline; the layer cancels the call first, so the tool stops
/// before the `DELETE` is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_mid_call_stops_the_tool_first() {
    let layer = TimeoutLayer::builder(ms(10_000)).build().unwrap();
    let (_server, stats, c, resp) = a_slow_call_running(layer).await;
    let mut stream = SseStream::new(resp);
    delete_stops_the_tool(&c, &stats).await;
    assert_eq!(stats.in_flight(), 0);
    // The call's stream ends without a result.
    let end = timeout(Duration::from_secs(5), stream.next_message())
        .await
        .expect("the stream ends");
    assert!(end.is_none(), "no result after the session ended: {end:?}");
}

/// The same for a call held for resumption (its client dropped the stream, within a resume
/// grace): the `DELETE` takes it out of the held table, and its cancellation goes first too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_while_a_call_is_held_stops_the_tool_first() {
    let layer = TimeoutLayer::builder(ms(10_000))
        .resume_grace(ms(8_000))
        .build()
        .unwrap();
    let (_server, stats, c, resp) = a_slow_call_running(layer).await;
    drop(resp);
    // Held: its client went away, the tool runs on for the grace.
    tokio::time::sleep(ms(200)).await;
    assert_eq!(stats.slow_cancelled(), 0, "held, not cancelled");
    delete_stops_the_tool(&c, &stats).await;
}

/// A 2025-11-25 session's `slow` call (4 s) running behind `layer`: the server, its tool
/// counters, the client and the call's answer.
async fn a_slow_call_running(
    layer: TimeoutLayer,
) -> (TestServer, Arc<DemoStats>, RawClient, reqwest::Response) {
    let (server, stats) = stack(layer).await;
    let c = client(&server, Revision::V2025_11_25).await;
    let resp = c
        .open_call_stream("slow", json!({"ms": 4000}))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        stats.wait_until(ms(3000), |s| s.slow_started() == 1).await,
        "the tool runs"
    );
    (server, stats, c, resp)
}

/// The client's `DELETE` of its session is accepted, and the tool of its call stops within a
/// second (rmcp alone lets it run 5 s more).
async fn delete_stops_the_tool(c: &RawClient, stats: &DemoStats) {
    let start = Instant::now();
    assert_eq!(c.delete_session().await.unwrap(), StatusCode::ACCEPTED);
    assert!(
        stats
            .wait_until(ms(1000), |s| s.slow_cancelled() == 1)
            .await,
        "the tool stopped within a second of the DELETE (rmcp alone: 5 s)"
    );
    assert!(start.elapsed() < ms(1500), "{:?}", start.elapsed());
}
