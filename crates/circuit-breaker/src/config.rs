//! Configuration: the builder, its validation, and the environment variables.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_armor_mcp::{Classifier, KnownTools};

use crate::backoff::OpenDuration;
use crate::layer::CircuitBreakerLayer;
use crate::state::Transition;
use crate::window::{MAX_BUCKETS, MAX_COUNT_WINDOW};

/// `MCP_BREAKER_FAILURE_RATE`: failure-rate threshold, a number in `(0, 1]`.
pub const ENV_FAILURE_RATE: &str = "MCP_BREAKER_FAILURE_RATE";
/// `MCP_BREAKER_MIN_CALLS`: calls the window must hold before a rate is judged.
pub const ENV_MIN_CALLS: &str = "MCP_BREAKER_MIN_CALLS";
/// `MCP_BREAKER_WINDOW`: size of the count-based window, in calls.
pub const ENV_WINDOW: &str = "MCP_BREAKER_WINDOW";
/// `MCP_BREAKER_OPEN_MS`: how long an opened circuit stays open, in milliseconds.
pub const ENV_OPEN_MS: &str = "MCP_BREAKER_OPEN_MS";
/// `MCP_BREAKER_HALF_OPEN_CALLS`: probes let through while half-open.
pub const ENV_HALF_OPEN_CALLS: &str = "MCP_BREAKER_HALF_OPEN_CALLS";
/// The probe lease when none is set: 60 s (see [`Builder::probe_lease`]).
pub const DEFAULT_PROBE_LEASE: Duration = Duration::from_secs(60);

/// `MCP_BREAKER_PROBE_LEASE_MS`: how long a probe may stay silent before it counts as failed.
pub const ENV_PROBE_LEASE_MS: &str = "MCP_BREAKER_PROBE_LEASE_MS";

/// Every environment variable [`Builder::from_env`] reads.
pub const ENV_VARS: [&str; 6] = [
    ENV_FAILURE_RATE,
    ENV_MIN_CALLS,
    ENV_WINDOW,
    ENV_OPEN_MS,
    ENV_HALF_OPEN_CALLS,
    ENV_PROBE_LEASE_MS,
];

/// The largest number of probes of one half-open period.
pub const MAX_HALF_OPEN_CALLS: u32 = 1000;

/// A setting was invalid. The message names the setting (builder method or environment
/// variable) and says what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    message: String,
}

impl ConfigError {
    fn new(setting: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            setting,
            message: message.into(),
        }
    }

    /// The setting at fault: a builder method name (`failure_rate`) or an environment variable
    /// (`MCP_BREAKER_FAILURE_RATE`).
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How calls are split into circuits, one per key.
#[derive(Clone, Debug)]
pub enum KeyBy {
    /// One circuit per MCP tool, for `tools/call`. Keys are created only for tools in the
    /// [`KnownTools`] set (configured, or learned by whoever shares the set); any other name
    /// shares the `unknown` key. Other calls are keyed by method, as with [`KeyBy::Method`].
    Tool(KnownTools),
    /// One circuit per JSON-RPC method (`tools/call`, `resources/read`…); methods this crate
    /// does not know share the `other` key.
    Method,
    /// One circuit per upstream authority (`host:port` of the request URI); requests without
    /// one share the `other` key.
    ///
    /// Meant for client stacks (an orchestrator calling several MCP servers), where the caller
    /// chooses the URI. In front of a server the authority is whatever the client put in its
    /// request line or `Host` header: the table stays bounded by
    /// [`max_keys`](Builder::max_keys), but a client could fill it with made-up hosts, after
    /// which every new key shares `other`. Key a server by tool or method instead.
    ///
    /// The key is the URI's host and port as written (never any `user:password@`): spell an
    /// upstream's URL one way (`http://up/mcp` and `http://up:80/mcp` are two circuits). Keys
    /// are never removed: a client calling ever new upstreams (pods by address) fills the
    /// table, and new upstreams then share `other`.
    Authority,
}

/// The window the rate policies are judged over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// The last `n` counted calls.
    Count(u32),
    /// The calls of the last `duration`, kept in `buckets` buckets (the window slides one bucket
    /// at a time).
    Time {
        /// The window's length.
        duration: Duration,
        /// Number of buckets (1–100).
        buckets: u32,
    },
}

type Callback = Arc<dyn Fn(&Transition) + Send + Sync>;

/// The validated settings, shared by every circuit of one layer.
pub(crate) struct Settings {
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow: Option<(f64, Duration)>,
    pub(crate) consecutive: Option<u32>,
    pub(crate) window: WindowSpec,
    pub(crate) min_calls: u32,
    pub(crate) open: OpenDuration,
    pub(crate) half_open_calls: u32,
    pub(crate) lease: Duration,
    pub(crate) classifier: Classifier,
    pub(crate) on_transition: Option<Callback>,
    pub(crate) seed: Option<u64>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("failure_rate", &self.failure_rate)
            .field("slow", &self.slow)
            .field("consecutive", &self.consecutive)
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("open", &self.open)
            .field("half_open_calls", &self.half_open_calls)
            .field("lease", &self.lease)
            .field("classifier", &self.classifier)
            .field("on_transition", &self.on_transition.is_some())
            .finish()
    }
}

impl Settings {
    /// Whether any rate policy needs the window.
    pub(crate) fn needs_window(&self) -> bool {
        self.failure_rate.is_some() || self.slow.is_some()
    }
}

/// Builds a [`CircuitBreakerLayer`]; every setting is checked by [`Builder::build`].
///
/// Defaults: failure rate 0.5 over the last 100 calls, judged from 20 calls on; open for 30 s
/// (fixed); 1 probe while half-open, with a 60 s probe lease; the default classification
/// table; one circuit for all calls.
pub struct Builder {
    failure_rate: Option<f64>,
    slow: Option<(f64, Duration)>,
    consecutive: Option<u32>,
    window: WindowSpec,
    min_calls: u32,
    open: OpenDuration,
    half_open_calls: u32,
    lease: Duration,
    classifier: Classifier,
    key_by: Option<KeyBy>,
    max_keys: usize,
    on_transition: Option<Callback>,
    seed: Option<u64>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("failure_rate", &self.failure_rate)
            .field("slow", &self.slow)
            .field("consecutive", &self.consecutive)
            .field("window", &self.window)
            .field("min_calls", &self.min_calls)
            .field("open", &self.open)
            .field("half_open_calls", &self.half_open_calls)
            .field("lease", &self.lease)
            .field("key_by", &self.key_by)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            failure_rate: Some(0.5),
            slow: None,
            consecutive: None,
            window: WindowSpec::Count(100),
            min_calls: 20,
            open: OpenDuration::Fixed(Duration::from_secs(30)),
            half_open_calls: 1,
            lease: DEFAULT_PROBE_LEASE,
            classifier: Classifier::default(),
            key_by: None,
            max_keys: 1024,
            on_transition: None,
            seed: None,
        }
    }
}

impl Builder {
    /// A builder with the defaults (see the type docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, overridden by the `MCP_BREAKER_*` environment variables that are set
    /// (see [`ENV_VARS`]; an empty variable counts as unset). A bad value is an error naming
    /// its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        if let Some(var) = tower_armor_mcp::env::not_unicode(&ENV_VARS) {
            return Err(ConfigError::new(var, "not valid UTF-8"));
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Builder::from_env`], reading variables through `lookup` (for tests, or another
    /// source of settings).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            lookup(name)
                .map(|v| v.trim_ascii().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut b = Builder::default();
        if let Some(v) = get(ENV_FAILURE_RATE) {
            // The error quotes what was set, not the number it parsed to.
            let bad = || {
                ConfigError::new(
                    ENV_FAILURE_RATE,
                    format!(
                        "expected a number in (0, 1], got {}",
                        tower_armor_mcp::env::shown(&v)
                    ),
                )
            };
            // Plain decimal notation only (`0.5`, `1`): no sign, exponent or bare point.
            let (whole, frac) = v.split_once('.').unwrap_or((&v, "0"));
            let plain = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
            if !plain(whole) || !plain(frac) {
                return Err(bad());
            }
            // Above 1 by its digits, although the nearest double is 1.0 (`1.0000000000000001`).
            if whole.trim_start_matches('0') == "1" && frac.bytes().any(|d| d != b'0') {
                return Err(bad());
            }
            let rate = v.parse::<f64>().map_err(|_| bad())?;
            check_rate(ENV_FAILURE_RATE, rate).map_err(|_| bad())?;
            b.failure_rate = Some(rate);
        }
        if let Some(v) = get(ENV_MIN_CALLS) {
            b.min_calls = parse_positive(ENV_MIN_CALLS, &v, u32::MAX)?;
        }
        if let Some(v) = get(ENV_WINDOW) {
            b.window = WindowSpec::Count(parse_positive(ENV_WINDOW, &v, MAX_COUNT_WINDOW)?);
        }
        if let Some(v) = get(ENV_OPEN_MS) {
            let ms = parse_positive(ENV_OPEN_MS, &v, u32::MAX)?;
            b.open = OpenDuration::Fixed(Duration::from_millis(u64::from(ms)));
        }
        if let Some(v) = get(ENV_HALF_OPEN_CALLS) {
            b.half_open_calls = parse_positive(ENV_HALF_OPEN_CALLS, &v, MAX_HALF_OPEN_CALLS)?;
        }
        if let Some(v) = get(ENV_PROBE_LEASE_MS) {
            let ms = parse_positive(ENV_PROBE_LEASE_MS, &v, u32::MAX)?;
            b.lease = Duration::from_millis(u64::from(ms));
        }
        if let WindowSpec::Count(n) = b.window
            && b.min_calls > n
        {
            // Only the window was set: the default minimum follows it down (a window of 10 calls
            // is judged once full), rather than refusing a setting the user never made.
            if get(ENV_MIN_CALLS).is_none() {
                b.min_calls = n;
                return Ok(b);
            }
            return Err(ConfigError::new(
                ENV_MIN_CALLS,
                format!(
                    "{} calls can never be reached in a window of {n} calls ({ENV_WINDOW})",
                    b.min_calls
                ),
            ));
        }
        Ok(b)
    }

    /// Opens the circuit when at least `threshold` (in `(0, 1]`) of the calls in the window
    /// failed (once the window holds [`min_calls`](Builder::min_calls)). On by default (0.5).
    pub fn failure_rate(mut self, threshold: f64) -> Self {
        self.failure_rate = Some(threshold);
        self
    }

    /// Turns the failure-rate policy off (use another policy instead).
    pub fn no_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// Opens the circuit when at least `threshold` (in `(0, 1]`) of the calls in the window
    /// took `slower_than` or longer (or ended with a timeout: `Elapsed`, 408, gRPC
    /// `DEADLINE_EXCEEDED`). While half-open, a slow probe counts as a failed probe.
    ///
    /// A call's duration runs from its admission to its outcome: for a streamed answer, the end
    /// of its body, which comes only as fast as the caller reads it. A client that reads a
    /// stream slowly makes its calls slow here (the timeout layer tells a deadline the caller
    /// held up from the server's, this layer does not). Set `slower_than` well above what the
    /// slowest client you serve takes to read an answer, or use the failure rate alone.
    pub fn slow_call_rate(mut self, threshold: f64, slower_than: Duration) -> Self {
        self.slow = Some((threshold, slower_than));
        self
    }

    /// Opens the circuit after `n` failures in a row (whatever the window holds).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive = Some(n);
        self
    }

    /// Judges rates over the last `calls` counted calls (1–100,000). The default (100 calls).
    pub fn count_window(mut self, calls: u32) -> Self {
        self.window = WindowSpec::Count(calls);
        self
    }

    /// Judges rates over the calls of the last `duration`, kept in `buckets` buckets (1–100;
    /// the window slides one bucket at a time, `duration / buckets` at least 1 ms).
    pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
        self.window = WindowSpec::Time { duration, buckets };
        self
    }

    /// The fewest calls the window must hold before a rate is judged (default 20). For a
    /// count-based window it cannot exceed the window's size.
    pub fn min_calls(mut self, calls: u32) -> Self {
        self.min_calls = calls;
        self
    }

    /// How long an opened circuit stays open (default: 30 s, fixed).
    pub fn open_duration(mut self, open: OpenDuration) -> Self {
        self.open = open;
        self
    }

    /// How many probes pass while half-open (1–1000, default 1). The circuit closes when that
    /// many probes succeeded, and opens again at the first failed probe.
    pub fn half_open_calls(mut self, n: u32) -> Self {
        self.half_open_calls = n;
        self
    }

    /// How long a probe may stay silent (neither an outcome nor dropped) before it counts as
    /// failed (default 60 s). **Make it longer than the overall deadline of any retry layer
    /// inside the breaker**, or a probe still being retried is settled as failed.
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The classification table deciding what counts as a failure (default:
    /// [`Classifier::default`]).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = classifier;
        self
    }

    /// One circuit per key (default: one circuit for all calls).
    pub fn key_by(mut self, key_by: KeyBy) -> Self {
        self.key_by = Some(key_by);
        self
    }

    /// The most keys (circuits) a keyed breaker creates (default 1,024); keys beyond it share
    /// the `other` key.
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// Calls `f` on every state change of every circuit (after the change; never under a
    /// lock, so `f` may use the [handle](crate::CircuitBreakerHandle)). Keep it short: it runs
    /// on the task whose call caused the change, or where a call's future or body was dropped.
    /// A panic in `f` is caught and logged (`ERROR`): the change stands and the call goes on.
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.on_transition = Some(Arc::new(f));
        self
    }

    #[cfg(test)]
    pub(crate) fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every setting and builds the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer, ConfigError> {
        let (settings, key_by, max_keys) = self.validate()?;
        Ok(CircuitBreakerLayer::from_settings(
            settings, key_by, max_keys,
        ))
    }

    pub(crate) fn validate(self) -> Result<(Settings, Option<KeyBy>, usize), ConfigError> {
        if let Some(r) = self.failure_rate {
            check_rate("failure_rate", r)?;
        }
        if let Some((r, d)) = self.slow {
            check_rate("slow_call_rate", r)?;
            if d.is_zero() {
                return Err(ConfigError::new(
                    "slow_call_rate",
                    "the slow-call duration must be positive",
                ));
            }
        }
        if self.consecutive == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1",
            ));
        }
        if self.failure_rate.is_none() && self.slow.is_none() && self.consecutive.is_none() {
            return Err(ConfigError::new(
                "failure_rate",
                "no trip policy: set a failure rate, a slow-call rate or consecutive failures",
            ));
        }
        match self.window {
            WindowSpec::Count(n) => {
                if !(1..=MAX_COUNT_WINDOW).contains(&n) {
                    return Err(ConfigError::new(
                        "count_window",
                        format!("must be 1–{MAX_COUNT_WINDOW} calls, got {n}"),
                    ));
                }
                if self.min_calls > n {
                    return Err(ConfigError::new(
                        "min_calls",
                        format!(
                            "{} calls can never be reached in a window of {n} calls",
                            self.min_calls
                        ),
                    ));
                }
            }
            WindowSpec::Time { duration, buckets } => {
                if !(1..=MAX_BUCKETS).contains(&buckets) {
                    return Err(ConfigError::new(
                        "time_window",
                        format!("must have 1–{MAX_BUCKETS} buckets, got {buckets}"),
                    ));
                }
                if duration / buckets < Duration::from_millis(1) {
                    return Err(ConfigError::new(
                        "time_window",
                        "each bucket must span at least 1 ms",
                    ));
                }
            }
        }
        if self.min_calls == 0 {
            return Err(ConfigError::new("min_calls", "must be at least 1"));
        }
        match self.open {
            OpenDuration::Fixed(d) => {
                if d.is_zero() {
                    return Err(ConfigError::new("open_duration", "must be positive"));
                }
            }
            OpenDuration::Exponential {
                base,
                multiplier,
                max,
                jitter,
            } => {
                if base.is_zero() || max < base {
                    return Err(ConfigError::new(
                        "open_duration",
                        "the base must be positive and not above the max",
                    ));
                }
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(ConfigError::new(
                        "open_duration",
                        "the multiplier must be a finite number of at least 1",
                    ));
                }
                if !(0.0..=1.0).contains(&jitter) {
                    return Err(ConfigError::new(
                        "open_duration",
                        "the jitter must be a fraction in 0..=1",
                    ));
                }
            }
        }
        if !(1..=MAX_HALF_OPEN_CALLS).contains(&self.half_open_calls) {
            return Err(ConfigError::new(
                "half_open_calls",
                format!(
                    "must be 1–{MAX_HALF_OPEN_CALLS}, got {}",
                    self.half_open_calls
                ),
            ));
        }
        if self.lease.is_zero() {
            return Err(ConfigError::new("probe_lease", "must be positive"));
        }
        if self.max_keys == 0 || self.max_keys > 1 << 20 {
            return Err(ConfigError::new("max_keys", "must be 1–1,048,576"));
        }
        let settings = Settings {
            failure_rate: self.failure_rate,
            slow: self.slow,
            consecutive: self.consecutive,
            window: self.window,
            min_calls: self.min_calls,
            open: self.open,
            half_open_calls: self.half_open_calls,
            lease: self.lease,
            classifier: self.classifier,
            on_transition: self.on_transition,
            seed: self.seed,
        };
        Ok((settings, self.key_by, self.max_keys))
    }
}

fn check_rate(setting: &'static str, rate: f64) -> Result<(), ConfigError> {
    if rate.is_finite() && rate > 0.0 && rate <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::new(
            setting,
            format!("expected a rate in (0, 1], got {rate}"),
        ))
    }
}

fn parse_positive(setting: &'static str, v: &str, max: u32) -> Result<u32, ConfigError> {
    match tower_armor_mcp::env::number::<u32>(v) {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::new(
            setting,
            format!(
                "expected an integer in 1..={max}, got {}",
                tower_armor_mcp::env::shown(v)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn env_values_are_read_and_validated() {
        let b = Builder::from_lookup(env(&[
            (ENV_FAILURE_RATE, "0.25"),
            (ENV_MIN_CALLS, "4"),
            (ENV_WINDOW, "8"),
            (ENV_OPEN_MS, "1500"),
            (ENV_HALF_OPEN_CALLS, "2"),
            (ENV_PROBE_LEASE_MS, "900"),
        ]))
        .unwrap();
        let (s, _, _) = b.validate().unwrap();
        assert_eq!(s.failure_rate, Some(0.25));
        for one in ["1", "1.000", "01.0"] {
            let b = Builder::from_lookup(env(&[(ENV_FAILURE_RATE, one)])).unwrap();
            assert_eq!(b.validate().unwrap().0.failure_rate, Some(1.0), "{one}");
        }
        assert_eq!(s.min_calls, 4);
        assert_eq!(s.window, WindowSpec::Count(8));
        assert_eq!(s.open, OpenDuration::Fixed(Duration::from_millis(1500)));
        assert_eq!(s.half_open_calls, 2);
        assert_eq!(s.lease, Duration::from_millis(900));

        // Unset and empty variables keep the defaults.
        let (s, _, _) = Builder::from_lookup(env(&[(ENV_WINDOW, " ")]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.window, WindowSpec::Count(100));
        assert_eq!(s.min_calls, 20);
    }

    #[test]
    fn bad_env_values_name_their_variable() {
        for (name, value) in [
            (ENV_FAILURE_RATE, "1.5"),
            (ENV_FAILURE_RATE, "0"),
            (ENV_FAILURE_RATE, "NaN"),
            (ENV_FAILURE_RATE, "half"),
            (ENV_FAILURE_RATE, "18446744073709551616"),
            (ENV_FAILURE_RATE, "+0.5"),
            (ENV_FAILURE_RATE, ".5"),
            (ENV_FAILURE_RATE, "1."),
            (ENV_FAILURE_RATE, "5e-1"),
            // Above 1, although the nearest double is 1.0.
            (ENV_FAILURE_RATE, "1.0000000000000001"),
            (ENV_FAILURE_RATE, "01.00000000000000000001"),
            // Only ASCII white space is trimmed: a no-break space is part of the value.
            (ENV_FAILURE_RATE, "\u{a0}0.5"),
            (ENV_WINDOW, "\u{a0}5"),
            (ENV_MIN_CALLS, "0"),
            (ENV_MIN_CALLS, "-3"),
            (ENV_WINDOW, "100001"),
            (ENV_OPEN_MS, "0"),
            (ENV_HALF_OPEN_CALLS, "1001"),
            (ENV_PROBE_LEASE_MS, "soon"),
        ] {
            let err = Builder::from_lookup(env(&[(name, value)])).unwrap_err();
            assert_eq!(err.setting(), name, "{err}");
            assert!(err.to_string().starts_with(name), "{err}");
            // What was set, not a number it parsed to (`1.8446744073709552e19`).
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
        // A window below the default minimum, alone: the minimum follows it.
        let (s, _, _) = Builder::from_lookup(env(&[(ENV_WINDOW, "5")]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!((s.window, s.min_calls), (WindowSpec::Count(5), 5));
        // Both set and contradictory: refused, naming both.
        let err =
            Builder::from_lookup(env(&[(ENV_WINDOW, "5"), (ENV_MIN_CALLS, "6")])).unwrap_err();
        assert_eq!(err.setting(), ENV_MIN_CALLS);
        assert!(err.to_string().contains(ENV_WINDOW), "{err}");
    }

    #[test]
    fn builder_rejects_bad_settings() {
        let cases: Vec<(Builder, &str)> = vec![
            (Builder::new().failure_rate(0.0), "failure_rate"),
            (Builder::new().failure_rate(f64::NAN), "failure_rate"),
            (
                Builder::new().slow_call_rate(0.5, Duration::ZERO),
                "slow_call_rate",
            ),
            (
                Builder::new().consecutive_failures(0),
                "consecutive_failures",
            ),
            (Builder::new().no_failure_rate(), "failure_rate"),
            (Builder::new().count_window(0), "count_window"),
            (Builder::new().count_window(10).min_calls(11), "min_calls"),
            (
                Builder::new().time_window(Duration::from_millis(5), 10),
                "time_window",
            ),
            (
                Builder::new().time_window(Duration::from_secs(10), 0),
                "time_window",
            ),
            (Builder::new().min_calls(0), "min_calls"),
            (
                Builder::new().open_duration(OpenDuration::Fixed(Duration::ZERO)),
                "open_duration",
            ),
            (
                Builder::new().open_duration(OpenDuration::Exponential {
                    base: Duration::from_secs(2),
                    multiplier: 2.0,
                    max: Duration::from_secs(1),
                    jitter: 0.0,
                }),
                "open_duration",
            ),
            (
                Builder::new().open_duration(OpenDuration::Exponential {
                    base: Duration::from_secs(1),
                    multiplier: 0.5,
                    max: Duration::from_secs(10),
                    jitter: 0.0,
                }),
                "open_duration",
            ),
            (
                Builder::new().open_duration(OpenDuration::Exponential {
                    base: Duration::from_secs(1),
                    multiplier: 2.0,
                    max: Duration::from_secs(10),
                    jitter: 1.5,
                }),
                "open_duration",
            ),
            (Builder::new().half_open_calls(0), "half_open_calls"),
            (Builder::new().probe_lease(Duration::ZERO), "probe_lease"),
            (Builder::new().max_keys(0), "max_keys"),
        ];
        for (b, setting) in cases {
            let dbg = format!("{b:?}");
            let err = b.build().unwrap_err();
            assert_eq!(err.setting(), setting, "{dbg}: {err}");
        }
        // A time window may hold fewer calls than min_calls at times; that is fine.
        Builder::new()
            .time_window(Duration::from_secs(10), 10)
            .min_calls(500)
            .build()
            .unwrap();
        Builder::new()
            .no_failure_rate()
            .consecutive_failures(3)
            .build()
            .unwrap();
    }
}
