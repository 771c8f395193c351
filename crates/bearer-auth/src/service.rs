use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use tower_armor_mcp::inspect::headers::{PROTOCOL_VERSION, SESSION_ID};
use tower_armor_mcp::inspect::opens_long_lived_stream;
use tower_armor_mcp::sse::SseParser;
use tower_armor_mcp::{CorrelationId, Principal, ProtocolRevision, grpc_content_type, span};
use tower_service::Service;

use crate::body::{BearerBody, Grant, LISTEN_EVENT_READ};
use crate::future::ResponseFuture;
use crate::layer::{RequestHead, Shared};
use crate::parse::{AuthFailure, parse_with_limit};
use crate::session::SessionCheck;
use crate::tokens::{TokenStore, Watch};

/// Validates bearer tokens in front of `S`; see the [crate docs](crate).
///
/// Answers 401 itself (and, for a session presented by another principal, the MCP server's
/// unknown-session answer); keeps `S`'s error type. Cloning shares the layer's state.
#[derive(Clone)]
pub struct BearerAuth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerAuth")
            .field("inner", &self.inner)
            .field("enabled", &self.shared.tokens.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> BearerAuth<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        BearerAuth { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for BearerAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<BearerBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = &*self.shared;
        let Some(tokens) = &shared.tokens else {
            // Auth off: still, no token goes inward.
            req.headers_mut().remove(header::AUTHORIZATION);
            return ResponseFuture::inner(self.inner.call(req), None, None);
        };
        // A request naming a session is never exempt: it would skip the session check below.
        // (Asked only of exempt requests: the usual call looks the header up once, below.)
        if (shared.exempt)(RequestHead::new(req.method(), req.uri(), req.headers()))
            && !req.headers().contains_key(&SESSION_ID)
        {
            req.headers_mut().remove(header::AUTHORIZATION);
            return ResponseFuture::inner(self.inner.call(req), None, None);
        }
        // Only tokens from a file can be revoked while a stream is open.
        let watch_stream = tokens.file().is_some() && opens_long_lived_stream(&req);
        let (principal, watch) =
            match authenticate(req.headers(), tokens, shared.max_header_bytes, watch_stream) {
                Ok(found) => found,
                Err(failure) => {
                    tracing::debug!(reason = failure.as_str(), "bearer authentication failed");
                    return ResponseFuture::unauthorized(
                        failure,
                        shared.challenges.get(failure).clone(),
                        req.extensions().get::<CorrelationId>().cloned(),
                        grpc_content_type(req.headers()).cloned(),
                    );
                }
            };
        req.headers_mut().remove(header::AUTHORIZATION);
        span::record_principal(&principal);
        tracing::trace!(principal = %principal, "bearer authentication passed");

        let binding = match &shared.sessions {
            None => None,
            Some(table) => {
                let delete = req.method() == Method::DELETE;
                let mut sessions = req.headers().get_all(&SESSION_ID).iter();
                let mut session = sessions.next().cloned();
                if sessions.next().is_some() {
                    // Which one would count? The server reads the first; refused as the
                    // inspector refuses it (under either revision), whichever order hides
                    // whose session.
                    return ResponseFuture::repeated_session(
                        req.extensions().get::<CorrelationId>().cloned(),
                    );
                }
                // The stateless revision has no sessions: the header is removed, not checked.
                // rmcp ignores it there, except on `initialize`, which would join the session
                // it names: without the header that starts a session of the caller's own.
                if session.is_some() && is_stateless(req.headers()) {
                    req.headers_mut().remove(&SESSION_ID);
                    session = None;
                    tracing::debug!("Mcp-Session-Id removed from a stateless (2026-07-28) request");
                }
                if let Some(s) = &session {
                    match table.check(s, &principal) {
                        SessionCheck::Owner => {}
                        SessionCheck::Foreign => {
                            tracing::warn!(
                                principal = %principal,
                                "session presented by a principal that did not create it; answered as unknown"
                            );
                            return ResponseFuture::unknown_session();
                        }
                        SessionCheck::Unknown => {
                            tracing::debug!(principal = %principal, "unknown session id; answered as unknown");
                            return ResponseFuture::unknown_session();
                        }
                    }
                }
                Some(Binding {
                    shared: Arc::clone(&self.shared),
                    principal: principal.clone(),
                    session,
                    delete,
                })
            }
        };
        let grant = watch.map(|watch| {
            Box::new(Grant {
                shared: Arc::clone(&self.shared),
                principal: principal.clone(),
                watch,
                correlation: req.extensions().get::<CorrelationId>().cloned(),
                listen: None,
                events: SseParser::new(LISTEN_EVENT_READ),
                closed: false,
            })
        });
        req.extensions_mut().insert(principal);
        ResponseFuture::inner(self.inner.call(req), binding, grant)
    }
}

/// Whether the request says it is of the stateless revision (`MCP-Protocol-Version`).
fn is_stateless(headers: &HeaderMap) -> bool {
    headers
        .get(&PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(ProtocolRevision::parse)
        .is_some_and(ProtocolRevision::is_stateless)
}

/// The principal of the request's token; with `watch_stream` (a long-lived stream, tokens from
/// a file), also what the stream keeps to learn that the token was revoked.
fn authenticate(
    headers: &HeaderMap,
    tokens: &TokenStore,
    max_header_bytes: usize,
    watch_stream: bool,
) -> Result<(Principal, Option<Watch>), AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthFailure::Missing);
    };
    if values.next().is_some() {
        return Err(AuthFailure::MultipleHeaders);
    }
    let token = parse_with_limit(value.as_bytes(), max_header_bytes)?;
    let found = match tokens.file() {
        Some(file) if watch_stream => file
            .lookup_watched(token)
            .map(|(principal, watch)| (principal, Some(watch))),
        _ => tokens.lookup(token).map(|principal| (principal, None)),
    };
    found.ok_or(AuthFailure::UnknownToken)
}

/// What the response future must learn from the answer for session binding.
pub(crate) struct Binding {
    shared: Arc<Shared>,
    principal: Principal,
    /// The session id the request presented (already checked to be the principal's).
    session: Option<http::HeaderValue>,
    delete: bool,
}

impl Binding {
    pub(crate) fn observe(self, status: StatusCode, headers: &HeaderMap) {
        let Some(table) = &self.shared.sessions else {
            return;
        };
        match &self.session {
            Some(s) => {
                // 404 for a presented session: the server no longer knows it (expired).
                if status == StatusCode::NOT_FOUND || (self.delete && status.is_success()) {
                    table.forget(s);
                }
            }
            None => {
                if status.is_success()
                    && let Some(created) = headers.get(&SESSION_ID)
                {
                    table.bind(created, &self.principal);
                    tracing::debug!(principal = %self.principal, "session bound to its principal");
                }
            }
        }
    }
}
