//! Fuzzes the incoming correlation id check (`x-request-id`): one or two header values.
//! Must never panic; an accepted id is the value itself and within the rules; a rejected one
//! reports the value's length; generated ids are always valid.
#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_armor_correlation_id::{
    CorrelationId, IncomingId, RejectReason, X_REQUEST_ID, generate, incoming_id,
};

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|b| *b == 0xff) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut headers = HeaderMap::new();
    let Ok(value) = HeaderValue::from_bytes(first) else {
        assert_eq!(incoming_id(&headers, &X_REQUEST_ID), IncomingId::Missing);
        return;
    };
    headers.insert(&X_REQUEST_ID, value);
    let two = match second.map(HeaderValue::from_bytes) {
        Some(Ok(v)) => {
            headers.append(&X_REQUEST_ID, v);
            true
        }
        _ => false,
    };
    match incoming_id(&headers, &X_REQUEST_ID) {
        IncomingId::Accepted(id) => {
            assert!(!two);
            assert_eq!(id.as_str().as_bytes(), first);
            assert!((1..=CorrelationId::MAX_LEN).contains(&id.as_str().len()));
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b))
            );
        }
        IncomingId::Rejected(r) => {
            assert_eq!(r.len, first.len());
            match r.reason {
                RejectReason::Multiple => assert!(two),
                RejectReason::Invalid(e) => {
                    assert!(!two);
                    assert_eq!(CorrelationId::parse(first), Err(e));
                    // Refused only when it really breaks the rules (checked byte by byte here,
                    // against the chunked check in the crate).
                    assert!(
                        !(1..=CorrelationId::MAX_LEN).contains(&first.len())
                            || first
                                .iter()
                                .any(|b| !(b.is_ascii_alphanumeric() || b".:_-".contains(b)))
                    );
                }
            }
        }
        IncomingId::Missing => unreachable!("a header was set"),
    }
    if data.first() == Some(&0) {
        let id = generate();
        assert!(CorrelationId::parse(id.as_str().as_bytes()).is_ok());
    }
});
