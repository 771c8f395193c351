//! SipHash-2-4 with a 128-bit output (Aumasson and Bernstein, "SipHash: a fast short-input
//! PRF"), the keyed digest of the token table.
//!
//! SipHash is a pseudo-random function designed for short inputs, which is what a bearer token
//! is: ≈ 15 ns for a 20-byte token here, against ≈ 60 ns for SHA-256 with SHA-NI. Its rounds are
//! additions, rotations and xors, and how many run depends only on the input's length, so a
//! digest takes the same time for every token of a given length. Keyed with a random per-table
//! key, its output is unpredictable without the key: a client can neither aim at a table bucket
//! nor craft a token that matches another's digest (a forgery needs a 128-bit collision under a
//! key it does not know).

use std::hash::{BuildHasher, RandomState};

/// A random SipHash key, drawn once per table from the process's hash-map randomness.
#[derive(Clone, Copy)]
pub(crate) struct MacKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

impl MacKey {
    /// A fresh key. `RandomState` carries 128 bits of process randomness (from the OS) per
    /// thread; the two words are its SipHash outputs for two distinct inputs, unpredictable
    /// without that state.
    pub(crate) fn random() -> Self {
        let state = RandomState::new();
        MacKey {
            k0: state.hash_one(0x6b30_u64),
            k1: state.hash_one(0x6b31_u64),
        }
    }

    #[cfg(test)]
    pub(crate) fn from_words(k0: u64, k1: u64) -> Self {
        MacKey { k0, k1 }
    }

    /// SipHash-2-4-128 of `msg` under this key, as the little-endian reading of its 16 output
    /// bytes.
    pub(crate) fn mac(&self, msg: &[u8]) -> u128 {
        let mut s = State {
            v0: self.k0 ^ 0x736f_6d65_7073_6575,
            v1: self.k1 ^ 0x646f_7261_6e64_6f6d ^ 0xee,
            v2: self.k0 ^ 0x6c79_6765_6e65_7261,
            v3: self.k1 ^ 0x7465_6462_7974_6573,
        };
        let mut words = msg.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            s.absorb(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        // The length's low byte goes into the top byte of the last word.
        s.absorb(u64::from_le_bytes(b) | ((msg.len() as u64) << 56));

        s.v2 ^= 0xee;
        s.rounds::<4>();
        let lo = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
        s.v1 ^= 0xdd;
        s.rounds::<4>();
        let hi = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
        u128::from(lo) | (u128::from(hi) << 64)
    }
}

struct State {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl State {
    #[inline(always)]
    fn absorb(&mut self, m: u64) {
        self.v3 ^= m;
        self.rounds::<2>();
        self.v0 ^= m;
    }

    #[inline(always)]
    fn rounds<const N: usize>(&mut self) {
        for _ in 0..N {
            self.v0 = self.v0.wrapping_add(self.v1);
            self.v1 = self.v1.rotate_left(13) ^ self.v0;
            self.v0 = self.v0.rotate_left(32);
            self.v2 = self.v2.wrapping_add(self.v3);
            self.v3 = self.v3.rotate_left(16) ^ self.v2;
            self.v0 = self.v0.wrapping_add(self.v3);
            self.v3 = self.v3.rotate_left(21) ^ self.v0;
            self.v2 = self.v2.wrapping_add(self.v1);
            self.v1 = self.v1.rotate_left(17) ^ self.v2;
            self.v2 = self.v2.rotate_left(32);
        }
    }
}

/// Whether two digests are equal, in time independent of where they differ.
pub(crate) fn ct_eq(a: u128, b: u128) -> bool {
    std::hint::black_box(a ^ b) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference implementation's 128-bit vectors (key `00 01 … 0f`, message `00 01 … n-1`)
    /// for lengths around the word boundaries.
    #[test]
    fn matches_the_reference_vectors() {
        let key = MacKey::from_words(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
        let msg: Vec<u8> = (0..64).collect();
        let vectors: [(usize, [u8; 16]); 7] = [
            (
                0,
                [
                    0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6, 0x6d, 0xf6, 0x72, 0x14, 0xc7,
                    0x55, 0x02, 0x93,
                ],
            ),
            (
                1,
                [
                    0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44, 0x34, 0x76, 0x59, 0x11, 0x9b,
                    0x22, 0xfc, 0x45,
                ],
            ),
            (
                2,
                [
                    0x81, 0x77, 0x22, 0x8d, 0xa4, 0xa4, 0x5d, 0xc7, 0xfc, 0xa3, 0x8b, 0xde, 0xf6,
                    0x0a, 0xff, 0xe4,
                ],
            ),
            (
                7,
                [
                    0xa1, 0xf1, 0xeb, 0xbe, 0xd8, 0xdb, 0xc1, 0x53, 0xc0, 0xb8, 0x4a, 0xa6, 0x1f,
                    0xf0, 0x82, 0x39,
                ],
            ),
            (
                8,
                [
                    0x3b, 0x62, 0xa9, 0xba, 0x62, 0x58, 0xf5, 0x61, 0x0f, 0x83, 0xe2, 0x64, 0xf3,
                    0x14, 0x97, 0xb4,
                ],
            ),
            (
                15,
                [
                    0x54, 0x93, 0xe9, 0x99, 0x33, 0xb0, 0xa8, 0x11, 0x7e, 0x08, 0xec, 0x0f, 0x97,
                    0xcf, 0xc3, 0xd9,
                ],
            ),
            (
                63,
                [
                    0x51, 0x50, 0xd1, 0x77, 0x2f, 0x50, 0x83, 0x4a, 0x50, 0x3e, 0x06, 0x9a, 0x97,
                    0x3f, 0xbd, 0x7c,
                ],
            ),
        ];
        for (len, want) in vectors {
            assert_eq!(
                key.mac(&msg[..len]),
                u128::from_le_bytes(want),
                "length {len}"
            );
        }
    }

    #[test]
    fn keys_differ_and_change_the_digest() {
        let (a, b) = (MacKey::random(), MacKey::random());
        assert_ne!((a.k0, a.k1), (b.k0, b.k1));
        assert_ne!(a.mac(b"token"), b.mac(b"token"));
        assert_eq!(a.mac(b"token"), a.mac(b"token"));
        assert!(ct_eq(a.mac(b"x"), a.mac(b"x")));
        assert!(!ct_eq(a.mac(b"x"), a.mac(b"y")));
        assert_eq!(format!("{a:?}"), "MacKey([redacted])");
    }
}
