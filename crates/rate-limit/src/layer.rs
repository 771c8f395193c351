//! [`RateLimitLayer`] and its [`Builder`].

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::{Extensions, HeaderMap, HeaderValue, Method as HttpMethod, Uri};
use tower_armor_mcp::inspect::headers::SESSION_ID as MCP_SESSION_ID;
use tower_armor_mcp::{KnownTools, Method};
use tower_layer::Layer;

use crate::config::{self, ConfigError};
use crate::key::{ForwardedHeader, KeyBy, TrustedProxies};
use crate::policy::{Limit, Policies, Target};
use crate::service::{RateLimit, Shared};
use crate::store::{InMemoryStore, KeyStore};

/// Where the layer finds the peer address in a request's extensions.
pub type PeerAddrFn = fn(&Extensions) -> Option<SocketAddr>;

/// What an exemption predicate sees of a request.
///
/// Its `Debug` shows header names, never values (a header the limit keys by may hold an API
/// key), and the number of extensions.
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    pub(crate) method: &'a HttpMethod,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

impl fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", self.method)
            .field("uri", self.uri)
            .field("headers", &tower_armor_mcp::HeaderNames(self.headers))
            .field("extensions", &self.extensions.len())
            .finish()
    }
}

impl<'a> RequestHead<'a> {
    /// The HTTP method.
    pub fn method(&self) -> &'a HttpMethod {
        self.method
    }

    /// The URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The path.
    #[inline]
    pub fn path(&self) -> &'a str {
        self.uri.path()
    }

    /// The headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

type ExemptFn = dyn Fn(&RequestHead<'_>) -> bool + Send + Sync;

/// Which requests skip the rate limit.
#[derive(Clone)]
pub(crate) enum Exempt {
    /// These paths. `lengths` has bit `n` set when one of them is `n` bytes long (bit 63: 63 or
    /// more), so most paths are told apart by their length alone.
    Paths {
        paths: Arc<[Box<str>]>,
        lengths: u64,
    },
    When(Arc<ExemptFn>),
}

/// The bit of [`Exempt::Paths`]'s `lengths` for a path this long.
#[inline]
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl Exempt {
    pub(crate) fn paths<P: Into<Box<str>>>(paths: impl IntoIterator<Item = P>) -> Exempt {
        let paths: Arc<[Box<str>]> = paths.into_iter().map(Into::into).collect();
        let lengths = paths.iter().fold(0, |bits, p| bits | length_bit(p.len()));
        Exempt::Paths { paths, lengths }
    }

    #[inline]
    pub(crate) fn matches(&self, head: &RequestHead<'_>) -> bool {
        match self {
            Exempt::Paths { paths, lengths } => {
                let path = head.path();
                // Health checks are GET or HEAD without a session. Anything else on these paths
                // is counted: behind `nest_service` the inner path of `POST /mcp/healthz` is
                // `/healthz`, and the server (which ignores the path) would take it as an MCP call.
                lengths & length_bit(path.len()) != 0
                    && matches!(*head.method(), HttpMethod::GET | HttpMethod::HEAD)
                    && paths.iter().any(|p| **p == *path)
                    && !head.headers().contains_key(&MCP_SESSION_ID)
            }
            Exempt::When(f) => f(head),
        }
    }
}

impl fmt::Debug for Exempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exempt::Paths { paths, .. } => f.debug_tuple("Paths").field(paths).finish(),
            Exempt::When(_) => f.write_str("When(..)"),
        }
    }
}

/// The health-check paths exempt by default (`GET` and `HEAD` without a session only).
pub const DEFAULT_EXEMPT_PATHS: [&str; 2] = ["/healthz", "/readyz"];

/// axum's `ConnectInfo<SocketAddr>`, else a plain `SocketAddr` extension.
#[inline]
pub(crate) fn default_peer_addr(ext: &Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    {
        // A lone extension cannot be both: one lookup (a `ConnectInfo` takes precedence only
        // over a `SocketAddr` also present).
        if ext.len() == 1
            && let Some(addr) = ext.get::<SocketAddr>()
        {
            return Some(*addr);
        }
        if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0);
        }
    }
    ext.get::<SocketAddr>().copied()
}

/// Rate limits per client (and per method / tool) with governor's GCRA; see the
/// [crate docs](crate).
///
/// Built once by [`Builder::build`]; cloning the layer and every `layer()` call share one store
/// and one set of quotas.
pub struct RateLimitLayer<St = InMemoryStore> {
    shared: Arc<Shared<St>>,
}

impl<St> Clone for RateLimitLayer<St> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for RateLimitLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl RateLimitLayer {
    /// A builder with `limit` as the base quota of every key.
    pub fn builder(limit: Limit) -> Builder {
        Builder::new(limit)
    }

    /// The layer configured from the environment (see [`Builder::from_env`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Builder::from_env()?.build()
    }
}

impl<St> RateLimitLayer<St> {
    /// The store (for [`InMemoryStore::stats`]).
    pub fn store(&self) -> &St {
        &self.shared.store
    }

    /// What the quotas are keyed by.
    pub fn key_by(&self) -> &KeyBy {
        &self.shared.key_by
    }

    /// The validated policies, base first.
    pub fn policies(&self) -> &Policies {
        &self.shared.policies
    }
}

impl<S, St> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimit<S, St>;

    fn layer(&self, inner: S) -> RateLimit<S, St> {
        RateLimit::new(inner, Arc::clone(&self.shared))
    }
}

/// Configures a [`RateLimitLayer`]; nothing is checked until [`Builder::build`].
#[derive(Clone)]
pub struct Builder {
    base: Limit,
    key_by: KeyBy,
    trusted: TrustedProxies,
    forwarded: ForwardedHeader,
    v6_prefix: u8,
    rules: Vec<(Target, Limit)>,
    known_tools: Option<KnownTools>,
    exempt: Exempt,
    max_keys: usize,
    headers_on_success: bool,
    /// `None`: [`default_peer_addr`].
    peer_addr: Option<PeerAddrFn>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("base", &self.base)
            .field("key_by", &self.key_by)
            .field("trusted", &self.trusted)
            .field("forwarded", &self.forwarded)
            .field("v6_prefix", &self.v6_prefix)
            .field("rules", &self.rules)
            .field("exempt", &self.exempt)
            .field("max_keys", &self.max_keys)
            .field("headers_on_success", &self.headers_on_success)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// `limit` as the base quota of every key; every other setting at its default.
    pub fn new(limit: Limit) -> Self {
        Builder {
            base: limit,
            key_by: KeyBy::default(),
            trusted: TrustedProxies::none(),
            forwarded: ForwardedHeader::default(),
            v6_prefix: 64,
            rules: Vec::new(),
            known_tools: None,
            exempt: Exempt::paths(DEFAULT_EXEMPT_PATHS),
            max_keys: config::DEFAULT_MAX_KEYS,
            headers_on_success: true,
            peer_addr: None,
        }
    }

    /// Reads the `MCP_RATE_LIMIT_*` variables (see [`config`](crate::config)); unset or empty
    /// variables keep their defaults. Errors name the variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Some(var) = tower_armor_mcp::env::not_unicode(&config::ENV_VARS) {
            return Err(ConfigError::new(var, "not valid UTF-8"));
        }
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Like [`Builder::from_env`], reading variables through `lookup` (for tests and for
    /// settings kept elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim_ascii().is_empty());
        let per_minute = match get(config::ENV_PER_MINUTE) {
            Some(v) => config::positive::<u32>(config::ENV_PER_MINUTE, &v)?,
            None => config::DEFAULT_PER_MINUTE,
        };
        let mut limit = Limit::per_minute(per_minute);
        // The rate by itself first (too fast to enforce exactly is the rate's fault), then with
        // the burst (one too large for the rate is the burst's).
        limit.quota(config::ENV_PER_MINUTE)?;
        if let Some(v) = get(config::ENV_BURST) {
            limit = limit.burst(config::positive::<u32>(config::ENV_BURST, &v)?);
            limit.quota(config::ENV_BURST)?;
        }
        let mut b = Builder::new(limit);
        if let Some(v) = get(config::ENV_KEY) {
            b.key_by = KeyBy::parse(&v).map_err(|e| ConfigError::new(config::ENV_KEY, e))?;
        }
        if let Some(v) = get(config::ENV_TRUSTED_PROXIES) {
            b.trusted = TrustedProxies::parse_list(&v)
                .map_err(|e| ConfigError::new(config::ENV_TRUSTED_PROXIES, e))?;
            if b.trusted.trusts_everyone() {
                tracing::warn!(
                    "{}: a /0 network trusts the forwarding header from any address: every \
                     client can choose the address it is counted under",
                    config::ENV_TRUSTED_PROXIES
                );
            }
        }
        if let Some(v) = get(config::ENV_FORWARDED_HEADER) {
            b.forwarded = match v.trim_ascii().to_ascii_lowercase().as_str() {
                "x-forwarded-for" => ForwardedHeader::XForwardedFor,
                "forwarded" => ForwardedHeader::Forwarded,
                _ => {
                    return Err(ConfigError::new(
                        config::ENV_FORWARDED_HEADER,
                        "expected x-forwarded-for or forwarded",
                    ));
                }
            };
        }
        // Settings that would be read and then never used are refused, not ignored.
        if get(config::ENV_FORWARDED_HEADER).is_some() && get(config::ENV_TRUSTED_PROXIES).is_none()
        {
            return Err(ConfigError::new(
                config::ENV_FORWARDED_HEADER,
                format!(
                    "has no effect without {}: the header is believed only from trusted proxies",
                    config::ENV_TRUSTED_PROXIES
                ),
            ));
        }
        if get(config::ENV_TRUSTED_PROXIES).is_some() && b.key_by == KeyBy::Global {
            return Err(ConfigError::new(
                config::ENV_TRUSTED_PROXIES,
                format!(
                    "has no effect with {}=global: no client address is looked up",
                    config::ENV_KEY
                ),
            ));
        }
        if let Some(v) = get(config::ENV_MAX_KEYS) {
            b.max_keys = config::positive::<usize>(config::ENV_MAX_KEYS, &v)?;
        }
        if let Some(v) = get(config::ENV_TOOLS) {
            for (name, n) in config::tool_quotas(config::ENV_TOOLS, &v)? {
                if b.rules
                    .iter()
                    .any(|(t, _)| *t == Target::Tool(name.as_str().into()))
                {
                    return Err(ConfigError::new(
                        config::ENV_TOOLS,
                        format!("tool {name:?} listed twice"),
                    ));
                }
                let limit = Limit::per_minute(n);
                limit.quota(config::ENV_TOOLS).map_err(|e| {
                    ConfigError::new(config::ENV_TOOLS, format!("tool {name:?}: {}", e.reason()))
                })?;
                b = b.tool(name, limit);
            }
        }
        Ok(b)
    }

    /// How requests are grouped (default: [`KeyBy::Principal`]).
    pub fn key_by(mut self, key_by: KeyBy) -> Self {
        self.key_by = key_by;
        self
    }

    /// The proxies whose forwarding header is believed (default: none).
    pub fn trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted = trusted;
        self
    }

    /// Which forwarding header trusted proxies set (default: `X-Forwarded-For`).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.forwarded = header;
        self
    }

    /// IPv6 clients are keyed by this many leading bits (default 64; at most 128).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits;
        self
    }

    /// An extra quota for requests of `method`, per key.
    pub fn method(mut self, method: Method, limit: Limit) -> Self {
        self.rules.push((Target::Method(method), limit));
        self
    }

    /// An extra quota for `tools/call` of the tool `name`, per key.
    pub fn tool(mut self, name: impl Into<Box<str>>, limit: Limit) -> Self {
        self.rules.push((Target::Tool(name.into()), limit));
        self
    }

    /// An extra quota for `tools/call` of each tool, per key and tool: tools in
    /// [`Builder::known_tools`] get their own, any other name shares the `unknown` one.
    pub fn each_tool(mut self, limit: Limit) -> Self {
        self.rules.push((Target::EachTool, limit));
        self
    }

    /// The tools the server has, for [`Builder::each_tool`] (default: none known, so every tool
    /// shares `unknown`). The set is shared: names learned later count from then on.
    pub fn known_tools(mut self, tools: KnownTools) -> Self {
        self.known_tools = Some(tools);
        self
    }

    /// Exempt `GET` and `HEAD` requests without an `Mcp-Session-Id` whose path is one of these,
    /// replacing the default ([`DEFAULT_EXEMPT_PATHS`]); an empty list exempts nothing. Other
    /// methods on these paths are counted: mounted with `nest_service("/mcp", …)`, a
    /// `POST /mcp/healthz` reaches the layer as `/healthz` and the MCP server as a call.
    pub fn exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<Box<str>>,
    {
        self.exempt = Exempt::paths(paths);
        self
    }

    /// Exempt the requests for which `predicate` is true, replacing the exempt paths.
    pub fn exempt_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.exempt = Exempt::When(Arc::new(predicate));
        self
    }

    /// The most keys held in memory (default 100,000). Beyond it new keys share an overflow
    /// bucket; see [`InMemoryStore`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Whether allowed answers carry `RateLimit-Policy` and `RateLimit` (default true; 429
    /// answers always do).
    pub fn headers_on_success(mut self, on: bool) -> Self {
        self.headers_on_success = on;
        self
    }

    /// Where the peer address is found (default: axum's `ConnectInfo<SocketAddr>`, then a
    /// plain `SocketAddr` extension).
    pub fn peer_addr_with(mut self, f: PeerAddrFn) -> Self {
        self.peer_addr = Some(f);
        self
    }

    /// Validates the settings and builds the layer over an [`InMemoryStore`].
    pub fn build(self) -> Result<RateLimitLayer<InMemoryStore>, ConfigError> {
        self.build_with_store(InMemoryStore::new)
    }

    /// Validates the settings and builds the layer over the store `make` returns for the
    /// validated policies and the key bound ([`max_keys`](Builder::max_keys),
    /// `MCP_RATE_LIMIT_MAX_KEYS`), which the store must keep (a networked store shared by
    /// replicas, for example).
    pub fn build_with_store<St, F>(self, make: F) -> Result<RateLimitLayer<St>, ConfigError>
    where
        St: KeyStore,
        F: FnOnce(&Policies, usize) -> St,
    {
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if self.v6_prefix > 128 {
            return Err(ConfigError::new("ipv6_prefix", "must be at most 128"));
        }
        for (target, _) in &self.rules {
            if let Target::Tool(name) = target
                && let Some(problem) = crate::policy::tool_name_problem(name)
            {
                return Err(ConfigError::new(format!("tool:{name}"), problem));
            }
        }
        let policies = Policies::new(self.base, &self.rules)?;
        let mut method_rules = Vec::new();
        let mut tool_rules = HashMap::new();
        let mut each_tool = None;
        for p in policies.iter() {
            match p.target() {
                Target::All => {}
                Target::Method(m) => method_rules.push((m.clone(), p.id())),
                Target::Tool(t) => {
                    if let Some(known) = &self.known_tools
                        && !known.is_empty()
                        && !known.contains(t)
                    {
                        // A quota applies to calls of its exact name: a typo limits nothing
                        // the server has (a tool it lists later is fine).
                        tracing::warn!(
                            tool = %t,
                            "a per-tool quota names a tool the server does not have (yet): a \
                             typo? it limits calls of that exact name only"
                        );
                    }
                    tool_rules.insert(t.clone(), p.id());
                }
                Target::EachTool => each_tool = Some(p.id()),
            }
        }
        let base_policy_header = HeaderValue::from_str(policies.base_item())
            .map_err(|_| ConfigError::new("limit", "cannot be written as a header"))?;
        let extra_rules = !method_rules.is_empty() || !tool_rules.is_empty() || each_tool.is_some();
        let store = make(&policies, self.max_keys);
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                store,
                policies,
                key_by: self.key_by,
                trusted: self.trusted,
                forwarded: self.forwarded,
                v6_prefix: self.v6_prefix,
                method_rules,
                tool_rules,
                each_tool,
                known_tools: self.known_tools.unwrap_or_default(),
                exempt: self.exempt,
                headers_on_success: self.headers_on_success,
                peer_addr: self.peer_addr,
                extra_rules,
                base_policy_header,
                warned_no_peer: AtomicBool::new(false),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn env_defaults() {
        let b = Builder::from_lookup(vars(&[])).unwrap();
        assert_eq!(b.base, Limit::per_minute(DEFAULT_PER_MINUTE));
        assert_eq!(b.key_by, KeyBy::Principal);
        assert!(b.trusted.is_empty());
        assert_eq!(b.max_keys, DEFAULT_MAX_KEYS);
        assert!(b.rules.is_empty());
        let layer = b.build().unwrap();
        assert_eq!(layer.policies().len(), 1);
    }

    #[test]
    fn env_values() {
        let b = Builder::from_lookup(vars(&[
            (ENV_PER_MINUTE, "30"),
            (ENV_BURST, "5"),
            (ENV_KEY, "header:X-Api-Key"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/8,::1"),
            (ENV_FORWARDED_HEADER, "Forwarded"),
            (ENV_MAX_KEYS, "1000"),
            (ENV_TOOLS, "expensive:10"),
        ]))
        .unwrap();
        assert_eq!(b.base, Limit::per_minute(30).burst(5));
        assert_eq!(
            b.key_by,
            KeyBy::Header(http::HeaderName::from_static("x-api-key"))
        );
        assert!(b.trusted.contains("10.1.1.1".parse().unwrap()));
        assert_eq!(b.forwarded, ForwardedHeader::Forwarded);
        assert_eq!(b.max_keys, 1000);
        let layer = b.build().unwrap();
        let names: Vec<_> = layer
            .policies()
            .iter()
            .map(|p| p.name().to_owned())
            .collect();
        assert_eq!(names, ["default", "tool:expensive"]);
        // Empty means unset.
        let b = Builder::from_lookup(vars(&[(ENV_BURST, " ")])).unwrap();
        assert_eq!(b.base.burst_size(), DEFAULT_PER_MINUTE);
    }

    #[test]
    fn env_errors_name_the_variable() {
        for (var, value) in [
            (ENV_PER_MINUTE, "0"),
            (ENV_PER_MINUTE, "lots"),
            (ENV_BURST, "0"),
            (ENV_BURST, "-3"),
            (ENV_KEY, "cookie"),
            (ENV_KEY, "header:bad header"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/99"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/8,,10.1.0.0/16"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/8,"),
            (ENV_FORWARDED_HEADER, "x-real-ip"),
            (ENV_MAX_KEYS, "0"),
            (ENV_TOOLS, "expensive"),
            (ENV_TOOLS, "a:1,a:2"),
            (ENV_TOOLS, "slow:4294967295"),
            (ENV_TOOLS, "a:1,,b:2"),
            (ENV_TOOLS, "a:1,"),
        ] {
            let e = Builder::from_lookup(vars(&[(var, value)])).unwrap_err();
            assert_eq!(e.setting(), var, "{var}={value}: {e}");
            assert!(e.to_string().starts_with(var), "{e}");
        }
        // Settings that would be read and never used: the forwarding header without trusted
        // proxies (it is believed only from them), trusted proxies with no address looked up.
        for (pairs, var) in [
            (
                &[(ENV_FORWARDED_HEADER, "forwarded")][..],
                ENV_FORWARDED_HEADER,
            ),
            (
                &[(ENV_KEY, "global"), (ENV_TRUSTED_PROXIES, "10.0.0.0/8")][..],
                ENV_TRUSTED_PROXIES,
            ),
        ] {
            let e = Builder::from_lookup(vars(pairs)).unwrap_err();
            assert_eq!(e.setting(), var, "{pairs:?}: {e}");
            assert!(e.to_string().contains("no effect"), "{e}");
        }
        // Each in range, together beyond governor's arithmetic (a burst that takes over 292
        // years to replenish): an error naming the burst, not a panic at build time.
        let e = Builder::from_lookup(vars(&[(ENV_PER_MINUTE, "1"), (ENV_BURST, "1000000000")]))
            .unwrap_err();
        assert_eq!(e.setting(), ENV_BURST, "{e}");
        // A rate too fast to enforce exactly is the rate's fault, burst or not.
        for burst in [None, Some("10")] {
            let mut pairs = vec![(ENV_PER_MINUTE, "4294967295")];
            pairs.extend(burst.map(|b| (ENV_BURST, b)));
            let e = Builder::from_lookup(vars(&pairs)).unwrap_err();
            assert_eq!(e.setting(), ENV_PER_MINUTE, "{e}");
        }
    }

    #[test]
    fn builder_validation() {
        let e = Builder::new(Limit::per_minute(0)).build().unwrap_err();
        assert_eq!(e.setting(), "limit");
        let e = Builder::new(Limit::per_minute(1))
            .max_keys(0)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "max_keys");
        let e = Builder::new(Limit::per_minute(1))
            .ipv6_prefix(129)
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "ipv6_prefix");
        let e = Builder::new(Limit::per_minute(1))
            .tool("", Limit::per_minute(1))
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "tool:");
        let e = Builder::new(Limit::per_minute(1))
            .each_tool(Limit::per_minute(1))
            .each_tool(Limit::per_minute(2))
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "each-tool");
        let e = Builder::new(Limit::per_minute(1))
            .method(Method::ToolsList, Limit::per_minute(0))
            .build()
            .unwrap_err();
        assert_eq!(e.setting(), "method:tools/list");
    }

    #[test]
    fn exemptions() {
        let uri: Uri = "/healthz".parse().unwrap();
        let (m, h, e) = (HttpMethod::GET, HeaderMap::new(), Extensions::new());
        let head = RequestHead {
            method: &m,
            uri: &uri,
            headers: &h,
            extensions: &e,
        };
        let b = Builder::new(Limit::per_minute(1));
        assert!(b.exempt.matches(&head));
        let head_req = HttpMethod::HEAD;
        assert!(b.exempt.matches(&RequestHead {
            method: &head_req,
            ..head
        }));
        // Not a health check: an MCP message on a health path, or a session's stream.
        let post = HttpMethod::POST;
        assert!(!b.exempt.matches(&RequestHead {
            method: &post,
            ..head
        }));
        let mut with_session = HeaderMap::new();
        with_session.insert(&MCP_SESSION_ID, http::HeaderValue::from_static("s1"));
        assert!(!b.exempt.matches(&RequestHead {
            headers: &with_session,
            ..head
        }));
        let b = b.exempt_paths(["/live"]);
        assert!(!b.exempt.matches(&head));
        let b = b.exempt_when(|h| h.method() == HttpMethod::GET);
        assert!(b.exempt.matches(&head));
    }

    #[test]
    fn exempt_paths_of_any_length() {
        let (m, h, e) = (HttpMethod::GET, HeaderMap::new(), Extensions::new());
        let long = format!("/{}", "x".repeat(80));
        let longer = format!("/{}", "x".repeat(81));
        let exempt = Exempt::paths(["/", "/livez", long.as_str()]);
        for (path, expected) in [
            ("/", true),
            ("/livez", true),
            ("/ready", false),
            ("/livex", false),
            ("/mcp", false),
            (long.as_str(), true),
            (longer.as_str(), false),
        ] {
            let uri: Uri = path.parse().unwrap();
            let head = RequestHead {
                method: &m,
                uri: &uri,
                headers: &h,
                extensions: &e,
            };
            assert_eq!(exempt.matches(&head), expected, "{path}");
        }
        let none = Exempt::paths(Vec::<String>::new());
        let uri: Uri = "/healthz".parse().unwrap();
        let head = RequestHead {
            method: &m,
            uri: &uri,
            headers: &h,
            extensions: &e,
        };
        assert!(!none.matches(&head));
    }

    #[test]
    #[cfg(feature = "axum")]
    fn connect_info_comes_before_a_socket_addr() {
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let mut ext = Extensions::new();
        assert_eq!(default_peer_addr(&ext), None);
        ext.insert(a);
        assert_eq!(default_peer_addr(&ext), Some(a));
        ext.insert(axum::extract::ConnectInfo(b));
        assert_eq!(default_peer_addr(&ext), Some(b));
        let mut ext = Extensions::new();
        ext.insert(axum::extract::ConnectInfo(b));
        assert_eq!(default_peer_addr(&ext), Some(b));
        ext.insert(7u8);
        assert_eq!(default_peer_addr(&ext), Some(b));
    }
}
