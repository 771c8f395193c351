//! The correlation-id bench's request and answer, shared by the criterion bench
//! (`benches/correlation_id.rs`) and the interleaved probe (`examples/correlation_interleaved.rs`).
//! Included with `#[path]`.

use http::{HeaderValue, Request, Response};

/// A `POST /mcp` as an MCP client sends it, with an `x-request-id` when `id`.
pub(crate) fn request(id: bool) -> Request<()> {
    let mut b = Request::post("/mcp")
        .header("content-type", HeaderValue::from_static("application/json"))
        .header(
            "accept",
            HeaderValue::from_static("application/json, text/event-stream"),
        );
    if id {
        // Shared bytes, like a header hyper parsed: cloning is a reference count.
        b = b.header("x-request-id", HeaderValue::from_static("case-42:order-1"));
    }
    b.body(()).expect("a valid request")
}

/// The inner service's JSON answer.
pub(crate) fn answer() -> Response<()> {
    let mut r = Response::new(());
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}
