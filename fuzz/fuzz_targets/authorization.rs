//! Fuzzes the bearer `Authorization` parser: arbitrary header bytes. Must never panic; an accepted
//! token must be a non-empty `token68` ending the value after exactly `Bearer ` (any case); every
//! refusal must be a reason with a description, and only "no credentials" reasons may lack the
//! RFC 6750 error code; only an empty value is missing credentials.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_armor_bearer_auth::{AuthFailure, DEFAULT_MAX_HEADER_BYTES, parse_authorization};

fn is_token68(t: &[u8]) -> bool {
    let body = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
    body > 0
        && t[..body].iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

fuzz_target!(|data: &[u8]| {
    match parse_authorization(data) {
        Ok(token) => {
            assert!(data.len() <= DEFAULT_MAX_HEADER_BYTES);
            assert_eq!(data.len(), token.len() + 7);
            assert!(data[..6].eq_ignore_ascii_case(b"bearer"));
            assert_eq!(data[6], b' ');
            assert_eq!(&data[7..], token);
            assert!(is_token68(token));
        }
        Err(reason) => {
            assert!(!reason.description().is_empty());
            assert!(!reason.as_str().is_empty());
            let silent = matches!(reason, AuthFailure::Missing | AuthFailure::OtherScheme);
            assert_eq!(reason.error_code().is_none(), silent);
            // An empty value is no credentials at all (RFC 6750 §3.1's challenge without an
            // error code); any other value is never missing.
            assert_eq!(reason == AuthFailure::Missing, data.is_empty());
            assert_ne!(
                reason,
                AuthFailure::UnknownToken,
                "the parser does not look tokens up"
            );
            if data.len() > DEFAULT_MAX_HEADER_BYTES {
                assert_eq!(reason, AuthFailure::TooLong);
            }
        }
    }
});
