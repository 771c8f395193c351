//! gRPC answers (`application/grpc`, `application/grpc+<codec>`) under the deadline: where
//! their length-prefixed messages begin and end, and the trailers that end one the layer gives
//! up on.
//!
//! A gRPC answer's body is a sequence of messages, each a 1-byte flag, a 4-byte big-endian
//! length and that many bytes; its status comes last, in HTTP/2 trailers. An answer cut in the
//! middle of a message (or ended by a reset stream) reaches the caller as `INTERNAL`, a protocol
//! error, not as the deadline it was: so the layer ends it at a message boundary with trailers of
//! its own, `grpc-status: 4` (`DEADLINE_EXCEEDED`; at the drain `14`, `UNAVAILABLE`), as a gRPC
//! server that gives up on a call does. gRPC-Web answers (whose trailers travel inside the body)
//! are not tracked: like other non-SSE answers, they fail with the ending's error.

use http::HeaderMap;
use tower_armor_mcp::{grpc_status, grpc_status_headers};

use crate::drain::Ending;

/// Tracks the message boundaries of a gRPC answer's body, byte counts only (nothing is kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GrpcFrames {
    /// Bytes of the current message's 5-byte prefix read so far (5: reading its payload).
    prefix: u8,
    /// The length read so far from the prefix, then the payload bytes still to come.
    left: u32,
}

impl GrpcFrames {
    /// Between two messages (or before the first).
    pub(crate) fn at_boundary(&self) -> bool {
        self.prefix == 0
    }

    /// Feeds `data`, stopping just past the first message that ends in it: returns that offset,
    /// or `None` (everything fed) when no message ends in `data`.
    pub(crate) fn feed_to_boundary(&mut self, data: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < data.len() {
            if self.prefix < 5 {
                // The flag byte, then the length's four bytes, most significant first.
                if self.prefix > 0 {
                    self.left = self.left << 8 | u32::from(data[i]);
                }
                self.prefix += 1;
                i += 1;
                if self.prefix == 5 && self.left == 0 {
                    // An empty message ends with its prefix.
                    self.prefix = 0;
                    return Some(i);
                }
            } else {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(data.len() - i);
                i += n;
                // (`n` is at most `left`, a `u32`.)
                self.left -= u32::try_from(n).unwrap_or(self.left);
                if self.left == 0 {
                    self.prefix = 0;
                    return Some(i);
                }
            }
        }
        None
    }

    /// Feeds all of `data`.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while let Some(n) = self.feed_to_boundary(data) {
            data = &data[n..];
        }
    }
}

/// The trailers that end a gRPC answer the layer gave up on: the status of the ending's error
/// (the table of [`grpc_status`]) and its message.
pub(crate) fn trailers(ending: Ending) -> HeaderMap {
    let status = grpc_status(&*ending.error());
    grpc_status_headers(status.code, &status.message)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
        m.extend(std::iter::repeat_n(0xAB, len));
        m
    }

    #[test]
    fn boundaries_of_whole_and_split_messages() {
        let mut f = GrpcFrames::default();
        assert!(f.at_boundary());
        let two = [message(3), message(0)].concat();
        assert_eq!(f.feed_to_boundary(&two), Some(8));
        assert_eq!(f.feed_to_boundary(&two[8..]), Some(5));
        assert!(f.at_boundary());
        // A prefix split after two bytes, then the payload in two pieces.
        let m = message(300);
        assert_eq!(f.feed_to_boundary(&m[..2]), None);
        assert!(!f.at_boundary());
        assert_eq!(f.feed_to_boundary(&m[2..100]), None);
        assert_eq!(f.feed_to_boundary(&m[100..]), Some(205));
        assert!(f.at_boundary());
    }

    #[test]
    fn the_trailers_say_deadline_exceeded() {
        let t = trailers(Ending::Deadline);
        assert_eq!(t["grpc-status"], "4");
        assert!(t.contains_key("grpc-message"));
        assert_eq!(trailers(Ending::Drain)["grpc-status"], "14");
    }

    proptest! {
        /// Cut anywhere, the tracker is at a boundary exactly where a message ends.
        #[test]
        fn boundaries_match_the_messages(
            lens in proptest::collection::vec(0usize..40, 1..8),
            cuts in proptest::collection::vec(0usize..400, 0..10),
        ) {
            let bytes: Vec<u8> = lens.iter().flat_map(|&l| message(l)).collect();
            let mut ends = std::collections::BTreeSet::new();
            let mut at = 0;
            for l in &lens {
                at += 5 + l;
                ends.insert(at);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            let (mut f, mut start, mut found) = (GrpcFrames::default(), 0, Vec::new());
            for cut in cuts {
                let mut piece = &bytes[start..cut];
                let mut base = start;
                while let Some(n) = f.feed_to_boundary(piece) {
                    found.push(base + n);
                    base += n;
                    piece = &piece[n..];
                }
                prop_assert_eq!(f.at_boundary(), cut == 0 || ends.contains(&cut));
                start = cut;
            }
            prop_assert_eq!(found, ends.into_iter().collect::<Vec<_>>());
        }
    }
}
