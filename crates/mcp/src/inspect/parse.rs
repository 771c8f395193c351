//! Pure parsing of one MCP request (headers + body bytes) into [`McpRequest`], or a rejection.
//! No I/O and no runtime: tested and fuzzed directly.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::jsonrpc::{self, RequestId};
use crate::request::{MessageKind, MetaTrace, StreamRole};
use crate::{McpRequest, Method, NameField, ProtocolRevision};

/// `MCP-Protocol-Version`.
pub static PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// `Mcp-Session-Id`.
pub static SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `Mcp-Method` (2026-07-28).
pub static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// `Mcp-Name` (2026-07-28).
pub static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// `Last-Event-ID`.
pub static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Whether a 2025-11-25 GET's `Last-Event-ID` resumes a call's stream, rather than the session's
/// listen stream.
///
/// Event ids are opaque to the protocol; this follows rmcp, which numbers a call's events
/// `<index>/<request id>` and the listen stream's `<index>`, and reads a `Last-Event-ID` by
/// splitting it at its first `/` and parsing each side as an unsigned decimal integer the way
/// Rust's `from_str` does: an optional leading `+` and leading zeros are accepted, a value out
/// of range is not. Exactly the ids rmcp resumes a call with resume one here, so a client cannot
/// resume its call past the layers that bound calls by spelling the id `+0/+1`; any other id,
/// from rmcp or another server, is taken as the listen stream's (rmcp answers an id it cannot
/// read with an empty stream). See [`canonical_call_event_id`] for the one spelling the
/// layers key a call's stream by.
pub fn resumes_call(last_event_id: &[u8]) -> bool {
    call_event_id(last_event_id).is_some()
}

/// A call's event id as rmcp reads it (see [`resumes_call`]): its index and its stream.
fn call_event_id(id: &[u8]) -> Option<(usize, u64)> {
    let id = std::str::from_utf8(id).ok()?;
    let (index, stream) = id.split_once('/')?;
    Some((index.parse().ok()?, stream.parse().ok()?))
}

/// The usual spelling (`<index>/<stream>`, plain decimal digits) of a `Last-Event-ID` that
/// resumes a call ([`resumes_call`]), or `None` for any other id. The same header value when it
/// is spelt that way already (no allocation); the inspector hands the server and the inner
/// layers this spelling, so that every one of them names the call's stream alike.
pub fn canonical_call_event_id(last_event_id: &HeaderValue) -> Option<HeaderValue> {
    let raw = last_event_id.as_bytes();
    let (index, stream) = call_event_id(raw)?;
    let plain = |s: &[u8]| s == b"0" || (s.first().is_some_and(|&b| (b'1'..=b'9').contains(&b)));
    let slash = raw.iter().position(|&b| b == b'/')?;
    if plain(&raw[..slash]) && plain(&raw[slash + 1..]) {
        return Some(last_event_id.clone());
    }
    HeaderValue::try_from(format!("{index}/{stream}")).ok()
}

/// The stream part of an rmcp event id (`<index>/<stream>`), if it has one: what a resuming
/// `GET`'s `Last-Event-ID` names, and what layers key a call's stream by.
pub fn event_stream(event_id: &[u8]) -> Option<&str> {
    let slash = event_id.iter().rposition(|&b| b == b'/')?;
    let stream = std::str::from_utf8(event_id.get(slash + 1..)?).ok()?;
    (!stream.is_empty()).then_some(stream)
}

/// The `_meta` key carrying the protocol version (2026-07-28).
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Why the inspector refused a request: the status, JSON-RPC code and message of its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// JSON-RPC error code.
    pub code: i64,
    /// Human-readable message (never echoes client input).
    pub message: &'static str,
    /// The request's id, when it could be read.
    pub id: Option<RequestId>,
    /// On a `-32022` answer: the version the client asked for (lossily decoded, at most 128
    /// characters), answered back in the error's `data.requested` with the `data.supported`
    /// list, so that a client can pick a version both sides speak and retry.
    pub requested: Option<Box<str>>,
}

impl Rejection {
    fn new(status: StatusCode, code: i64, message: &'static str) -> Self {
        Rejection {
            status,
            code,
            message,
            id: None,
            requested: None,
        }
    }

    /// `-32022` for a version the client asked for (the header's or `_meta`'s).
    fn unsupported(message: &'static str, requested: &[u8]) -> Self {
        let requested: String = String::from_utf8_lossy(requested)
            .chars()
            .take(128)
            .collect();
        Rejection {
            requested: Some(requested.into_boxed_str()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                jsonrpc::UNSUPPORTED_VERSION,
                message,
            )
        }
    }

    fn parse(message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, jsonrpc::PARSE_ERROR, message)
    }

    pub(super) fn invalid(message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, jsonrpc::INVALID_REQUEST, message)
    }

    fn mismatch(message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, jsonrpc::HEADER_MISMATCH, message)
    }

    fn invalid_params(message: &'static str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, jsonrpc::INVALID_PARAMS, message)
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            crate::error::CODE_PAYLOAD_TOO_LARGE,
            "request body too large",
        )
    }

    /// A request body with a content coding (`Content-Encoding` other than `identity`): neither
    /// this layer nor an MCP server decodes one, so reading the bytes as they are would make the
    /// server see something else than a proxy or firewall that decodes them (RFC 9110 §8.4: 415).
    pub(crate) fn encoded() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            jsonrpc::INVALID_REQUEST,
            "request bodies with a Content-Encoding are not supported",
        )
    }

    /// A JSON body declared in a charset other than UTF-8 (RFC 8259 §8.1: JSON is exchanged as
    /// UTF-8; 415).
    pub(crate) fn not_utf8_charset() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            jsonrpc::INVALID_REQUEST,
            "JSON request bodies must be UTF-8 (Content-Type charset)",
        )
    }

    /// A 2025-11-25 request reusing an id in progress in its session.
    pub(crate) fn in_use() -> Self {
        Self::invalid("JSON-RPC id already in use by a request in progress in this session")
    }

    /// A request whose `Host` is repeated, invalid, or not the request target's authority.
    pub(crate) fn bad_host(message: &'static str) -> Self {
        Self::invalid(message)
    }

    /// A request body with a transfer coding other than `chunked` (RFC 9112 §6.1: 501).
    pub(crate) fn transfer_coded() -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            jsonrpc::INVALID_REQUEST,
            "transfer codings other than chunked are not supported",
        )
    }

    pub(crate) fn unreadable() -> Self {
        Self::invalid("request body could not be read")
    }

    pub(crate) fn with_id(mut self, id: Option<RequestId>) -> Self {
        self.id = id;
        self
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// Limits the parser applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_id_len: usize,
    pub(crate) reject_unknown_versions: bool,
}

/// Facts from headers alone (GET, DELETE and anything that is not a JSON POST).
pub(crate) fn from_headers(
    method: &http::Method,
    headers: &HeaderMap,
    limits: Limits,
) -> Result<McpRequest, Rejection> {
    let revision = header_revision(headers, limits)?;
    let session_id = session_of(revision, headers)?;
    // 2026-07-28 has no GET: the server refuses one at once. It is no stream, and takes
    // nothing a stream takes (a stream slot). (Under 2025-11-25 a server without sessions may
    // serve a GET stream without one.)
    let stream = if method == http::Method::GET && revision.is_none_or(|r| !r.is_stateless()) {
        match headers.get(&LAST_EVENT_ID) {
            Some(v) => match canonical_call_event_id(v) {
                Some(last_event_id) => StreamRole::Resume { last_event_id },
                // The listen stream's own id: reconnecting it is the same long-lived stream.
                None => StreamRole::Listen,
            },
            None => StreamRole::Listen,
        }
    } else {
        StreamRole::None
    };
    Ok(McpRequest {
        revision,
        kind: MessageKind::NotJsonRpc,
        method: None,
        id: None,
        name: None,
        session_id,
        meta_trace: MetaTrace::default(),
        progress_token: false,
        stream,
        cancels: None,
    })
}

/// Members of a message's `params` whose type the MCP schema fixes, checked where a server
/// that cannot read them would answer otherwise than for a well-formed request (rmcp: `-32601`
/// "method not found", or for `initialize` a bare-text 400 about a missing session): `_meta` is
/// an object, and so are `tools/call`'s `arguments` (`null` stands for absent). A server
/// refuses such a call before it looks the tool up, so the tool allow-list, which answers a
/// denied tool itself, would otherwise tell a hidden tool from an unknown one. A request naming
/// its target names it with a string (`tools/call` and `prompts/get`: `name`;
/// `resources/read`: `uri`); `initialize` carries `protocolVersion` (a string), `capabilities`
/// (an object) and `clientInfo` (an object with string `name` and `version`); and
/// `subscriptions/listen`'s `notifications` filter is a (required) object.
fn params_problem(
    method: Option<&Method>,
    kind: MessageKind,
    params: &Params<'_>,
) -> Result<(), Rejection> {
    if params.meta.malformed {
        return Err(Rejection::invalid_params("_meta must be an object"));
    }
    let request = kind == MessageKind::Request;
    match method {
        Some(Method::ToolsCall) if params.arguments == Shape::Other => Err(
            Rejection::invalid_params("tools/call arguments must be an object"),
        ),
        Some(Method::ToolsCall) if request && params.name.is_none() => Err(
            Rejection::invalid_params("tools/call params.name must be a string"),
        ),
        Some(Method::PromptsGet) if request && params.name.is_none() => Err(
            Rejection::invalid_params("prompts/get params.name must be a string"),
        ),
        Some(Method::ResourcesRead) if request && params.uri.is_none() => Err(
            Rejection::invalid_params("resources/read params.uri must be a string"),
        ),
        Some(Method::ResourcesSubscribe | Method::ResourcesUnsubscribe)
            if request && params.uri.is_none() =>
        {
            Err(Rejection::invalid_params(
                "resources/subscribe and resources/unsubscribe params.uri must be a string",
            ))
        }
        Some(Method::TasksGet | Method::TasksCancel) if request && params.task_id.is_none() => Err(
            Rejection::invalid_params("tasks/get and tasks/cancel params.taskId must be a string"),
        ),
        Some(Method::Initialize)
            if request
                && !(params
                    .protocol_version
                    .as_deref()
                    .is_some_and(|v| !log_hostile(v))
                    && params.capabilities == Shape::Object
                    && params.client_info) =>
        {
            Err(Rejection::invalid_params(
                "initialize needs protocolVersion (a string without control characters), \
                 capabilities (an object) and clientInfo (an object with string name and version)",
            ))
        }
        // The filter is required; rmcp answers a listen without one with a 404 `-32601`.
        Some(Method::SubscriptionsListen) if params.notifications != Shape::Object => Err(
            Rejection::invalid_params("subscriptions/listen notifications must be an object"),
        ),
        Some(Method::SubscriptionsListen) if !params.notifications_well_typed => {
            Err(Rejection::invalid_params(
                "subscriptions/listen notifications: the *ListChanged members must be booleans \
                 and resourceSubscriptions an array of strings",
            ))
        }
        _ => Ok(()),
    }
}

/// The per-request `_meta` rules of 2026-07-28, for a request (notifications are exempt):
/// a request that names its version in `_meta` also sends the `MCP-Protocol-Version` header,
/// and a request sent under 2026-07-28 (by the header; `server/discover` always) carries
/// both `io.modelcontextprotocol/protocolVersion` and `.../clientCapabilities` (an object).
/// `initialize` predates all this and is exempt.
fn meta_problem(
    headers: &HeaderMap,
    header_rev: Option<ProtocolRevision>,
    method: Option<&Method>,
    meta: &Meta,
) -> Result<(), Rejection> {
    if matches!(method, Some(Method::Initialize)) {
        return Ok(());
    }
    if meta.protocol_version.is_some() && !headers.contains_key(&PROTOCOL_VERSION) {
        return Err(Rejection::mismatch(
            "request _meta protocolVersion requires MCP-Protocol-Version header",
        ));
    }
    // Both per-request keys under a revision with sessions: rmcp serves such a request
    // statelessly (SEP-2567: the keys route it, whatever version they name), outside the
    // session its header names, where the layers would account for it. No client of a
    // revision with sessions sends them.
    if meta.client_capabilities
        && meta.protocol_version.is_some()
        && header_rev.is_some_and(|r| !r.is_stateless())
    {
        return Err(Rejection::invalid_params(
            "request _meta carries io.modelcontextprotocol/clientCapabilities, a 2026-07-28 key, \
             under a protocol version with sessions",
        ));
    }
    let required = header_rev == Some(ProtocolRevision::V2026_07_28)
        || matches!(method, Some(Method::ServerDiscover));
    if !required {
        return Ok(());
    }
    let message = match (meta.protocol_version.is_some(), meta.client_capabilities) {
        (true, true) => return Ok(()),
        (false, true) => {
            "request _meta is missing or has malformed required fields: \
             io.modelcontextprotocol/protocolVersion"
        }
        (true, false) => {
            "request _meta is missing or has malformed required fields: \
             io.modelcontextprotocol/clientCapabilities"
        }
        (false, false) => {
            "request _meta is missing or has malformed required fields: \
             io.modelcontextprotocol/protocolVersion, io.modelcontextprotocol/clientCapabilities"
        }
    };
    Err(Rejection::invalid_params(message))
}

/// The request's `Mcp-Session-Id`, unless `revision` (the header's) is the stateless one: there
/// the server ignores the session header (rmcp serves such a request with a stale or made-up
/// session id as if it had none), so no layer may key anything by it either.
fn session_of(
    revision: Option<ProtocolRevision>,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, Rejection> {
    let session = only(headers, &SESSION_ID)
        .map_err(|()| Rejection::invalid("Mcp-Session-Id header repeated"))?;
    if revision.is_some_and(ProtocolRevision::is_stateless) {
        return Ok(None);
    }
    Ok(session.cloned())
}

/// The one value of an MCP header. A repeated one is refused: each layer and the server could
/// read a different copy (one layer the first, rmcp's own check the other), so they would not
/// agree on what the request says. Each caller picks the answer: `-32020` for the routing
/// headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`), as rmcp and the Python SDK's
/// server answer them; `-32600` for the session id.
pub(crate) fn only<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, ()> {
    let mut all = headers.get_all(name).iter();
    let first = all.next();
    match all.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

fn header_revision(
    headers: &HeaderMap,
    limits: Limits,
) -> Result<Option<ProtocolRevision>, Rejection> {
    let Some(v) = only(headers, &PROTOCOL_VERSION)
        .map_err(|()| Rejection::mismatch("MCP-Protocol-Version header repeated"))?
    else {
        return Ok(None);
    };
    match v.to_str().ok().and_then(ProtocolRevision::parse) {
        Some(r) => Ok(Some(r)),
        None if limits.reject_unknown_versions => Err(Rejection::unsupported(
            "unsupported MCP-Protocol-Version",
            v.as_bytes(),
        )),
        None => Ok(None),
    }
}

/// Parses a JSON-RPC POST: its body and the headers that mirror it.
pub(crate) fn from_post(
    headers: &HeaderMap,
    body: &[u8],
    limits: Limits,
) -> Result<McpRequest, Rejection> {
    // An unknown version is answered before a malformed body, and with the request's id when
    // the body gives one.
    let header_rev = header_revision(headers, limits);
    let env = match parse_envelope(body, limits) {
        Ok(env) => env,
        // The id the envelope's own error read, if any, goes with the version's.
        Err(e) => {
            return Err(match header_rev {
                Err(version) => version.with_id(e.id),
                Ok(_) => e,
            });
        }
    };

    let id = match env.id {
        None => None,
        Some(IdField::Valid(id)) if id.len() > limits.max_id_len => {
            return Err(Rejection::invalid("JSON-RPC id too long"));
        }
        Some(IdField::Valid(id)) if has_control(&id) => {
            return Err(Rejection::invalid(
                "JSON-RPC id has control characters or line separators",
            ));
        }
        Some(IdField::Valid(id)) => Some(id),
        Some(IdField::Invalid) => return Err(Rejection::invalid("invalid JSON-RPC id")),
    };
    let header_rev = header_rev.map_err(|e| e.with_id(id.clone()))?;
    if env.jsonrpc.as_deref() != Some("2.0") {
        return Err(Rejection::invalid("not a JSON-RPC 2.0 message").with_id(id));
    }
    // A method no MCP server has, which servers repeat in their logs and error messages (rmcp
    // logs an unknown one at WARN): bounded like an id, and no control characters.
    if let Some(m) = env.method.as_deref()
        && (m.len() > MAX_METHOD_LEN || log_hostile(m))
    {
        return Err(Rejection::invalid(
            "JSON-RPC method longer than 256 bytes or with control characters",
        )
        .with_id(id));
    }
    let method = env.method.as_deref().map(Method::parse);
    let kind = match (&method, &id, env.has_result_or_error) {
        (Some(_), Some(_), false) => MessageKind::Request,
        (Some(_), None, false) => MessageKind::Notification,
        (None, Some(_), true) => MessageKind::Response,
        _ => {
            return Err(
                Rejection::invalid("not a JSON-RPC request, notification or response").with_id(id),
            );
        }
    };

    let params = env.params.unwrap_or_default();
    let meta_rev = match params.meta.protocol_version.as_deref() {
        None => None,
        Some(v) => match ProtocolRevision::parse(v) {
            Some(r) => Some(r),
            None if limits.reject_unknown_versions => {
                return Err(Rejection::unsupported(
                    "unsupported protocol version in _meta",
                    v.as_bytes(),
                )
                .with_id(id));
            }
            None => None,
        },
    };
    if let (Some(h), Some(m)) = (header_rev, meta_rev)
        && h != m
    {
        return Err(
            Rejection::mismatch("MCP-Protocol-Version header does not match _meta").with_id(id),
        );
    }
    let init_rev = match method {
        Some(Method::Initialize) => params
            .protocol_version
            .as_deref()
            .and_then(ProtocolRevision::parse),
        _ => None,
    };
    let revision = header_rev.or(meta_rev).or(init_rev);

    let name: Option<Box<str>> = match method.as_ref().and_then(Method::name_field) {
        Some(NameField::Name) => params.name.as_deref().map(Into::into),
        Some(NameField::Uri) => params.uri.as_deref().map(Into::into),
        Some(NameField::TaskId) => params.task_id.as_deref().map(Into::into),
        None => None,
    };

    // Mirrored headers (2026-07-28). Checked whenever present; required under 2026-07-28, as
    // the header or `_meta` says: the version an `initialize` offers is an offer the server may
    // answer with another (2026-07-28 has no `initialize`), not the revision of the request.
    let stateless = header_rev.or(meta_rev) == Some(ProtocolRevision::V2026_07_28);
    let mirrored = |name, repeated| {
        only(headers, name).map_err(|()| Rejection::mismatch(repeated).with_id(id.clone()))
    };
    if let Some(m) = &method {
        match mirrored(&MCP_METHOD, "Mcp-Method header repeated")? {
            Some(h) if h.as_bytes() != m.as_str().as_bytes() => {
                return Err(
                    Rejection::mismatch("Mcp-Method header does not match the body").with_id(id),
                );
            }
            None if stateless => {
                return Err(Rejection::mismatch("Mcp-Method header is required").with_id(id));
            }
            _ => {}
        }
        if m.name_field().is_some() {
            match mirrored(&MCP_NAME, "Mcp-Name header repeated")? {
                Some(h) => {
                    let decoded = decode_mcp_name(h).ok_or_else(|| {
                        Rejection::mismatch("Mcp-Name header is not valid").with_id(id.clone())
                    })?;
                    if Some(&*decoded) != name.as_deref() {
                        return Err(
                            Rejection::mismatch("Mcp-Name header does not match the body")
                                .with_id(id),
                        );
                    }
                }
                None if stateless => {
                    return Err(Rejection::mismatch("Mcp-Name header is required").with_id(id));
                }
                None => {}
            }
        }
    }

    match kind {
        // The schema's types hold in every message with params (rmcp answers a notification it
        // cannot read with a bare 415); the per-request `_meta` rules hold for requests.
        MessageKind::Request | MessageKind::Notification => {
            params_problem(method.as_ref(), kind, &params)
                .and_then(|()| match kind {
                    MessageKind::Request => {
                        meta_problem(headers, header_rev, method.as_ref(), &params.meta)
                    }
                    _ => Ok(()),
                })
                .map_err(|r| r.with_id(id.clone()))?;
        }
        // 2026-07-28 has no server-to-client requests for a client to answer (rmcp refuses
        // one with an error that names no id).
        MessageKind::Response if stateless => {
            return Err(
                Rejection::invalid("stateless server does not accept JSON-RPC responses")
                    .with_id(id),
            );
        }
        _ => {}
    }

    let stream = match &method {
        Some(m) if m.is_long_lived() && kind == MessageKind::Request => StreamRole::Listen,
        _ => StreamRole::Call,
    };
    // rmcp tells the stateless revision by the header alone (a request whose `_meta` would
    // route it otherwise is refused above), and serves `initialize` within a session whatever
    // the header says.
    let session_id = session_of(
        header_rev.filter(|_| !matches!(method, Some(Method::Initialize))),
        headers,
    )
    .map_err(|r| r.with_id(id.clone()))?;
    // An id the message could not carry as its own is not matched as another's either.
    let cancels = match (&method, kind) {
        (Some(Method::NotificationsCancelled), MessageKind::Notification) => {
            params.request_id.filter(|target| usable_id(target, limits))
        }
        _ => None,
    };
    Ok(McpRequest {
        revision,
        kind,
        method,
        id,
        name,
        session_id,
        meta_trace: params.meta.trace,
        progress_token: params.meta.progress_token,
        stream,
        cancels,
    })
}

/// Decodes an `Mcp-Name` value: plain visible ASCII, or `=?base64?<base64 of UTF-8>?=`.
pub fn decode_mcp_name(v: &HeaderValue) -> Option<Cow<'_, str>> {
    let b = v.as_bytes();
    if let Some(inner) = b
        .strip_prefix(b"=?base64?")
        .and_then(|r| r.strip_suffix(b"?="))
    {
        let bytes = base64_decode(inner)?;
        return String::from_utf8(bytes).ok().map(Cow::Owned);
    }
    if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        // Visible ASCII checked above.
        std::str::from_utf8(b).ok().map(Cow::Borrowed)
    } else {
        None
    }
}

/// Standard base64 with padding (RFC 4648 §4); `None` on any malformed input.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let quads = input.len() / 4;
    for (i, q) in input.chunks_exact(4).enumerate() {
        let last = i + 1 == quads;
        let pad = if last {
            q.iter().rev().take_while(|&&c| c == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
        // Non-canonical trailing bits are malformed.
        if pad > 0 && (n & ((1 << (8 * pad)) - 1)) != 0 {
            return None;
        }
    }
    Some(out)
}

// === the envelope ===

/// Skips any JSON value, like `serde::de::IgnoredAny`, but through `deserialize_any`, so
/// serde_json's nesting limit (128) applies: a body nested deeper is refused here (400 + -32700)
/// instead of failing later in the server's typed parsing. (`IgnoredAny` skips iteratively with
/// no limit.)
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

/// The `visit_bool`, `visit_i64`, `visit_u64` and `visit_f64` of a visitor that reads every
/// such scalar as `$value`.
macro_rules! scalars_as {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    scalars_as!(Skip);
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Skip, A::Error> {
        while s.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Skip, A::Error> {
        while m.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    method: Option<Cow<'a, str>>,
    id: Option<IdField>,
    has_result_or_error: bool,
    params: Option<Params<'a>>,
}

enum IdField {
    Valid(RequestId),
    Invalid,
}

#[derive(Default)]
struct Params<'a> {
    name: Option<Cow<'a, str>>,
    uri: Option<Cow<'a, str>>,
    /// `taskId` (of `tasks/get`, `tasks/cancel`).
    task_id: Option<Cow<'a, str>>,
    protocol_version: Option<Cow<'a, str>>,
    /// `requestId` (of `notifications/cancelled`), when it is a valid JSON-RPC id.
    request_id: Option<RequestId>,
    /// What `arguments` (of `tools/call`) holds.
    arguments: Shape,
    /// What `notifications` (of `subscriptions/listen`) holds.
    notifications: Shape,
    /// Its known members have their types ([`ListenFilterDe`]).
    notifications_well_typed: bool,
    /// What `capabilities` (of `initialize`) holds.
    capabilities: Shape,
    /// `clientInfo` (of `initialize`) is an object with string `name` and `version`.
    client_info: bool,
    meta: Meta,
}

#[derive(Default)]
struct Meta {
    trace: MetaTrace,
    progress_token: bool,
    protocol_version: Option<Box<str>>,
    /// `io.modelcontextprotocol/clientCapabilities` is present and an object.
    client_capabilities: bool,
    /// `_meta` itself was present but neither an object nor `null`.
    malformed: bool,
}

fn parse_envelope(body: &[u8], limits: Limits) -> Result<Envelope<'_>, Rejection> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => return Err(Rejection::parse("empty body")),
        Some(b'[') => {
            // Validate it is JSON at all before answering "batch not supported".
            return match serde_json::from_slice::<Skip>(body) {
                Ok(_) => Err(Rejection::invalid("JSON-RPC batches are not supported")),
                Err(_) => Err(Rejection::parse("malformed JSON")),
            };
        }
        Some(b'{') => {}
        Some(_) => {
            return match serde_json::from_slice::<Skip>(body) {
                Ok(_) => Err(Rejection::invalid("a JSON-RPC message must be an object")),
                Err(_) => Err(Rejection::parse("malformed JSON")),
            };
        }
    }
    serde_json::from_slice::<EnvelopeDe<'_>>(body)
        .map(|e| e.0)
        .map_err(|_| wrong_shape(body, limits))
}

/// The longest JSON-RPC method accepted (MCP's are a few dozen bytes).
const MAX_METHOD_LEN: usize = 256;

/// Whether a string could forge log lines where a server logs it as it is (rmcp does, for ids
/// and an `initialize`'s `protocolVersion`): control characters (line breaks, escape sequences)
/// and the Unicode line and paragraph separators, which some log readers split lines at.
fn log_hostile(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
}

/// Whether a string id is [`log_hostile`].
fn has_control(id: &RequestId) -> bool {
    matches!(id, RequestId::String(s) if log_hostile(s))
}

/// Whether an id is one the inspector accepts: not too long, no control characters.
fn usable_id(id: &RequestId, limits: Limits) -> bool {
    id.len() <= limits.max_id_len && !has_control(id)
}

/// Why an object did not read as a JSON-RPC message: it is not JSON (`-32700`), or it is JSON
/// whose members have the wrong types, such as a `method` that is not a string or `params` that
/// are a number: an invalid request (`-32600`), answered with its id when that can be read.
#[cold]
fn wrong_shape(body: &[u8], limits: Limits) -> Rejection {
    match serde_json::from_slice::<IdOnly>(body) {
        Ok(IdOnly(id, _)) => Rejection::invalid("not a valid JSON-RPC message")
            .with_id(id.filter(|id| usable_id(id, limits))),
        // Valid JSON with a number no type holds (as the id, or in the arguments): an invalid
        // request (neither this layer nor the server can read it), not a parse error; with its
        // id when that is not the number.
        // (Text that is not UTF-8 is malformed, wherever it is.)
        Err(_)
            if std::str::from_utf8(body).is_ok()
                && serde_json::from_slice::<IdUnread>(body).is_ok()
                && within_depth(body) =>
        {
            let id = serde_json::from_slice::<IdOnly<de::IgnoredAny>>(body)
                .ok()
                .and_then(|i| i.0)
                .filter(|id| usable_id(id, limits));
            Rejection::invalid("not a valid JSON-RPC message").with_id(id)
        }
        Err(_) => Rejection::parse("malformed JSON"),
    }
}

/// A JSON object, checked whole, of which only a valid `id` is kept. An object with two `id`
/// members has no id that can be told (JSON-RPC: answered with `null`). The other members are
/// read with `S`: [`Skip`] checks them as JSON values; [`de::IgnoredAny`] skips them unread, so
/// a number no type holds among them does not hide the id (see [`IdUnread`]).
struct IdOnly<S = Skip>(Option<RequestId>, PhantomData<S>);

impl<'de, S: Deserialize<'de>> Deserialize<'de> for IdOnly<S> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<S>(PhantomData<S>);
        impl<'de, S: Deserialize<'de>> Visitor<'de> for V<S> {
            type Value = IdOnly<S>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut id = None;
                let mut ids = 0u32;
                while let Some(k) = m.next_key::<CowStr<'de>>()? {
                    if k.0 == "id" {
                        ids += 1;
                        id = m.next_value::<MaybeId>()?.0;
                    } else {
                        m.next_value::<S>()?;
                    }
                }
                Ok(IdOnly(id.filter(|_| ids == 1), PhantomData))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A JSON object checked for its syntax only, every member skipped unread: serde_json only
/// scans the digits of a number it ignores, so a number no type holds (`1e999999`, a 5,000-digit
/// integer: valid JSON), in the `id` or anywhere else, passes here. Skipped members are not held
/// to the nesting limit: see [`within_depth`].
struct IdUnread;

impl<'de> Deserialize<'de> for IdUnread {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdUnread;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_key::<de::IgnoredAny>()?.is_some() {
                    m.next_value::<de::IgnoredAny>()?;
                }
                Ok(IdUnread)
            }
        }
        d.deserialize_map(V)
    }
}

/// Whether JSON text (already known to be valid) nests no deeper than serde_json accepts (127
/// levels).
fn within_depth(json: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                // serde_json refuses the 128th level.
                if depth >= 128 {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Refuses a member the inspector reads that appears twice in one object (`"name"` and
/// `"n\u0061me"` are the same key): which one counts is up to each parser (this one would keep
/// the last, rmcp refuses the message), so the layers and the server could read one message
/// two ways. `index` is the member's place in its object's list of known keys.
fn once<E: de::Error>(seen: &mut u32, index: u8) -> Result<(), E> {
    let bit = 1u32.checked_shl(u32::from(index)).unwrap_or(0);
    if *seen & bit != 0 {
        return Err(E::custom("duplicate member"));
    }
    *seen |= bit;
    Ok(())
}

/// String fields borrow from the body when they contain no escapes (unlike a `Cow<str>` field,
/// which serde always copies). Shared with the response observer.
pub(crate) struct CowStr<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A value that is kept only when it is a string (any other JSON is skipped, not an error).
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
            }
            scalars_as!(MaybeStr(None));
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeStr(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<Skip>()?.is_some() {}
                Ok(MaybeStr(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(MaybeStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// What kind of JSON value a member holds (skipped either way, not an error).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Shape {
    /// Absent (never read).
    #[default]
    Absent,
    /// `null`.
    Null,
    /// An object.
    Object,
    /// Anything else.
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_as!(Shape::Other);
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Shape, A::Error> {
                SkipVisitor.visit_seq(s).map(|_| Shape::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Shape, A::Error> {
                SkipVisitor.visit_map(m).map(|_| Shape::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// The filter of a `subscriptions/listen` (`params.notifications`): its [`Shape`], and whether
/// the members the schema knows have their types (`toolsListChanged`, `promptsListChanged`,
/// `resourcesListChanged`: a boolean; `resourceSubscriptions`: an array of strings; either may
/// be `null`). rmcp answers a filter it cannot read with a 404 `-32601`, as for an unknown
/// method.
struct ListenFilterDe {
    shape: Shape,
    well_typed: bool,
}

impl<'de> Deserialize<'de> for ListenFilterDe {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenFilterDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                #[derive(Clone, Copy, Deserialize)]
                #[serde(field_identifier)]
                enum K {
                    #[serde(rename = "toolsListChanged")]
                    Tools,
                    #[serde(rename = "promptsListChanged")]
                    Prompts,
                    #[serde(rename = "resourcesListChanged")]
                    Resources,
                    #[serde(rename = "resourceSubscriptions")]
                    Subscriptions,
                    #[serde(other)]
                    Other,
                }
                let mut well_typed = true;
                let mut seen = 0u32;
                while let Some(k) = m.next_key::<K>()? {
                    if !matches!(k, K::Other) {
                        once(&mut seen, k as u8)?;
                    }
                    well_typed &= match k {
                        K::Tools | K::Prompts | K::Resources => m.next_value::<Flag>()?.0,
                        K::Subscriptions => m.next_value::<Strings>()?.0,
                        K::Other => m.next_value::<Skip>().map(|_| true)?,
                    };
                }
                Ok(ListenFilterDe {
                    shape: Shape::Object,
                    well_typed,
                })
            }
            scalars_as!(ListenFilterDe {
                shape: Shape::Other,
                well_typed: false,
            });
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ListenFilterDe {
                    shape: Shape::Other,
                    well_typed: false,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ListenFilterDe {
                    shape: Shape::Null,
                    well_typed: false,
                })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
                SkipVisitor.visit_seq(s).map(|_| ListenFilterDe {
                    shape: Shape::Other,
                    well_typed: false,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a value is a boolean or `null` (anything else is skipped, not an error).
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Flag, E> {
                Ok(Flag(true))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(true))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Flag, E> {
                Ok(Flag(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Flag, E> {
                Ok(Flag(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Flag, E> {
                Ok(Flag(false))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Flag, E> {
                Ok(Flag(false))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Flag, A::Error> {
                SkipVisitor.visit_seq(s).map(|_| Flag(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Flag, A::Error> {
                SkipVisitor.visit_map(m).map(|_| Flag(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a value is an array of strings, or `null` (anything else is skipped, not an error).
struct Strings(bool);

impl<'de> Deserialize<'de> for Strings {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_as!(Strings(false));
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Strings, E> {
                Ok(Strings(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Strings, E> {
                Ok(Strings(true))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Strings, A::Error> {
                let mut all = true;
                while let Some(v) = s.next_element::<MaybeStr<'de>>()? {
                    all &= v.0.is_some();
                }
                Ok(Strings(all))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Strings, A::Error> {
                SkipVisitor.visit_map(m).map(|_| Strings(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether a value is an MCP `Implementation`: an object whose `name` and `version` are
/// strings (any other JSON is skipped, not an error).
struct ImplementationDe(bool);

impl<'de> Deserialize<'de> for ImplementationDe {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ImplementationDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            scalars_as!(ImplementationDe(false));
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(ImplementationDe(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ImplementationDe(false))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, s: A) -> Result<Self::Value, A::Error> {
                SkipVisitor.visit_seq(s).map(|_| ImplementationDe(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                #[derive(Clone, Copy, Deserialize)]
                #[serde(field_identifier)]
                enum K {
                    #[serde(rename = "name")]
                    Name,
                    #[serde(rename = "version")]
                    Version,
                    #[serde(other)]
                    Other,
                }
                let (mut name, mut version) = (false, false);
                let mut seen = 0u32;
                while let Some(k) = m.next_key::<K>()? {
                    if !matches!(k, K::Other) {
                        once(&mut seen, k as u8)?;
                    }
                    match k {
                        K::Name => name = m.next_value::<MaybeStr<'de>>()?.0.is_some(),
                        K::Version => version = m.next_value::<MaybeStr<'de>>()?.0.is_some(),
                        K::Other => {
                            m.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(ImplementationDe(name && version))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value that is kept only when it is a valid JSON-RPC id (a string, or an integer that fits
/// an `i64`, also in float form: [`integral_id`](crate::jsonrpc::integral_id)); any other JSON is skipped without building it, not an error. Shared with the
/// response observer, which reads ids a server (or an upstream) wrote.
pub(crate) struct MaybeId(pub(crate) Option<RequestId>);

impl<'de> Deserialize<'de> for MaybeId {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeId(Some(RequestId::String(v.into()))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(MaybeId(Some(RequestId::Number(v))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(MaybeId(i64::try_from(v).ok().map(RequestId::Number)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(MaybeId(
                    crate::jsonrpc::integral_id(v).map(RequestId::Number),
                ))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(MaybeId(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeId(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<Skip>()?.is_some() {}
                Ok(MaybeId(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(MaybeId(None))
            }
        }
        d.deserialize_any(V)
    }
}

struct EnvelopeDe<'a>(Envelope<'a>);

impl<'de> Deserialize<'de> for EnvelopeDe<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvelopeDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                #[derive(Clone, Copy, Deserialize)]
                #[serde(field_identifier)]
                enum K {
                    #[serde(rename = "jsonrpc")]
                    JsonRpc,
                    #[serde(rename = "method")]
                    Method,
                    #[serde(rename = "id")]
                    Id,
                    #[serde(rename = "params")]
                    Params,
                    #[serde(rename = "result")]
                    Result,
                    #[serde(rename = "error")]
                    Error,
                    #[serde(other)]
                    Other,
                }
                let mut e = Envelope::default();
                let mut seen = 0u32;
                while let Some(k) = m.next_key::<K>()? {
                    if !matches!(k, K::Other) {
                        once(&mut seen, k as u8)?;
                    }
                    match k {
                        K::JsonRpc => e.jsonrpc = m.next_value::<MaybeStr<'de>>()?.0,
                        K::Method => e.method = Some(m.next_value::<CowStr<'de>>()?.0),
                        K::Id => {
                            // Never built as a JSON value: a hostile id (an array of millions
                            // of elements) costs a skip, not memory many times its size.
                            e.id = Some(match m.next_value::<MaybeId>()?.0 {
                                Some(id) => IdField::Valid(id),
                                None => IdField::Invalid,
                            });
                        }
                        K::Params => e.params = m.next_value::<ParamsDe<'de>>()?.0,
                        // A response has one of them, never both.
                        K::Result | K::Error if e.has_result_or_error => {
                            return Err(de::Error::custom("both result and error"));
                        }
                        K::Result => {
                            m.next_value::<Skip>()?;
                            e.has_result_or_error = true;
                        }
                        K::Error => {
                            m.next_value::<ErrorShape>()?;
                            e.has_result_or_error = true;
                        }
                        K::Other => {
                            m.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(EnvelopeDe(e))
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON-RPC error object: an integer `code` and a string `message` (`data` and anything else
/// skipped). Anything else in a response's `error` is refused here rather than by the server,
/// which answers it with a bare 415.
#[derive(Deserialize)]
struct ErrorShape {
    #[serde(rename = "code")]
    _code: i64,
    #[serde(rename = "message")]
    _message: String,
}

/// A request's or notification's `params`: an object (MCP's schema has no positional params;
/// an array is refused here rather than by the server, which answers it with a bare 415), or
/// `null`, read as none.
struct ParamsDe<'a>(Option<Params<'a>>);

impl<'de> Deserialize<'de> for ParamsDe<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ParamsDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("params")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(ParamsDe(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                #[derive(Clone, Copy, Deserialize)]
                #[serde(field_identifier)]
                enum K {
                    #[serde(rename = "name")]
                    Name,
                    #[serde(rename = "uri")]
                    Uri,
                    #[serde(rename = "taskId")]
                    TaskId,
                    #[serde(rename = "protocolVersion")]
                    ProtocolVersion,
                    #[serde(rename = "requestId")]
                    RequestId,
                    #[serde(rename = "arguments")]
                    Arguments,
                    #[serde(rename = "notifications")]
                    Notifications,
                    #[serde(rename = "capabilities")]
                    Capabilities,
                    #[serde(rename = "clientInfo")]
                    ClientInfo,
                    #[serde(rename = "_meta")]
                    Meta,
                    #[serde(other)]
                    Other,
                }
                let mut p = Params::default();
                let mut seen = 0u32;
                while let Some(k) = m.next_key::<K>()? {
                    if !matches!(k, K::Other) {
                        once(&mut seen, k as u8)?;
                    }
                    match k {
                        K::Name => p.name = m.next_value::<MaybeStr<'de>>()?.0,
                        K::Uri => p.uri = m.next_value::<MaybeStr<'de>>()?.0,
                        K::TaskId => p.task_id = m.next_value::<MaybeStr<'de>>()?.0,
                        K::ProtocolVersion => {
                            p.protocol_version = m.next_value::<MaybeStr<'de>>()?.0
                        }
                        K::RequestId => p.request_id = m.next_value::<MaybeId>()?.0,
                        K::Arguments => p.arguments = m.next_value::<Shape>()?,
                        K::Notifications => {
                            let filter = m.next_value::<ListenFilterDe>()?;
                            p.notifications = filter.shape;
                            p.notifications_well_typed = filter.well_typed;
                        }
                        K::Capabilities => p.capabilities = m.next_value::<Shape>()?,
                        K::ClientInfo => p.client_info = m.next_value::<ImplementationDe>()?.0,
                        K::Meta => p.meta = m.next_value::<MetaDe>()?.0,
                        K::Other => {
                            m.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(ParamsDe(Some(p)))
            }
        }
        d.deserialize_any(V)
    }
}

struct MetaDe(Meta);

impl MetaDe {
    fn malformed() -> Self {
        MetaDe(Meta {
            malformed: true,
            ..Meta::default()
        })
    }
}

impl<'de> Deserialize<'de> for MetaDe {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("_meta object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MetaDe(Meta::default()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                #[derive(Deserialize)]
                #[serde(field_identifier)]
                enum K {
                    #[serde(rename = "traceparent")]
                    TraceParent,
                    #[serde(rename = "tracestate")]
                    TraceState,
                    #[serde(rename = "baggage")]
                    Baggage,
                    #[serde(rename = "tower-armor/requestId")]
                    RequestId,
                    #[serde(rename = "progressToken")]
                    ProgressToken,
                    #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
                    ProtocolVersion,
                    #[serde(rename = "io.modelcontextprotocol/clientCapabilities")]
                    ClientCapabilities,
                    #[serde(other)]
                    Other,
                }
                let _ = (
                    META_PROTOCOL_VERSION,
                    META_CLIENT_CAPABILITIES,
                    crate::request::META_REQUEST_ID,
                );
                let mut meta = Meta::default();
                let boxed = |s: Option<Cow<'de, str>>| s.map(|s| Box::<str>::from(&*s));
                while let Some(k) = m.next_key::<K>()? {
                    match k {
                        K::TraceParent => {
                            meta.trace.traceparent = boxed(m.next_value::<MaybeStr<'de>>()?.0)
                        }
                        K::TraceState => {
                            meta.trace.tracestate = boxed(m.next_value::<MaybeStr<'de>>()?.0)
                        }
                        K::Baggage => {
                            meta.trace.baggage = boxed(m.next_value::<MaybeStr<'de>>()?.0)
                        }
                        K::RequestId => {
                            meta.trace.request_id = boxed(m.next_value::<MaybeStr<'de>>()?.0)
                        }
                        K::ProgressToken => {
                            m.next_value::<Skip>()?;
                            meta.progress_token = true;
                        }
                        K::ProtocolVersion => {
                            meta.protocol_version = boxed(m.next_value::<MaybeStr<'de>>()?.0)
                        }
                        K::ClientCapabilities => {
                            meta.client_capabilities = m.next_value::<Shape>()? == Shape::Object
                        }
                        K::Other => {
                            m.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(MetaDe(meta))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<Skip>()?.is_some() {}
                Ok(MetaDe::malformed())
            }
            scalars_as!(MetaDe::malformed());
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(MetaDe::malformed())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_part_of_an_event_id() {
        assert_eq!(event_stream(b"3/0"), Some("0"));
        assert_eq!(event_stream(b"12/7"), Some("7"));
        assert_eq!(event_stream(b"a/b/c"), Some("c"));
        assert_eq!(
            event_stream(b"3"),
            None,
            "the listen stream's ids have no stream part"
        );
        assert_eq!(event_stream(b"3/"), None);
        assert_eq!(event_stream(b"3/\xff"), None);
    }

    const L: Limits = Limits {
        max_id_len: 256,
        reject_unknown_versions: true,
    };

    fn hdrs(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn post(h: &[(&str, &str)], body: &str) -> Result<McpRequest, Rejection> {
        from_post(&hdrs(h), body.as_bytes(), L)
    }

    /// A number no type holds makes the message invalid, but its id is still told when it is
    /// not that number (wherever the number is, before or after the id).
    #[test]
    fn a_number_no_type_holds_keeps_a_readable_id() {
        for (body, id) in [
            (
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"x":1e999999}}}"#,
                Some(RequestId::Number(7)),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"x":-1e400}},"id":"a"}"#,
                Some(RequestId::from("a")),
            ),
            (r#"{"jsonrpc":"2.0","id":1e999999,"method":"ping"}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping","x":1e400}"#,
                None,
            ),
        ] {
            let e = post(&[], body).unwrap_err();
            assert_eq!((e.code, e.id), (-32600, id), "{body}");
        }
    }

    /// The `_meta` members every 2026-07-28 request carries.
    const META_2026: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    /// An MCP header sent twice is refused, whatever the copies say: layers and the server
    /// could each read a different one.
    #[test]
    fn a_repeated_mcp_header_is_refused() {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"add",{META_2026}}}}}"#
        );
        let v2 = ("mcp-protocol-version", "2026-07-28");
        let (m, n) = (("mcp-method", "tools/call"), ("mcp-name", "add"));
        assert!(post(&[v2, m, n], &call).is_ok());
        for (h, code) in [
            (vec![v2, v2, m, n], -32020),
            (
                vec![v2, ("mcp-protocol-version", "1999-01-01"), m, n],
                -32020,
            ),
            (vec![v2, m, m, n], -32020),
            (vec![v2, m, n, ("mcp-name", "slow")], -32020),
        ] {
            let e = post(&h, &call).unwrap_err();
            assert_eq!(
                (e.code, e.id.clone()),
                (code, Some(RequestId::Number(5))),
                "{h:?}"
            );
        }
        // Every method whose target the header mirrors (rmcp's list): a `uri` or a `taskId`.
        for (method, params, name) in [
            ("resources/subscribe", r#""uri":"file:///a""#, "file:///a"),
            ("resources/unsubscribe", r#""uri":"file:///a""#, "file:///a"),
            ("tasks/get", r#""taskId":"t-1""#, "t-1"),
            ("tasks/cancel", r#""taskId":"t-1""#, "t-1"),
        ] {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":6,"method":"{method}","params":{{{params},{META_2026}}}}}"#
            );
            let m = ("mcp-method", method);
            assert!(
                post(&[v2, m, ("mcp-name", name)], &body).is_ok(),
                "{method}"
            );
            for h in [vec![v2, m], vec![v2, m, ("mcp-name", "other")]] {
                let e = post(&h, &body).unwrap_err();
                assert_eq!(
                    (e.code, e.id),
                    (-32020, Some(RequestId::Number(6))),
                    "{h:?}"
                );
            }
        }
        let s = [("mcp-session-id", "a"), ("mcp-session-id", "b")];
        let ping = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
        assert_eq!(post(&s, ping).unwrap_err().code, -32600);
        let get = from_headers(&http::Method::GET, &hdrs(&s), L).unwrap_err();
        assert_eq!(get.code, -32600);
    }

    /// `initialize` offering 2026-07-28 (which has no `initialize`) is an offer for the server
    /// to answer with a version it speaks, not a stateless request that must mirror headers.
    #[test]
    fn initialize_offering_the_stateless_revision_needs_no_mirrored_headers() {
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let r = post(&[], init).unwrap();
        assert_eq!(r.method(), Some(&Method::Initialize));
        // Under the 2026-07-28 header the mirrored headers are still required.
        let e = post(&[("mcp-protocol-version", "2026-07-28")], init).unwrap_err();
        assert_eq!(e.code, -32020);
    }

    /// JSON that is valid but whose id cannot be told is an invalid request answered with a null
    /// id: a number no integer type holds, or two `id` members (which one would be a guess).
    /// Nesting past the limit stays malformed, in the id too.
    #[test]
    fn an_id_that_cannot_be_told_is_answered_null() {
        let huge = "9".repeat(400);
        for bad in [
            format!(r#"{{"jsonrpc":"2.0","id":{huge},"method":"ping"}}"#),
            r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.to_owned(),
            r#"{"jsonrpc":"2.0","id":1,"id":12,"method":"ping"}"#.to_owned(),
            r#"{"jsonrpc":"2.0","id":"a","method":"ping","id":"b"}"#.to_owned(),
        ] {
            let e = post(&[], &bad).unwrap_err();
            assert_eq!(
                (e.status, e.code, &e.id),
                (StatusCode::BAD_REQUEST, -32600, &None),
                "{bad}"
            );
        }
        let e = post(&[], &format!(r#"{{"jsonrpc":"2.0","id":{huge},"#)).unwrap_err();
        assert_eq!(e.code, -32700);
        // The object is one level: an id nested 126 deep is 127 in all (the deepest serde_json
        // reads), 127 deep is one too many.
        for (depth, code) in [(126, -32600), (127, -32700), (200, -32700)] {
            let deep = format!(
                r#"{{"jsonrpc":"2.0","id":{}1{},"method":"ping"}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            assert_eq!(post(&[], &deep).unwrap_err().code, code, "{depth}");
        }
    }

    /// A member the inspector reads, twice in one object (however spelt), is refused: this
    /// parser would keep the last, rmcp refuses the message, and the layers must not read one
    /// message one way while the server reads it another.
    #[test]
    fn a_member_read_twice_is_refused() {
        for bad in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","\u006dethod":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","n\u0061me":"echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{},"arguments":{}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{},"params":{"name":"add"}}"#,
        ] {
            let e = post(&[], bad).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, -32600),
                "{bad}"
            );
        }
        // Members it does not read, and `_meta`'s (a map to the server too), may repeat.
        for ok in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1,"x":2}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","_meta":{"progressToken":1,"progressToken":2}}}"#,
        ] {
            assert!(post(&[], ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn params_members_of_a_fixed_type() {
        let call = |params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{params}}}"#)
        };
        for ok in [
            r#"{"name":"add","arguments":{"a":1}}"#,
            r#"{"name":"add","arguments":null,"_meta":null}"#,
            r#"{"name":"add","_meta":{"progressToken":1}}"#,
        ] {
            assert!(post(&[], &call(ok)).is_ok(), "{ok}");
        }
        for (bad, why) in [
            (r#"{"name":"add","arguments":"x"}"#, "arguments"),
            (r#"{"name":"add","arguments":[1]}"#, "arguments"),
            (r#"{"name":"add","arguments":0}"#, "arguments"),
            (r#"{"name":"add","_meta":"x"}"#, "_meta"),
            (r#"{"name":"add","_meta":[]}"#, "_meta"),
        ] {
            let e = post(&[], &call(bad)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.id.clone()),
                (StatusCode::BAD_REQUEST, -32602, Some(RequestId::from("c"))),
                "{bad}"
            );
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
        // A listen's filter is required, and an object.
        let listen = |params: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":"l","method":"subscriptions/listen","params":{params}}}"#
            )
        };
        assert!(post(&[], &listen(r#"{"notifications":{}}"#)).is_ok());
        // Its known members have their schema's types (`null` is as good as absent; unknown
        // members are someone else's business).
        assert!(
            post(
                &[],
                &listen(
                    r#"{"notifications":{"toolsListChanged":true,"promptsListChanged":null,"resourceSubscriptions":["file:///a"],"x":5}}"#
                )
            )
            .is_ok()
        );
        for bad in [
            "{}",
            r#"{"notifications":5}"#,
            r#"{"notifications":null}"#,
            "null",
            r#"{"notifications":{"toolsListChanged":"yes"}}"#,
            r#"{"notifications":{"resourcesListChanged":1}}"#,
            r#"{"notifications":{"promptsListChanged":{}}}"#,
            r#"{"notifications":{"resourceSubscriptions":"file:///a"}}"#,
            r#"{"notifications":{"resourceSubscriptions":["file:///a",5]}}"#,
        ] {
            let e = post(&[], &listen(bad)).unwrap_err();
            assert_eq!(
                (e.code, e.id),
                (-32602, Some(RequestId::from("l"))),
                "{bad}"
            );
        }
        // Another method's `arguments` is its own business.
        let prompt = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":"x"}}"#;
        assert!(post(&[], prompt).is_ok());
        // A request names its target with a string, and `initialize` has its required members
        // (rmcp answers these with `-32601`, or for `initialize` a bare-text 400).
        let req = |method: &str, params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{params}}}"#)
        };
        let client = r#""clientInfo":{"name":"c","version":"1"}"#;
        let init = |members: &str| req("initialize", &format!("{{{members}}}"));
        let good_init = init(&format!(
            r#""protocolVersion":"2025-11-25","capabilities":{{}},{client}"#
        ));
        assert!(post(&[], &good_init).is_ok());
        for (method, bad) in [
            ("tools/call", "{}".to_owned()),
            ("tools/call", r#"{"name":5}"#.to_owned()),
            ("tools/call", "null".to_owned()),
            ("prompts/get", r#"{"name":["p"]}"#.to_owned()),
            ("resources/read", r#"{"uri":null}"#.to_owned()),
            ("resources/read", r#"{"name":"file:///x"}"#.to_owned()),
            ("resources/subscribe", "{}".to_owned()),
            ("resources/unsubscribe", r#"{"uri":1}"#.to_owned()),
            ("tasks/get", "{}".to_owned()),
            ("tasks/cancel", r#"{"taskId":["t"]}"#.to_owned()),
        ] {
            let e = post(&[], &req(method, &bad)).unwrap_err();
            assert_eq!(
                (e.code, e.id),
                (-32602, Some(RequestId::Number(7))),
                "{method} {bad}"
            );
        }
        for bad in [
            init(&format!(r#""capabilities":{{}},{client}"#)),
            init(&format!(
                r#""protocolVersion":5,"capabilities":{{}},{client}"#
            )),
            init(&format!(r#""protocolVersion":"2025-11-25",{client}"#)),
            init(&format!(
                r#""protocolVersion":"2025-11-25","capabilities":"x",{client}"#
            )),
            init(r#""protocolVersion":"2025-11-25","capabilities":{}"#),
            init(&format!(
                r#""protocolVersion":"x\n2026-01-01T00:00:00Z ERROR forged","capabilities":{{}},{client}"#
            )),
            init(&format!(
                r#""protocolVersion":"x\u2028y","capabilities":{{}},{client}"#
            )),
            init(r#""protocolVersion":"2025-11-25","capabilities":{},"clientInfo":"c""#),
            init(r#""protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c"}"#),
            init(
                r#""protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":1,"version":"1"}"#,
            ),
            r#"{"jsonrpc":"2.0","id":7,"method":"initialize"}"#.to_owned(),
        ] {
            let e = post(&[], &bad).unwrap_err();
            assert_eq!(
                (e.code, e.id),
                (-32602, Some(RequestId::Number(7))),
                "{bad}"
            );
        }
        // A member read twice, as anywhere else: parsers would disagree on which counts.
        let twice = init(
            r#""protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":5,"name":"a","version":"1"}"#,
        );
        let e = post(&[], &twice).unwrap_err();
        assert_eq!((e.code, e.id), (-32600, Some(RequestId::Number(7))));
        // A notification of such a method is not a request: nothing to name.
        assert!(post(&[], r#"{"jsonrpc":"2.0","method":"tools/call"}"#).is_ok());
        // A notification's `_meta` too (it has no id to answer with).
        let note = |meta: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":1,"_meta":{meta}}}}}"#
            )
        };
        assert!(post(&[], &note("{}")).is_ok());
        assert!(post(&[], &note("null")).is_ok());
        for bad in ["\"x\"", "1", "[]"] {
            let e = post(&[], &note(bad)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.id),
                (StatusCode::BAD_REQUEST, -32602, None),
                "{bad}"
            );
        }
    }

    /// 2026-07-28 has no server requests for a client to answer: a response POSTed under it is
    /// refused with its id (rmcp's own refusal names none). A 2025-11-25 session's passes.
    #[test]
    fn a_stateless_response_is_refused_with_its_id() {
        let h26 = [("mcp-protocol-version", "2026-07-28")];
        for body in [
            r#"{"jsonrpc":"2.0","id":42,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":42,"error":{"code":-1,"message":"no"}}"#,
        ] {
            let e = post(&h26, body).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.id),
                (StatusCode::BAD_REQUEST, -32600, Some(RequestId::Number(42))),
                "{body}"
            );
            let h25 = [
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-session-id", "s-1"),
            ];
            assert_eq!(post(&h25, body).unwrap().kind(), MessageKind::Response);
        }
    }

    /// A request whose `_meta` carries both per-request keys under a revision with sessions is
    /// refused: rmcp would serve it statelessly, outside the session its header names.
    #[test]
    fn per_request_keys_under_a_revision_with_sessions_are_refused() {
        let h25 = [
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-session-id", "s-1"),
        ];
        let body = |method: &str, id: &str, meta: &str| {
            format!(
                r#"{{"jsonrpc":"2.0",{id}"method":"{method}","params":{{"_meta":{{{meta}}}}}}}"#
            )
        };
        let both = r#""io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}"#;
        let version = r#""io.modelcontextprotocol/protocolVersion":"2025-11-25""#;
        let e = post(&h25, &body("tools/list", r#""id":1,"#, both)).unwrap_err();
        assert_eq!((e.code, e.id), (-32602, Some(RequestId::Number(1))));
        // One key alone, or a notification: rmcp keeps the session, and so do the facts.
        let r = post(&h25, &body("tools/list", r#""id":1,"#, version)).unwrap();
        assert_eq!(r.session_id().unwrap(), "s-1");
        let r = post(&h25, &body("notifications/initialized", "", both)).unwrap();
        assert_eq!(r.session_id().unwrap(), "s-1");
    }

    #[test]
    fn stateless_requests_carry_the_required_meta() {
        let h26 = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ];
        let version = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#;
        let caps = r#""io.modelcontextprotocol/clientCapabilities":{"sampling":{}}"#;
        let list = |meta: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{{"_meta":{{{meta}}}}}}}"#
            )
        };
        assert!(post(&h26, &list(&format!("{version},{caps}"))).is_ok());
        for (meta, missing) in [
            (
                String::new(),
                "protocolVersion, io.modelcontextprotocol/clientCapabilities",
            ),
            (version.to_owned(), "clientCapabilities"),
            (caps.to_owned(), "protocolVersion"),
            // Malformed counts as missing.
            (
                format!(r#"{version},"io.modelcontextprotocol/clientCapabilities":[1]"#),
                "clientCapabilities",
            ),
        ] {
            let e = post(&h26, &list(&meta)).unwrap_err();
            assert_eq!(
                (e.status, e.code, e.id.clone()),
                (StatusCode::BAD_REQUEST, -32602, Some(RequestId::Number(3))),
                "{meta}"
            );
            assert!(e.message.ends_with(missing), "{meta}: {}", e.message);
        }
        // No `params` at all, under the header.
        let bare = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
        assert_eq!(post(&h26, bare).unwrap_err().code, -32602);
        // `server/discover` needs them whatever the header.
        let discover = r#"{"jsonrpc":"2.0","id":4,"method":"server/discover"}"#;
        assert_eq!(post(&[], discover).unwrap_err().code, -32602);
        // Exempt: notifications, `initialize`, and requests of the older revisions.
        let h_note = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "notifications/cancelled"),
        ];
        let note =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
        assert!(post(&h_note, note).is_ok());
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        assert!(post(&[("mcp-method", "initialize")], init).is_ok());
        let old = [
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/list"),
        ];
        assert!(post(&old, bare).is_ok());
    }

    #[test]
    fn tool_call_2025() {
        let r = post(
            &[("mcp-session-id", "s1"), ("mcp-protocol-version", "2025-11-25")],
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":1},"_meta":{"progressToken":"p","traceparent":"00-x"}}}"#,
        )
        .unwrap();
        assert_eq!(r.kind(), MessageKind::Request);
        assert_eq!(r.method(), Some(&Method::ToolsCall));
        assert_eq!(r.id(), Some(&RequestId::Number(3)));
        assert_eq!(r.tool(), Some("add"));
        assert_eq!(r.session_id().unwrap(), "s1");
        assert_eq!(r.revision(), Some(ProtocolRevision::V2025_11_25));
        assert!(r.wants_progress());
        assert_eq!(r.meta_trace().traceparent.as_deref(), Some("00-x"));
        assert!(r.is_call());
        // The client's case id (`with_correlation_meta`), kept verbatim.
        let r = post(
            &[("mcp-session-id", "s1"), ("mcp-protocol-version", "2025-11-25")],
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"add","_meta":{"tower-armor/requestId":"case-7"}}}"#,
        )
        .unwrap();
        assert_eq!(r.meta_trace().request_id.as_deref(), Some("case-7"));
    }

    #[test]
    fn a_stateless_request_has_no_session() {
        let body = &format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META_2026}}}}}"#
        );
        let stale = ("mcp-session-id", "stale");
        let r = post(
            &[
                stale,
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
            ],
            body,
        )
        .unwrap();
        assert_eq!(r.session_id(), None);
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let r = post(&[stale, ("mcp-protocol-version", "2025-11-25")], body).unwrap();
        assert_eq!(r.session_id().unwrap(), "stale");
        let r = post(&[stale], body).unwrap();
        assert_eq!(r.session_id().unwrap(), "stale", "no revision said: kept");
        // Only the header makes a request stateless, as for rmcp.
        let meta = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        let r = post(&[stale, ("mcp-method", "notifications/cancelled")], meta).unwrap();
        assert_eq!(r.revision(), Some(ProtocolRevision::V2026_07_28));
        assert_eq!(r.session_id().unwrap(), "stale");
        // rmcp serves `initialize` within the session it names, whatever the header says.
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2026-07-28","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let r = post(
            &[
                stale,
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "initialize"),
            ],
            init,
        )
        .unwrap();
        assert_eq!(r.session_id().unwrap(), "stale");
        let get = |v: &'static str| {
            from_headers(
                &http::Method::GET,
                &hdrs(&[stale, ("mcp-protocol-version", v)]),
                L,
            )
            .unwrap()
        };
        assert_eq!(get("2026-07-28").session_id(), None);
        assert_eq!(get("2025-11-25").session_id().unwrap(), "stale");
    }

    #[test]
    fn a_cancellation_names_the_request_it_cancels() {
        let s = [
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-11-25"),
        ];
        let cancel = |params: &str| {
            post(
                &s,
                &format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{params}}}"#
                ),
            )
            .unwrap()
        };
        let r = cancel(r#"{"requestId":7,"reason":"user"}"#);
        assert_eq!(r.kind(), MessageKind::Notification);
        assert_eq!(r.cancelled_request(), Some(&RequestId::Number(7)));
        assert!(!r.is_call());
        let r = cancel(r#"{"reason":"x","requestId":"a\u0062"}"#);
        assert_eq!(r.cancelled_request(), Some(&RequestId::String("ab".into())));
        // An integer in float form names that integer, as rmcp reads it.
        for (written, id) in [
            ("7.0", 7),
            ("7e0", 7),
            ("70e-1", 7),
            ("-0", 0),
            ("-3.0", -3),
        ] {
            let r = cancel(&format!(r#"{{"requestId":{written}}}"#));
            assert_eq!(
                r.cancelled_request(),
                Some(&RequestId::Number(id)),
                "{written}"
            );
        }
        // Not an id: the notification still passes, naming nothing.
        for bad in [
            r#"{"requestId":1.5}"#,
            r#"{"requestId":9007199254740992.0}"#,
            r#"{"requestId":null}"#,
            r#"{"requestId":{"a":1}}"#,
            r#"{"requestId":[1]}"#,
            r#"{"requestId":18446744073709551615}"#,
            r#"{}"#,
        ] {
            assert_eq!(cancel(bad).cancelled_request(), None, "{bad}");
        }
        let long = format!(r#"{{"requestId":"{}"}}"#, "x".repeat(257));
        assert_eq!(cancel(&long).cancelled_request(), None);
        // Only a cancellation names one.
        for body in [
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"requestId":7}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"notifications/cancelled","params":{"requestId":7}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","requestId":7}}"#,
        ] {
            assert_eq!(post(&s, body).unwrap().cancelled_request(), None, "{body}");
        }
    }

    #[test]
    fn stateless_requires_matching_mirrors() {
        let body = &format!(
            r#"{{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{{"name":"echo",{META_2026}}}}}"#
        );
        let ok = post(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ],
            body,
        )
        .unwrap();
        assert_eq!(ok.tool(), Some("echo"));
        let b64 = post(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?ZWNobw==?="),
            ],
            body,
        );
        assert!(b64.is_ok());
        for h in [
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "echo"),
            ],
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
            ],
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?!!!?="),
            ],
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
            ],
            vec![("mcp-protocol-version", "2026-07-28"), ("mcp-name", "echo")],
            vec![("mcp-method", "tools/list")],
        ] {
            let e = post(&h, body).unwrap_err();
            assert_eq!(
                (e.status, e.code),
                (StatusCode::BAD_REQUEST, -32020),
                "{h:?}"
            );
            assert_eq!(e.id, Some(RequestId::from("a")));
        }
    }

    #[test]
    fn non_ascii_names_in_base64() {
        let body = &format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"h\u00e9llo",{META_2026}}}}}"#
        );
        // "héllo" in base64
        let r = post(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?aMOpbGxv?="),
            ],
            body,
        )
        .unwrap();
        assert_eq!(r.tool(), Some("héllo"));
    }

    #[test]
    fn integers_in_float_form_are_ids_as_rmcp_reads_them() {
        for (written, id) in [("2.0", 2), ("1e2", 100), ("-0", 0)] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{written},"method":"ping"}}"#);
            let r = post(&[], &body).unwrap();
            assert_eq!(r.id(), Some(&RequestId::Number(id)), "{written}");
        }
        let e = post(
            &[],
            r#"{"jsonrpc":"2.0","id":9007199254740993.0,"method":"ping"}"#,
        );
        assert!(e.is_err(), "beyond 2^53 a float names no one integer");
        let id: RequestId = serde_json::from_str("7.0").unwrap();
        assert_eq!(id, RequestId::Number(7));
        assert!(serde_json::from_str::<RequestId>("7.5").is_err());
    }

    #[test]
    fn bad_bodies() {
        let cases: &[(&str, i64)] = &[
            ("", -32700),
            ("{", -32700),
            ("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"", -32700),
            ("[1,2]", -32600),
            ("[1,", -32700),
            ("42", -32600),
            ("nul", -32700),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, -32600),
            (r#"{"id":1,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, -32600),
            // Valid JSON with members of the wrong type: an invalid request, not a parse error.
            (r#"{"jsonrpc":"2.0","method":7}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1,"method":null}"#, -32600),
            (r#"{"jsonrpc":"2.0","id":1,"method":["ping"]}"#, -32600),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":5}"#,
                -32600,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":5,"#, -32700),
            // Valid JSON with numbers no type holds: invalid, not malformed.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1e999999}}}"#,
                -32600,
            ),
            (r#"{"jsonrpc":"2.0","id":1e999999,"method":"ping"}"#, -32600),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1e999999,"#,
                -32700,
            ),
            (r#"{"jsonrpc":"2.0"}"#, -32600),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
                -32600,
            ),
            // Positional params (MCP's schema has none; rmcp answers them with a bare 415).
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#,
                -32600,
            ),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":[]}"#,
                -32600,
            ),
            // A response with both members, or an error that is not an error object.
            (
                r#"{"jsonrpc":"2.0","id":17,"result":{},"error":{"code":1,"message":"m"}}"#,
                -32600,
            ),
            (
                r#"{"jsonrpc":"2.0","id":17,"error":{"code":1,"message":"m"},"result":{}}"#,
                -32600,
            ),
            (r#"{"jsonrpc":"2.0","id":16,"error":"x"}"#, -32600),
            (
                r#"{"jsonrpc":"2.0","id":16,"error":{"code":1.5,"message":"m"}}"#,
                -32600,
            ),
            (
                r#"{"jsonrpc":"2.0","id":16,"error":{"message":"m"}}"#,
                -32600,
            ),
            (
                r#"{"jsonrpc":"2.0","id":16,"error":{"code":1,"message":"m","code":2}}"#,
                -32600,
            ),
        ];
        for (b, code) in cases {
            let e = post(&[], b).unwrap_err();
            assert_eq!(e.code, *code, "{b}");
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
        }
        let e = post(&[], r#"{"jsonrpc":"2.0","id":16,"error":"x"}"#).unwrap_err();
        assert_eq!(e.id, Some(RequestId::Number(16)), "answered with its id");
        // A well-formed error response, with data of any shape, passes.
        let ok = post(
            &[],
            r#"{"jsonrpc":"2.0","id":16,"error":{"code":-32601,"message":"m","data":[1,{"a":null}]}}"#,
        )
        .unwrap();
        assert_eq!(ok.kind(), MessageKind::Response);
        let long_id = format!(
            r#"{{"jsonrpc":"2.0","id":"{}","method":"ping"}}"#,
            "x".repeat(300)
        );
        assert_eq!(post(&[], &long_id).unwrap_err().code, -32600);
        // The id of such a request is read for the answer, within the id limit.
        let e = post(&[], r#"{"jsonrpc":"2.0","method":null,"id":7}"#).unwrap_err();
        assert_eq!((e.code, e.id), (-32600, Some(RequestId::Number(7))));
        // Two ids: none can be told.
        let e = post(&[], r#"{"id":"a","jsonrpc":"2.0","method":null,"id":7}"#).unwrap_err();
        assert_eq!((e.code, e.id), (-32600, None));
        let e = post(&[], r#"{"jsonrpc":"2.0","id":1.5,"params":5}"#).unwrap_err();
        assert_eq!((e.code, e.id), (-32600, None));
        let long_bad = format!(r#"{{"id":"{}","method":1}}"#, "x".repeat(300));
        assert_eq!(post(&[], &long_bad).unwrap_err().id, None);
        // A method no server has, that logs and error messages would carry whole: refused, with
        // the request's id (a notification's too).
        let long_method = format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"{}"}}"#,
            "m".repeat(257)
        );
        let e = post(&[], &long_method).unwrap_err();
        assert_eq!((e.code, e.id), (-32600, Some(RequestId::Number(3))));
        let just_fits = format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"{}"}}"#,
            "m".repeat(256)
        );
        assert!(post(&[], &just_fits).is_ok());
        let hostile = r#"{"jsonrpc":"2.0","method":"notifications/x\nERROR forged"}"#;
        assert_eq!(post(&[], hostile).unwrap_err().code, -32600);
        // An id with a control character (escaped in JSON, raw once decoded) would forge log
        // lines wherever it is logged: refused, and not echoed.
        for hostile in [
            r#""a\nERROR forged""#,
            r#""\u0000""#,
            r#""tab\t""#,
            r#""\u0085""#,
            r#""x\u2028ERROR forged""#,
            r#""\u2029""#,
        ] {
            let req = format!(r#"{{"jsonrpc":"2.0","id":{hostile},"method":"ping"}}"#);
            let e = post(&[], &req).unwrap_err();
            assert_eq!((e.code, e.id), (-32600, None), "{hostile}");
            let bad = format!(r#"{{"id":{hostile},"method":1}}"#);
            assert_eq!(post(&[], &bad).unwrap_err().id, None, "{hostile}");
        }
        assert!(post(&[], r#"{"jsonrpc":"2.0","id":"ü-é 漢","method":"ping"}"#).is_ok());
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(post(&[], &deep).unwrap_err().code, -32700);
        let deep_obj = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{}1{}}}"#,
            "{\"a\":".repeat(5_000),
            "}".repeat(5_000)
        );
        assert_eq!(post(&[], &deep_obj).unwrap_err().code, -32700);
        let e = from_post(
            &HeaderMap::new(),
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"ping\"}",
            L,
        )
        .unwrap_err();
        assert_eq!(e.code, -32700);
    }

    #[test]
    fn versions() {
        let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let e = post(&[("mcp-protocol-version", "1999-01-01")], ping).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, -32022));
        // Answered first even when the body has a problem of its own, with the id it gives.
        for body in [
            r#"{"jsonrpc":"2.0","id":42,"method":"tools/list","params":[1]}"#,
            r#"{"jsonrpc":"2.0","id":42,"result":{},"error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":42,"method":null}"#,
        ] {
            let e = post(&[("mcp-protocol-version", "2099-01-01")], body).unwrap_err();
            assert_eq!(
                (e.code, e.id),
                (-32022, Some(RequestId::Number(42))),
                "{body}"
            );
        }
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        assert_eq!(
            post(&[], init).unwrap().revision(),
            Some(ProtocolRevision::V2025_11_25)
        );
        let meta = &format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META_2026}}}}}"#
        );
        assert_eq!(
            post(
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/list")
                ],
                meta
            )
            .unwrap()
            .revision(),
            Some(ProtocolRevision::V2026_07_28)
        );
        // A version in `_meta` needs the header (every 2026-07-28 POST carries it).
        let e = post(&[("mcp-method", "tools/list")], meta).unwrap_err();
        assert_eq!((e.code, e.id), (-32020, Some(RequestId::Number(1))));
        let e = post(
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/list"),
            ],
            meta,
        )
        .unwrap_err();
        assert_eq!(e.code, -32020);
    }

    #[test]
    fn kinds_and_streams() {
        let n = post(
            &[],
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .unwrap();
        assert_eq!(n.kind(), MessageKind::Notification);
        assert!(!n.is_call());
        let r = post(
            &[],
            r#"{"jsonrpc":"2.0","id":9,"result":{"action":"accept"}}"#,
        )
        .unwrap();
        assert_eq!(r.kind(), MessageKind::Response);
        let l = post(
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "subscriptions/listen"),
            ],
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{{"notifications":{{}},{META_2026}}}}}"#),
        )
        .unwrap();
        assert!(l.is_long_lived());
        assert!(!l.is_call());
        let g = from_headers(&http::Method::GET, &hdrs(&[("mcp-session-id", "s")]), L).unwrap();
        assert!(g.is_long_lived());
        let g = from_headers(
            &http::Method::GET,
            &hdrs(&[("mcp-session-id", "s"), ("last-event-id", "5/2")]),
            L,
        )
        .unwrap();
        assert!(matches!(g.stream_role(), StreamRole::Resume { .. }));
        assert!(g.is_call());
        // The listen stream reconnecting (rmcp's bare `<index>`), or an id of another form: the
        // same long-lived stream, never a call.
        // As rmcp reads it: `+` signs and leading zeros are the same call (handed on in the
        // usual spelling), a value out of range or a third part is not a call's id.
        for (id, canonical) in [
            ("+0/+2", "0/2"),
            ("007/02", "7/2"),
            ("0/0", "0/0"),
            ("10/3", "10/3"),
        ] {
            let g = from_headers(
                &http::Method::GET,
                &hdrs(&[("mcp-session-id", "s"), ("last-event-id", id)]),
                L,
            )
            .unwrap();
            assert_eq!(
                g.stream_role(),
                &StreamRole::Resume {
                    last_event_id: HeaderValue::from_static(canonical)
                },
                "{id:?}"
            );
        }
        for id in [
            "5",
            "+5",
            "",
            "a/1",
            "1/",
            "/1",
            "1/2/3",
            "1/x",
            "-0/1",
            "0/-1",
            " 0/1",
            "0/1 ",
            "++0/1",
            "0/18446744073709551616",
        ] {
            let g = from_headers(
                &http::Method::GET,
                &hdrs(&[("mcp-session-id", "s"), ("last-event-id", id)]),
                L,
            )
            .unwrap();
            assert!(g.is_long_lived(), "{id:?}");
            assert!(!g.is_call(), "{id:?}");
        }
        let d = from_headers(&http::Method::DELETE, &HeaderMap::new(), L).unwrap();
        assert_eq!(d.stream_role(), &StreamRole::None);
        // A GET under 2026-07-28, which has no GET, is no stream (the server refuses it at
        // once); without a session it may be one (a 2025-11-25 server without sessions).
        let g = from_headers(&http::Method::GET, &hdrs(&[]), L).unwrap();
        assert!(g.is_long_lived());
        for headers in [
            hdrs(&[("mcp-protocol-version", "2026-07-28")]),
            hdrs(&[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-session-id", "s"),
            ]),
        ] {
            let g = from_headers(&http::Method::GET, &headers, L).unwrap();
            assert_eq!(g.stream_role(), &StreamRole::None, "{headers:?}");
        }
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode(b"aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode(b"aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode(b"YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode(b"").unwrap(), b"");
        assert!(base64_decode(b"aGk").is_none());
        assert!(base64_decode(b"a===").is_none());
        assert!(
            base64_decode(b"aGl=").is_none(),
            "non-canonical trailing bits"
        );
        assert!(base64_decode(b"a=Gk").is_none());
    }
}
