//! [`AllowPolicy`]: which tools each principal may call. Pure; no runtime.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use tower_armor_mcp::Principal;

use crate::error::ConfigError;
use crate::tokens::check_principal;

/// `MCP_TOOL_ALLOW`: `alice:add,echo;bob:*`.
pub const ENV_TOOL_ALLOW: &str = "MCP_TOOL_ALLOW";

/// The longest tool name accepted in a policy (MCP tool names are 1–128 characters).
const MAX_TOOL_LEN: usize = 128;

/// The set of tools one principal may call.
pub(crate) type ToolSet = Arc<HashSet<Box<str>>>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    All,
    Only(ToolSet),
}

/// What one request's principal may do.
#[derive(Clone, Debug)]
pub(crate) enum Access<'a> {
    /// Every tool (unnamed principals, `*`, or no principal at all).
    All,
    /// Only these.
    Only(&'a ToolSet),
}

/// Per-principal tool allow-lists. Principals not named may call every tool.
///
/// ```
/// use tower_armor_bearer_auth::allow::AllowPolicy;
///
/// let p = AllowPolicy::parse("alice:add,echo;bob:*").unwrap();
/// assert!(p.allows("alice", "add"));
/// assert!(!p.allows("alice", "crash"));
/// assert!(p.allows("bob", "crash"));
/// assert!(p.allows("carol", "crash")); // not named: unrestricted
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowPolicy {
    rules: HashMap<Box<str>, Rule>,
}

impl fmt::Debug for AllowPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.rules.keys().collect();
        names.sort();
        f.debug_struct("AllowPolicy")
            .field("restricted", &names)
            .finish()
    }
}

impl AllowPolicy {
    /// An empty policy: everybody may call every tool.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits `principal` to `tools` (replacing an earlier rule for it). An empty list allows no
    /// tool at all.
    pub fn allow<I, T>(mut self, principal: &str, tools: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let set: HashSet<Box<str>> = tools.into_iter().map(|t| t.as_ref().into()).collect();
        self.rules
            .insert(principal.into(), Rule::Only(Arc::new(set)));
        self
    }

    /// Lets `principal` call every tool (the same as not naming it; documents intent).
    pub fn allow_all(mut self, principal: &str) -> Self {
        self.rules.insert(principal.into(), Rule::All);
        self
    }

    /// Parses `MCP_TOOL_ALLOW` syntax: rules separated by `;`, each `principal:tool,tool` or
    /// `principal:*`; `principal:` (nothing after the colon) allows no tool. Blanks around names
    /// are ignored. A principal named twice, a bad name, or `*` mixed with names is an error.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        Self::parse_for_setting(spec, "AllowPolicy::parse")
    }

    pub(crate) fn parse_for_setting(
        spec: &str,
        setting: &'static str,
    ) -> Result<Self, ConfigError> {
        let mut rules = HashMap::new();
        let last = spec.split(';').count() - 1;
        for (i, rule) in spec.split(';').enumerate() {
            let rule = rule.trim_ascii();
            let n = i + 1;
            let err = |d: &str| ConfigError::new(setting, format!("rule {n}: {d}"));
            if rule.is_empty() {
                // A blank spec, or one ending with `;`; an empty rule anywhere else is a slip
                // (`a;;b`) whose author may have meant something else.
                if i == last {
                    continue;
                }
                return Err(err("an empty rule (a stray ';'?)"));
            }
            let (principal, tools) = rule
                .split_once(':')
                .ok_or_else(|| err("expected principal:tool,tool or principal:*"))?;
            let principal = principal.trim_ascii();
            check_principal(principal).map_err(err)?;
            let tools = tools.trim_ascii();
            let parsed = if tools == "*" {
                Rule::All
            } else {
                let mut set = HashSet::new();
                for t in tools.split(',').map(str::trim_ascii) {
                    if t.is_empty() {
                        if tools.is_empty() {
                            continue;
                        }
                        return Err(err("empty tool name"));
                    }
                    if t == "*" {
                        return Err(err("'*' cannot be combined with tool names"));
                    }
                    if t.len() > MAX_TOOL_LEN {
                        return Err(err("tool name longer than 128 bytes"));
                    }
                    if t.chars().any(|c| c.is_control() || c.is_whitespace()) {
                        return Err(err("tool name has a control or whitespace character"));
                    }
                    if t.contains(':') {
                        // Allowed (a server may name a tool so), but more often a ';' missed
                        // between two rules.
                        tracing::warn!(
                            rule = n,
                            tool = t,
                            "{setting}: a tool name with ':' (rules are separated by ';')"
                        );
                    }
                    set.insert(Box::<str>::from(t));
                }
                Rule::Only(Arc::new(set))
            };
            if rules.insert(Box::<str>::from(principal), parsed).is_some() {
                return Err(err("principal named twice"));
            }
        }
        Ok(AllowPolicy { rules })
    }

    /// Whether no principal is restricted.
    pub fn is_empty(&self) -> bool {
        !self.rules.values().any(|r| matches!(r, Rule::Only(_)))
    }

    /// Whether `principal` is limited to some tools (named by a rule other than `*`). Anything
    /// that reveals which tools exist (an admin listing, per-tool metrics) should be kept from
    /// such a principal: the allow-list answers its hidden tools exactly as unknown ones.
    pub fn is_restricted(&self, principal: &str) -> bool {
        matches!(self.rules.get(principal), Some(Rule::Only(_)))
    }

    /// Whether `principal` may call `tool`.
    pub fn allows(&self, principal: &str, tool: &str) -> bool {
        match self.rules.get(principal) {
            None | Some(Rule::All) => true,
            Some(Rule::Only(set)) => set.contains(tool),
        }
    }

    /// The principals named by a rule, sorted.
    pub(crate) fn named(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.rules.keys().map(|k| &**k).collect();
        v.sort_unstable();
        v
    }

    pub(crate) fn access(&self, principal: Option<&Principal>) -> Access<'_> {
        match principal.and_then(|p| self.rules.get(p.name())) {
            None | Some(Rule::All) => Access::All,
            Some(Rule::Only(set)) => Access::Only(set),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_syntax() {
        let p = AllowPolicy::parse(" alice : add , echo ; bob:* ; carol: ;").unwrap();
        assert!(p.allows("alice", "add") && p.allows("alice", "echo"));
        assert!(!p.allows("alice", "slow"));
        assert!(!p.allows("alice", "Add"), "tool names are exact");
        assert!(p.allows("bob", "anything"));
        assert!(!p.allows("carol", "add"), "an empty list allows nothing");
        assert!(p.allows("dave", "slow"), "not named: everything");
        assert!(!p.is_empty());
        assert!(AllowPolicy::parse("").unwrap().is_empty());
        assert!(AllowPolicy::parse("bob:*").unwrap().is_empty());
    }

    #[test]
    fn refuses_bad_rules_naming_the_rule() {
        for (spec, want) in [
            ("alice", "rule 1: expected"),
            ("alice:add;alice:echo", "rule 2: principal named twice"),
            ("alice:add,*", "rule 1: '*' cannot"),
            ("alice:add,,echo", "rule 1: empty tool name"),
            ("a b:add", "rule 1: principal name"),
            ("x:add;alice:a b", "rule 2: tool name has"),
            ("alice:add;;bob:echo", "rule 2: an empty rule"),
            (";alice:add", "rule 1: an empty rule"),
            (";", "rule 1: an empty rule"),
            // Only ASCII white space is trimmed: a no-break space is part of the name.
            ("alice:\u{a0}add", "rule 1: tool name has"),
            ("alice:add\u{2003}", "rule 1: tool name has"),
        ] {
            let e = AllowPolicy::parse_for_setting(spec, ENV_TOOL_ALLOW).unwrap_err();
            assert_eq!(e.setting(), ENV_TOOL_ALLOW);
            assert!(e.detail().starts_with(want), "{spec:?}: {e}");
        }
    }

    #[test]
    fn access_by_principal() {
        let p = AllowPolicy::new().allow("alice", ["add"]).allow_all("bob");
        assert!(p.is_restricted("alice"));
        assert!(!p.is_restricted("bob") && !p.is_restricted("carol"));
        assert!(matches!(p.access(None), Access::All));
        assert!(matches!(
            p.access(Some(&Principal::new("bob"))),
            Access::All
        ));
        match p.access(Some(&Principal::new("alice"))) {
            Access::Only(s) => assert!(s.contains("add")),
            Access::All => panic!("alice is restricted"),
        }
    }
}
