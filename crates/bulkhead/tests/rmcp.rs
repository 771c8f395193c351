//! The bulkhead in front of a real rmcp server over real HTTP on loopback, under both protocol
//! revisions, behind `RescueLayer` (real time, short bounded durations).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_armor_bulkhead::{BulkheadLayer, BulkheadStats};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{KnownTools, McpBody, Principal, RescueLayer};
use tower_armor_test_support::{
    DEMO_TOOLS, RawClient, Revision, ServerOptions, SseEvent, SseStream, TestServer, demo_service,
    serve,
};
use tower_armor_timeout::TimeoutLayer;

const PRINCIPAL_HEADER: &str = "x-test-principal";

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Polls `cond` every 5 ms for up to 3 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Inspector → (test principal from a header) → rescue → bulkhead → rmcp demo server.
async fn spawn(layer: BulkheadLayer, opts: ServerOptions) -> TestServer {
    spawn_with(layer, None, opts).await
}

/// [`spawn`] with a timeout layer between the bulkhead and rmcp.
async fn spawn_with(
    layer: BulkheadLayer,
    timeout: Option<TimeoutLayer>,
    opts: ServerOptions,
) -> TestServer {
    type Inner = tower::util::BoxCloneSyncService<
        Request<McpBody>,
        Response<axum::body::Body>,
        tower_armor_mcp::BoxError,
    >;
    let rmcp = demo_service(&opts);
    let rmcp: Inner = match timeout {
        None => Inner::new(
            ServiceBuilder::new()
                .map_response(|r: Response<_>| r.map(axum::body::Body::new))
                .map_err(tower_armor_mcp::BoxError::from)
                .service(rmcp),
        ),
        Some(timeout) => Inner::new(
            ServiceBuilder::new()
                .map_response(|r: Response<_>| r.map(axum::body::Body::new))
                .layer(timeout)
                .service(rmcp),
        ),
    };
    let svc = ServiceBuilder::new()
        .layer(McpInspectLayer::new())
        .map_request(|mut req: Request<McpBody>| {
            // Stands in for bearer-auth: the principal comes from a test header.
            if let Some(p) = req
                .headers()
                .get(PRINCIPAL_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(Principal::new)
            {
                req.extensions_mut().insert(p);
            }
            req
        })
        .layer(RescueLayer::new())
        .layer(layer)
        .service(rmcp);
    serve(Router::new().nest_service("/mcp", svc)).await
}

/// Reads events until one satisfies `pred`; returns it.
async fn read_until(stream: &mut SseStream, what: &str, pred: impl Fn(&Value) -> bool) -> SseEvent {
    bounded(what, stream.next_event_where(pred))
        .await
        .unwrap_or_else(|| panic!("stream ended before {what}"))
}

fn is_progress(m: &Value) -> bool {
    m["method"] == "notifications/progress"
}

fn is_result_for(id: i64) -> impl Fn(&Value) -> bool {
    move |m: &Value| m["id"] == id && m.get("result").is_some()
}

async fn idle(stats: &BulkheadStats) {
    let s = stats.clone();
    eventually("no call holds a permit", move || s.running() == 0).await;
}

async fn assert_refused(client: &RawClient) {
    let reply = bounded(
        "refused add",
        client.call_tool("add", json!({"a": 1, "b": 2})),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some(-31509), "{reply:?}");
}

async fn assert_adds(client: &RawClient) {
    let reply = bounded("add", client.call_tool("add", json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.tool_text(), Some("3"), "{reply:?}");
}

/// max_concurrent 1, max_queue 0: a second call during the first streamed call is refused with
/// 503 + -31509 until the first call's answer has ended, not when its headers left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_call_holds_its_permit_until_its_answer_ends() {
    for rev in Revision::ALL {
        let layer = BulkheadLayer::new(1).max_queue(0);
        let stats = layer.stats();
        let server = spawn(layer, ServerOptions::default()).await;
        let client = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap();
        idle(&stats).await;

        let started = Instant::now();
        let resp = client
            .open_call_stream_with_id(
                100,
                "progress",
                json!({"steps": 3, "interval_ms": 250}),
                Some(json!("tok")),
            )
            .await
            .unwrap();
        let headers_after = started.elapsed();
        assert_eq!(resp.status(), StatusCode::OK, "{rev}");
        let mut stream = SseStream::new(resp);
        read_until(&mut stream, "first progress", is_progress).await;
        assert_eq!(stats.running(), 1, "{rev}");

        // Headers are long gone (2025-11-25: at once); the call still holds the only permit.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_refused(&client).await;
        assert_eq!(stats.running(), 1, "{rev}");

        read_until(&mut stream, "the result", is_result_for(100)).await;
        let ended_after = started.elapsed();
        assert!(
            ended_after >= Duration::from_millis(700),
            "{rev}: {ended_after:?}"
        );
        if rev == Revision::V2025_11_25 {
            assert!(
                headers_after < Duration::from_millis(300),
                "{rev}: headers should leave at once, took {headers_after:?}"
            );
        }
        idle(&stats).await;
        assert_adds(&client).await;
        assert_eq!((stats.rejected(), stats.queued()), (1, 0), "{rev}");
        drop(stream);
        server.shutdown().await;
    }
}

/// A client that goes away mid-stream gives its permit back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_streamed_answer_returns_its_permit() {
    for rev in Revision::ALL {
        let layer = BulkheadLayer::new(1).max_queue(0);
        let stats = layer.stats();
        let server = spawn(layer, ServerOptions::default()).await;
        let client = bounded("connect", RawClient::connect(server.url(), rev))
            .await
            .unwrap();
        idle(&stats).await;

        let resp = client
            .open_call_stream_with_id(
                7,
                "progress",
                json!({"steps": 20, "interval_ms": 50}),
                Some(json!("tok")),
            )
            .await
            .unwrap();
        let mut stream = SseStream::new(resp);
        read_until(&mut stream, "first progress", is_progress).await;
        assert_eq!(stats.running(), 1, "{rev}");
        drop(stream);
        // The server notices at its next write (progress every 50 ms) and drops the body.
        idle(&stats).await;
        assert_adds(&client).await;
        server.shutdown().await;
    }
}

/// MAX_CONCURRENT=2, MAX_QUEUE=1, keyed by tool: five concurrent `slow` calls give two running,
/// one waiting, two fast 503s, while `add` stays fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_slow_calls_two_run_one_waits_two_are_refused_and_add_stays_fast() {
    for rev in Revision::ALL {
        let layer = BulkheadLayer::new(2)
            .max_queue(1)
            .by_tool(KnownTools::from_names(DEMO_TOOLS));
        let stats = layer.stats();
        let server = spawn(layer, ServerOptions::default()).await;
        let client = Arc::new(
            bounded("connect", RawClient::connect(server.url(), rev))
                .await
                .unwrap(),
        );
        idle(&stats).await;

        let started = Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let client = Arc::clone(&client);
                tokio::spawn(async move {
                    let reply = client.call_tool("slow", json!({"ms": 600})).await.unwrap();
                    (reply, started.elapsed())
                })
            })
            .collect();

        let s = stats.clone();
        eventually("two running, one waiting, two refused", move || {
            s.key("slow")
                .is_some_and(|k| (k.running, k.queued, k.rejected) == (2, 1, 2))
        })
        .await;
        let add_started = Instant::now();
        assert_adds(&client).await;
        let add_took = add_started.elapsed();
        assert!(
            add_took < Duration::from_millis(300),
            "{rev}: add took {add_took:?}"
        );

        let mut done = Vec::new();
        for c in calls {
            done.push(bounded("slow call", c).await.unwrap());
        }
        let mut refused: Vec<Duration> = Vec::new();
        let mut served: Vec<Duration> = Vec::new();
        for (reply, took) in &done {
            match reply.status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(reply.error_code(), Some(-31509), "{rev}: {reply:?}");
                    refused.push(*took);
                }
                StatusCode::OK => {
                    assert!(reply.tool_text().is_some(), "{rev}: {reply:?}");
                    served.push(*took);
                }
                other => panic!("{rev}: unexpected {other}: {reply:?}"),
            }
        }
        served.sort();
        assert_eq!((served.len(), refused.len()), (3, 2), "{rev}: {done:?}");
        for r in &refused {
            assert!(*r < Duration::from_millis(400), "{rev}: refusal took {r:?}");
        }
        assert!(served[1] < Duration::from_millis(1100), "{rev}: {served:?}");
        assert!(
            served[2] >= Duration::from_millis(1150),
            "{rev}: the waiter ran after one of the first two: {served:?}"
        );
        idle(&stats).await;
        let slow = stats.key("slow").unwrap();
        assert_eq!(
            (slow.running, slow.queued, slow.rejected),
            (0, 0, 2),
            "{rev}"
        );
        assert_eq!(stats.key("add").unwrap().rejected, 0);
        server.shutdown().await;
    }
}

/// 2025-11-25 GET listen streams take no call permit, and each principal may open only so many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_listen_streams_are_bounded_per_principal() {
    let layer = BulkheadLayer::new(1).max_queue(0).streams_per_principal(2);
    let stats = layer.stats();
    // Frequent keep-alives make the server notice a closed stream quickly.
    let opts = ServerOptions {
        keep_alive: Some(Duration::from_millis(50)),
        ..ServerOptions::default()
    };
    let server = spawn(layer, opts).await;
    let connect = |who: &'static str| {
        let url = server.url();
        async move {
            bounded(
                "connect",
                RawClient::new(url, Revision::V2025_11_25)
                    .with_header(PRINCIPAL_HEADER, who)
                    .connected(),
            )
            .await
            .unwrap()
        }
    };
    let alice: Vec<RawClient> = vec![
        connect("alice").await,
        connect("alice").await,
        connect("alice").await,
    ];
    let bob = connect("bob").await;

    let a0 = alice[0].open_get_stream().await.unwrap();
    let a1 = alice[1].open_get_stream().await.unwrap();
    assert_eq!((a0.status(), a1.status()), (StatusCode::OK, StatusCode::OK));
    let a2 = alice[2].open_get_stream().await.unwrap();
    assert_eq!(a2.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = serde_json::from_str(&a2.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], -31509);
    let b0 = bob.open_get_stream().await.unwrap();
    assert_eq!(b0.status(), StatusCode::OK);
    let p_alice = Principal::new("alice");
    assert_eq!(stats.streams_open_for(Some(&p_alice)), 2);
    assert_eq!((stats.streams_open(), stats.streams_rejected()), (3, 1));

    // Streams take no call permit: the single permit still serves calls.
    idle(&stats).await;
    assert_adds(&bob).await;

    // Closing one of alice's streams frees her slot.
    drop(a0);
    let s = stats.clone();
    eventually("alice's closed stream released", move || {
        s.streams_open_for(Some(&Principal::new("alice"))) == 1
    })
    .await;
    let again = alice[2].open_get_stream().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    drop((a1, b0, again));
    server.shutdown().await;
}

/// Call 42, resumed (`resumed`: the GET's answer), holds one call permit and no stream slot
/// until its result has passed; then calls are served again.
async fn resumed_call_holds_one_permit(
    stats: &BulkheadStats,
    client: &RawClient,
    resumed: reqwest::Response,
) {
    let mut stream = SseStream::new(resumed);
    assert_eq!((stats.running(), stats.streams_open()), (1, 0));
    assert_refused(client).await;
    let ev = read_until(&mut stream, "the resumed result", is_result_for(42)).await;
    assert!(ev.json().unwrap()["result"].is_object());
    idle(stats).await;
    assert_adds(client).await;
}

/// A 2025-11-25 call resumed by GET + `Last-Event-ID` is the same call: the resumption holds a
/// call permit (not a stream slot) until the call's result has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_call_holds_a_call_permit_until_its_result() {
    let layer = BulkheadLayer::new(1).max_queue(0);
    let stats = layer.stats();
    let server = spawn(layer, ServerOptions::default()).await;
    let client = bounded(
        "connect",
        RawClient::connect(server.url(), Revision::V2025_11_25),
    )
    .await
    .unwrap();
    idle(&stats).await;

    let last_id = client.drop_call_at_first_progress(42).await;
    // The broken stream gave its permit back (the tool runs on: closing is not cancelling).
    idle(&stats).await;

    let resumed = client.open_get_stream_after(&last_id).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    resumed_call_holds_one_permit(&stats, &client, resumed).await;
    server.shutdown().await;
}

/// With the timeout layer inside holding dropped calls for resumption, a dropped call keeps its
/// permit while its tool runs on, and its resumption adopts that permit instead of asking for
/// another: a global bulkhead of one permit (no line) serves the resumption, which would
/// otherwise be refused by its own held call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumption_adopts_the_permit_its_held_call_keeps() {
    let layer = BulkheadLayer::new(1).max_queue(0);
    let stats = layer.stats();
    let timeout = TimeoutLayer::builder(Duration::from_secs(10))
        .resume_grace(Duration::from_secs(3))
        .build()
        .unwrap();
    let server = spawn_with(layer, Some(timeout), ServerOptions::default()).await;
    let client = bounded(
        "connect",
        RawClient::connect(server.url(), Revision::V2025_11_25),
    )
    .await
    .unwrap();
    idle(&stats).await;

    let last_id = client.drop_call_at_first_progress(42).await;
    // Held for resumption: the tool runs on, with its permit.
    assert_refused(&client).await;
    assert_eq!(stats.running(), 1);

    // Until the server has seen the drop, the call is still running with its permit, and a
    // resumption is refused like any other call: retried (bounded) until the drop is seen.
    let deadline = Instant::now() + Duration::from_secs(2);
    let resumed = loop {
        let resp = bounded("resume", client.open_get_stream_after(&last_id))
            .await
            .unwrap();
        if resp.status() != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        resumed.status(),
        StatusCode::OK,
        "the resumption adopted the permit"
    );
    resumed_call_holds_one_permit(&stats, &client, resumed).await;
    server.shutdown().await;
}

/// Under 2025-11-25 a client cancels a call with `notifications/cancelled`. One still waiting
/// in line never reached rmcp (which ignores a cancellation of a request it does not know): it
/// ends at once, answered as rmcp answers a call it cancelled (a stream without a message), its
/// place goes to the next call, and the tool never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_while_waiting_in_line_never_runs() {
    let layer = BulkheadLayer::new(1)
        .max_queue(5)
        .by_tool(KnownTools::from_names(DEMO_TOOLS));
    let stats = layer.stats();
    let opts = ServerOptions::default();
    let demo = Arc::clone(&opts.stats);
    let server = spawn(layer, opts).await;
    let client = Arc::new(
        bounded(
            "connect",
            RawClient::connect(server.url(), Revision::V2025_11_25),
        )
        .await
        .unwrap(),
    );
    let started = Instant::now();
    let running = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.call_tool("slow", json!({"ms": 2000})).await })
    };
    let s = stats.clone();
    eventually("one running", move || {
        s.key("slow").is_some_and(|k| k.running == 1)
    })
    .await;
    let waiting_id = client.next_id();
    let waiting = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            client
                .call_with_id(
                    waiting_id,
                    "tools/call",
                    json!({"name": "slow", "arguments": {"ms": 800}}),
                )
                .await
        })
    };
    let s = stats.clone();
    eventually("one waiting", move || {
        s.key("slow").is_some_and(|k| k.queued == 1)
    })
    .await;
    let note = bounded("cancel", client.cancel(waiting_id, "never mind"))
        .await
        .unwrap();
    assert_eq!(note.status, StatusCode::ACCEPTED);
    let cancelled = bounded("the waiting call", waiting).await.unwrap().unwrap();
    assert_eq!(cancelled.status, StatusCode::OK);
    assert!(cancelled.is_sse(), "{cancelled:?}");
    assert!(cancelled.messages().is_empty(), "{cancelled:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "ended at once, not after the running call"
    );
    let s = stats.clone();
    eventually("no one waiting", move || {
        s.key("slow").is_some_and(|k| k.queued == 0)
    })
    .await;

    let first = bounded("the running call", running).await.unwrap().unwrap();
    assert!(first.tool_text().is_some(), "{first:?}");
    idle(&stats).await;
    assert_eq!(demo.slow_started(), 1, "the cancelled call never ran");
    server.shutdown().await;
}
