//! Fuzzes the inspector's parser: arbitrary body bytes with mirrored headers chosen by the input.
//! Must never panic; every rejection must carry a 4xx status and a JSON-RPC code.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_armor_mcp::inspect::{headers, inspect_post};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    // The next line (up to '\n') is a header value, the remainder the body.
    let (hval, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (&b""[..], rest),
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(hval) {
        if flags & 1 != 0 {
            h.insert(&headers::MCP_NAME, v.clone());
        }
        if flags & 2 != 0 {
            h.insert(&headers::MCP_METHOD, v.clone());
        }
        if flags & 4 != 0 {
            h.insert(&headers::PROTOCOL_VERSION, HeaderValue::from_static("2026-07-28"));
        }
        if flags & 8 != 0 {
            h.insert(&headers::SESSION_ID, v);
        }
    }
    match inspect_post(&h, body) {
        Ok(facts) => {
            // Facts must be self-consistent.
            if facts.tool().is_some() {
                assert!(facts.method().is_some());
            }
            if let Some(id) = facts.id() {
                assert!(id.len() <= 256);
            }
            // Only a cancellation names another request, within the same id limit.
            if let Some(target) = facts.cancelled_request() {
                assert!(target.len() <= 256);
                assert!(facts.id().is_none());
                assert_eq!(
                    facts.method(),
                    Some(&tower_armor_mcp::Method::NotificationsCancelled)
                );
            }
            // A request that says it is stateless in its header has no session, except
            // `initialize`.
            if flags & 4 != 0 && facts.method() != Some(&tower_armor_mcp::Method::Initialize) {
                assert!(facts.session_id().is_none());
            }
        }
        Err(rej) => {
            assert!(rej.status.is_client_error());
            assert!(rej.code < 0);
        }
    }
});
