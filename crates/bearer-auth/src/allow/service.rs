use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_armor_mcp::jsonrpc::{INVALID_PARAMS, error_body};
use tower_armor_mcp::span::LoggedName;
use tower_armor_mcp::{McpRequest, MessageKind, Method, Principal, ProtocolRevision};
use tower_service::Service;

use super::accept;
use super::body::{AllowBody, ListFilter};
use super::future::AllowFuture;
use super::layer::AllowShared;
use super::policy::Access;
use super::rewrite::Target;

/// The message rmcp answers for an unknown tool (with `-32602`).
pub(crate) const TOOL_NOT_FOUND: &str = "tool not found";

/// rmcp's answer (400, no `Content-Type`) to a request of a session revision without a session.
const SESSION_REQUIRED: &str = "Bad Request: Session ID is required";

/// Local JSON-RPC code of the answer to a restricted principal's POST that was not inspected
/// (the layer stack is misconfigured).
pub const CODE_NOT_INSPECTED: i64 = tower_armor_mcp::error::CODE_MISCONFIGURED;

/// Enforces an [`AllowPolicy`](super::AllowPolicy); see the [module docs](super).
///
/// Keeps `S`'s error type; the response body becomes [`AllowBody`].
#[derive(Clone)]
pub struct ToolAllowList<S> {
    inner: S,
    shared: Arc<AllowShared>,
}

impl<S: fmt::Debug> fmt::Debug for ToolAllowList<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolAllowList")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish()
    }
}

impl<S> ToolAllowList<S> {
    pub(crate) fn new(inner: S, shared: Arc<AllowShared>) -> Self {
        ToolAllowList { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for ToolAllowList<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<AllowBody<ResBody>>;
    type Error = S::Error;
    type Future = AllowFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let allowed = match shared.policy.access(req.extensions().get::<Principal>()) {
            Access::All => {
                let filter = shared.restricts.then(|| scope_only(&req)).flatten();
                return AllowFuture::inner(self.inner.call(req), filter);
            }
            Access::Only(set) => Arc::clone(set),
        };
        if req.method() == http::Method::GET {
            // A GET stream carries answers to earlier requests: rmcp replays a finished
            // request's events to a `Last-Event-ID` resumption. Every list answer in it is
            // filtered, whatever request it answered. (A tool's result cannot be told from
            // another's there, but only calls this layer let through have results.)
            let filter = ListFilter {
                target: Target::AnyList,
                allowed: Some(allowed),
                private: false,
            };
            return AllowFuture::inner(self.inner.call(req), Some(filter));
        }
        let Some(facts) = req.extensions().get::<McpRequest>() else {
            if req.method() == http::Method::POST {
                tracing::error!(
                    "ToolAllowListLayer got a POST without McpRequest facts: put McpInspectLayer \
                     in front of it; refusing the request of a restricted principal"
                );
                return AllowFuture::local(not_inspected());
            }
            return AllowFuture::inner(self.inner.call(req), None);
        };
        match facts.method() {
            Some(Method::ToolsCall) => {
                if let Some(tool) = facts.tool()
                    && !allowed.contains(tool)
                {
                    tracing::debug!(
                        principal = ?req.extensions().get::<Principal>().map(Principal::name),
                        tool = %LoggedName(tool),
                        "tool call refused by the allow-list (answered as an unknown tool)"
                    );
                    return AllowFuture::local(tool_not_found(&req, facts, shared));
                }
                AllowFuture::inner(self.inner.call(req), None)
            }
            Some(Method::ToolsList) if facts.kind() == MessageKind::Request => {
                let filter = facts.id().map(|id| ListFilter {
                    target: Target::Request(id.clone()),
                    allowed: Some(allowed),
                    private: facts.revision() == Some(ProtocolRevision::V2026_07_28),
                });
                AllowFuture::inner(self.inner.call(req), filter)
            }
            _ => AllowFuture::inner(self.inner.call(req), None),
        }
    }
}

/// For a principal who sees every tool while others do not: a 2026-07-28 `tools/list` answer
/// is marked `cacheScope: "private"` all the same. A shared cache keyed without the principal
/// would otherwise serve this full catalogue to a restricted principal.
fn scope_only<B>(req: &Request<B>) -> Option<ListFilter> {
    let facts = req.extensions().get::<McpRequest>()?;
    if !matches!(facts.method(), Some(Method::ToolsList))
        || facts.kind() != MessageKind::Request
        || facts.revision() != Some(ProtocolRevision::V2026_07_28)
    {
        return None;
    }
    Some(ListFilter {
        target: Target::Request(facts.id()?.clone()),
        allowed: None,
        private: true,
    })
}

/// The answer rmcp gives for an unknown tool, in the form it would use for this request: SSE with
/// a priming event inside a 2025-11-25 session, SSE or JSON (per `json_response`) otherwise.
///
/// What a server checks before it looks the tool up is checked here too, in rmcp's order, so
/// such a request is refused alike: a client that does not accept both `application/json` and
/// `text/event-stream` gets 406 (the MCP transport requires both; rmcp and the TypeScript SDK
/// refuse with this text); a request of an older revision without `Mcp-Session-Id` gets rmcp's
/// 400 when the server keeps sessions ([`legacy_sessions`](super::ToolAllowListLayer::legacy_sessions));
/// a `tools/call` without an id (a notification, which JSON-RPC never answers) gets 202 and
/// no body. (The inspector in front has already refused what breaks the 2026-07-28 header and
/// `_meta` rules, for every tool alike.) Allowed hosts and origins are not mirrored.
fn tool_not_found<B>(
    req: &Request<B>,
    facts: &McpRequest,
    shared: &AllowShared,
) -> (Response<()>, Bytes) {
    if !accept::json_and_event_stream(req.headers()) {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::NOT_ACCEPTABLE;
        return (resp, Bytes::from_static(accept::NOT_ACCEPTABLE.as_bytes()));
    }
    if shared.legacy_sessions
        && facts.session_id().is_none()
        && facts.revision() != Some(ProtocolRevision::V2026_07_28)
    {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return (resp, Bytes::from_static(SESSION_REQUIRED.as_bytes()));
    }
    if facts.kind() == MessageKind::Notification {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::ACCEPTED;
        return (resp, Bytes::new());
    }
    let msg = error_body(facts.id(), INVALID_PARAMS, TOOL_NOT_FOUND, None);
    let session = facts.session_id().is_some();
    let mut resp = Response::new(());
    let h = resp.headers_mut();
    if !session && shared.json_response {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return (resp, msg);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let mut body = BytesMut::with_capacity(msg.len() + 40);
    if session && let Some(retry) = shared.sse_retry {
        body.put_slice(format!("data: \nretry: {}\n\n", retry.as_millis()).as_bytes());
    }
    body.put_slice(b"data: ");
    body.put_slice(&msg);
    body.put_slice(b"\n\n");
    (resp, body.freeze())
}

fn not_inspected() -> (Response<()>, Bytes) {
    let msg = error_body(
        None,
        CODE_NOT_INSPECTED,
        "server misconfigured: request not inspected",
        None,
    );
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    (resp, msg)
}
