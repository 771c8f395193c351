use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_armor_mcp::McpRequest;
use tower_layer::Layer;

use crate::calls::Calls;
use crate::drain::CallDrain;
use crate::error::ConfigError;
use crate::pause::Pauses;
use crate::policy::Policy;
use crate::resume::Held;
use crate::service::Timeout;

/// The environment variable of the default deadline, in milliseconds.
pub const ENV_TIMEOUT_MS: &str = "MCP_CALL_TIMEOUT_MS";
/// The environment variable of the absolute cap ([`TimeoutBuilder::max_total`]), in
/// milliseconds.
pub const ENV_MAX_MS: &str = "MCP_CALL_TIMEOUT_MAX_MS";
/// The environment variable switching [`TimeoutBuilder::reset_on_progress`] (`true` / `false`).
pub const ENV_RESET_ON_PROGRESS: &str = "MCP_CALL_TIMEOUT_RESET_ON_PROGRESS";
/// The environment variable of the longest a call may stay paused
/// ([`TimeoutBuilder::max_pause`]), in milliseconds.
pub const ENV_MAX_PAUSE_MS: &str = "MCP_CALL_MAX_PAUSE_MS";

/// `MCP_CALL_RESUME_GRACE_MS`: how long a dropped 2025-11-25 call waits to be resumed before it
/// is cancelled (0, the default: at once); see [`TimeoutBuilder::resume_grace`].
pub const ENV_RESUME_GRACE_MS: &str = "MCP_CALL_RESUME_GRACE_MS";

/// Every environment variable [`TimeoutLayer::from_env`] reads.
pub const ENV_VARS: [&str; 5] = [
    ENV_TIMEOUT_MS,
    ENV_MAX_MS,
    ENV_RESET_ON_PROGRESS,
    ENV_MAX_PAUSE_MS,
    ENV_RESUME_GRACE_MS,
];

/// What every service of one layer shares: the settings and the table of calls waiting on
/// their client.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) policy: Policy,
    pub(crate) pauses: Arc<Pauses>,
    pub(crate) calls: Arc<Calls>,
    /// Cancellations of dropped calls held for [`TimeoutBuilder::resume_grace`].
    pub(crate) held: Arc<Held>,
    /// Ends every call at a server's drain deadline.
    pub(crate) drain: CallDrain,
}

/// Applies [`Timeout`]: a per-call deadline that follows the call to its final JSON-RPC
/// response. See the [crate docs](crate).
///
/// Built with [`TimeoutLayer::builder`] or [`TimeoutLayer::from_env`]. Cloning shares the
/// settings; every service it makes shares them too.
#[derive(Clone)]
pub struct TimeoutLayer {
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for TimeoutLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("policy", &self.shared.policy)
            .finish()
    }
}

impl TimeoutLayer {
    /// A layer giving every call `deadline`, with the other settings at their defaults (like
    /// tower's `TimeoutLayer::new`). A zero deadline times every call out at once, as tower's
    /// does; [`builder`](Self::builder) refuses it, and adds per-tool deadlines, progress
    /// resets and the rest.
    pub fn new(deadline: Duration) -> Self {
        // The smallest deadline the clock can tell from none: elapsed at the first look.
        let deadline = deadline.max(Duration::from_nanos(1));
        Self::builder(deadline)
            .build()
            .expect("a positive deadline with default settings is valid")
    }

    /// A builder whose calls get `default` unless a per-tool or per-request setting says
    /// otherwise.
    pub fn builder(default: Duration) -> TimeoutBuilder {
        TimeoutBuilder {
            policy: Policy {
                default,
                per_tool: HashMap::new(),
                per_request: None,
                reset_on_progress: false,
                max_total: None,
                max_pause: TimeoutBuilder::DEFAULT_MAX_PAUSE,
                boundary_grace: TimeoutBuilder::DEFAULT_BOUNDARY_GRACE,
                resume_grace: Duration::ZERO,
            },
        }
    }

    /// The layer from the process environment, or `None` when [`ENV_TIMEOUT_MS`] is unset or
    /// empty (no per-call deadline):
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `MCP_CALL_TIMEOUT_MS` | default deadline, a positive integer of milliseconds |
    /// | `MCP_CALL_TIMEOUT_MAX_MS` | optional absolute cap, at least the deadline |
    /// | `MCP_CALL_TIMEOUT_RESET_ON_PROGRESS` | `true` / `false` (default); `true` needs the cap |
    /// | `MCP_CALL_MAX_PAUSE_MS` | longest a call may stay paused, waiting on its client (default 600000, at most 86400000) |
    /// | `MCP_CALL_RESUME_GRACE_MS` | how long a dropped 2025-11-25 call waits to be resumed before it is cancelled (default 0, at most 60000) |
    ///
    /// Errors name the variable; a variable set to bytes that are not UTF-8 is one (never
    /// "unset", which would leave calls without a deadline).
    pub fn from_env() -> Result<Option<TimeoutLayer>, ConfigError> {
        if let Some(var) = tower_armor_mcp::env::not_unicode(&ENV_VARS) {
            return Err(ConfigError::Env {
                var,
                reason: "not valid UTF-8".into(),
            });
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`TimeoutLayer::from_env`] reading variables through `lookup` (for a configuration
    /// loaded elsewhere, and for tests).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TimeoutLayer>, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim_ascii().is_empty());
        let millis = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
            let Some(v) = get(var) else {
                return Ok(None);
            };
            let shown = tower_armor_mcp::env::shown(&v);
            // A call deadline of more than a day is a typo, or "no deadline" spelled as a
            // number: it would keep a stuck call's permits for good.
            let most = if var == ENV_MAX_PAUSE_MS {
                TimeoutBuilder::MAX_PAUSE_LIMIT
            } else {
                MAX_ENV_DEADLINE
            };
            match tower_armor_mcp::env::number::<u64>(&v) {
                Ok(0) => Err(ConfigError::Env {
                    var,
                    reason: format!("must be a positive number of milliseconds, got {shown}"),
                }),
                Ok(n) if Duration::from_millis(n) > most => Err(ConfigError::Env {
                    var,
                    reason: format!(
                        "must be at most {} milliseconds, got {shown}",
                        most.as_millis()
                    ),
                }),
                Ok(n) => Ok(Some(Duration::from_millis(n))),
                Err(_) => Err(ConfigError::Env {
                    var,
                    reason: format!("not a number of milliseconds: {shown}"),
                }),
            }
        };
        let reset = match get(ENV_RESET_ON_PROGRESS) {
            None => false,
            Some(v) => match v.trim_ascii().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_RESET_ON_PROGRESS,
                        reason: format!(
                            "expected true or false, got {}",
                            tower_armor_mcp::env::shown(&v)
                        ),
                    });
                }
            },
        };
        let max = millis(ENV_MAX_MS)?;
        let max_pause = millis(ENV_MAX_PAUSE_MS)?;
        let resume_grace = match get(ENV_RESUME_GRACE_MS) {
            None => None,
            Some(v) => match tower_armor_mcp::env::number::<u64>(&v) {
                Ok(n) if Duration::from_millis(n) <= TimeoutBuilder::MAX_RESUME_GRACE => {
                    Some(Duration::from_millis(n))
                }
                _ => {
                    return Err(ConfigError::Env {
                        var: ENV_RESUME_GRACE_MS,
                        reason: format!(
                            "expected milliseconds from 0 to {}, got {}",
                            TimeoutBuilder::MAX_RESUME_GRACE.as_millis(),
                            tower_armor_mcp::env::shown(&v)
                        ),
                    });
                }
            },
        };
        let Some(default) = millis(ENV_TIMEOUT_MS)? else {
            if max.is_some() || reset || max_pause.is_some() || resume_grace.is_some() {
                return Err(ConfigError::Env {
                    var: ENV_TIMEOUT_MS,
                    reason: format!(
                        "required when {ENV_MAX_MS}, {ENV_RESET_ON_PROGRESS}, {ENV_MAX_PAUSE_MS} \
                         or {ENV_RESUME_GRACE_MS} is set"
                    ),
                });
            }
            return Ok(None);
        };
        let mut b = TimeoutLayer::builder(default).reset_on_progress(reset);
        if let Some(max) = max {
            b = b.max_total(max);
        }
        if let Some(max_pause) = max_pause {
            b = b.max_pause(max_pause);
        }
        if let Some(grace) = resume_grace {
            b = b.resume_grace(grace);
        }
        b.build().map(Some).map_err(|e| match e {
            ConfigError::CapBelowDeadline { .. } => ConfigError::Env {
                var: ENV_MAX_MS,
                reason: format!("must be at least {ENV_TIMEOUT_MS}"),
            },
            ConfigError::ResetWithoutCap => ConfigError::Env {
                var: ENV_RESET_ON_PROGRESS,
                reason: format!("needs {ENV_MAX_MS} (an absolute cap)"),
            },
            ConfigError::TooLong { limit, .. } => ConfigError::Env {
                var: ENV_MAX_PAUSE_MS,
                reason: format!("must be at most {} milliseconds", limit.as_millis()),
            },
            other => other,
        })
    }

    /// The switch that ends every call of this layer (and of its clones and services) at a
    /// server's drain deadline; see [`CallDrain`].
    pub fn drain_handle(&self) -> CallDrain {
        self.shared.drain.clone()
    }

    /// The default deadline.
    pub fn default_timeout(&self) -> Duration {
        self.shared.policy.default
    }

    /// The absolute cap, if any.
    pub fn max_total(&self) -> Option<Duration> {
        self.shared.policy.max_total
    }

    /// The longest a call may stay paused, waiting on its client.
    pub fn max_pause(&self) -> Duration {
        self.shared.policy.max_pause
    }

    /// How long a dropped 2025-11-25 call waits to be resumed before it is cancelled.
    pub fn resume_grace(&self) -> Duration {
        self.shared.policy.resume_grace
    }

    /// Whether progress notifications reset the deadline.
    pub fn resets_on_progress(&self) -> bool {
        self.shared.policy.reset_on_progress
    }

    /// The longest a call can stay in flight under this layer, from the moment it reaches the
    /// layer until its outcome is known: the cap plus the boundary grace when there is a cap;
    /// otherwise the longest configured deadline plus [`max_pause`](Self::max_pause) plus the
    /// grace. `None` when a per-request chooser without a cap makes it unknowable.
    ///
    /// A circuit breaker outside this layer should give its half-open probes a lease
    /// (`probe_lease`) at least this long, plus any wait in between such as a bulkhead's line,
    /// or a slow probe that still succeeds is settled as failed when its lease ends.
    pub fn longest_call(&self) -> Option<Duration> {
        let p = &self.shared.policy;
        let grace = p.boundary_grace;
        if let Some(cap) = p.max_total {
            return Some(cap.saturating_add(grace));
        }
        if p.per_request.is_some() {
            return None;
        }
        let longest = p.per_tool.values().copied().fold(p.default, Duration::max);
        Some(longest.saturating_add(p.max_pause).saturating_add(grace))
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self)
    }
}

/// Builds a [`TimeoutLayer`]; see [`TimeoutLayer::builder`].
pub struct TimeoutBuilder {
    policy: Policy,
}

impl fmt::Debug for TimeoutBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutBuilder")
            .field("policy", &self.policy)
            .finish()
    }
}

/// See [`TimeoutBuilder::MAX_ENV_DEADLINE`].
const MAX_ENV_DEADLINE: Duration = Duration::from_secs(86_400);

impl TimeoutBuilder {
    /// The default [`TimeoutBuilder::boundary_grace`]: 100 ms.
    pub const DEFAULT_BOUNDARY_GRACE: Duration = Duration::from_millis(100);

    /// The default [`TimeoutBuilder::max_pause`]: 10 minutes, time for a person to answer.
    pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(600);

    /// The longest [`TimeoutBuilder::max_pause`] accepted: 24 hours. An answer stream held
    /// open longer is a leak, not a conversation.
    pub const MAX_PAUSE_LIMIT: Duration = Duration::from_secs(86_400);

    /// The longest [`TimeoutBuilder::resume_grace`] accepted: one minute (an SDK reconnects
    /// within seconds; meanwhile the tool runs, holding its bulkhead permit).
    pub const MAX_RESUME_GRACE: Duration = Duration::from_secs(60);

    /// The longest deadline or cap the environment may set (`MCP_CALL_TIMEOUT_MS`,
    /// `MCP_CALL_TIMEOUT_MAX_MS`): 24 hours. The builder takes any.
    pub const MAX_ENV_DEADLINE: Duration = MAX_ENV_DEADLINE;

    /// Gives `tools/call` of `tool` its own deadline. Names are only looked up (never stored
    /// per call), so a client cannot grow the table.
    pub fn tool(mut self, tool: impl Into<Box<str>>, timeout: Duration) -> Self {
        self.policy.per_tool.insert(tool.into(), timeout);
        self
    }

    /// Chooses the deadline per request: `Some(d)` gives the call `d`; `None` leaves it to
    /// [`TimeoutBuilder::tool`] and the default. Runs once per call; keep it cheap. A zero
    /// answer times the call out at once.
    pub fn per_request(
        mut self,
        choose: impl Fn(&McpRequest) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        self.policy.per_request = Some(Arc::new(choose));
        self
    }

    /// Whether each `notifications/progress` in the answer starts the deadline anew (the MCP
    /// spec allows it: progress shows the work goes on). Needs [`TimeoutBuilder::max_total`].
    pub fn reset_on_progress(mut self, reset: bool) -> Self {
        self.policy.reset_on_progress = reset;
        self
    }

    /// The absolute cap of a call: wall clock from the call's start, moved by neither progress
    /// nor pauses (the MCP spec asks for one whenever progress resets the deadline). It also
    /// bounds the time a call may wait on its client, together with
    /// [`TimeoutBuilder::max_pause`]: the earlier of the two applies.
    pub fn max_total(mut self, cap: Duration) -> Self {
        self.policy.max_total = Some(cap);
        self
    }

    /// The longest a call may stay paused while the server waits on its client
    /// (`elicitation/create`, `sampling/createMessage`), over all its pauses: default
    /// [10 minutes](Self::DEFAULT_MAX_PAUSE), at most [24 hours](Self::MAX_PAUSE_LIMIT).
    ///
    /// When it runs out during a pause, the call times out as at its deadline (the in-stream
    /// error event, and `notifications/cancelled` under 2025-11-25). It is what ends a pause
    /// whose answer this layer never sees: the client never answers, or its answer was counted
    /// for another call of the session (see the [crate docs](crate#progress-pauses-and-tasks);
    /// a call without a session is never paused). Without a cap a call thus lasts at most
    /// its deadline plus `max_pause` (unless progress resets the deadline, which needs a cap);
    /// with [`TimeoutBuilder::max_total`] the earlier of the two bounds applies.
    pub fn max_pause(mut self, max: Duration) -> Self {
        self.policy.max_pause = max;
        self
    }

    /// How long a 2025-11-25 call whose caller dropped the answer before its final message
    /// waits to be resumed (`GET` + `Last-Event-ID` of its stream, in its session) before the
    /// layer cancels it (default zero: at once). Both official SDKs resume a broken stream, and
    /// the MCP specification says a disconnection should not be read as a cancellation; with a
    /// grace a resumed call goes on, while one nobody resumes is still cancelled, so the tool
    /// runs on for at most the grace unless its client comes back; meanwhile it keeps its
    /// bulkhead permit (the layer holds a [`Continuation`](tower_armor_mcp::Continuation) of
    /// the call). At most
    /// [`TimeoutBuilder::MAX_RESUME_GRACE`]. See the [crate docs](crate#cancellation).
    pub fn resume_grace(mut self, grace: Duration) -> Self {
        self.policy.resume_grace = grace;
        self
    }

    /// How long the layer waits, once the deadline passes in the middle of an SSE event, for
    /// that event to end before it writes its error event (default 100 ms). Past it the answer
    /// is cut with a body error instead: an event cannot be interrupted without corrupting it.
    pub fn boundary_grace(mut self, grace: Duration) -> Self {
        self.policy.boundary_grace = grace;
        self
    }

    /// Checks the settings: positive deadlines, a cap at least every configured deadline, a
    /// cap when progress resets the deadline, a positive `max_pause` within
    /// [`TimeoutBuilder::MAX_PAUSE_LIMIT`].
    pub fn build(self) -> Result<TimeoutLayer, ConfigError> {
        let p = &self.policy;
        if p.default.is_zero() {
            return Err(ConfigError::Zero {
                setting: "default deadline".into(),
            });
        }
        if p.max_pause.is_zero() {
            return Err(ConfigError::Zero {
                setting: "max_pause".into(),
            });
        }
        if p.resume_grace > Self::MAX_RESUME_GRACE {
            return Err(ConfigError::TooLong {
                setting: "resume_grace".into(),
                value: p.resume_grace,
                limit: Self::MAX_RESUME_GRACE,
            });
        }
        if p.max_pause > Self::MAX_PAUSE_LIMIT {
            return Err(ConfigError::TooLong {
                setting: "max_pause".into(),
                value: p.max_pause,
                limit: Self::MAX_PAUSE_LIMIT,
            });
        }
        for (tool, d) in &p.per_tool {
            if d.is_zero() {
                return Err(ConfigError::Zero {
                    setting: format!("deadline of tool {tool:?}"),
                });
            }
        }
        if let Some(cap) = p.max_total {
            if cap.is_zero() {
                return Err(ConfigError::Zero {
                    setting: "max_total".into(),
                });
            }
            let deadlines = std::iter::once(("default deadline".to_string(), p.default)).chain(
                p.per_tool
                    .iter()
                    .map(|(t, d)| (format!("deadline of tool {t:?}"), *d)),
            );
            for (setting, deadline) in deadlines {
                if deadline > cap {
                    return Err(ConfigError::CapBelowDeadline {
                        setting,
                        deadline,
                        max_total: cap,
                    });
                }
            }
        } else if p.reset_on_progress {
            return Err(ConfigError::ResetWithoutCap);
        }
        let held = Arc::new(Held::default());
        Ok(TimeoutLayer {
            shared: Arc::new(Shared {
                policy: self.policy,
                pauses: Arc::default(),
                calls: Arc::default(),
                held: Arc::clone(&held),
                drain: CallDrain::new(held),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Option<TimeoutLayer>, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TimeoutLayer::from_lookup(|k| vars.get(k).cloned())
    }

    fn env_var(e: ConfigError) -> &'static str {
        match e {
            ConfigError::Env { var, .. } => var,
            other => panic!("not an env error: {other}"),
        }
    }

    #[test]
    fn the_longest_call() {
        let ms = Duration::from_millis;
        let grace = ms(100);
        let l = TimeoutLayer::builder(ms(1_000))
            .tool("slow", ms(5_000))
            .max_pause(ms(60_000))
            .build()
            .unwrap();
        assert_eq!(l.longest_call(), Some(ms(65_000) + grace));
        let capped = TimeoutLayer::builder(ms(1_000))
            .tool("slow", ms(5_000))
            .max_total(ms(8_000))
            .build()
            .unwrap();
        assert_eq!(capped.longest_call(), Some(ms(8_000) + grace));
        let chosen = TimeoutLayer::builder(ms(1_000))
            .per_request(|_| Some(Duration::from_secs(3600)))
            .build()
            .unwrap();
        assert_eq!(chosen.longest_call(), None, "the chooser may pick anything");
    }

    #[test]
    fn env_resume_grace() {
        let l = env(&[(ENV_TIMEOUT_MS, "1000"), (ENV_RESUME_GRACE_MS, "3000")])
            .unwrap()
            .unwrap();
        assert_eq!(l.shared.policy.resume_grace, Duration::from_secs(3));
        let l = env(&[(ENV_TIMEOUT_MS, "1000"), (ENV_RESUME_GRACE_MS, "0")])
            .unwrap()
            .unwrap();
        assert!(l.shared.policy.resume_grace.is_zero());
        for bad in ["60001", "-1", "soon"] {
            let e = env(&[(ENV_TIMEOUT_MS, "1000"), (ENV_RESUME_GRACE_MS, bad)]).unwrap_err();
            assert_eq!(env_var(e), ENV_RESUME_GRACE_MS, "{bad}");
        }
        let e = env(&[(ENV_RESUME_GRACE_MS, "3000")]).unwrap_err();
        assert_eq!(env_var(e), ENV_TIMEOUT_MS, "a grace without a deadline");
    }

    #[test]
    fn env_unset_means_no_layer() {
        assert!(env(&[]).unwrap().is_none());
        assert!(env(&[(ENV_TIMEOUT_MS, " ")]).unwrap().is_none());
    }

    #[test]
    fn env_values() {
        let l = env(&[(ENV_TIMEOUT_MS, "1500")]).unwrap().unwrap();
        assert_eq!(l.default_timeout(), Duration::from_millis(1500));
        assert_eq!(l.max_total(), None);
        assert_eq!(l.max_pause(), TimeoutBuilder::DEFAULT_MAX_PAUSE);
        assert!(!l.resets_on_progress());
        let l = env(&[
            (ENV_TIMEOUT_MS, "1500"),
            (ENV_MAX_MS, "60000"),
            (ENV_RESET_ON_PROGRESS, "TRUE"),
            (ENV_MAX_PAUSE_MS, "120000"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.max_total(), Some(Duration::from_secs(60)));
        assert_eq!(l.max_pause(), Duration::from_secs(120));
        assert!(l.resets_on_progress());
    }

    #[test]
    fn env_errors_name_the_variable() {
        assert_eq!(
            env_var(env(&[(ENV_TIMEOUT_MS, "0")]).unwrap_err()),
            ENV_TIMEOUT_MS
        );
        assert_eq!(
            env_var(env(&[(ENV_TIMEOUT_MS, "1.5s")]).unwrap_err()),
            ENV_TIMEOUT_MS
        );
        assert_eq!(
            env_var(env(&[(ENV_TIMEOUT_MS, "-3")]).unwrap_err()),
            ENV_TIMEOUT_MS
        );
        assert_eq!(
            env_var(env(&[(ENV_MAX_MS, "100")]).unwrap_err()),
            ENV_TIMEOUT_MS
        );
        assert_eq!(
            env_var(env(&[(ENV_TIMEOUT_MS, "100"), (ENV_MAX_MS, "50")]).unwrap_err()),
            ENV_MAX_MS
        );
        assert_eq!(
            env_var(env(&[(ENV_TIMEOUT_MS, "100"), (ENV_RESET_ON_PROGRESS, "true")]).unwrap_err()),
            ENV_RESET_ON_PROGRESS
        );
        assert_eq!(
            env_var(env(&[(ENV_TIMEOUT_MS, "100"), (ENV_RESET_ON_PROGRESS, "maybe")]).unwrap_err()),
            ENV_RESET_ON_PROGRESS
        );
        assert_eq!(
            env_var(env(&[(ENV_MAX_PAUSE_MS, "1000")]).unwrap_err()),
            ENV_TIMEOUT_MS
        );
        for bad in ["0", "-1", "ten", "86400001", &u64::MAX.to_string()] {
            assert_eq!(
                env_var(env(&[(ENV_TIMEOUT_MS, "100"), (ENV_MAX_PAUSE_MS, bad)]).unwrap_err()),
                ENV_MAX_PAUSE_MS,
                "{bad}"
            );
        }
        // A deadline or cap of more than a day (a stuck call would keep its permits for good).
        for bad in ["86400001", "+5000", &u64::MAX.to_string()] {
            assert_eq!(
                env_var(env(&[(ENV_TIMEOUT_MS, bad)]).unwrap_err()),
                ENV_TIMEOUT_MS,
                "{bad}"
            );
            assert_eq!(
                env_var(env(&[(ENV_TIMEOUT_MS, "100"), (ENV_MAX_MS, bad)]).unwrap_err()),
                ENV_MAX_MS,
                "{bad}"
            );
        }
        let msg = env(&[(ENV_TIMEOUT_MS, "86400001")])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("at most 86400000") && msg.contains("86400001"),
            "{msg}"
        );
        assert!(
            env(&[(ENV_TIMEOUT_MS, "86400000"), (ENV_MAX_MS, "86400000")])
                .unwrap()
                .is_some()
        );
        let msg = env(&[(ENV_TIMEOUT_MS, "abc")]).unwrap_err().to_string();
        assert!(msg.starts_with("MCP_CALL_TIMEOUT_MS:"), "{msg}");
    }

    #[test]
    fn builder_validation() {
        let s = Duration::from_secs;
        assert!(matches!(
            TimeoutLayer::builder(Duration::ZERO).build(),
            Err(ConfigError::Zero { .. })
        ));
        assert!(matches!(
            TimeoutLayer::builder(s(1))
                .tool("slow", Duration::ZERO)
                .build(),
            Err(ConfigError::Zero { .. })
        ));
        assert!(matches!(
            TimeoutLayer::builder(s(1))
                .max_total(Duration::ZERO)
                .build(),
            Err(ConfigError::Zero { .. })
        ));
        assert!(matches!(
            TimeoutLayer::builder(s(1)).reset_on_progress(true).build(),
            Err(ConfigError::ResetWithoutCap)
        ));
        assert!(matches!(
            TimeoutLayer::builder(s(1))
                .tool("slow", s(90))
                .max_total(s(60))
                .build(),
            Err(ConfigError::CapBelowDeadline { .. })
        ));
        assert!(matches!(
            TimeoutLayer::builder(s(1))
                .max_pause(Duration::ZERO)
                .build(),
            Err(ConfigError::Zero { .. })
        ));
        assert!(matches!(
            TimeoutLayer::builder(s(1)).max_pause(Duration::MAX).build(),
            Err(ConfigError::TooLong { .. })
        ));
        let l = TimeoutLayer::builder(s(1))
            .max_pause(TimeoutBuilder::MAX_PAUSE_LIMIT)
            .build()
            .unwrap();
        assert_eq!(l.max_pause(), s(86_400));
        let l = TimeoutLayer::builder(s(1))
            .tool("slow", s(30))
            .max_total(s(60))
            .reset_on_progress(true)
            .build()
            .unwrap();
        assert_eq!(l.max_total(), Some(s(60)));
    }
}
