//! Configuration errors and the environment variables read by
//! [`Builder::from_env`](crate::Builder::from_env).

use std::fmt;

use crate::policy::tool_name_problem;

/// `MCP_RATE_LIMIT_PER_MINUTE`: requests per minute per key (positive integer; default 120).
pub const ENV_PER_MINUTE: &str = "MCP_RATE_LIMIT_PER_MINUTE";
/// `MCP_RATE_LIMIT_BURST`: the largest burst (positive integer; default: the per-minute value).
pub const ENV_BURST: &str = "MCP_RATE_LIMIT_BURST";
/// `MCP_RATE_LIMIT_KEY`: `principal` (default), `ip`, `global` or `header:<Header-Name>`.
pub const ENV_KEY: &str = "MCP_RATE_LIMIT_KEY";
/// `MCP_RATE_LIMIT_TRUSTED_PROXIES`: comma-separated addresses / networks whose
/// `X-Forwarded-For` is believed (default: none).
pub const ENV_TRUSTED_PROXIES: &str = "MCP_RATE_LIMIT_TRUSTED_PROXIES";
/// `MCP_RATE_LIMIT_FORWARDED_HEADER`: which header a trusted proxy names the client in,
/// `x-forwarded-for` (default) or `forwarded` (RFC 7239).
pub const ENV_FORWARDED_HEADER: &str = "MCP_RATE_LIMIT_FORWARDED_HEADER";
/// `MCP_RATE_LIMIT_MAX_KEYS`: the most keys held in memory (positive integer; default 100000).
pub const ENV_MAX_KEYS: &str = "MCP_RATE_LIMIT_MAX_KEYS";
/// `MCP_RATE_LIMIT_TOOLS`: per-tool quotas per key, `name:per_minute` pairs separated by commas
/// (`expensive:10,slow:30`; default: none).
pub const ENV_TOOLS: &str = "MCP_RATE_LIMIT_TOOLS";

/// Every variable [`Builder::from_env`](crate::Builder::from_env) reads.
pub const ENV_VARS: [&str; 7] = [
    ENV_PER_MINUTE,
    ENV_BURST,
    ENV_KEY,
    ENV_TRUSTED_PROXIES,
    ENV_FORWARDED_HEADER,
    ENV_MAX_KEYS,
    ENV_TOOLS,
];

/// The default of [`ENV_PER_MINUTE`].
pub const DEFAULT_PER_MINUTE: u32 = 120;
/// The default of [`ENV_MAX_KEYS`] and [`Builder::max_keys`](crate::Builder::max_keys).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// A setting was invalid. The message names the setting: the environment variable, or the
/// builder method / rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: String,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// The setting: an environment variable name, a builder method or a rule name.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What was wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A positive integer.
pub(crate) fn positive<T>(var: &str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    match tower_armor_mcp::env::number::<T>(value) {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!(
                "expected a positive whole number, got {}",
                tower_armor_mcp::env::shown(value)
            ),
        )),
    }
}

/// `name:per_minute[,name:per_minute]`.
pub(crate) fn tool_quotas(var: &str, value: &str) -> Result<Vec<(String, u32)>, ConfigError> {
    tower_armor_mcp::env::list(value)
        .map_err(|e| ConfigError::new(var, e))?
        .into_iter()
        .map(|pair| {
            let (name, n) = pair.rsplit_once(':').ok_or_else(|| {
                ConfigError::new(
                    var,
                    format!(
                        "expected name:per_minute pairs, got {}",
                        tower_armor_mcp::env::shown(pair)
                    ),
                )
            })?;
            let name = name.trim_ascii();
            if name.is_empty() {
                return Err(ConfigError::new(
                    var,
                    format!("empty tool name in {}", tower_armor_mcp::env::shown(pair)),
                ));
            }
            // Checked here too (the builder checks again) so the error names the variable.
            if let Some(problem) = tool_name_problem(name) {
                return Err(ConfigError::new(var, problem));
            }
            // `slow:5;add:2` would otherwise name one tool `slow:5;add`, leaving both unlimited.
            if name.bytes().any(|b| b.is_ascii_whitespace() || b == b';') {
                return Err(ConfigError::new(
                    var,
                    format!(
                        "tool names have no white space or `;` (pairs are separated by `,`), got \
                         {}",
                        tower_armor_mcp::env::shown(name)
                    ),
                ));
            }
            if name.contains(':') {
                tracing::warn!(
                    setting = var,
                    tool = name,
                    "a tool name with `:` (a missed `,`?)"
                );
            }
            let per_minute = positive::<u32>(var, n).map_err(|e| {
                ConfigError::new(
                    var,
                    format!("in {}: {}", tower_armor_mcp::env::shown(pair), e.reason),
                )
            })?;
            Ok((name.to_owned(), per_minute))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_tool_lists() {
        assert_eq!(positive::<u32>("V", " 12 "), Ok(12));
        let e = positive::<u32>("V", "0").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"V: expected a positive whole number, got "0""#
        );
        assert!(positive::<u32>("V", "-1").is_err());
        assert!(positive::<u32>("V", "1.5").is_err());
        assert!(positive::<usize>("V", "x").is_err());
        assert_eq!(
            tool_quotas("T", "expensive:10, slow:30").unwrap(),
            vec![("expensive".to_owned(), 10), ("slow".to_owned(), 30)]
        );
        assert!(tool_quotas("T", "expensive:10, slow:30,").is_err());
        for typo in ["slow:5;add:2", "my tool:5"] {
            let e = tool_quotas("T", typo).unwrap_err();
            assert!(e.to_string().contains("no white space or `;`"), "{e}");
        }
        assert_eq!(
            tool_quotas("T", "ns:tool:3").unwrap(),
            vec![("ns:tool".to_owned(), 3)]
        );
        assert_eq!(tool_quotas("T", "").unwrap(), vec![]);
        assert_eq!(tool_quotas("T", " ").unwrap(), vec![]);
        assert_eq!(tool_quotas("T", "x").unwrap_err().setting(), "T");
        assert!(tool_quotas("T", ":3").is_err());
        assert!(tool_quotas("T", "x:0").is_err());
        // The entry is named.
        let e = tool_quotas("T", "add:5, slow:").unwrap_err().to_string();
        assert!(e.starts_with(r#"T: in "slow:""#), "{e}");
        assert!(tool_quotas("T", "add:+5").is_err());
        for bad in [
            format!("{}:5", "b".repeat(129)),
            "é:5".into(),
            "a\tb:5".into(),
        ] {
            let e = tool_quotas("T", &bad).unwrap_err();
            assert_eq!(e.setting(), "T", "{bad:?}");
            assert!(e.reason().contains("printable ASCII"), "{e}");
        }
        assert!(tool_quotas("T", &format!("{}:5", "b".repeat(128))).is_ok());
    }
}
