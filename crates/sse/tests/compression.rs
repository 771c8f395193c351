//! The compression predicates with tower-http's `CompressionLayer`: an SSE answer leaves
//! uncompressed (a compressor would hold events back), other answers are compressed as the
//! user's predicate says.

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use http::{Extensions, HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_sse::compression::{exclude_event_stream, not_event_stream};
use tower_http::compression::predicate::SizeAbove;
use tower_http::compression::{CompressionLayer, Predicate};

const EVENTS: &str = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";

/// Sends one request accepting gzip to an answer of `content_type` (a body of 4 KiB) under
/// `layer`; returns the answer's `Content-Encoding` and whether the body came out unchanged.
async fn answer<P>(
    layer: &CompressionLayer<P>,
    content_type: &'static str,
) -> (Option<String>, bool)
where
    P: Predicate + Send + Sync + 'static,
{
    let body = EVENTS.repeat(4096 / EVENTS.len() + 1);
    let sent = body.clone();
    let svc = layer.layer(service_fn(move |_req: Request<Full<Bytes>>| {
        let body = sent.clone();
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .header(CONTENT_TYPE, content_type)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
        }
    }));
    let req = Request::builder()
        .header(ACCEPT_ENCODING, "gzip")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    let encoding = resp
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (encoding, bytes == body.as_bytes())
}

#[tokio::test]
async fn event_streams_leave_uncompressed_whatever_the_predicate() {
    let gzip = Some("gzip".to_owned());
    let and = CompressionLayer::new().compress_when(SizeAbove::new(0).and(not_event_stream));
    assert_eq!(answer(&and, "text/event-stream").await, (None, true));
    assert_eq!(
        answer(&and, "application/json").await,
        (gzip.clone(), false)
    );

    let wrapped = CompressionLayer::new().compress_when(exclude_event_stream(
        |status: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| status.is_success(),
    ));
    assert_eq!(
        answer(&wrapped, "text/event-stream; charset=utf-8").await,
        (None, true)
    );
    assert_eq!(
        answer(&wrapped, "application/json").await,
        (gzip.clone(), false)
    );

    // Why: a custom predicate replaces tower-http's default, and its exclusion of SSE with it.
    let bare = CompressionLayer::new().compress_when(SizeAbove::new(0));
    assert_eq!(answer(&bare, "text/event-stream").await, (gzip, false));
}
