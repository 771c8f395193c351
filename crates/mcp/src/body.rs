//! Body types shared by the layers.
//!
//! - [`McpBody`]: the request body after inspection: the bytes read, handed on unchanged. Any
//!   layer can also build one (a call-plane layer sending `notifications/cancelled`).
//! - [`ResponseBody`]: the response body of a layer that sometimes answers by itself: either the
//!   inner service's body or the small body the layer wrote.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::jsonrpc::{self, RequestId};

/// A request body of known bytes, read in full by the inspector (bounded) or built by a layer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct McpBody {
    data: Option<Bytes>,
}

impl McpBody {
    /// An empty body.
    pub fn empty() -> Self {
        McpBody { data: None }
    }

    /// A body of these bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        McpBody {
            data: (!b.is_empty()).then_some(b),
        }
    }

    /// A JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::new(serde_json::to_vec(value).unwrap_or_default())
    }

    /// The bytes, until the body is polled.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }
}

impl fmt::Debug for McpBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McpBody")
            .field("len", &self.bytes().len())
            .finish()
    }
}

impl Body for McpBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

impl From<Bytes> for McpBody {
    fn from(b: Bytes) -> Self {
        McpBody::new(b)
    }
}

impl From<String> for McpBody {
    fn from(s: String) -> Self {
        McpBody::new(s)
    }
}

impl From<&'static str> for McpBody {
    fn from(s: &'static str) -> Self {
        McpBody::new(Bytes::from_static(s.as_bytes()))
    }
}

/// A tonic request body of these bytes: what lets a call-plane layer that builds requests of
/// its own (the timeout's `notifications/cancelled`) sit in a tonic stack.
#[cfg(feature = "tonic")]
impl From<McpBody> for tonic::body::Body {
    fn from(body: McpBody) -> Self {
        tonic::body::Body::new(body)
    }
}

pin_project! {
    /// The response body of a layer that may answer by itself: the inner body, or a local one.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Local {
            data: Option<Bytes>,
        },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner body.
    pub fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    /// A local body of these bytes.
    pub fn local(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Local {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// An empty local body.
    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Local { data: None },
        }
    }

    /// Whether the body was written by the layer rather than the inner service.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local { .. })
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { .. } => f.write_str("ResponseBody::Inner"),
            Kind::Local { data } => f
                .debug_struct("ResponseBody::Local")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Local { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Builds a JSON-RPC error answer: `status`, `Content-Type: application/json`, and the error body
/// for `id` (`null` when unknown).
pub fn json_rpc_error_response<B>(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Response<ResponseBody<B>> {
    let body = jsonrpc::error_body(id, code, message, data);
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// [`json_rpc_error_response`] for an answer a layer makes itself, with the request's
/// correlation id (when known) in `data.correlationId`, as every local error answer carries it.
pub fn local_error_response<B>(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    correlation: Option<&crate::CorrelationId>,
) -> Response<ResponseBody<B>> {
    let data = correlation.map(|c| serde_json::json!({ "correlationId": c.as_str() }));
    json_rpc_error_response(status, id, code, message, data.as_ref())
}
