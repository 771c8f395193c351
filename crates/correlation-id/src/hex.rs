//! Lowercase hex without a table lookup or a branch per digit: eight nibbles at a time, one per
//! byte of a `u64`, turned into digits with a few adds and masks.

/// The 16 lowercase hex digits of `x`, most significant first.
pub(crate) fn u64_digits(x: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&digits(spread((x >> 32) as u32)).to_be_bytes());
    out[8..].copy_from_slice(&digits(spread(x as u32)).to_be_bytes());
    out
}

/// Writes `bytes` as lowercase hex into `out`, as far as whole digit pairs fit; returns the
/// number of characters written.
pub(crate) fn encode(bytes: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        let hex = u64_digits(u64::from_be_bytes(word));
        let len = (chunk.len() * 2).min((out.len() - n) & !1);
        out[n..n + len].copy_from_slice(&hex[..len]);
        n += len;
        if len < chunk.len() * 2 {
            break;
        }
    }
    n
}

/// One nibble of `x` per byte, the most significant nibble in the most significant byte.
fn spread(x: u32) -> u64 {
    let x = u64::from(x);
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    (x | (x << 4)) & 0x0f0f_0f0f_0f0f_0f0f
}

/// Each byte (a nibble, 0–15) to its lowercase hex digit.
fn digits(nibbles: u64) -> u64 {
    // Adding 6 sets bit 4 of exactly the bytes holding 10–15 (no byte carries into the next);
    // those need `'a' - '0' - 10 = 39` more than the others.
    let letters = ((nibbles + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    nibbles + 0x3030_3030_3030_3030 + letters * 39
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn matches_format() {
        for x in [
            0,
            1,
            9,
            10,
            15,
            16,
            0x0123_4567_89ab_cdef,
            u64::MAX,
            0xa5a5_5a5a_0f0f_f0f0,
        ] {
            assert_eq!(
                std::str::from_utf8(&u64_digits(x)).unwrap(),
                format!("{x:016x}")
            );
        }
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..1000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            assert_eq!(
                std::str::from_utf8(&u64_digits(state)).unwrap(),
                format!("{state:016x}")
            );
        }
    }

    #[test]
    fn encodes_slices_of_any_length() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        for len in [0, 1, 7, 8, 9, 16, 17, 255] {
            let mut out = vec![0u8; len * 2];
            assert_eq!(encode(&bytes[..len], &mut out), len * 2);
            assert_eq!(std::str::from_utf8(&out).unwrap(), naive(&bytes[..len]));
        }
        // Too small an output: whole digit pairs only.
        let mut out = [0u8; 5];
        assert_eq!(encode(&[0xab, 0xcd, 0xef], &mut out), 4);
        assert_eq!(&out[..4], b"abcd");
    }
}
