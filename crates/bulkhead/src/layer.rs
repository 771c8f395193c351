//! [`BulkheadLayer`] (permits taken in the response future) and [`BackpressureLayer`] (permits
//! reserved in `poll_ready`): each is its own builder; the shared state is built once per
//! setting and shared by every `layer()` call and every clone.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_armor_mcp::KnownTools;
use tower_layer::Layer;

use crate::config::{Config, ConfigError, PeerAddrFn};
use crate::continued::Continued;
use crate::inline::InLine;
use crate::keys::{Keying, Pools};
use crate::service::Bulkhead;
use crate::stats::BulkheadStats;
use crate::streams::StreamPool;

/// The state every clone of a bulkhead shares.
pub(crate) struct Shared {
    pub(crate) backpressure: bool,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) pools: Pools,
    pub(crate) streams: Option<Arc<StreamPool>>,
    /// `None`: a plain `SocketAddr` extension.
    pub(crate) peer_addr: Option<PeerAddrFn>,
    pub(crate) max_concurrent: usize,
    pub(crate) max_queue: usize,
    /// Waiting calls a 2025-11-25 cancellation can name.
    pub(crate) in_line: Arc<InLine>,
    /// Permits of 2025-11-25 calls held past their answer, which resumptions adopt.
    pub(crate) continued: Arc<Continued>,
}

impl Shared {
    fn new(config: &Config) -> Arc<Self> {
        let max_queue = if config.backpressure {
            // The line is the callers polling readiness; their own bound (Buffer's) applies.
            usize::MAX
        } else {
            config.max_queue
        };
        Arc::new(Shared {
            backpressure: config.backpressure,
            max_wait: config.max_wait,
            pools: Pools::new(
                &config.keying,
                config.max_concurrent,
                max_queue,
                config.max_keys,
            ),
            streams: config
                .streams_per_principal
                .map(|n| Arc::new(StreamPool::new(n, config.max_stream_principals))),
            peer_addr: config.peer_addr,
            max_concurrent: config.max_concurrent,
            max_queue,
            in_line: Arc::default(),
            continued: Arc::default(),
        })
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("backpressure", &self.backpressure)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("pools", &self.pools)
            .field("streams", &self.streams)
            .finish()
    }
}

/// Bounds concurrent calls; see the [crate docs](crate).
///
/// The layer is its own builder: `BulkheadLayer::new(8).max_queue(16).max_wait(d)`. Each
/// setting builds fresh shared state; after that, every `layer()` call and every clone of the
/// layer or of its services shares the same pools and [`BulkheadStats`]. (Configure first, then
/// layer: a setting changed on a clone after layering makes a separate bulkhead.)
///
/// Permits are taken in the response future (never in `poll_ready`), so axum's clone-and-call
/// pattern cannot park requests in an unbounded line; waiters beyond [`max_queue`] are refused at
/// once with [`BulkheadFull`](tower_armor_mcp::error::BulkheadFull).
///
/// [`max_queue`]: BulkheadLayer::max_queue
#[derive(Clone)]
pub struct BulkheadLayer {
    config: Config,
    shared: Arc<Shared>,
}

impl fmt::Debug for BulkheadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl BulkheadLayer {
    /// A bulkhead of `max_concurrent` permits, one global pool, a line of as many waiters as
    /// permits, no wait limit, and at most 4 open long-lived streams per principal.
    ///
    /// # Panics
    ///
    /// When `max_concurrent` is 0 or above 2³¹ − 1. Use [`BulkheadLayer::try_new`] for values
    /// from outside the program.
    pub fn new(max_concurrent: usize) -> Self {
        match Self::try_new(max_concurrent) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`BulkheadLayer::new`], with an error for a value that cannot work.
    pub fn try_new(max_concurrent: usize) -> Result<Self, ConfigError> {
        Ok(Self::from_config(Config::try_new(max_concurrent)?))
    }

    /// A global bulkhead from the environment, validated (an error names the variable):
    ///
    /// | variable | default | meaning |
    /// |---|---|---|
    /// | `MCP_BULKHEAD_MAX_CONCURRENT` | 64 | permits per pool (1 to 2³¹ − 1) |
    /// | `MCP_BULKHEAD_MAX_QUEUE` | = permits | waiters per pool (0: refuse at once when full) |
    /// | `MCP_BULKHEAD_MAX_WAIT_MS` | no limit | longest wait in line, milliseconds (1 to 86,400,000) |
    /// | `MCP_BULKHEAD_STREAMS_PER_PRINCIPAL` | 4 | open long-lived streams per principal, or `off` |
    ///
    /// Unset and empty variables take the default; one set to bytes that are not UTF-8 is an
    /// error. Key the result with [`by_tool`](Self::by_tool) or
    /// [`by_authority`](Self::by_authority) as needed.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Some(var) = tower_armor_mcp::env::not_unicode(&crate::config::ENV_VARS) {
            return Err(ConfigError::Env {
                var,
                value: String::from("(not UTF-8)"),
                expected: "valid UTF-8",
            });
        }
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`BulkheadLayer::from_env`] reading variables through `lookup` (for configuration kept
    /// elsewhere, and for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self::from_config(Config::from_lookup(lookup)?))
    }

    fn from_config(config: Config) -> Self {
        let shared = Shared::new(&config);
        BulkheadLayer { config, shared }
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        Self::from_config(self.config)
    }

    /// How many calls may wait for a permit per pool; one more is refused at once. 0 refuses
    /// every call that finds no free permit. Values above 2³² − 1 count as 2³² − 1 (the most a
    /// pool's line can hold).
    pub fn max_queue(self, max_queue: usize) -> Self {
        self.with(|c| c.max_queue = max_queue)
    }

    /// How long a call may wait for a permit before it is refused. `Duration::ZERO` refuses
    /// every call that has to wait (like `max_queue(0)`); a duration past what the clock can
    /// represent from now on is no limit, as [`no_max_wait`](Self::no_max_wait).
    pub fn max_wait(self, max_wait: Duration) -> Self {
        self.with(|c| c.max_wait = Some(max_wait))
    }

    /// Waits without a time limit (the default); the line is still bounded by
    /// [`max_queue`](Self::max_queue).
    pub fn no_max_wait(self) -> Self {
        self.with(|c| c.max_wait = None)
    }

    /// The longest a call may wait for a permit; `None` when it may wait without limit. Zero
    /// with [`max_queue(0)`](Self::max_queue), whatever [`max_wait`](Self::max_wait) says: no
    /// call waits then.
    pub fn max_wait_limit(&self) -> Option<Duration> {
        if self.config.max_queue == 0 {
            return Some(Duration::ZERO);
        }
        self.config.max_wait
    }

    /// One pool per tool: a `tools/call` of a tool in `tools` goes to that tool's pool; calls of
    /// other tool names (client-controlled) and requests without facts share the `unknown` pool.
    /// Calls that are not `tools/call` never take a tool's or `unknown`'s permit: each method has
    /// its own pool (`method:tools/list`, …; unknown methods share
    /// [`OTHER_METHODS_KEY`](crate::OTHER_METHODS_KEY), resumptions
    /// [`RESUME_KEY`](crate::RESUME_KEY)), and the handshake (`initialize`, `server/discover`)
    /// and `ping` take none. Each pool has the configured permits and line; see
    /// [Keys](crate#keys).
    ///
    /// `tools` is shared: names learned into it later (for example from `tools/list` answers)
    /// get their own pool from then on.
    pub fn by_tool(self, tools: KnownTools) -> Self {
        self.with(|c| c.keying = Keying::Tool(tools))
    }

    /// One pool per upstream authority ([`CallRequest::authority`]; calls without one share the
    /// `unknown` pool). For client stacks calling several MCP servers.
    ///
    /// Long-lived streams are still bounded per principal (or peer), and a client's requests
    /// carry neither: every listen stream to every upstream would share one anonymous
    /// allowance (4 by default). A client stack that keeps listen streams open bounds them
    /// itself and calls [`no_stream_limit`](Self::no_stream_limit), as the orchestrator
    /// example does. The key table only grows (to [`max_keys`](Self::max_keys), then one
    /// `overflow` pool): a client calling ever new upstreams (pods by address) wants a key of
    /// its own choosing, or a bulkhead per upstream.
    ///
    /// [`CallRequest::authority`]: tower_armor_mcp::CallRequest::authority
    pub fn by_authority(self) -> Self {
        self.with(|c| c.keying = Keying::Authority)
    }

    /// One pool for every call (the default).
    pub fn global(self) -> Self {
        self.with(|c| c.keying = Keying::Global)
    }

    /// The most pools a keyed bulkhead creates (default 1,024); further keys share one
    /// `overflow` pool.
    pub fn max_keys(self, max_keys: usize) -> Self {
        self.with(|c| c.max_keys = max_keys)
    }

    /// Open long-lived streams allowed per principal (default 4; 0 refuses every one). Streams
    /// without a [`Principal`](tower_armor_mcp::Principal) have the same allowance per peer IP
    /// (IPv6 per /64; see [`peer_addr_with`](Self::peer_addr_with)), and share one anonymous
    /// allowance when the peer address is not known either.
    pub fn streams_per_principal(self, n: usize) -> Self {
        self.with(|c| c.streams_per_principal = Some(n))
    }

    /// Where the peer address of a long-lived stream without a principal is found (default: a
    /// plain `SocketAddr` in the request extensions). This crate does not depend on axum; for
    /// axum's `ConnectInfo` (served with `into_make_service_with_connect_info::<SocketAddr>()`):
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use axum::extract::ConnectInfo;
    /// use tower_armor_bulkhead::BulkheadLayer;
    ///
    /// let layer = BulkheadLayer::new(8)
    ///     .peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0));
    /// ```
    ///
    /// The address is the TCP peer's: behind a reverse proxy every client has the proxy's, so
    /// they share one allowance (authenticate them, or read the client address the proxy
    /// passes in a function of your own).
    pub fn peer_addr_with(self, f: PeerAddrFn) -> Self {
        self.with(|c| c.peer_addr = Some(f))
    }

    /// Does not bound long-lived streams at all.
    pub fn no_stream_limit(self) -> Self {
        self.with(|c| c.streams_per_principal = None)
    }

    /// How many principals (and peers without one) with open streams are tracked one by one
    /// (default 4,096); further ones share one allowance.
    pub fn max_stream_principals(self, n: usize) -> Self {
        self.with(|c| c.max_stream_principals = n)
    }

    /// The live counters of this bulkhead (shared with every service it makes). Take them from
    /// the configured layer: each setting method makes a fresh bulkhead, so a handle taken
    /// before `.max_queue(…)` or `.by_tool(…)` watches the discarded one and stays at zero.
    pub fn stats(&self) -> BulkheadStats {
        BulkheadStats::new(Arc::clone(&self.shared))
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Bulkhead<S> {
        Bulkhead::new(inner, Arc::clone(&self.shared))
    }
}

/// A bulkhead that reserves its permit in `poll_ready`, like tower's `ConcurrencyLimit`: the
/// caller sees `Pending` until a permit is free (waiters served first come, first served).
///
/// Useful only behind callers that respect readiness and hold their own bounded line, such as
/// tower's `Buffer` or `Balance`. axum clones the service and calls it once per request, so in
/// axum a `Pending` `poll_ready` parks each request in an unbounded line: use [`BulkheadLayer`]
/// there. There is one global pool (a key is only known from the request, after readiness) and no
/// line bound or wait limit (the caller's buffer bounds the line; its timeout bounds the wait).
///
/// A reservation belongs to the service value that made it: clones start without one, and
/// dropping a service returns its reservation. Requests that take no call permit (long-lived
/// streams, notifications) return the reservation when called.
///
/// Not for a session's own traffic: a request is only seen after readiness, so a
/// `notifications/cancelled`, a client's answer to an elicitation or sampling request, a
/// session `DELETE` or a resumption waits for a permit too, behind the very calls it concerns
/// (with every permit held by calls waiting for their client's answer, those answers never get
/// in: the calls hang until the timeout layer's pause limit or deadline). Route such traffic
/// around it, or use [`BulkheadLayer`], which lets it pass.
#[derive(Clone)]
pub struct BackpressureLayer {
    config: Config,
    shared: Arc<Shared>,
}

impl fmt::Debug for BackpressureLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackpressureLayer")
            .field("max_concurrent", &self.config.max_concurrent)
            .field("streams_per_principal", &self.config.streams_per_principal)
            .finish()
    }
}

impl BackpressureLayer {
    /// A backpressure bulkhead of `max_concurrent` permits.
    ///
    /// # Panics
    ///
    /// When `max_concurrent` is 0 or above 2³¹ − 1; see [`BackpressureLayer::try_new`].
    pub fn new(max_concurrent: usize) -> Self {
        match Self::try_new(max_concurrent) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`BackpressureLayer::new`], with an error for a value that cannot work.
    pub fn try_new(max_concurrent: usize) -> Result<Self, ConfigError> {
        let mut config = Config::try_new(max_concurrent)?;
        config.backpressure = true;
        Ok(Self::from_config(config))
    }

    fn from_config(config: Config) -> Self {
        let shared = Shared::new(&config);
        BackpressureLayer { config, shared }
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        Self::from_config(self.config)
    }

    /// Open long-lived streams allowed per principal (default 4); see
    /// [`BulkheadLayer::streams_per_principal`].
    pub fn streams_per_principal(self, n: usize) -> Self {
        self.with(|c| c.streams_per_principal = Some(n))
    }

    /// Does not bound long-lived streams at all.
    pub fn no_stream_limit(self) -> Self {
        self.with(|c| c.streams_per_principal = None)
    }

    /// How many principals with open streams are tracked one by one (default 4,096).
    pub fn max_stream_principals(self, n: usize) -> Self {
        self.with(|c| c.max_stream_principals = n)
    }

    /// Where the peer address of a long-lived stream without a principal is found; see
    /// [`BulkheadLayer::peer_addr_with`].
    pub fn peer_addr_with(self, f: PeerAddrFn) -> Self {
        self.with(|c| c.peer_addr = Some(f))
    }

    /// The live counters of this bulkhead. As with [`BulkheadLayer::stats`], take them once the
    /// layer is configured.
    pub fn stats(&self) -> BulkheadStats {
        BulkheadStats::new(Arc::clone(&self.shared))
    }
}

impl<S> Layer<S> for BackpressureLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Bulkhead<S> {
        Bulkhead::new(inner, Arc::clone(&self.shared))
    }
}
