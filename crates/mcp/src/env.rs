//! Reading configuration from the environment.
//!
//! Every crate's `from_env` reads its variables through a `from_lookup(|name| …)` that sees
//! text only. A variable set to bytes that are not UTF-8 must not read as unset there (for
//! `MCP_BEARER_TOKEN`, that would turn authentication off; for `MCP_CALL_TIMEOUT_MS`, remove
//! the deadline), so each `from_env` first asks [`not_unicode`] and refuses such a value by name.

use std::fmt;
use std::str::FromStr;

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
    if value.trim_ascii().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|item| match item.trim_ascii() {
            "" => Err("an empty entry (a stray comma?)"),
            item => Ok(item),
        })
        .collect()
}

/// A whole number written the one plain way: ASCII digits only, with ASCII whitespace around
/// them (a CRLF env file's `\r`, a YAML block's `\n`). Rust's own parsing also takes a leading
/// `+`, and `str::trim` drops Unicode spaces (a no-break space before `5`); a setting is
/// refused rather than read in a way its author may not have meant.
///
/// ```
/// use tower_armor_mcp::env::number;
/// assert_eq!(number::<u64>(" 42\t"), Ok(42));
/// assert_eq!(number::<u64>("60000\r\n"), Ok(60000));
/// assert!(number::<u64>("+5").is_err() && number::<u64>("\u{a0}5").is_err());
/// assert!(number::<u64>("-1").is_err() && number::<u8>("256").is_err());
/// assert!(number::<u64>("1_000").is_err() && number::<u64>("").is_err());
/// ```
pub fn number<T: FromStr>(value: &str) -> Result<T, NotANumber> {
    digits(value.trim_ascii())
}

/// A TCP port as it is written in a URL or a `Host` header: 1 to 65535, digits only, nothing
/// around them (`host: 80` names no port a client sends).
///
/// ```
/// use tower_armor_mcp::env::port;
/// assert_eq!(port("8443"), Some(8443));
/// assert!(port("0").is_none() && port("65536").is_none() && port(" 80").is_none());
/// assert!(port("+1").is_none() && port("").is_none());
/// ```
pub fn port(value: &str) -> Option<u16> {
    digits::<u16>(value).ok().filter(|&p| p > 0)
}

fn digits<T: FromStr>(digits: &str) -> Result<T, NotANumber> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotANumber);
    }
    digits.parse().map_err(|_| NotANumber)
}

/// The error of [`number`]: not a whole number of the type asked for (not digits, or out of its
/// range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotANumber;

impl fmt::Display for NotANumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a whole number in range")
    }
}

impl std::error::Error for NotANumber {}

/// A setting's value as an error message quotes it: in full (as a Rust string literal) up to 64
/// characters, otherwise its first 48 and its length, so that a value pasted by mistake (a
/// whole file) does not become a line of 100 KB.
///
/// ```
/// use tower_armor_mcp::env::shown;
/// assert_eq!(shown("abc").to_string(), "\"abc\"");
/// let long = "x".repeat(1000);
/// assert_eq!(shown(&long).to_string(), format!("\"{}\"… (1000 characters)", "x".repeat(48)));
/// ```
pub fn shown(value: &str) -> Shown<'_> {
    Shown(value)
}

/// See [`shown`].
#[derive(Clone, Copy, Debug)]
pub struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars = self.0.chars().count();
        if chars <= 64 {
            return write!(f, "{:?}", self.0);
        }
        let end = self
            .0
            .char_indices()
            .nth(48)
            .map_or(self.0.len(), |(i, _)| i);
        write!(f, "{:?}… ({chars} characters)", &self.0[..end])
    }
}
