//! [`RateLimit`]: the service.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderValue, Request, Response, StatusCode};
use tower_armor_mcp::error::RateLimited;
use tower_armor_mcp::inspect::headers::SESSION_ID;
use tower_armor_mcp::{
    CorrelationId, KnownTools, McpRequest, MessageKind, Method, Principal, ResponseBody,
    body::local_error_response, rescue,
};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::key::{self, ClientKey, ForwardedHeader, KeyBy, TrustedProxies};
use crate::layer::{Exempt, PeerAddrFn, RequestHead, default_peer_addr};
use crate::policy::{Policies, PolicyId};
use crate::store::{Checks, Decision, InMemoryStore, KeyStore, Outcome, RateKey, StoreError};
use crate::{CODE_MISCONFIGURED, RATELIMIT, RATELIMIT_POLICY};

/// Applies per-client quotas to requests; see the [crate docs](crate).
pub struct RateLimit<S, St = InMemoryStore> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S, St> RateLimit<S, St> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St>>) -> Self {
        RateLimit { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The store (shared with the layer and every clone).
    pub fn store(&self) -> &St {
        &self.shared.store
    }
}

impl<S: Clone, St> Clone for RateLimit<S, St> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for RateLimit<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: KeyStore,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, St, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let head = RequestHead {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        };
        // Ending a session is never refused for being over quota (and not counted): a refused
        // DELETE would only keep the session, and what the server holds for it, alive until it
        // expires. The method compare keeps this off the path of every other request.
        if shared.exempt.matches(&head)
            || (req.method() == http::Method::DELETE && ends_session(&req))
        {
            return ResponseFuture::calling(self.inner.call(req), None);
        }
        // The common case: the in-memory store, and only the base quota. The store answers at
        // once, so it is asked directly for the one key: no key list, no future, and the
        // remaining burst only worked out when the answer shows it.
        if !shared.extra_rules
            && let Some(store) = (&shared.store as &dyn Any).downcast_ref::<InMemoryStore>()
        {
            let client = match shared.client_key(req.headers(), req.extensions()) {
                Ok(client) => client,
                Err(NoPeer) => return ResponseFuture::answered(shared.no_peer_response(&req)),
            };
            let key = RateKey::new(PolicyId::BASE, None, client);
            return match store.check_one(&key, shared.headers_on_success) {
                Ok(outcome) => {
                    let headers = outcome.and_then(|o| shared.outcome_headers(o));
                    ResponseFuture::calling(self.inner.call(req), headers)
                }
                Err(denied) if never_refused(&req) => {
                    // Let through, and told where its quota stands.
                    let headers = shared
                        .headers_on_success
                        .then(|| shared.outcome_headers(denied))
                        .flatten();
                    ResponseFuture::calling(self.inner.call(req), headers)
                }
                Err(denied) => ResponseFuture::answered(shared.refuse_one(denied, &req)),
            };
        }
        let mut check = match shared.checks(&req) {
            Ok(checks) => shared.store.check(&checks),
            Err(NoPeer) => return ResponseFuture::answered(shared.no_peer_response(&req)),
        };
        // The in-memory store answers at once: decide here, with no clone of the inner service
        // and no move of the request into the future. A store that must wait is polled again
        // from the response future (with the task's waker).
        match Pin::new(&mut check).poll(&mut Context::from_waker(Waker::noop())) {
            // The common case first: allowed.
            Poll::Ready(Ok(decision)) if decision.denied().is_none() => {
                let headers = if shared.headers_on_success {
                    shared.rate_headers(&decision)
                } else {
                    None
                };
                ResponseFuture::calling(self.inner.call(req), headers)
            }
            Poll::Ready(result) => match shared.verdict(result, &req) {
                Verdict::Pass(headers) => ResponseFuture::calling(self.inner.call(req), headers),
                Verdict::Answer(resp) => ResponseFuture::answered(resp),
            },
            Poll::Pending => {
                // The readied service goes into the future; a fresh clone stays for the next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(check, req, inner, Arc::clone(&self.shared))
            }
        }
    }
}

/// A `DELETE` that ends an MCP session: it names the session, the inspector saw it (so it is
/// addressed to the MCP endpoint, not to any route this layer may wrap) and an authenticated
/// principal sent it (bearer-auth, in front, has checked that the session is theirs). Without
/// authentication, session ids are free to invent, so such a DELETE is counted.
#[cold]
fn ends_session<B>(req: &Request<B>) -> bool {
    let ext = req.extensions();
    req.headers().contains_key(&SESSION_ID)
        && ext.get::<McpRequest>().is_some()
        && ext.get::<Principal>().is_some()
}

/// A message that only relieves the server or completes what was already admitted: a client's
/// answer to a server request (an elicitation a person answered, a sampling result), a
/// `notifications/cancelled`, the `notifications/initialized` that ends a handshake whose
/// `initialize` was admitted, or a 2025-11-25 `GET` resuming a call's stream of its session
/// (`Last-Event-ID`: the call was admitted; the bulkhead bounds such `GET`s, and the session
/// binding ties them to their principal's sessions). Counted like any request while the quota lasts, never refused
/// once it is spent: refusing would leave the call it concerns waiting for its timeout (holding
/// its bulkhead permit), its answer lost (a resumption), a cancelled tool running, or a session
/// created but never usable (the TypeScript SDK's `connect` fails on it and starts over with a
/// new `initialize`, leaving the session behind each time). Told by the inspector's facts only.
#[cold]
fn never_refused<B>(req: &Request<B>) -> bool {
    req.extensions().get::<McpRequest>().is_some_and(|m| {
        (m.is_resume() && m.session_id().is_some())
            || match m.kind() {
                MessageKind::Response => true,
                MessageKind::Notification => match m.method() {
                    Some(Method::NotificationsCancelled) => true,
                    // Only in a session (2025-11-25's handshake): 2026-07-28 has none to finish.
                    Some(Method::NotificationsInitialized) => m.session_id().is_some(),
                    _ => false,
                },
                MessageKind::Request | MessageKind::NotJsonRpc => false,
            }
    })
}

/// The peer address was needed but the request had none.
pub(crate) struct NoPeer;

/// What the check decided for one request.
pub(crate) enum Verdict<ResBody> {
    /// Call the inner service; add these headers to its answer.
    Pass(Option<RateHeaders>),
    /// Answer with this.
    Answer(Response<ResponseBody<ResBody>>),
}

/// `RateLimit-Policy` and `RateLimit` for one answer.
#[derive(Debug)]
pub(crate) struct RateHeaders {
    policy: HeaderValue,
    ratelimit: HeaderValue,
}

impl RateHeaders {
    /// Appends both fields (an inner service's own policies, if any, stay).
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy);
        headers.append(RATELIMIT, self.ratelimit);
    }
}

/// Everything the layer, its clones and every service built from it share.
pub(crate) struct Shared<St> {
    pub(crate) store: St,
    pub(crate) policies: Policies,
    pub(crate) key_by: KeyBy,
    pub(crate) trusted: TrustedProxies,
    pub(crate) forwarded: ForwardedHeader,
    pub(crate) v6_prefix: u8,
    pub(crate) method_rules: Vec<(Method, PolicyId)>,
    pub(crate) tool_rules: HashMap<Box<str>, PolicyId>,
    pub(crate) each_tool: Option<PolicyId>,
    pub(crate) known_tools: KnownTools,
    pub(crate) exempt: Exempt,
    pub(crate) headers_on_success: bool,
    /// `None`: the default (axum's `ConnectInfo`, then a `SocketAddr`), called directly.
    pub(crate) peer_addr: Option<PeerAddrFn>,
    /// Whether any per-method or per-tool policy exists (if not, the inspector's facts are not
    /// looked up).
    pub(crate) extra_rules: bool,
    /// `RateLimit-Policy` when only the base policy applies (the common case), built once.
    pub(crate) base_policy_header: HeaderValue,
    pub(crate) warned_no_peer: AtomicBool,
}

impl<St: fmt::Debug> fmt::Debug for Shared<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("policies", &self.policies)
            .field("key_by", &self.key_by)
            .field("trusted", &self.trusted)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

impl<St> Shared<St> {
    /// The keys of a request: the named-tool, per-tool and method policies that apply, then the
    /// base policy.
    #[inline]
    pub(crate) fn checks<B>(&self, req: &Request<B>) -> Result<Checks, NoPeer> {
        let ext = req.extensions();
        let client = self.client_key(req.headers(), ext)?;
        if !self.extra_rules {
            return Ok(Checks::one(RateKey::new(PolicyId::BASE, None, client)));
        }
        let mut checks = Checks::new();
        self.extra_checks(ext, client, &mut checks);
        Ok(checks)
    }

    /// [`Shared::checks`] with per-method or per-tool policies configured.
    ///
    /// The narrowest quota is spent first and the base quota last: the store stops at the first
    /// refusal, so a request one tool's quota refuses leaves the client's base quota (its other
    /// tools and methods) untouched; and a refused request spends nothing (the store gives back
    /// what the quotas checked before the refusing one took).
    #[inline(never)]
    fn extra_checks(&self, ext: &Extensions, client: ClientKey, checks: &mut Checks) {
        // Narrowest first: the tool's own rule, the per-tool quota, the method's rule.
        let mut extra: [Option<(PolicyId, Option<Arc<str>>)>; 3] = [None, None, None];
        if let Some(facts) = ext.get::<McpRequest>()
            && let Some(method) = facts.method()
        {
            if *method == Method::ToolsCall {
                let tool = facts.tool();
                if let Some(id) = tool.and_then(|t| self.tool_rules.get(t)) {
                    extra[0] = Some((*id, None));
                }
                if let Some(id) = self.each_tool {
                    // Only tools the server has get a key of their own.
                    extra[1] = Some((id, Some(self.known_tools.key(tool))));
                }
            }
            if let Some((_, id)) = self.method_rules.iter().find(|(m, _)| m == method) {
                extra[2] = Some((*id, None));
            }
        }
        for (id, scope) in extra.into_iter().flatten() {
            checks.push(RateKey::new(id, scope, client.clone()));
        }
        checks.push(RateKey::new(PolicyId::BASE, None, client));
    }

    #[inline(always)]
    fn client_key(&self, headers: &HeaderMap, ext: &Extensions) -> Result<ClientKey, NoPeer> {
        match &self.key_by {
            KeyBy::Global => Ok(ClientKey::Global),
            KeyBy::Principal => match ext.get::<Principal>() {
                Some(p) => Ok(ClientKey::Principal(p.clone())),
                None => self.peer_key(headers, ext),
            },
            KeyBy::Header(name) => match key::header_key(headers.get(name)) {
                Some(k) => Ok(k),
                None => self.peer_key(headers, ext),
            },
            KeyBy::Ip => self.peer_key(headers, ext),
        }
    }

    #[inline(always)]
    fn peer_key(&self, headers: &HeaderMap, ext: &Extensions) -> Result<ClientKey, NoPeer> {
        let peer: SocketAddr = match self.peer_addr {
            None => default_peer_addr(ext),
            Some(f) => f(ext),
        }
        .ok_or(NoPeer)?;
        let ip = match peer {
            // The common case, with nothing to look up or mask.
            SocketAddr::V4(v4) if self.trusted.is_empty() => IpAddr::V4(*v4.ip()),
            _ => {
                let ip = self.trusted.client_ip(peer.ip(), headers, self.forwarded);
                key::ip_key(ip, self.v6_prefix)
            }
        };
        Ok(ClientKey::Ip(ip))
    }

    /// What to do with a store's answer.
    pub(crate) fn verdict<B, ResBody>(
        &self,
        result: Result<Decision, StoreError>,
        req: &Request<B>,
    ) -> Verdict<ResBody> {
        let decision = match result {
            Ok(d) => d,
            Err(error) => {
                tracing::warn!(%error, "rate-limit store failed; letting the request through");
                return Verdict::Pass(None);
            }
        };
        if decision.denied().is_none() || never_refused(req) {
            // Let through (over quota too, for what must never be refused), and told where its
            // quota stands.
            let headers = self
                .headers_on_success
                .then(|| self.rate_headers(&decision))
                .flatten();
            return Verdict::Pass(headers);
        }
        Verdict::Answer(self.refuse(&decision, req))
    }

    /// The answer to a request refused by `denied`, its only quota.
    #[cold]
    #[inline(never)]
    fn refuse_one<B, ResBody>(
        &self,
        denied: Outcome,
        req: &Request<B>,
    ) -> Response<ResponseBody<ResBody>> {
        let mut decision = Decision::new();
        decision.push(denied);
        self.refuse(&decision, req)
    }

    /// The answer to a request that `decision` refuses: 429, `Retry-After` and the headers.
    fn refuse<B, ResBody>(
        &self,
        decision: &Decision,
        req: &Request<B>,
    ) -> Response<ResponseBody<ResBody>> {
        let denied = decision.denied();
        let wait = denied.and_then(Outcome::retry_after).unwrap_or_default();
        let policy = denied
            .and_then(|d| self.policies.get(d.policy()))
            .map_or("?", |p| p.name());
        tracing::debug!(
            policy,
            retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "rate limited"
        );
        let ext = req.extensions();
        let refusal = RateLimited::new(wait);
        // A gRPC caller gets a status it understands (RESOURCE_EXHAUSTED), not a JSON body.
        let mut resp = match rescue::grpc_content_type(req.headers()) {
            Some(grpc) => rescue::grpc_error_response(&refusal, grpc),
            None => {
                let id = ext.get::<McpRequest>().and_then(McpRequest::id);
                rescue::error_response(&refusal, id, ext.get::<CorrelationId>())
            }
        };
        if let Some(h) = self.rate_headers(decision) {
            h.apply(resp.headers_mut());
        }
        resp
    }

    /// The headers of an answer that only `outcome` applied to.
    fn outcome_headers(&self, outcome: Outcome) -> Option<RateHeaders> {
        let mut decision = Decision::new();
        decision.push(outcome);
        self.rate_headers(&decision)
    }

    fn rate_headers(&self, d: &Decision) -> Option<RateHeaders> {
        let outcomes = d.outcomes();
        let mut iter = outcomes.iter();
        let only_base = outcomes.len() == 1 && iter.next()?.policy() == PolicyId::BASE;
        let policy = if only_base {
            self.base_policy_header.clone()
        } else {
            header_value(self.policies.policy_header(d))?
        };
        let ratelimit = header_value(self.policies.ratelimit_value(d))?;
        Some(RateHeaders { policy, ratelimit })
    }

    /// 500 for a request that needs the peer address and has none: a deployment error.
    fn no_peer_response<B, ResBody>(&self, req: &Request<B>) -> Response<ResponseBody<ResBody>> {
        if !self.warned_no_peer.swap(true, Ordering::Relaxed) {
            tracing::error!(
                key_by = ?self.key_by,
                "rate limit needs the peer address but the request has no ConnectInfo<SocketAddr>: \
                 serve the router with `into_make_service_with_connect_info::<SocketAddr>()`, \
                 set `peer_addr_with`, or key by principal/header with a principal always present, \
                 or use `KeyBy::Global`; answering 500 until fixed"
            );
        }
        let ext = req.extensions();
        let id = ext.get::<McpRequest>().and_then(McpRequest::id);
        // Like every local error answer: the correlation id, so the log line can be found.
        local_error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            id,
            CODE_MISCONFIGURED,
            "rate limit misconfigured: no peer address (see the server log)",
            ext.get::<CorrelationId>(),
        )
    }
}

fn header_value(s: impl Into<Bytes>) -> Option<HeaderValue> {
    // Policy names are validated printable ASCII and the rest are digits: never fails.
    HeaderValue::from_maybe_shared(s.into()).ok()
}
