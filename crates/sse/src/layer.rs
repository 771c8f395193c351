use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::Waker;

use http::HeaderValue;
use std::time::Duration;

use tower_armor_mcp::signal::Signal;
use tower_layer::Layer;

use crate::error::ConfigError;
use crate::service::Sse;
use crate::shutdown::SseShutdown;

/// The keep-alive interval variable (whole seconds, `0` = off, default 15).
pub const ENV_KEEPALIVE: &str = "MCP_SSE_KEEPALIVE_SECONDS";
/// The idle timeout variable for long-lived streams (whole seconds, unset or `0` = off).
pub const ENV_IDLE_TIMEOUT: &str = "MCP_SSE_IDLE_TIMEOUT_SECONDS";

/// Settings and state shared by every clone of the layer and its services.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) shutdown_grace: Duration,
    /// Ends every stream ([`SseShutdown::shutdown`](crate::SseShutdown::shutdown) fires
    /// `listen_shutdown` too).
    pub(crate) shutdown: Signal,
    /// Ends long-lived streams only (a drain: calls in flight finish).
    pub(crate) listen_shutdown: Signal,
    pub(crate) open: AtomicUsize,
    /// The sessions with a standalone `GET` stream open or asked for, each with the
    /// [`Credential`] of the request that holds its place (see
    /// [One listen stream per session](crate#one-listen-stream-per-session)).
    pub(crate) listens: Mutex<HashMap<HeaderValue, Slot>>,
    /// Keys the credential digests (random per layer).
    pub(crate) credential_key: RandomState,
}

impl Shared {
    /// The signal that ends a stream of this kind.
    pub(crate) fn shutdown_of(&self, long_lived: bool) -> &Signal {
        if long_lived {
            &self.listen_shutdown
        } else {
            &self.shutdown
        }
    }
}

/// A keyed digest of a request's `Authorization` header (of its absence too): which client a
/// standalone `GET` comes from, as far as this layer, outside authentication, can tell. Two
/// requests with the same credential are the same client; the token itself is never kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Credential(u64);

impl Credential {
    pub(crate) fn of(shared: &Shared, authorization: Option<&HeaderValue>) -> Self {
        Credential(
            shared
                .credential_key
                .hash_one(authorization.map(HeaderValue::as_bytes)),
        )
    }
}

/// A session's place: its standalone stream, or the one request of the session in flight that
/// may become it.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// `Some`: the stream is open, taken by a request with this credential. `None`: a request
    /// is in flight.
    open: Option<Credential>,
    /// Requests waiting for the one in flight to be answered.
    waiters: Vec<Waker>,
}

/// What a standalone `GET` finds when it asks for its session's place.
pub(crate) enum Taken {
    /// The place is free: this request holds it while in flight.
    Place(ListenPlace),
    /// Another request of the session is in flight: wait for its answer (the waker, if given,
    /// is woken then).
    Busy,
    /// The session's stream is open, taken with this request's own credential: the same
    /// client's second stream (409 at once).
    OpenBySame,
    /// The session's stream is open, taken with another credential: this request may not be
    /// allowed in at all, so it is told nothing here and goes on to authentication.
    OpenByOther,
}

/// A session's place, given back when dropped (the request was answered without a stream, or
/// the stream ended).
pub(crate) struct ListenPlace {
    shared: Arc<Shared>,
    session: HeaderValue,
    credential: Credential,
}

impl ListenPlace {
    /// Asks for the place of `session` for a request with `credential`.
    pub(crate) fn take(
        shared: &Arc<Shared>,
        session: &HeaderValue,
        credential: Credential,
        waker: Option<&Waker>,
    ) -> Taken {
        let mut slots = shared.listens.lock().unwrap_or_else(|p| p.into_inner());
        match slots.get_mut(session) {
            None => {
                let session = session.clone();
                slots.insert(session.clone(), Slot::default());
                Taken::Place(ListenPlace {
                    shared: Arc::clone(shared),
                    session,
                    credential,
                })
            }
            Some(slot) => match slot.open {
                Some(c) if c == credential => Taken::OpenBySame,
                Some(_) => Taken::OpenByOther,
                None => {
                    // Every waiter is woken when the request in flight is answered, and
                    // registers again if another got in first: constant work per waiter here
                    // (a scan of the line would make a flood of waiters quadratic).
                    if let Some(w) = waker
                        && !slot.waiters.last().is_some_and(|x| x.will_wake(w))
                    {
                        slot.waiters.push(w.clone());
                    }
                    Taken::Busy
                }
            },
        }
    }

    /// The request holding the place was answered with a stream: the place is that stream's
    /// now, and the requests waiting learn it.
    pub(crate) fn opened(&self) {
        let waiters = {
            let mut slots = self
                .shared
                .listens
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match slots.get_mut(&self.session) {
                Some(slot) => {
                    slot.open = Some(self.credential);
                    std::mem::take(&mut slot.waiters)
                }
                None => Vec::new(),
            }
        };
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl Drop for ListenPlace {
    fn drop(&mut self) {
        let slot = self
            .shared
            .listens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.session);
        if let Some(slot) = slot {
            slot.waiters.into_iter().for_each(Waker::wake);
        }
    }
}

/// Applies [`Sse`]: stream headers, keep-alive comments at event boundaries, the idle timeout of
/// long-lived streams and graceful shutdown. See the [crate docs](crate).
///
/// Every clone, and every service it makes, shares one configuration and one shutdown signal.
///
/// ```
/// use std::time::Duration;
/// use tower_armor_sse::SseLayer;
///
/// let layer = SseLayer::builder()
///     .keep_alive(Some(Duration::from_secs(10)))
///     .idle_timeout(Some(Duration::from_secs(300)))
///     .build()
///     .unwrap();
/// let shutdown = layer.shutdown_handle();
/// # let _ = shutdown;
/// ```
#[derive(Clone, Debug)]
pub struct SseLayer {
    shared: Arc<Shared>,
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseLayer {
    /// The default keep-alive interval: 15 s.
    pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);
    /// The default shutdown grace: 5 s.
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    /// The longest keep-alive interval, idle timeout or shutdown grace accepted: 30 days.
    pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

    /// The defaults: keep-alive every 15 s, no idle timeout, 5 s shutdown grace.
    pub fn new() -> Self {
        SseLayerBuilder::default()
            .build()
            .expect("the defaults are valid")
    }

    /// A builder for other settings.
    pub fn builder() -> SseLayerBuilder {
        SseLayerBuilder::default()
    }

    /// Reads `MCP_SSE_KEEPALIVE_SECONDS` (default 15, `0` = off) and
    /// `MCP_SSE_IDLE_TIMEOUT_SECONDS` (default off, `0` = off); the idle timeout must be longer
    /// than the keep-alive interval.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::var)
    }

    /// [`SseLayer::from_env`] reading variables through `lookup` (for configuration kept
    /// elsewhere, and for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_vars(|k| lookup(k).ok_or(std::env::VarError::NotPresent))
    }

    fn from_vars(
        var: impl Fn(&'static str) -> Result<String, std::env::VarError>,
    ) -> Result<Self, ConfigError> {
        let keep_alive = match env_seconds(ENV_KEEPALIVE, &var)? {
            None => Some(Self::DEFAULT_KEEP_ALIVE),
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        let idle = match env_seconds(ENV_IDLE_TIMEOUT, &var)? {
            None | Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
        };
        Self::builder()
            .keep_alive(keep_alive)
            .idle_timeout(idle)
            .build()
    }

    /// A handle that ends every open stream of this layer (see [`SseShutdown`]).
    pub fn shutdown_handle(&self) -> SseShutdown {
        SseShutdown::new(Arc::clone(&self.shared))
    }

    /// The keep-alive interval (`None`: off).
    pub fn keep_alive(&self) -> Option<Duration> {
        self.shared.keep_alive
    }

    /// The idle timeout of long-lived streams (`None`: off).
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.shared.idle_timeout
    }
}

fn env_seconds(
    variable: &'static str,
    var: &impl Fn(&'static str) -> Result<String, std::env::VarError>,
) -> Result<Option<u64>, ConfigError> {
    match var(variable) {
        Ok(v) if v.trim_ascii().is_empty() => Ok(None),
        Ok(v) => match tower_armor_mcp::env::number::<u64>(&v) {
            Ok(secs) if Duration::from_secs(secs) > SseLayer::MAX_DURATION => {
                Err(ConfigError::TooLong {
                    setting: variable,
                    value: Duration::from_secs(secs),
                })
            }
            Ok(secs) => Ok(Some(secs)),
            Err(_) => Err(ConfigError::NotSeconds { variable, value: v }),
        },
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(ConfigError::NotSeconds {
            variable,
            value: v.to_string_lossy().into_owned(),
        }),
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = Sse<S>;

    fn layer(&self, inner: S) -> Sse<S> {
        Sse::new(inner, Arc::clone(&self.shared))
    }
}

/// Builds an [`SseLayer`]; settings are checked together by [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct SseLayerBuilder {
    keep_alive: Option<Duration>,
    idle_timeout: Option<Duration>,
    shutdown_grace: Duration,
}

impl Default for SseLayerBuilder {
    fn default() -> Self {
        SseLayerBuilder {
            keep_alive: Some(SseLayer::DEFAULT_KEEP_ALIVE),
            idle_timeout: None,
            shutdown_grace: SseLayer::DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl SseLayerBuilder {
    /// Sends an SSE comment (`:\n\n`) when no frame has been sent for this long, at an event
    /// boundary only: a `Duration`, or an `Option` of one. `None` or zero turns keep-alive off
    /// (as `MCP_SSE_KEEPALIVE_SECONDS=0` does). Default 15 s.
    pub fn keep_alive(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keep_alive = interval.into().filter(|d| !d.is_zero());
        self
    }

    /// Ends a long-lived stream (GET listen, `subscriptions/listen`) that carried no data event
    /// for this long (comments do not count), at an event boundary. Never applies to call
    /// streams. Must be longer than the keep-alive interval. A `Duration`, or an `Option` of
    /// one; `None` or zero is off (as `MCP_SSE_IDLE_TIMEOUT_SECONDS=0`). Default: off.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into().filter(|d| !d.is_zero());
        self
    }

    /// After a shutdown, how long a stream caught in the middle of an event may take to reach its
    /// end before it is cut anyway (an SSE client drops an unterminated event). Default 5 s.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<SseLayer, ConfigError> {
        for (setting, value) in [
            ("keep_alive", self.keep_alive),
            ("idle_timeout", self.idle_timeout),
            ("shutdown_grace", Some(self.shutdown_grace)),
        ] {
            if let Some(value) = value.filter(|v| *v > SseLayer::MAX_DURATION) {
                return Err(ConfigError::TooLong { setting, value });
            }
        }
        if let (Some(idle), Some(keep_alive)) = (self.idle_timeout, self.keep_alive)
            && idle <= keep_alive
        {
            return Err(ConfigError::IdleNotAboveKeepAlive { idle, keep_alive });
        }
        Ok(SseLayer {
            shared: Arc::new(Shared {
                keep_alive: self.keep_alive,
                idle_timeout: self.idle_timeout,
                shutdown_grace: self.shutdown_grace,
                shutdown: Signal::new(),
                listen_shutdown: Signal::new(),
                open: AtomicUsize::new(0),
                listens: Mutex::new(HashMap::new()),
                credential_key: RandomState::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated_together() {
        let s = |secs| Some(Duration::from_secs(secs));
        assert!(SseLayer::builder().build().is_ok());
        assert!(SseLayer::builder().idle_timeout(s(16)).build().is_ok());
        assert_eq!(
            SseLayer::builder().idle_timeout(s(15)).build().unwrap_err(),
            ConfigError::IdleNotAboveKeepAlive {
                idle: Duration::from_secs(15),
                keep_alive: Duration::from_secs(15)
            }
        );
        assert!(
            SseLayer::builder()
                .keep_alive(None)
                .idle_timeout(s(1))
                .build()
                .is_ok()
        );
        // Zero is off, as in the environment; a plain `Duration` is accepted too.
        let off = SseLayer::builder()
            .keep_alive(s(0))
            .idle_timeout(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(off.shared.keep_alive, None);
        assert_eq!(off.shared.idle_timeout, None);
        let on = SseLayer::builder()
            .keep_alive(Duration::from_secs(10))
            .idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        assert_eq!(on.shared.keep_alive, Some(Duration::from_secs(10)));
        assert_eq!(on.shared.idle_timeout, Some(Duration::from_secs(60)));
        let e = SseLayer::builder()
            .keep_alive(s(30))
            .idle_timeout(s(10))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains(ENV_IDLE_TIMEOUT), "{e}");
    }

    #[test]
    fn environment_is_read_and_validated() {
        use std::env::VarError;
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &'static str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
                    .ok_or(VarError::NotPresent)
            }
        };
        let l = SseLayer::from_vars(env(&[])).unwrap();
        assert_eq!(l.keep_alive(), Some(Duration::from_secs(15)));
        assert_eq!(l.idle_timeout(), None);
        let l = SseLayer::from_vars(env(&[(ENV_KEEPALIVE, "0"), (ENV_IDLE_TIMEOUT, "5")])).unwrap();
        assert_eq!(l.keep_alive(), None);
        assert_eq!(l.idle_timeout(), Some(Duration::from_secs(5)));
        let l =
            SseLayer::from_vars(env(&[(ENV_KEEPALIVE, " 20 "), (ENV_IDLE_TIMEOUT, "0")])).unwrap();
        assert_eq!(l.keep_alive(), Some(Duration::from_secs(20)));
        assert_eq!(l.idle_timeout(), None);
        let e = SseLayer::from_vars(env(&[(ENV_KEEPALIVE, "15s")])).unwrap_err();
        assert!(e.to_string().starts_with(ENV_KEEPALIVE), "{e}");
        let e = SseLayer::from_vars(env(&[(ENV_IDLE_TIMEOUT, "-1")])).unwrap_err();
        assert!(e.to_string().starts_with(ENV_IDLE_TIMEOUT), "{e}");
        let e = SseLayer::from_vars(env(&[(ENV_IDLE_TIMEOUT, "10")])).unwrap_err();
        assert!(
            matches!(e, ConfigError::IdleNotAboveKeepAlive { .. }),
            "{e}"
        );
        // Absurdly long: refused by name (a reading that far out would overflow the clock).
        for (var, e) in [
            (
                ENV_KEEPALIVE,
                SseLayer::from_vars(env(&[(ENV_KEEPALIVE, "18446744073709551615")])),
            ),
            (
                ENV_IDLE_TIMEOUT,
                SseLayer::from_vars(env(&[(ENV_IDLE_TIMEOUT, "2592001")])),
            ),
        ] {
            let e = e.unwrap_err();
            assert!(matches!(e, ConfigError::TooLong { .. }), "{e}");
            assert!(e.to_string().starts_with(var), "{e}");
        }
        assert!(SseLayer::from_vars(env(&[(ENV_IDLE_TIMEOUT, "2592000")])).is_ok());
    }

    #[test]
    fn durations_past_the_maximum_are_refused() {
        let huge = Some(Duration::MAX);
        for (b, setting) in [
            (SseLayer::builder().keep_alive(huge), "keep_alive"),
            (SseLayer::builder().idle_timeout(huge), "idle_timeout"),
            (
                SseLayer::builder().shutdown_grace(Duration::MAX),
                "shutdown_grace",
            ),
        ] {
            match b.build() {
                Err(ConfigError::TooLong { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
    }

    #[test]
    fn clones_share_one_shutdown() {
        let layer = SseLayer::new();
        let clone = layer.clone();
        layer.shutdown_handle().shutdown();
        assert!(clone.shutdown_handle().is_shutdown());
    }
}
