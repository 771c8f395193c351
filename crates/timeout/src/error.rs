//! Errors: the call-plane [`Elapsed`] (shared with every tower-armor crate) and the
//! configuration errors of [`TimeoutBuilder::build`](crate::TimeoutBuilder::build) and
//! [`TimeoutLayer::from_env`](crate::TimeoutLayer::from_env).

use std::fmt;
use std::time::Duration;

pub use tower_armor_mcp::error::{BoxError, CODE_TIMEOUT, Elapsed};

/// A setting of the timeout layer that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration that must be positive is zero.
    Zero {
        /// Which setting (`"default deadline"`, `"deadline of tool \"x\""`, `"max_total"`,
        /// `"max_pause"`).
        setting: String,
    },
    /// A duration is longer than its setting allows.
    TooLong {
        /// Which setting (`"max_pause"`).
        setting: String,
        /// Its value.
        value: Duration,
        /// The longest allowed.
        limit: Duration,
    },
    /// The absolute cap is shorter than a deadline it should bound.
    CapBelowDeadline {
        /// Which deadline.
        setting: String,
        /// Its value.
        deadline: Duration,
        /// The cap.
        max_total: Duration,
    },
    /// Reset-on-progress was asked for without an absolute cap (the MCP spec asks for one:
    /// progress alone must not keep a call alive for ever).
    ResetWithoutCap,
    /// An environment variable has a bad value.
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { setting } => write!(f, "{setting} must be positive"),
            ConfigError::TooLong {
                setting,
                value,
                limit,
            } => write!(
                f,
                "{setting} ({} ms) is longer than the limit ({} ms)",
                value.as_millis(),
                limit.as_millis()
            ),
            ConfigError::CapBelowDeadline {
                setting,
                deadline,
                max_total,
            } => write!(
                f,
                "max_total ({} ms) is shorter than the {setting} ({} ms)",
                max_total.as_millis(),
                deadline.as_millis()
            ),
            ConfigError::ResetWithoutCap => {
                f.write_str("reset_on_progress needs an absolute cap (max_total)")
            }
            ConfigError::Env { var, reason } => write!(f, "{var}: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}
