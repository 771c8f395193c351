//! The rate-limit bench's requests, inner service and tower_governor key, shared by the
//! criterion bench (`benches/rate_limit.rs`) and the interleaved probe
//! (`examples/rate_limit_interleaved.rs`). Included with `#[path]`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use futures_util::future::ready;
use http::{Request, Response};
use tower::{Service, service_fn};
use tower_armor_mcp::McpBody;
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

/// How many client addresses the requests cycle through.
pub(crate) const CLIENTS: u32 = 1024;

/// A `POST /mcp` from client `i % CLIENTS` (a `SocketAddr` in its extensions, which every
/// variant reads).
pub(crate) fn request(i: impl Into<u64>) -> Request<McpBody> {
    let mut req = Request::post("/mcp")
        .body(McpBody::empty())
        .expect("a valid request");
    let client = u32::try_from(i.into() % u64::from(CLIENTS)).expect("below CLIENTS");
    let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client));
    req.extensions_mut().insert(SocketAddr::new(ip, 40_000));
    req
}

/// The inner service of every variant: an empty 200. The body type is whatever the variant
/// needs (tower_governor needs the one its errors convert into: axum's `Body`).
pub(crate) fn inner<B: Default>()
-> impl Service<Request<McpBody>, Response = Response<B>, Error = Infallible> + Clone {
    service_fn(|_req: Request<McpBody>| ready(Ok::<_, Infallible>(Response::new(B::default()))))
}

/// tower_governor's key: the same `SocketAddr` extension ours reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerSocketAddr;

impl KeyExtractor for PeerSocketAddr {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<IpAddr, GovernorError> {
        req.extensions()
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}
