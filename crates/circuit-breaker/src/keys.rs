//! The bounded key table of a keyed breaker: lock-free lookups, insert-only.
//!
//! Open addressing over `OnceLock` slots: a lookup is a hash and a few atomic loads; a new key
//! claims the first empty slot of its probe sequence with `OnceLock::set`, under a lock taken
//! only to insert (once per key), so that the bound is exact however many threads insert at
//! once. Slots are never emptied, so a lookup may stop at the first empty slot. The table holds
//! at most `max_keys` keys (its slot array is at least twice that); callers map further keys to
//! a shared one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::core::Core;

type Entry = (Arc<str>, Arc<Core>);

pub(crate) struct KeyTable {
    slots: Box<[OnceLock<Entry>]>,
    mask: usize,
    hasher: RandomState,
    /// Keys in the table (changed only under `inserting`).
    len: AtomicUsize,
    max_keys: usize,
    inserting: Mutex<()>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

impl KeyTable {
    pub(crate) fn new(max_keys: usize) -> Self {
        let size = (max_keys * 2).next_power_of_two().max(4);
        KeyTable {
            slots: (0..size).map(|_| OnceLock::new()).collect(),
            mask: size - 1,
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
            max_keys,
            inserting: Mutex::new(()),
        }
    }

    fn start(&self, key: &str) -> usize {
        // The bytes alone (no `str` terminator: one kind of key per table).
        let mut h = self.hasher.build_hasher();
        h.write(key.as_bytes());
        (h.finish() as usize) & self.mask
    }

    /// The circuit of `key`, if the table has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Arc<Core>> {
        let mut i = self.start(key);
        for _ in 0..self.slots.len() {
            let (k, core) = self.slots[i].get()?;
            if &**k == key {
                return Some(core);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The circuit of `key`, created by `make` if the table has room; `None` when it is full.
    pub(crate) fn get_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> (Arc<str>, Arc<Core>),
    ) -> Option<&Arc<Core>> {
        if let Some(c) = self.get(key) {
            return Some(c);
        }
        if self.len.load(Ordering::Acquire) >= self.max_keys {
            // Full (it may have been filled by this very key meanwhile).
            return self.get(key);
        }
        // Nothing in the table is left half-written by a panic in `make`: recover the guard.
        let _inserting = self.inserting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = self.get(key) {
            return Some(c);
        }
        if self.len.load(Ordering::Relaxed) >= self.max_keys {
            return None;
        }
        let mut entry = Some(make());
        let mut i = self.start(key);
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            // Only inserts set slots, and they hold the lock: an empty slot stays ours.
            if slot.get().is_none()
                && let Some(e) = entry.take()
                && slot.set(e).is_ok()
            {
                self.len.fetch_add(1, Ordering::Release);
                return slot.get().map(|(_, core)| core);
            }
            i = (i + 1) & self.mask;
        }
        // Unreachable with at most half the slots used.
        None
    }

    /// Every circuit, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().filter_map(OnceLock::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Builder;
    use crate::state::State;

    fn make(key: &str) -> (Arc<str>, Arc<Core>) {
        let (s, _, _) = Builder::new().validate().unwrap();
        let k: Arc<str> = key.into();
        (
            k.clone(),
            Arc::new(Core::new(Some(k), Arc::new(s), State::Closed)),
        )
    }

    #[test]
    fn bounded_insert_only_table() {
        let t = KeyTable::new(3);
        let a = t.get_or_insert("a", || make("a")).unwrap().clone();
        assert!(Arc::ptr_eq(&a, t.get("a").unwrap()));
        assert!(Arc::ptr_eq(
            &a,
            t.get_or_insert("a", || unreachable!()).unwrap()
        ));
        t.get_or_insert("b", || make("b")).unwrap();
        t.get_or_insert("c", || make("c")).unwrap();
        assert!(t.get_or_insert("d", || make("d")).is_none());
        assert!(t.get("d").is_none());
        let mut keys: Vec<_> = t.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn concurrent_inserts_of_one_key_agree() {
        let t = Arc::new(KeyTable::new(64));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    (0..64)
                        .map(|i| {
                            let k = format!("k{i}");
                            Arc::as_ptr(t.get_or_insert(&k, || make(&k)).unwrap()) as usize
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let got: Vec<Vec<usize>> = threads.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(got[0], got[1]);
        assert_eq!(t.iter().count(), 64);
        assert_eq!(t.len.load(Ordering::Relaxed), 64);
    }
}
