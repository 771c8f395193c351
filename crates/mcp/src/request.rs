//! [`McpRequest`]: the facts about one MCP request, read once by the inspector and put into the
//! request's extensions for every later layer.

use http::HeaderValue;

use crate::{Method, RequestId, RetrySafety};

/// An MCP protocol revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(non_camel_case_types)]
pub enum ProtocolRevision {
    /// `2024-11-05`.
    V2024_11_05,
    /// `2025-03-26`.
    V2025_03_26,
    /// `2025-06-18`.
    V2025_06_18,
    /// `2025-11-25`: sessions, GET listen stream, `ping`, resumption.
    V2025_11_25,
    /// `2026-07-28`: stateless, mirrored headers, `subscriptions/listen`, `server/discover`.
    V2026_07_28,
}

impl ProtocolRevision {
    /// Every revision this crate knows, oldest first.
    pub const ALL: [ProtocolRevision; 5] = [
        ProtocolRevision::V2024_11_05,
        ProtocolRevision::V2025_03_26,
        ProtocolRevision::V2025_06_18,
        ProtocolRevision::V2025_11_25,
        ProtocolRevision::V2026_07_28,
    ];

    /// Parses a revision string such as `2025-11-25`.
    pub fn parse(s: &str) -> Option<ProtocolRevision> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The revision as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolRevision::V2024_11_05 => "2024-11-05",
            ProtocolRevision::V2025_03_26 => "2025-03-26",
            ProtocolRevision::V2025_06_18 => "2025-06-18",
            ProtocolRevision::V2025_11_25 => "2025-11-25",
            ProtocolRevision::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether the revision is stateless (no sessions; closing a stream cancels its call).
    pub fn is_stateless(self) -> bool {
        self == ProtocolRevision::V2026_07_28
    }
}

/// What kind of JSON-RPC message a POST carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A request: has `method` and `id`; expects a response.
    Request,
    /// A notification: has `method`, no `id`.
    Notification,
    /// A response from the client to a server request (`result` or `error`, with `id`).
    Response,
    /// Not a JSON-RPC message: a GET, a DELETE, or a POST the inspector did not parse (not JSON).
    NotJsonRpc,
}

/// Whether a request is a call, a long-lived stream, or the resumption of a call's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRole {
    /// An ordinary call (or a notification / response): accounted per call.
    Call,
    /// A long-lived stream: a 2025-11-25 GET listen stream (opened, or reconnected with the listen
    /// stream's `Last-Event-ID`) or a 2026-07-28 `subscriptions/listen` POST. Exempt from
    /// per-call timeouts, retry and breaker accounting; bounded by its own pool and an idle
    /// timeout.
    Listen,
    /// A 2025-11-25 GET whose `Last-Event-ID` names an event of a call's stream
    /// ([`resumes_call`](crate::inspect::resumes_call)): the continuation of that call, the same
    /// call, not a new listen stream. A GET resuming the listen stream is [`StreamRole::Listen`].
    Resume {
        /// The `Last-Event-ID` the client sent.
        last_event_id: HeaderValue,
    },
    /// Not a stream at all (DELETE of a session, or a method the MCP endpoint does not serve).
    None,
}

/// The id of a 2026-07-28 `subscriptions/listen` request, put on its answer's extensions by
/// the inspector ([`McpInspectLayer`](crate::inspect::McpInspectLayer)): what the
/// subscription's final result answers. A layer further out that ends the listen stream itself
/// (the SSE layer's idle timeout and shutdown) closes it with
/// [`ListenId::graceful_close_event`], as a server ending the subscription does, so a client
/// reads a graceful end rather than a lost subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenId(pub RequestId);

impl ListenId {
    /// The SSE event of the subscription's final result (2026-07-28
    /// `SubscriptionsListenResult`): `data: {"jsonrpc":"2.0","id":<id>,"result":{"resultType":
    /// "complete","_meta":{"io.modelcontextprotocol/subscriptionId":<id>}}}` and a blank line.
    pub fn graceful_close_event(&self) -> bytes::Bytes {
        let id = &self.0;
        let message = serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "result": {
                "resultType": "complete",
                "_meta": { "io.modelcontextprotocol/subscriptionId": id },
            },
        });
        // Serializing a `Value` cannot fail.
        crate::sse::data_event(&serde_json::to_vec(&message).unwrap_or_default())
    }

    /// Whether `data`, an event's data, is the server's own final response to the listen
    /// request (it ended the subscription itself).
    pub fn is_final(&self, data: &[u8]) -> bool {
        matches!(
            crate::observe::inspect_message(data, Some(&self.0)),
            crate::observe::Seen::Final(_)
        )
    }
}

/// The `_meta` key under which a client passes its correlation (case) id:
/// `params._meta["tower-armor/requestId"]` (written by
/// `tower_armor_correlation_id::with_correlation_meta`, for clients that cannot set headers).
pub const META_REQUEST_ID: &str = "tower-armor/requestId";

/// W3C trace context carried in `params._meta` (reserved keys `traceparent`, `tracestate`,
/// `baggage`), and the correlation id under [`META_REQUEST_ID`]. Values are kept verbatim; the
/// correlation layer validates them before use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaTrace {
    /// `_meta.traceparent`.
    pub traceparent: Option<Box<str>>,
    /// `_meta.tracestate`.
    pub tracestate: Option<Box<str>>,
    /// `_meta.baggage`.
    pub baggage: Option<Box<str>>,
    /// `_meta["tower-armor/requestId"]` ([`META_REQUEST_ID`]).
    pub request_id: Option<Box<str>>,
}

impl MetaTrace {
    /// Whether none of these keys was present.
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none()
            && self.tracestate.is_none()
            && self.baggage.is_none()
            && self.request_id.is_none()
    }
}

/// The facts about one MCP request, read once by
/// [`McpInspectLayer`](crate::inspect::McpInspectLayer) and inserted into the request's
/// extensions. No later layer parses the request body again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpRequest {
    pub(crate) revision: Option<ProtocolRevision>,
    pub(crate) kind: MessageKind,
    pub(crate) method: Option<Method>,
    pub(crate) id: Option<RequestId>,
    pub(crate) name: Option<Box<str>>,
    pub(crate) session_id: Option<HeaderValue>,
    pub(crate) meta_trace: MetaTrace,
    pub(crate) progress_token: bool,
    pub(crate) stream: StreamRole,
    pub(crate) cancels: Option<RequestId>,
}

impl McpRequest {
    /// Facts for a request that the inspector did not see (for example one built by hand in a
    /// test, or by a client-side stack).
    pub fn new(kind: MessageKind, method: Option<Method>, id: Option<RequestId>) -> Self {
        let stream = match &method {
            Some(m) if m.is_long_lived() => StreamRole::Listen,
            _ => StreamRole::Call,
        };
        McpRequest {
            revision: None,
            kind,
            method,
            id,
            name: None,
            session_id: None,
            meta_trace: MetaTrace::default(),
            progress_token: false,
            stream,
            cancels: None,
        }
    }

    /// Sets the request a `notifications/cancelled` names (`params.requestId`).
    pub fn with_cancelled_request(mut self, id: RequestId) -> Self {
        self.cancels = Some(id);
        self
    }

    /// Sets the target name (tool, resource uri, prompt).
    pub fn with_name(mut self, name: impl Into<Box<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the protocol revision.
    pub fn with_revision(mut self, revision: ProtocolRevision) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Sets what the request's answer stream is (by default: [`StreamRole::Listen`] for a
    /// long-lived method, else [`StreamRole::Call`]).
    pub fn with_stream_role(mut self, role: StreamRole) -> Self {
        self.stream = role;
        self
    }

    /// Sets the 2025-11-25 session id.
    pub fn with_session_id(mut self, session: HeaderValue) -> Self {
        self.session_id = Some(session);
        self
    }

    /// The protocol revision: from `MCP-Protocol-Version`, the `_meta` protocol version, or
    /// `initialize`'s `protocolVersion`; `None` when the request did not say.
    #[inline]
    pub fn revision(&self) -> Option<ProtocolRevision> {
        self.revision
    }

    /// The kind of JSON-RPC message.
    #[inline]
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The JSON-RPC method, for requests and notifications.
    #[inline]
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The JSON-RPC id, for requests and responses.
    #[inline]
    pub fn id(&self) -> Option<&RequestId> {
        self.id.as_ref()
    }

    /// The target name: the tool of `tools/call`, the prompt of `prompts/get`, the uri of
    /// `resources/read`. Client-controlled: key tables must not trust it (see DESIGN §5).
    #[inline]
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The tool name, for `tools/call` only.
    #[inline]
    pub fn tool(&self) -> Option<&str> {
        match self.method {
            Some(Method::ToolsCall) => self.name(),
            _ => None,
        }
    }

    /// The 2025-11-25 `Mcp-Session-Id` the request carried. `None` for a request of the
    /// stateless revision (2026-07-28) even when it carries the header: the server ignores it
    /// there.
    #[inline]
    pub fn session_id(&self) -> Option<&HeaderValue> {
        self.session_id.as_ref()
    }

    /// Trace context found in `params._meta`.
    #[inline]
    pub fn meta_trace(&self) -> &MetaTrace {
        &self.meta_trace
    }

    /// Whether `params._meta.progressToken` was present (the caller asked for progress).
    #[inline]
    pub fn wants_progress(&self) -> bool {
        self.progress_token
    }

    /// For a `notifications/cancelled`, the id of the request it cancels (`params.requestId`),
    /// when that is a valid JSON-RPC id no longer than the inspector's id limit. Under
    /// 2025-11-25 the request is one of the same session's
    /// ([`session_id`](Self::session_id)): a client cancelling a call. `None` for any other
    /// message.
    #[inline]
    pub fn cancelled_request(&self) -> Option<&RequestId> {
        self.cancels.as_ref()
    }

    /// Whether the request is a call, a long-lived stream, or a resumption.
    #[inline]
    pub fn stream_role(&self) -> &StreamRole {
        &self.stream
    }

    /// Whether the request opens a long-lived stream (GET listen or `subscriptions/listen`).
    #[inline]
    pub fn is_long_lived(&self) -> bool {
        self.stream == StreamRole::Listen
    }

    /// Whether the request is a 2025-11-25 GET resuming a call's stream ([`StreamRole::Resume`]).
    #[inline]
    pub fn is_resume(&self) -> bool {
        matches!(self.stream, StreamRole::Resume { .. })
    }

    /// Whether the request is a JSON-RPC request that expects an answer: the unit that per-call
    /// layers (breaker, retry, bulkhead, timeout) account for. Resumptions are the same call and
    /// count too, except in the circuit breaker, which passes them uncounted (see
    /// [`is_resume`](Self::is_resume)).
    #[inline]
    pub fn is_call(&self) -> bool {
        match self.stream {
            StreamRole::Call => self.kind == MessageKind::Request,
            StreamRole::Resume { .. } => true,
            StreamRole::Listen | StreamRole::None => false,
        }
    }

    /// Whether the method is safe to retry; see [`RetrySafety`].
    pub fn retry_safety(&self) -> RetrySafety {
        match (&self.method, self.kind) {
            (Some(m), MessageKind::Request) if self.stream == StreamRole::Call => m.retry_safety(),
            _ => RetrySafety::Unsafe,
        }
    }
}

/// A header value (a session id) as a long-lived table keeps it: copied, so that a value sliced
/// out of the read buffer of the request that carried it (up to the whole request head) does not
/// keep that buffer alive as long as the entry.
///
/// ```
/// use http::HeaderValue;
/// let v = HeaderValue::from_static("0d9f5c2e");
/// assert_eq!(tower_armor_mcp::detached(&v), v);
/// ```
pub fn detached(value: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
}
