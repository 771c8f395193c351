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
        let limits = self.config.limits;
        // The readied service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);

        let method = &parts.method;
        if method == http::Method::GET
            || method == http::Method::HEAD
            || method == http::Method::DELETE
        {
            return match parse::from_headers(method, &parts.headers, limits) {
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
        if declared.is_some_and(|len| len > max as u64) || body.size_hint().lower() > max as u64 {
            return ResponseFuture::answer(
                Rejection::too_large(),
                parts.extensions.get::<CorrelationId>(),
            );
        }
        let json = method == http::Method::POST && crate::observe::is_json(&parts.headers);
        let timeout = self.config.body_timeout;
        let in_flight = self.config.in_flight.clone();
        ResponseFuture::reading(body, parts, service, json, limits, max, timeout, in_flight)
    }
}

/// Whether a request body is content-coded: a `Content-Encoding` naming anything but
/// `identity` (an empty field, or only `identity`, is no coding).
fn has_content_coding(headers: &http::HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
    })
}
