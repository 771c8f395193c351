//! Pure rewriting of one `tools/list` answer message: drop the tools the principal may not call
//! and, where list results carry a cache scope, mark the result `cacheScope: "private"`.
//!
//! Everything that is kept is kept verbatim (each tool's JSON and every other field, in order):
//! objects are read as ordered lists of raw values. Duplicate keys are handled the way that
//! leaks nothing: every `tools` array is filtered and every `cacheScope` replaced.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use tower_armor_mcp::RequestId;

use super::policy::ToolSet;

/// What to do with one message of the answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Not the success answer to this request (another message, an error answer): unchanged.
    Unchanged,
    /// The filtered message.
    Rewritten(Vec<u8>),
    /// The answer to this request, but it cannot be filtered (malformed): it must not pass.
    Unfilterable,
}

/// A JSON object as an ordered list of (decoded key, raw value).
struct Ordered<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<'de>, A::Error> {
                let mut v = Vec::new();
                while let Some((k, raw)) = map.next_entry::<String, &'de RawValue>()? {
                    v.push((k, raw));
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(V)
    }
}

fn object(raw: &[u8]) -> Option<Ordered<'_>> {
    serde_json::from_slice(raw).ok()
}

fn write_object(out: &mut Vec<u8>, pairs: &[(String, Vec<u8>)]) {
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Serializing a string cannot fail.
        out.extend_from_slice(&serde_json::to_vec(k).unwrap_or_default());
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
}

/// Whether a tool object may be listed: every `name` it has is a string in `allowed`.
fn tool_allowed(tool: &RawValue, allowed: &ToolSet) -> bool {
    let Some(obj) = object(tool.get().as_bytes()) else {
        return false;
    };
    let mut named = false;
    for (k, v) in &obj.0 {
        if k == "name" {
            match serde_json::from_str::<&str>(v.get()) {
                Ok(n) if allowed.contains(n) => named = true,
                // Escaped names do not borrow; decode them.
                Err(_) => match serde_json::from_str::<String>(v.get()) {
                    Ok(n) if allowed.contains(n.as_str()) => named = true,
                    _ => return false,
                },
                _ => return false,
            }
        }
    }
    named
}

fn filter_result(result: &RawValue, allowed: &ToolSet, private: bool) -> Option<Vec<u8>> {
    let obj = object(result.get().as_bytes())?;
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(obj.0.len() + 1);
    let mut has_scope = false;
    for (k, v) in obj.0 {
        match k.as_str() {
            "tools" => {
                let tools: Vec<&RawValue> = serde_json::from_str(v.get()).ok()?;
                let mut arr = Vec::with_capacity(v.get().len());
                arr.push(b'[');
                let mut first = true;
                for t in tools.into_iter().filter(|t| tool_allowed(t, allowed)) {
                    if !first {
                        arr.push(b',');
                    }
                    first = false;
                    arr.extend_from_slice(t.get().as_bytes());
                }
                arr.push(b']');
                pairs.push((k, arr));
            }
            "cacheScope" => has_scope = true,
            _ => pairs.push((k, v.get().as_bytes().to_vec())),
        }
    }
    if private || has_scope {
        pairs.push(("cacheScope".to_owned(), b"\"private\"".to_vec()));
    }
    let mut out = Vec::new();
    write_object(&mut out, &pairs);
    Some(out)
}

/// Rewrites `message` if it is the success answer to request `id`.
///
/// `private`: the request's revision has list cache scopes (2026-07-28): mark the result
/// private even when the server did not say.
pub(crate) fn rewrite_list(
    message: &[u8],
    id: &RequestId,
    allowed: &ToolSet,
    private: bool,
) -> Rewrite {
    let Some(top) = object(message) else {
        return Rewrite::Unchanged;
    };
    let ours = top.0.iter().any(|(k, v)| {
        k == "id" && serde_json::from_str::<RequestId>(v.get()).is_ok_and(|got| got == *id)
    });
    let has_result = top.0.iter().any(|(k, _)| k == "result");
    if !ours || !has_result {
        return Rewrite::Unchanged;
    }
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(top.0.len());
    for (k, v) in top.0 {
        if k == "result" {
            match filter_result(v, allowed, private) {
                Some(r) => pairs.push((k, r)),
                None => return Rewrite::Unfilterable,
            }
        } else {
            pairs.push((k, v.get().as_bytes().to_vec()));
        }
    }
    let mut out = Vec::with_capacity(message.len());
    write_object(&mut out, &pairs);
    Rewrite::Rewritten(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;

    fn set(names: &[&str]) -> ToolSet {
        Arc::new(
            names
                .iter()
                .map(|n| Box::<str>::from(*n))
                .collect::<HashSet<_>>(),
        )
    }

    fn rewritten(r: Rewrite) -> Value {
        match r {
            Rewrite::Rewritten(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("not rewritten: {other:?}"),
        }
    }

    #[test]
    fn keeps_allowed_tools_verbatim_and_marks_private() {
        let msg = br#"{"jsonrpc":"2.0","id":3,"result":{"ttlMs":0,"cacheScope":"public","tools":[{"name":"add","x":1.50},{"name":"crash"},{"name":"echo"}],"nextCursor":"c"}}"#;
        let out = match rewrite_list(msg, &RequestId::Number(3), &set(&["add", "echo"]), true) {
            Rewrite::Rewritten(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":3,"result":{"ttlMs":0,"tools":[{"name":"add","x":1.50},{"name":"echo"}],"nextCursor":"c","cacheScope":"private"}}"#
        );
    }

    #[test]
    fn revision_without_scopes_gets_none_added() {
        let msg =
            br#"{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"add"},{"name":"slow"}]}}"#;
        let v = rewritten(rewrite_list(msg, &"a".into(), &set(&["slow"]), false));
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"slow"}]}})
        );
    }

    #[test]
    fn other_messages_pass_unchanged() {
        let allowed = set(&["add"]);
        let id = RequestId::Number(3);
        for msg in [
            &br#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"crash"}]}}"#[..],
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"x"}}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            b"",
            b"not json",
        ] {
            assert_eq!(rewrite_list(msg, &id, &allowed, true), Rewrite::Unchanged);
        }
    }

    #[test]
    fn tricks_do_not_leak_hidden_tools() {
        let allowed = set(&["add"]);
        let id = RequestId::Number(1);
        // Escaped key and escaped name, duplicate tools keys, duplicate names, non-string names.
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":{"tool\u0073":[{"name":"cr\u0061sh"},{"name":"\u0061dd"}],"tools":[{"name":"add","name":"crash"},{"name":7},{"nome":"x"}]}}"#;
        let v = rewritten(rewrite_list(msg, &id, &allowed, false));
        let s = v.to_string();
        assert!(!s.contains("crash") && !s.contains("cr\\u0061sh"), "{s}");
        assert_eq!(v["result"]["tools"], json!([]));
        // A result whose tools is not an array cannot be filtered.
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"crash"}}}"#;
        assert_eq!(
            rewrite_list(msg, &id, &allowed, false),
            Rewrite::Unfilterable
        );
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":[1]}"#;
        assert_eq!(
            rewrite_list(msg, &id, &allowed, false),
            Rewrite::Unfilterable
        );
    }
}
