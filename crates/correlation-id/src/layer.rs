use http::HeaderName;
use tower_layer::Layer;

use crate::error::{self, ConfigError};
use crate::id::X_REQUEST_ID;
use crate::service::CorrelationIdService;

/// The environment variable naming the correlation header (default `x-request-id`).
pub const ENV_HEADER: &str = "MCP_REQUEST_ID_HEADER";

/// Applies [`CorrelationIdService`]: validates or generates the request's correlation id, reads
/// its W3C trace context, opens the request span and echoes the id on every answer. See the
/// [crate docs](crate).
///
/// ```
/// use tower_armor_correlation_id::CorrelationIdLayer;
/// let layer = CorrelationIdLayer::new().header_name(http::HeaderName::from_static("x-case-id"));
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct CorrelationIdLayer {
    header: HeaderName,
}

impl Default for CorrelationIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CorrelationIdLayer {
    /// A layer using `x-request-id`.
    pub fn new() -> Self {
        CorrelationIdLayer {
            header: X_REQUEST_ID.clone(),
        }
    }

    /// Reads the header name from `MCP_REQUEST_ID_HEADER` (unset or empty: `x-request-id`).
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(ENV_HEADER) {
            Ok(v) => Self::from_lookup(|_| Some(v.clone())),
            Err(std::env::VarError::NotPresent) => Ok(Self::new()),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::new(
                Some(ENV_HEADER),
                "not valid UTF-8".to_owned(),
            )),
        }
    }

    /// [`CorrelationIdLayer::from_env`] reading variables through `lookup` (for configuration
    /// kept elsewhere, and for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match lookup(ENV_HEADER) {
            Some(v) if !v.trim_ascii().is_empty() => {
                Self::new().try_header_name(&v, Some(ENV_HEADER))
            }
            _ => Ok(Self::new()),
        }
    }

    /// Uses `name` instead of `x-request-id` (in requests and answers).
    ///
    /// `name` must be a header of its own: none of [`RESERVED_HEADERS`](crate::error::RESERVED_HEADERS)
    /// (`authorization`, `mcp-session-id`, …), which the layer would overwrite. This method
    /// takes the caller's word for it; [`from_env`](Self::from_env) and
    /// [`from_lookup`](Self::from_lookup) refuse them.
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    pub(crate) fn try_header_name(
        self,
        name: &str,
        variable: Option<&'static str>,
    ) -> Result<Self, ConfigError> {
        Ok(self.header_name(error::header_name(name, variable)?))
    }

    /// The correlation header's name.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }
}

impl<S> Layer<S> for CorrelationIdLayer {
    type Service = CorrelationIdService<S>;

    fn layer(&self, inner: S) -> CorrelationIdService<S> {
        CorrelationIdService::new(inner, self.header.clone())
    }
}
