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

/// The comma-separated items of a list variable, each trimmed. A blank value is an empty list;
/// an empty item (a stray comma) is an error, so that `a,,b` is never read as something its
/// author may not have meant.
///
/// ```
/// use tower_armor_mcp::env::list;
/// assert_eq!(list(" a, b "), Ok(vec!["a", "b"]));
/// assert_eq!(list(" "), Ok(vec![]));
/// assert!(list("a,,b").is_err() && list("a,").is_err());
/// ```
pub fn list(value: &str) -> Result<Vec<&str>, &'static str> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|item| match item.trim() {
            "" => Err("an empty entry (a stray comma?)"),
            item => Ok(item),
        })
        .collect()
}
