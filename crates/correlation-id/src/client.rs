//! The client side: send the case's correlation id and trace context on outgoing calls.
//!
//! - [`PropagateCorrelationLayer`] sets `x-request-id` and `traceparent` (a child: same trace id,
//!   fresh span id; plus `tracestate`) on outgoing HTTP requests, from the [`CorrelationId`] and
//!   [`TraceContext`] in the request's extensions, or new ones.
//! - [`with_correlation_meta`] adds the same to a JSON-RPC request's `params._meta` (for
//!   transports that do not go through a tower stack), returning a new value and leaving the
//!   caller's untouched.
//!
//! An id the caller already set (a header, a `_meta` key) is kept, and so is a valid
//! `traceparent` of the caller's own. An invalid one, or the very context the case came in with
//! (a gateway passing an incoming request on), is replaced by a child: each hop gets a span id
//! of its own, and a value our server layer would refuse never goes upstream.

use std::borrow::Cow;
use std::task::{Context, Poll};

use http::{HeaderName, Request};
use serde_json::{Map, Value};
use tower_armor_mcp::CorrelationId;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{self, ConfigError};
use crate::id::{self, X_REQUEST_ID};
use crate::trace::{TRACEPARENT, TRACESTATE, TraceContext};

/// The `_meta` key carrying the correlation id in JSON-RPC requests (adopted by a server stack
/// with [`AdoptMetaTraceLayer`](crate::AdoptMetaTraceLayer) when no `x-request-id` came).
pub use tower_armor_mcp::META_REQUEST_ID;
/// The `_meta` key of the W3C `traceparent` (reserved by MCP for OpenTelemetry).
pub const META_TRACEPARENT: &str = "traceparent";
/// The `_meta` key of the W3C `tracestate`.
pub const META_TRACESTATE: &str = "tracestate";

/// Applies [`PropagateCorrelation`] to an HTTP client service.
///
/// ```
/// use http::Request;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_armor_correlation_id::{PropagateCorrelationLayer, TraceContext};
/// use tower_armor_mcp::CorrelationId;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = ServiceBuilder::new()
///     .layer(PropagateCorrelationLayer::new())
///     .service_fn(|req: Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(req.headers().clone())
///     });
/// let case = CorrelationId::parse(b"case-7").unwrap();
/// let trace = TraceContext::new_root();
/// let mut req = Request::new(());
/// req.extensions_mut().insert(case);
/// req.extensions_mut().insert(trace.clone());
/// let sent = client.oneshot(req).await.unwrap();
/// assert_eq!(sent["x-request-id"], "case-7");
/// let tp = TraceContext::parse(sent["traceparent"].as_bytes()).unwrap();
/// assert_eq!(tp.trace_id(), trace.trace_id());
/// assert_ne!(tp.parent_id(), trace.parent_id());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PropagateCorrelationLayer {
    header: HeaderName,
}

impl Default for PropagateCorrelationLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateCorrelationLayer {
    /// A layer sending `x-request-id`.
    pub fn new() -> Self {
        PropagateCorrelationLayer {
            header: X_REQUEST_ID.clone(),
        }
    }

    /// Reads the header name from `MCP_REQUEST_ID_HEADER` (unset or empty: `x-request-id`).
    pub fn from_env() -> Result<Self, ConfigError> {
        let server = crate::CorrelationIdLayer::from_env()?;
        Ok(Self::new().header_name(server.header().clone()))
    }

    /// Sends the id in `name` instead of `x-request-id`.
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Like [`header_name`](Self::header_name), from text; refuses the
    /// [`RESERVED_HEADERS`](crate::error::RESERVED_HEADERS).
    pub fn try_header_name(self, name: &str) -> Result<Self, ConfigError> {
        Ok(self.header_name(error::header_name(name, None)?))
    }
}

impl<S> Layer<S> for PropagateCorrelationLayer {
    type Service = PropagateCorrelation<S>;

    fn layer(&self, inner: S) -> PropagateCorrelation<S> {
        PropagateCorrelation {
            inner,
            header: self.header.clone(),
        }
    }
}

/// Sets the correlation header and `traceparent` / `tracestate` on each outgoing request; see
/// [`PropagateCorrelationLayer`]. Keeps the inner service's response, error and future.
#[derive(Clone, Debug)]
pub struct PropagateCorrelation<S> {
    inner: S,
    header: HeaderName,
}

impl<S, B> Service<Request<B>> for PropagateCorrelation<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        propagate(&mut req, &self.header);
        self.inner.call(req)
    }
}

fn propagate<B>(req: &mut Request<B>, header: &HeaderName) {
    if !req.headers().contains_key(header) {
        let value = match req.extensions().get::<CorrelationId>() {
            Some(id) => id.header_value().clone(),
            None => id::generate().into_header_value(),
        };
        req.headers_mut().insert(header, value);
    }
    let child = {
        let ctx = req.extensions().get::<TraceContext>();
        // Only the one `traceparent` is compared (its `tracestate` is not parsed): a repeated
        // or invalid one is replaced.
        let mut values = req.headers().get_all(&TRACEPARENT).iter();
        let existing = match (values.next(), values.next()) {
            (Some(one), None) => TraceContext::parse(one.as_bytes()).ok(),
            _ => None,
        };
        if keep_callers(existing.as_ref(), ctx) {
            return;
        }
        ctx.map_or_else(TraceContext::new_root, TraceContext::child)
    };
    let headers = req.headers_mut();
    headers.insert(&TRACEPARENT, child.traceparent());
    match child.state() {
        Some(state) => {
            headers.insert(&TRACESTATE, state.header_value().clone());
        }
        // A tracestate belongs to its traceparent: never send a stale one with ours.
        None => {
            headers.remove(&TRACESTATE);
        }
    }
}

/// Whether a valid `traceparent` the outgoing request already carries (`existing`) is the
/// caller's own, to be kept, rather than the one the case came in with (`ctx`, from the
/// extensions): a gateway passing an incoming request on carries its header along, and the next
/// hop must get a child of it, with a span id of its own (W3C Trace Context). Invalid or absent
/// values are replaced.
fn keep_callers(existing: Option<&TraceContext>, ctx: Option<&TraceContext>) -> bool {
    match (existing, ctx) {
        (None, _) => false,
        (Some(e), Some(c)) => e.trace_id() != c.trace_id() || e.parent_id() != c.parent_id(),
        (Some(_), None) => true,
    }
}

/// Adds the correlation id (`_meta["tower-armor/requestId"]`) and a child `traceparent` (plus
/// `tracestate`) of `trace` (a new trace when `None`) to a JSON-RPC request's `params._meta`.
///
/// The caller's value is never changed: the answer borrows it when there is nothing to add (the
/// keys are already there, or `params` / `_meta` is not an object), and is a modified copy
/// otherwise. An id already there is kept; so is a `traceparent` already there when it is valid
/// and the caller's own. One that is invalid, or that is `trace` itself (the context the case
/// came in with, carried along by a gateway passing a request on) is replaced by a child.
///
/// ```
/// use serde_json::json;
/// use tower_armor_correlation_id::{TraceContext, with_correlation_meta};
/// use tower_armor_mcp::CorrelationId;
///
/// let req = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add"}});
/// let id = CorrelationId::parse(b"case-7").unwrap();
/// let out = with_correlation_meta(&req, &id, Some(&TraceContext::new_root()));
/// assert_eq!(out["params"]["_meta"]["tower-armor/requestId"], "case-7");
/// assert!(out["params"]["_meta"]["traceparent"].is_string());
/// assert!(req["params"].get("_meta").is_none(), "the caller's value is untouched");
/// ```
pub fn with_correlation_meta<'a>(
    request: &'a Value,
    id: &CorrelationId,
    trace: Option<&TraceContext>,
) -> Cow<'a, Value> {
    let Some(obj) = request.as_object() else {
        return Cow::Borrowed(request);
    };
    let mut keep_trace = false;
    let needs = match obj.get("params") {
        None | Some(Value::Null) => true,
        Some(Value::Object(params)) => match params.get("_meta") {
            None => true,
            Some(Value::Object(meta)) => {
                keep_trace = keeps_meta_trace(meta, trace);
                !meta.contains_key(META_REQUEST_ID) || !keep_trace
            }
            Some(_) => false,
        },
        Some(_) => false,
    };
    if !needs {
        return Cow::Borrowed(request);
    }
    let mut out = request.clone();
    let Some(out_obj) = out.as_object_mut() else {
        return Cow::Borrowed(request);
    };
    let params = out_obj
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    if params.is_null() {
        *params = Value::Object(Map::new());
    }
    let Some(meta) = params.as_object_mut().map(|p| {
        p.entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()))
    }) else {
        return Cow::Borrowed(request);
    };
    let Some(meta) = meta.as_object_mut() else {
        return Cow::Borrowed(request);
    };
    meta.entry(META_REQUEST_ID)
        .or_insert_with(|| Value::String(id.as_str().to_owned()));
    if !keep_trace {
        let child = match trace {
            Some(ctx) => ctx.child(),
            None => TraceContext::new_root(),
        };
        meta.insert(
            META_TRACEPARENT.to_owned(),
            Value::String(child.to_string()),
        );
        match child.state() {
            Some(state) => {
                meta.insert(
                    META_TRACESTATE.to_owned(),
                    Value::String(state.as_str().to_owned()),
                );
            }
            None => {
                meta.remove(META_TRACESTATE);
            }
        }
    }
    Cow::Owned(out)
}

/// Whether `_meta.traceparent` is there to stay (see [`with_correlation_meta`]).
fn keeps_meta_trace(meta: &Map<String, Value>, trace: Option<&TraceContext>) -> bool {
    let existing = meta
        .get(META_TRACEPARENT)
        .and_then(Value::as_str)
        .and_then(|s| TraceContext::parse(s.as_bytes()).ok());
    keep_callers(existing.as_ref(), trace)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::trace::TraceState;

    fn id() -> CorrelationId {
        CorrelationId::parse(b"case-1").unwrap()
    }

    #[test]
    fn meta_is_added_to_a_copy() {
        let ctx = TraceContext::new_root().with_state(Some(TraceState::parse(b"rojo=1").unwrap()));
        let req = json!({"jsonrpc":"2.0","id":1,"method":"tools/list"});
        let out = with_correlation_meta(&req, &id(), Some(&ctx));
        assert!(matches!(out, Cow::Owned(_)));
        let meta = &out["params"]["_meta"];
        assert_eq!(meta[META_REQUEST_ID], "case-1");
        assert_eq!(meta[META_TRACESTATE], "rojo=1");
        let tp = TraceContext::parse(meta[META_TRACEPARENT].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(tp.trace_id(), ctx.trace_id());
        assert_ne!(tp.parent_id(), ctx.parent_id());
        assert!(req.get("params").is_none());
    }

    #[test]
    fn existing_keys_are_kept_and_nothing_to_add_borrows() {
        let req = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"add","_meta":{"progressToken":"p","tower-armor/requestId":"mine",
            "traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}});
        let out = with_correlation_meta(&req, &id(), None);
        assert!(matches!(out, Cow::Borrowed(_)));

        let req = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
            "name":"add","_meta":{"progressToken":"p","tower-armor/requestId":"mine"}}});
        let out = with_correlation_meta(&req, &id(), None);
        let meta = &out["params"]["_meta"];
        assert_eq!(meta[META_REQUEST_ID], "mine");
        assert_eq!(meta["progressToken"], "p");
        assert!(meta[META_TRACEPARENT].is_string());
        assert!(meta.get(META_TRACESTATE).is_none());
        assert!(req["params"]["_meta"].get(META_TRACEPARENT).is_none());
    }

    #[test]
    fn meta_traceparents_passed_on_or_invalid_are_replaced() {
        let case = TraceContext::new_root();
        let call = |tp: Value| {
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
                "name":"add","_meta":{"tower-armor/requestId":"mine","traceparent":tp}}})
        };
        // The case's own context, carried along: a child replaces it.
        let req = call(Value::String(case.to_string()));
        let out = with_correlation_meta(&req, &id(), Some(&case));
        let sent = out["params"]["_meta"][META_TRACEPARENT].as_str().unwrap();
        let sent = TraceContext::parse(sent.as_bytes()).unwrap();
        assert_eq!(sent.trace_id(), case.trace_id());
        assert_ne!(sent.parent_id(), case.parent_id());
        assert_eq!(req["params"]["_meta"][META_TRACEPARENT], case.to_string());
        // Invalid values are replaced.
        for bad in [json!("00-bad"), json!(7), Value::Null] {
            let req = call(bad.clone());
            let out = with_correlation_meta(&req, &id(), Some(&case));
            let sent = out["params"]["_meta"][META_TRACEPARENT].as_str().unwrap();
            assert!(TraceContext::parse(sent.as_bytes()).is_ok(), "{bad}");
        }
        // A valid one of the caller's own is kept, and nothing is copied.
        let own = TraceContext::new_root();
        let req = call(Value::String(own.to_string()));
        let out = with_correlation_meta(&req, &id(), Some(&case));
        assert!(matches!(out, Cow::Borrowed(_)));
    }

    #[test]
    fn non_object_params_are_left_alone() {
        for req in [
            json!({"jsonrpc":"2.0","id":1,"method":"x","params":[1,2]}),
            json!({"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":"odd"}}),
            json!([1]),
        ] {
            assert!(matches!(
                with_correlation_meta(&req, &id(), None),
                Cow::Borrowed(_)
            ));
        }
        let req = json!({"jsonrpc":"2.0","id":1,"method":"x","params":null});
        let out = with_correlation_meta(&req, &id(), None);
        assert_eq!(out["params"]["_meta"][META_REQUEST_ID], "case-1");
    }
}
