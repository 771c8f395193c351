//! [`BySession`]: the per-session table of calls that both the pause matcher
//! ([`Pauses`](crate::pause::Pauses)) and the cancellation matcher
//! ([`Calls`](crate::calls::Calls)) keep: entries under a 2025-11-25 `Mcp-Session-Id`, each
//! removed when its [`Registered`] guard drops, and a session's list removed with its last
//! entry.
//!
//! The lock is taken when an entry comes and goes and when a client's POST is matched, never per
//! frame.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderValue;

/// Entries of type `T`, per session, oldest first.
pub(crate) struct BySession<T> {
    map: Mutex<HashMap<HeaderValue, Vec<Arc<T>>>>,
}

impl<T> Default for BySession<T> {
    fn default() -> Self {
        BySession {
            map: Mutex::default(),
        }
    }
}

impl<T> fmt::Debug for BySession<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BySession")
            .field("sessions", &self.lock().len())
            .finish()
    }
}

impl<T> BySession<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<HeaderValue, Vec<Arc<T>>>> {
        // Nothing here can be left half-written by a panic: recover the guard.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `entry` under `session`; it stays until the returned guard is dropped.
    pub(crate) fn insert(self: &Arc<Self>, session: HeaderValue, entry: T) -> Registered<T> {
        let entry = Arc::new(entry);
        self.lock()
            .entry(session.clone())
            .or_default()
            .push(Arc::clone(&entry));
        Registered {
            table: Arc::clone(self),
            session,
            entry,
        }
    }

    /// Runs `f` on the entries of `session`, oldest first, under the table's lock; `None` when
    /// the session has none. `f` must not call back into the table.
    pub(crate) fn with<R>(
        &self,
        session: &HeaderValue,
        f: impl FnOnce(&[Arc<T>]) -> R,
    ) -> Option<R> {
        self.lock().get(session).map(|entries| f(entries))
    }

    /// Runs `f` on the entries of `session` under the table's lock and, if it returns an
    /// entry, adds that under the same lock (nothing can come between what `f` saw and the
    /// new entry). `f` must not call back into the table.
    pub(crate) fn with_then_insert<R>(
        self: &Arc<Self>,
        session: &HeaderValue,
        f: impl FnOnce(&[Arc<T>]) -> Option<(R, T)>,
    ) -> Option<(R, Registered<T>)> {
        let mut map = self.lock();
        let (r, entry) = f(map.get(session).map_or(&[][..], Vec::as_slice))?;
        let entry = Arc::new(entry);
        map.entry(session.clone())
            .or_default()
            .push(Arc::clone(&entry));
        drop(map);
        Some((
            r,
            Registered {
                table: Arc::clone(self),
                session: session.clone(),
                entry,
            },
        ))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

/// An entry's place in a [`BySession`] table; removes it when dropped.
pub(crate) struct Registered<T> {
    table: Arc<BySession<T>>,
    session: HeaderValue,
    pub(crate) entry: Arc<T>,
}

impl<T: fmt::Debug> fmt::Debug for Registered<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("session", &self.session)
            .field("entry", &self.entry)
            .finish()
    }
}

impl<T> Drop for Registered<T> {
    fn drop(&mut self) {
        let mut map = self.table.lock();
        if let Some(entries) = map.get_mut(&self.session) {
            entries.retain(|e| !Arc::ptr_eq(e, &self.entry));
            if entries.is_empty() {
                map.remove(&self.session);
            }
        }
    }
}
