//! [`McpInspectLayer`]: reads each JSON-RPC POST once, bounded, into an [`McpRequest`]
//! extension, checks mirrored headers against the body, and answers malformed requests itself.
//!
//! | input | answer |
//! |---|---|
//! | `Host` repeated or invalid (user information included, an IP literal without brackets, a port that is not 0–65535 in digits), RFC 9112 §3.2; under HTTP/2, a `Host` that is not `:authority` (RFC 9113 §8.3.1). (An HTTP/1 absolute-form target's authority replaces `Host`: it is the one that counts, §3.2.2) | 400, `-32600`, `id: null` |
//! | a `Transfer-Encoding` naming a coding other than `chunked`, which nothing here decodes (RFC 9112 §6.1) | 501, `-32600`, `id: null` |
//! | `chunked` applied more than once (RFC 9112 §6.1: a sender must not; the server decodes it once, a proxy in front may have decoded it twice) | 400, `-32600`, `id: null` |
//! | a POST with `Content-Type` sent more than once (a singleton field, RFC 9110 §8.3: this layer, the server and a proxy could each read a different one) | 400, `-32600`, `id: null` |
//! | a POST declared `application/json` with a `charset` other than UTF-8 (`utf-8` or `utf8`) or US-ASCII (its subset), any of them if it is named twice: a policy (RFC 8259 §8.1 has JSON exchanged as UTF-8, which is how it is read here and by the server; a proxy honouring another charset would read other text) | 415, `-32600`, `id: null` |
//! | a body with a `Content-Encoding` other than `identity` (never decoded here nor by the server: read as it is, the server would see other bytes than a proxy that decodes it) | 415, `-32600`, `id: null` |
//! | body over the limit (from `Content-Length` up front, or while reading; declared over it with `Expect: 100-continue`, answered before any of it is invited) | 413, [`CODE_PAYLOAD_TOO_LARGE`](crate::error::CODE_PAYLOAD_TOO_LARGE), `id: null` |
//! | malformed JSON, not UTF-8, nested 128 levels deep or more | 400, `-32700`, `id: null` |
//! | valid JSON that is not a JSON-RPC 2.0 message (members of the wrong type included: a `method` that is not a string, numeric or positional (array) `params`, which MCP's schema never has; a response with both `result` and `error`, or an `error` that is not an object with an integer `code` and a string `message`), a batch, a `method` longer than 256 bytes or with control characters (no MCP server has one, and servers repeat the method in logs and error messages), a number no type holds (`1e999999`, anywhere in the message: neither this layer nor the server can read it), a fractional / `null` / over-long id (an integer in float form, `1.0` or `1e2`, below 2^53, is that integer, as rmcp reads it), a string id with control characters (servers log ids as they are: a line break would forge log lines) | 400, `-32600`, the id when it can be read (never an over-long one or one with control characters) |
//! | a member the inspector reads appearing twice in its object, however spelt (`jsonrpc`, `method`, `id`, `params`, `result`, `error`; in `params`: `name`, `uri`, `taskId`, `protocolVersion`, `requestId`, `arguments`, `notifications`, `capabilities`, `clientInfo` and its `name` and `version`, `_meta`): parsers disagree on which counts (rmcp refuses the message) | 400, `-32600`, the id when it can be read |
//! | `Mcp-Method` / `Mcp-Name` disagreeing with the body, invalid base64, missing under 2026-07-28 (by the `MCP-Protocol-Version` header or `_meta`; the version an `initialize` offers does not count) | 400, `-32020` |
//! | `MCP-Protocol-Version` or `Mcp-Session-Id` sent more than once; `Mcp-Method` or `Mcp-Name` more than once on a message the header mirrors (a request or notification; `Mcp-Name` for methods that name something: `tools/call`, `prompts/get`, `resources/read`, `resources/subscribe`, `resources/unsubscribe`, `tasks/get`, `tasks/cancel`) — layers and the server could each read a different copy | 400, `-32020` (`-32600` for `Mcp-Session-Id`), the id when it can be read |
//! | a request (not a notification, not `initialize`) with `_meta.io.modelcontextprotocol/protocolVersion` but no `MCP-Protocol-Version` header | 400, `-32020` |
//! | a request under 2026-07-28 (by the header; `server/discover` always) whose `_meta` lacks `io.modelcontextprotocol/protocolVersion` or `.../clientCapabilities` (an object) | 400, `-32602`, naming the missing keys |
//! | a request under a revision with sessions (by the header) whose `_meta` carries both `io.modelcontextprotocol/protocolVersion` and `.../clientCapabilities` (an object): rmcp would serve it statelessly, outside the session its header names, where the layers account for it | 400, `-32602`, the id |
//! | a request's `_meta` or `tools/call` `arguments` that is not an object (or `null`); a notification's `_meta` likewise; a `tools/call` or `prompts/get` without a string `name`, a `resources/read`, `resources/subscribe` or `resources/unsubscribe` without a string `uri`, a `tasks/get` or `tasks/cancel` without a string `taskId` (rmcp: `-32601`); an `initialize` without a string `protocolVersion`, an object `capabilities` and a `clientInfo` with string `name` and `version` (rmcp: a bare-text 400 about a missing session); a `subscriptions/listen` whose `notifications` filter is missing, not an object, or has a `*ListChanged` member that is not a boolean or a `resourceSubscriptions` that is not an array of strings (rmcp: 404 `-32601`) | 400, `-32602`, the id when there is one |
//! | a JSON-RPC response POSTed under 2026-07-28 (it has no server requests for a client to answer) | 400, `-32600`, with the id |
//! | a 2025-11-25 request whose id is in progress in its session (see [Ids in progress](McpInspectLayer#ids-in-progress)) | 400, `-32600`, with the id |
//! | unknown `MCP-Protocol-Version` (unless [`McpInspectLayer::allow_unknown_versions`]) | 400, `-32022` with the request's id and `data.supported` (every revision this crate knows) and `data.requested`, so an auto-negotiating client can retry with a version both sides speak |
//! | a body that fails while being read | 400, `-32600` |
//! | a body not complete within [`McpInspectLayer::body_timeout`] (default 30 s) | 408, [`CODE_BODY_TIMEOUT`](crate::error::CODE_BODY_TIMEOUT), `id: null`, `Connection: close` on HTTP/1; see [Body-read deadline](McpInspectLayer#body-read-deadline) |
//! | POST with a non-JSON `Content-Type` | passed on unparsed ([`MessageKind::NotJsonRpc`](crate::MessageKind)) |
//! | GET, DELETE | passed on with the facts their headers give |
//!
//! The request goes inward with its bytes unchanged in an [`McpBody`](crate::McpBody). The
//! answer to a 2026-07-28 `subscriptions/listen` request carries a [`ListenId`](crate::ListenId)
//! extension (its request's id), for a layer further out that ends the stream to close it
//! gracefully.
//!
//! [`McpRequest`]: crate::McpRequest

mod future;
mod in_flight;
mod layer;
pub(crate) mod parse;
mod service;

pub use self::future::ResponseFuture;
pub use self::in_flight::InProgress;
pub use self::layer::McpInspectLayer;
pub use self::parse::{
    Rejection, canonical_call_event_id, decode_mcp_name, event_stream, resumes_call,
};
pub use self::service::{McpInspect, valid_host};

/// Whether a request opens a long-lived stream (a 2025-11-25 `GET` listen stream, or a
/// 2026-07-28 `subscriptions/listen` POST), as far as its head tells: for the layers that run
/// outside the inspector (sse, bearer-auth).
///
/// Uses the inspector's [`McpRequest`](crate::McpRequest) when it is in the extensions. Otherwise
/// the headers tell: a `GET` (but not under `MCP-Protocol-Version: 2026-07-28`, which has no
/// `GET`), unless its `Last-Event-ID` resumes a call's stream ([`resumes_call`]); or a POST with
/// `Mcp-Method: subscriptions/listen` (which the inspector, further in, checks against the body:
/// a mismatch is answered 400 before any stream opens).
pub fn opens_long_lived_stream<B>(req: &http::Request<B>) -> bool {
    if let Some(facts) = req.extensions().get::<crate::McpRequest>() {
        return facts.is_long_lived();
    }
    let h = req.headers();
    match *req.method() {
        http::Method::GET => {
            !h.get(&headers::PROTOCOL_VERSION)
                .and_then(|v| crate::ProtocolRevision::parse(v.to_str().ok()?))
                .is_some_and(crate::ProtocolRevision::is_stateless)
                && !h
                    .get(&headers::LAST_EVENT_ID)
                    .is_some_and(|id| resumes_call(id.as_bytes()))
        }
        http::Method::POST => h
            .get(&headers::MCP_METHOD)
            .is_some_and(|v| v.as_bytes() == b"subscriptions/listen"),
        _ => false,
    }
}

/// Parses one POST the way the inspector does, without a service: for fuzzing and tests.
///
/// Returns the facts, or the rejection the inspector would answer with.
pub fn inspect_post(
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<crate::McpRequest, Rejection> {
    parse::from_post(headers, body, McpInspectLayer::new().limits())
}

/// The header names the inspector reads.
pub mod headers {
    pub use super::parse::{LAST_EVENT_ID, MCP_METHOD, MCP_NAME, PROTOCOL_VERSION, SESSION_ID};
}
