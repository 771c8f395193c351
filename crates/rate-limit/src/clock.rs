//! A governor [`Clock`] over [`tokio::time::Instant`], so paused tokio time (`start_paused`,
//! `tokio::time::advance`) drives quotas in tests. governor's default clocks (`quanta`, std's
//! `Instant`) cannot be paused.

use std::ops::Add;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// governor's clock over tokio's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokioClock;

/// A reading of [`TokioClock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokioInstant(pub Instant);

impl Add<Nanos> for TokioInstant {
    type Output = TokioInstant;

    #[inline]
    fn add(self, other: Nanos) -> TokioInstant {
        // Past ~584 years of uptime the reading saturates instead of panicking.
        TokioInstant(self.0.checked_add(other.into()).unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    #[inline]
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    #[inline]
    fn saturating_sub(&self, duration: Nanos) -> Self {
        TokioInstant(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;

    #[inline]
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::{Quota, RateLimiter};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_drives_a_governor_limiter() {
        let q = Quota::per_second(NonZeroU32::new(1).unwrap());
        let lim = RateLimiter::direct_with_clock(q, TokioClock);
        assert!(lim.check().is_ok());
        let no = lim.check().unwrap_err();
        assert_eq!(no.wait_time_from(TokioClock.now()), Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(lim.check().is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(lim.check().is_ok());
    }

    #[test]
    fn readings_saturate() {
        let now = TokioInstant(Instant::now());
        assert_eq!(
            now.duration_since(now + Nanos::from(5u64)),
            Nanos::from(0u64)
        );
        assert_eq!(
            (now + Nanos::from(5u64)).duration_since(now),
            Nanos::from(5u64)
        );
        let _ = now.saturating_sub(Nanos::from(u64::MAX));
    }
}
