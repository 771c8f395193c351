//! The clock of one call: pure deadline arithmetic, tested without a runtime.
//!
//! - The **deadline** starts at the call's duration. With reset-on-progress, each new progress
//!   notification sets it to `now + duration` again.
//! - While the server has a request of its own outstanding to the client, the deadline is
//!   **paused**: the time left is kept and runs again from the moment the answer is seen.
//! - The **pause budget** (`max_pause`) bounds the time a call spends paused, over all its
//!   pauses: an answer may never be seen (a client that never answers, or an answer to another call of
//!   the session counted for this one),
//!   and a pause must not last for ever.
//! - The **cap** (optional) is absolute: `start + max_total`, wall clock. Neither progress nor
//!   pauses move it.
//!
//! - While a 2025-11-25 call is **held** for its client to resume (its stream dropped), its
//!   progress cannot be seen: with reset-on-progress the deadline does not run down meanwhile
//!   (the resume grace and the cap bound the hold), and starts again at the resumption, where
//!   the server's replay shows what progress came. A deadline that does not reset on progress
//!   runs on through the hold.
//!
//! The clock runs out at the earlier of the cap and the deadline, or while paused, of the cap
//! and the end of the pause budget: it always has a wake time (far off while held with neither
//! a cap nor a pause).

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: "never" for deadlines computed from huge durations (tokio does the same).
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, saturating at a far future instead of overflowing.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d.min(FAR))
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// A pause in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Paused {
    /// The time the deadline had left when the pause began.
    left: Duration,
    /// When the pause budget runs out.
    until: Instant,
}

/// See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Clock {
    duration: Duration,
    reset_on_progress: bool,
    cap_at: Option<Instant>,
    deadline: Instant,
    /// The pause budget left, as of the start of the current pause if any.
    pause_budget: Duration,
    paused: Option<Paused>,
    progress_seen: u64,
    /// Held for resumption, with reset-on-progress: the deadline is not running.
    held: bool,
}

impl Clock {
    /// A clock started `now` for a call of `duration`, under an optional absolute `cap`, that
    /// may stay paused for `max_pause` in all.
    pub(crate) fn start(
        now: Instant,
        duration: Duration,
        reset_on_progress: bool,
        cap: Option<Duration>,
        max_pause: Duration,
    ) -> Clock {
        Clock {
            duration,
            reset_on_progress,
            cap_at: cap.map(|c| after(now, c)),
            deadline: after(now, duration),
            pause_budget: max_pause,
            paused: None,
            progress_seen: 0,
            held: false,
        }
    }

    /// The call is held for its client to resume (see the module docs).
    pub(crate) fn hold(&mut self) {
        self.held = self.reset_on_progress;
    }

    /// The held call was resumed `now`: a deadline that resets on progress starts again.
    pub(crate) fn resume(&mut self, now: Instant) {
        if std::mem::take(&mut self.held) {
            match &mut self.paused {
                Some(p) => p.left = self.duration,
                None => self.deadline = after(now, self.duration),
            }
        }
    }

    /// Takes `progress` as already seen (the count a reused completion handle had when the
    /// answer's body started).
    pub(crate) fn seen_progress(&mut self, progress: u64) {
        self.progress_seen = progress;
    }

    /// Whether [`Clock::update`] would change anything (checked before reading the time).
    pub(crate) fn changed(&self, progress: u64, outstanding: u32) -> bool {
        (self.reset_on_progress && progress != self.progress_seen)
            || (outstanding > 0) != self.paused.is_some()
    }

    /// Takes in the answer's counters at `now`: resets on new progress, pauses while server
    /// requests are outstanding, resumes when they are answered.
    pub(crate) fn update(&mut self, now: Instant, progress: u64, outstanding: u32) {
        if self.reset_on_progress && progress != self.progress_seen {
            self.progress_seen = progress;
            match &mut self.paused {
                Some(p) => p.left = self.duration,
                None => self.deadline = after(now, self.duration),
            }
        }
        match (outstanding > 0, self.paused) {
            (true, None) => {
                self.paused = Some(Paused {
                    left: self.deadline.saturating_duration_since(now),
                    until: after(now, self.pause_budget),
                });
            }
            (false, Some(p)) => {
                self.deadline = after(now, p.left);
                self.pause_budget = p.until.saturating_duration_since(now);
                self.paused = None;
            }
            _ => {}
        }
    }

    /// Whether the deadline is paused.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// When the clock runs out next: the deadline, or while paused the end of the pause
    /// budget, or the cap if that comes first.
    pub(crate) fn wake_at(&self) -> Instant {
        let own = match self.paused {
            Some(p) => p.until,
            None if self.held => after(self.deadline, FAR),
            None => self.deadline,
        };
        self.cap_at.map_or(own, |c| own.min(c))
    }

    /// Whether the clock has run out at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        now >= self.wake_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn plain_deadline() {
        let t0 = Instant::now();
        let c = Clock::start(t0, ms(100), false, None, HOUR);
        assert_eq!(c.wake_at(), t0 + ms(100));
        assert!(!c.expired(t0 + ms(99)));
        assert!(c.expired(t0 + ms(100)));
    }

    /// Held for resumption: under reset-on-progress only the cap (or the pause budget) bounds
    /// the hold, and the deadline starts again at the resumption; a plain deadline runs on.
    #[test]
    fn a_held_call_waits_for_its_progress_to_be_seen_again() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), true, Some(ms(1000)), HOUR);
        c.update(t0 + ms(50), 1, 0);
        c.hold();
        assert_eq!(c.wake_at(), t0 + ms(1000), "the cap alone");
        assert!(!c.expired(t0 + ms(400)));
        c.resume(t0 + ms(400));
        assert_eq!(c.wake_at(), t0 + ms(500));
        c.hold();
        assert!(c.expired(t0 + ms(1000)), "never past the cap");

        let mut plain = Clock::start(t0, ms(100), false, None, HOUR);
        plain.hold();
        assert_eq!(plain.wake_at(), t0 + ms(100));
        plain.resume(t0 + ms(90));
        assert_eq!(plain.wake_at(), t0 + ms(100));

        let mut uncapped = Clock::start(t0, ms(100), true, None, HOUR);
        uncapped.hold();
        assert!(!uncapped.expired(t0 + HOUR));
        uncapped.resume(t0 + HOUR);
        assert_eq!(uncapped.wake_at(), t0 + HOUR + ms(100));
    }

    #[test]
    fn progress_is_ignored_without_reset() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), false, None, HOUR);
        assert!(!c.changed(3, 0));
        c.update(t0 + ms(90), 3, 0);
        assert_eq!(c.wake_at(), t0 + ms(100));
    }

    #[test]
    fn progress_resets_under_the_cap() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), true, Some(ms(250)), HOUR);
        for (i, at) in [80u64, 160, 240].into_iter().enumerate() {
            let now = t0 + ms(at);
            assert!(!c.expired(now));
            assert!(c.changed(i as u64 + 1, 0));
            c.update(now, i as u64 + 1, 0);
            assert!(!c.changed(i as u64 + 1, 0));
        }
        // Reset to 340 ms, but the cap holds at 250 ms.
        assert_eq!(c.wake_at(), t0 + ms(250));
        assert!(!c.expired(t0 + ms(249)));
        assert!(c.expired(t0 + ms(250)));
    }

    #[test]
    fn a_deadline_shorter_than_the_cap_is_kept_without_progress() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), true, Some(ms(1000)), HOUR);
        c.update(t0 + ms(50), 1, 0);
        assert_eq!(c.wake_at(), t0 + ms(150));
    }

    #[test]
    fn pause_keeps_the_time_left() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), false, None, HOUR);
        assert!(c.changed(0, 1));
        c.update(t0 + ms(30), 0, 1);
        assert!(c.is_paused());
        assert_eq!(c.wake_at(), t0 + ms(30) + HOUR, "only the pause budget");
        assert!(!c.expired(t0 + ms(10_000)));
        assert!(!c.changed(0, 2), "still paused");
        c.update(t0 + ms(10_000), 0, 0);
        assert!(!c.is_paused());
        assert_eq!(c.wake_at(), t0 + ms(10_070));
    }

    #[test]
    fn the_cap_holds_during_a_pause() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), false, Some(ms(500)), HOUR);
        c.update(t0 + ms(10), 0, 1);
        assert_eq!(c.wake_at(), t0 + ms(500));
        assert!(c.expired(t0 + ms(500)));
    }

    #[test]
    fn progress_during_a_pause_restores_the_whole_duration() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), true, Some(ms(10_000)), HOUR);
        c.update(t0 + ms(90), 0, 1);
        c.update(t0 + ms(500), 1, 1);
        c.update(t0 + ms(600), 1, 0);
        assert_eq!(c.wake_at(), t0 + ms(700));
    }

    #[test]
    fn a_pause_nobody_ends_runs_out_at_max_pause() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), false, None, ms(1000));
        c.update(t0 + ms(30), 0, 1);
        assert_eq!(c.wake_at(), t0 + ms(1030));
        assert!(!c.expired(t0 + ms(1029)));
        assert!(c.expired(t0 + ms(1030)));
    }

    #[test]
    fn the_pause_budget_is_shared_by_all_pauses() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), false, None, ms(1000));
        c.update(t0 + ms(10), 0, 1);
        c.update(t0 + ms(610), 0, 0);
        assert_eq!(c.wake_at(), t0 + ms(700), "90 ms of the deadline left");
        c.update(t0 + ms(650), 0, 1);
        assert_eq!(c.wake_at(), t0 + ms(1050), "400 ms of the budget left");
        c.update(t0 + ms(1050), 0, 2);
        assert!(c.expired(t0 + ms(1050)));
    }

    #[test]
    fn the_earlier_of_cap_and_pause_budget_applies() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, ms(100), false, Some(ms(500)), ms(1000));
        c.update(t0 + ms(10), 0, 1);
        assert_eq!(c.wake_at(), t0 + ms(500));
        let mut c = Clock::start(t0, ms(100), false, Some(ms(5000)), ms(1000));
        c.update(t0 + ms(10), 0, 1);
        assert_eq!(c.wake_at(), t0 + ms(1010));
    }

    #[test]
    fn huge_durations_do_not_overflow() {
        let t0 = Instant::now();
        let mut c = Clock::start(t0, Duration::MAX, true, Some(Duration::MAX), Duration::MAX);
        assert!(c.wake_at() > t0 + Duration::from_secs(86_400 * 365));
        c.update(t0 + ms(1), 0, 1);
        assert!(c.wake_at() > t0 + Duration::from_secs(86_400 * 365));
    }
}
