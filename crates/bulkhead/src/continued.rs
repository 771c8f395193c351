//! Calls that go on after their answer ended, and their resumptions.
//!
//! A 2025-11-25 tool runs on when its caller drops the stream. A layer inside that holds such a
//! call for its client to resume (the timeout layer's resume grace) takes a
//! [`Continuation`](tower_armor_mcp::Continuation) of it, and the call's permit stays taken
//! until the call is cancelled, or resumed and ended. The resumption (`GET` + the stream's
//! `Last-Event-ID`) is the same call: it must not need a second permit, least of all from a
//! pool its own held call may fill (a global bulkhead of one permit would refuse every
//! resumption). So the permits whose release waits for a continuation are counted here by
//! session and stream (the part of rmcp's event ids after the `/`, which the layer holding the
//! call names), and a resumption of that stream in that session adopts the permit instead of
//! taking one: at most one adoption at a time per such permit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::HeaderValue;
use tower_armor_mcp::ReleaseListener;

use crate::pool::Permit;

/// Per session and stream: permits held past their answer, and resumptions adopting them.
#[derive(Debug, Default)]
pub(crate) struct Continued {
    sessions: Mutex<HashMap<HeaderValue, HashMap<Box<str>, Counts>>>,
}

#[derive(Debug, Default)]
struct Counts {
    held: usize,
    adopted: usize,
}

type Sessions = HashMap<HeaderValue, HashMap<Box<str>, Counts>>;

impl Continued {
    fn lock(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the counts of `stream` in `session`, and forgets them once both are zero.
    fn change(&self, session: &HeaderValue, stream: &str, f: impl FnOnce(&mut Counts)) {
        let mut sessions = self.lock();
        let Some(streams) = sessions.get_mut(session) else {
            return;
        };
        if let Some(c) = streams.get_mut(stream) {
            f(c);
            if c.held == 0 && c.adopted == 0 {
                streams.remove(stream);
            }
        }
        if streams.is_empty() {
            sessions.remove(session);
        }
    }

    /// A resumption of `stream` in `session`: adopts the permit its held call keeps, if one is
    /// not adopted yet.
    pub(crate) fn adopt(self: &Arc<Self>, session: &HeaderValue, stream: &str) -> Option<Adoption> {
        let mut sessions = self.lock();
        let c = sessions
            .get_mut(session)?
            .get_mut(stream)
            .filter(|c| c.held > c.adopted)?;
        c.adopted += 1;
        Some(Adoption {
            continued: Arc::clone(self),
            session: session.clone(),
            stream: Box::from(stream),
        })
    }

    /// How many sessions have counts (for tests).
    #[cfg(test)]
    fn sessions(&self) -> usize {
        self.lock().len()
    }
}

/// A resumption's claim on a held permit; given back when dropped.
#[derive(Debug)]
pub(crate) struct Adoption {
    continued: Arc<Continued>,
    session: HeaderValue,
    stream: Box<str>,
}

impl Drop for Adoption {
    fn drop(&mut self) {
        self.continued.change(&self.session, &self.stream, |c| {
            c.adopted = c.adopted.saturating_sub(1);
        });
    }
}

/// The permit of a call in a 2025-11-25 session, released through the answer's completion
/// handle: counted in [`Continued`] while its release waits for a continuation that names the
/// stream a resumption would name.
#[derive(Debug)]
pub(crate) struct SessionPermit {
    _permit: Permit,
    session: HeaderValue,
    continued: Arc<Continued>,
    /// The stream it is counted under, once deferred.
    counted: Option<Box<str>>,
}

impl SessionPermit {
    pub(crate) fn new(permit: Permit, session: HeaderValue, continued: Arc<Continued>) -> Self {
        SessionPermit {
            _permit: permit,
            session,
            continued,
            counted: None,
        }
    }
}

impl ReleaseListener for SessionPermit {
    fn deferred(&mut self, stream: Option<&str>) {
        // A call no resumption can name is not counted: nothing would adopt its permit.
        let Some(stream) = stream else {
            return;
        };
        // Held past its answer (up to the resume grace): the session id is copied out of the
        // request's read buffer, which the entry and this permit would otherwise keep alive.
        self.session = tower_armor_mcp::detached(&self.session);
        let mut sessions = self.continued.lock();
        let streams = sessions.entry(self.session.clone()).or_default();
        streams.entry(Box::from(stream)).or_default().held += 1;
        drop(sessions);
        self.counted = Some(Box::from(stream));
    }

    fn released(self: Box<Self>) {
        drop(self);
    }
}

/// However the listener goes (released, or dropped unreleased while a listener panics), the
/// count goes with it.
impl Drop for SessionPermit {
    fn drop(&mut self) {
        if let Some(stream) = self.counted.take() {
            self.continued.change(&self.session, &stream, |c| {
                c.held = c.held.saturating_sub(1);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Acquired, Pool};

    fn session_permit(pool: &Arc<Pool>, continued: &Arc<Continued>) -> Box<SessionPermit> {
        let Acquired::Granted(p) = pool.acquire() else {
            panic!("a free permit");
        };
        Box::new(SessionPermit::new(
            p,
            HeaderValue::from_static("s1"),
            Arc::clone(continued),
        ))
    }

    #[test]
    fn resumptions_adopt_at_most_the_held_permit_of_their_stream() {
        let pool = Arc::new(Pool::new(None, 2, 0));
        let continued = Arc::new(Continued::default());
        let s1 = HeaderValue::from_static("s1");
        let s2 = HeaderValue::from_static("s2");
        assert!(continued.adopt(&s1, "3").is_none(), "nothing held");

        let mut held = session_permit(&pool, &continued);
        held.deferred(Some("3"));
        assert!(continued.adopt(&s2, "3").is_none(), "another session's");
        assert!(continued.adopt(&s1, "4").is_none(), "another stream's");
        let a = continued.adopt(&s1, "3").expect("adopted");
        assert!(
            continued.adopt(&s1, "3").is_none(),
            "one adoption per held permit"
        );
        drop(a);
        let a = continued.adopt(&s1, "3").expect("free to adopt again");

        // Released while adopted: the permit goes back; the table forgets the stream once the
        // adoption ends too.
        held.released();
        assert_eq!(pool.running(), 0);
        assert!(continued.adopt(&s1, "3").is_none());
        drop(a);
        assert_eq!(continued.sessions(), 0);

        // Not counted without a stream to name, nor without a deferral; and a listener
        // dropped unreleased (a panicking listener beside it) takes its count along.
        let mut nameless = session_permit(&pool, &continued);
        nameless.deferred(None);
        assert_eq!(continued.sessions(), 0);
        nameless.released();
        session_permit(&pool, &continued).released();
        let mut dropped = session_permit(&pool, &continued);
        dropped.deferred(Some("5"));
        assert_eq!(continued.sessions(), 1);
        drop(dropped);
        assert_eq!(continued.sessions(), 0);
        assert_eq!(pool.running(), 0);
    }
}
