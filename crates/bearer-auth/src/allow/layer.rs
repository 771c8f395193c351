use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::policy::{AllowPolicy, ENV_TOOL_ALLOW};
use super::service::ToolAllowList;
use crate::error::ConfigError;
use crate::layer::BearerAuthLayer;

#[derive(Clone, Debug)]
pub(crate) struct AllowShared {
    pub(crate) policy: AllowPolicy,
    /// The policy restricts somebody (so list answers of everybody are private).
    pub(crate) restricts: bool,
    pub(crate) json_response: bool,
    pub(crate) sse_retry: Option<Duration>,
    pub(crate) legacy_sessions: bool,
}

/// Applies [`ToolAllowList`]: per-principal tool access, after
/// [`McpInspectLayer`](tower_armor_mcp::inspect::McpInspectLayer). See the [module docs](super).
///
/// Cloning shares the policy, and so do all services made by [`Layer::layer`].
#[derive(Clone, Debug)]
pub struct ToolAllowListLayer {
    pub(crate) shared: Arc<AllowShared>,
}

impl ToolAllowListLayer {
    /// rmcp's default `sse_retry`: 3 s.
    pub const DEFAULT_SSE_RETRY: Duration = Duration::from_secs(3);

    /// A layer enforcing `policy`.
    pub fn new(policy: AllowPolicy) -> Self {
        ToolAllowListLayer {
            shared: Arc::new(AllowShared {
                restricts: !policy.is_empty(),
                policy,
                json_response: false,
                sse_retry: Some(Self::DEFAULT_SSE_RETRY),
                legacy_sessions: true,
            }),
        }
    }

    /// Reads `MCP_TOOL_ALLOW` (`alice:add,echo;bob:*`) from the environment; unset or empty
    /// means nobody is restricted.
    /// A value that is not valid UTF-8 is an error (never "unset": that would lift every
    /// restriction).
    pub fn from_env() -> Result<Self, ConfigError> {
        crate::layer::require_unicode(&[ENV_TOOL_ALLOW])?;
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](ToolAllowListLayer::from_env) reading through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let policy = match lookup(ENV_TOOL_ALLOW) {
            Some(spec) => AllowPolicy::parse_for_setting(&spec, ENV_TOOL_ALLOW)?,
            None => AllowPolicy::new(),
        };
        Ok(Self::new(policy))
    }

    /// Set like the MCP server's `json_response` (rmcp's `StreamableHttpServerConfig`): whether
    /// it answers stateless requests with `application/json` rather than SSE. A denied
    /// `tools/call` is answered in the same form as the server answers an unknown tool.
    /// Default `false`, as in rmcp.
    pub fn json_response(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.shared).json_response = on;
        self
    }

    /// Set like the MCP server's `sse_retry`: the `retry:` of the priming event that opens a
    /// 2025-11-25 session answer. Default 3 s, as in rmcp; `None` for no priming event.
    pub fn sse_retry(mut self, retry: Option<Duration>) -> Self {
        Arc::make_mut(&mut self.shared).sse_retry = retry;
        self
    }

    /// Set like the MCP server's `legacy_session_mode` (rmcp's `StreamableHttpServerConfig`):
    /// whether it serves the revisions before 2026-07-28 in sessions. A session server refuses
    /// such a request without `Mcp-Session-Id` (400) before it looks any tool up, so a denied
    /// call without one is refused alike. Default `true`, as in rmcp.
    pub fn legacy_sessions(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.shared).legacy_sessions = on;
        self
    }

    /// The policy.
    pub fn policy(&self) -> &AllowPolicy {
        &self.shared.policy
    }

    /// Checks the policy against `auth`'s principals: logs one warning (`tracing::warn!`)
    /// naming every principal a rule names but no token has, most likely a typo (`Alice` for
    /// `alice`) that leaves the intended principal unrestricted. Never fails; see
    /// [`require_known_principals`](Self::require_known_principals) to refuse instead.
    ///
    /// Checked only when `auth`'s tokens are fixed at build time (given directly or through
    /// `MCP_BEARER_TOKEN`): a token file may bring the principal later, and with authentication
    /// off no request has a principal at all.
    pub fn warn_unknown_principals(self, auth: &BearerAuthLayer) -> Self {
        if let Some(unknown) = self.unknown_principals(auth) {
            tracing::warn!(
                principals = ?unknown,
                "tool allow-list names principals that have no token (a typo?); their rules apply to nobody"
            );
        }
        self
    }

    /// Like [`warn_unknown_principals`](Self::warn_unknown_principals), but a rule naming a
    /// principal no fixed token has is a [`ConfigError`] for `MCP_TOOL_ALLOW`: the restriction
    /// it was meant to put on someone would apply to nobody (principal names are
    /// case-sensitive). Tokens from a file, or auth off: not checked (as there).
    pub fn require_known_principals(self, auth: &BearerAuthLayer) -> Result<Self, ConfigError> {
        match self.unknown_principals(auth) {
            None => Ok(self),
            Some(unknown) => Err(ConfigError::new(
                ENV_TOOL_ALLOW,
                format!(
                    "names principals that have no token: {unknown:?} (names are case-sensitive; \
                     a rule for nobody restricts nobody)"
                ),
            )),
        }
    }

    /// The principals the policy names that `auth`'s fixed tokens do not have, if any.
    fn unknown_principals(&self, auth: &BearerAuthLayer) -> Option<Vec<&str>> {
        if !auth.tokens_are_fixed() {
            return None;
        }
        let known = auth.principals();
        let unknown: Vec<&str> = self
            .shared
            .policy
            .named()
            .into_iter()
            .filter(|name| known.binary_search_by(|k| k.as_str().cmp(name)).is_err())
            .collect();
        (!unknown.is_empty()).then_some(unknown)
    }
}

impl<S> Layer<S> for ToolAllowListLayer {
    type Service = ToolAllowList<S>;

    fn layer(&self, inner: S) -> ToolAllowList<S> {
        ToolAllowList::new(inner, Arc::clone(&self.shared))
    }
}
