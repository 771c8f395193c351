//! Errors: configuration errors (raised once, before anything starts) and the client layer's
//! failures.
//!
//! No error message ever contains a token or a part of one.

use std::borrow::Cow;
use std::fmt;

use tower_armor_mcp::BoxError;

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

/// The client layer's [`TokenSource`](tower_armor_mcp::TokenSource) failed: the request was not
/// sent. The source's error is kept as [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct TokenUnavailable {
    source: BoxError,
}

impl TokenUnavailable {
    pub(crate) fn new(source: BoxError) -> Self {
        TokenUnavailable { source }
    }
}

impl fmt::Display for TokenUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no bearer token available for the outgoing request")
    }
}

impl std::error::Error for TokenUnavailable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// The token from the client's [`TokenSource`](tower_armor_mcp::TokenSource) cannot be put in a
/// header (empty, or a control or non-ASCII character): the request was not sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bearer token is empty or has a character not allowed in a header")
    }
}

impl std::error::Error for InvalidToken {}
