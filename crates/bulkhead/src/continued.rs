//! Calls that go on after their answer ended, and their resumptions.
//!
//! A 2025-11-25 tool runs on when its caller drops the stream. A layer inside that holds such a
//! call for its client to resume (the timeout layer's resume grace) takes a
//! [`Continuation`](tower_armor_mcp::Continuation) of it, and the call's permit stays taken
//! until the call is cancelled, or resumed and ended. The resumption (`GET` + the stream's
//! `Last-Event-ID`) is the same call: it must not need a second permit, least of all from a
//! pool its own held call may fill (a global bulkhead of one permit would refuse every
//! resumption). So each session's permits whose release waits for a continuation are counted
//! here, and a resumption in that session adopts one of them instead of taking a permit: at
//! most as many adoptions at once as such permits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderValue;
use tower_armor_mcp::ReleaseListener;

use crate::pool::Permit;

/// Per session: permits held past their answer, and resumptions adopting them.
#[derive(Debug, Default)]
pub(crate) struct Continued {
    sessions: Mutex<HashMap<HeaderValue, Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    held: usize,
    adopted: usize,
}

impl Continued {
    fn lock(&self) -> MutexGuard<'_, HashMap<HeaderValue, Counts>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn change(&self, session: &HeaderValue, f: impl FnOnce(&mut Counts)) {
        let mut sessions = self.lock();
        if let Some(c) = sessions.get_mut(session) {
            f(c);
            if c.held == 0 && c.adopted == 0 {
                sessions.remove(session);
            }
        }
    }

    /// A resumption in `session`: adopts a held permit of the session, if one is not adopted
    /// yet.
    pub(crate) fn adopt(self: &Arc<Self>, session: &HeaderValue) -> Option<Adoption> {
        let mut sessions = self.lock();
        let c = sessions.get_mut(session).filter(|c| c.held > c.adopted)?;
        c.adopted += 1;
        Some(Adoption {
            continued: Arc::clone(self),
            session: session.clone(),
        })
    }

    /// How many permits of `session` are held past their answer.
    #[cfg(test)]
    pub(crate) fn held(&self, session: &HeaderValue) -> usize {
        self.lock().get(session).map_or(0, |c| c.held)
    }
}

/// A resumption's claim on a held permit of its session; given back when dropped.
#[derive(Debug)]
pub(crate) struct Adoption {
    continued: Arc<Continued>,
    session: HeaderValue,
}

impl Drop for Adoption {
    fn drop(&mut self) {
        self.continued
            .change(&self.session, |c| c.adopted = c.adopted.saturating_sub(1));
    }
}

/// The permit of a call in a 2025-11-25 session, released through the answer's completion
/// handle: counted in [`Continued`] while its release waits for a continuation.
#[derive(Debug)]
pub(crate) struct SessionPermit {
    permit: Permit,
    session: HeaderValue,
    continued: Arc<Continued>,
    counted: bool,
}

impl SessionPermit {
    pub(crate) fn new(permit: Permit, session: HeaderValue, continued: Arc<Continued>) -> Self {
        SessionPermit {
            permit,
            session,
            continued,
            counted: false,
        }
    }
}

impl ReleaseListener for SessionPermit {
    fn deferred(&mut self) {
        self.continued
            .lock()
            .entry(self.session.clone())
            .or_default()
            .held += 1;
        self.counted = true;
    }

    fn released(self: Box<Self>) {
        let SessionPermit {
            permit,
            session,
            continued,
            counted,
        } = *self;
        if counted {
            continued.change(&session, |c| c.held = c.held.saturating_sub(1));
        }
        drop(permit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Acquired, Pool};

    fn permit(pool: &Arc<Pool>) -> Permit {
        match pool.acquire() {
            Acquired::Granted(p) => p,
            _ => panic!("a free permit"),
        }
    }

    #[test]
    fn resumptions_adopt_at_most_the_held_permits_of_their_session() {
        let pool = Arc::new(Pool::new(None, 2, 0));
        let continued = Arc::new(Continued::default());
        let s1 = HeaderValue::from_static("s1");
        let s2 = HeaderValue::from_static("s2");
        assert!(continued.adopt(&s1).is_none(), "nothing held");

        let mut held = Box::new(SessionPermit::new(
            permit(&pool),
            s1.clone(),
            Arc::clone(&continued),
        ));
        held.deferred();
        assert_eq!(continued.held(&s1), 1);
        assert!(continued.adopt(&s2).is_none(), "another session's");
        let a = continued.adopt(&s1).expect("adopted");
        assert!(
            continued.adopt(&s1).is_none(),
            "one adoption per held permit"
        );
        drop(a);
        let a = continued.adopt(&s1).expect("free to adopt again");

        // Released while adopted: the permit goes back; the table forgets the session once
        // the adoption ends too.
        held.released();
        assert_eq!(pool.running(), 0);
        assert!(continued.adopt(&s1).is_none());
        drop(a);
        assert!(continued.lock().is_empty());

        // A permit released without a deferral was never counted.
        let plain = Box::new(SessionPermit::new(
            permit(&pool),
            s1.clone(),
            Arc::clone(&continued),
        ));
        plain.released();
        assert!(continued.lock().is_empty());
        assert_eq!(pool.running(), 0);
    }
}
