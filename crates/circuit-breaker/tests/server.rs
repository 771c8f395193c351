//! The breaker in front of a real rmcp server (the demo tools) over real HTTP on loopback,
//! under both protocol revisions: inspect → rescue → breaker (keyed per tool) → rmcp.
//! Real time, short bounded durations.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::StatusCode;
use serde_json::{Value, json};
use tower::ServiceBuilder;
use tower_armor_circuit_breaker::{
    Builder, CircuitBreakerHandle, CircuitBreakerLayer, KeyBy, OpenDuration, State,
};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{KnownTools, RescueLayer};
use tower_armor_test_support::upstream::{ScriptedUpstream, Step};
use tower_armor_test_support::{
    CallReply, DEMO_TOOLS, DemoStats, RawClient, Revision, ServerOptions, SseStream, TestServer,
    demo_service, serve,
};

const OPEN: Duration = Duration::from_millis(300);
const LEASE: Duration = Duration::from_millis(600);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 10 s"))
}

/// Waits (bounded, 3 s) until `f` holds.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 3 s");
}

fn breaker(key_by: Option<KeyBy>) -> CircuitBreakerLayer {
    let mut b = Builder::new()
        .count_window(4)
        .min_calls(2)
        .failure_rate(0.5)
        .open_duration(OpenDuration::Fixed(OPEN))
        .probe_lease(LEASE);
    if let Some(k) = key_by {
        b = b.key_by(k);
    }
    b.build().unwrap()
}

fn per_tool() -> KeyBy {
    KeyBy::Tool(KnownTools::from_names(DEMO_TOOLS))
}

async fn demo_stack(layer: &CircuitBreakerLayer) -> (TestServer, Arc<DemoStats>) {
    let opts = ServerOptions::default();
    let stats = opts.stats.clone();
    let svc = ServiceBuilder::new()
        .layer(McpInspectLayer::new())
        .layer(RescueLayer::new())
        .layer(layer.clone())
        .service(demo_service(&opts));
    (serve(Router::new().nest_service("/mcp", svc)).await, stats)
}

async fn tool(c: &RawClient, name: &str, args: Value) -> CallReply {
    bounded(name, c.call_tool(name, args)).await.unwrap()
}

fn state(h: &CircuitBreakerHandle, key: &str) -> State {
    h.circuit(key).unwrap().state()
}

/// A fast 503 from the breaker: `Retry-After`, local code, the request's id.
fn assert_rejected(reply: &CallReply, key: &str) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some(-31503), "{reply:?}");
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    // The key is for logs and the handle: keyed by upstream it would be an internal address.
    let msg = reply.error().unwrap()["message"].as_str().unwrap();
    assert_eq!(msg, "circuit open", "{key}");
    assert!(reply.final_message.as_ref().unwrap()["id"].is_number());
}

/// No names configured: the keys come from the server's own `tools/list` answer (JSON under
/// 2026-07-28, SSE under 2025-11-25), learned by `LearnToolsLayer` inside the inspector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_learned_from_the_servers_tools_list() {
    for rev in Revision::ALL {
        let known = KnownTools::default();
        let layer = breaker(Some(KeyBy::Tool(known.clone())));
        let h = layer.handle();
        let svc = ServiceBuilder::new()
            .layer(McpInspectLayer::new())
            .layer(known.learn_layer())
            .layer(RescueLayer::new())
            .layer(layer.clone())
            .service(demo_service(&ServerOptions::default()));
        let server = serve(Router::new().nest_service("/mcp", svc)).await;
        let c = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap();
        // Before the catalogue is seen, `crash` shares the unknown key.
        tool(&c, "crash", json!({})).await;
        assert!(h.circuit("crash").is_none(), "{rev}");
        assert!(h.circuit("unknown").is_some(), "{rev}");
        let listed = bounded("tools/list", c.call("tools/list", json!({})))
            .await
            .unwrap();
        assert!(listed.error().is_none(), "{rev}: {listed:?}");
        for name in DEMO_TOOLS {
            assert!(known.contains(name), "{rev}: {name} not learned");
        }
        for _ in 0..2 {
            tool(&c, "crash", json!({})).await;
        }
        assert_eq!(state(&h, "crash"), State::Open, "{rev}");
        assert_rejected(&tool(&c, "crash", json!({})).await, "crash");
        // A name the server does not have still mints no key.
        tool(&c, "made-up", json!({})).await;
        assert!(h.circuit("made-up").is_none(), "{rev}");
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_opens_its_own_key_while_add_keeps_working() {
    for rev in Revision::ALL {
        let layer = breaker(Some(per_tool()));
        let h = layer.handle();
        let (server, _) = demo_stack(&layer).await;
        let c = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap();
        for _ in 0..2 {
            let r = tool(&c, "crash", json!({})).await;
            assert_eq!(r.error_code(), Some(-32603), "{rev}: {r:?}");
        }
        assert_eq!(state(&h, "crash"), State::Open, "{rev}");
        let started = tokio::time::Instant::now();
        let r = tool(&c, "crash", json!({})).await;
        assert_rejected(&r, "crash");
        assert!(started.elapsed() < Duration::from_secs(1), "{rev}: fast");
        let r = tool(&c, "add", json!({"a": 2, "b": 3})).await;
        assert_eq!(r.tool_text(), Some("5"), "{rev}: {r:?}");
        assert_eq!(state(&h, "add"), State::Closed);
        // The break-glass switch, per key, through the handle.
        h.circuit("add").unwrap().force_open();
        assert_rejected(&tool(&c, "add", json!({"a": 1, "b": 1})).await, "add");
        h.circuit("add").unwrap().reset();
        assert_eq!(
            tool(&c, "add", json!({"a": 1, "b": 1})).await.tool_text(),
            Some("2")
        );
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstable_trips_and_closes_after_the_open_duration_with_one_good_probe() {
    for rev in Revision::ALL {
        let layer = breaker(Some(per_tool()));
        let h = layer.handle();
        let (server, _) = demo_stack(&layer).await;
        let c = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap();
        for _ in 0..2 {
            let r = tool(&c, "unstable", json!({"fail": true})).await;
            assert_eq!(r.error_code(), Some(-32603));
        }
        assert_rejected(
            &tool(&c, "unstable", json!({"fail": false})).await,
            "unstable",
        );
        tokio::time::sleep(OPEN).await;
        let r = tool(&c, "unstable", json!({"fail": false})).await;
        assert_eq!(r.tool_text(), Some("ok"), "{rev}: the probe passes: {r:?}");
        assert_eq!(state(&h, "unstable"), State::Closed, "{rev}");
        // The window starts empty: one failure is not enough any more.
        tool(&c, "unstable", json!({"fail": true})).await;
        assert_eq!(state(&h, "unstable"), State::Closed, "{rev}");
        server.shutdown().await;
    }
}

/// Opens the (unkeyed) circuit with two `crash` calls and waits out the open duration.
async fn open_and_wait(c: &RawClient, h: &CircuitBreakerHandle) {
    for _ in 0..2 {
        tool(c, "crash", json!({})).await;
    }
    assert_eq!(h.circuits()[0].state(), State::Open);
    tokio::time::sleep(OPEN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_open_close_free_their_probe_slot_and_are_settled_by_the_lease() {
    for rev in Revision::ALL {
        let layer = breaker(None);
        let h = layer.handle();
        let (server, stats) = demo_stack(&layer).await;
        let c = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap();
        let st = || h.circuits()[0].state();

        // A failure inside an SSE answer opens it.
        let r = tool(&c, "crash", json!({})).await;
        assert!(r.is_sse(), "{rev}: crash answers in SSE: {r:?}");
        tool(&c, "crash", json!({})).await;
        assert_eq!(st(), State::Open, "{rev}");
        tokio::time::sleep(OPEN).await;

        // The probe is a streamed success: progress first, the result later. The circuit
        // stays half-open until the stream's final message passes.
        let resp = bounded(
            "progress probe",
            c.open_call_stream_with_id(
                1_000,
                "progress",
                json!({"steps": 3, "interval_ms": 100}),
                Some(json!("p1")),
            ),
        )
        .await
        .unwrap();
        let mut stream = SseStream::new(resp);
        let first = bounded("first message", stream.next_message())
            .await
            .unwrap();
        assert_eq!(first["method"], "notifications/progress", "{rev}");
        assert_eq!(st(), State::HalfOpen, "{rev}");
        assert_rejected(&tool(&c, "add", json!({"a": 1, "b": 2})).await, "");
        while let Some(m) = bounded("rest of the stream", stream.next_message()).await {
            if m.get("result").is_some() {
                break;
            }
        }
        eventually("streamed success closes it", || st() == State::Closed).await;

        // A dropped probe stream frees its slot at once.
        open_and_wait(&c, &h).await;
        let resp = bounded(
            "probe to drop",
            c.open_call_stream_with_id(
                1_001,
                "progress",
                json!({"steps": 20, "interval_ms": 100}),
                Some(json!("p2")),
            ),
        )
        .await
        .unwrap();
        let mut stream = SseStream::new(resp);
        bounded("first message", stream.next_message())
            .await
            .unwrap();
        assert_eq!(st(), State::HalfOpen);
        drop(stream);
        let mut passed = None;
        for _ in 0..100 {
            let r = tool(&c, "add", json!({"a": 2, "b": 2})).await;
            if r.status == StatusCode::OK {
                passed = Some(r);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = passed.expect("the freed slot lets a probe through");
        assert_eq!(r.tool_text(), Some("4"), "{rev}");
        assert_eq!(st(), State::Closed, "{rev}");

        // A probe that hangs silently (neither answers nor goes away) is settled as failed by
        // its lease. Under 2026-07-28 rmcp sends no headers before the first message: the
        // probe hangs before its headers; under 2025-11-25 inside its stream.
        // (Connect first: under 2025-11-25 `initialize` is a call, and would be the probe.)
        let hung_client = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap()
            .with_timeout(Duration::from_secs(15));
        open_and_wait(&c, &h).await;
        let slow_before = stats.slow_started();
        let hung = tokio::spawn(async move {
            let resp = hung_client
                .open_call_stream_with_id(2_000, "slow", json!({"ms": 4_000}), None)
                .await;
            if let Ok(resp) = resp {
                let mut s = SseStream::new(resp);
                while s.next_event().await.is_some() {}
            }
        });
        let slow_stats = stats.clone();
        eventually("the slow probe started", move || {
            slow_stats.slow_started() > slow_before
        })
        .await;
        assert_eq!(st(), State::HalfOpen, "{rev}");
        tokio::time::sleep(LEASE).await;
        assert_eq!(
            st(),
            State::Open,
            "{rev}: the lease settled the silent probe"
        );
        let r = tool(&c, "add", json!({"a": 1, "b": 1})).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{rev}");
        tokio::time::sleep(OPEN).await;
        let r = tool(&c, "add", json!({"a": 3, "b": 3})).await;
        assert_eq!(r.tool_text(), Some("6"), "{rev}");
        assert_eq!(st(), State::Closed, "{rev}");
        hung.abort();
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_progress_in_a_scripted_stream_counts_at_its_end() {
    let upstream = ScriptedUpstream::new();
    let progress = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}});
    let fail = json!({"jsonrpc":"2.0","id":"$request_id","error":{"code":-32603,"message":"late failure"}});
    for _ in 0..2 {
        upstream.push(Step::sse_messages(
            Duration::from_millis(100),
            &[progress.clone(), progress.clone(), fail.clone()],
        ));
    }
    let layer = breaker(Some(per_tool()));
    let h = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(McpInspectLayer::new())
        .layer(RescueLayer::new())
        .layer(layer.clone())
        .service(upstream.router());
    let server = serve(Router::new().nest_service("/mcp", svc)).await;
    let c = RawClient::new(server.url(), Revision::V2025_11_25);
    let resp = bounded(
        "open",
        c.open_call_stream_with_id(1, "slow", json!({"ms": 1}), None),
    )
    .await
    .unwrap();
    let mut s = SseStream::new(resp);
    bounded("progress", s.next_message()).await.unwrap();
    bounded("progress", s.next_message()).await.unwrap();
    assert_eq!(
        h.circuit("slow").unwrap().counts().calls,
        0,
        "not before the end"
    );
    let last = bounded("final", s.next_message()).await.unwrap();
    assert_eq!(last["error"]["code"], -32603);
    eventually("counted", || {
        h.circuit("slow").unwrap().counts().failures == 1
    })
    .await;
    tool(&c, "slow", json!({"ms": 1})).await;
    assert_eq!(state(&h, "slow"), State::Open);
    let r = tool(&c, "slow", json!({"ms": 1})).await;
    assert_rejected(&r, "slow");
    assert_eq!(upstream.request_count(), 2, "the rejected call never left");
    server.shutdown().await;
}
