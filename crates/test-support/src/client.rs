//! A raw JSON-RPC-over-HTTP MCP client that shows tests the wire: status codes, headers
//! and SSE frames, under either protocol revision.
//!
//! What each revision puts on a POST (as rmcp 3.11 checks it):
//! - **2025-11-25**: `initialize` + `notifications/initialized` first; then every request
//!   carries `Mcp-Session-Id` and `MCP-Protocol-Version: 2025-11-25`.
//! - **2026-07-28**: no handshake, no session. Every POST carries
//!   `MCP-Protocol-Version: 2026-07-28` and `Mcp-Method`, plus `Mcp-Name` for methods
//!   naming a target (`tools/call`, `prompts/get`: `params.name`; `resources/read`,
//!   `resources/subscribe`, `resources/unsubscribe`: `params.uri`; `tasks/*`:
//!   `params.taskId`). Every request's `params._meta` carries
//!   `io.modelcontextprotocol/protocolVersion` (equal to the header) and
//!   `io.modelcontextprotocol/clientCapabilities`; `clientInfo` is optional.

use std::{
    fmt,
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use crate::sse::{SseEvent, SseStream};

/// `MCP-Protocol-Version` header name.
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// `Mcp-Session-Id` header name (2025-11-25 sessions).
pub const MCP_SESSION_ID: &str = "mcp-session-id";
/// `Mcp-Method` header name (2026-07-28).
pub const MCP_METHOD: &str = "mcp-method";
/// `Mcp-Name` header name (2026-07-28).
pub const MCP_NAME: &str = "mcp-name";
/// `Last-Event-ID` header name (2025-11-25 resumption).
pub const LAST_EVENT_ID: &str = "last-event-id";
/// `_meta` key carrying the protocol version of a 2026-07-28 request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key carrying the client capabilities of a 2026-07-28 request.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key carrying the client identity of a 2026-07-28 request (optional).
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// Default bound on a whole exchange (send + read of the answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`read_reply`] waits for an SSE stream to end after its final message.
const DRAIN_GRACE: Duration = Duration::from_millis(100);

const CLIENT_NAME: &str = "tower-armor-raw-client";

/// An MCP protocol revision the raw client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Revision {
    /// Sessions: `initialize`, `Mcp-Session-Id`, GET listen stream, resumption.
    V2025_11_25,
    /// Stateless: per-request `_meta` and mirrored `Mcp-Method` / `Mcp-Name` headers.
    V2026_07_28,
}

impl Revision {
    /// Both revisions, oldest first; loop over it to run a test under each.
    pub const ALL: [Revision; 2] = [Revision::V2025_11_25, Revision::V2026_07_28];

    /// The version string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    /// True for the stateless revision (2026-07-28).
    pub fn is_stateless(self) -> bool {
        matches!(self, Revision::V2026_07_28)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a raw exchange failed (an HTTP error status is *not* a failure: it is in the
/// [`CallReply`]).
#[derive(Debug)]
pub enum RawError {
    /// The HTTP client failed (connect refused, reset, body error...).
    Http(reqwest::Error),
    /// The exchange did not complete within the client's timeout.
    Timeout(Duration),
    /// The 2025-11-25 handshake got an unexpected answer.
    Handshake {
        /// Status of the failing answer.
        status: StatusCode,
        /// What was wrong, with the answer's body or final message.
        detail: String,
    },
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::Http(error) => write!(f, "http error: {error}"),
            RawError::Timeout(after) => write!(f, "no complete answer within {after:?}"),
            RawError::Handshake { status, detail } => {
                write!(f, "initialize handshake failed with {status}: {detail}")
            }
        }
    }
}

impl std::error::Error for RawError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RawError::Http(error) => Some(error),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for RawError {
    fn from(error: reqwest::Error) -> Self {
        RawError::Http(error)
    }
}

/// A whole answer to one POST, read to its final JSON-RPC message.
#[derive(Debug, Clone)]
pub struct CallReply {
    /// HTTP status.
    pub status: StatusCode,
    /// HTTP headers.
    pub headers: HeaderMap,
    /// For a `text/event-stream` answer: every event and comment read, in order, up to the
    /// final message's event and what followed it before the stream ended (at most 100 ms).
    pub events: Vec<SseEvent>,
    /// For an `application/json` answer: the parsed body.
    pub json: Option<Value>,
    /// For any other answer (or JSON that did not parse): the body as text.
    pub text: Option<String>,
    /// The JSON-RPC response (result or error) to this request, from either form.
    pub final_message: Option<Value>,
}

impl CallReply {
    /// True when the answer was an SSE stream.
    pub fn is_sse(&self) -> bool {
        self.content_type()
            .is_some_and(|value| value.starts_with("text/event-stream"))
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header(header::CONTENT_TYPE.as_str())
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Every JSON-RPC message of the answer, in order (SSE data events or the JSON body).
    pub fn messages(&self) -> Vec<Value> {
        if let Some(json) = &self.json {
            return vec![json.clone()];
        }
        self.events.iter().filter_map(SseEvent::json).collect()
    }

    /// The notifications (messages with a `method` and no `id`) that came before the end.
    pub fn notifications(&self) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|message| message.get("method").is_some() && message.get("id").is_none())
            .collect()
    }

    /// The `notifications/progress` messages, in order.
    pub fn progress(&self) -> Vec<Value> {
        self.notifications()
            .into_iter()
            .filter(|message| message["method"] == "notifications/progress")
            .collect()
    }

    /// `result` of the final message, if it is a success.
    pub fn result(&self) -> Option<&Value> {
        self.final_message.as_ref()?.get("result")
    }

    /// `error` of the final message, if it is a JSON-RPC error.
    pub fn error(&self) -> Option<&Value> {
        self.final_message.as_ref()?.get("error")
    }

    /// `error.code` of the final message, if it is a JSON-RPC error.
    pub fn error_code(&self) -> Option<i64> {
        self.error()?.get("code")?.as_i64()
    }

    /// The text of the first content item of a tool result.
    pub fn tool_text(&self) -> Option<&str> {
        self.result()?.get("content")?.get(0)?.get("text")?.as_str()
    }

    /// True when the final message is a tool result with `isError: true`.
    pub fn is_tool_error(&self) -> bool {
        self.result()
            .and_then(|result| result.get("isError"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Names of the tools in a `tools/list` result.
    pub fn tool_names(&self) -> Vec<String> {
        self.result()
            .and_then(|result| result.get("tools"))
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|tool| tool.get("name")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A raw MCP client over reqwest, speaking one [`Revision`].
#[derive(Debug)]
pub struct RawClient {
    http: reqwest::Client,
    url: String,
    revision: Revision,
    session_id: Option<String>,
    next_id: AtomicI64,
    extra_headers: HeaderMap,
    timeout: Duration,
}

impl RawClient {
    /// A client for `url` without any handshake yet (see [`RawClient::connect`]).
    pub fn new(url: impl Into<String>, revision: Revision) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.into(),
            revision,
            session_id: None,
            next_id: AtomicI64::new(1),
            extra_headers: HeaderMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A ready client: for 2025-11-25 after `initialize` + `notifications/initialized`
    /// (the session id stored), for 2026-07-28 at once (stateless, nothing to do).
    pub async fn connect(url: impl Into<String>, revision: Revision) -> Result<Self, RawError> {
        Self::new(url, revision).connected().await
    }

    /// Runs the handshake of [`RawClient::connect`] on a client configured first (for
    /// example with [`RawClient::with_bearer`]).
    pub async fn connected(mut self) -> Result<Self, RawError> {
        self.initialize().await?;
        Ok(self)
    }

    /// Adds a header sent on every request (replacing one the client would set).
    ///
    /// # Panics
    ///
    /// When `name` or `value` is not a valid header name / value.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        let value = HeaderValue::from_str(value).expect("valid header value");
        self.extra_headers.insert(name, value);
        self
    }

    /// Sends `Authorization: Bearer <token>` on every request.
    pub fn with_bearer(self, token: &str) -> Self {
        self.with_header(header::AUTHORIZATION.as_str(), &format!("Bearer {token}"))
    }

    /// Bounds every whole exchange (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses `http` instead of a default `reqwest::Client`.
    pub fn with_http_client(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The revision this client speaks.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The 2025-11-25 session id, once the handshake got one.
    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Replaces the session id sent on later requests (e.g. to present another session's).
    pub fn set_session_id(&mut self, session_id: Option<String>) {
        self.session_id = session_id;
    }

    /// Allocates a fresh JSON-RPC id (ids are never reused by this client).
    pub fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// For 2025-11-25: sends `initialize` (stores `Mcp-Session-Id` when the server sets
    /// one) and `notifications/initialized`, and returns the `initialize` answer. For
    /// 2026-07-28: does nothing and returns `None`.
    pub async fn initialize(&mut self) -> Result<Option<CallReply>, RawError> {
        if self.revision.is_stateless() {
            return Ok(None);
        }
        self.session_id = None;
        let params = json!({
            "protocolVersion": self.revision.as_str(),
            "capabilities": {},
            "clientInfo": { "name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION") },
        });
        let reply = self.call("initialize", params).await?;
        if reply.status != StatusCode::OK || reply.result().is_none() {
            return Err(RawError::Handshake {
                status: reply.status,
                detail: format!(
                    "initialize answered {:?}",
                    reply
                        .final_message
                        .as_ref()
                        .or(reply.json.as_ref())
                        .map_or_else(|| reply.text.clone().unwrap_or_default(), Value::to_string)
                ),
            });
        }
        self.session_id = reply.header(MCP_SESSION_ID).map(str::to_owned);
        let initialized = self.notify("notifications/initialized", json!({})).await?;
        if !initialized.status.is_success() {
            return Err(RawError::Handshake {
                status: initialized.status,
                detail: format!(
                    "notifications/initialized answered {}",
                    initialized.text.unwrap_or_default()
                ),
            });
        }
        Ok(Some(reply))
    }

    /// The JSON-RPC body for `method` / `params`: a request when `id` is given, a
    /// notification otherwise. Requests under 2026-07-28 (and `server/discover` under
    /// either revision) get the per-request `_meta` merged into `params`.
    pub fn body(&self, id: Option<i64>, method: &str, params: Value) -> Value {
        let mut params = match params {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                // Not an object: send as is (tests of malformed requests).
                let mut body = json!({ "jsonrpc": "2.0", "method": method, "params": other });
                if let Some(id) = id {
                    body["id"] = json!(id);
                }
                return body;
            }
        };
        let needs_meta =
            id.is_some() && (self.revision.is_stateless() || method == "server/discover");
        if needs_meta {
            let meta = params
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.entry(META_PROTOCOL_VERSION)
                    .or_insert_with(|| json!(self.revision.as_str()));
                meta.entry(META_CLIENT_CAPABILITIES)
                    .or_insert_with(|| json!({}));
                meta.entry(META_CLIENT_INFO).or_insert_with(
                    || json!({ "name": CLIENT_NAME, "version": env!("CARGO_PKG_VERSION") }),
                );
            }
        }
        let mut body = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        body
    }

    /// The headers every POST of this client carries: `Accept` (JSON and SSE),
    /// `Content-Type: application/json`, `MCP-Protocol-Version`, the session id (2025-11-25,
    /// once known) and the extra headers. No mirrored `Mcp-Method` / `Mcp-Name`.
    pub fn base_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            MCP_PROTOCOL_VERSION,
            HeaderValue::from_static(self.revision.as_str()),
        );
        if !self.revision.is_stateless()
            && let Some(session) = self
                .session_id
                .as_deref()
                .and_then(|session| HeaderValue::from_str(session).ok())
        {
            headers.insert(MCP_SESSION_ID, session);
        }
        headers
    }

    /// `base_headers()` plus, under 2026-07-28, `Mcp-Method` and `Mcp-Name` mirrored from
    /// `body`, then the extra headers.
    pub fn headers_for(&self, body: &Value) -> HeaderMap {
        let mut headers = self.base_headers();
        if self.revision.is_stateless() {
            headers.extend(mirrored_headers(body));
        }
        self.apply_extra(&mut headers);
        headers
    }

    fn apply_extra(&self, headers: &mut HeaderMap) {
        for name in self.extra_headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &self.extra_headers {
            headers.append(name.clone(), value.clone());
        }
    }

    /// A POST of `body` with the headers of [`RawClient::headers_for`].
    pub fn post_json(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .headers(self.headers_for(body))
            .body(body.to_string())
    }

    /// A correct POST for request `method` with a fresh id.
    pub fn request(&self, method: &str, params: Value) -> reqwest::RequestBuilder {
        self.request_with_id(self.next_id(), method, params)
    }

    /// A correct POST for request `method` with the given id.
    pub fn request_with_id(&self, id: i64, method: &str, params: Value) -> reqwest::RequestBuilder {
        self.post_json(&self.body(Some(id), method, params))
    }

    /// Sends request `method` and reads its whole answer.
    pub async fn call(&self, method: &str, params: Value) -> Result<CallReply, RawError> {
        self.call_with_id(self.next_id(), method, params).await
    }

    /// Sends request `method` with the given id and reads its whole answer.
    pub async fn call_with_id(
        &self,
        id: i64,
        method: &str,
        params: Value,
    ) -> Result<CallReply, RawError> {
        let builder = self.request_with_id(id, method, params);
        self.exchange(builder, Some(json!(id))).await
    }

    /// Sends a prepared request and reads its whole answer, finishing at the JSON-RPC
    /// response whose id is `id` (or the end of the body), within the client's timeout.
    pub async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        id: Option<Value>,
    ) -> Result<CallReply, RawError> {
        let work = async {
            let response = builder.send().await?;
            Ok::<_, RawError>(read_reply(response, id.as_ref()).await)
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| RawError::Timeout(self.timeout))?
    }

    /// `tools/call` of `name` with `arguments`, read to the end.
    pub async fn call_tool(&self, name: &str, arguments: Value) -> Result<CallReply, RawError> {
        self.call("tools/call", tool_call_params(name, arguments, None))
            .await
    }

    /// `tools/call` with `_meta.progressToken` set, read to the end.
    pub async fn call_tool_with_progress(
        &self,
        name: &str,
        arguments: Value,
        progress_token: Value,
    ) -> Result<CallReply, RawError> {
        self.call(
            "tools/call",
            tool_call_params(name, arguments, Some(progress_token)),
        )
        .await
    }

    /// `tools/list`, read to the end.
    pub async fn list_tools(&self) -> Result<CallReply, RawError> {
        self.call("tools/list", json!({})).await
    }

    /// `server/discover` (with the per-request `_meta`), read to the end.
    pub async fn discover(&self) -> Result<CallReply, RawError> {
        self.call("server/discover", json!({})).await
    }

    /// `ping`, read to the end (2026-07-28 has no `ping`: rmcp answers 404 + -32601).
    pub async fn ping(&self) -> Result<CallReply, RawError> {
        self.call("ping", json!({})).await
    }

    /// Sends request `method` with the given id and returns as soon as the headers are in;
    /// read the body with [`SseStream`].
    pub async fn open_request(
        &self,
        id: i64,
        method: &str,
        params: Value,
    ) -> Result<reqwest::Response, RawError> {
        self.send_bounded(self.request_with_id(id, method, params))
            .await
    }

    /// `tools/call` returning at its headers (fresh id; see
    /// [`RawClient::open_call_stream_with_id`] to know the id).
    pub async fn open_call_stream(
        &self,
        name: &str,
        arguments: Value,
    ) -> Result<reqwest::Response, RawError> {
        self.open_call_stream_with_id(self.next_id(), name, arguments, None)
            .await
    }

    /// `tools/call` with the given id (and progress token) returning at its headers.
    pub async fn open_call_stream_with_id(
        &self,
        id: i64,
        name: &str,
        arguments: Value,
        progress_token: Option<Value>,
    ) -> Result<reqwest::Response, RawError> {
        self.open_request(
            id,
            "tools/call",
            tool_call_params(name, arguments, progress_token),
        )
        .await
    }

    /// Sends notification `method` (answer read to the end: rmcp answers 202, empty).
    pub async fn notify(&self, method: &str, params: Value) -> Result<CallReply, RawError> {
        let body = self.body(None, method, params);
        self.exchange(self.post_json(&body), None).await
    }

    /// `notifications/cancelled` for `request_id` (2025-11-25 cancellation; under
    /// 2026-07-28 closing the stream is the cancellation).
    pub async fn cancel(&self, request_id: i64, reason: &str) -> Result<CallReply, RawError> {
        self.notify(
            "notifications/cancelled",
            json!({ "requestId": request_id, "reason": reason }),
        )
        .await
    }

    /// A GET on the endpoint with `Accept: text/event-stream`, the protocol version, the
    /// session id and the extra headers: the 2025-11-25 listen stream. Returns at the
    /// headers.
    pub async fn open_get_stream(&self) -> Result<reqwest::Response, RawError> {
        self.send_bounded(self.get_builder()).await
    }

    /// Like [`RawClient::open_get_stream`], with `Last-Event-ID` (resumption).
    pub async fn open_get_stream_after(
        &self,
        last_event_id: &str,
    ) -> Result<reqwest::Response, RawError> {
        self.send_bounded(self.get_builder().header(LAST_EVENT_ID, last_event_id))
            .await
    }

    /// Starts the demo `progress` tool under `id` (4 steps, 200 ms apart, progress token
    /// `"tok"`), reads its answer stream up to the first progress notification (at most 10 s)
    /// and drops the stream there, as a client whose connection broke. Returns that event's id,
    /// to resume after with [`RawClient::open_get_stream_after`].
    ///
    /// # Panics
    ///
    /// When the call fails, no progress notification comes within 10 s, or it has no id.
    pub async fn drop_call_at_first_progress(&self, id: i64) -> String {
        let resp = self
            .open_call_stream_with_id(
                id,
                "progress",
                json!({"steps": 4, "interval_ms": 200}),
                Some(json!("tok")),
            )
            .await
            .expect("the progress call starts");
        let mut stream = SseStream::new(resp);
        let progress = tokio::time::timeout(
            Duration::from_secs(10),
            stream.next_event_where(|m| m["method"] == "notifications/progress"),
        )
        .await
        .expect("a progress notification within 10 s")
        .expect("a progress notification before the stream ends");
        progress.id.expect("rmcp numbers its events")
    }

    /// A DELETE of the session (2025-11-25); returns the status.
    pub async fn delete_session(&self) -> Result<StatusCode, RawError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            MCP_PROTOCOL_VERSION,
            HeaderValue::from_static(self.revision.as_str()),
        );
        if let Some(session) = self
            .session_id
            .as_deref()
            .and_then(|session| HeaderValue::from_str(session).ok())
        {
            headers.insert(MCP_SESSION_ID, session);
        }
        self.apply_extra(&mut headers);
        let response = self
            .send_bounded(self.http.delete(&self.url).headers(headers))
            .await?;
        Ok(response.status())
    }

    fn get_builder(&self) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            MCP_PROTOCOL_VERSION,
            HeaderValue::from_static(self.revision.as_str()),
        );
        if let Some(session) = self
            .session_id
            .as_deref()
            .and_then(|session| HeaderValue::from_str(session).ok())
        {
            headers.insert(MCP_SESSION_ID, session);
        }
        self.apply_extra(&mut headers);
        self.http.get(&self.url).headers(headers)
    }

    async fn send_bounded(
        &self,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RawError> {
        tokio::time::timeout(self.timeout, builder.send())
            .await
            .map_err(|_| RawError::Timeout(self.timeout))?
            .map_err(RawError::from)
    }
}

/// `tools/call` params: `{ name, arguments, _meta: { progressToken } }`.
pub fn tool_call_params(name: &str, arguments: Value, progress_token: Option<Value>) -> Value {
    let mut params = json!({ "name": name, "arguments": arguments });
    if let Some(token) = progress_token {
        params["_meta"] = json!({ "progressToken": token });
    }
    params
}

/// Reads a whole answer: SSE events up to the final message for `id` (plus whatever
/// arrives in the next 100 ms before the stream ends), or the JSON / text body. Not bounded
/// in time: wrap it in a timeout.
pub async fn read_reply(response: reqwest::Response, id: Option<&Value>) -> CallReply {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut reply = CallReply {
        status,
        headers,
        events: Vec::new(),
        json: None,
        text: None,
        final_message: None,
    };
    if content_type.starts_with("text/event-stream") {
        let mut stream = SseStream::new(response);
        while let Some(event) = stream.next_event().await {
            let message = event.json();
            reply.events.push(event);
            if let Some(message) = message
                && is_final_for(&message, id)
            {
                reply.final_message = Some(message);
                break;
            }
        }
        if reply.final_message.is_some() {
            // Let a well-behaved stream end (so the connection can be reused) without
            // waiting on one that stays open.
            let _ = tokio::time::timeout(DRAIN_GRACE, async {
                while let Some(event) = stream.next_event().await {
                    reply.events.push(event);
                }
            })
            .await;
        }
        return reply;
    }
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(json) if content_type.starts_with("application/json") => {
            if is_final_for(&json, id) {
                reply.final_message = Some(json.clone());
            }
            reply.json = Some(json);
        }
        _ => reply.text = Some(text),
    }
    reply
}

/// True when `message` is the JSON-RPC response to `id` (an error with `id: null` counts).
fn is_final_for(message: &Value, id: Option<&Value>) -> bool {
    let is_response = message.get("result").is_some() || message.get("error").is_some();
    if !is_response {
        return false;
    }
    match (message.get("id"), id) {
        (Some(got), Some(want)) => got == want || got.is_null(),
        (None | Some(Value::Null), _) => true,
        (Some(_), None) => true,
    }
}

/// `Mcp-Method` and (for methods that name a target) `Mcp-Name`, as 2026-07-28 requires.
pub fn mirrored_headers(body: &Value) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(method) = body.get("method").and_then(Value::as_str) else {
        return headers;
    };
    if let Ok(value) = HeaderValue::from_str(method) {
        headers.insert(MCP_METHOD, value);
    }
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => return headers,
    };
    if let Some(name) = body
        .get("params")
        .and_then(|params| params.get(key))
        .and_then(Value::as_str)
        && let Ok(value) = HeaderValue::from_str(&mcp_header_value(name))
    {
        headers.insert(MCP_NAME, value);
    }
    headers
}

/// Encodes a value for an `Mcp-Name` / `Mcp-Param-*` header: as is when it is safe,
/// otherwise `=?base64?<standard base64 of the UTF-8>?=` (non-ASCII or control characters,
/// leading/trailing blanks, or a value that already looks like the sentinel).
pub fn mcp_header_value(value: &str) -> String {
    let needs_base64 = !value.is_empty()
        && (value.starts_with([' ', '\t'])
            || value.ends_with([' ', '\t'])
            || value.chars().any(|c| !(' '..='~').contains(&c))
            || (value.starts_with("=?base64?") && value.ends_with("?=")));
    if needs_base64 {
        format!("=?base64?{}?=", base64_standard(value.as_bytes()))
    } else {
        value.to_owned()
    }
}

fn base64_standard(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_standard(b""), "");
        assert_eq!(base64_standard(b"f"), "Zg==");
        assert_eq!(base64_standard(b"fo"), "Zm8=");
        assert_eq!(base64_standard(b"foo"), "Zm9v");
        assert_eq!(base64_standard(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn header_values_are_wrapped_only_when_needed() {
        assert_eq!(mcp_header_value("add"), "add");
        assert_eq!(mcp_header_value("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(mcp_header_value(" x"), "=?base64?IHg=?=");
    }

    #[test]
    fn stateless_bodies_carry_the_request_meta() {
        let client = RawClient::new("http://127.0.0.1:1/mcp", Revision::V2026_07_28);
        let body = client.body(
            Some(7),
            "tools/call",
            tool_call_params("add", json!({"a": 1, "b": 2}), Some(json!("p"))),
        );
        let meta = &body["params"]["_meta"];
        assert_eq!(meta[META_PROTOCOL_VERSION], "2026-07-28");
        assert!(meta[META_CLIENT_CAPABILITIES].is_object());
        assert_eq!(meta["progressToken"], "p");
        let headers = client.headers_for(&body);
        assert_eq!(headers[MCP_METHOD], "tools/call");
        assert_eq!(headers[MCP_NAME], "add");
        assert_eq!(headers[MCP_PROTOCOL_VERSION], "2026-07-28");
    }

    #[test]
    fn session_bodies_stay_plain() {
        let client = RawClient::new("http://127.0.0.1:1/mcp", Revision::V2025_11_25);
        let body = client.body(Some(1), "tools/list", json!({}));
        assert!(body["params"].get("_meta").is_none());
        assert!(client.headers_for(&body).get(MCP_METHOD).is_none());
    }
}
