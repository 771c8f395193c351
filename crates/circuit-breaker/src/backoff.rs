//! How long the circuit stays open: fixed, or growing with repeated trips (exponential, with
//! jitter, capped). Pure logic.

use std::time::Duration;

/// How long an opened circuit stays open before it lets probes through.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OpenDuration {
    /// Always the same.
    Fixed(Duration),
    /// `base × multiplier^(trips − 1)`, capped at `max`, where `trips` counts the openings since
    /// the circuit last closed (a failed probe opens it again: one more trip). Then up to
    /// `jitter` (a fraction in `0..=1`) of it is randomly taken off, so that many breakers
    /// opened together do not probe together.
    Exponential {
        /// The first open duration.
        base: Duration,
        /// Growth per trip (at least 1).
        multiplier: f64,
        /// The cap.
        max: Duration,
        /// Fraction of the duration randomly taken off (`0` = none, `0.5` = up to half). Near
        /// `1` an open duration can come out near zero, so the circuit probes again almost at
        /// once: `0.1`–`0.5` spreads probes without giving up the pause.
        jitter: f64,
    },
}

impl OpenDuration {
    /// The first (shortest, before jitter) open duration.
    pub fn base(&self) -> Duration {
        match *self {
            OpenDuration::Fixed(d) => d,
            OpenDuration::Exponential { base, .. } => base,
        }
    }

    /// The longest open duration this policy gives.
    pub fn max(&self) -> Duration {
        match *self {
            OpenDuration::Fixed(d) => d,
            OpenDuration::Exponential { max, .. } => max,
        }
    }

    /// The open duration after the `trips`-th consecutive trip (1 = first), drawing jitter from
    /// `rng`.
    pub(crate) fn for_trip(&self, trips: u32, rng: &mut u64) -> Duration {
        match *self {
            OpenDuration::Fixed(d) => d,
            OpenDuration::Exponential {
                base,
                multiplier,
                max,
                jitter,
            } => {
                let exp = i32::try_from(trips.saturating_sub(1)).unwrap_or(i32::MAX);
                let grown = base.as_secs_f64() * multiplier.powi(exp);
                let d = if grown.is_finite() && grown < max.as_secs_f64() {
                    Duration::from_secs_f64(grown)
                } else {
                    max
                };
                if jitter > 0.0 {
                    let u = unit(next(rng));
                    shrink(d, 1.0 - jitter * u)
                } else {
                    d
                }
            }
        }
    }
}

/// `d` times `factor` (in `0..=1`). Not `Duration::mul_f64`: near `Duration::MAX` its round trip
/// through `f64` lands past the largest duration and panics (a cap of `Duration::MAX` with a
/// draw of no jitter). A factor of at most 1 never needs more than `d`.
fn shrink(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).map_or(d, |j| j.min(d))
}

/// splitmix64: a tiny, good-enough generator for jitter.
pub(crate) fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in `[0, 1)` from 64 random bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A seed that differs per breaker and per process.
pub(crate) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_is_fixed() {
        let mut rng = 1;
        let p = OpenDuration::Fixed(Duration::from_secs(3));
        assert_eq!(p.for_trip(1, &mut rng), Duration::from_secs(3));
        assert_eq!(p.for_trip(9, &mut rng), Duration::from_secs(3));
    }

    #[test]
    fn exponential_grows_and_caps() {
        let mut rng = 1;
        let p = OpenDuration::Exponential {
            base: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_millis(500),
            jitter: 0.0,
        };
        let got: Vec<_> = (1..=5)
            .map(|t| p.for_trip(t, &mut rng).as_millis())
            .collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
        assert_eq!(p.for_trip(u32::MAX, &mut rng), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut rng = 42;
        let p = OpenDuration::Exponential {
            base: Duration::from_secs(10),
            multiplier: 1.0,
            max: Duration::from_secs(10),
            jitter: 0.5,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let d = p.for_trip(1, &mut rng);
            assert!(
                d > Duration::from_secs(5) && d <= Duration::from_secs(10),
                "{d:?}"
            );
            seen.insert(d.as_millis() / 500);
        }
        assert!(seen.len() >= 9, "jitter spreads: {seen:?}");
    }

    /// A cap near `Duration::MAX` with jitter: `mul_f64` would round past the largest duration
    /// and panic; every trip count gives a duration within the cap instead.
    #[test]
    fn a_huge_cap_with_jitter_never_panics() {
        for jitter in [0.001, 0.5, 1.0] {
            let p = OpenDuration::Exponential {
                base: Duration::from_secs(1),
                multiplier: 2.0,
                max: Duration::MAX,
                jitter,
            };
            let mut rng = 7;
            for trips in (1..=200).chain([u32::MAX]) {
                assert!(p.for_trip(trips, &mut rng) <= Duration::MAX);
            }
        }
        // The draw that takes nothing off: `Duration::MAX.mul_f64(1.0)` panics.
        assert_eq!(shrink(Duration::MAX, 1.0), Duration::MAX);
        assert_eq!(shrink(Duration::from_secs(10), 0.5), Duration::from_secs(5));
        assert_eq!(shrink(Duration::from_secs(10), 0.0), Duration::ZERO);
    }
}
