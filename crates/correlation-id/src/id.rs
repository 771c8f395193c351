//! Correlation ids: reading an incoming `x-request-id` (validated, never trusted verbatim) and
//! generating new ones (UUID version 7: time-ordered, 74 random bits).
//!
//! Pure code: no runtime.

use std::fmt;

use http::{HeaderMap, HeaderName};
use tower_armor_mcp::{CorrelationId, InvalidCorrelationId};

use crate::{hex, random};

/// The default correlation header, `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Length of a generated id (a hyphenated UUID).
pub const GENERATED_LEN: usize = 36;

/// What a request's correlation header held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IncomingId {
    /// A valid id (1–128 characters of `[A-Za-z0-9._:-]`), taken as is.
    Accepted(CorrelationId),
    /// No header.
    Missing,
    /// A header that is not a valid id: refused, never echoed or logged verbatim.
    Rejected(RejectedId),
}

/// Why an incoming id was refused, and how long it was (the only facts about it that are safe to
/// log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedId {
    /// Length in bytes of the (first) value.
    pub len: usize,
    /// Why it was refused.
    pub reason: RejectReason,
}

/// Why an incoming id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// The value breaks [`CorrelationId::parse`]'s rules.
    Invalid(InvalidCorrelationId),
    /// The header came more than once (which one would be the id?).
    Multiple,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Invalid(e) => fmt::Display::fmt(e, f),
            RejectReason::Multiple => f.write_str("header sent more than once"),
        }
    }
}

/// Reads the correlation header `name` of a request.
pub fn incoming_id(headers: &HeaderMap, name: &HeaderName) -> IncomingId {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return IncomingId::Missing;
    };
    let len = first.len();
    if values.next().is_some() {
        return IncomingId::Rejected(RejectedId {
            len,
            reason: RejectReason::Multiple,
        });
    }
    match CorrelationId::from_header(first) {
        Ok(id) => IncomingId::Accepted(id),
        Err(e) => IncomingId::Rejected(RejectedId {
            len,
            reason: RejectReason::Invalid(e),
        }),
    }
}

/// Writes a new UUID version 7 (48-bit Unix milliseconds, then 74 random bits) into `out`, in
/// the usual lowercase hyphenated form, and returns it as text.
pub fn generate_into(out: &mut [u8; GENERATED_LEN]) -> &str {
    fill(out);
    // Only hex digits and '-'.
    std::str::from_utf8(out).unwrap_or_default()
}

/// Writes a new UUID version 7 into `out` (see [`generate_into`]).
fn fill(out: &mut [u8; GENERATED_LEN]) {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // 48 bits of time, the version (7), 12 random bits; then the variant (0b10), 62 random bits.
    let hi = ((millis & 0xffff_ffff_ffff) << 16) | 0x7000 | (random::next_u64() & 0x0fff);
    let lo = 0x8000_0000_0000_0000 | (random::next_u64() >> 2);
    let (hi, lo) = (hex::u64_digits(hi), hex::u64_digits(lo));
    out[..8].copy_from_slice(&hi[..8]);
    out[8] = b'-';
    out[9..13].copy_from_slice(&hi[8..12]);
    out[13] = b'-';
    out[14..18].copy_from_slice(&hi[12..]);
    out[18] = b'-';
    out[19..23].copy_from_slice(&lo[..4]);
    out[23] = b'-';
    out[24..].copy_from_slice(&lo[4..]);
}

/// A new correlation id (UUID version 7).
pub fn generate() -> CorrelationId {
    let mut buf = [0u8; GENERATED_LEN];
    fill(&mut buf);
    // One allocation holding the buffer and its reference count, so the clones that go into the
    // request header and the echo share it (a `Bytes` made from a `Vec` would allocate again on
    // its first clone).
    let value = http::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .expect("hex digits and '-' make a valid header value");
    // 36 characters of hex digits and '-': always within the rules.
    CorrelationId::from_header_value(value)
        .expect("a generated UUID is a valid correlation id")
        .with_generated(true)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn generated_ids_are_uuid_v7() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        let s = a.as_str();
        assert_eq!(s.len(), GENERATED_LEN);
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('7'), "version 7: {s}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "RFC 9562 variant: {s}"
        );
        // The first 48 bits are the Unix time in milliseconds.
        let millis = u64::from_str_radix(&format!("{}{}", parts[0], parts[1]), 16).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(millis) < 60_000);
    }

    #[test]
    fn generated_ids_sort_by_time() {
        let a = generate();
        std::thread::yield_now();
        let mut later = generate();
        // Same millisecond: order within it is random; wait for the clock to move.
        let start = std::time::SystemTime::now();
        while later.as_str()[..13] == a.as_str()[..13]
            && start.elapsed().unwrap_or_default() < std::time::Duration::from_secs(1)
        {
            later = generate();
        }
        assert!(later.as_str() > a.as_str());
    }

    #[test]
    fn incoming_ids() {
        let name = &X_REQUEST_ID;
        let mut h = HeaderMap::new();
        assert_eq!(incoming_id(&h, name), IncomingId::Missing);
        h.insert(name, HeaderValue::from_static("case-42:a.b_c"));
        assert_eq!(
            incoming_id(&h, name),
            IncomingId::Accepted(CorrelationId::parse(b"case-42:a.b_c").unwrap())
        );
        h.insert(name, HeaderValue::from_static("bad id"));
        assert_eq!(
            incoming_id(&h, name),
            IncomingId::Rejected(RejectedId {
                len: 6,
                reason: RejectReason::Invalid(InvalidCorrelationId::BadCharacter)
            })
        );
        h.insert(name, HeaderValue::from_static(""));
        assert!(matches!(
            incoming_id(&h, name),
            IncomingId::Rejected(RejectedId {
                len: 0,
                reason: RejectReason::Invalid(InvalidCorrelationId::Empty)
            })
        ));
        h.insert(name, HeaderValue::from_bytes(&[b'a'; 129]).unwrap());
        assert!(matches!(
            incoming_id(&h, name),
            IncomingId::Rejected(RejectedId {
                len: 129,
                reason: RejectReason::Invalid(InvalidCorrelationId::TooLong)
            })
        ));
        h.insert(name, HeaderValue::from_static("one"));
        h.append(name, HeaderValue::from_static("two"));
        assert!(matches!(
            incoming_id(&h, name),
            IncomingId::Rejected(RejectedId {
                reason: RejectReason::Multiple,
                ..
            })
        ));
    }
}
