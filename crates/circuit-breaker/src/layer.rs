//! [`CircuitBreakerLayer`] and the state every service of one layer shares.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tower_armor_mcp::{CallRequest, McpRequest, Method};
use tower_layer::Layer;

use crate::config::{Builder, ConfigError, KeyBy, Settings};
use crate::core::{Clock, Core};
use crate::handle::CircuitBreakerHandle;
use crate::keys::KeyTable;
use crate::service::CircuitBreaker;
use crate::state::State;

/// The key of calls naming a tool that is not known, and of requests without MCP facts.
pub const UNKNOWN_KEY: &str = tower_armor_mcp::tools::UNKNOWN_TOOL;
/// The key shared by unknown methods, requests without an authority, and keys beyond
/// [`max_keys`](Builder::max_keys).
pub const OTHER_KEY: &str = "other";

/// Applies [`CircuitBreaker`] to a service. Built (and validated) by [`Builder`]; see the
/// [crate docs](crate).
///
/// Every service this layer makes, and every clone of them, shares the same circuits and the
/// same [`CircuitBreakerHandle`].
#[derive(Clone)]
pub struct CircuitBreakerLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreakerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// A builder with the defaults.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The defaults overridden by the `MCP_BREAKER_*` environment variables (see
    /// [`Builder::from_env`]), unkeyed. For a keyed breaker, start from
    /// `Builder::from_env()?.key_by(..)`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Builder::from_env()?.build()
    }

    pub(crate) fn from_settings(
        settings: Settings,
        key_by: Option<KeyBy>,
        max_keys: usize,
    ) -> Self {
        let settings = Arc::new(settings);
        let keys = match key_by {
            None => Keys::Single(Arc::new(Core::new(
                None,
                Arc::clone(&settings),
                State::Closed,
            ))),
            Some(by) => Keys::Keyed(Box::new(Keyed {
                by,
                names: KeyTable::new(max_keys),
                methods: KeyTable::new(METHOD_KEYS),
                unknown: OnceLock::new(),
                other: OnceLock::new(),
            })),
        };
        CircuitBreakerLayer {
            shared: Arc::new(Shared {
                settings,
                keys,
                mode: AtomicU64::new(State::Closed.to_bits()),
            }),
        }
    }

    /// The handle to inspect and control the circuits (force open, force closed, reset).
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(Arc::clone(&self.shared))
    }

    /// The probe lease (for stack builders checking it against a retry layer's deadline).
    pub fn probe_lease(&self) -> Duration {
        self.shared.settings.lease
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;

    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker::new(inner, Arc::clone(&self.shared))
    }
}

/// A request's method, copied (`None`: no method, or one this crate does not know).
#[inline]
fn known_method(m: &McpRequest) -> Option<Method> {
    match m.method() {
        Some(Method::Other(_)) | None => None,
        Some(method) => Some(method.clone()),
    }
}

// === shared ===

/// Room in the method table: every method this crate knows, plus `other`.
const METHOD_KEYS: usize = 32;

pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) keys: Keys,
    /// The state new circuits start in: closed, or the last handle-wide forced state.
    mode: AtomicU64,
}

pub(crate) enum Keys {
    Single(Arc<Core>),
    Keyed(Box<Keyed>),
}

pub(crate) struct Keyed {
    by: KeyBy,
    /// Tools or authorities.
    names: KeyTable,
    methods: KeyTable,
    unknown: OnceLock<Arc<Core>>,
    other: OnceLock<Arc<Core>>,
}

impl Shared {
    /// The state new circuits start in.
    pub(crate) fn mode(&self) -> State {
        State::from_bits(self.mode.load(Ordering::Acquire))
    }

    pub(crate) fn set_mode(&self, state: State) {
        self.mode.store(state.to_bits(), Ordering::Release);
    }

    fn make(&self, key: &str) -> (Arc<str>, Arc<Core>) {
        let key: Arc<str> = Arc::from(key);
        let core = Arc::new(Core::new(
            Some(Arc::clone(&key)),
            Arc::clone(&self.settings),
            self.mode(),
        ));
        (key, core)
    }

    /// A circuit was just created in `mode`; if a handle-wide control changed the mode while
    /// it was being inserted, apply the new one.
    fn settle_mode<'a>(&self, core: &'a Arc<Core>) -> &'a Arc<Core> {
        let mode = self.mode();
        let w = core.word();
        if w.state() != mode && w.generation() == 0 {
            core.force(mode, &mut Clock::new());
        }
        core
    }

    fn fixed<'a>(&self, cell: &'a OnceLock<Arc<Core>>, key: &str) -> &'a Arc<Core> {
        let mut created = false;
        let core = cell.get_or_init(|| {
            created = true;
            self.make(key).1
        });
        if created {
            self.settle_mode(core);
        }
        core
    }

    fn in_table<'a>(&'a self, k: &'a Keyed, table: &'a KeyTable, key: &str) -> &'a Arc<Core> {
        if let Some(c) = table.get(key) {
            return c;
        }
        let mut created = false;
        let got = table.get_or_insert(key, || {
            created = true;
            self.make(key)
        });
        match got {
            Some(c) if created => self.settle_mode(c),
            Some(c) => c,
            None => {
                tracing::debug!(key, "circuit breaker key table full; using the shared key");
                self.fixed(&k.other, OTHER_KEY)
            }
        }
    }

    /// The circuit of a method (`None`: no method, or one this crate does not know).
    fn method_core<'a>(&'a self, k: &'a Keyed, method: Option<Method>) -> &'a Arc<Core> {
        match method {
            Some(Method::Other(_)) | None => self.fixed(&k.other, OTHER_KEY),
            Some(method) => self.in_table(k, &k.methods, method.as_str()),
        }
    }

    /// The circuit for a request.
    #[inline]
    pub(crate) fn resolve<R: CallRequest>(&self, req: &R) -> &Arc<Core> {
        match &self.keys {
            Keys::Single(c) => c,
            Keys::Keyed(k) => self.resolve_keyed(k, req),
        }
    }

    /// Reads the request without handing a pointer into it to code the compiler cannot see
    /// (only strings on the heap and copied methods go further), and is compiled with its
    /// caller (`#[inline]`): the compiler then knows the request is not kept, and can move it
    /// to the inner service without copying it first.
    #[inline]
    fn resolve_keyed<'a, R: CallRequest>(&'a self, k: &'a Keyed, req: &R) -> &'a Arc<Core> {
        match &k.by {
            KeyBy::Tool(known) => match req.mcp() {
                None => self.fixed(&k.unknown, UNKNOWN_KEY),
                Some(m) if matches!(m.method(), Some(Method::ToolsCall)) => match m.name() {
                    Some(name) => {
                        if let Some(c) = k.names.get(name) {
                            c
                        } else if name == OTHER_KEY {
                            // A tool named like a shared key shares it (as the bulkhead's
                            // pools do): one circuit per key, for the handle to reach.
                            self.fixed(&k.other, OTHER_KEY)
                        } else if known.contains(name) && name != UNKNOWN_KEY {
                            self.in_table(k, &k.names, name)
                        } else {
                            self.fixed(&k.unknown, UNKNOWN_KEY)
                        }
                    }
                    None => self.fixed(&k.unknown, UNKNOWN_KEY),
                },
                Some(m) => self.method_core(k, known_method(m)),
            },
            KeyBy::Method => self.method_core(k, req.mcp().and_then(known_method)),
            KeyBy::Authority => match req.authority() {
                // (An authority written `other` shares that key's circuit, as tools do.)
                Some(a) if a != OTHER_KEY => self.in_table(k, &k.names, a),
                _ => self.fixed(&k.other, OTHER_KEY),
            },
        }
    }

    /// The circuit for a key given by an operator, created if the key is one calls could
    /// use; `None` otherwise (and for an unkeyed breaker).
    pub(crate) fn circuit(&self, key: &str) -> Option<&Arc<Core>> {
        let k = match &self.keys {
            Keys::Single(_) => return None,
            Keys::Keyed(k) => k,
        };
        if key == UNKNOWN_KEY {
            return Some(self.fixed(&k.unknown, UNKNOWN_KEY));
        }
        if key == OTHER_KEY {
            return Some(self.fixed(&k.other, OTHER_KEY));
        }
        let method = Method::parse(key);
        let is_method = !matches!(method, Method::Other(_));
        match &k.by {
            KeyBy::Tool(known) => {
                if let Some(c) = k.names.get(key) {
                    Some(c)
                } else if known.contains(key) {
                    Some(self.in_table(k, &k.names, key))
                } else if is_method && method != Method::ToolsCall {
                    // (A `tools/call` is keyed by its tool, never by the method: forcing that
                    // circuit would change nothing.)
                    Some(self.in_table(k, &k.methods, key))
                } else {
                    None
                }
            }
            KeyBy::Method => is_method.then(|| self.in_table(k, &k.methods, key)),
            KeyBy::Authority => Some(self.in_table(k, &k.names, key)),
        }
    }

    /// Every circuit that exists.
    pub(crate) fn all(&self) -> Vec<Arc<Core>> {
        match &self.keys {
            Keys::Single(c) => vec![Arc::clone(c)],
            Keys::Keyed(k) => k
                .names
                .iter()
                .chain(k.methods.iter())
                .map(|(_, c)| Arc::clone(c))
                .chain(k.unknown.get().cloned())
                .chain(k.other.get().cloned())
                .collect(),
        }
    }
}
