use std::task::{Context, Poll};

use http::{Request, Response, header};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::McpInspectLayer;
use super::parse::{self, LAST_EVENT_ID, Rejection};
use crate::CorrelationId;
use crate::body::{McpBody, ResponseBody};
use crate::request::StreamRole;

/// Reads each MCP request once into an [`McpRequest`](crate::McpRequest) extension; see the
/// [module docs](super).
#[derive(Clone, Debug)]
pub struct McpInspect<S> {
    inner: S,
    config: McpInspectLayer,
}

impl<S> McpInspect<S> {
    /// Wraps `inner` with the given settings.
    pub fn new(inner: S, config: McpInspectLayer) -> Self {
        McpInspect { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for McpInspect<S>
where
    S: Service<Request<McpBody>, Response = Response<ResBody>> + Clone,
    B: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        // The readied service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);

        if let Some(rej) =
            host_problem(&mut parts).or_else(|| transfer_coding_problem(&parts.headers))
        {
            return ResponseFuture::answer(rej, parts.extensions.get::<CorrelationId>());
        }
        let method = &parts.method;
        if method == http::Method::GET
            || method == http::Method::HEAD
            || method == http::Method::DELETE
        {
            return match parse::from_headers(method, &parts.headers, self.config.limits) {
                Ok(facts) => {
                    crate::span::record_request(&facts);
                    if let StreamRole::Resume { last_event_id } = facts.stream_role() {
                        // The server reads the id as the layers do (`+0/+1` is `0/1`).
                        parts.headers.insert(&LAST_EVENT_ID, last_event_id.clone());
                    }
                    parts.extensions.insert(facts);
                    let mut service = service;
                    ResponseFuture::calling(
                        service.call(Request::from_parts(parts, McpBody::empty())),
                    )
                }
                Err(rej) => ResponseFuture::answer(rej, parts.extensions.get::<CorrelationId>()),
            };
        }

        let checked = if crate::observe::is_encoded(&parts.headers) {
            Err(Rejection::encoded())
        } else if method == http::Method::POST {
            post_content_type(&parts.headers)
        } else {
            Ok(false)
        };
        let json = match checked {
            Ok(json) => json,
            Err(rej) => {
                return ResponseFuture::answer(rej, parts.extensions.get::<CorrelationId>());
            }
        };
        let max = self.config.max_body;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let length = declared.unwrap_or(0).max(body.size_hint().lower());
        let too_large = length > max as u64;
        // Far over the limit: answered at once, without reading it. So is a body over the limit
        // the client waits to be invited to send (`Expect: 100-continue`): reading it would
        // have the HTTP server send the `100 Continue` first, inviting the upload the 413 then
        // refuses; not read, nothing of it is in flight to drain (RFC 9110 §10.1.1).
        if length > (max as u64).saturating_add(super::future::DRAIN_MAX_BYTES as u64)
            || (too_large && expects_continue(&parts.headers))
        {
            return ResponseFuture::answer(
                Rejection::too_large(),
                parts.extensions.get::<CorrelationId>(),
            );
        }
        ResponseFuture::reading(body, parts, service, json, &self.config, too_large)
    }
}

/// RFC 9112 §3.2: a request with more than one `Host` field, or an invalid one (user
/// information included), gets 400. An absolute-form target names the authority that counts
/// (§3.2.2): `Host` is set to it, so that the server's allowed-hosts check, which reads `Host`,
/// sees that one. Under HTTP/2 a `Host` must name what `:authority` names (RFC 9113 §8.3.1).
/// A request without `Host` is left to the server.
fn host_problem(parts: &mut http::request::Parts) -> Option<Rejection> {
    let host = match parse::only(&parts.headers, &header::HOST) {
        Ok(h) => h,
        Err(()) => return Some(Rejection::bad_host("Host header repeated")),
    };
    if host.is_some_and(|h| !valid_host(h.as_bytes())) {
        return Some(Rejection::bad_host("invalid Host header"));
    }
    let target = parts.uri.authority()?.as_str();
    let same = host.is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(target.as_bytes()));
    if same {
        return None;
    }
    if parts.version >= http::Version::HTTP_2 {
        return match host {
            Some(_) => Some(Rejection::bad_host("Host header does not match :authority")),
            // `:authority` alone stands for `Host`: the same rules.
            None => {
                (!valid_host(target.as_bytes())).then(|| Rejection::bad_host("invalid :authority"))
            }
        };
    }
    match http::HeaderValue::from_str(target) {
        Ok(v) if valid_host(target.as_bytes()) => {
            parts.headers.insert(header::HOST, v);
            None
        }
        _ => Some(Rejection::bad_host("invalid request target authority")),
    }
}

/// Whether a `Host` value (or an `:authority`) is `host[:port]` as the inspector requires it:
/// RFC 3986's characters, not empty, no user information (`@`), no space, path, query or
/// non-ASCII byte; an IP literal only in brackets; a port only of digits, at most five and at
/// most 65535 (RFC 9110 §4.2.3, §7.2: a port that does not parse is not one a server listens
/// on; rmcp would drop it and judge the name alone). Whether the name is served is the
/// server's to check. For routes beside the inspected one that check `Host` themselves.
pub fn valid_host(v: &[u8]) -> bool {
    let chars = v
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b));
    if v.is_empty() || !chars {
        return false;
    }
    let (name, port) = if v[0] == b'[' {
        match v.iter().position(|&b| b == b']') {
            Some(end) => v.split_at(end + 1),
            None => return false,
        }
    } else {
        v.split_at(v.iter().position(|&b| b == b':').unwrap_or(v.len()))
    };
    let bracket = |b: &u8| matches!(b, b'[' | b']');
    let name_ok = match name {
        [] => false,
        [b'[', literal @ .., b']'] => !literal.is_empty() && !literal.iter().any(bracket),
        _ => !name.iter().any(bracket),
    };
    // Empty, or `:` and up to five digits within 65535 (`*DIGIT` allows `host:`).
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => {
            digits.len() <= 5
                && digits.iter().all(u8::is_ascii_digit)
                && digits
                    .iter()
                    .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'))
                    <= 65535
        }
        Some(_) => false,
    };
    name_ok && port_ok
}

/// Whether the client waits for `100 Continue` before it sends the body.
fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::EXPECT).iter().any(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"100-continue")
    })
}

/// RFC 9112 §6.1: a transfer coding other than `chunked` (which the HTTP server has already
/// decoded) is one nothing here decodes: 501 rather than reading the coded bytes as JSON.
/// `chunked` applied more than once (a sender must not) gets 400: the server decodes it once,
/// and a proxy in front that decodes it twice would have seen another body.
fn transfer_coding_problem(headers: &http::HeaderMap) -> Option<Rejection> {
    let mut chunked = 0u32;
    for coding in codings(headers, &header::TRANSFER_ENCODING) {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Some(Rejection::transfer_coded());
        }
        chunked += 1;
    }
    (chunked > 1).then(|| Rejection::invalid("chunked transfer coding applied more than once"))
}

/// The codings the comma-separated lists of `name` name (empty items skipped).
fn codings<'h>(
    headers: &'h http::HeaderMap,
    name: &http::HeaderName,
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
}

/// Whether a POST's body is JSON to read (`application/json`, any case, any parameters), from
/// its `Content-Type`: a singleton field (RFC 9110 §8.3); sent twice, this layer, the server and
/// a proxy in front could each read a different one, so 400. A JSON body declared in a charset
/// other than UTF-8 gets 415: JSON is exchanged as UTF-8 (RFC 8259 §8.1) and read as such here
/// and by the server, while a proxy honouring the charset would read other text.
fn post_content_type(headers: &http::HeaderMap) -> Result<bool, Rejection> {
    let value = match parse::only(headers, &header::CONTENT_TYPE) {
        Err(()) => return Err(Rejection::invalid("Content-Type header repeated")),
        Ok(None) => return Ok(false),
        Ok(Some(v)) => v,
    };
    let mut parts = value.as_bytes().split(|&b| b == b';');
    let essence = parts.next().unwrap_or_default().trim_ascii();
    if !essence.eq_ignore_ascii_case(b"application/json") {
        return Ok(false);
    }
    // Every `charset` counts (one named twice: a proxy could read either).
    let mut charsets = parts.filter_map(|p| {
        let (name, value) = p.split_at(p.iter().position(|&b| b == b'=')?);
        let value = value[1..].trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        name.trim_ascii()
            .eq_ignore_ascii_case(b"charset")
            .then_some(value)
    });
    // UTF-8 under either spelling, or US-ASCII (a subset: the same bytes read the same).
    let utf8 = |c: &[u8]| {
        [&b"utf-8"[..], b"utf8", b"us-ascii"]
            .iter()
            .any(|name| c.eq_ignore_ascii_case(name))
    };
    if charsets.any(|c| !utf8(c)) {
        return Err(Rejection::not_utf8_charset());
    }
    Ok(true)
}
