//! Pure decisions: which answers are SSE, which requests open long-lived streams, and the header
//! fixes for SSE answers.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH};
use http::{HeaderMap, HeaderName, HeaderValue, Request};

use tower_armor_mcp::inspect::headers::{LAST_EVENT_ID, SESSION_ID};
use tower_armor_mcp::inspect::{canonical_call_event_id, opens_long_lived_stream};
use tower_armor_mcp::observe::split_unquoted;

/// `X-Accel-Buffering` (nginx: `no` turns off proxy buffering for this answer).
pub static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

pub use tower_armor_mcp::observe::is_event_stream;

/// Whether a request opens a long-lived stream (a 2025-11-25 GET listen stream or a 2026-07-28
/// `subscriptions/listen` POST): the only streams the idle timeout applies to. The inspector's
/// [`McpRequest`](tower_armor_mcp::McpRequest) when it is in the extensions, else the request's head: see
/// [`opens_long_lived_stream`].
pub fn is_long_lived<B>(req: &Request<B>) -> bool {
    opens_long_lived_stream(req)
}

/// The session of a standalone `GET` stream (a 2025-11-25 listen stream, or its reconnection):
/// a long-lived GET that names its session.
pub(crate) fn standalone_listen_session<B>(req: &Request<B>) -> Option<HeaderValue> {
    if req.method() != http::Method::GET || !is_long_lived(req) {
        return None;
    }
    req.headers().get(&SESSION_ID).cloned()
}

/// The `Last-Event-ID` of a GET resuming a call's stream, which the answer must not repeat
/// (see [`SseBody`](crate::SseBody)).
pub(crate) fn resumed_call_event<B>(req: &Request<B>) -> Option<bytes::Bytes> {
    if req.method() != http::Method::GET {
        return None;
    }
    req.headers()
        .get(&LAST_EVENT_ID)
        // As the inspector hands it to the server, which numbers the events it replays so.
        .and_then(canonical_call_event_id)
        .map(|id| bytes::Bytes::copy_from_slice(id.as_bytes()))
}

/// Whether the idle timeout applies to a request's stream: every long-lived stream
/// ([`is_long_lived`]), a 2025-11-25 GET that reconnects the listen stream included. rmcp's
/// event ids are `<index>/<request>` for a call's stream and a bare `<index>` for the listen
/// stream; only the call form resumes a call, so a client cannot dodge the timeout by sending
/// `Last-Event-ID: 0`. A GET resuming a call (`0/1`) and the call stream a POST opened are never
/// timed out: under 2026-07-28 closing a call's stream cancels the call.
pub fn idle_timeout_applies<B>(req: &Request<B>) -> bool {
    is_long_lived(req)
}

/// Makes an SSE answer's headers safe for proxies: `Cache-Control: no-cache` added to what it
/// says (unless it already says `no-cache` or `no-store`), `X-Accel-Buffering: no`, no
/// `Content-Length`. Never touches
/// `Content-Encoding`: returns whether one is present (a compressed stream, logged as an error by
/// the layer).
pub fn prepare_sse_headers(headers: &mut HeaderMap) -> bool {
    let cache_ok = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .any(|v| split_unquoted(v.as_bytes(), b',').any(forbids_caching));
    if !cache_ok {
        // Added, not replacing: the server's other directives (`no-transform`) stay.
        headers.append(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    headers.insert(&X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers.remove(CONTENT_LENGTH);
    tower_armor_mcp::observe::is_encoded(headers)
}

/// Whether one `Cache-Control` directive keeps the whole answer out of caches: `no-store`, or
/// an unqualified `no-cache` (`no-cache="Set-Cookie"` only concerns that field, RFC 9111
/// §5.2.2.4). A directive that merely contains either name does not count.
fn forbids_caching(directive: &[u8]) -> bool {
    let d = directive.trim_ascii();
    d.eq_ignore_ascii_case(b"no-store") || d.eq_ignore_ascii_case(b"no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CONTENT_ENCODING;
    use tower_armor_mcp::McpRequest;

    #[test]
    fn event_stream_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_event_stream(&h));
        for ct in [
            "text/event-stream",
            "Text/Event-Stream",
            "text/event-stream; charset=utf-8",
            " text/event-stream ;x=y",
        ] {
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(ct).unwrap(),
            );
            assert!(is_event_stream(&h), "{ct}");
        }
        for ct in ["application/json", "text/event-streams", "text/plain"] {
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_str(ct).unwrap(),
            );
            assert!(!is_event_stream(&h), "{ct}");
        }
    }

    #[test]
    fn long_lived_from_headers() {
        let get = Request::get("/mcp")
            .header("mcp-session-id", "s")
            .body(())
            .unwrap();
        assert!(is_long_lived(&get));
        assert!(is_long_lived(&Request::get("/mcp").body(()).unwrap()));
        // 2026-07-28 has no GET: refused at once, no stream.
        let stateless = Request::get("/mcp")
            .header("mcp-session-id", "s")
            .header("mcp-protocol-version", "2026-07-28")
            .body(())
            .unwrap();
        assert!(!is_long_lived(&stateless));
        let resume = Request::get("/mcp")
            .header("mcp-session-id", "s")
            .header("last-event-id", "3")
            .body(())
            .unwrap();
        // A bare event id reconnects the listen stream (rmcp's ids): long-lived, idle timeout.
        assert!(is_long_lived(&resume));
        assert!(idle_timeout_applies(&resume));
        let resume_call = Request::get("/mcp")
            .header("mcp-session-id", "s")
            .header("last-event-id", "3/7")
            .body(())
            .unwrap();
        assert!(!is_long_lived(&resume_call));
        assert!(!idle_timeout_applies(&resume_call));
        assert!(idle_timeout_applies(&get));
        let listen = Request::post("/mcp")
            .header("mcp-method", "subscriptions/listen")
            .body(())
            .unwrap();
        assert!(is_long_lived(&listen));
        let call = Request::post("/mcp")
            .header("mcp-method", "tools/call")
            .body(())
            .unwrap();
        assert!(!is_long_lived(&call));
        let plain = Request::post("/mcp").body(()).unwrap();
        assert!(!is_long_lived(&plain));
        assert!(!idle_timeout_applies(&plain));
        assert!(!idle_timeout_applies(&call));
        assert!(idle_timeout_applies(&listen));
        // The inspector's facts win when present.
        let mut get = Request::get("/mcp").body(()).unwrap();
        get.extensions_mut().insert(McpRequest::new(
            tower_armor_mcp::MessageKind::Request,
            Some(tower_armor_mcp::Method::ToolsCall),
            None,
        ));
        assert!(!is_long_lived(&get));
    }

    #[test]
    fn headers_are_fixed_and_encoding_kept() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("10"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
        assert!(!prepare_sse_headers(&mut h));
        let cc: Vec<_> = h.get_all(CACHE_CONTROL).iter().collect();
        assert_eq!(cc, ["max-age=60", "no-cache"], "added, the rest kept");
        assert_eq!(h[&X_ACCEL_BUFFERING], "no");
        assert!(h.get(CONTENT_LENGTH).is_none());

        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("no-cache, no-transform"),
        );
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(prepare_sse_headers(&mut h), "compressed");
        assert_eq!(h[CACHE_CONTROL], "no-cache, no-transform", "kept");
        assert_eq!(h[CONTENT_ENCODING], "gzip", "never stripped");

        // Directives, not substrings: a qualified `no-cache` leaves the stream cacheable, and so
        // does a name inside a quoted string.
        for (given, forbids) in [
            ("public, max-age=600, no-cache=\"Set-Cookie\"", false),
            ("x-no-store-ext", false),
            ("private=\"a, no-store\"", false),
            ("private=\"a\\\", no-store\", max-age=1", false),
            ("private, NO-STORE", true),
            ("max-age=0 , no-cache ", true),
            ("private=\"a, b\", no-store", true),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CACHE_CONTROL, HeaderValue::from_static(given));
            prepare_sse_headers(&mut h);
            let cc: Vec<_> = h.get_all(CACHE_CONTROL).iter().collect();
            if forbids {
                assert_eq!(cc, [given], "{given}");
            } else {
                assert_eq!(cc, [given, "no-cache"], "{given}");
            }
        }
    }
}
