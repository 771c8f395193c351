//! State changes as `tracing` events. In a test binary of its own: `tracing` caches per
//! callsite whether anyone listens, and other tests running without a subscriber on other
//! threads would race with the thread-local subscriber here.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt};
use tower_armor_circuit_breaker::{Builder, KeyBy, OpenDuration};
use tower_armor_mcp::{KnownTools, McpRequest, MessageKind, Method, RequestId};

fn tool(id: i64, name: &str) -> Request<()> {
    Request::post("/mcp")
        .extension(
            McpRequest::new(
                MessageKind::Request,
                Some(Method::ToolsCall),
                Some(RequestId::Number(id)),
            )
            .with_name(name),
        )
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn transitions_are_tracing_events_with_key_reason_and_counts() {
    let logs = tower_armor_test_support::LogCapture::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let layer = Builder::new()
        .count_window(4)
        .min_calls(2)
        .failure_rate(0.5)
        .key_by(KeyBy::Tool(KnownTools::from_names(["crash"])))
        .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
        .build()
        .unwrap();
    let mut svc = layer.layer(tower::service_fn(|_req: Request<()>| async {
        let mut resp = Response::new(String::new());
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        Ok::<_, std::convert::Infallible>(resp)
    }));
    for id in 1..=2 {
        svc.ready()
            .await
            .unwrap()
            .call(tool(id, "crash"))
            .await
            .unwrap();
    }
    layer.handle().circuit("crash").unwrap().force_closed();
    let text = logs.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for want in [
        "WARN",
        "circuit breaker state changed",
        "key=\"crash\"",
        "from=\"closed\"",
        "to=\"open\"",
        "reason=\"failure_rate\"",
        "calls=2",
        "failures=2",
    ] {
        assert!(lines[0].contains(want), "{want} in {}", lines[0]);
    }
    for want in [
        "INFO",
        "from=\"open\"",
        "to=\"forced_closed\"",
        "reason=\"forced_closed\"",
    ] {
        assert!(lines[1].contains(want), "{want} in {}", lines[1]);
    }
}
