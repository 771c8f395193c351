//! Errors: configuration errors (raised once, before anything starts) and the client layer's
//! failures.
//!
//! No error message ever contains a token or a part of one.

use std::borrow::Cow;
use std::fmt;

/// A configuration value was refused. Names the setting (the environment variable, or the builder
/// method) and says what is wrong, without repeating any secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: Cow<'static, str>,
    detail: String,
}

impl ConfigError {
    pub(crate) fn new(setting: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            detail: detail.into(),
        }
    }

    /// The setting at fault: an environment variable (`MCP_BEARER_TOKEN`) or a builder method
    /// (`BearerAuthLayer::token`).
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What is wrong with it.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.detail)
    }
}

impl std::error::Error for ConfigError {}

// The client layer's failures are call-plane errors, so they live with the others in
// `tower-armor-mcp` (where rescue and the breaker know them); named here too.
pub use tower_armor_mcp::error::{InvalidToken, TokenUnavailable};
