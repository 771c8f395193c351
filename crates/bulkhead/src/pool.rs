//! One bulkhead pool: a fair counting semaphore with a bounded FIFO line of waiters.
//!
//! Pure: no runtime, only [`Waker`]s, so the accounting is tested exhaustively without one.
//!
//! The available permits and the number of waiters live in one `AtomicU64` (permits in the low
//! 32 bits, waiters in the high 32). Two invariants make the lock-free fast paths fair:
//!
//! - **waiters > 0 ⇒ permits = 0.** A caller queues only when no permit is free, and a released
//!   permit goes straight to the first waiter instead of back to the count while anyone waits.
//!   So a newcomer taking a free permit without the lock never overtakes a waiter (FIFO).
//! - **The waiter count only changes under the queue lock**, together with the queue itself, so
//!   `queue.len() == waiters` whenever the lock is free. The lock-free paths (take a free permit,
//!   return a permit while nobody waits) compare the whole word, so they fail and retry if the
//!   waiter count moved under them.
//!
//! Every operation takes effect at one compare-and-swap or inside the lock, so the operations
//! are atomic steps; the tests enumerate every interleaving of such steps for several tasks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

const PERMIT: u64 = 1;
const WAITER: u64 = 1 << 32;
const PERMITS_MASK: u64 = WAITER - 1;

/// The largest `max_concurrent` a pool accepts (the permit count has 32 bits).
pub(crate) const MAX_PERMITS: usize = (u32::MAX >> 1) as usize;
/// The most waiters a pool's state word counts.
const MAX_WAITERS: u64 = u32::MAX as u64;

fn permits(state: u64) -> u64 {
    state & PERMITS_MASK
}

fn waiters(state: u64) -> u64 {
    state >> 32
}

/// The result of [`Pool::acquire`].
#[derive(Debug)]
pub(crate) enum Acquired {
    /// A permit was free and is now the caller's.
    Granted(Permit),
    /// The caller waits in line.
    Queued(Waiter),
    /// No permit was free and the line was full; counted as a rejection. Carries the pool's key.
    Full(Option<Arc<str>>),
}

/// One pool of permits with its line of waiters.
pub(crate) struct Pool {
    state: AtomicU64,
    max: u64,
    max_queue: u64,
    queue: Mutex<Queue>,
    rejected: AtomicU64,
    key: Option<Arc<str>>,
}

#[derive(Default)]
struct Queue {
    /// Waiters in arrival (ticket) order.
    waiting: VecDeque<Entry>,
    /// Tickets handed a permit that their waiter has not picked up yet. At most `max` long.
    granted: Vec<u64>,
    next_ticket: u64,
}

struct Entry {
    ticket: u64,
    waker: Option<Waker>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("key", &self.key)
            .field("max", &self.max)
            .field("running", &self.running())
            .field("queued", &self.queued())
            .finish()
    }
}

impl Pool {
    /// A pool of `max` permits (1..=[`MAX_PERMITS`]) with room for `max_queue` waiters
    /// (at most [`MAX_WAITERS`]; more is capped: backpressure mode's `usize::MAX` too).
    pub(crate) fn new(key: Option<Arc<str>>, max: usize, max_queue: usize) -> Self {
        debug_assert!((1..=MAX_PERMITS).contains(&max));
        Pool {
            state: AtomicU64::new(max as u64),
            max: max as u64,
            // The waiter count has the state word's top 32 bits: a larger line (backpressure
            // mode asks for an unbounded one) is capped where the count could carry out of it.
            max_queue: u64::try_from(max_queue).map_or(MAX_WAITERS, |q| q.min(MAX_WAITERS)),
            queue: Mutex::new(Queue::default()),
            rejected: AtomicU64::new(0),
            key,
        }
    }

    /// The pool's key (`None` for an unkeyed bulkhead).
    pub(crate) fn key(&self) -> Option<&Arc<str>> {
        self.key.as_ref()
    }

    /// The number of permits.
    pub(crate) fn max(&self) -> usize {
        self.max as usize
    }

    /// Permits in use (including ones handed to a waiter that has not picked them up yet).
    pub(crate) fn running(&self) -> usize {
        (self.max - permits(self.state.load(Ordering::Acquire))) as usize
    }

    /// Waiters in line.
    pub(crate) fn queued(&self) -> usize {
        waiters(self.state.load(Ordering::Acquire)) as usize
    }

    /// Free permits.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        permits(self.state.load(Ordering::Acquire)) as usize
    }

    /// Calls rejected so far (line full, or waited too long).
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Counts a rejection decided outside the pool (a waiter that waited too long).
    pub(crate) fn count_rejection(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while the lock is held; recover the guard anyway rather than panic.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a free permit without waiting, if there is one: one compare-and-swap, no lock.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut s = self.state.load(Ordering::Acquire);
        while permits(s) > 0 {
            match self.state.compare_exchange_weak(
                s,
                s - PERMIT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Permit {
                        pool: Arc::clone(self),
                    });
                }
                Err(cur) => s = cur,
            }
        }
        None
    }

    /// Takes a free permit, or a place in line, or is refused because the line is full.
    #[inline]
    pub(crate) fn acquire(self: &Arc<Self>) -> Acquired {
        match self.try_acquire() {
            Some(p) => Acquired::Granted(p),
            None => self.acquire_slow(),
        }
    }

    /// [`acquire`](Self::acquire) once no permit was free: decided under the lock.
    #[inline(never)]
    fn acquire_slow(self: &Arc<Self>) -> Acquired {
        let mut q = self.lock();
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = if permits(s) > 0 {
                // A permit came back (nobody was waiting) since the fast path looked.
                s - PERMIT
            } else if waiters(s) >= self.max_queue {
                drop(q);
                self.count_rejection();
                return Acquired::Full(self.key.clone());
            } else {
                s + WAITER
            };
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next < s => {
                    return Acquired::Granted(Permit {
                        pool: Arc::clone(self),
                    });
                }
                Ok(_) => break,
                Err(cur) => s = cur,
            }
        }
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push_back(Entry {
            ticket,
            waker: None,
        });
        Acquired::Queued(Waiter {
            pool: Arc::clone(self),
            ticket,
            done: false,
        })
    }

    /// Returns one permit: to the first waiter if anyone waits, to the count otherwise. While
    /// nobody waits, one compare-and-swap and no lock.
    #[inline]
    fn release(&self) {
        let s = self.state.load(Ordering::Acquire);
        if waiters(s) == 0
            && self
                .state
                .compare_exchange_weak(s, s + PERMIT, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return;
        }
        self.release_slow();
    }

    /// [`release`](Self::release) when someone waits or the word moved under the fast path.
    #[inline(never)]
    fn release_slow(&self) {
        let mut s = self.state.load(Ordering::Acquire);
        while waiters(s) == 0 {
            match self.state.compare_exchange_weak(
                s,
                s + PERMIT,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(cur) => s = cur,
            }
        }
        let wake = {
            let mut q = self.lock();
            self.release_locked(&mut q)
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Returns one permit with the lock held; returns the waker to wake once it is released.
    fn release_locked(&self, q: &mut Queue) -> Option<Waker> {
        match q.waiting.pop_front() {
            Some(entry) => {
                // Waiters > 0 here, so permits = 0 and no lock-free path can move the word:
                // the permit passes from the releaser to the waiter without touching the count.
                self.state.fetch_sub(WAITER, Ordering::AcqRel);
                q.granted.push(entry.ticket);
                entry.waker
            }
            None => {
                self.state.fetch_add(PERMIT, Ordering::AcqRel);
                None
            }
        }
    }

    /// Whether `ticket` has been handed a permit (which the caller then owns); registers `waker`
    /// otherwise.
    fn poll_ticket(&self, ticket: u64, waker: &Waker) -> Poll<()> {
        let mut q = self.lock();
        if let Some(i) = q.granted.iter().position(|t| *t == ticket) {
            q.granted.swap_remove(i);
            return Poll::Ready(());
        }
        if let Ok(i) = q.waiting.binary_search_by_key(&ticket, |e| e.ticket) {
            let entry = &mut q.waiting[i];
            match &entry.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => entry.waker = Some(waker.clone()),
            }
        } else {
            debug_assert!(false, "ticket {ticket} neither waiting nor granted");
        }
        Poll::Pending
    }

    /// Gives up `ticket`'s place: leaves the line, or passes on a permit it was handed.
    fn cancel(&self, ticket: u64) {
        let wake = {
            let mut q = self.lock();
            if let Ok(i) = q.waiting.binary_search_by_key(&ticket, |e| e.ticket) {
                q.waiting.remove(i);
                self.state.fetch_sub(WAITER, Ordering::AcqRel);
                None
            } else if let Some(i) = q.granted.iter().position(|t| *t == ticket) {
                q.granted.swap_remove(i);
                self.release_locked(&mut q)
            } else {
                None
            }
        };
        if let Some(w) = wake {
            w.wake();
        }
    }

    #[cfg(test)]
    fn check_invariants(&self) -> (usize, usize) {
        let q = self.lock();
        let s = self.state.load(Ordering::Acquire);
        assert_eq!(waiters(s) as usize, q.waiting.len(), "waiter count = line");
        if waiters(s) > 0 {
            assert_eq!(permits(s), 0, "nobody waits while a permit is free");
        }
        assert!(waiters(s) <= self.max_queue, "line bounded");
        assert!(
            permits(s) <= self.max,
            "never more permits than the maximum"
        );
        // FIFO: everyone handed a permit arrived before everyone still waiting.
        if let (Some(g), Some(w)) = (q.granted.iter().max(), q.waiting.front()) {
            assert!(*g < w.ticket, "a later waiter was served first");
        }
        (permits(s) as usize, q.granted.len())
    }
}

/// A permit of a [`Pool`]; returned when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    pool: Arc<Pool>,
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.pool.release();
    }
}

/// A place in a [`Pool`]'s line; given up when dropped (a permit handed to it but not picked up
/// is passed on).
#[derive(Debug)]
pub(crate) struct Waiter {
    pool: Arc<Pool>,
    ticket: u64,
    done: bool,
}

impl Waiter {
    /// The pool waited on.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Ready with the permit once it is this waiter's turn. Must not be polled after that.
    pub(crate) fn poll_acquire(&mut self, waker: &Waker) -> Poll<Permit> {
        debug_assert!(!self.done, "waiter polled after its permit was taken");
        match self.pool.poll_ticket(self.ticket, waker) {
            Poll::Ready(()) => {
                self.done = true;
                Poll::Ready(Permit {
                    pool: Arc::clone(&self.pool),
                })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.done {
            self.pool.cancel(self.ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct CountWaker(AtomicUsize);

    impl Wake for CountWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pool(max: usize, queue: usize) -> Arc<Pool> {
        Arc::new(Pool::new(None, max, queue))
    }

    #[test]
    fn grants_then_queues_then_refuses() {
        let p = pool(2, 1);
        let a = p.acquire();
        let b = p.acquire();
        assert!(matches!(a, Acquired::Granted(_)) && matches!(b, Acquired::Granted(_)));
        let c = p.acquire();
        assert!(matches!(c, Acquired::Queued(_)));
        assert!(matches!(p.acquire(), Acquired::Full(None)));
        assert_eq!((p.running(), p.queued(), p.rejected()), (2, 1, 1));
        drop(a);
        // The permit went to the waiter, not back to the count.
        assert_eq!((p.running(), p.queued(), p.available()), (2, 0, 0));
        assert!(p.try_acquire().is_none());
        drop(c); // handed a permit, never picked it up: passed back
        drop(b);
        assert_eq!((p.running(), p.queued(), p.available()), (0, 0, 2));
    }

    #[test]
    fn a_line_longer_than_the_state_word_counts_is_capped() {
        // Backpressure mode asks for an unbounded line; the waiter count must never carry.
        assert_eq!(pool(1, usize::MAX).max_queue, MAX_WAITERS);
        assert_eq!(pool(1, 7).max_queue, 7);
    }

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let p = pool(1, 8);
        let first = p.try_acquire().unwrap();
        let counters: Vec<_> = (0..5).map(|_| Arc::new(CountWaker::default())).collect();
        let mut waiters: Vec<Waiter> = (0..5)
            .map(|_| match p.acquire() {
                Acquired::Queued(w) => w,
                other => panic!("expected to queue, got {other:?}"),
            })
            .collect();
        for (w, c) in waiters.iter_mut().zip(&counters) {
            assert!(w.poll_acquire(&Waker::from(Arc::clone(c))).is_pending());
        }
        // The third gives up; the others are served one by one in order.
        drop(waiters.remove(2));
        let mut held = first;
        let mut order = Vec::new();
        for _ in 0..4 {
            drop(held);
            let woken: Vec<usize> = counters
                .iter()
                .enumerate()
                .filter(|(_, c)| c.0.load(Ordering::SeqCst) == 1)
                .map(|(i, _)| i)
                .filter(|i| !order.contains(i))
                .collect();
            assert_eq!(woken.len(), 1, "exactly one waiter is woken per release");
            let i = woken[0];
            order.push(i);
            let idx = [0, 1, 3, 4].iter().position(|x| *x == i).unwrap();
            let w = &mut waiters[idx];
            held = match w.poll_acquire(&Waker::from(Arc::clone(&counters[i]))) {
                Poll::Ready(p) => p,
                Poll::Pending => panic!("woken waiter {i} not granted"),
            };
        }
        assert_eq!(order, [0, 1, 3, 4]);
        drop(held);
        drop(waiters);
        assert_eq!((p.available(), p.queued()), (1, 0));
    }

    // === exhaustive interleavings ===

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Acquire,
        Poll,
        /// Drop whatever the task holds: release a permit, give up a place in line.
        End,
    }

    enum Task {
        Idle,
        Holding(#[allow(dead_code)] Permit),
        Waiting(Waiter, Arc<CountWaker>, Option<usize>),
        Rejected,
        Ended,
    }

    /// Runs one interleaving: `order[i]` is the task whose next step runs at time `i`.
    fn run(max: usize, queue: usize, programs: &[&[Step]], order: &[usize]) {
        let p = pool(max, queue);
        let mut tasks: Vec<Task> = programs.iter().map(|_| Task::Idle).collect();
        let mut pc = vec![0usize; programs.len()];
        for &t in order {
            let step = programs[t][pc[t]];
            pc[t] += 1;
            let cur = std::mem::replace(&mut tasks[t], Task::Ended);
            tasks[t] = match (step, cur) {
                (Step::Acquire, Task::Idle) => match p.acquire() {
                    Acquired::Granted(permit) => Task::Holding(permit),
                    Acquired::Queued(w) => Task::Waiting(w, Arc::default(), None),
                    Acquired::Full(_) => Task::Rejected,
                },
                (Step::Poll, Task::Waiting(mut w, c, _)) => {
                    match w.poll_acquire(&Waker::from(Arc::clone(&c))) {
                        Poll::Ready(permit) => Task::Holding(permit),
                        Poll::Pending => {
                            let seen = c.0.load(Ordering::SeqCst);
                            Task::Waiting(w, c, Some(seen))
                        }
                    }
                }
                (Step::End, _) => Task::Ended,
                (_, other) => other,
            };
            let (free, handed) = p.check_invariants();
            let holding = tasks
                .iter()
                .filter(|t| matches!(t, Task::Holding(_)))
                .count();
            assert_eq!(free + handed + holding, max, "permits conserved");
            let waiting = tasks
                .iter()
                .filter(|t| matches!(t, Task::Waiting(..)))
                .count();
            assert_eq!(
                p.queued() + handed,
                waiting,
                "every waiter is in line or handed"
            );
            // A waiter that registered its waker and was then handed a permit was woken.
            let q = p.lock();
            for task in &tasks {
                if let Task::Waiting(w, c, Some(seen)) = task
                    && q.granted.contains(&w.ticket)
                {
                    assert!(
                        c.0.load(Ordering::SeqCst) > *seen,
                        "handed a permit, not woken"
                    );
                }
            }
        }
        drop(tasks);
        p.check_invariants();
        assert_eq!(p.available(), max, "all permits back after the run");
        assert_eq!((p.running(), p.queued()), (0, 0));
    }

    /// Every interleaving of the programs (multiset permutations of task indices).
    fn all_interleavings(programs: &[&[Step]], f: &mut dyn FnMut(&[usize])) -> usize {
        fn go(
            left: &mut [usize],
            order: &mut Vec<usize>,
            f: &mut dyn FnMut(&[usize]),
            n: &mut usize,
        ) {
            if left.iter().all(|l| *l == 0) {
                *n += 1;
                f(order);
                return;
            }
            for t in 0..left.len() {
                if left[t] > 0 {
                    left[t] -= 1;
                    order.push(t);
                    go(left, order, f, n);
                    order.pop();
                    left[t] += 1;
                }
            }
        }
        let mut left: Vec<usize> = programs.iter().map(|p| p.len()).collect();
        let mut n = 0;
        go(&mut left, &mut Vec::new(), f, &mut n);
        n
    }

    #[test]
    fn every_interleaving_of_acquire_cancel_and_release_returns_every_permit() {
        use Step::*;
        let cases: &[(usize, usize, &[&[Step]])] = &[
            (
                1,
                1,
                &[
                    &[Acquire, Poll, End],
                    &[Acquire, Poll, End],
                    &[Acquire, Poll, End],
                ],
            ),
            (
                1,
                2,
                &[
                    &[Acquire, Poll, Poll, End],
                    &[Acquire, Poll, Poll, End],
                    &[Acquire, Poll, Poll, End],
                ],
            ),
            (
                2,
                1,
                &[
                    &[Acquire, End],
                    &[Acquire, Poll, End],
                    &[Acquire, Poll, Poll, End],
                    &[Acquire, End],
                ],
            ),
            (
                1,
                0,
                &[
                    &[Acquire, Poll, End],
                    &[Acquire, End],
                    &[Acquire, Poll, End],
                ],
            ),
            (
                2,
                1,
                &[
                    &[Acquire, Poll, Poll, End],
                    &[Acquire, Poll, Poll, End],
                    &[Acquire, Poll, Poll, End],
                ],
            ),
        ];
        let mut total = 0;
        for (max, queue, programs) in cases {
            total += all_interleavings(programs, &mut |order| run(*max, *queue, programs, order));
        }
        assert!(total > 100_000, "explored {total} interleavings");
    }

    #[test]
    fn threads_hammering_the_pool_leave_it_whole() {
        let p = pool(3, 4);
        std::thread::scope(|s| {
            for seed in 0..4u64 {
                let p = Arc::clone(&p);
                s.spawn(move || {
                    let waker = Waker::from(Arc::new(CountWaker::default()));
                    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    let mut rnd = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    for _ in 0..20_000 {
                        match p.acquire() {
                            Acquired::Granted(permit) => drop(permit),
                            Acquired::Full(_) => {}
                            Acquired::Queued(mut w) => {
                                for _ in 0..(rnd() % 50) {
                                    if let Poll::Ready(permit) = w.poll_acquire(&waker) {
                                        drop(permit);
                                        break;
                                    }
                                    std::hint::spin_loop();
                                }
                                // Either already released above, or given up here.
                                drop(w);
                            }
                        }
                    }
                });
            }
        });
        p.check_invariants();
        assert_eq!((p.available(), p.queued(), p.running()), (3, 0, 0));
    }
}
