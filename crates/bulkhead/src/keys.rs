//! Which pool a call goes to: one global pool, or one pool per key (known tool name, upstream
//! authority) in a bounded table; keyed by tool, calls that are not `tools/call` have one pool
//! per method beside the table.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tower_armor_mcp::{
    CallRequest, KnownTools, McpRequest, Method, StreamRole, tools::UNKNOWN_TOOL,
};

use crate::pool::{Acquired, Pool};

/// The key shared by every key beyond the table's bound.
pub const OVERFLOW_KEY: &str = "overflow";

/// The key of calls with no upstream authority (bulkheads keyed by authority).
pub const NO_AUTHORITY_KEY: &str = UNKNOWN_TOOL;

/// The key of the pool shared by calls of JSON-RPC methods this crate does not know (bulkheads
/// keyed by tool). Known methods have their pool under `method:` and the method's name, such as
/// `method:tools/list`.
pub const OTHER_METHODS_KEY: &str = "method:other";

/// The key of the pool of resumed calls, 2025-11-25 GETs with a call's `Last-Event-ID`
/// (bulkheads keyed by tool): a resumption names neither a tool nor a method.
pub const RESUME_KEY: &str = "stream:resume";

/// The keys of the method pools (bulkheads keyed by tool), by slot ([`method_slot`]). Every key
/// has a `:`, which MCP tool names do not (the spec allows letters, digits, `_`, `-` and `.`),
/// so in the stats a method pool's key is not a tool's.
const METHOD_KEYS: [&str; 16] = [
    "method:tools/list",
    "method:resources/list",
    "method:resources/templates/list",
    "method:resources/read",
    "method:resources/subscribe",
    "method:resources/unsubscribe",
    "method:prompts/list",
    "method:prompts/get",
    "method:completion/complete",
    "method:logging/setLevel",
    "method:tasks/get",
    "method:tasks/list",
    "method:tasks/result",
    "method:tasks/cancel",
    OTHER_METHODS_KEY,
    RESUME_KEY,
];
const OTHER_SLOT: usize = METHOD_KEYS.len() - 2;
const RESUME_SLOT: usize = METHOD_KEYS.len() - 1;

/// The method pool of a call that is not a `tools/call`: a table index computed in line (no
/// borrow of the request leaves the caller).
#[inline]
fn method_slot(m: &McpRequest) -> usize {
    if let StreamRole::Resume { .. } = m.stream_role() {
        return RESUME_SLOT;
    }
    match m.method() {
        Some(Method::ToolsList) => 0,
        Some(Method::ResourcesList) => 1,
        Some(Method::ResourceTemplatesList) => 2,
        Some(Method::ResourcesRead) => 3,
        Some(Method::ResourcesSubscribe) => 4,
        Some(Method::ResourcesUnsubscribe) => 5,
        Some(Method::PromptsList) => 6,
        Some(Method::PromptsGet) => 7,
        Some(Method::CompletionComplete) => 8,
        Some(Method::LoggingSetLevel) => 9,
        Some(Method::TasksGet) => 10,
        Some(Method::TasksList) => 11,
        Some(Method::TasksResult) => 12,
        Some(Method::TasksCancel) => 13,
        // Unknown methods (client-controlled names: one shared pool), notification methods sent
        // as requests, and the methods that never come here (`tools/call` has the tool pools,
        // `subscriptions/listen` the stream pool, the handshake and `ping` no pool).
        _ => OTHER_SLOT,
    }
}

/// Whether a call of a bulkhead keyed by tool takes no permit at all: the handshake
/// (`initialize`, `server/discover`) and `ping`. The MCP framework answers them from what it
/// has, without a tool, and refusing them because tools are busy would turn one slow tool into
/// failed connections (and clients reconnecting, which adds load).
#[inline]
fn exempt_when_keyed_by_tool(m: &McpRequest) -> bool {
    matches!(m.stream_role(), StreamRole::Call)
        && matches!(
            m.method(),
            Some(Method::Initialize | Method::ServerDiscover | Method::Ping)
        )
}

/// The pools of calls that are not `tools/call` (bulkheads keyed by tool): one per method slot,
/// made on first use. The set of slots is fixed, so these pools do not count against the key
/// table's bound.
#[derive(Debug)]
pub(crate) struct MethodPools {
    pools: [OnceLock<Arc<Pool>>; METHOD_KEYS.len()],
    max: usize,
    max_queue: usize,
}

impl MethodPools {
    fn new(max: usize, max_queue: usize) -> Self {
        MethodPools {
            pools: std::array::from_fn(|_| OnceLock::new()),
            max,
            max_queue,
        }
    }

    fn pool(&self, slot: usize) -> &Arc<Pool> {
        self.pools[slot].get_or_init(|| {
            Arc::new(Pool::new(
                Some(Arc::from(METHOD_KEYS[slot])),
                self.max,
                self.max_queue,
            ))
        })
    }

    #[inline(never)]
    fn acquire(&self, slot: usize) -> Acquired {
        self.pool(slot).acquire()
    }

    fn get(&self, key: &str) -> Option<&Arc<Pool>> {
        let slot = METHOD_KEYS.iter().position(|k| *k == key)?;
        self.pools[slot].get()
    }

    fn all(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.pools.iter().filter_map(OnceLock::get)
    }
}

/// How calls are split into pools.
#[derive(Clone, Debug)]
pub(crate) enum Keying {
    /// One pool for every call.
    Global,
    /// One pool per known tool (unknown names share `unknown`); one pool per other method.
    Tool(KnownTools),
    /// One pool per upstream authority.
    Authority,
}

/// The pools of a bulkhead, built once and shared by every clone.
#[derive(Debug)]
pub(crate) enum Pools {
    Global(Arc<Pool>),
    // Boxed: the method pools are a fixed array, larger than the other variants.
    Tool(KnownTools, KeyTable, Box<MethodPools>),
    Authority(KeyTable),
}

impl Pools {
    pub(crate) fn new(keying: &Keying, max: usize, max_queue: usize, max_keys: usize) -> Self {
        match keying {
            Keying::Global => Pools::Global(Arc::new(Pool::new(None, max, max_queue))),
            Keying::Tool(tools) => Pools::Tool(
                tools.clone(),
                KeyTable::new(max, max_queue, max_keys),
                Box::new(MethodPools::new(max, max_queue)),
            ),
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
            Pools::Tool(tools, table, methods) => match req.mcp() {
                Some(m) if !matches!(m.method(), Some(Method::ToolsCall)) => {
                    methods.acquire(method_slot(m))
                }
                // A tools/call, or a request without facts (it may be any call: `unknown`).
                m => Self::acquire_tool(tools, table, m.and_then(McpRequest::name)),
            },
            Pools::Authority(table) => {
                let key = req.authority().unwrap_or(NO_AUTHORITY_KEY);
                table.acquire(key, || Arc::from(key))
            }
        }
    }

    /// Whether a call takes no permit at all (see [`exempt_when_keyed_by_tool`]).
    #[inline]
    pub(crate) fn exempts(&self, m: &McpRequest) -> bool {
        matches!(self, Pools::Tool(..)) && exempt_when_keyed_by_tool(m)
    }

    /// The pool of a tool call (`name`: the tool of a `tools/call`, `None` without facts).
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
            Pools::Tool(tools, table, methods) => match req.mcp() {
                Some(m) if !matches!(m.method(), Some(Method::ToolsCall)) => {
                    Arc::clone(methods.pool(method_slot(m)))
                }
                m => {
                    let key = tools.key(m.and_then(McpRequest::name));
                    table.get_or_insert(&key, || key.clone())
                }
            },
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
            Pools::Tool(_, t, methods) => t.all(methods.all().cloned()),
            Pools::Authority(t) => t.all(None),
        }
    }

    /// The pool of `key`, if it exists.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<Pool>> {
        match self {
            Pools::Global(_) => None,
            Pools::Tool(_, t, methods) => methods.get(key).cloned().or_else(|| t.get(key)),
            Pools::Authority(t) => t.get(key),
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

    /// The table's pools by key, then the `extra` ones by key, then the overflow pool once used.
    fn all(&self, extra: impl IntoIterator<Item = Arc<Pool>>) -> Vec<Arc<Pool>> {
        let mut v: Vec<Arc<Pool>> = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.key().cmp(&b.key()));
        let mut extra: Vec<Arc<Pool>> = extra.into_iter().collect();
        extra.sort_by(|a, b| a.key().cmp(&b.key()));
        v.append(&mut extra);
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
        // A request without facts may be any call: it shares `unknown` too.
        assert!(Arc::ptr_eq(&pools.pool_for(&Request::new(())), &made_up));
        // A call that is not a tools/call has its method's pool, never `unknown`.
        let list = pools.pool_for(&request(Method::ToolsList));
        assert_eq!(list.key().map(|k| &**k), Some("method:tools/list"));
        assert!(Arc::ptr_eq(
            &list,
            &pools.pool_for(&request(Method::ToolsList))
        ));
        let other = pools.pool_for(&request(Method::Other("x/made-up".into())));
        assert_eq!(other.key().map(|k| &**k), Some(OTHER_METHODS_KEY));
        assert!(Arc::ptr_eq(
            &other,
            &pools.pool_for(&request(Method::Other("y/made-up".into())))
        ));
        let keys: Vec<_> = pools
            .all()
            .iter()
            .map(|p| p.key().unwrap().to_string())
            .collect();
        assert_eq!(
            keys,
            ["add", "unknown", "method:other", "method:tools/list"]
        );
        assert!(Arc::ptr_eq(&pools.get("method:tools/list").unwrap(), &list));
    }

    fn request(method: Method) -> Request<()> {
        let mut r = Request::new(());
        r.extensions_mut()
            .insert(McpRequest::new(MessageKind::Request, Some(method), None));
        r
    }

    /// Every known method that takes a method pool has its own, keyed `method:<name>`; the
    /// handshake and `ping` take none.
    #[test]
    fn method_pools_are_keyed_by_the_method_name() {
        let known = [
            Method::ToolsList,
            Method::ResourcesList,
            Method::ResourceTemplatesList,
            Method::ResourcesRead,
            Method::ResourcesSubscribe,
            Method::ResourcesUnsubscribe,
            Method::PromptsList,
            Method::PromptsGet,
            Method::CompletionComplete,
            Method::LoggingSetLevel,
            Method::TasksGet,
            Method::TasksList,
            Method::TasksResult,
            Method::TasksCancel,
        ];
        for m in known {
            let facts = McpRequest::new(MessageKind::Request, Some(m.clone()), None);
            assert_eq!(
                METHOD_KEYS[method_slot(&facts)],
                format!("method:{}", m.as_str())
            );
            assert!(!exempt_when_keyed_by_tool(&facts));
        }
        for m in [Method::Initialize, Method::ServerDiscover, Method::Ping] {
            let facts = McpRequest::new(MessageKind::Request, Some(m), None);
            assert!(exempt_when_keyed_by_tool(&facts));
            let pools = Pools::new(&Keying::Global, 1, 0, 4);
            assert!(!pools.exempts(&facts), "only when keyed by tool");
        }
        let facts = McpRequest::new(MessageKind::Request, Some(Method::Other("x".into())), None);
        assert_eq!(METHOD_KEYS[method_slot(&facts)], OTHER_METHODS_KEY);
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
        // Not a tools/call: its method's pool.
        let _l = pools.acquire(&request(Method::ToolsList));
        assert_eq!(running("method:tools/list"), 1);
        // A name learned later gets its own pool from then on.
        tools.learn(["made-up"]);
        take(&|| call("made-up"), "made-up");
        assert_eq!(
            (running("add"), running(UNKNOWN_TOOL), running("made-up")),
            (2, 3, 1)
        );
        drop(held);
        assert_eq!((running("add"), running(UNKNOWN_TOOL)), (0, 0));
        assert_eq!(running("method:tools/list"), 1);
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
