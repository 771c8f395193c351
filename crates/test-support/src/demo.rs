//! The demo MCP server: a handful of tools with known, scriptable behaviour.
//!
//! Every tool answers exactly one text content item (or a JSON-RPC error), so tests can
//! assert on the outcome without knowing rmcp's result shapes in detail.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::handler::server::tool::Extension;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::wrapper::Parameters,
    model::{CallToolResult, ContentBlock, ProgressNotificationParam, SubscriptionFilter},
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::Deserialize;
use tokio::time::Instant;
use tower_armor_correlation_id::span_from_parts;
use tracing::Instrument;

type Parts = Extension<http::request::Parts>;

/// Names of the tools [`DemoServer`] offers, in declaration order.
pub const DEMO_TOOLS: &[&str] = &[
    "add", "echo", "slow", "progress", "fail", "crash", "unstable",
];

/// Name the demo server reports in its server info.
pub const DEMO_SERVER_NAME: &str = "tower-armor-demo";

/// Instructions the demo server reports in its server info. They name no tool: behind a tool
/// allow-list, `initialize` and `server/discover` answers reach principals limited to some
/// tools, and a name here would show them the hidden ones (`tools/list` is filtered per
/// principal).
pub const DEMO_INSTRUCTIONS: &str =
    "Test server of tower-armor. tools/list shows the tools you may call.";

/// Counters a test reads to observe what the demo server's long-running tools did.
///
/// `slow_*` count calls of the `slow` tool; `in_flight` is a gauge of `slow` and
/// `progress` calls whose handler is currently running.
#[derive(Debug, Default)]
pub struct DemoStats {
    /// `slow` calls whose handler started.
    pub slow_started: AtomicU64,
    /// `slow` calls that slept their full duration and answered.
    pub slow_finished: AtomicU64,
    /// `slow` calls that ended early: their cancellation token fired (a
    /// `notifications/cancelled`, a closed stateless stream, server shutdown) or their
    /// handler future was dropped before finishing.
    pub slow_cancelled: AtomicU64,
    /// `slow` and `progress` handlers running right now.
    pub in_flight: AtomicI64,
}

impl DemoStats {
    /// A fresh, shareable set of counters.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Current value of [`DemoStats::slow_started`].
    pub fn slow_started(&self) -> u64 {
        self.slow_started.load(Ordering::SeqCst)
    }

    /// Current value of [`DemoStats::slow_finished`].
    pub fn slow_finished(&self) -> u64 {
        self.slow_finished.load(Ordering::SeqCst)
    }

    /// Current value of [`DemoStats::slow_cancelled`].
    pub fn slow_cancelled(&self) -> u64 {
        self.slow_cancelled.load(Ordering::SeqCst)
    }

    /// Current value of the [`DemoStats::in_flight`] gauge.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Polls (every 5 ms) until `condition` holds or `within` has passed; returns whether
    /// it held. Handy to wait for a cancellation to reach the handler.
    pub async fn wait_until(
        &self,
        within: Duration,
        mut condition: impl FnMut(&DemoStats) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if condition(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Keeps the gauge and the `slow` counters right whichever way a handler ends, including
/// its future being dropped at an await point.
struct CallGuard {
    stats: Arc<DemoStats>,
    tracks_slow: bool,
    finished: bool,
}

impl CallGuard {
    fn enter(stats: &Arc<DemoStats>, tracks_slow: bool) -> Self {
        stats.in_flight.fetch_add(1, Ordering::SeqCst);
        if tracks_slow {
            stats.slow_started.fetch_add(1, Ordering::SeqCst);
        }
        Self {
            stats: Arc::clone(stats),
            tracks_slow,
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
        if self.tracks_slow {
            self.stats.slow_finished.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.tracks_slow && !self.finished {
            self.stats.slow_cancelled.fetch_add(1, Ordering::SeqCst);
        }
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct AddArgs {
    /// First addend.
    a: i64,
    /// Second addend.
    b: i64,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct EchoArgs {
    /// Text to send back.
    text: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct SlowArgs {
    /// How long to work, in milliseconds.
    ms: u64,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct ProgressArgs {
    /// Number of progress steps after the first notification.
    steps: u32,
    /// Pause before each step, in milliseconds.
    interval_ms: u64,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct FailArgs {
    /// Text of the failed tool result.
    message: String,
}

#[derive(Debug, Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct UnstableArgs {
    /// Answer -32603 when true, `ok` otherwise.
    fail: bool,
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn millis(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// The rmcp server handler behind [`crate::server::spawn_demo`].
///
/// Tools (each answers one text content item):
/// - `add(a, b)`: the sum, e.g. `"5"`;
/// - `echo(text)`: the text;
/// - `slow(ms)`: sleeps, then answers the elapsed milliseconds; ends early when the
///   call's cancellation token fires (counted in [`DemoStats`]);
/// - `progress(steps, interval_ms)`: with a `progressToken` in the request `_meta`, one
///   progress notification at once and one after each interval, then
///   `"done after N steps"`; without a token it just sleeps `steps × interval_ms`;
/// - `fail(message)`: a tool result with `isError: true` and the message;
/// - `crash()`: JSON-RPC error -32603;
/// - `unstable(fail)`: -32603 when `fail` is true, `"ok"` otherwise.
#[derive(Debug, Clone)]
pub struct DemoServer {
    stats: Arc<DemoStats>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

impl DemoServer {
    /// A demo server with its own, fresh [`DemoStats`].
    pub fn new() -> Self {
        Self::with_stats(DemoStats::new())
    }

    /// A demo server recording into `stats` (share one `Arc` between the server factory
    /// and the test).
    pub fn with_stats(stats: Arc<DemoStats>) -> Self {
        Self { stats }
    }

    /// The counters this server records into.
    pub fn stats(&self) -> &Arc<DemoStats> {
        &self.stats
    }
}

#[tool_router]
impl DemoServer {
    #[tool(description = "Add two integers; answers the sum as text.")]
    async fn add(
        &self,
        Extension(parts): Parts,
        Parameters(args): Parameters<AddArgs>,
    ) -> Result<String, ErrorData> {
        // rmcp runs handlers outside the request span: enter one built from the correlation id.
        let _span = span_from_parts(&parts).entered();
        tracing::info!(a = args.a, b = args.b, "add");
        args.a
            .checked_add(args.b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| ErrorData::invalid_params("integer overflow", None))
    }

    #[tool(description = "Answer the given text.")]
    async fn echo(
        &self,
        Extension(parts): Parts,
        Parameters(args): Parameters<EchoArgs>,
    ) -> String {
        let _span = span_from_parts(&parts).entered();
        tracing::info!(len = args.text.len(), "echo");
        args.text
    }

    #[tool(
        description = "Sleep `ms` milliseconds, then answer the elapsed milliseconds. Ends early when cancelled."
    )]
    async fn slow(
        &self,
        Extension(parts): Parts,
        Parameters(args): Parameters<SlowArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let span = span_from_parts(&parts);
        span.in_scope(|| tracing::info!(ms = args.ms, "slow"));
        let guard = CallGuard::enter(&self.stats, true);
        let started = Instant::now();
        let sleep = tokio::time::sleep(Duration::from_millis(args.ms)).instrument(span);
        tokio::select! {
            () = sleep => {
                guard.finish();
                Ok(millis(started.elapsed()).to_string())
            }
            () = context.ct.cancelled() => {
                drop(guard);
                Err(ErrorData::internal_error(
                    format!("slow call cancelled after {} ms", millis(started.elapsed())),
                    None,
                ))
            }
        }
    }

    #[tool(
        description = "Send a progress notification at once and one per interval (when the request has a progressToken), then answer."
    )]
    async fn progress(
        &self,
        Extension(parts): Parts,
        Parameters(args): Parameters<ProgressArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let span = span_from_parts(&parts);
        span.in_scope(|| tracing::info!(steps = args.steps, "progress"));
        let _guard = CallGuard::enter(&self.stats, false);
        let interval = Duration::from_millis(args.interval_ms);
        let total = f64::from(args.steps);
        let token = context.meta.get_progress_token();
        let work = async {
            match token {
                Some(token) => {
                    for step in 0..=args.steps {
                        if step > 0 {
                            tokio::time::sleep(interval).await;
                        }
                        let param = ProgressNotificationParam::new(token.clone(), f64::from(step))
                            .with_total(total)
                            .with_message(format!("step {step} of {}", args.steps));
                        context.peer.notify_progress(param).await.map_err(|error| {
                            ErrorData::internal_error(
                                format!("progress notification not sent: {error}"),
                                None,
                            )
                        })?;
                    }
                }
                None => tokio::time::sleep(interval.saturating_mul(args.steps)).await,
            }
            Ok::<_, ErrorData>(format!("done after {} steps", args.steps))
        }
        .instrument(span);
        tokio::select! {
            outcome = work => outcome,
            () = context.ct.cancelled() => {
                Err(ErrorData::internal_error("progress call cancelled", None))
            }
        }
    }

    #[tool(description = "Answer a tool result with isError: true and the message as text.")]
    async fn fail(
        &self,
        Extension(parts): Parts,
        Parameters(args): Parameters<FailArgs>,
    ) -> CallToolResult {
        let _span = span_from_parts(&parts).entered();
        tracing::info!("fail");
        CallToolResult::error(vec![ContentBlock::text(args.message)])
    }

    #[tool(description = "Answer a JSON-RPC internal error (-32603).")]
    async fn crash(&self, Extension(parts): Parts) -> Result<CallToolResult, ErrorData> {
        let _span = span_from_parts(&parts).entered();
        tracing::info!("crash");
        Err(ErrorData::internal_error("crash requested", None))
    }

    #[tool(description = "Answer -32603 when `fail` is true, the text `ok` otherwise.")]
    async fn unstable(
        &self,
        Extension(parts): Parts,
        Parameters(args): Parameters<UnstableArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let _span = span_from_parts(&parts).entered();
        tracing::info!(fail = args.fail, "unstable");
        if args.fail {
            Err(ErrorData::internal_error("unstable call failed", None))
        } else {
            Ok(text_result("ok"))
        }
    }
}

#[tool_handler(
    name = "tower-armor-demo",
    instructions = "Test server of tower-armor. tools/list shows the tools you may call."
)]
impl ServerHandler for DemoServer {
    /// Serves 2026-07-28 `subscriptions/listen` (without it rmcp answers `-32601`): every
    /// requested category is accepted, and rmcp cuts the filter down to what the server
    /// advertises. The stream stays open (rmcp's default `listen`) until the client closes it or
    /// the server shuts down, so the layers' long-lived-stream handling (stream slots, idle
    /// timeout, drain) can be exercised end to end.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_lists_the_demo_tools() {
        let names: Vec<String> = DemoServer::tool_router()
            .list_all()
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        let mut expected: Vec<String> = DEMO_TOOLS.iter().map(|name| (*name).to_owned()).collect();
        let mut got = names.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
    }

    #[test]
    fn info_names_the_server() {
        let info = DemoServer::new().get_info();
        assert_eq!(info.server_info.name, DEMO_SERVER_NAME);
        assert_eq!(info.instructions.as_deref(), Some(DEMO_INSTRUCTIONS));
    }
}
