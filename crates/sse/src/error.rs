//! Configuration errors.

use std::fmt;
use std::time::Duration;

/// A setting that cannot be used; names the environment variable when it came from one.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable that is not a whole number of seconds.
    NotSeconds {
        /// The variable.
        variable: &'static str,
        /// What it held.
        value: String,
    },
    /// A duration beyond [`SseLayer::MAX_DURATION`](crate::SseLayer::MAX_DURATION) (30 days):
    /// surely a mistake, and far enough out to overflow a clock reading.
    TooLong {
        /// The setting, or the variable it came from.
        setting: &'static str,
        /// What it was set to.
        value: Duration,
    },
    /// The idle timeout is not longer than the keep-alive interval, so every quiet stream would
    /// be cut before its first keep-alive could matter.
    IdleNotAboveKeepAlive {
        /// The idle timeout.
        idle: Duration,
        /// The keep-alive interval.
        keep_alive: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotSeconds { variable, value } => write!(
                f,
                "{variable}: expected a whole number of seconds (0 = off), got {}",
                tower_armor_mcp::env::shown(value)
            ),
            ConfigError::TooLong { setting, value } => write!(
                f,
                "{setting}: {value:?} is longer than the most allowed ({:?})",
                crate::SseLayer::MAX_DURATION
            ),
            ConfigError::IdleNotAboveKeepAlive { idle, keep_alive } => write!(
                f,
                "{}: the idle timeout ({idle:?}) must be longer than the keep-alive interval \
                 ({keep_alive:?}, {})",
                crate::layer::ENV_IDLE_TIMEOUT,
                crate::layer::ENV_KEEPALIVE
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
