//! A hardened MCP server: rmcp's streamable-HTTP service mounted in axum at `/mcp`, wrapped in
//! tower-armor's layers, with `/healthz`.
//!
//! ```text
//! cargo run --example mcp_server            # listens on 127.0.0.1:8080
//! MCP_ADDR=127.0.0.1:9000 RUST_LOG=debug cargo run --example mcp_server
//! ```
//!
//! Settings (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MCP_ADDR` | `127.0.0.1:8080` | listen address |
//! | `MCP_MAX_BODY_BYTES` | `4194304` | largest request body read by the inspector (413 above) |
//! | `RUST_LOG` | `info` | log filter (logs go to stderr) |
//!
//! The layer stack follows the documented order (DESIGN §4); each layer joins as its crate lands.
//! The demo tools: `add`, `echo`, `slow`, `progress`, `fail`, `crash`, `unstable`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_test_support::{DEMO_TOOLS, ServerOptions, demo_service};

/// The example's settings, read from the environment and validated before anything starts.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The inspector's body limit.
    pub max_body_bytes: usize,
}

impl Settings {
    /// Reads the settings; a bad value is an error naming its variable.
    pub fn from_env() -> Result<Self, String> {
        let addr = match std::env::var("MCP_ADDR") {
            Ok(v) => v
                .parse()
                .map_err(|e| format!("MCP_ADDR: {e} (expected host:port, e.g. 127.0.0.1:8080)"))?,
            Err(_) => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let max_body_bytes = match std::env::var("MCP_MAX_BODY_BYTES") {
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "MCP_MAX_BODY_BYTES: expected a positive integer, got {v:?}"
                    ));
                }
            },
            Err(_) => McpInspectLayer::DEFAULT_MAX_BODY,
        };
        Ok(Settings {
            addr,
            max_body_bytes,
        })
    }

    /// Settings for tests: loopback, defaults.
    pub fn for_tests() -> Self {
        Settings {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_body_bytes: McpInspectLayer::DEFAULT_MAX_BODY,
        }
    }
}

/// The application: the router, and the token that ends every MCP session and stream.
#[derive(Debug)]
pub struct App {
    /// `/mcp` (the hardened MCP service) and `/healthz`.
    pub router: Router,
    /// Cancelling it ends every open MCP session and stream (graceful shutdown).
    pub shutdown: CancellationToken,
}

/// Builds the hardened server.
pub fn app(settings: &Settings) -> App {
    let mcp = demo_service(&ServerOptions::default());
    let shutdown = mcp.config.cancellation_token.clone();
    tracing::info!(tools = ?DEMO_TOOLS, "demo tools");
    let stack = ServiceBuilder::new()
        // Read each JSON-RPC POST once, bounded; answer malformed requests here.
        .layer(McpInspectLayer::new().max_body_bytes(settings.max_body_bytes))
        .service(mcp);
    let router = Router::new()
        .nest_service("/mcp", stack)
        .route("/healthz", get(|| async { "ok" }));
    App { router, shutdown }
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    let App { router, shutdown } = app(&settings);
    let listener = match tokio::net::TcpListener::bind(settings.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", settings.addr);
            std::process::exit(1);
        }
    };
    tracing::info!(addr = %settings.addr, "MCP server listening on http://{}/mcp", settings.addr);
    let on_signal = shutdown.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: ending open MCP streams");
        // Open SSE streams would otherwise keep graceful shutdown waiting forever.
        on_signal.cancel();
    });
    let served = tokio::spawn(async move { server.await });
    // Bound the drain: once a signal came, give connections a few seconds, then exit.
    tokio::select! {
        res = served => if let Ok(Err(e)) = res { eprintln!("server error: {e}") },
        _ = async { shutdown.cancelled().await; tokio::time::sleep(Duration::from_secs(5)).await } => {
            tracing::warn!("connections still open after 5 s; exiting");
        }
    }
}

#[allow(dead_code)]
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
