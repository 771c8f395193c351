//! Where quota state lives: the async [`KeyStore`] trait the layer goes through, and
//! [`InMemoryStore`], the default (governor's GCRA over a bounded, sharded key table).
//!
//! The layer builds the [`Checks`] of a request (one [`RateKey`] per policy that applies,
//! narrowest first, base last) and asks the store for a [`Decision`]. The in-memory store answers at once (its future
//! is `Ready`, and the layer polls it inline, so the common case costs no extra allocation or
//! task wake-up; a request that only meets the base quota is checked directly, its one key
//! without a key list or a future); a networked store shared by replicas (Redis, a sidecar) can
//! implement the same trait later and answer asynchronously.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tower_armor_mcp::BoxError;

use crate::key::ClientKey;
use crate::policy::PolicyId;

mod memory;

pub use self::memory::{InMemoryStore, StoreStats};

/// The most policies one request can be checked against: one per-named-tool, the per-tool one,
/// one per-method and the base quota.
pub const MAX_CHECKS: usize = 4;

/// A store of per-key quota state.
///
/// `check` spends one request from each key's quota, in order, and reports each policy's state.
/// A store may stop at the first denied key, and should spend nothing on a denied request (the
/// in-memory store gives back what the keys before the denied one spent): otherwise a client
/// that waits out one quota's `Retry-After` finds another spent by its refused requests. The
/// future must be `Unpin` (box it if needed): the layer polls it once inline before it commits
/// to waiting.
///
/// A store error lets the request through (fail open) with a warning: rate limiting protects the
/// server, and an unreachable store must not take the whole service down.
pub trait KeyStore: Send + Sync + 'static {
    /// The answer's future.
    type Future: Future<Output = Result<Decision, StoreError>> + Send + Unpin + 'static;

    /// Spends one request from each of these keys' quotas.
    fn check(&self, checks: &Checks) -> Self::Future;
}

/// The identity of one quota bucket: a policy, a scope inside it (the tool, for the per-tool
/// policy) and the client.
#[derive(Clone, PartialEq, Eq)]
pub struct RateKey {
    policy: PolicyId,
    scope: Option<Arc<str>>,
    client: ClientKey,
}

impl RateKey {
    #[inline]
    pub(crate) fn new(policy: PolicyId, scope: Option<Arc<str>>, client: ClientKey) -> Self {
        RateKey {
            policy,
            scope,
            client,
        }
    }

    /// The policy.
    #[inline]
    pub fn policy(&self) -> PolicyId {
        self.policy
    }

    /// The tool key (a known tool's name or `unknown`) for the per-tool policy; `None` otherwise.
    #[inline]
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The client.
    #[inline]
    pub fn client(&self) -> &ClientKey {
        &self.client
    }
}

impl Hash for RateKey {
    // By hand: one or two wide writes instead of a write per field and discriminant (this is
    // hashed once per request and key).
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        let head = u64::from(self.policy.raw()) | (u64::from(self.scope.is_some()) << 16);
        match &self.client {
            ClientKey::Global => state.write_u64(head),
            ClientKey::Principal(p) => {
                state.write_u64(head | 1 << 24);
                p.name().hash(state);
            }
            ClientKey::Ip(IpAddr::V4(v4)) => {
                state.write_u64(head | 2 << 24 | u64::from(v4.to_bits()) << 32);
            }
            ClientKey::Ip(IpAddr::V6(v6)) => {
                state.write_u64(head | 3 << 24);
                state.write_u128(v6.to_bits());
            }
            ClientKey::Header(d) => {
                state.write_u64(head | 4 << 24);
                state.write_u128(u128::from_le_bytes(*d.as_bytes()));
            }
        }
        if let Some(scope) = &self.scope {
            scope.hash(state);
        }
    }
}

impl fmt::Debug for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateKey")
            .field("policy", &self.policy.index())
            .field("scope", &self.scope)
            .field("client", &self.client)
            .finish()
    }
}

/// The keys one request is checked against, narrowest policy first and the base policy last
/// (at most [`MAX_CHECKS`]): a store that stops at the first denial then leaves the base quota
/// unspent when a narrower one refuses.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    keys: [Option<RateKey>; MAX_CHECKS],
    len: usize,
}

impl Checks {
    #[inline]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Just this key (the common case: the base policy only).
    #[inline]
    pub(crate) fn one(key: RateKey) -> Self {
        Checks {
            keys: [Some(key), None, None, None],
            len: 1,
        }
    }

    /// Adds a key; ignored beyond [`MAX_CHECKS`] (the layer never builds more).
    #[inline]
    pub(crate) fn push(&mut self, key: RateKey) {
        if let Some(slot) = self.keys.get_mut(self.len) {
            *slot = Some(key);
            self.len += 1;
        }
    }

    /// The keys, in order.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = &RateKey> {
        self.keys[..self.len].iter().flatten()
    }

    /// How many keys.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no key.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One policy's state after a check.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    // 24 bytes (a decision holds four): the wait of a denied outcome is its `reset`.
    reset: Duration,
    remaining: u32,
    policy: PolicyId,
    denied: bool,
}

impl Outcome {
    /// The request was allowed; `remaining` requests are left in the burst, and the bucket is
    /// full again after `reset`.
    #[inline]
    pub fn allowed(policy: PolicyId, remaining: u32, reset: Duration) -> Self {
        Outcome {
            reset,
            remaining,
            policy,
            denied: false,
        }
    }

    /// The request was denied; the next one may pass after `retry_after`.
    #[inline]
    pub fn denied(policy: PolicyId, retry_after: Duration) -> Self {
        Outcome {
            reset: retry_after,
            remaining: 0,
            policy,
            denied: true,
        }
    }

    /// The policy.
    #[inline]
    pub fn policy(&self) -> PolicyId {
        self.policy
    }

    /// Requests left.
    #[inline]
    pub fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the quota is full again (for a denied request: until the next may pass).
    #[inline]
    pub fn reset(&self) -> Duration {
        self.reset
    }

    /// `Some(wait)` when the request was denied.
    #[inline]
    pub fn retry_after(&self) -> Option<Duration> {
        self.denied.then_some(self.reset)
    }

    /// Whether the request was denied.
    #[inline]
    pub fn is_denied(&self) -> bool {
        self.denied
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("policy", &self.policy)
            .field("remaining", &self.remaining)
            .field("reset", &self.reset)
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

/// A store's answer: the outcome per policy checked, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    outcomes: [Option<Outcome>; MAX_CHECKS],
    len: usize,
}

impl Decision {
    /// An empty decision (allows the request).
    #[inline]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an outcome; ignored beyond [`MAX_CHECKS`].
    #[inline]
    pub fn push(&mut self, outcome: Outcome) {
        if let Some(slot) = self.outcomes.get_mut(self.len) {
            *slot = Some(outcome);
            self.len += 1;
        }
    }

    /// The outcomes, in check order.
    #[inline]
    pub fn outcomes(&self) -> OutcomeList<'_> {
        OutcomeList(&self.outcomes[..self.len])
    }

    /// The first denied outcome, if any: the request must be refused.
    #[inline]
    pub fn denied(&self) -> Option<&Outcome> {
        self.outcomes[..self.len]
            .iter()
            .flatten()
            .find(|o| o.is_denied())
    }
}

/// The outcomes of a [`Decision`].
#[derive(Clone, Copy, Debug)]
pub struct OutcomeList<'a>(&'a [Option<Outcome>]);

impl<'a> OutcomeList<'a> {
    /// Iterates the outcomes.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = &'a Outcome> + 'a {
        self.0.iter().flatten()
    }

    /// How many outcomes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A store failed to answer (a networked store could not be reached).
#[derive(Debug)]
pub struct StoreError(BoxError);

impl StoreError {
    /// Wraps the cause.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        StoreError(cause.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rate-limit store failed: {}", self.0)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}
