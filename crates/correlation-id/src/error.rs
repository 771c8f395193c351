//! Configuration errors.

use std::fmt;

/// A configuration value that cannot be used; names the environment variable when it came from
/// one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    variable: Option<&'static str>,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(variable: Option<&'static str>, reason: String) -> Self {
        ConfigError { variable, reason }
    }

    /// The environment variable that held the bad value, if it came from one.
    pub fn variable(&self) -> Option<&'static str> {
        self.variable
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.variable {
            Some(v) => write!(f, "{v}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a header name for the correlation id: a valid, lowercase-normalised HTTP header name
/// that is not one the layers own (`traceparent`, `tracestate`).
pub(crate) fn header_name(
    value: &str,
    variable: Option<&'static str>,
) -> Result<http::HeaderName, ConfigError> {
    let name = http::HeaderName::from_bytes(value.trim().as_bytes()).map_err(|_| {
        ConfigError::new(variable, format!("not a valid HTTP header name: {value:?}"))
    })?;
    if name == crate::trace::TRACEPARENT || name == crate::trace::TRACESTATE {
        return Err(ConfigError::new(
            variable,
            format!("{name} carries the trace context, not a correlation id"),
        ));
    }
    Ok(name)
}
