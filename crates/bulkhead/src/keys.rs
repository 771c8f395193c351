//! Which pool a call goes to: one global pool, or one pool per key (known tool name, upstream
//! authority) in a bounded table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tower_armor_mcp::{CallRequest, KnownTools, tools::UNKNOWN_TOOL};

use crate::pool::{Acquired, Pool};

/// The key shared by every key beyond the table's bound.
pub const OVERFLOW_KEY: &str = "overflow";

/// The key of calls with no upstream authority (bulkheads keyed by authority).
pub const NO_AUTHORITY_KEY: &str = UNKNOWN_TOOL;

/// How calls are split into pools.
#[derive(Clone, Debug)]
pub(crate) enum Keying {
    /// One pool for every call.
    Global,
    /// One pool per known tool; everything else shares `unknown`.
    Tool(KnownTools),
    /// One pool per upstream authority.
    Authority,
}

/// The pools of a bulkhead, built once and shared by every clone.
#[derive(Debug)]
pub(crate) enum Pools {
    Global(Arc<Pool>),
    Tool(KnownTools, KeyTable),
    Authority(KeyTable),
}

impl Pools {
    pub(crate) fn new(keying: &Keying, max: usize, max_queue: usize, max_keys: usize) -> Self {
        match keying {
            Keying::Global => Pools::Global(Arc::new(Pool::new(None, max, max_queue))),
            Keying::Tool(tools) => {
                Pools::Tool(tools.clone(), KeyTable::new(max, max_queue, max_keys))
            }
            Keying::Authority => Pools::Authority(KeyTable::new(max, max_queue, max_keys)),
        }
    }

    /// Takes a permit (or a place in line) from the pool of a call.
    ///
    /// Only what the key needs (a `&str` into the request's heap data) leaves this inlined
    /// function: the request itself is never borrowed by a call the compiler cannot see through,
    /// so it is not copied once more on its way to the inner service.
    #[inline]
    pub(crate) fn acquire<R: CallRequest>(&self, req: &R) -> Acquired {
        match self {
            Pools::Global(p) => p.acquire(),
            Pools::Tool(tools, table) => {
                Self::acquire_tool(tools, table, req.mcp().and_then(|m| m.tool()))
            }
            Pools::Authority(table) => {
                let key = req.authority().unwrap_or(NO_AUTHORITY_KEY);
                table.acquire(key, || Arc::from(key))
            }
        }
    }

    /// The pool of a tool call (`name`: the tool of a `tools/call`, `None` for anything else).
    #[inline(never)]
    fn acquire_tool(tools: &KnownTools, table: &KeyTable, name: Option<&str>) -> Acquired {
        // Pools are only made for keys `tools.key` gave (a known name, or `unknown`; never
        // `overflow`), and names are never forgotten: a pool under the raw name is the pool
        // `tools.key` would pick, so the usual call needs one lookup, not two.
        if let Some(a) = table.acquire_existing(name.unwrap_or(UNKNOWN_TOOL)) {
            return a;
        }
        let key = tools.key(name);
        if &*key == UNKNOWN_TOOL
            && let Some(p) = table.unknown.get()
        {
            return p.acquire();
        }
        table.get_or_insert(&key, || key.clone()).acquire()
    }

    /// The pool for a call.
    #[cfg(test)]
    pub(crate) fn pool_for<R: CallRequest>(&self, req: &R) -> Arc<Pool> {
        match self {
            Pools::Global(p) => Arc::clone(p),
            Pools::Tool(tools, table) => {
                let key = tools.key(req.mcp().and_then(|m| m.tool()));
                table.get_or_insert(&key, || key.clone())
            }
            Pools::Authority(table) => {
                let key = req.authority().unwrap_or(NO_AUTHORITY_KEY);
                table.get_or_insert(key, || Arc::from(key))
            }
        }
    }

    /// Every pool, for stats.
    pub(crate) fn all(&self) -> Vec<Arc<Pool>> {
        match self {
            Pools::Global(p) => vec![Arc::clone(p)],
            Pools::Tool(_, t) | Pools::Authority(t) => t.all(),
        }
    }

    /// The pool of `key`, if it exists.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Pool>> {
        match self {
            Pools::Global(_) => None,
            Pools::Tool(_, t) | Pools::Authority(t) => t.get(key),
        }
    }
}

/// Pools ordered by key length, then bytes, found by binary search: a few comparisons (most
/// settled by the length alone) and no hashing of the key on every call, whatever the caller
/// names. Tables are small (one entry per known tool or upstream, bounded by `max_keys`) and
/// written only when a key is first seen.
#[derive(Debug, Default)]
struct Sorted(Vec<(Arc<str>, Arc<Pool>)>);

impl Sorted {
    #[inline]
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| {
            k.len()
                .cmp(&key.len())
                .then_with(|| k.as_bytes().cmp(key.as_bytes()))
        })
    }

    #[inline]
    fn get(&self, key: &str) -> Option<&Arc<Pool>> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    fn insert(&mut self, key: Arc<str>, pool: Arc<Pool>) {
        match self.position(&key) {
            Ok(i) => self.0[i].1 = pool,
            Err(i) => self.0.insert(i, (key, pool)),
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.0.iter().map(|(_, p)| p)
    }
}

/// Pools by key, at most `max_keys` of them plus one shared overflow pool.
#[derive(Debug)]
pub(crate) struct KeyTable {
    pools: RwLock<Sorted>,
    overflow: Arc<Pool>,
    /// The pool keyed [`UNKNOWN_TOOL`] once it is in `pools` (pools are never removed), so calls
    /// of unknown tools skip a second lookup.
    unknown: OnceLock<Arc<Pool>>,
    max: usize,
    max_queue: usize,
    max_keys: usize,
    warned: AtomicBool,
}

impl KeyTable {
    fn new(max: usize, max_queue: usize, max_keys: usize) -> Self {
        KeyTable {
            pools: RwLock::new(Sorted::default()),
            overflow: Arc::new(Pool::new(Some(Arc::from(OVERFLOW_KEY)), max, max_queue)),
            unknown: OnceLock::new(),
            max,
            max_queue,
            max_keys,
            warned: AtomicBool::new(false),
        }
    }

    fn get(&self, key: &str) -> Option<Arc<Pool>> {
        if key == OVERFLOW_KEY {
            return Some(Arc::clone(&self.overflow));
        }
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// Takes a permit (or a place in line) from the pool of `key` if that pool exists, under
    /// the read lock (no reference count taken on the pool).
    #[inline]
    fn acquire_existing(&self, key: &str) -> Option<Acquired> {
        let pools = self.pools.read().unwrap_or_else(|p| p.into_inner());
        pools.get(key).map(|p| p.acquire())
    }

    /// Takes a permit (or a place in line) from the pool of `key`, made if needed.
    #[inline(never)]
    fn acquire(&self, key: &str, owned: impl FnOnce() -> Arc<str>) -> Acquired {
        if key == OVERFLOW_KEY {
            return self.overflow.acquire();
        }
        if let Some(a) = self.acquire_existing(key) {
            return a;
        }
        self.get_or_insert(key, owned).acquire()
    }

    fn get_or_insert(&self, key: &str, owned: impl FnOnce() -> Arc<str>) -> Arc<Pool> {
        if let Some(p) = self.get(key) {
            return p;
        }
        let mut pools = self.pools.write().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pools.get(key) {
            return Arc::clone(p);
        }
        if pools.len() >= self.max_keys {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_keys = self.max_keys,
                    "bulkhead key table full; further keys share the overflow pool"
                );
            }
            return Arc::clone(&self.overflow);
        }
        let key = owned();
        let pool = Arc::new(Pool::new(Some(key.clone()), self.max, self.max_queue));
        if &*key == UNKNOWN_TOOL {
            // Set once: the key is inserted once, under the write lock.
            let _ = self.unknown.set(Arc::clone(&pool));
        }
        pools.insert(key, Arc::clone(&pool));
        pool
    }

    fn all(&self) -> Vec<Arc<Pool>> {
        let mut v: Vec<Arc<Pool>> = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.key().cmp(&b.key()));
        if self.overflow.running() > 0 || self.overflow.queued() > 0 || self.overflow.rejected() > 0
        {
            v.push(Arc::clone(&self.overflow));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use http::Request;
    use tower_armor_mcp::{McpRequest, MessageKind, Method, ToolCall};

    use super::*;

    #[test]
    fn tools_key_only_known_names() {
        let tools = KnownTools::from_names(["add", "slow"]);
        let pools = Pools::new(&Keying::Tool(tools), 2, 0, 16);
        let add = pools.pool_for(&ToolCall::new("add", Default::default()));
        let add2 = pools.pool_for(&ToolCall::new("add", Default::default()));
        assert!(Arc::ptr_eq(&add, &add2));
        let made_up = pools.pool_for(&ToolCall::new("made-up", Default::default()));
        let other = pools.pool_for(&ToolCall::new("another-made-up", Default::default()));
        assert!(Arc::ptr_eq(&made_up, &other));
        assert_eq!(made_up.key().map(|k| &**k), Some(UNKNOWN_TOOL));
        // A call that is not a tools/call, or has no facts at all, shares `unknown` too.
        let mut list = Request::new(());
        list.extensions_mut().insert(McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsList),
            None,
        ));
        assert!(Arc::ptr_eq(&pools.pool_for(&list), &made_up));
        assert!(Arc::ptr_eq(&pools.pool_for(&Request::new(())), &made_up));
        assert_eq!(pools.all().len(), 2);
    }

    /// `acquire` (one lookup by the raw name first) takes from the pool `pool_for` (the key
    /// `KnownTools` gives, then the table) picks, for every kind of name.
    #[test]
    fn acquire_takes_from_the_pool_the_key_names() {
        let tools = KnownTools::from_names(["add", "overflow", "unknown"]);
        let pools = Pools::new(&Keying::Tool(tools.clone()), 8, 0, 16);
        let running = |key: &str| pools.get(key).map_or(0, |p| p.running());
        let call = |name: &str| ToolCall::new(name, Default::default());
        let mut held = Vec::new();
        let mut take = |req: &dyn Fn() -> ToolCall, want: &str| {
            let before = running(want);
            let expected = pools.pool_for(&req());
            assert_eq!(expected.key().map(|k| &**k), Some(want));
            match pools.acquire(&req()) {
                Acquired::Granted(p) => held.push(p),
                other => panic!("expected a permit, got {other:?}"),
            }
            assert_eq!(running(want), before + 1, "{want}");
        };
        take(&|| call("add"), "add");
        take(&|| call("add"), "add");
        // Unknown names, twice (the second from the remembered `unknown` pool).
        take(&|| call("made-up"), UNKNOWN_TOOL);
        take(&|| call("made-up"), UNKNOWN_TOOL);
        // A known tool named like the shared keys.
        take(&|| call("unknown"), UNKNOWN_TOOL);
        take(&|| call("overflow"), OVERFLOW_KEY);
        // Not a tools/call: no name.
        let list = || {
            let mut r = Request::new(());
            r.extensions_mut().insert(McpRequest::new(
                MessageKind::Request,
                Some(Method::ToolsList),
                None,
            ));
            r
        };
        let before = running(UNKNOWN_TOOL);
        let _l = pools.acquire(&list());
        assert_eq!(running(UNKNOWN_TOOL), before + 1);
        // A name learned later gets its own pool from then on.
        tools.learn(["made-up"]);
        take(&|| call("made-up"), "made-up");
        assert_eq!(
            (running("add"), running(UNKNOWN_TOOL), running("made-up")),
            (2, 4, 1)
        );
        drop(held);
        assert_eq!((running("add"), running(UNKNOWN_TOOL)), (0, 1));
    }

    #[test]
    fn acquire_uses_the_overflow_pool_once_the_table_is_full() {
        let tools = KnownTools::from_names(["add", "echo"]);
        let pools = Pools::new(&Keying::Tool(tools), 1, 0, 1);
        let call = |name: &str| ToolCall::new(name, Default::default());
        let add = pools.acquire(&call("add"));
        assert!(matches!(add, Acquired::Granted(_)));
        let echo = pools.acquire(&call("echo"));
        assert!(matches!(echo, Acquired::Granted(_)));
        // `echo` and unknown names share the overflow pool (its one permit is taken).
        match pools.acquire(&call("made-up")) {
            Acquired::Full(key) => assert_eq!(key.as_deref(), Some(OVERFLOW_KEY)),
            other => panic!("expected the overflow pool to be full, got {other:?}"),
        }
        match pools.acquire(&call("add")) {
            Acquired::Full(key) => assert_eq!(key.as_deref(), Some("add")),
            other => panic!("expected add's pool to be full, got {other:?}"),
        }
    }

    #[test]
    fn the_key_table_is_bounded() {
        let pools = Pools::new(&Keying::Authority, 1, 0, 3);
        for i in 0..100 {
            let req = Request::get(format!("http://up{i}:80/mcp"))
                .body(())
                .unwrap();
            drop(pools.pool_for(&req));
        }
        let req = Request::get("http://up99:80/mcp").body(()).unwrap();
        let p = pools.pool_for(&req);
        assert_eq!(p.key().map(|k| &**k), Some(OVERFLOW_KEY));
        let first = pools.pool_for(&Request::get("http://up0:80/mcp").body(()).unwrap());
        assert_eq!(first.key().map(|k| &**k), Some("up0:80"));
        let none = pools.pool_for(&Request::new(()));
        assert_eq!(none.key().map(|k| &**k), Some(OVERFLOW_KEY));
        let _held = p.try_acquire();
        assert_eq!(
            pools.all().len(),
            4,
            "three keys and the busy overflow pool"
        );
    }
}
