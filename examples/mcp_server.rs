//! A hardened MCP server: rmcp's streamable-HTTP service mounted in axum at `/mcp`, wrapped in
//! every tower-armor layer in the documented order, with `/healthz`, `/readyz` (503 while
//! draining) and a break-glass admin endpoint for the circuit breakers.
//!
//! ```text
//! cargo run --example mcp_server                                   # 127.0.0.1:8080, auth off
//! MCP_BEARER_TOKEN=alice:s3cret,bob:hunter2 cargo run --example mcp_server
//! MCP_ADDR=127.0.0.1:9000 RUST_LOG=debug cargo run --example mcp_server
//! ```
//!
//! Every setting comes from the environment and is validated before the server starts; a bad
//! value exits with status 2 and names the variable. The full list is in
//! `docs/configuration.md`; the example's own are `MCP_ADDR` (default `127.0.0.1:8080`),
//! `MCP_ALLOWED_HOSTS` (the `Host` values served; default: loopback names on a loopback
//! address, any host otherwise), `MCP_DRAIN_GRACE_MS` (how long calls in flight may finish
//! after SIGTERM; default 5000), `MCP_MAX_BODY_BYTES` (default 4 MiB), `MCP_BODY_TIMEOUT_MS`
//! (the whole request body must arrive within it, else 408; a request's headers too, else the
//! connection is closed; default 30000; 0 turns the body's deadline off, the headers' stays at
//! 30000), `MCP_MAX_CONNECTIONS` (connections served at once; default 512),
//! `MCP_MAX_CONNECTIONS_PER_IP` (of which one client address may hold; default half, and then
//! not for loopback addresses), `MCP_REPLAY_EVENTS` (events of each stream rmcp keeps to replay
//! on a resumption; default 256), `MCP_CALL_TIMEOUT_MS`
//! (default here: 60000) and `RUST_LOG` (default `info,rmcp=warn`, logs on stderr). A request's headers
//! may take at most 64 KiB (431 past it).
//!
//! The breakers' probe lease (`MCP_BREAKER_PROBE_LEASE_MS`) defaults here to the longest a call
//! can run under the timeout layer (plus the bulkhead's wait limit), and a shorter one is
//! refused: a slow half-open probe must not be settled as failed while it may still succeed.
//! Without `MCP_BULKHEAD_MAX_WAIT_MS` a wait in the bulkhead's line has no bound, so it is not
//! counted: a probe queued behind calls of its tool admitted before the trip for longer than
//! the lease is settled as failed. Set a wait limit to count it.
//!
//! Without `MCP_BEARER_TOKEN` auth is off (a warning is logged), and the server refuses to bind a
//! non-loopback address unless `MCP_AUTH_DISABLED=true`. `MCP_ADMIN_PRINCIPALS` names who may
//! use the admin routes (unset: every principal the tool allow-list does not restrict).
//!
//! The stack, outer → inner (DESIGN §4):
//!
//! ```text
//! correlation-id → sse → bearer-auth → inspect → adopt _meta trace → tool allow-list
//!   → learn tools → rate-limit → rescue → circuit-breaker (per tool) → bulkhead (per tool) → timeout → rmcp
//! ```
//!
//! Demo tools: `add`, `echo`, `slow`, `progress`, `fail`, `crash`, `unstable`. Their names are
//! handed to every layer that keys by tool, so a client cannot mint keys with made-up names; a
//! tool the server registers later gets its own keys once a `tools/list` answer names it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt};
use tower_armor_bearer_auth::BearerAuthLayer;
use tower_armor_bearer_auth::allow::{AllowPolicy, ToolAllowListLayer};
use tower_armor_bulkhead::{BulkheadLayer, BulkheadStats};
use tower_armor_circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, KeyBy};
use tower_armor_correlation_id::{AdoptMetaTraceLayer, CorrelationIdLayer};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{KnownTools, Principal, RescueLayer};
use tower_armor_rate_limit::RateLimitLayer;
use tower_armor_sse::{SseLayer, SseShutdown};
use tower_armor_test_support::{DEMO_TOOLS, ServerOptions, demo_service};
use tower_armor_timeout::{CallDrain, TimeoutLayer};

/// The deadline of a call when `MCP_CALL_TIMEOUT_MS` is not set.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The `retry` rmcp puts in its SSE streams (its default): how long clients wait before they
/// resume a broken stream.
const RMCP_SSE_RETRY: Duration = Duration::from_secs(3);

/// Every variable this server reads (besides `RUST_LOG`), as `docs/configuration.md` lists
/// them. Any other `MCP_*` variable gets a warning at start: a typo such as `MCP_BEARER_TOKENS`
/// would otherwise leave auth off with only the generic warning.
pub const ENV_VARS: [&str; 40] = [
    "MCP_ADDR",
    "MCP_ADMIN_PRINCIPALS",
    "MCP_ALLOWED_HOSTS",
    "MCP_AUTH_DISABLED",
    "MCP_AUTH_REALM",
    "MCP_BEARER_TOKEN",
    "MCP_BEARER_TOKEN_FILE",
    "MCP_BODY_TIMEOUT_MS",
    "MCP_BREAKER_FAILURE_RATE",
    "MCP_BREAKER_HALF_OPEN_CALLS",
    "MCP_BREAKER_MIN_CALLS",
    "MCP_BREAKER_OPEN_MS",
    "MCP_BREAKER_PROBE_LEASE_MS",
    "MCP_BREAKER_WINDOW",
    "MCP_BULKHEAD_MAX_CONCURRENT",
    "MCP_BULKHEAD_MAX_QUEUE",
    "MCP_BULKHEAD_MAX_WAIT_MS",
    "MCP_BULKHEAD_STREAMS_PER_PRINCIPAL",
    "MCP_CALL_MAX_PAUSE_MS",
    "MCP_CALL_RESUME_GRACE_MS",
    "MCP_CALL_TIMEOUT_MAX_MS",
    "MCP_CALL_TIMEOUT_MS",
    "MCP_CALL_TIMEOUT_RESET_ON_PROGRESS",
    "MCP_DRAIN_GRACE_MS",
    "MCP_MAX_BODY_BYTES",
    "MCP_MAX_CONNECTIONS",
    "MCP_MAX_CONNECTIONS_PER_IP",
    "MCP_RATE_LIMIT_BURST",
    "MCP_RATE_LIMIT_FORWARDED_HEADER",
    "MCP_RATE_LIMIT_KEY",
    "MCP_RATE_LIMIT_MAX_KEYS",
    "MCP_RATE_LIMIT_PER_MINUTE",
    "MCP_RATE_LIMIT_TOOLS",
    "MCP_RATE_LIMIT_TRUSTED_PROXIES",
    "MCP_REPLAY_EVENTS",
    "MCP_REQUEST_ID_HEADER",
    "MCP_RESOURCE_METADATA_URL",
    "MCP_SSE_IDLE_TIMEOUT_SECONDS",
    "MCP_SSE_KEEPALIVE_SECONDS",
    "MCP_TOOL_ALLOW",
];

/// Everything the example reads from the environment, validated.
#[derive(Debug)]
pub struct Settings {
    /// Where to listen (`MCP_ADDR`).
    pub addr: SocketAddr,
    /// The inspector's body limit (`MCP_MAX_BODY_BYTES`), also rmcp's own.
    pub max_body_bytes: usize,
    /// The `Host` values rmcp serves (`MCP_ALLOWED_HOSTS`); `None` is rmcp's default (loopback
    /// names), an empty list any host.
    pub allowed_hosts: Option<Vec<String>>,
    /// The inspector's body-read deadline (`MCP_BODY_TIMEOUT_MS`, 0 = off).
    pub body_timeout: Duration,
    /// The accept loop's limits (`MCP_BODY_TIMEOUT_MS`, `MCP_MAX_CONNECTIONS`).
    pub connections: ConnectionLimits,
    /// Correlation ids (`MCP_REQUEST_ID_HEADER`).
    pub correlation: CorrelationIdLayer,
    /// SSE pass-through (`MCP_SSE_KEEPALIVE_SECONDS`, `MCP_SSE_IDLE_TIMEOUT_SECONDS`).
    pub sse: SseLayer,
    /// Bearer auth (`MCP_BEARER_TOKEN`, `MCP_BEARER_TOKEN_FILE`, …).
    pub auth: BearerAuthLayer,
    /// Tool allow-list (`MCP_TOOL_ALLOW`).
    pub allow: ToolAllowListLayer,
    /// Who may use the admin routes (`MCP_ADMIN_PRINCIPALS`); `None`: every principal the
    /// allow-list does not restrict.
    pub admins: Option<Vec<String>>,
    /// Rate limits (`MCP_RATE_LIMIT_*`).
    pub rate_limit: RateLimitLayer,
    /// Circuit breakers, one per demo tool (`MCP_BREAKER_*`).
    pub breaker: CircuitBreakerLayer,
    /// Bulkheads, one per demo tool (`MCP_BULKHEAD_*`).
    pub bulkhead: BulkheadLayer,
    /// The tool names that key the per-tool layers: the demo's, plus any the server's
    /// `tools/list` answers name (learned by the stack).
    pub tools: KnownTools,
    /// Per-call deadline (`MCP_CALL_TIMEOUT_MS`, …).
    pub timeout: TimeoutLayer,
    /// How long calls in flight may take to finish after SIGTERM (`MCP_DRAIN_GRACE_MS`).
    pub drain_grace: Duration,
    /// Events of each stream rmcp keeps to replay on a resumption (`MCP_REPLAY_EVENTS`).
    pub replay_events: usize,
}

impl Settings {
    /// Reads the process environment. A variable that is not valid UTF-8 is an error, not
    /// "unset" (an unreadable `MCP_BEARER_TOKEN` must not turn auth off).
    pub fn from_env() -> Result<Self, String> {
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str().filter(|k| k.starts_with("MCP_")) else {
                continue;
            };
            if !ENV_VARS.contains(&k) {
                tracing::warn!("{k} is not a setting this server reads (a typo?)");
            } else if v.to_str().is_none() {
                return Err(format!("{k}: not valid UTF-8"));
            }
        }
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup` (tests pass a map); every error names its variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String> + Copy) -> Result<Self, String> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim_ascii().is_empty());
        let addr = match get("MCP_ADDR") {
            Some(v) => v.trim_ascii().parse().map_err(|_| {
                format!(
                    "MCP_ADDR: {} is not an IP address and port (e.g. 127.0.0.1:8080 or \
                     [::1]:8080; host names are not resolved)",
                    tower_armor_mcp::env::shown(&v)
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let max_body_bytes = match get("MCP_MAX_BODY_BYTES") {
            Some(v) => match tower_armor_mcp::env::number::<usize>(&v) {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(format!(
                        "MCP_MAX_BODY_BYTES: expected a positive integer, got {}",
                        tower_armor_mcp::env::shown(&v)
                    ));
                }
            },
            None => McpInspectLayer::DEFAULT_MAX_BODY,
        };
        let allowed_hosts = allowed_hosts(get("MCP_ALLOWED_HOSTS").as_deref(), addr)?;
        let drain_grace = match get("MCP_DRAIN_GRACE_MS") {
            Some(v) => match tower_armor_mcp::env::number::<u64>(&v) {
                Ok(ms) if Duration::from_millis(ms) <= MAX_DRAIN_GRACE => Duration::from_millis(ms),
                _ => {
                    return Err(format!(
                        "MCP_DRAIN_GRACE_MS: expected milliseconds from 0 to {}, got {}",
                        MAX_DRAIN_GRACE.as_millis(),
                        tower_armor_mcp::env::shown(&v)
                    ));
                }
            },
            None => DEFAULT_DRAIN_GRACE,
        };
        let replay_events = match get("MCP_REPLAY_EVENTS") {
            Some(v) => match tower_armor_mcp::env::number::<usize>(&v) {
                Ok(n) if (MIN_REPLAY_EVENTS..=MAX_REPLAY_EVENTS).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "MCP_REPLAY_EVENTS: expected a count from {MIN_REPLAY_EVENTS} to \
                         {MAX_REPLAY_EVENTS}, got {}",
                        tower_armor_mcp::env::shown(&v)
                    ));
                }
            },
            None => DEFAULT_REPLAY_EVENTS,
        };
        let body_timeout = match get("MCP_BODY_TIMEOUT_MS") {
            Some(v) => match tower_armor_mcp::env::number::<u64>(&v) {
                // It also bounds how long a request's headers may take: under 100 ms a head
                // split over two packets would be cut off.
                Ok(ms)
                    if ms == 0
                        || (MIN_BODY_TIMEOUT_MS
                            ..=McpInspectLayer::MAX_BODY_TIMEOUT.as_millis())
                            .contains(&u128::from(ms)) =>
                {
                    Duration::from_millis(ms)
                }
                _ => {
                    return Err(format!(
                        "MCP_BODY_TIMEOUT_MS: expected 0 (off) or milliseconds from \
                         {MIN_BODY_TIMEOUT_MS} to {}, got {}",
                        McpInspectLayer::MAX_BODY_TIMEOUT.as_millis(),
                        tower_armor_mcp::env::shown(&v)
                    ));
                }
            },
            None => McpInspectLayer::DEFAULT_BODY_TIMEOUT,
        };
        // A count of connections, from 1 to `MAX_CONNECTIONS_LIMIT`.
        let connection_count = |var: &str, default: usize| match get(var) {
            Some(v) => match tower_armor_mcp::env::number::<usize>(&v) {
                Ok(n) if (1..=MAX_CONNECTIONS_LIMIT).contains(&n) => Ok(n),
                _ => Err(format!(
                    "{var}: expected an integer from 1 to {MAX_CONNECTIONS_LIMIT}, got {}",
                    tower_armor_mcp::env::shown(&v)
                )),
            },
            None => Ok(default),
        };
        let max_connections = connection_count(
            "MCP_MAX_CONNECTIONS",
            ConnectionLimits::DEFAULT_MAX_CONNECTIONS,
        )?;
        let max_per_ip = connection_count(
            "MCP_MAX_CONNECTIONS_PER_IP",
            ConnectionLimits::default_per_ip(max_connections),
        )?;
        // Set, it holds for every address; by default not for loopback ones.
        let per_ip_on_loopback = get("MCP_MAX_CONNECTIONS_PER_IP").is_some();
        if max_per_ip > max_connections {
            return Err(format!(
                "MCP_MAX_CONNECTIONS_PER_IP: {max_per_ip} is above MCP_MAX_CONNECTIONS \
                 ({max_connections}), so it could never apply; set it to at most \
                 {max_connections}, or leave it unset for half"
            ));
        }
        let connections = ConnectionLimits {
            // Turning the body's deadline off must not leave a connection free to take forever
            // over its headers (or idle on keep-alive): those keep the default.
            header_timeout: if body_timeout.is_zero() {
                McpInspectLayer::DEFAULT_BODY_TIMEOUT
            } else {
                body_timeout
            },
            max_connections,
            max_per_ip,
            per_ip_on_loopback,
        };
        let tools = KnownTools::from_names(DEMO_TOOLS);
        let auth = BearerAuthLayer::from_lookup(lookup).map_err(|e| e.to_string())?;
        tower_armor_bearer_auth::check_bind_with(addr, auth.is_enabled(), lookup)
            .map_err(|e| e.to_string())?;
        // The example always bounds calls: MCP_CALL_TIMEOUT_MS defaults to 60 s here.
        let default_ms = DEFAULT_CALL_TIMEOUT.as_millis().to_string();
        let timeout = TimeoutLayer::from_lookup(|k| match k {
            "MCP_CALL_TIMEOUT_MS" => get(k).or_else(|| Some(default_ms.clone())),
            _ => lookup(k),
        })
        .map_err(|e| {
            let e = e.to_string();
            if get("MCP_CALL_TIMEOUT_MS").is_none() && e.contains("MCP_CALL_TIMEOUT_MS") {
                format!("{e} (MCP_CALL_TIMEOUT_MS is unset: {default_ms} ms in this server)")
            } else {
                e
            }
        })?
        .ok_or("MCP_CALL_TIMEOUT_MS: missing")?;
        // Clients that follow the SSE `retry` rmcp sends (both official SDKs) resume a broken
        // stream only once it has passed: a grace not comfortably longer cancels their calls
        // just before they come back.
        let grace = timeout.resume_grace();
        if !grace.is_zero() && grace < RMCP_SSE_RETRY + Duration::from_millis(500) {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                retry_ms = RMCP_SSE_RETRY.as_millis(),
                "MCP_CALL_RESUME_GRACE_MS is not above the SSE retry clients wait before \
                 resuming: calls whose streams break are cancelled before the official SDKs \
                 resume them (set 3500 or more)"
            );
        }
        // A rule naming a principal with no token (a typo) restricts no one: refused when the
        // tokens are fixed (with a token file, a reload may bring the name: not checked).
        let allow = ToolAllowListLayer::from_lookup(lookup)
            .map_err(|e| e.to_string())?
            .require_known_principals(&auth)
            .map_err(|e| e.to_string())?;
        let admins = admin_principals(get("MCP_ADMIN_PRINCIPALS").as_deref(), &auth, &allow)?;
        if !auth.is_enabled() && get("MCP_TOOL_ALLOW").is_some() {
            tracing::warn!(
                "MCP_TOOL_ALLOW has no effect while auth is off: without a principal every \
                 caller may call every tool"
            );
        }
        let bulkhead = BulkheadLayer::from_lookup(lookup)
            .map_err(|e| e.to_string())?
            .by_tool(tools.clone())
            // Streams without a principal (auth off) count per client address.
            .peer_addr_with(|ext| {
                ext.get::<axum::extract::ConnectInfo<SocketAddr>>()
                    .map(|c| c.0)
            });
        let breaker = probe_lease_for(
            tower_armor_circuit_breaker::Builder::from_lookup(lookup)
                .map_err(|e| e.to_string())?
                .key_by(KeyBy::Tool(tools.clone())),
            get(tower_armor_circuit_breaker::ENV_PROBE_LEASE_MS).is_some(),
            &timeout,
            &bulkhead,
        )?;
        let correlation = CorrelationIdLayer::from_lookup(lookup).map_err(|e| e.to_string())?;
        let rate_limit = tower_armor_rate_limit::Builder::from_lookup(lookup)
            .map_err(|e| e.to_string())?
            .known_tools(tools.clone())
            .build()
            .map_err(|e| e.to_string())?;
        if let tower_armor_rate_limit::KeyBy::Header(key) = rate_limit.key_by() {
            // The correlation id is logged in every request span and echoed: never a key.
            // (The default, `x-request-id`, the rate limit refuses by itself.)
            if key == correlation.header() {
                return Err(format!(
                    "MCP_REQUEST_ID_HEADER: {key} is the header MCP_RATE_LIMIT_KEY keys clients \
                     by; the correlation id would log and echo the key"
                ));
            }
            // Bearer auth removes it (auth on or off) before the rate limit: every client would
            // count by its IP.
            if *key == axum::http::header::AUTHORIZATION {
                return Err(
                    "MCP_RATE_LIMIT_KEY: bearer auth removes Authorization before the rate limit \
                     sees it; key by principal (the default) instead"
                        .to_owned(),
                );
            }
        }
        Ok(Settings {
            addr,
            max_body_bytes,
            allowed_hosts,
            drain_grace,
            replay_events,
            body_timeout,
            connections,
            correlation,
            sse: SseLayer::from_lookup(lookup).map_err(|e| e.to_string())?,
            auth,
            allow,
            admins,
            rate_limit,
            breaker,
            bulkhead,
            tools,
            timeout,
        })
    }

    /// Settings for tests: loopback, auth off, defaults, plus the given variables.
    pub fn for_tests(vars: &[(&str, &str)]) -> Result<Self, String> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([("MCP_ADDR".to_owned(), "127.0.0.1:0".to_owned())])
            .collect();
        let map = Box::leak(Box::new(map));
        Self::from_lookup(|k| map.get(k).cloned())
    }
}

/// The `Host` values rmcp serves, from `MCP_ALLOWED_HOSTS`: a comma-separated list of host
/// names or `host:port` authorities, or `*` for any host.
///
/// rmcp answers any other `Host` with 403, which protects a server on loopback from DNS
/// rebinding (a web page whose name resolves to 127.0.0.1 talking to it from the browser). Unset,
/// a loopback address keeps rmcp's loopback names; any other address serves every `Host`, with a
/// warning at start, since the names clients use behind a load balancer or a DNS name cannot be
/// guessed from the bind address (and auth is on there, unless `MCP_AUTH_DISABLED=true`).
pub fn allowed_hosts(value: Option<&str>, addr: SocketAddr) -> Result<Option<Vec<String>>, String> {
    let Some(value) = value.map(str::trim_ascii) else {
        if addr.ip().is_loopback() {
            return Ok(None);
        }
        tracing::warn!(
            %addr,
            "MCP_ALLOWED_HOSTS is not set: serving requests for any Host on a non-loopback \
             address; set it to the names clients use (e.g. mcp.example.com) to refuse others"
        );
        return Ok(Some(Vec::new()));
    };
    if value == "*" {
        return Ok(Some(Vec::new()));
    }
    tower_armor_mcp::env::list(value)
        .map_err(|e| format!("MCP_ALLOWED_HOSTS: {e}"))?
        .into_iter()
        .map(|entry| {
            if allowed_host_entry(entry) {
                Ok(entry.to_ascii_lowercase())
            } else {
                Err(format!(
                    "MCP_ALLOWED_HOSTS: {entry:?} is not a host name or host:port \
                     (expected e.g. mcp.example.com,mcp.example.com:8443, or * for any host)"
                ))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Whether an `MCP_ALLOWED_HOSTS` entry is a name a client can send in `Host`: a DNS name
/// (dot-separated labels of letters, digits, `-` and `_`, none empty, none starting or ending
/// with `-`) or an IPv4 address, or an IPv6 address in brackets, each with an optional port
/// from 1 to 65535 written in digits; or a bare IPv6 address, as in rmcp's own default (`::1`).
fn allowed_host_entry(entry: &str) -> bool {
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return true;
    }
    let (name, port) = match entry.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if v6.parse::<std::net::Ipv6Addr>().is_ok() => ("", port),
            _ => return false,
        },
        None => entry.split_at(entry.find(':').unwrap_or(entry.len())),
    };
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => tower_armor_mcp::env::port(digits).is_some(),
    };
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let name_ok = entry.starts_with('[')
        || name.parse::<std::net::Ipv4Addr>().is_ok()
        || (name.len() <= 253 && name.split('.').all(label_ok));
    port_ok && name_ok
}

/// Builds the breaker with a probe lease that outlasts any call below it.
///
/// A half-open probe passes the bulkhead's line and then runs under the timeout layer, which
/// ends it at the latest after [`TimeoutLayer::longest_call`] (deadline, pauses while the
/// client is asked, grace). A lease shorter than that settles a slow probe as failed although
/// it may still succeed, so the circuit reopens for nothing. Unset, the lease is made long
/// enough (never shorter than the breaker's default); set shorter, it is a configuration
/// error naming the variables involved. A bulkhead line without `MCP_BULKHEAD_MAX_WAIT_MS` is
/// unbounded and not counted.
fn probe_lease_for(
    builder: tower_armor_circuit_breaker::Builder,
    lease_set: bool,
    timeout: &TimeoutLayer,
    bulkhead: &BulkheadLayer,
) -> Result<CircuitBreakerLayer, String> {
    let built = |b: tower_armor_circuit_breaker::Builder| b.build().map_err(|e| e.to_string());
    let Some(longest) = timeout.longest_call() else {
        return built(builder);
    };
    let needed = longest.saturating_add(bulkhead.max_wait_limit().unwrap_or_default());
    if !lease_set {
        let lease = needed.max(tower_armor_circuit_breaker::DEFAULT_PROBE_LEASE);
        return built(builder.probe_lease(lease));
    }
    let layer = built(builder)?;
    if layer.probe_lease() < needed {
        return Err(format!(
            "{}: a half-open probe may run {} ms (MCP_CALL_TIMEOUT_MS or MCP_CALL_TIMEOUT_MAX_MS, \
             MCP_CALL_MAX_PAUSE_MS and MCP_BULKHEAD_MAX_WAIT_MS), longer than its lease of {} ms; \
             a slow probe would count as failed",
            tower_armor_circuit_breaker::ENV_PROBE_LEASE_MS,
            needed.as_millis(),
            layer.probe_lease().as_millis(),
        ));
    }
    Ok(layer)
}

/// The running application's parts.
#[derive(Debug)]
pub struct App {
    /// `/mcp` (the hardened MCP service), `/healthz`, `/readyz`, `/admin/breakers…`.
    pub router: Router,
    /// Cancelling it ends every rmcp session.
    pub rmcp_shutdown: CancellationToken,
    /// Ends every open SSE stream cleanly.
    pub sse_shutdown: SseShutdown,
    /// Ends every call in flight with a final error, and refuses later ones, at the end of the
    /// drain grace.
    pub call_drain: CallDrain,
    /// The break-glass switch of the circuit breakers.
    pub breakers: CircuitBreakerHandle,
    /// Bulkhead counters.
    pub bulkheads: BulkheadStats,
    /// How long calls in flight may take to finish once a shutdown starts.
    pub drain_grace: Duration,
}

/// Builds the hardened server from validated settings.
pub fn app(settings: Settings) -> App {
    // The SSE layer sends keep-alives at event boundaries; rmcp's own would be redundant.
    let rmcp = demo_service(&ServerOptions {
        keep_alive: None,
        allowed_hosts: settings.allowed_hosts.clone(),
        // The inspector refuses bodies over the limit first (413 with a JSON-RPC error); rmcp's
        // own limit must not be lower, or a raised limit would stop at rmcp's 4 MiB.
        max_body_bytes: Some(settings.max_body_bytes),
        replay_events: settings.replay_events,
        ..ServerOptions::default()
    });
    let rmcp_shutdown = rmcp.config.cancellation_token.clone();
    let sse_shutdown = settings.sse.shutdown_handle();
    let call_drain = settings.timeout.drain_handle();
    let readiness = call_drain.clone();
    let breakers = settings.breaker.handle();
    let bulkheads = settings.bulkhead.stats();
    let drain_grace = settings.drain_grace;
    if !settings.auth.is_enabled() {
        tracing::warn!(
            "MCP_BEARER_TOKEN is not set: authentication is OFF (local development only)"
        );
    }

    let allow_policy = std::sync::Arc::new(settings.allow.policy().clone());
    // The correlation-id layer, first in the stack, wraps the whole router (below).
    let mcp = ServiceBuilder::new()
        .layer(settings.sse)
        .layer(settings.auth.clone())
        .layer(
            McpInspectLayer::new()
                .max_body_bytes(settings.max_body_bytes)
                .body_timeout(settings.body_timeout),
        )
        .layer(AdoptMetaTraceLayer::new())
        .layer(settings.allow)
        // Inside the allow-list, which hides tools per principal: it sees the whole catalogue.
        .layer(settings.tools.learn_layer())
        .layer(settings.rate_limit)
        .layer(RescueLayer::new())
        .layer(settings.breaker)
        .layer(settings.bulkhead)
        .layer(settings.timeout)
        .service(rmcp);

    // The admin routes are behind the same bearer auth as `/mcp`. They name every tool that has
    // a circuit, so a principal the allow-list limits to some tools gets the 404 of a route that
    // does not exist: otherwise they would be an oracle for its hidden tools. Every method is
    // routed to the handler, which checks the caller before the method: axum's own 405 (with
    // its `Allow`) would tell anybody that the routes exist.
    let admin = Router::new()
        .route("/admin/breakers", any(list_breakers))
        .route("/admin/breakers/{key}/{action}", any(control_breaker))
        .with_state(Admin {
            breakers: breakers.clone(),
            allow: allow_policy,
            admins: settings.admins.map(Into::into),
        })
        // Only the admin routes: an unknown path gets a plain 404, with or without a token.
        .route_layer(settings.auth)
        // A session id means nothing here: dropped before bearer-auth, whose session binding
        // would otherwise take this route's 404 ("no such circuit") for the session's end.
        .route_layer(axum::middleware::map_request(
            |mut req: axum::extract::Request| async move {
                req.headers_mut().remove("mcp-session-id");
                req
            },
        ))
        // Checked first: with auth off (loopback), nothing else stands between the routes and a
        // web page the browser runs.
        .route_layer(axum::middleware::from_fn_with_state(
            SameSite::new(settings.allowed_hosts.as_deref()),
            same_site_only,
        ));

    // Correlation ids on every answer: `/mcp`, the admin routes, `/healthz` and the 404 of an
    // unknown path. `/mcp` is one route, not a nest: nested, `GET /mcp/healthz` would reach the
    // stack as `/healthz` and pass bearer-auth's health-check exemption. rmcp's own `Host`
    // check comes last in the stack: the same check first keeps the layers between (the
    // allow-list, the rate limit, the breaker, the bulkhead) from answering a host rmcp would
    // refuse, and so from telling it anything (an open circuit, a quota).
    let router = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(
            SameSite::new(settings.allowed_hosts.as_deref()),
            allowed_host_only,
        ))
        .merge(admin)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(move || ready(readiness.clone())))
        // A handler like the admin routes' refusal, so that every 404 is built the same way:
        // axum's default one leaves `Content-Length` out of a `HEAD` answer, and the
        // difference would tell a refused principal that the admin routes exist.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(settings.correlation);
    App {
        router,
        rmcp_shutdown,
        sse_shutdown,
        call_drain,
        breakers,
        bulkheads,
        drain_grace,
    }
}

/// What the accept loop ([`serve`]) bounds before any layer runs: no layer has a request until
/// its headers are in.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within it, or hyper closes the connection; an idle
    /// keep-alive connection waits for its next request's headers, so it is closed after that
    /// long too (clients open a new one).
    pub header_timeout: Duration,
    /// Connections served at once. At the limit the loop stops accepting until one ends (new
    /// ones wait in the listen backlog): a flood of idle or half-sent connections costs at most
    /// this many file descriptors and [`MAX_HEADER_BYTES`] each.
    pub max_connections: usize,
    /// Connections one client address (an IPv6 address by its /64) may hold at once; past it a
    /// new one is closed at once, so one address cannot take every connection.
    pub max_per_ip: usize,
    /// Whether [`max_per_ip`](Self::max_per_ip) holds for loopback addresses too: by default
    /// not (`MCP_MAX_CONNECTIONS_PER_IP` unset), since a loopback peer is a local reverse proxy,
    /// through which every client comes, or a local client, whose sessions each hold several
    /// connections (its listen stream, each call's stream, its HTTP pool: 50 SDK sessions took
    /// about 400). Set explicitly, the variable holds for every address.
    pub per_ip_on_loopback: bool,
}

impl ConnectionLimits {
    /// The default of `MCP_MAX_CONNECTIONS`: 512, under the common 1,024 file descriptors per
    /// process with room to spare. Raise both together.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

    /// The default of `MCP_MAX_CONNECTIONS_PER_IP`: half of `max_connections` (at least 1).
    pub fn default_per_ip(max_connections: usize) -> usize {
        (max_connections / 2).max(1)
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: McpInspectLayer::DEFAULT_BODY_TIMEOUT,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_per_ip: Self::default_per_ip(Self::DEFAULT_MAX_CONNECTIONS),
            per_ip_on_loopback: false,
        }
    }
}

/// Open connections per client address, for [`ConnectionLimits::max_per_ip`]. An address has
/// an entry only while it holds a connection, so the table is bounded by the connection limit.
#[derive(Clone, Default)]
struct PerAddress(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>);

impl PerAddress {
    /// A slot for a connection from `ip`, unless the address already holds `max`.
    fn take(&self, ip: IpAddr, max: usize) -> Option<AddressSlot> {
        let key = match ip.to_canonical() {
            // A host with IPv6 usually has a whole /64.
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            v4 => v4,
        };
        let mut table = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let held = table.entry(key).or_insert(0);
        if *held >= max {
            return None;
        }
        *held += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

/// One connection's place in [`PerAddress`], given back when dropped.
struct AddressSlot {
    table: PerAddress,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut table = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::hash_map::Entry::Occupied(mut e) = table.entry(self.key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }
}

/// While draining, how long a new connection may take to send its request's headers (and one
/// open before the drain that has not sent a whole request head yet): a client following up on
/// a call in flight sends at once, and a connection that sends nothing must not keep a drained
/// server up until its grace ends.
pub const DRAIN_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// While draining with no connection left but a dropped call waiting for its client to resume
/// it, how often [`serve`] checks again.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// While draining, how long [`serve`] still listens once no connection is left: a client that
/// just got a call's answer often follows up at once on a new connection (the Python SDK lists
/// the tools to check the answer, and fails the call if it cannot).
pub const DRAIN_LINGER: Duration = Duration::from_millis(250);

/// The shortest `MCP_BODY_TIMEOUT_MS` accepted other than 0 (off), in milliseconds.
pub const MIN_BODY_TIMEOUT_MS: u128 = 100;

/// The largest `MCP_MAX_CONNECTIONS` accepted.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// How long data written to a connection may stay unacknowledged (or unsent, behind a peer that
/// takes nothing) before the connection is dropped (Linux `TCP_USER_TIMEOUT`): a vanished peer
/// is noticed within about this plus the SSE keep-alive interval, and a client that reads
/// nothing for this long is let go.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// How many bytes a request's head (request line and headers) may take: past it, 431. hyper's
/// default buffer (about 400 KiB) let 1,000 half-sent requests hold 400 MB before any layer
/// could refuse them; the read buffer is bounded by the same figure.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves `router` on `listener`. Once `drain` is cancelled, every open connection is asked to
/// finish (an idle one closes, a busy one after its answer, one that has had no request yet
/// gets [`DRAIN_HEADER_TIMEOUT`] for one), while new ones are still accepted,
/// each for one request read within [`DRAIN_HEADER_TIMEOUT`] (a client's follow-up about a
/// call in flight; the app refuses new calls): it returns when no connection is left (and none
/// came for [`DRAIN_LINGER`]) and
/// `waited_for` says nothing else is (a call whose client will come back to resume it), or when
/// `stop` is cancelled, after asking every connection to finish (the caller bounds how long it
/// waits).
///
/// Like `axum::serve` with connect info (each request carries the peer's `ConnectInfo`), plus
/// what it lacks: the [`ConnectionLimits`] (a deadline for a request's headers, a bound on
/// connections) and a smaller header buffer ([`MAX_HEADER_BYTES`]). A client that opens a
/// connection and sends its headers slowly, or never finishes them, holds it before any layer
/// runs.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    drain: CancellationToken,
    stop: CancellationToken,
    waited_for: impl Fn() -> bool,
) {
    let mut connections = tokio::task::JoinSet::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_address = PerAddress::default();
    let mut saturated = false;
    let mut draining = false;
    // Since when the drained server has had nothing left (no connection, no call awaited).
    let mut idle_since = None;
    loop {
        if !draining && drain.is_cancelled() {
            draining = true;
        }
        // Drained: no connection left, so no call in flight to follow up on, and no dropped
        // call whose client will come back to resume it; and none came for a moment.
        let idle = draining && connections.is_empty();
        if idle && !waited_for() {
            let since = *idle_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= DRAIN_LINGER {
                break;
            }
        } else {
            idle_since = None;
        }
        let slot = match std::sync::Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if !saturated {
                    saturated = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; accepting again when one ends"
                    );
                }
                tokio::select! {
                    slot = std::sync::Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = stop.cancelled() => break,
                    () = drain.cancelled(), if !draining => continue,
                    Some(_) = connections.join_next(), if draining => continue,
                    () = tokio::time::sleep(DRAIN_POLL), if idle => continue,
                }
            }
        };
        // Warn again only once the load has fallen to half the limit (no log line per
        // connection while it stays near the limit).
        if slots.available_permits() >= limits.max_connections.div_ceil(2) {
            saturated = false;
        }
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // One connection that went away before it was accepted.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(error) => {
                    // Out of file descriptors and the like: try again in a while.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
            () = drain.cancelled(), if !draining => continue,
            Some(_) = connections.join_next(), if draining => continue,
            () = tokio::time::sleep(DRAIN_POLL), if idle => continue,
        };
        let address_slot = if !limits.per_ip_on_loopback && peer.ip().to_canonical().is_loopback() {
            None
        } else {
            let Some(slot) = per_address.take(peer.ip(), limits.max_per_ip) else {
                tracing::debug!(%peer, "connection closed: its address holds as many as it may");
                continue;
            };
            Some(slot)
        };
        // Small SSE frames go out at once, not after the peer's delayed ACK.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        // A peer that vanished without closing (its network went away) is noticed once the
        // keep-alive comments written to it stay unacknowledged this long, instead of after
        // TCP's own retries (about 15 minutes): its streams, their slots and a session's one
        // standalone stream are given back.
        #[cfg(target_os = "linux")]
        if let Err(error) =
            socket2::SockRef::from(&tcp).set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))
        {
            tracing::debug!(%error, "TCP_USER_TIMEOUT not set");
        }
        while connections.try_join_next().is_some() {}
        // Whether the connection has sent a whole request head yet (and a wake-up when it does).
        let first_request = std::sync::Arc::new(FirstRequest::default());
        let seen = std::sync::Arc::clone(&first_request);
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                seen.came();
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        );
        // Accepted as the drain began (the loop has not seen it yet): a drain connection.
        let draining = draining || drain.is_cancelled();
        // A connection open before the drain is asked to finish when it starts; one accepted
        // during it serves one request, then closes.
        let finish = if draining {
            stop.clone()
        } else {
            drain.clone()
        };
        connections.spawn(async move {
            let _slots = (slot, address_slot);
            let mut http1 = hyper::server::conn::http1::Builder::new();
            http1
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(if draining {
                    limits.header_timeout.min(DRAIN_HEADER_TIMEOUT)
                } else {
                    limits.header_timeout
                })
                .max_header_size(MAX_HEADER_BYTES)
                // hyper's read buffer: headers past the limit are refused before it fills.
                .max_buf_size(MAX_HEADER_BYTES)
                .keep_alive(!draining);
            let conn = http1
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tcp),
                    hyper_util::service::TowerToHyperService::new(service),
                )
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = finish.cancelled() => {
                    if !first_request.has_come() {
                        // No request yet (opened just before the drain, or halfway through
                        // its first head): what a connection opened during the drain gets,
                        // one request whose head comes within `DRAIN_HEADER_TIMEOUT` (a client
                        // that opened it for a follow-up gets its answer, not a closed
                        // connection), so a client that never finishes a head cannot hold the
                        // drained server up until its grace ends.
                        tokio::select! {
                            result = conn.as_mut() => return log_end(result, peer),
                            () = first_request.wait() => {}
                            () = tokio::time::sleep(DRAIN_HEADER_TIMEOUT) => {
                                tracing::debug!(%peer, "connection closed by the drain: no request head within its deadline");
                                return;
                            }
                        }
                    }
                    // Closes an idle connection at once, a busy one after its answer.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            log_end(result, peer);
        });
    }
    // New connections are refused while the open ones finish.
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Whether a connection has had a request yet, and a wake-up for the drain waiting for its first.
#[derive(Default)]
struct FirstRequest {
    came: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl FirstRequest {
    /// A request head came (each request's: only the first wakes anyone).
    fn came(&self) {
        if !self.came.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    fn has_come(&self) -> bool {
        self.came.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Until the first request head has come (at once if it has: `notify_one` keeps its wake-up
    /// for a waiter that comes later).
    async fn wait(&self) {
        self.notify.notified().await;
    }
}

/// Logs how a connection ended, if with an error.
fn log_end(result: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// `/readyz`: 200 while serving, 503 once draining (a load balancer stops sending new calls;
/// those that still come are refused with 503 `-31510`).
async fn ready(drain: CallDrain) -> (StatusCode, &'static str) {
    if drain.refuses_new_calls() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Who may reach the admin routes from a browser: requests for a `Host` rmcp serves (the same
/// `MCP_ALLOWED_HOSTS`, rmcp's loopback names when unset on loopback), and, when they carry an
/// `Origin`, from that same origin.
///
/// rmcp checks `Host` for `/mcp` only. Without this, a web page could drive the admin routes of
/// a server on loopback with auth off (the default there): through DNS rebinding (its own name
/// resolving to 127.0.0.1, so the browser sends its `Host`), or simply by a cross-site `POST`
/// with no body, which browsers send without a CORS preflight. `/mcp` itself is safe from the
/// latter: the inspector refuses any content type a browser may send cross-site without asking;
/// and it gets the same `Origin` check ([`allowed_host_only`]), as the MCP transport asks.
#[derive(Clone, Debug)]
struct SameSite {
    /// `(host, port)` pairs; a pair without a port allows every port. Empty: any host.
    allowed: std::sync::Arc<[(String, Option<u16>)]>,
}

impl SameSite {
    /// rmcp's hosts when `MCP_ALLOWED_HOSTS` is unset (the server is on loopback then).
    const RMCP_DEFAULT: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

    fn new(allowed_hosts: Option<&[String]>) -> Self {
        let entries: Vec<&str> = match allowed_hosts {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => Self::RMCP_DEFAULT.to_vec(),
        };
        let allowed = entries
            .into_iter()
            .map(|e| match axum::http::uri::Authority::try_from(e) {
                Ok(a) => (normalize_host(a.host()), a.port_u16()),
                // A bare IPv6 address (`::1`).
                Err(_) => (normalize_host(e), None),
            })
            .collect();
        SameSite { allowed }
    }

    /// Whether `name` and `port` are a host rmcp serves.
    fn allows(&self, name: &str, port: Option<u16>) -> bool {
        self.allowed.is_empty()
            || self
                .allowed
                .iter()
                .any(|(h, p)| h == name && p.is_none_or(|p| Some(p) == port))
    }

    /// Whether a `/mcp` request names a valid host rmcp would refuse: the authority of an
    /// absolute-form target, or its one `Host` (as the inspector decides it). A missing,
    /// repeated or invalid `Host` passes, to get the inspector's or rmcp's own answer.
    fn refuses_mcp(&self, req: &axum::extract::Request) -> bool {
        request_host(req).is_some_and(|a| !self.allows(&normalize_host(a.host()), a.port_u16()))
    }

    /// Why a request may not reach the admin routes, if it may not.
    fn refusal(&self, req: &axum::extract::Request) -> Option<&'static str> {
        // Valid as `/mcp` requires it (the inspector's rules: a port of digits, no user
        // information, one value), before its name is judged.
        let Some(host) = request_host(req) else {
            return Some("Forbidden: no valid Host header\n");
        };
        let (name, port) = (normalize_host(host.host()), host.port_u16());
        if !self.allows(&name, port) {
            return Some("Forbidden: Host header is not allowed\n");
        }
        Self::origin_refusal(req, &name, port)
    }

    /// Why a request's `Origin` is refused, if it is: a request carrying one (a browser's) must
    /// come from the origin of the host it names (`name`, `port`).
    fn origin_refusal(
        req: &axum::extract::Request,
        name: &str,
        port: Option<u16>,
    ) -> Option<&'static str> {
        let mut origins = req.headers().get_all(axum::http::header::ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            // Not from a browser's cross-origin request (curl, an operator's script).
            (None, _) => return None,
            (Some(o), None) => o,
            (Some(_), Some(_)) => return Some("Forbidden: Origin header repeated\n"),
        };
        // Same origin: `scheme://host[:port]` (no user information, no path) naming the
        // request's host and port (`null`, an opaque origin, is none). Either scheme: behind a
        // TLS-terminating proxy a browser's origin is `https`.
        let same = axum::http::Uri::try_from(origin.as_bytes())
            .ok()
            .filter(|o| o.path_and_query().is_none_or(|p| p.as_str() == "/"))
            .filter(|o| o.authority().is_some_and(|a| !a.as_str().contains('@')))
            .and_then(|o| {
                let default = match o.scheme_str()? {
                    "http" => 80,
                    "https" => 443,
                    _ => return None,
                };
                let a = o.authority()?;
                Some(
                    normalize_host(a.host()) == name
                        && a.port_u16().unwrap_or(default) == port.unwrap_or(default),
                )
            })
            .unwrap_or(false);
        (!same).then_some("Forbidden: cross-origin request\n")
    }
}

/// The host a request names: the authority of an absolute-form target, which stands for `Host`
/// (RFC 9112 §3.2.2), else its `Host` header. None when `Host` is repeated, or present and not
/// valid as `/mcp` requires it, whatever the target says (RFC 9112 §3.2: a 400 either way);
/// and when the one it names is not valid so ([`valid_authority`]).
fn request_host(req: &axum::extract::Request) -> Option<axum::http::uri::Authority> {
    let mut hosts = req.headers().get_all(axum::http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return None,
        (Some(h), None) => Some(valid_authority(h.as_bytes())?),
        (None, None) => None,
    };
    match req.uri().authority() {
        Some(target) => valid_authority(target.as_str().as_bytes()),
        None => host,
    }
}

/// A `Host` value valid as `/mcp` requires it (the inspector's rules: a port of digits, no user
/// information), as an authority.
fn valid_authority(host: &[u8]) -> Option<axum::http::uri::Authority> {
    tower_armor_mcp::inspect::valid_host(host)
        .then(|| axum::http::uri::Authority::try_from(host).ok())
        .flatten()
}

fn normalize_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

async fn same_site_only(
    State(site): State<SameSite>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match site.refusal(&req) {
        None => next.run(req).await,
        Some(why) => {
            tracing::warn!(reason = why.trim_end(), "admin request refused");
            (StatusCode::FORBIDDEN, why).into_response()
        }
    }
}

/// `/mcp` for the hosts rmcp serves: rmcp's answer to any other (403, the same text), before
/// the layers. And, as the MCP transport asks (against DNS rebinding), a request with an
/// `Origin` only from that same origin: 403 otherwise.
async fn allowed_host_only(
    State(site): State<SameSite>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if site.refuses_mcp(&req) {
        tracing::debug!("request for a host rmcp does not serve refused");
        return (
            StatusCode::FORBIDDEN,
            "Forbidden: Host header is not allowed",
        )
            .into_response();
    }
    // (A missing or invalid `Host` gets the inspector's answer.)
    if req.headers().contains_key(axum::http::header::ORIGIN)
        && let Some(host) = request_host(&req)
        && let Some(why) =
            SameSite::origin_refusal(&req, &normalize_host(host.host()), host.port_u16())
    {
        tracing::debug!(reason = why.trim_end(), "cross-origin MCP request refused");
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    next.run(req).await
}

/// The admin routes' state.
#[derive(Clone)]
struct Admin {
    breakers: CircuitBreakerHandle,
    allow: std::sync::Arc<AllowPolicy>,
    /// `MCP_ADMIN_PRINCIPALS`, when set.
    admins: Option<std::sync::Arc<[String]>>,
}

impl Admin {
    /// Whether the caller may use the admin routes: a principal `MCP_ADMIN_PRINCIPALS` names,
    /// or when it is unset anyone but a principal limited to some tools (with auth off there is
    /// no principal: the server only listens on loopback then, unless `MCP_AUTH_DISABLED` says
    /// otherwise, and [`SameSite`] keeps web pages out).
    fn admits(&self, principal: Option<&Principal>) -> bool {
        let Some(p) = principal else {
            return true;
        };
        // A restricted principal never (the routes name its hidden tools), whatever
        // `MCP_ADMIN_PRINCIPALS` says (it refuses to name one at start).
        !self.allow.is_restricted(p.name())
            && self
                .admins
                .as_ref()
                .is_none_or(|admins| admins.iter().any(|a| a == p.name()))
    }
}

/// `MCP_ADMIN_PRINCIPALS`: comma-separated principal names allowed on the admin routes. Each
/// must be a principal of the fixed tokens (`MCP_BEARER_TOKEN`; with a token file, any valid
/// name); unset, every principal the allow-list does not restrict is admitted, with a warning
/// when several principals could be.
fn admin_principals(
    value: Option<&str>,
    auth: &BearerAuthLayer,
    allow: &ToolAllowListLayer,
) -> Result<Option<Vec<String>>, String> {
    const VAR: &str = "MCP_ADMIN_PRINCIPALS";
    let Some(value) = value else {
        let unrestricted = auth.principals();
        let unrestricted = unrestricted
            .iter()
            .filter(|p| !allow.policy().is_restricted(p))
            .count();
        if unrestricted > 1 {
            tracing::warn!(
                "MCP_ADMIN_PRINCIPALS is unset: every principal the tool allow-list does not \
                 restrict may force circuits open or closed; name the operators"
            );
        }
        return Ok(None);
    };
    // Checked with auth off too: a bad value must not wait for the day auth is turned on.
    let known = auth.principals();
    let mut names = Vec::new();
    for name in tower_armor_mcp::env::list(value).map_err(|e| format!("{VAR}: {e}"))? {
        tower_armor_bearer_auth::check_principal(name)
            .map_err(|e| format!("{VAR}: {e} in {}", tower_armor_mcp::env::shown(name)))?;
        // Fixed tokens name every principal there is: another name is a typo.
        if auth.tokens_are_fixed() && !known.iter().any(|k| k == name) {
            return Err(format!(
                "{VAR}: {name:?} has no token (names are case-sensitive)"
            ));
        }
        // The admin routes name every tool with a circuit: never for a principal some tools
        // are hidden from.
        if allow.policy().is_restricted(name) {
            return Err(format!(
                "{VAR}: {name:?} is limited to some tools by MCP_TOOL_ALLOW, and the admin \
                 routes name every tool"
            ));
        }
        names.push(name.to_owned());
    }
    if !auth.is_enabled() {
        tracing::warn!(
            "{VAR} has no effect while auth is off (the admin routes are loopback-only)"
        );
        return Ok(None);
    }
    Ok(Some(names))
}

/// The 405 of an admin route, for a caller allowed on it.
fn admin_method_not_allowed(allow: &'static str) -> axum::response::Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(axum::http::header::ALLOW, allow)],
    )
        .into_response()
}

async fn list_breakers(
    State(admin): State<Admin>,
    method: axum::http::Method,
    principal: Option<Extension<Principal>>,
) -> axum::response::Response {
    if !admin.admits(principal.as_deref()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return admin_method_not_allowed("GET, HEAD");
    }
    let circuits: Vec<serde_json::Value> = admin
        .breakers
        .circuits()
        .iter()
        .map(|c| {
            serde_json::json!({
                "key": c.key(),
                "state": format!("{:?}", c.state()),
                "retryAfterMs": c.retry_after().map(|d| d.as_millis() as u64),
            })
        })
        .collect();
    axum::Json(serde_json::json!({ "circuits": circuits })).into_response()
}

async fn control_breaker(
    State(admin): State<Admin>,
    method: axum::http::Method,
    principal: Option<Extension<Principal>>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> axum::response::Response {
    if !admin.admits(principal.as_deref()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if method != axum::http::Method::POST {
        return admin_method_not_allowed("POST");
    }
    // A segment that does not decode (`%ff`) names no circuit.
    let Some(Path((key, action))) = path.ok() else {
        return (StatusCode::NOT_FOUND, "no such circuit\n").into_response();
    };
    let Some(circuit) = admin.breakers.circuit(&key) else {
        return (StatusCode::NOT_FOUND, "no such circuit\n").into_response();
    };
    match action.as_str() {
        "force-open" => circuit.force_open(),
        "force-closed" => circuit.force_closed(),
        "reset" => circuit.reset(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "action: force-open | force-closed | reset\n",
            )
                .into_response();
        }
    }
    tracing::warn!(key = %key, action = %action, "circuit breaker controlled by an operator");
    (StatusCode::OK, format!("{:?}\n", circuit.state())).into_response()
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    // A bad directive would otherwise drop every directive silently (back to `info`).
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim_ascii().is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("configuration error: RUST_LOG: {e}");
                std::process::exit(2);
            }
        },
        Err(std::env::VarError::NotUnicode(_)) => {
            eprintln!("configuration error: RUST_LOG: not valid UTF-8");
            std::process::exit(2);
        }
        // rmcp logs every notification it receives at INFO, with its client-chosen content
        // (a `notifications/cancelled` reason, `_meta`) whole: not by default.
        _ => tracing_subscriber::EnvFilter::new("info,rmcp=warn"),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    let addr = settings.addr;
    let limits = settings.connections;
    let app = app(settings);
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    // The address bound (`MCP_ADDR` with port 0 picks one).
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, tools = ?DEMO_TOOLS, "MCP server listening on http://{addr}/mcp");
    // A second signal during the drain ends it at once (the grace may be long).
    let (signal, again) = shutdown_signals();
    run(listener, app, limits, signal, again).await;
}

/// Serves `app` on `listener` until `signal`, then drains: new calls and listen streams are
/// refused with 503 `-31510` (`/readyz` answers 503), listen streams end, calls in flight get
/// the app's drain grace to finish, and connections are still accepted (one request each) for
/// what concerns them (a client's answer to a server request, a cancellation, a resumption).
/// It returns once no connection is left (and none came for [`DRAIN_LINGER`], 250 ms: a
/// client's follow-up on a call's answer, such as reading the catalogue, which the app still
/// serves); when the grace runs out first, every call
/// still running ends with a final `-31510` error for its id (and no call waiting in line
/// starts), what is left of the streams ends at an event boundary, and rmcp's sessions are
/// cancelled.
///
/// `again` is awaited once `signal` has fired: when it fires too, the grace ends there and then
/// (an operator's second Ctrl-C), with the same final errors.
pub async fn run(
    listener: tokio::net::TcpListener,
    app: App,
    limits: ConnectionLimits,
    signal: impl std::future::Future<Output = ()> + Send + 'static,
    again: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let App {
        router,
        rmcp_shutdown,
        sse_shutdown,
        call_drain,
        drain_grace,
        ..
    } = app;
    let draining = CancellationToken::new();
    let stop = CancellationToken::new();
    let on_signal = draining.clone();
    let cut_short = CancellationToken::new();
    let on_again = cut_short.clone();
    let streams = sse_shutdown.clone();
    let calls = call_drain.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!(
            grace_ms = u64::try_from(drain_grace.as_millis()).unwrap_or(u64::MAX),
            "shutting down: refusing new calls, ending listen streams; calls in flight may finish"
        );
        calls.refuse_new_calls();
        // Listen streams never end by themselves; calls' streams end with their answers.
        streams.end_long_lived();
        on_signal.cancel();
        again.await;
        tracing::warn!("second signal: ending the drain grace now");
        on_again.cancel();
    });
    let resumable = call_drain.clone();
    let mut served = tokio::spawn(serve(
        listener,
        router,
        limits,
        draining.clone(),
        stop.clone(),
        move || resumable.calls_awaiting_resumption() > 0,
    ));
    tokio::select! {
        _ = &mut served => {}
        () = async {
            draining.cancelled().await;
            tokio::select! {
                () = tokio::time::sleep(drain_grace) => {}
                () = cut_short.cancelled() => {}
            }
        } => {
            // (Calls answered as JSON are not counted anywhere: the line does not claim any.)
            tracing::warn!(
                open_streams = sse_shutdown.open_streams(),
                awaiting_resumption = call_drain.calls_awaiting_resumption(),
                "drain grace over; ending whatever is still running"
            );
            // Each call ends with a final error for its id (its stream at an event boundary);
            // the streams get a moment to carry it out before the SSE layer ends what is left.
            call_drain.end_calls();
            stop.cancel();
            let carried = async {
                while sse_shutdown.open_streams() > 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let _ = tokio::time::timeout(FINAL_EVENTS_GRACE, carried).await;
            sse_shutdown.shutdown();
            rmcp_shutdown.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), served).await;
        }
    }
    // Whatever ended first: rmcp's 2025-11-25 sessions outlive their connections.
    sse_shutdown.shutdown();
    rmcp_shutdown.cancel();
}

/// How long calls in flight may take to finish after SIGTERM or Ctrl-C, by default
/// (`MCP_DRAIN_GRACE_MS`).
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(5);
/// After the drain grace, how long the calls' final events may take to go out before the
/// remaining streams are cut.
const FINAL_EVENTS_GRACE: Duration = Duration::from_millis(500);
/// The longest drain grace accepted: one hour.
pub const MAX_DRAIN_GRACE: Duration = Duration::from_secs(3600);

/// Events of each stream rmcp keeps to replay on a resumption, by default (`MCP_REPLAY_EVENTS`).
/// rmcp's own default, 16, is under what a tool reporting progress a few times a second sends
/// in the 3 s the SDKs wait before resuming: the events before the oldest kept are lost, with
/// nothing to say so. Each call stream reserves room for this many (≈ 48 bytes each).
pub const DEFAULT_REPLAY_EVENTS: usize = 256;
/// The fewest kept: rmcp's default.
pub const MIN_REPLAY_EVENTS: usize = 16;
/// The most kept per stream.
pub const MAX_REPLAY_EVENTS: usize = 65_536;

/// SIGTERM and Ctrl-C (SIGINT), listened for from now on: the first future completes at the
/// first signal, the second at the next one. Listening starts here, before either is awaited,
/// so a second signal sent right after the first is not lost.
#[allow(dead_code)]
fn shutdown_signals() -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let mut int = signal(SignalKind::interrupt()).ok();
        tokio::spawn(async move {
            loop {
                let got = tokio::select! {
                    Some(()) = async { term.as_mut()?.recv().await } => true,
                    Some(()) = async { int.as_mut()?.recv().await } => true,
                    else => false,
                };
                if !got || tx.send(()).is_err() {
                    break;
                }
            }
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    let first = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    let second = std::sync::Arc::clone(&first);
    (
        async move {
            if first.lock().await.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        },
        async move {
            if second.lock().await.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        },
    )
}
