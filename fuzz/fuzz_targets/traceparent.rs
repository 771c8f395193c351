//! Fuzzes the W3C trace context parsers: `traceparent` and `tracestate` values, alone and as
//! request headers. Must never panic; whatever parses must write back a valid version-00 value
//! with the same ids, and a valid `tracestate` must re-parse to the same members.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_armor_correlation_id::trace::{TRACEPARENT, TRACESTATE};
use tower_armor_correlation_id::{TraceContext, TraceState};

fuzz_target!(|data: &[u8]| {
    if let Ok(ctx) = TraceContext::parse(data) {
        let written = ctx.to_string();
        assert_eq!(written.len(), 55);
        let back = TraceContext::parse(written.as_bytes()).expect("our own output parses");
        assert_eq!(back.trace_id(), ctx.trace_id());
        assert_eq!(back.parent_id(), ctx.parent_id());
        assert_eq!(back.flags(), ctx.flags().propagated());
        // A version-00 value with only known flags is written back byte for byte.
        if data.starts_with(b"00-") && ctx.flags().to_u8() & !0x03 == 0 {
            assert_eq!(written.as_bytes(), data);
        }
        let child = ctx.child();
        assert_eq!(child.trace_id(), ctx.trace_id());
        assert!(TraceContext::parse(child.to_string().as_bytes()).is_ok());
    } else {
        // Anything rejected is not a 55-character lowercase version-00 value with non-zero ids.
        assert!(
            !(data.len() == 55
                && data.starts_with(b"00-")
                && data
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b) || *b == b'-')
                && data[2] == b'-'
                && data[35] == b'-'
                && data[52] == b'-'
                && data[3..35].iter().any(|b| *b != b'0')
                && data[36..52].iter().any(|b| *b != b'0')
                && !data[3..35].contains(&b'-')
                && !data[36..52].contains(&b'-')
                && !data[53..55].contains(&b'-'))
        );
    }

    if let Ok(state) = TraceState::parse(data) {
        assert!((1..=32).contains(&state.members()));
        let again = TraceState::parse(state.as_str().as_bytes()).expect("re-parses");
        assert_eq!(again.members(), state.members());
    }

    // As headers: the first line is `traceparent`, the following lines `tracestate` lines.
    let mut lines = data.split(|b| *b == b'\n');
    let mut headers = HeaderMap::new();
    if let Some(Ok(tp)) = lines.next().map(HeaderValue::from_bytes) {
        headers.insert(&TRACEPARENT, tp);
    }
    for line in lines.take(4) {
        if let Ok(ts) = HeaderValue::from_bytes(line) {
            headers.append(&TRACESTATE, ts);
        }
    }
    if let Ok(Some(ctx)) = TraceContext::from_headers(&headers) {
        if let Some(state) = ctx.state() {
            assert!((1..=32).contains(&state.members()));
            assert!(TraceState::parse(state.as_str().as_bytes()).is_ok());
        }
    }
});
