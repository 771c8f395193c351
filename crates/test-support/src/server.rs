//! A real HTTP server on loopback: the demo MCP service or any axum router.

use std::{net::SocketAddr, sync::Arc, time::Duration};

#[cfg(test)]
use std::convert::Infallible;

use axum::{Router, routing::get, serve::ListenerExt};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService,
    session::local::{LocalSessionManager, SessionConfig},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use crate::demo::{DemoServer, DemoStats};

/// How long [`TestServer::shutdown`] waits for a graceful end before aborting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How [`demo_service`] / [`spawn_demo`] configure rmcp's streamable HTTP service.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Interval of rmcp's SSE keep-alive comments (`:`); `None` turns them off.
    /// Default: 15 s, rmcp's own default.
    pub keep_alive: Option<Duration>,
    /// rmcp's `legacy_session_mode`: `initialize` creates a session (`Mcp-Session-Id`) for
    /// 2025-11-25 clients. Requests that carry 2026-07-28 `_meta` are served statelessly
    /// either way. Default: true.
    pub stateful: bool,
    /// rmcp's `json_response`: answer simple request/response calls with
    /// `application/json` instead of SSE. rmcp applies it only to requests served
    /// statelessly. Default: false.
    pub json_response: bool,
    /// rmcp's `allowed_hosts`, the `Host` values it serves (others get 403, its protection
    /// against DNS rebinding). `None`: rmcp's default, loopback names only; an empty list:
    /// any host. Default: `None`.
    pub allowed_hosts: Option<Vec<String>>,
    /// rmcp's own request body limit (`max_request_body_bytes`); `None`: rmcp's default
    /// (4 MiB). A server with an inspector in front sets the inspector's limit here, so the
    /// inspector's is the one that applies. Default: `None`.
    pub max_body_bytes: Option<usize>,
    /// How many events of each stream rmcp keeps to replay on a resumption
    /// (`SessionConfig::channel_capacity`; rmcp's default is 16). A client away for more
    /// events than this gets the replay from the oldest kept, the ones before it lost.
    /// Default: rmcp's.
    pub replay_events: usize,
    /// Counters shared with the test.
    pub stats: Arc<DemoStats>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            keep_alive: Some(Duration::from_secs(15)),
            stateful: true,
            json_response: false,
            allowed_hosts: None,
            max_body_bytes: None,
            replay_events: SessionConfig::DEFAULT_CHANNEL_CAPACITY,
            stats: DemoStats::new(),
        }
    }
}

/// The demo server as rmcp's tower service (`Error = Infallible`), configured by `opts`.
///
/// Hosts are rmcp's default (loopback only) unless `opts.allowed_hosts` says otherwise. The
/// service's cancellation token is `service.config.cancellation_token`; cancelling it ends
/// every session and open stream.
pub fn demo_service(
    opts: &ServerOptions,
) -> StreamableHttpService<DemoServer, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default()
        .with_sse_keep_alive(opts.keep_alive)
        .with_legacy_session_mode(opts.stateful)
        .with_json_response(opts.json_response);
    if let Some(hosts) = &opts.allowed_hosts {
        config = config.with_allowed_hosts(hosts.iter().cloned());
    }
    if let Some(bytes) = opts.max_body_bytes {
        config = config.with_max_request_body_bytes(bytes);
    }
    let stats = Arc::clone(&opts.stats);
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.channel_capacity = opts.replay_events.max(1);
    StreamableHttpService::new(
        move || Ok(DemoServer::with_stats(Arc::clone(&stats))),
        Arc::new(sessions),
        config,
    )
}

/// A server task listening on `127.0.0.1:<port>`. Dropping it aborts the server task
/// (and cancels the MCP service, if any); [`TestServer::shutdown`] ends it gracefully.
#[derive(Debug)]
pub struct TestServer {
    /// The bound address (always 127.0.0.1 with an OS-assigned port).
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
    cancel: CancellationToken,
}

impl TestServer {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/mcp`, the MCP endpoint of [`spawn_demo`].
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    /// `base()` followed by `path` (which should start with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// A token cancelled when this server shuts down or is dropped. For [`spawn_demo`]
    /// it is rmcp's service token: cancelling it ends every MCP session and stream.
    pub fn cancellation_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Stops accepting connections, ends open MCP streams and waits (up to 5 s) for the
    /// server task to finish; aborts it after that.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `router` on `127.0.0.1:0` (with `ConnectInfo<SocketAddr>` available to handlers
/// and layers, `TCP_NODELAY` on every connection) and returns once the socket is bound.
///
/// # Panics
///
/// When binding the loopback socket fails.
pub async fn serve(router: Router) -> TestServer {
    serve_with_token(router, CancellationToken::new()).await
}

async fn serve_with_token(router: Router, cancel: CancellationToken) -> TestServer {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener
        .local_addr()
        .expect("local address of the listener");
    // Without TCP_NODELAY a small SSE frame written right after another waits for the
    // peer's delayed ACK (~40 ms on Linux) on a reused connection, which skews timing.
    let listener = listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on a test connection");
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(error) = server.await {
            tracing::warn!(%error, "test server ended with an error");
        }
    });
    TestServer {
        addr,
        task: Some(task),
        stop: Some(stop),
        cancel,
    }
}

/// The demo MCP server on loopback: [`demo_service`] under `/mcp` and `GET /healthz`
/// answering `ok`.
///
/// # Panics
///
/// When binding the loopback socket fails.
pub async fn spawn_demo(opts: ServerOptions) -> TestServer {
    let service = demo_service(&opts);
    let cancel = service.config.cancellation_token.clone();
    let router = Router::new()
        .nest_service("/mcp", service)
        .route("/healthz", get(healthz));
    serve_with_token(router, cancel).await
}

async fn healthz() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_service_is_an_infallible_tower_service() {
        fn is_infallible<S>(_: &S)
        where
            S: tower::Service<http::Request<axum::body::Body>, Error = Infallible>,
        {
        }
        is_infallible(&demo_service(&ServerOptions::default()));
    }
}
