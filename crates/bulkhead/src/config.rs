//! Settings, their validation, and `MCP_BULKHEAD_*` environment variables.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use http::Extensions;

use crate::keys::Keying;
use crate::pool::MAX_PERMITS;

/// `max_concurrent` when `MCP_BULKHEAD_MAX_CONCURRENT` is unset.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// Open long-lived streams allowed per principal unless configured otherwise.
pub const DEFAULT_STREAMS_PER_PRINCIPAL: usize = 4;
/// Principals with open long-lived streams tracked one by one (more share one entry).
pub const DEFAULT_MAX_STREAM_PRINCIPALS: usize = 4096;
/// Pools a keyed bulkhead creates at most (more keys share the `overflow` pool).
pub const DEFAULT_MAX_KEYS: usize = 1024;

/// Environment variable: permits per pool (positive integer; default 64).
pub const ENV_MAX_CONCURRENT: &str = "MCP_BULKHEAD_MAX_CONCURRENT";
/// Environment variable: waiters per pool (0 or more; default: equal to the permits).
pub const ENV_MAX_QUEUE: &str = "MCP_BULKHEAD_MAX_QUEUE";
/// Environment variable: longest wait in line, in milliseconds (positive; default: no limit).
pub const ENV_MAX_WAIT_MS: &str = "MCP_BULKHEAD_MAX_WAIT_MS";

/// The longest [`ENV_MAX_WAIT_MS`] accepted: 24 hours.
const MAX_WAIT_LIMIT_MS: u64 = 24 * 60 * 60 * 1000;
/// Environment variable: open long-lived streams per principal (0 or more, or `off`; default 4).
pub const ENV_STREAMS_PER_PRINCIPAL: &str = "MCP_BULKHEAD_STREAMS_PER_PRINCIPAL";

/// Every environment variable [`BulkheadLayer::from_env`](crate::BulkheadLayer::from_env) reads.
pub const ENV_VARS: [&str; 4] = [
    ENV_MAX_CONCURRENT,
    ENV_MAX_QUEUE,
    ENV_MAX_WAIT_MS,
    ENV_STREAMS_PER_PRINCIPAL,
];

/// Where a bulkhead finds the peer address of a request, to count long-lived streams without
/// a principal per client; see [`BulkheadLayer::peer_addr_with`].
///
/// [`BulkheadLayer::peer_addr_with`]: crate::BulkheadLayer::peer_addr_with
pub type PeerAddrFn = fn(&Extensions) -> Option<SocketAddr>;

/// A bulkhead setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_concurrent` was 0: no call could ever run.
    ZeroConcurrency,
    /// `max_concurrent` was above the largest supported value.
    TooManyPermits {
        /// The value given.
        max_concurrent: usize,
        /// The largest value supported.
        limit: usize,
    },
    /// An environment variable had a value that is not accepted.
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What was expected instead.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroConcurrency => {
                f.write_str("bulkhead max_concurrent must be at least 1")
            }
            ConfigError::TooManyPermits {
                max_concurrent,
                limit,
            } => write!(
                f,
                "bulkhead max_concurrent {max_concurrent} is above the largest supported value {limit}"
            ),
            ConfigError::Env {
                var,
                value,
                expected,
            } => write!(
                f,
                "{var}: expected {expected}, got {}",
                tower_armor_mcp::env::shown(value)
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every setting of a bulkhead.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) max_concurrent: usize,
    pub(crate) max_queue: usize,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) keying: Keying,
    pub(crate) max_keys: usize,
    /// `None`: long-lived streams are not bounded.
    pub(crate) streams_per_principal: Option<usize>,
    pub(crate) max_stream_principals: usize,
    /// `None`: a plain `SocketAddr` extension, read in line.
    pub(crate) peer_addr: Option<PeerAddrFn>,
    pub(crate) backpressure: bool,
}

impl Config {
    pub(crate) fn try_new(max_concurrent: usize) -> Result<Self, ConfigError> {
        check_max_concurrent(max_concurrent)?;
        Ok(Config {
            max_concurrent,
            max_queue: max_concurrent,
            max_wait: None,
            keying: Keying::Global,
            max_keys: DEFAULT_MAX_KEYS,
            streams_per_principal: Some(DEFAULT_STREAMS_PER_PRINCIPAL),
            max_stream_principals: DEFAULT_MAX_STREAM_PRINCIPALS,
            peer_addr: None,
            backpressure: false,
        })
    }

    /// Reads the `MCP_BULKHEAD_*` variables through `var` (unset and empty values mean the
    /// default).
    pub(crate) fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.trim_ascii().is_empty());
        let max_concurrent = match get(ENV_MAX_CONCURRENT) {
            Some(v) => match tower_armor_mcp::env::number::<usize>(&v) {
                Ok(n) if (1..=MAX_PERMITS).contains(&n) => n,
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_MAX_CONCURRENT,
                        value: v,
                        expected: "an integer from 1 to 2147483647",
                    });
                }
            },
            None => DEFAULT_MAX_CONCURRENT,
        };
        let mut config = Config::try_new(max_concurrent)?;
        if let Some(v) = get(ENV_MAX_QUEUE) {
            config.max_queue =
                tower_armor_mcp::env::number::<usize>(&v).map_err(|_| ConfigError::Env {
                    var: ENV_MAX_QUEUE,
                    value: v.clone(),
                    expected: "a non-negative integer",
                })?;
        }
        if let Some(v) = get(ENV_MAX_WAIT_MS) {
            match tower_armor_mcp::env::number::<u64>(&v) {
                // A wait of days is a typo or "no limit" spelled as a number, which unset says.
                Ok(ms) if ms > 0 && ms <= MAX_WAIT_LIMIT_MS => {
                    config.max_wait = Some(Duration::from_millis(ms))
                }
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_MAX_WAIT_MS,
                        value: v,
                        expected: "milliseconds from 1 to 86400000 (24 h); unset for no limit",
                    });
                }
            }
        }
        // A wait bound with no line to wait in could never apply: a slip, refused like one.
        if config.max_queue == 0
            && let Some(v) = get(ENV_MAX_WAIT_MS)
            && get(ENV_MAX_QUEUE).is_some()
        {
            return Err(ConfigError::Env {
                var: ENV_MAX_WAIT_MS,
                value: v,
                expected: "no value while MCP_BULKHEAD_MAX_QUEUE is 0 (no call waits in line, so \
                           a wait bound never applies)",
            });
        }
        if let Some(v) = get(ENV_STREAMS_PER_PRINCIPAL) {
            let t = v.trim_ascii();
            config.streams_per_principal = if t.eq_ignore_ascii_case("off") {
                None
            } else {
                Some(
                    tower_armor_mcp::env::number::<usize>(t).map_err(|_| ConfigError::Env {
                        var: ENV_STREAMS_PER_PRINCIPAL,
                        value: v.clone(),
                        expected: "a non-negative integer or `off`",
                    })?,
                )
            };
        }
        Ok(config)
    }
}

pub(crate) fn check_max_concurrent(max_concurrent: usize) -> Result<(), ConfigError> {
    if max_concurrent == 0 {
        return Err(ConfigError::ZeroConcurrency);
    }
    if max_concurrent > MAX_PERMITS {
        return Err(ConfigError::TooManyPermits {
            max_concurrent,
            limit: MAX_PERMITS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_values() {
        let c = from(&[]).unwrap();
        assert_eq!(c.max_concurrent, DEFAULT_MAX_CONCURRENT);
        assert_eq!(c.max_queue, DEFAULT_MAX_CONCURRENT);
        assert_eq!(c.max_wait, None);
        assert_eq!(c.streams_per_principal, Some(DEFAULT_STREAMS_PER_PRINCIPAL));

        let c = from(&[
            (ENV_MAX_CONCURRENT, " 2 "),
            (ENV_MAX_QUEUE, "1"),
            (ENV_MAX_WAIT_MS, "250"),
            (ENV_STREAMS_PER_PRINCIPAL, "OFF"),
        ])
        .unwrap();
        assert_eq!((c.max_concurrent, c.max_queue), (2, 1));
        assert_eq!(c.max_wait, Some(Duration::from_millis(250)));
        assert_eq!(c.streams_per_principal, None);

        let c = from(&[
            (ENV_MAX_QUEUE, "0"),
            (ENV_STREAMS_PER_PRINCIPAL, "0"),
            (ENV_MAX_WAIT_MS, ""),
        ])
        .unwrap();
        assert_eq!(
            (c.max_queue, c.streams_per_principal, c.max_wait),
            (0, Some(0), None)
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            (ENV_MAX_CONCURRENT, "0"),
            (ENV_MAX_CONCURRENT, "-1"),
            (ENV_MAX_CONCURRENT, "lots"),
            (ENV_MAX_CONCURRENT, "99999999999"),
            (ENV_MAX_QUEUE, "-3"),
            (ENV_MAX_QUEUE, "1.5"),
            (ENV_MAX_WAIT_MS, "0"),
            (ENV_MAX_WAIT_MS, "1s"),
            (ENV_MAX_WAIT_MS, "86400001"),
            (ENV_MAX_WAIT_MS, "18446744073709551615"),
            (ENV_STREAMS_PER_PRINCIPAL, "on"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(var), "{msg}");
            assert!(msg.contains(&format!("{value:?}")), "{msg}");
        }
        // A wait bound with no line to wait in.
        let msg = from(&[(ENV_MAX_QUEUE, "0"), (ENV_MAX_WAIT_MS, "5000")])
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with(ENV_MAX_WAIT_MS), "{msg}");
        assert!(msg.contains("MCP_BULKHEAD_MAX_QUEUE is 0"), "{msg}");
        // A sign is not a number.
        assert!(from(&[(ENV_MAX_CONCURRENT, "+2")]).is_err());
        assert_eq!(
            Config::try_new(0).unwrap_err(),
            ConfigError::ZeroConcurrency
        );
        assert!(matches!(
            Config::try_new(usize::MAX),
            Err(ConfigError::TooManyPermits { .. })
        ));
    }
}
