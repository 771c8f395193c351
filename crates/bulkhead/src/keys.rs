//! Which pool a call goes to: one global pool, or one pool per key (known tool name, upstream
//! authority) in a bounded table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use tower_armor_mcp::{CallRequest, KnownTools, tools::UNKNOWN_TOOL};

use crate::pool::Pool;

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

    /// The pool for a call.
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

/// Pools by key, at most `max_keys` of them plus one shared overflow pool.
#[derive(Debug)]
pub(crate) struct KeyTable {
    pools: RwLock<HashMap<Arc<str>, Arc<Pool>>>,
    overflow: Arc<Pool>,
    max: usize,
    max_queue: usize,
    max_keys: usize,
    warned: AtomicBool,
}

impl KeyTable {
    fn new(max: usize, max_queue: usize, max_keys: usize) -> Self {
        KeyTable {
            pools: RwLock::new(HashMap::new()),
            overflow: Arc::new(Pool::new(Some(Arc::from(OVERFLOW_KEY)), max, max_queue)),
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
