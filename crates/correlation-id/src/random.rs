//! A fast per-thread generator for ids (request ids, trace ids, span ids).
//!
//! Ids must be unique, not secret: a wyrand generator per thread (64-bit state, one multiply per
//! number), seeded once per thread from the standard library's per-process random hash keys
//! (which come from the operating system), mixed with the time and the thread. No system call
//! and no lock per id.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let local = 0u8;
    let addr = std::ptr::addr_of!(local) as usize;
    RandomState::new().hash_one((now, addr, std::thread::current().id()))
}

/// The next 64 random bits of this thread's generator.
pub(crate) fn next_u64() -> u64 {
    STATE.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_different_streams() {
        let here = (next_u64(), next_u64());
        let there = std::thread::spawn(|| (next_u64(), next_u64()))
            .join()
            .unwrap();
        assert_ne!(here, there);
        assert_ne!(here.0, here.1);
    }

    #[test]
    fn bits_are_balanced() {
        // A crude sanity check: over 4096 draws each bit is set roughly half of the time.
        let mut counts = [0u32; 64];
        for _ in 0..4096 {
            let x = next_u64();
            for (i, c) in counts.iter_mut().enumerate() {
                *c += ((x >> i) & 1) as u32;
            }
        }
        assert!(
            counts.iter().all(|&c| (1700..2400).contains(&c)),
            "{counts:?}"
        );
    }
}
