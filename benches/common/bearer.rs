//! The bearer-auth bench's request, token table and inner service, shared by the criterion
//! bench (`benches/bearer_auth.rs`) and the interleaved probe (`examples/bearer_interleaved.rs`)
//! so both measure the same thing. Included with `#[path]`.

use std::convert::Infallible;

use http::{HeaderValue, Request, Response, header};
use tower::{Service, service_fn};
use tower_armor_bearer_auth::BearerAuthLayer;
use tower_armor_mcp::Principal;

/// The token every accepted request presents.
pub(crate) const TOKEN: &str = "Zq9xW3vKpL7mT2bN8cR5";

/// A `POST /mcp` carrying `authorization` (a whole header value, `Bearer …`).
pub(crate) fn request(authorization: &'static str) -> Request<()> {
    let mut r = Request::post("/mcp").body(()).expect("a valid request");
    r.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static(authorization),
    );
    r
}

/// A layer with `n` tokens, [`TOKEN`] in the middle.
pub(crate) fn tokens(n: usize) -> BearerAuthLayer {
    let spec: Vec<String> = (0..n)
        .map(|i| {
            if i == n / 2 {
                format!("p{i}:{TOKEN}")
            } else {
                format!("p{i}:other-token-{i:04}-xxxxxxxx")
            }
        })
        .collect();
    BearerAuthLayer::builder()
        .tokens(&spec.join(","))
        .build()
        .expect("valid tokens")
}

/// The inner service: it reads the principal ours hands it, so the comparison is fair.
pub(crate) fn bare()
-> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send> + Copy {
    service_fn(|req: Request<()>| async move {
        let n = req
            .extensions()
            .get::<Principal>()
            .map_or(0, |p| p.name().len());
        Ok::<_, Infallible>(Response::new(n.to_string()))
    })
}
