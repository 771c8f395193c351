//! [`SlicedHeader`]: a header value that shares its bytes with a large request head, as a server
//! hands one out, to test that a table keeping it copies it instead of pinning the head.

use bytes::Bytes;
use http::HeaderValue;

/// A 36-byte header value sliced out of a 64 KiB request head.
///
/// ```
/// use tower_armor_test_support::SlicedHeader;
/// let s = SlicedHeader::new();
/// assert!(s.shares_head(&s.value));
/// let copy = http::HeaderValue::from_bytes(s.value.as_bytes()).unwrap();
/// assert!(!s.shares_head(&copy));
/// ```
#[derive(Debug, Clone)]
pub struct SlicedHeader {
    /// The request head the value is sliced from.
    pub head: Bytes,
    /// The value, pointing into `head`.
    pub value: HeaderValue,
}

impl SlicedHeader {
    /// A fresh head and a value sliced from it.
    pub fn new() -> Self {
        let head = Bytes::from(vec![b'a'; 64 << 10]);
        let value = HeaderValue::from_maybe_shared(head.slice(100..136))
            .expect("ASCII letters are a valid header value");
        SlicedHeader { head, value }
    }

    /// Whether `v`'s bytes lie inside the head (so keeping `v` keeps the head alive).
    pub fn shares_head(&self, v: &HeaderValue) -> bool {
        let p = v.as_bytes().as_ptr() as usize;
        let start = self.head.as_ptr() as usize;
        (start..start + self.head.len()).contains(&p)
    }
}

impl Default for SlicedHeader {
    fn default() -> Self {
        Self::new()
    }
}
