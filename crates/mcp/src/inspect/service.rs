use std::task::{Context, Poll};

use http::{Request, Response, header};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::McpInspectLayer;
use super::parse::{self, Rejection};
use crate::CorrelationId;
use crate::body::{McpBody, ResponseBody};

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
                    parts.extensions.insert(facts);
                    let mut service = service;
                    ResponseFuture::calling(
                        service.call(Request::from_parts(parts, McpBody::empty())),
                    )
                }
                Err(rej) => ResponseFuture::answer(rej, parts.extensions.get::<CorrelationId>()),
            };
        }

        if has_content_coding(&parts.headers) {
            return ResponseFuture::answer(
                Rejection::encoded(),
                parts.extensions.get::<CorrelationId>(),
            );
        }
        let max = self.config.max_body;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let length = declared.unwrap_or(0).max(body.size_hint().lower());
        let too_large = length > max as u64;
        // Far over the limit: answered at once, without reading it.
        if length > (max as u64).saturating_add(super::future::DRAIN_MAX_BYTES as u64) {
            return ResponseFuture::answer(
                Rejection::too_large(),
                parts.extensions.get::<CorrelationId>(),
            );
        }
        let json = method == http::Method::POST && crate::observe::is_json(&parts.headers);
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
    if host.is_some_and(|h| !is_host(h.as_bytes())) {
        return Some(Rejection::bad_host("invalid Host header"));
    }
    let target = parts.uri.authority()?.as_str();
    let same = host.is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(target.as_bytes()));
    if same {
        return None;
    }
    if parts.version >= http::Version::HTTP_2 {
        return host.map(|_| Rejection::bad_host("Host header does not match :authority"));
    }
    match http::HeaderValue::from_str(target) {
        Ok(v) if is_host(target.as_bytes()) => {
            parts.headers.insert(header::HOST, v);
            None
        }
        _ => Some(Rejection::bad_host("invalid request target authority")),
    }
}

/// Whether a `Host` value is `host[:port]` in RFC 3986's characters: not empty, no user
/// information (`@`), no space, path, query or non-ASCII byte. (The server checks the name.)
fn is_host(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// RFC 9112 §6.1: a transfer coding other than `chunked` (which the HTTP server has already
/// decoded) is one nothing here decodes: 501 rather than reading the coded bytes as JSON.
fn transfer_coding_problem(headers: &http::HeaderMap) -> Option<Rejection> {
    names_a_coding(headers, &header::TRANSFER_ENCODING, b"chunked").then(Rejection::transfer_coded)
}

/// Whether a request body is content-coded: a `Content-Encoding` naming anything but
/// `identity` (an empty field, or only `identity`, is no coding).
fn has_content_coding(headers: &http::HeaderMap) -> bool {
    names_a_coding(headers, &header::CONTENT_ENCODING, b"identity")
}

/// Whether the comma-separated lists of `name` name a coding other than `except`.
fn names_a_coding(headers: &http::HeaderMap, name: &http::HeaderName, except: &[u8]) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(except))
    })
}
