//! The correlation layers in front of a real rmcp server on loopback, under both revisions: the
//! id goes round-trip, the request span's fields get recorded, a tool handler's own log lines
//! carry the id through `span_from_parts`, and `_meta.traceparent` reaches the handler.
//!
//! This binary installs a global subscriber writing into a buffer (the server runs on other
//! threads), so it holds one test.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use rmcp::handler::server::tool::Extension;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;
use tower::ServiceBuilder;
use tower_armor_correlation_id::{
    AdoptMetaTraceLayer, CorrelationIdLayer, TraceContext, span_from_parts,
};
use tower_armor_mcp::CorrelationId;
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_test_support::{LogCapture, RawClient, Revision, serve};
use tracing::Instrument;
use tracing_subscriber::fmt::format::FmtSpan;

fn logs() -> &'static LogCapture {
    static CAP: OnceLock<LogCapture> = OnceLock::new();
    CAP.get_or_init(|| {
        let cap = LogCapture::default();
        let writer = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_env_filter("info,rmcp=warn")
            .with_span_events(FmtSpan::CLOSE)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("one global subscriber");
        cap
    })
}

fn log_lines() -> Vec<String> {
    logs().text().lines().map(str::to_owned).collect()
}

/// A server whose one tool logs inside `span_from_parts` and answers what it saw.
#[derive(Clone, Debug, Default)]
struct Probe;

#[tool_router]
impl Probe {
    #[tool(description = "Answer the correlation id and trace id the handler sees.")]
    async fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<String, ErrorData> {
        let span = span_from_parts(&parts);
        async move {
            tracing::info!("tool handler ran");
            let id = parts
                .extensions
                .get::<CorrelationId>()
                .map_or_else(String::new, ToString::to_string);
            let trace = parts
                .extensions
                .get::<TraceContext>()
                .map_or_else(String::new, |t| t.trace_id().to_string());
            Ok(format!("{id} {trace}"))
        }
        .instrument(span)
        .await
    }
}

#[tool_handler(name = "probe", instructions = "probe")]
impl ServerHandler for Probe {}

async fn spawn() -> tower_armor_test_support::TestServer {
    let config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(None)
        .with_legacy_session_mode(true);
    let mcp = StreamableHttpService::new(
        || Ok(Probe),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let stack = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(McpInspectLayer::new())
        .layer(AdoptMetaTraceLayer::new())
        .service(mcp);
    serve(Router::new().nest_service("/mcp", stack)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_go_round_trip_and_spans_are_recorded() {
    logs();
    let server = spawn().await;
    for rev in Revision::ALL {
        let case = format!("rt-{}", rev.as_str());
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            RawClient::new(server.url(), rev)
                .with_header("x-request-id", &case)
                .connected(),
        )
        .await
        .expect("handshake in time")
        .expect("handshake");

        // Round trip: the answer carries the id; the handler saw it in its parts.
        let meta_trace = "0af7651916cd43dd8448eb211c80319c";
        let reply = client
            .call(
                "tools/call",
                json!({"name": "whoami", "arguments": {}, "_meta": {
                    "traceparent": format!("00-{meta_trace}-b7ad6b7169203331-01")
                }}),
            )
            .await
            .expect("call");
        assert_eq!(reply.header("x-request-id"), Some(case.as_str()), "{rev}");
        assert_eq!(
            reply.tool_text(),
            Some(format!("{case} {meta_trace}").as_str()),
            "{rev}: the handler sees the id and the adopted _meta trace"
        );

        // No header: a generated id is echoed.
        let plain = RawClient::new(server.url(), rev);
        let reply = match rev {
            Revision::V2025_11_25 => {
                let mut c = plain;
                c.initialize()
                    .await
                    .expect("initialize")
                    .expect("an answer")
            }
            Revision::V2026_07_28 => plain.discover().await.expect("discover"),
        };
        assert_eq!(
            reply.header("x-request-id").map(str::len),
            Some(36),
            "{rev}"
        );
        assert_eq!(reply.status, 200, "{rev}");
    }

    // Spans close when the answers' bodies are dropped; give the server a moment.
    let mut found = (false, false);
    for _ in 0..100 {
        let lines = log_lines();
        found = (
            Revision::ALL.iter().all(|rev| {
                let case = format!("request_id=rt-{}", rev.as_str());
                lines.iter().any(|l| {
                    l.contains("tool handler ran")
                        && l.contains("mcp.handler{")
                        && l.contains(&case)
                        && l.contains("trace_id=0af7651916cd43dd8448eb211c80319c")
                        && l.contains("mcp.method=tools/call")
                        && l.contains("mcp.tool=\"whoami\"")
                })
            }),
            Revision::ALL.iter().all(|rev| {
                let case = format!("request_id=rt-{}", rev.as_str());
                lines.iter().any(|l| {
                    l.contains("mcp.request{")
                        && l.contains(" close ")
                        && l.contains(&case)
                        && l.contains("mcp.method=tools/call")
                        && l.contains("mcp.tool=\"whoami\"")
                        && l.contains("trace_id=0af7651916cd43dd8448eb211c80319c")
                })
            }),
        );
        if found == (true, true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        found,
        (true, true),
        "(handler line, request span close) not found in:\n{}",
        log_lines().join("\n")
    );
    server.shutdown().await;
}
