//! The SSE layer in front of the real rmcp demo server on loopback (real time, short bounded
//! durations): keep-alive comments on an idle 2025-11-25 GET stream with rmcp's own keep-alive
//! off (and none without the layer, so the test can fail), the idle timeout and shutdown on that
//! stream, and the first progress notification arriving while the tool still runs, under both
//! revisions.

use std::time::Duration;

use axum::Router;
use serde_json::json;
use tokio::time::{Instant, timeout};
use tower::Layer;
use tower_armor_sse::SseLayer;
use tower_armor_test_support::{
    RawClient, Revision, ServerOptions, SseStream, TestServer, demo_service, serve,
};

/// The demo server with rmcp's keep-alive off, behind `layer` (or bare).
async fn spawn(layer: Option<&SseLayer>, opts: &ServerOptions) -> TestServer {
    let mcp = demo_service(opts);
    let router = match layer {
        Some(l) => Router::new().nest_service("/mcp", l.layer(mcp)),
        None => Router::new().nest_service("/mcp", mcp),
    };
    serve(router).await
}

fn no_rmcp_keep_alive() -> ServerOptions {
    ServerOptions {
        keep_alive: None,
        ..ServerOptions::default()
    }
}

/// Counts the comments read from `stream` during `window` (stops early at the end of the body).
async fn comments_within(stream: &mut SseStream, window: Duration) -> (usize, bool) {
    let deadline = Instant::now() + window;
    let mut comments = 0;
    loop {
        match tokio::time::timeout_at(deadline, stream.next_event()).await {
            Ok(Some(ev)) if ev.comment => comments += 1,
            Ok(Some(_)) => {}
            Ok(None) => return (comments, true),
            Err(_) => return (comments, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_reaches_an_idle_get_stream() {
    let opts = no_rmcp_keep_alive();
    let layer = SseLayer::builder()
        .keep_alive(Some(Duration::from_millis(150)))
        .build()
        .unwrap();
    let with = spawn(Some(&layer), &opts).await;
    let without = spawn(None, &opts).await;

    // Control: rmcp's keep-alive is really off, so nothing would arrive without the layer.
    let client = RawClient::connect(without.url(), Revision::V2025_11_25)
        .await
        .unwrap();
    let resp = client.open_get_stream().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = SseStream::new(resp);
    let (n, ended) = comments_within(&mut stream, Duration::from_millis(500)).await;
    assert_eq!((n, ended), (0, false), "no keep-alive without the layer");
    drop(stream);

    let client = RawClient::connect(with.url(), Revision::V2025_11_25)
        .await
        .unwrap();
    let resp = client.open_get_stream().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert!(resp.headers().get("content-length").is_none());
    let mut stream = SseStream::new(resp);
    let (n, ended) = comments_within(&mut stream, Duration::from_millis(700)).await;
    assert!(!ended);
    assert!(
        (3..=5).contains(&n),
        "about one comment per 150 ms, got {n}"
    );
    drop(stream);
    with.shutdown().await;
    without.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_get_streams_end_and_shutdown_ends_the_rest() {
    let opts = no_rmcp_keep_alive();
    let layer = SseLayer::builder()
        .keep_alive(Some(Duration::from_millis(100)))
        .idle_timeout(Some(Duration::from_millis(400)))
        .build()
        .unwrap();
    let handle = layer.shutdown_handle();
    let server = spawn(Some(&layer), &opts).await;
    let client = RawClient::connect(server.url(), Revision::V2025_11_25)
        .await
        .unwrap();

    // Idle: no data event for 400 ms ends the listen stream (keep-alives do not count).
    let started = Instant::now();
    let mut stream = SseStream::new(client.open_get_stream().await.unwrap());
    let (n, ended) = comments_within(&mut stream, Duration::from_secs(3)).await;
    assert!(ended, "the idle stream ended");
    assert!(stream.error().is_none(), "cleanly: {:?}", stream.error());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(380) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(n >= 2, "keep-alives meanwhile: {n}");

    // A call stream is never cut by the idle timeout: a 700 ms call with no progress finishes.
    let reply = client
        .call_tool("slow", json!({ "ms": 700 }))
        .await
        .unwrap();
    assert!(reply.result().is_some(), "{:?}", reply.final_message);
    assert!(
        reply.events.iter().any(|e| e.comment),
        "kept alive meanwhile"
    );

    // Shutdown: an open stream ends cleanly, at once.
    let mut stream = SseStream::new(client.open_get_stream().await.unwrap());
    let (_, ended) = comments_within(&mut stream, Duration::from_millis(150)).await;
    assert!(!ended);
    assert_eq!(handle.open_streams(), 1);
    let t = Instant::now();
    handle.shutdown();
    let end = timeout(Duration::from_secs(2), async {
        while let Some(ev) = stream.next_event().await {
            let _ = ev;
        }
    })
    .await;
    assert!(end.is_ok(), "stream ended after shutdown");
    assert!(stream.error().is_none(), "cleanly: {:?}", stream.error());
    assert!(t.elapsed() < Duration::from_millis(500));
    let closed = async {
        while handle.open_streams() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    assert!(timeout(Duration::from_secs(2), closed).await.is_ok());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_progress_arrives_while_the_tool_runs() {
    let opts = ServerOptions::default();
    let stats = opts.stats.clone();
    let layer = SseLayer::builder()
        .keep_alive(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    let server = spawn(Some(&layer), &opts).await;
    for rev in Revision::ALL {
        let client = RawClient::connect(server.url(), rev).await.unwrap();
        let id = client.next_id();
        let started = Instant::now();
        let resp = client
            .open_call_stream_with_id(
                id,
                "progress",
                json!({ "steps": 2, "interval_ms": 500 }),
                Some(json!("tok")),
            )
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-accel-buffering"], "no", "{rev}");
        let mut stream = SseStream::new(resp);
        let first = timeout(Duration::from_secs(3), async {
            loop {
                let msg = stream.next_message().await.expect("stream open");
                if msg["method"] == "notifications/progress" {
                    return msg;
                }
            }
        })
        .await
        .expect("a progress notification in time");
        let at = started.elapsed();
        assert_eq!(first["params"]["progress"].as_f64(), Some(0.0), "{rev}");
        assert!(
            at < Duration::from_millis(450),
            "{rev}: first progress after {at:?}"
        );
        assert_eq!(stats.in_flight(), 1, "{rev}: the tool is still running");
        let done = timeout(Duration::from_secs(5), async {
            loop {
                let msg = stream.next_message().await.expect("stream open");
                if msg.get("result").is_some() || msg.get("error").is_some() {
                    return msg;
                }
            }
        })
        .await
        .expect("the result in time");
        assert_eq!(done["id"], id, "{rev}");
        assert_eq!(
            done["result"]["content"][0]["text"], "done after 2 steps",
            "{rev}"
        );
        assert!(started.elapsed() >= Duration::from_millis(1000), "{rev}");
    }
    server.shutdown().await;
}

/// The first event a resumed call stream brings, after dropping the stream at its first
/// progress notification.
async fn first_event_after_resuming(layer: Option<&SseLayer>) -> (String, Option<String>) {
    let server = spawn(layer, &ServerOptions::default()).await;
    let client = timeout(
        Duration::from_secs(10),
        RawClient::connect(server.url(), Revision::V2025_11_25),
    )
    .await
    .expect("connect in time")
    .unwrap();
    let last_id = client.drop_call_at_first_progress(42).await;
    let resumed = client.open_get_stream_after(&last_id).await.unwrap();
    let mut stream = SseStream::new(resumed);
    let next = timeout(Duration::from_secs(10), stream.next_event_where(|_| true))
        .await
        .expect("an event in time")
        .expect("an event");
    drop(stream);
    server.shutdown().await;
    (last_id, next.id)
}

/// rmcp 3.11 replays the event named by `Last-Event-ID` when a call's stream is resumed (an
/// off-by-one): without the layer the client gets its last progress notification twice, with
/// it the resumed stream starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_call_stream_starts_after_the_event_the_client_had() {
    let (last, first) = first_event_after_resuming(None).await;
    assert_eq!(first.as_deref(), Some(&*last), "control: rmcp repeats it");
    let layer = SseLayer::builder().build().unwrap();
    let (last, first) = first_event_after_resuming(Some(&layer)).await;
    assert!(first.is_some_and(|id| id != last), "repeated {last}");
}
