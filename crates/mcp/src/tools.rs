//! [`KnownTools`]: the bounded set of tool names a server really has, so that per-tool keys
//! (breakers, bulkheads, quotas) are never created for client-chosen names.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

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
                tracing::warn!(
                    capacity = self.inner.capacity,
                    "known-tools table full; further tool names share the unknown key"
                );
                break;
            }
            set.insert(Arc::from(n));
            added += 1;
        }
        added
    }

    /// The key for a tool name: the shared name if known, [`UNKNOWN_TOOL`] otherwise.
    pub fn key(&self, name: Option<&str>) -> Arc<str> {
        if let Some(n) = name {
            let set = self.inner.names.read().unwrap_or_else(|p| p.into_inner());
            if let Some(k) = set.get(n) {
                return Arc::clone(k);
            }
        }
        Arc::clone(&self.inner.unknown)
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
    #[derive(serde::Deserialize)]
    struct Msg {
        result: Option<ListResult>,
    }
    #[derive(serde::Deserialize)]
    struct ListResult {
        #[serde(default)]
        tools: Vec<Tool>,
    }
    #[derive(serde::Deserialize)]
    struct Tool {
        name: String,
    }
    serde_json::from_slice::<Msg>(message)
        .ok()
        .and_then(|m| m.result)
        .map(|r| r.tools.into_iter().map(|t| t.name).collect())
        .unwrap_or_default()
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

    #[test]
    fn names_from_tools_list() {
        let m = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"add","inputSchema":{}},{"name":"echo"}]}}"#;
        assert_eq!(tool_names_in_list_result(m), ["add", "echo"]);
        assert!(tool_names_in_list_result(b"{}").is_empty());
        assert!(tool_names_in_list_result(b"nope").is_empty());
    }
}
