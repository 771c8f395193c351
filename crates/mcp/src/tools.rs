//! [`KnownTools`]: the bounded set of tool names a server really has, so that per-tool keys
//! (breakers, bulkheads, quotas) are never created for client-chosen names.
//!
//! The set is configured up front ([`KnownTools::from_names`]) and/or learned from the server's
//! own `tools/list` answers by [`LearnToolsLayer`] ([`KnownTools::learn_layer`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

mod learn;

pub use self::learn::{LearnTools, LearnToolsBody, LearnToolsFuture, LearnToolsLayer};

/// The key every unknown tool name shares.
pub const UNKNOWN_TOOL: &str = "unknown";

/// The tool names a server has: configured up front and/or learned from its `tools/list` answers.
///
/// Per-tool layers call [`KnownTools::key`]: a known name maps to itself (one shared `Arc<str>`,
/// no allocation per call), anything else to [`UNKNOWN_TOOL`]. The set is bounded by `capacity`;
/// names learned beyond it are ignored (and logged once). Cloning shares the set.
#[derive(Clone)]
pub struct KnownTools {
    inner: Arc<Inner>,
}

struct Inner {
    // Read on every keyed call, written only when the catalogue changes.
    names: RwLock<HashSet<Arc<str>>>,
    unknown: Arc<str>,
    capacity: usize,
    // The table never shrinks: once full it stays full, so one warning says it all (a learning
    // layer would otherwise warn at every `tools/list` of a larger catalogue).
    full_logged: AtomicBool,
    // A key was asked for a tool name while no name was known: warned once.
    empty_logged: AtomicBool,
}

impl fmt::Debug for KnownTools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnownTools")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

impl Default for KnownTools {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

impl KnownTools {
    /// The default bound: 1,024 tools.
    pub const DEFAULT_CAPACITY: usize = 1024;
    /// The longest tool name kept (MCP tool names are 1–128 characters).
    pub const MAX_NAME_LEN: usize = 128;

    /// An empty set holding at most `capacity` names.
    pub fn new(capacity: usize) -> Self {
        KnownTools {
            inner: Arc::new(Inner {
                names: RwLock::new(HashSet::new()),
                unknown: Arc::from(UNKNOWN_TOOL),
                capacity,
                full_logged: AtomicBool::new(false),
                empty_logged: AtomicBool::new(false),
            }),
        }
    }

    /// A set of these names (for example the tools the server registers).
    pub fn from_names<I, N>(names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let t = Self::default();
        t.learn(names);
        t
    }

    /// Adds names (configured, or seen in a `tools/list` answer). Returns how many were new.
    ///
    /// Empty names and names longer than [`MAX_NAME_LEN`](Self::MAX_NAME_LEN) are ignored (never
    /// truncated: a truncated name would be another tool's key). Names beyond the capacity are
    /// ignored too; the first time that happens a warning is logged.
    ///
    /// Names are never forgotten (the keyed breakers, bulkhead pools and quotas built on them
    /// are not removed either): a tool the server stops listing keeps its place. A server whose
    /// catalogue changes over time should be given a capacity for every name it will have
    /// listed, or be restarted now and then; past the capacity, new tools share the `unknown`
    /// key, and so one breaker, one pool and one quota.
    pub fn learn<I, N>(&self, names: I) -> usize
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let mut set = self.inner.names.write().unwrap_or_else(|p| p.into_inner());
        let mut added = 0;
        for n in names {
            let n = n.as_ref();
            if n.is_empty() || n.len() > Self::MAX_NAME_LEN || set.contains(n) {
                continue;
            }
            if set.len() >= self.inner.capacity {
                if !self.inner.full_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        capacity = self.inner.capacity,
                        "known-tools table full; further tool names share the unknown key"
                    );
                }
                break;
            }
            set.insert(Arc::from(n));
            added += 1;
        }
        added
    }

    /// Whether learning `names` would add nothing: each is known or would be ignored. Checked
    /// under the read lock, so re-learning an unchanged catalogue never blocks keyed calls.
    fn adds_nothing<N: AsRef<str>>(&self, names: &[N]) -> bool {
        let set = self.inner.names.read().unwrap_or_else(|p| p.into_inner());
        // A full set takes nothing more (`learn` would only warn, once).
        set.len() >= self.inner.capacity
            || names.iter().all(|n| {
                let n = n.as_ref();
                n.is_empty() || n.len() > Self::MAX_NAME_LEN || set.contains(n)
            })
    }

    /// A layer that learns the tool names of the server's `tools/list` answers into this set:
    /// `LearnToolsLayer::new(self.clone())`. See [`LearnToolsLayer`] for where it goes.
    pub fn learn_layer(&self) -> LearnToolsLayer {
        LearnToolsLayer::new(self.clone())
    }

    /// The key for a tool name: the shared name if known, [`UNKNOWN_TOOL`] otherwise.
    ///
    /// The first time a name is asked for while the set is empty, a warning says so: a per-tool
    /// layer whose set is neither configured nor learned (no [`KnownTools::learn_layer`] in the
    /// stack, or one that `tools/list` answers do not pass) keys every call `unknown`. (With a
    /// learning layer, a client that calls a tool before any `tools/list` also sees it once.)
    pub fn key(&self, name: Option<&str>) -> Arc<str> {
        if let Some(n) = name {
            let set = self.inner.names.read().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = set.get(n) {
                return Arc::clone(k);
            }
            if set.is_empty() {
                self.warn_empty();
            }
        }
        Arc::clone(&self.inner.unknown)
    }

    #[cold]
    fn warn_empty(&self) {
        if !self.inner.empty_logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "a per-tool key was asked for while no tool name is known: calls share the \
                 `unknown` key until names are known. Expected before the first tools/list \
                 answer if names are learned; otherwise configure them, or put \
                 KnownTools::learn_layer where the server's tools/list answers pass (warned once)"
            );
        }
    }

    /// Whether the name is known.
    pub fn contains(&self, name: &str) -> bool {
        self.inner
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    /// How many names are known.
    pub fn len(&self) -> usize {
        self.inner
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Whether no name is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The known names, sorted.
    pub fn names(&self) -> Vec<Arc<str>> {
        let mut v: Vec<_> = self
            .inner
            .names
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

/// Extracts the tool names from a `tools/list` result message (`{"result":{"tools":[{"name":…}]}}`),
/// for [`KnownTools::learn`]. Returns an empty list for anything else.
pub fn tool_names_in_list_result(message: &[u8]) -> Vec<String> {
    match learn::read_answer(message, None) {
        learn::Answer::List(names) => names.into_iter().map(String::from).collect(),
        learn::Answer::NotAList | learn::Answer::Other => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_share_one_key_and_the_table_is_bounded() {
        let t = KnownTools::new(2);
        assert_eq!(t.learn(["add", "echo", "slow"]), 2);
        assert_eq!(&*t.key(Some("add")), "add");
        assert_eq!(&*t.key(Some("slow")), UNKNOWN_TOOL);
        assert_eq!(&*t.key(Some("made-up-by-a-client")), UNKNOWN_TOOL);
        assert_eq!(&*t.key(None), UNKNOWN_TOOL);
        assert!(Arc::ptr_eq(&t.key(Some("add")), &t.key(Some("add"))));
        assert_eq!(t.len(), 2);
        let long = "x".repeat(200);
        assert_eq!(KnownTools::default().learn([long.as_str(), ""]), 0);
    }

    /// Counts warnings, to check that a full table warns once, not at every `tools/list`.
    struct CountWarnings(Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for CountWarnings {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, e: &tracing::Event<'_>) {
            if *e.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn a_full_table_warns_once() {
        let warnings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = KnownTools::new(1);
        tracing::subscriber::with_default(CountWarnings(Arc::clone(&warnings)), || {
            for _ in 0..3 {
                t.learn(["a", "b", "c"]);
            }
        });
        assert_eq!(t.len(), 1);
        assert_eq!(warnings.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn keys_asked_of_an_empty_set_warn_once() {
        let warnings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = KnownTools::default();
        let known = KnownTools::from_names(["add"]);
        tracing::subscriber::with_default(CountWarnings(Arc::clone(&warnings)), || {
            // No name asked, or a set that knows some: nothing to say.
            t.key(None);
            known.key(Some("made-up"));
            assert_eq!(warnings.load(Ordering::Relaxed), 0);
            for _ in 0..3 {
                assert_eq!(&*t.key(Some("add")), UNKNOWN_TOOL);
            }
        });
        assert_eq!(warnings.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn names_from_tools_list() {
        let m = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add","inputSchema":{}},{"name":"echo"}]}}"#;
        assert_eq!(tool_names_in_list_result(m), ["add", "echo"]);
        assert!(tool_names_in_list_result(b"{}").is_empty());
        assert!(tool_names_in_list_result(b"nope").is_empty());
    }
}
