//! Keeping compression away from SSE.
//!
//! A compressor buffers bytes until it has enough to compress, which holds SSE events (and
//! keep-alives) back; and stripping a `Content-Encoding` afterwards corrupts the stream.
//! tower-http's `DefaultPredicate` excludes `text/event-stream`, but a custom predicate given to
//! `CompressionLayer::compress_when` replaces it, exclusion included. These functions have the
//! shape of tower-http's closure predicates (`Fn(StatusCode, Version, &HeaderMap, &Extensions) ->
//! bool + Clone`, which implement its `Predicate` trait), so they combine with any predicate
//! without this crate depending on tower-http's compression features:
//!
//! ```
//! use http::{Extensions, HeaderMap, StatusCode, Version};
//! use tower_http::compression::{CompressionLayer, Predicate, predicate::SizeAbove};
//! use tower_armor_sse::compression::{exclude_event_stream, not_event_stream};
//!
//! // A tower-http predicate: add the exclusion with `and`.
//! let layer = CompressionLayer::new().compress_when(SizeAbove::new(256).and(not_event_stream));
//! // A closure predicate: wrap it.
//! let layer = CompressionLayer::new().compress_when(exclude_event_stream(
//!     |status: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| status.is_success(),
//! ));
//! ```

use http::{Extensions, HeaderMap, StatusCode, Version};

pub use crate::policy::is_event_stream;

/// A compression predicate: `false` for `text/event-stream` answers, `true` otherwise.
pub fn not_event_stream(
    _status: StatusCode,
    _version: Version,
    headers: &HeaderMap,
    _extensions: &Extensions,
) -> bool {
    !is_event_stream(headers)
}

/// Wraps a compression predicate so that it never compresses `text/event-stream`, whatever it
/// says.
pub fn exclude_event_stream<F>(
    predicate: F,
) -> impl Fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool + Clone
where
    F: Fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool + Clone,
{
    move |status, version, headers, extensions| {
        !is_event_stream(headers) && predicate(status, version, headers, extensions)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http::header::CONTENT_TYPE;

    use super::*;

    /// The bound tower-http puts on closure predicates.
    fn takes_predicate<P>(p: P) -> P
    where
        P: Fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool + Clone,
    {
        p
    }

    #[test]
    fn event_streams_are_never_compressed() {
        let mut sse = HeaderMap::new();
        sse.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        let mut json = HeaderMap::new();
        json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let ext = Extensions::new();
        let always = takes_predicate(exclude_event_stream(
            |_, _, _: &HeaderMap, _: &Extensions| true,
        ));
        assert!(!always(StatusCode::OK, Version::HTTP_11, &sse, &ext));
        assert!(always(StatusCode::OK, Version::HTTP_11, &json, &ext));
        let never = exclude_event_stream(|_, _, _: &HeaderMap, _: &Extensions| false);
        assert!(!never(StatusCode::OK, Version::HTTP_11, &json, &ext));
        let p = takes_predicate(not_event_stream);
        assert!(!p(StatusCode::OK, Version::HTTP_11, &sse, &ext));
        assert!(p(StatusCode::OK, Version::HTTP_11, &json, &ext));
    }
}
