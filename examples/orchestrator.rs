//! An orchestrator calling several MCP servers through tower-armor's client stack, in the
//! documented order (`docs/ordering.md`, "Clients"):
//!
//! ```text
//! correlation (inject) → circuit breaker (per upstream) → bulkhead (per upstream) → timeout
//!   → bearer (inject) → HTTP client
//! ```
//!
//! ```sh
//! cargo run --example orchestrator
//! ```
//!
//! The demo starts two hardened MCP servers (`examples/mcp_server.rs`, with bearer auth) on
//! 127.0.0.1, calls `add` on both, then stops one of them. Its calls fail (connection refused)
//! until its breaker opens; from then on they fail fast with `CircuitOpen`, without touching
//! the network, while the other upstream keeps answering. Calls use the stateless revision
//! (2026-07-28): one POST per call, `Mcp-Method` / `Mcp-Name` mirrored from the body.
//!
//! Each call carries the orchestrator's correlation id (`x-request-id`) and a W3C
//! `traceparent` child of its trace; the token goes only to the upstreams, marked sensitive.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Limited};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_armor_bearer_auth::{InjectBearer, InjectBearerLayer};
use tower_armor_bulkhead::{Bulkhead, BulkheadLayer};
use tower_armor_circuit_breaker::{
    CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer, KeyBy, OpenDuration,
};
use tower_armor_correlation_id::{PropagateCorrelation, PropagateCorrelationLayer, TraceContext};
use tower_armor_mcp::error::BoxError;
use tower_armor_mcp::inspect::inspect_post;
use tower_armor_mcp::observe::{BodyKind, body_kind};
use tower_armor_mcp::sse::SseParser;
use tower_armor_mcp::{CorrelationId, McpBody, Secret};
use tower_armor_timeout::{Timeout, TimeoutLayer};

// The demo's upstreams: the hardened example server.
#[allow(dead_code, unreachable_pub)]
#[path = "mcp_server.rs"]
mod server;

/// How the client stack is set up.
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// The bearer token sent to every upstream (a secret: `Debug` prints its length only). Any
    /// upstream could replay it against the others: upstreams that must not share a token each
    /// get a stack of their own, with their own token.
    pub token: Secret,
    /// Consecutive failures of one upstream that open its breaker.
    pub trip_after: u32,
    /// How long an open breaker fails fast before it lets a probe through.
    pub open_for: Duration,
    /// Calls in flight per upstream.
    pub max_concurrent: usize,
    /// The deadline of one call, to its final JSON-RPC response.
    pub call_timeout: Duration,
}

impl ClientSettings {
    /// The demo's settings, with `token`.
    pub fn new(token: impl Into<String>) -> Self {
        ClientSettings {
            token: Secret::new(token.into()),
            trip_after: 3,
            open_for: Duration::from_secs(30),
            max_concurrent: 16,
            call_timeout: Duration::from_secs(10),
        }
    }
}

/// hyper's pooled HTTP/1 client, the transport at the bottom of the stack.
pub type HttpClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, McpBody>;

/// The client stack, outermost first (see the module docs).
pub type ClientStack =
    PropagateCorrelation<CircuitBreaker<Bulkhead<Timeout<InjectBearer<HttpClient>>>>>;

/// The client stack over [`HttpClient`], and the handle of its breakers (one per upstream
/// authority).
pub fn client_stack(
    settings: &ClientSettings,
) -> Result<(ClientStack, CircuitBreakerHandle), String> {
    let breakers = CircuitBreakerLayer::builder()
        .key_by(KeyBy::Authority)
        .consecutive_failures(settings.trip_after)
        .open_duration(OpenDuration::Fixed(settings.open_for))
        .build()
        .map_err(|e| e.to_string())?;
    let handle = breakers.handle();
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<McpBody>();
    let stack = ServiceBuilder::new()
        .layer(PropagateCorrelationLayer::new())
        .layer(breakers)
        // Streams are not bounded here: a client's requests carry no principal, so every
        // listen stream to every upstream would share one allowance.
        .layer(
            BulkheadLayer::try_new(settings.max_concurrent)
                .map_err(|e| e.to_string())?
                .by_authority()
                .no_stream_limit(),
        )
        .layer(TimeoutLayer::new(settings.call_timeout))
        .layer(
            InjectBearerLayer::with_token(settings.token.clone())
                .map_err(|e| format!("the upstream token: {e}"))?,
        )
        .service(http);
    Ok((stack, handle))
}

/// How much of one upstream answer [`call_tool`] reads (16 MiB); a longer one is an error.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Calls `tool` on the MCP server at `url` (stateless revision) and returns the JSON-RPC
/// result, or the error: a call-plane error of a layer (`CircuitOpen`, `BulkheadFull`,
/// `Elapsed`, a transport error), or the server's JSON-RPC error as text.
pub async fn call_tool<S, B>(
    client: &S,
    url: &str,
    id: i64,
    tool: &str,
    arguments: serde_json::Value,
) -> Result<serde_json::Value, BoxError>
where
    S: Service<Request<McpBody>, Response = Response<B>, Error = BoxError> + Clone,
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>>,
{
    let message = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {
            "name": tool,
            "arguments": arguments,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    });
    // `Mcp-Name` carries a name outside visible ASCII as `=?base64?…?=`, which this example
    // does not write; nor a name of that very shape, which a server would decode.
    let encoded_shape = tool.starts_with("=?base64?") && tool.ends_with("?=");
    if encoded_shape || !tool.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("tool name {tool:?} needs Mcp-Name's base64 form").into());
    }
    let body = Bytes::from(serde_json::to_vec(&message)?);
    let mut req = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(McpBody::from(body.clone()))?;
    // The facts the layers read (method, tool, id): the same parse a server's inspector does.
    let facts = inspect_post(req.headers(), &body).map_err(|r| format!("{r:?}"))?;
    req.extensions_mut().insert(facts);
    let resp = client.clone().oneshot(req).await?;
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    let kind = body_kind(&parts.headers);
    // An upstream is not trusted with this process's memory: the answer is read up to a bound
    // (the timeout bounds how long it may take).
    let body = Limited::new(body, MAX_ANSWER_BYTES);
    if status.is_success() && !matches!(kind, BodyKind::Json | BodyKind::Sse) {
        // An MCP server answers a request with JSON or SSE: whatever this body holds, it is not
        // the call's answer, and is not read.
        let content_type = parts.headers.get(header::CONTENT_TYPE);
        return Err(
            format!("HTTP {status} with content-type {content_type:?}: not an MCP answer").into(),
        );
    }
    let answer = if status.is_success() && kind == BodyKind::Sse {
        // Read up to the call's answer only: an upstream may keep the stream open after it.
        sse_answer(body, id).await?.ok_or_else(|| {
            format!("HTTP {status}: the stream ended without an answer to the call")
        })?
    } else {
        let text = body
            .collect()
            .await
            .map_err(|e| format!("the answer (HTTP {status}): {e}"))?
            .to_bytes();
        let message = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .filter(|m| answers(m, id));
        if !status.is_success() {
            // A refusal of the upstream or of its layers, with its JSON-RPC error when it has
            // one (a 401 has `id: null`).
            return Err(match message.as_ref().and_then(|m| m.get("error")) {
                Some(error) => format!("HTTP {status}: JSON-RPC error {error}"),
                None => format!("HTTP {status}"),
            }
            .into());
        }
        message.ok_or_else(|| format!("HTTP {status} without an answer to the call"))?
    };
    match answer.get("error") {
        Some(error) => Err(format!("JSON-RPC error {error}").into()),
        None => Ok(answer["result"].clone()),
    }
}

/// Whether `message` answers the call `id`: its response, with a `result` or an `error` (a
/// server's own request in a stream has a `method`, and may reuse our id), or an error answered
/// before the request was read (`id: null`).
fn answers(message: &serde_json::Value, id: i64) -> bool {
    let (result, error) = (message.get("result"), message.get("error"));
    message.get("method").is_none()
        && (result.is_some() != error.is_some())
        && (message["id"] == id || (message["id"].is_null() && error.is_some()))
}

/// Reads an SSE answer up to the event that answers the call `id` and stops there; `None` if
/// the stream ended first.
async fn sse_answer<B>(body: B, id: i64) -> Result<Option<serde_json::Value>, BoxError>
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut parser = SseParser::new(MAX_ANSWER_BYTES);
    let mut found = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("the answer: {e}"))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        parser.feed(data, |event| {
            if found.is_none()
                && let Ok(message) = serde_json::from_slice::<serde_json::Value>(event.data)
                && answers(&message, id)
            {
                found = Some(message);
            }
        });
        if found.is_some() {
            break;
        }
    }
    Ok(found)
}

/// An example server (with bearer auth: `token`) on 127.0.0.1, serving until `stop`.
pub async fn start_upstream(
    token: &str,
) -> (
    String,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let spec = format!("orchestrator:{token}");
    let settings = server::Settings::from_lookup(|name| match name {
        "MCP_ADDR" => Some("127.0.0.1:0".to_owned()),
        "MCP_BEARER_TOKEN" => Some(spec.clone()),
        _ => None,
    })
    .expect("valid upstream settings");
    let limits = settings.connections;
    let app = server::app(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}/mcp", listener.local_addr().expect("bound"));
    let stop = tokio_util::sync::CancellationToken::new();
    let signal = stop.clone();
    let served = tokio::spawn(server::run(
        listener,
        app,
        limits,
        async move { signal.cancelled().await },
        std::future::pending::<()>(),
    ));
    (url, stop, served)
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection refused`).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let token = "orchestrator-demo-token";
    let (a, _stop_a, _served_a) = start_upstream(token).await;
    let (b, stop_b, served_b) = start_upstream(token).await;
    let (client, breakers) = client_stack(&ClientSettings::new(token))?;

    // The orchestrator's own case: every call below carries it, each with a child trace span.
    let case = CorrelationId::parse("orchestrator-demo")?;
    let trace = TraceContext::new_root();
    let client = tower::service_fn(move |mut req: Request<McpBody>| {
        req.extensions_mut().insert(case.clone());
        req.extensions_mut().insert(trace.clone());
        client.clone().oneshot(req)
    });

    let mut id = 0;
    let mut call = async |url: &str, label: &str| {
        id += 1;
        let started = tokio::time::Instant::now();
        let out = call_tool(
            &client,
            url,
            id,
            "add",
            serde_json::json!({"a": id, "b": 1}),
        )
        .await;
        let took = started.elapsed();
        match out {
            Ok(result) => println!(
                "{label}: add -> {} ({took:.1?})",
                result["content"][0]["text"]
            ),
            Err(e) => println!("{label}: failed after {took:.1?}: {}", causes(&*e)),
        }
    };
    for _ in 0..2 {
        call(&a, "upstream A").await;
        call(&b, "upstream B").await;
    }
    println!("-- stopping upstream B");
    stop_b.cancel();
    let _ = served_b.await;
    for _ in 0..5 {
        call(&a, "upstream A").await;
        call(&b, "upstream B").await;
    }
    for c in breakers.circuits() {
        println!("breaker {}: {:?}", c.key().unwrap_or("(all)"), c.state());
    }
    Ok(())
}
