use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Uri, header};
use tower_armor_mcp::inspect::headers::SESSION_ID;
use tower_armor_mcp::{Principal, Secret};
use tower_layer::Layer;

use crate::error::ConfigError;
use crate::parse::{AuthFailure, DEFAULT_MAX_HEADER_BYTES};
use crate::service::BearerAuth;
use crate::session::SessionTable;
use crate::tokens::{self, FileTokens, RELOAD_FLOOR, TokenStore, TokenTable};

/// `MCP_BEARER_TOKEN`: comma-separated tokens, each `token` or `name:token`.
pub const ENV_TOKEN: &str = "MCP_BEARER_TOKEN";
/// `MCP_BEARER_TOKEN_FILE`: a file holding tokens in the same syntax (commas or newlines).
pub const ENV_TOKEN_FILE: &str = "MCP_BEARER_TOKEN_FILE";
/// `MCP_AUTH_DISABLED`: `true` lets a server without tokens bind a non-loopback address.
pub const ENV_AUTH_DISABLED: &str = "MCP_AUTH_DISABLED";
/// `MCP_AUTH_REALM`: the `realm` of the challenge (default `mcp`).
pub const ENV_REALM: &str = "MCP_AUTH_REALM";
/// `MCP_RESOURCE_METADATA_URL`: the protected-resource metadata URL (RFC 9728) put in the
/// challenge as `resource_metadata`.
pub const ENV_RESOURCE_METADATA: &str = "MCP_RESOURCE_METADATA_URL";

/// A borrowed view of a request's head, given to the exemption predicate.
///
/// Its `Debug` shows header names, never values: the predicate runs before `Authorization` is
/// removed, so a value could be the token.
#[derive(Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

impl fmt::Debug for RequestHead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", self.method)
            .field("uri", self.uri)
            .field("headers", &tower_armor_mcp::HeaderNames(self.headers))
            .finish()
    }
}

impl<'a> RequestHead<'a> {
    /// A view of these parts.
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        RequestHead {
            method,
            uri,
            headers,
        }
    }

    /// The HTTP method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The URI.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The URI's path.
    pub fn path(&self) -> &'a str {
        self.uri.path()
    }

    /// The headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }
}

/// The default exemption: health checks (`GET` or `HEAD` of `/healthz` or `/readyz` without an
/// `Mcp-Session-Id`) and CORS preflights (`OPTIONS` with `Access-Control-Request-Method`),
/// which browsers send without credentials.
///
/// The path alone is not enough: behind axum's `nest_service("/mcp", …)` the inner path of
/// `POST /mcp/healthz` is `/healthz`, and the MCP server, which ignores the path, would take it
/// as an MCP call (or, with a session id, as a request on someone's session). Even so, nested,
/// an unauthenticated `GET /mcp/healthz` passes and reaches the server as a GET without a
/// session (which rmcp refuses): mount the MCP service with
/// `route_service("/mcp", …)`, or replace this predicate.
pub fn default_exempt(head: RequestHead<'_>) -> bool {
    let method = head.method();
    if method == Method::OPTIONS {
        return head
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    }
    (method == Method::GET || method == Method::HEAD)
        && matches!(head.path(), "/healthz" | "/readyz")
        && !head.headers().contains_key(&SESSION_ID)
}

pub(crate) type Exempt = Arc<dyn Fn(RequestHead<'_>) -> bool + Send + Sync>;

/// The pre-built `WWW-Authenticate` values, one per [`AuthFailure`].
pub(crate) struct Challenges {
    values: Vec<HeaderValue>,
}

impl Challenges {
    fn build(realm: &str, resource_metadata: Option<&str>) -> Result<Self, ConfigError> {
        let mut values = Vec::with_capacity(AuthFailure::ALL.len());
        for f in AuthFailure::ALL {
            let mut v = format!("Bearer realm=\"{realm}\"");
            if let Some(url) = resource_metadata {
                v.push_str(&format!(", resource_metadata=\"{url}\""));
            }
            if let Some(code) = f.error_code() {
                v.push_str(&format!(
                    ", error=\"{code}\", error_description=\"{}\"",
                    f.description()
                ));
            }
            values.push(HeaderValue::try_from(v).map_err(|_| {
                ConfigError::new("BearerAuthLayer::realm", "not a valid header value")
            })?);
        }
        Ok(Challenges { values })
    }

    pub(crate) fn get(&self, f: AuthFailure) -> &HeaderValue {
        &self.values[f.index()]
    }
}

/// State shared by every clone of the layer and of its services.
pub(crate) struct Shared {
    /// `None`: auth is off (local development).
    pub(crate) tokens: Option<TokenStore>,
    pub(crate) exempt: Exempt,
    pub(crate) max_header_bytes: usize,
    pub(crate) challenges: Challenges,
    pub(crate) sessions: Option<SessionTable>,
}

/// Applies [`BearerAuth`]: validates `Authorization: Bearer <token>`, puts the [`Principal`] in
/// the request's extensions, strips the header, and binds 2025-11-25 sessions to their principal.
/// See the [crate docs](crate).
///
/// Built with [`BearerAuthLayer::builder`], [`BearerAuthLayer::from_env`] or
/// [`BearerAuthLayer::disabled`]. Cloning shares the token table and the session table, and so do
/// all services made by [`Layer::layer`].
///
/// # Sessions
///
/// A session id is learned from the `Mcp-Session-Id` of a successful answer to a request that
/// carried none (rmcp's `initialize` answer) and bound to that request's principal. A request
/// presenting a session id passes only for that principal. Any other presented id, bound to
/// another principal or not known at all, gets rmcp's unknown-session answer (404
/// `Not Found: Session not found`, no `Content-Type`; for `DELETE` too, which rmcp itself answers
/// with an empty 202, as the MCP spec answers any session id that is not valid) without
/// reaching the server, so nobody can probe, use or end another principal's session. A request
/// naming more than one (`Mcp-Session-Id` repeated) gets 400 with a JSON-RPC `-32600`, as
/// from the inspector but with `id: null` (this layer reads no body), in whatever order its
/// values come. A binding is
/// forgotten when its `DELETE` succeeds or the server answers 404 for it (expired): any 404 to
/// a request naming the session counts, so mount the layer with session binding on MCP routes
/// only, or drop `Mcp-Session-Id` from requests to other routes before it. The table is
/// bounded ([`BearerAuthBuilder::max_sessions`]); when full, the least recently used binding of the
/// principal holding the most makes room (so one principal's flood of sessions never evicts
/// another's), and its client re-initializes after a 404 (rmcp's client does so by itself).
///
/// # Token files
///
/// [`BearerAuthBuilder::token_file`] (`MCP_BEARER_TOKEN_FILE`) is read at build time (missing,
/// empty or invalid: [`ConfigError`]) and again, from the request path, at most every
/// [`reload_interval`](BearerAuthBuilder::reload_interval): one small blocking read every few
/// seconds by whichever request comes first, no background task. The path is resolved at each
/// read, so a Kubernetes secret's symlink swap is seen. An unreadable, empty or invalid file
/// later keeps the current tokens and logs an error, and so does a file that changed while it
/// was read (length or modification time differ before and after the read, or the bytes read
/// differ from the length stat-ed): it is read again at the next check. A writer that pauses
/// between two writes leaves incomplete content that may parse; a reload leaves out (with an
/// error logged) every entry whose token is shorter than 16 bytes (or than the shortest token
/// at start, when that is shorter) and takes the rest, so such a pause inside a token never
/// makes a short, guessable prefix of it valid. Entries cut off whole cannot be told apart, so
/// writers should still replace the file atomically (rename), as Kubernetes does.
///
/// A rotation retires a token from the streams it opened too: a long-lived stream (a `GET`
/// listen stream, a `subscriptions/listen` POST) authenticated with a token that a reload then
/// removes, or gives to another principal, ends before its next frame ([`BearerBody`]). It
/// learns of the reload at once when a request made it, else on its own next poll (the SSE
/// layer's keep-alive polls an idle stream), which checks the file when a check is due. Its
/// client reconnects with its token and gets the 401. Calls in flight finish: they end with
/// their answer, bounded by the timeout layer.
///
/// [`BearerBody`]: crate::BearerBody
#[derive(Clone)]
pub struct BearerAuthLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for BearerAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthLayer")
            .field("enabled", &self.is_enabled())
            .field(
                "tokens",
                &self.shared.tokens.as_ref().map_or(0, TokenStore::len),
            )
            .field("session_binding", &self.shared.sessions.is_some())
            .finish_non_exhaustive()
    }
}

impl BearerAuthLayer {
    /// The default interval between two reads of the token file: 5 s.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
    /// The default bound of the session table: 10,000 sessions.
    pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
    /// The default realm: `mcp`.
    pub const DEFAULT_REALM: &'static str = "mcp";

    /// A builder; add tokens, then [`BearerAuthBuilder::build`].
    pub fn builder() -> BearerAuthBuilder {
        BearerAuthBuilder::default()
    }

    /// A layer with authentication off: every request passes without a [`Principal`] (the
    /// `Authorization` header is still removed). For local development only; see [`check_bind`].
    pub fn disabled() -> Self {
        BearerAuthLayer {
            shared: Arc::new(Shared {
                tokens: None,
                exempt: Arc::new(default_exempt),
                max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
                challenges: Challenges::build(Self::DEFAULT_REALM, None)
                    .unwrap_or(Challenges { values: Vec::new() }),
                sessions: None,
            }),
        }
    }

    /// Reads the configuration from the environment (see [`BearerAuthLayer::from_lookup`]).
    ///
    /// A variable that is set but not valid UTF-8 is an error (never "unset": that would turn
    /// authentication off).
    pub fn from_env() -> Result<Self, ConfigError> {
        require_unicode(&[ENV_TOKEN, ENV_TOKEN_FILE, ENV_REALM, ENV_RESOURCE_METADATA])?;
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (an environment variable's value by name):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `MCP_BEARER_TOKEN` | comma-separated tokens, each `token` or `name:token` (principal `default` without a name) |
    /// | `MCP_BEARER_TOKEN_FILE` | a file of tokens in the same syntax (newlines allowed), re-read while serving |
    /// | `MCP_AUTH_REALM` | the challenge's realm (default `mcp`) |
    /// | `MCP_RESOURCE_METADATA_URL` | the challenge's `resource_metadata` (RFC 9728) |
    ///
    /// Neither token variable set (or both empty): authentication is **off**, with a warning
    /// (see [`check_bind`]); the realm and metadata URL are still checked, and warned about when
    /// set. Both set: an error. A missing, empty or invalid token file is an error.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim_ascii().is_empty());
        let spec = get(ENV_TOKEN);
        let file = get(ENV_TOKEN_FILE);
        let mut b = BearerAuthLayer::builder();
        match (spec, file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    ENV_TOKEN_FILE,
                    "set either MCP_BEARER_TOKEN or MCP_BEARER_TOKEN_FILE, not both",
                ));
            }
            (Some(spec), None) => b = b.tokens_for_setting(&spec, ENV_TOKEN),
            (None, Some(path)) => {
                b = b.file_for_setting(PathBuf::from(path.trim_ascii()), ENV_TOKEN_FILE)
            }
            (None, None) => {
                tracing::warn!(
                    "MCP_BEARER_TOKEN is not set: bearer authentication is OFF; every request is \
                     served without a principal (local development only)"
                );
                // Checked all the same: a bad value must not wait for the day auth is turned on.
                for (name, url) in [(ENV_REALM, false), (ENV_RESOURCE_METADATA, true)] {
                    if let Some(v) = get(name) {
                        check_quoted(v.trim_ascii(), name, url)?;
                        tracing::warn!(setting = name, "has no effect while auth is off");
                    }
                }
                return Ok(Self::disabled());
            }
        }
        if let Some(realm) = get(ENV_REALM) {
            b = b.realm_for_setting(realm.trim_ascii(), ENV_REALM);
        }
        if let Some(url) = get(ENV_RESOURCE_METADATA) {
            b = b.resource_metadata_for_setting(url.trim_ascii(), ENV_RESOURCE_METADATA);
        }
        b.build()
    }

    /// Whether authentication is on (tokens configured).
    pub fn is_enabled(&self) -> bool {
        self.shared.tokens.is_some()
    }

    /// How many tokens are configured now (0 when off).
    pub fn token_count(&self) -> usize {
        self.shared.tokens.as_ref().map_or(0, TokenStore::len)
    }

    /// Whether the tokens are fixed at build time (given directly or through
    /// `MCP_BEARER_TOKEN`), so that [`principals`](Self::principals) names every principal
    /// there will be; false with a token file (a reload may bring others) and with auth off.
    pub fn tokens_are_fixed(&self) -> bool {
        matches!(self.shared.tokens, Some(TokenStore::Static(_)))
    }

    /// The configured principal names, sorted (empty when off). Safe to log.
    pub fn principals(&self) -> Vec<String> {
        self.shared
            .tokens
            .as_ref()
            .map_or_else(Vec::new, TokenStore::principals)
    }

    /// [`check_bind`] with this layer's state: refuses a non-loopback `addr` when authentication
    /// is off, unless `MCP_AUTH_DISABLED=true`.
    pub fn check_bind(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        check_bind(addr, self.is_enabled())
    }
}

impl<S> Layer<S> for BearerAuthLayer {
    type Service = BearerAuth<S>;

    fn layer(&self, inner: S) -> BearerAuth<S> {
        BearerAuth::new(inner, Arc::clone(&self.shared))
    }
}

/// Refuses to serve without authentication on a non-loopback address unless
/// `MCP_AUTH_DISABLED=true` (read from the environment).
///
/// ```
/// use tower_armor_bearer_auth::check_bind;
/// assert!(check_bind("127.0.0.1:8080".parse().unwrap(), false).is_ok());
/// assert!(check_bind("0.0.0.0:8080".parse().unwrap(), true).is_ok());
/// ```
pub fn check_bind(addr: SocketAddr, auth_enabled: bool) -> Result<(), ConfigError> {
    require_unicode(&[ENV_AUTH_DISABLED])?;
    check_bind_with(addr, auth_enabled, |name| std::env::var(name).ok())
}

/// Fails for any of `names` that is set in the environment but is not valid UTF-8.
pub(crate) fn require_unicode(names: &[&'static str]) -> Result<(), ConfigError> {
    match tower_armor_mcp::env::not_unicode(names) {
        Some(name) => Err(ConfigError::new(name, "not valid UTF-8")),
        None => Ok(()),
    }
}

/// [`check_bind`] reading `MCP_AUTH_DISABLED` through `lookup`.
pub fn check_bind_with(
    addr: SocketAddr,
    auth_enabled: bool,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let allowed = match lookup(ENV_AUTH_DISABLED).as_deref().map(str::trim_ascii) {
        None | Some("") => false,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
        Some(v) => {
            return Err(ConfigError::new(
                ENV_AUTH_DISABLED,
                format!(
                    "expected true, false, 1 or 0, got {}",
                    tower_armor_mcp::env::shown(v)
                ),
            ));
        }
    };
    if auth_enabled || addr.ip().is_loopback() {
        return Ok(());
    }
    if allowed {
        tracing::warn!(%addr, "serving WITHOUT authentication on a non-loopback address (MCP_AUTH_DISABLED=true)");
        return Ok(());
    }
    Err(ConfigError::new(
        ENV_TOKEN,
        format!(
            "not set, so authentication is off, and {addr} is not a loopback address; set \
             MCP_BEARER_TOKEN (or MCP_BEARER_TOKEN_FILE), or MCP_AUTH_DISABLED=true to serve \
             without authentication"
        ),
    ))
}

/// Builds a [`BearerAuthLayer`]; every setting is validated in [`BearerAuthBuilder::build`].
pub struct BearerAuthBuilder {
    entries: Vec<(Principal, Secret)>,
    entries_setting: &'static str,
    file: Option<(PathBuf, &'static str)>,
    reload_interval: Duration,
    realm: (String, &'static str),
    resource_metadata: Option<(String, &'static str)>,
    exempt: Exempt,
    max_header_bytes: usize,
    max_sessions: usize,
    session_stale_after: Duration,
    session_binding: bool,
    error: Option<ConfigError>,
}

impl fmt::Debug for BearerAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuthBuilder")
            .field("tokens", &self.entries.len())
            .field("file", &self.file.as_ref().map(|(p, _)| p))
            .field("realm", &self.realm.0)
            .field("resource_metadata", &self.resource_metadata)
            .finish_non_exhaustive()
    }
}

impl Default for BearerAuthBuilder {
    fn default() -> Self {
        BearerAuthBuilder {
            entries: Vec::new(),
            entries_setting: "BearerAuthLayer::token",
            file: None,
            reload_interval: BearerAuthLayer::DEFAULT_RELOAD_INTERVAL,
            realm: (
                BearerAuthLayer::DEFAULT_REALM.to_owned(),
                "BearerAuthLayer::realm",
            ),
            resource_metadata: None,
            exempt: Arc::new(default_exempt),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_sessions: BearerAuthLayer::DEFAULT_MAX_SESSIONS,
            session_stale_after: SessionTable::DEFAULT_STALE_AFTER,
            session_binding: true,
            error: None,
        }
    }
}

impl BearerAuthBuilder {
    /// Accepts `token` for `principal`. A principal may have several tokens (rotation).
    /// The principal name must be 1–64 characters of `[A-Za-z0-9._@-]`.
    pub fn token(mut self, principal: &str, token: impl Into<Secret>) -> Self {
        let token = token.into();
        if let Err(e) = tokens::check_principal(principal) {
            self.error
                .get_or_insert_with(|| ConfigError::new("BearerAuthLayer::token", e));
        }
        self.entries.push((Principal::new(principal), token));
        self
    }

    /// Accepts the tokens of a spec in `MCP_BEARER_TOKEN` syntax (`alice:tok1,bob:tok2,tok3`).
    pub fn tokens(self, spec: &str) -> Self {
        self.tokens_for_setting(spec, "BearerAuthLayer::tokens")
    }

    fn tokens_for_setting(mut self, spec: &str, setting: &'static str) -> Self {
        match tokens::parse_spec(spec, setting) {
            Ok(v) => {
                self.entries.extend(v);
                self.entries_setting = setting;
            }
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self
    }

    /// Reads the tokens from a file (same syntax; commas or newlines) now, and again at most
    /// every [reload interval](BearerAuthBuilder::reload_interval) while serving. Cannot be
    /// combined with [`token`](BearerAuthBuilder::token) / [`tokens`](BearerAuthBuilder::tokens).
    pub fn token_file(self, path: impl Into<PathBuf>) -> Self {
        self.file_for_setting(path.into(), "BearerAuthLayer::token_file")
    }

    fn file_for_setting(mut self, path: PathBuf, setting: &'static str) -> Self {
        self.file = Some((path, setting));
        self
    }

    /// How often the token file is read again (default 5 s; at least 100 ms).
    pub fn reload_interval(mut self, interval: Duration) -> Self {
        self.reload_interval = interval;
        self
    }

    /// The challenge's `realm` (default `mcp`).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.realm_for_setting(&realm.into(), "BearerAuthLayer::realm")
    }

    fn realm_for_setting(mut self, realm: &str, setting: &'static str) -> Self {
        self.realm = (realm.to_owned(), setting);
        self
    }

    /// The protected-resource metadata URL (RFC 9728) announced in every challenge as
    /// `resource_metadata="…"`; the MCP authorization spec requires it for OAuth clients.
    pub fn resource_metadata(self, url: impl Into<String>) -> Self {
        self.resource_metadata_for_setting(&url.into(), "BearerAuthLayer::resource_metadata")
    }

    fn resource_metadata_for_setting(mut self, url: &str, setting: &'static str) -> Self {
        self.resource_metadata = Some((url.to_owned(), setting));
        self
    }

    /// Which requests pass without authentication (replaces [`default_exempt`]; call it from
    /// your predicate to extend the default). Exempt requests reach the server without a
    /// [`Principal`].
    ///
    /// A request that carries an `Mcp-Session-Id` is never exempt, whatever the predicate says:
    /// it addresses an MCP session, and passing it unauthenticated would skip the session
    /// binding (anyone could attach to another principal's session).
    pub fn exempt<F>(mut self, predicate: F) -> Self
    where
        F: Fn(RequestHead<'_>) -> bool + Send + Sync + 'static,
    {
        self.exempt = Arc::new(predicate);
        self
    }

    /// The longest `Authorization` header accepted (default 4 KiB); longer ones get 401.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// The bound of the session table (default 10,000).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// How long a session binding may go unused (neither bound nor presented) before a full
    /// session table drops it first (default 10 minutes; at least 1 s). A session the server
    /// expires while idle keeps its binding, as the layer never hears of it: set this above the
    /// server's idle expiry (rmcp's default: 5 minutes), so that only dead sessions are
    /// dropped this way.
    pub fn session_stale_after(mut self, idle: Duration) -> Self {
        self.session_stale_after = idle;
        self
    }

    /// Turns session binding off (default on). Only for servers that never create sessions.
    pub fn session_binding(mut self, on: bool) -> Self {
        self.session_binding = on;
        self
    }

    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<BearerAuthLayer, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        check_quoted(&self.realm.0, self.realm.1, false)?;
        if let Some((url, setting)) = &self.resource_metadata {
            check_quoted(url, setting, true)?;
        }
        if self.max_header_bytes < 8 {
            return Err(ConfigError::new(
                "BearerAuthLayer::max_header_bytes",
                "must be at least 8",
            ));
        }
        if self.session_stale_after < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "BearerAuthLayer::session_stale_after",
                "must be at least 1 s",
            ));
        }
        if self.session_binding && self.max_sessions == 0 {
            return Err(ConfigError::new(
                "BearerAuthLayer::max_sessions",
                "must be at least 1",
            ));
        }
        let tokens_setting = self.file.as_ref().map_or(self.entries_setting, |(_, s)| *s);
        let tokens = match self.file {
            Some((_, setting)) if !self.entries.is_empty() => {
                return Err(ConfigError::new(
                    setting,
                    "a token file cannot be combined with tokens given directly",
                ));
            }
            Some((path, setting)) => {
                if self.reload_interval < Duration::from_millis(100) {
                    return Err(ConfigError::new(
                        "BearerAuthLayer::reload_interval",
                        "must be at least 100 ms",
                    ));
                }
                TokenStore::File(
                    FileTokens::open(path, setting, self.reload_interval)?
                        .presentable_up_to(self.max_header_bytes.saturating_sub("Bearer ".len())),
                )
            }
            None if self.entries.is_empty() => {
                return Err(ConfigError::new(
                    self.entries_setting,
                    "no token configured (use BearerAuthLayer::disabled() to turn auth off)",
                ));
            }
            None => TokenStore::Static(TokenTable::build(&self.entries, self.entries_setting)?),
        };
        // A token longer than an `Authorization` header may be could never be presented: every
        // request with it would get 401 "too long" (or the HTTP server's 431).
        let longest = tokens.longest();
        if longest + "Bearer ".len() > self.max_header_bytes {
            return Err(ConfigError::new(
                tokens_setting,
                format!(
                    "a token of {longest} bytes cannot be presented: `Authorization: Bearer \
                     <token>` is limited to {} bytes (BearerAuthLayer::max_header_bytes)",
                    self.max_header_bytes
                ),
            ));
        }
        // Short tokens can be guessed; they are taken (tests and local setups use them), with a
        // warning that names no principal (a name and token swapped would log the token).
        let shortest = tokens.shortest();
        if shortest < RELOAD_FLOOR {
            tracing::warn!(
                setting = tokens_setting,
                shortest,
                "a bearer token is shorter than {RELOAD_FLOOR} bytes: use long random tokens \
                 (32 characters or more)"
            );
        }
        let challenges = Challenges::build(
            &self.realm.0,
            self.resource_metadata.as_ref().map(|(u, _)| u.as_str()),
        )?;
        // The principals are counted, not named: an entry written the wrong way round
        // (`<token>:<name>`) would put its token in the list.
        match &tokens {
            TokenStore::File(f) => tracing::info!(
                tokens = tokens.len(),
                path = %f.path().display(),
                "bearer authentication on (token file)"
            ),
            TokenStore::Static(_) => {
                tracing::info!(tokens = tokens.len(), "bearer authentication on")
            }
        }
        Ok(BearerAuthLayer {
            shared: Arc::new(Shared {
                tokens: Some(tokens),
                exempt: self.exempt,
                max_header_bytes: self.max_header_bytes,
                challenges,
                sessions: self
                    .session_binding
                    .then(|| SessionTable::new(self.max_sessions, self.session_stale_after)),
            }),
        })
    }
}

/// The longest realm or resource metadata URL accepted, in bytes.
const MAX_CHALLENGE_PARAM: usize = 1024;

/// Checks a value that goes into a quoted-string of the challenge.
fn check_quoted(v: &str, setting: &'static str, url: bool) -> Result<(), ConfigError> {
    if v.is_empty() {
        return Err(ConfigError::new(setting, "must not be empty"));
    }
    // The challenge goes out with every 401; clients cap a response's headers (Node: 16 KiB).
    if v.len() > MAX_CHALLENGE_PARAM {
        return Err(ConfigError::new(
            setting,
            format!(
                "{} bytes; at most {MAX_CHALLENGE_PARAM} are allowed",
                v.len()
            ),
        ));
    }
    if !v
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(ConfigError::new(
            setting,
            "only printable ASCII without '\"' or '\\' is allowed",
        ));
    }
    if url {
        check_url(v).map_err(|e| ConfigError::new(setting, e))?;
    }
    Ok(())
}

/// An absolute `http` or `https` URL (scheme in any case) with a host, no user information and
/// no spaces: what a client fetches the protected resource metadata from.
fn check_url(v: &str) -> Result<(), &'static str> {
    const NOT_URL: &str = "must be an absolute http(s) URL with a host";
    if v.contains(' ') {
        return Err("must not contain spaces");
    }
    let uri: http::Uri = v.parse().map_err(|_| NOT_URL)?;
    let scheme = uri.scheme_str().ok_or(NOT_URL)?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return Err(NOT_URL);
    }
    let authority = uri.authority().ok_or(NOT_URL)?;
    if authority.as_str().contains('@') {
        return Err("must not carry user information (user:password@)");
    }
    // (The parser takes any digits after `:`, and reports no port when they overflow a u16.)
    // An empty port (`host:`) is the scheme's default.
    let port = authority
        .as_str()
        .get(authority.host().len()..)
        .unwrap_or("");
    let bad_port = match port.strip_prefix(':') {
        None | Some("") => false,
        Some(digits) => tower_armor_mcp::env::port(digits).is_none(),
    };
    if bad_port {
        return Err("has a port outside 1 to 65535");
    }
    if authority.host().is_empty() {
        return Err(NOT_URL);
    }
    Ok(())
}
