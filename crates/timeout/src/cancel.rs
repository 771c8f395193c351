//! `notifications/cancelled` for a 2025-11-25 call this layer gives up on.
//!
//! Under 2025-11-25 closing a call's stream does not cancel the call (rmcp keeps the handler
//! running); the session's `notifications/cancelled` for the request id does. When a call of a
//! session times out, or its caller drops the answer before the final message, the layer sends
//! that notification to the inner service: a POST with the call's `Mcp-Session-Id`,
//! `MCP-Protocol-Version`, `Host`, `Origin` and `Accept`, `Content-Type: application/json`, and
//! its case: the header carrying its [`CorrelationId`] (whatever its name; `x-request-id`
//! without one), a `traceparent` naming a span of its own in the call's trace (the call's
//! parent id belongs to the call's request), and the `tracestate`; on a clone of the inner
//! service, in a spawned task whose answer is dropped.
//!
//! Under 2026-07-28 closing the stream is the cancellation, so nothing is sent.

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, OnceLock};

use http::header::{ACCEPT, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderName, HeaderValue, Method as HttpMethod, Request, Uri, Version};
use tower_armor_mcp::error::BoxError;
use tower_armor_mcp::inspect::InProgress;
use tower_armor_mcp::inspect::headers::{PROTOCOL_VERSION, SESSION_ID};
use tower_armor_mcp::{
    Continuation, CorrelationId, McpBody, McpRequest, MessageKind, Method, Principal,
    ProtocolRevision, RequestId,
};
use tower_service::Service;

/// `reason` of a cancellation sent at the deadline.
pub(crate) const REASON_TIMEOUT: &str = "request timed out";
/// `reason` of a cancellation sent when the caller dropped the answer.
pub(crate) const REASON_GONE: &str = "caller went away";
/// `reason` of a cancellation sent when the server's drain deadline passed.
pub(crate) const REASON_SHUTDOWN: &str = "server shutting down";
/// `reason` of a cancellation sent when a call's answer ended without its final response.
pub(crate) const REASON_ENDED: &str = "answer ended without its response";
/// `reason` of a cancellation sent ahead of a client's `DELETE` of the call's session.
pub(crate) const REASON_SESSION_ENDED: &str = "session ended by its client";

/// Travels with cancellations in their requests' extensions; once the server has read (and
/// dropped) every request carrying a clone, the receiver made with it resolves.
#[derive(Clone)]
pub(crate) struct ReadSignal {
    _read: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl ReadSignal {
    /// A signal, and what resolves when every clone of it is gone.
    pub(crate) fn new() -> (Self, tokio::sync::oneshot::Receiver<()>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (
            ReadSignal {
                _read: Arc::new(tx),
            },
            rx,
        )
    }
}

/// Sends one request to a clone of the inner service, in a spawned task.
pub(crate) type Sender = Box<dyn Fn(Request<McpBody>) + Send + Sync>;

/// The sender of one wrapped service, built at its first cancellable call and shared by all
/// its clones (axum clones a service per request: building it per clone would allocate per
/// call).
#[derive(Default)]
pub(crate) struct SenderSlot(OnceLock<Sender>);

impl fmt::Debug for SenderSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderSlot")
            .field("ready", &self.0.get().is_some())
            .finish()
    }
}

impl SenderSlot {
    /// The sender, built from a clone of `inner` the first time.
    pub(crate) fn get_or_init<S, ReqB, B>(&self, inner: &S) -> &Sender
    where
        S: Service<Request<ReqB>, Response = http::Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        ReqB: From<McpBody> + Send + 'static,
        B: Send + 'static,
    {
        self.0.get_or_init(|| sender(inner.clone()))
    }
}

fn sender<S, ReqB, B>(proto: S) -> Sender
where
    S: Service<Request<ReqB>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    ReqB: From<McpBody> + Send + 'static,
    B: Send + 'static,
{
    // The prototype is only cloned, on the rare cancellation path; the mutex makes the sender
    // `Sync` without asking the service to be.
    let proto = Mutex::new(proto);
    Box::new(move |req: Request<McpBody>| {
        let req = req.map(ReqB::from);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no runtime to send notifications/cancelled on");
            return;
        };
        let mut svc = proto.lock().unwrap_or_else(|p| p.into_inner()).clone();
        rt.spawn(async move {
            let send = async {
                let ready: Result<(), BoxError> =
                    poll_fn(|cx| svc.poll_ready(cx)).await.map_err(Into::into);
                match ready {
                    Ok(()) => svc.call(req).await.map(drop).map_err(Into::into),
                    Err(e) => Err(e),
                }
            };
            // Bounded: the request carries what the call holds (its permit) until the server
            // has read it, and a server that never answers must not keep that for ever.
            match tokio::time::timeout(SEND_TIMEOUT, send).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "notifications/cancelled not delivered"),
                Err(_) => tracing::debug!(
                    "notifications/cancelled not answered within {SEND_TIMEOUT:?}; given up"
                ),
            }
        });
    })
}

/// How long a cancellation may take to be answered before the layer gives it up (and what
/// it holds for its call goes).
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The case id's header when the call has no [`CorrelationId`] to find it by.
static DEFAULT_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The headers that tie a call to its case, for its cancellation.
#[derive(Clone, Default)]
struct Case {
    /// The header carrying the call's correlation id: the one whose value is the id (the
    /// correlation layers write it under the name they are configured with).
    id: Option<(HeaderName, HeaderValue)>,
    traceparent: Option<HeaderValue>,
    tracestate: Option<HeaderValue>,
}

impl Case {
    fn of(headers: &HeaderMap, correlation: Option<&CorrelationId>) -> Case {
        let id = match correlation {
            Some(c) => headers
                .iter()
                .find(|(_, v)| *v == c.header_value())
                .map(|(n, v)| (n.clone(), v.clone())),
            None => headers
                .get(&DEFAULT_ID_HEADER)
                .map(|v| (DEFAULT_ID_HEADER.clone(), v.clone())),
        };
        Case {
            id,
            traceparent: headers.get(&TRACEPARENT).cloned(),
            tracestate: headers.get(&TRACESTATE).cloned(),
        }
    }

    fn write(&self, headers: &mut HeaderMap) {
        if let Some((name, value)) = &self.id {
            headers.insert(name, value.clone());
        }
        if let Some(v) = &self.traceparent {
            headers.insert(
                &TRACEPARENT,
                child_traceparent(v).unwrap_or_else(|| v.clone()),
            );
        }
        if let Some(v) = &self.tracestate {
            headers.insert(&TRACESTATE, v.clone());
        }
    }
}

/// `traceparent` with a fresh parent id (`version-traceid-parentid-flags`: bytes 36..52), for
/// another request of the same trace; `None` if `value` does not have that shape.
fn child_traceparent(value: &HeaderValue) -> Option<HeaderValue> {
    let b = value.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    // Unique, not secret: std's per-process random keys, fresh for each call of `new`.
    let span = std::iter::repeat_with(|| {
        std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), b)
    })
    .find(|&x| x != 0)?;
    let mut out = b.to_vec();
    for (i, slot) in out[36..52].iter_mut().enumerate() {
        *slot = b"0123456789abcdef"[((span >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&out).ok()
}

/// What a cancellation keeps for its call until the server has read it.
#[derive(Clone)]
struct Holding {
    _hold: Arc<Vec<Continuation>>,
}

/// Everything needed to cancel one 2025-11-25 call, captured when it starts (reference-counted
/// clones, no allocation).
#[derive(Clone)]
pub(crate) struct CancelTarget {
    sender: Arc<SenderSlot>,
    id: RequestId,
    uri: Uri,
    version: Version,
    session: HeaderValue,
    revision: Option<ProtocolRevision>,
    protocol: Option<HeaderValue>,
    host: Option<HeaderValue>,
    origin: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    principal: Option<Principal>,
    correlation: Option<CorrelationId>,
    /// The call's case headers: the notification is part of the same case (in a client stack
    /// it goes to the upstream below the layer that propagates them).
    case: Case,
    /// The inspector's mark of the call's id in progress: held as long as the call can still be
    /// resumed or cancelled, then passed on in the notification, so that the id is not free
    /// for another request before the server has read the cancellation.
    in_progress: Option<InProgress>,
}

impl fmt::Debug for CancelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelTarget")
            .field("id", &self.id)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl CancelTarget {
    /// The target for `req`, when cancelling it needs a notification: a request with an id, in
    /// a session, not under the stateless revision.
    pub(crate) fn capture<B>(
        req: &Request<B>,
        facts: &McpRequest,
        sender: &Arc<SenderSlot>,
    ) -> Option<CancelTarget> {
        let id = facts.id()?.clone();
        Self::capture_for(req, facts, id, sender)
    }

    /// The cancellation of call `id` of the session that `req`, a `DELETE`, ends, sent ahead
    /// of it: with the `DELETE`'s `Host`, `Origin`, protocol version and case headers, so the
    /// server accepts it exactly when it would accept the `DELETE`, but with the `Accept` a
    /// `POST` needs (a `DELETE` may accept anything).
    pub(crate) fn for_session_end<B>(
        req: &Request<B>,
        facts: &McpRequest,
        id: RequestId,
        sender: &Arc<SenderSlot>,
    ) -> Option<CancelTarget> {
        let mut target = Self::capture_for(req, facts, id, sender)?;
        target.accept = None;
        Some(target)
    }

    fn capture_for<B>(
        req: &Request<B>,
        facts: &McpRequest,
        id: RequestId,
        sender: &Arc<SenderSlot>,
    ) -> Option<CancelTarget> {
        let revision = facts.revision();
        if revision.is_some_and(ProtocolRevision::is_stateless) {
            return None;
        }
        let session = facts.session_id()?.clone();
        let h = req.headers();
        Some(CancelTarget {
            sender: Arc::clone(sender),
            id,
            uri: req.uri().clone(),
            version: req.version(),
            session,
            revision,
            protocol: h.get(&PROTOCOL_VERSION).cloned(),
            host: h.get(HOST).cloned(),
            origin: h.get(ORIGIN).cloned(),
            accept: h.get(ACCEPT).cloned(),
            principal: req.extensions().get::<Principal>().cloned(),
            correlation: req.extensions().get::<CorrelationId>().cloned(),
            case: Case::of(h, req.extensions().get::<CorrelationId>()),
            in_progress: req.extensions().get::<InProgress>().cloned(),
        })
    }

    /// The mark of its call's id in progress (a clone: the id stays taken while either lives).
    pub(crate) fn mark(&self) -> Option<InProgress> {
        self.in_progress.clone()
    }

    /// The id of the call it cancels.
    pub(crate) fn id(&self) -> &RequestId {
        &self.id
    }

    /// The notification as an HTTP request to the inner service.
    pub(crate) fn request(&self, reason: &str) -> Request<McpBody> {
        let body = serde_json::json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": &self.id, "reason": reason },
        });
        let mut req = Request::new(McpBody::json(&body));
        *req.method_mut() = HttpMethod::POST;
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            ACCEPT,
            self.accept.clone().unwrap_or(HeaderValue::from_static(
                "application/json, text/event-stream",
            )),
        );
        h.insert(&SESSION_ID, self.session.clone());
        let protocol = self
            .protocol
            .clone()
            .or_else(|| self.revision.map(|r| HeaderValue::from_static(r.as_str())));
        if let Some(v) = protocol {
            h.insert(&PROTOCOL_VERSION, v);
        }
        if let Some(v) = &self.host {
            h.insert(HOST, v.clone());
        }
        if let Some(v) = &self.origin {
            h.insert(ORIGIN, v.clone());
        }
        self.case.write(h);
        let mut facts = McpRequest::new(
            MessageKind::Notification,
            Some(Method::NotificationsCancelled),
            None,
        )
        .with_session_id(self.session.clone());
        if let Some(r) = self.revision {
            facts = facts.with_revision(r);
        }
        let ext = req.extensions_mut();
        ext.insert(facts);
        if let Some(p) = &self.principal {
            ext.insert(p.clone());
        }
        if let Some(c) = &self.correlation {
            ext.insert(c.clone());
        }
        if let Some(m) = &self.in_progress {
            ext.insert(m.clone());
        }
        req
    }

    /// [`send_holding`](Self::send_holding), with `signal` in the notification's extensions,
    /// which the server drops once it has read it.
    pub(crate) fn send_signalled(
        self,
        reason: &'static str,
        hold: Vec<Continuation>,
        signal: &ReadSignal,
    ) {
        self.send_with(reason, |ext| {
            ext.insert(signal.clone());
            if !hold.is_empty() {
                ext.insert(Holding {
                    _hold: Arc::new(hold),
                });
            }
        });
    }

    /// Sends the notification (once: the target is consumed).
    pub(crate) fn send(self, reason: &'static str) {
        self.send_holding(reason, Vec::new());
    }

    /// [`send`](Self::send), keeping `hold` (what the call holds outside the layer) until the
    /// server has read the notification.
    pub(crate) fn send_holding(self, reason: &'static str, hold: Vec<Continuation>) {
        self.send_with(reason, |ext| {
            if !hold.is_empty() {
                ext.insert(Holding {
                    _hold: Arc::new(hold),
                });
            }
        });
    }

    /// Sends the notification, with what `add` puts in its extensions.
    fn send_with(self, reason: &'static str, add: impl FnOnce(&mut http::Extensions)) {
        tracing::debug!(id = %self.id, reason, "sending notifications/cancelled");
        let mut req = self.request(reason);
        add(req.extensions_mut());
        if let Some(send) = self.sender.0.get() {
            send(req);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(rev: ProtocolRevision, session: bool) -> McpRequest {
        let f = McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsCall),
            Some("a\"b".into()),
        )
        .with_name("slow")
        .with_revision(rev);
        if session {
            f.with_session_id(HeaderValue::from_static("sess-1"))
        } else {
            f
        }
    }

    #[test]
    fn only_session_calls_of_the_old_revision_are_cancelled_by_notification() {
        let slot = Arc::new(SenderSlot::default());
        let req = Request::post("/mcp").body(()).unwrap();
        assert!(
            CancelTarget::capture(&req, &facts(ProtocolRevision::V2026_07_28, true), &slot)
                .is_none()
        );
        assert!(
            CancelTarget::capture(&req, &facts(ProtocolRevision::V2025_11_25, false), &slot)
                .is_none()
        );
        assert!(
            CancelTarget::capture(&req, &facts(ProtocolRevision::V2025_11_25, true), &slot)
                .is_some()
        );
    }

    #[test]
    fn the_notification_carries_the_session_and_the_id() {
        let slot = Arc::new(SenderSlot::default());
        let req = Request::post("http://127.0.0.1:9/mcp")
            .header(HOST, "127.0.0.1:9")
            .header(&PROTOCOL_VERSION, "2025-11-25")
            .header("authorization", "Bearer secret")
            .body(())
            .unwrap();
        let t = CancelTarget::capture(&req, &facts(ProtocolRevision::V2025_11_25, true), &slot)
            .unwrap();
        let n = t.request(REASON_TIMEOUT);
        assert_eq!(n.method(), HttpMethod::POST);
        assert_eq!(n.uri(), "http://127.0.0.1:9/mcp");
        assert_eq!(n.headers()[&SESSION_ID], "sess-1");
        assert_eq!(n.headers()[&PROTOCOL_VERSION], "2025-11-25");
        assert_eq!(n.headers()[HOST], "127.0.0.1:9");
        assert_eq!(n.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(n.headers()[ACCEPT], "application/json, text/event-stream");
        assert!(
            n.headers().get("authorization").is_none(),
            "nothing else is copied"
        );
        let v: serde_json::Value = serde_json::from_slice(n.body().bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": { "requestId": "a\"b", "reason": "request timed out" },
            })
        );
        let f = n.extensions().get::<McpRequest>().unwrap();
        assert_eq!(f.method(), Some(&Method::NotificationsCancelled));
        assert!(!f.is_call());
    }
}
