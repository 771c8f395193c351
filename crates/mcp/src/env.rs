//! Reading configuration from the environment.
//!
//! Every crate's `from_env` reads its variables through a `from_lookup(|name| …)` that sees
//! text only. A variable set to bytes that are not UTF-8 must not read as unset there (for
//! `MCP_BEARER_TOKEN`, that would turn authentication off; for `MCP_CALL_TIMEOUT_MS`, remove
//! the deadline), so each `from_env` first asks [`not_unicode`] and refuses such a value by name.

/// The first of `vars` that is set to a value that is not valid UTF-8, if any.
///
/// ```
/// assert_eq!(tower_armor_mcp::env::not_unicode(&["TOWER_ARMOR_DOC_UNSET"]), None);
/// ```
pub fn not_unicode(vars: &[&'static str]) -> Option<&'static str> {
    vars.iter()
        .copied()
        .find(|var| std::env::var_os(var).is_some_and(|v| v.to_str().is_none()))
}
