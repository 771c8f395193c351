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
    /// Not a list answer to filter (another message, an error answer): unchanged.
    Unchanged,
    /// The filtered message.
    Rewritten(Vec<u8>),
    /// A list answer that cannot be filtered (malformed): it must not pass. Carries the id of
    /// the answer, when it has one, for the error that replaces it.
    Unfilterable(Option<RequestId>),
}

/// Which messages of an answer are `tools/list` answers.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The success answer to this request (the answer to a `tools/list` POST).
    Request(RequestId),
    /// Every response whose `result` has a `tools` member: a GET stream replays answers to
    /// earlier requests (`Last-Event-ID` resumption), whatever they were.
    AnyList,
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

/// One `result` member, filtered.
enum ListResult {
    /// Not an object: not a list result.
    NotObject,
    /// An object, rewritten; `tools`: it had a `tools` member.
    Object { json: Vec<u8>, tools: bool },
    /// An object whose `tools` is not an array: cannot be filtered.
    Bad,
}

/// Filters a result's `tools` by `allowed` (`None`: keeps them all) and, when `private` or the
/// server gave a scope, marks it `cacheScope: "private"`.
fn filter_result(result: &RawValue, allowed: Option<&ToolSet>, private: bool) -> ListResult {
    let Some(obj) = object(result.get().as_bytes()) else {
        return ListResult::NotObject;
    };
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(obj.0.len() + 1);
    let mut has_scope = false;
    let mut has_tools = false;
    for (k, v) in obj.0 {
        match k.as_str() {
            "tools" => {
                has_tools = true;
                let Some(allowed) = allowed else {
                    pairs.push((k, v.get().as_bytes().to_vec()));
                    continue;
                };
                let Ok(tools) = serde_json::from_str::<Vec<&RawValue>>(v.get()) else {
                    return ListResult::Bad;
                };
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
    ListResult::Object {
        json: out,
        tools: has_tools,
    }
}

/// Rewrites `message` if it is a list answer of `target`: its tools filtered by `allowed`
/// (`None`: all kept, only the scope is set).
///
/// `private`: the request's revision has list cache scopes (2026-07-28): mark the result
/// private even when the server did not say.
pub(crate) fn rewrite_list(
    message: &[u8],
    target: &Target,
    allowed: Option<&ToolSet>,
    private: bool,
) -> Rewrite {
    let Some(top) = object(message) else {
        // An object this parser cannot read (invalid UTF-8 in a description, cut short): a
        // client's more lenient parser may still read a list in it, hidden names
        // and all. Fail closed: an error for the request instead. What is no object at all
        // (an SSE priming event's empty data, text) is no message, and passes.
        return if message.trim_ascii_start().starts_with(b"{") {
            Rewrite::Unfilterable(None)
        } else {
            Rewrite::Unchanged
        };
    };
    if let Target::Request(want) = target {
        let ours = top.0.iter().any(|(k, v)| {
            k == "id" && serde_json::from_str::<RequestId>(v.get()).is_ok_and(|got| got == *want)
        });
        if !ours {
            return Rewrite::Unchanged;
        }
    }
    let any = matches!(target, Target::AnyList);
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(top.0.len());
    let mut lists = 0;
    for (k, v) in &top.0 {
        if k != "result" {
            pairs.push((k.clone(), v.get().as_bytes().to_vec()));
            continue;
        }
        match filter_result(v, allowed, private) {
            ListResult::Object { json, tools } if tools || !any => {
                lists += 1;
                pairs.push((k.clone(), json));
            }
            // In a GET stream any other result (a tool's, `{}`) is not a list: kept as it is.
            ListResult::NotObject | ListResult::Object { .. } if any => {
                pairs.push((k.clone(), v.get().as_bytes().to_vec()));
            }
            _ => {
                let id = match target {
                    Target::Request(want) => Some(want.clone()),
                    Target::AnyList => top
                        .0
                        .iter()
                        .find(|(k, _)| k == "id")
                        .and_then(|(_, v)| serde_json::from_str::<RequestId>(v.get()).ok()),
                };
                return Rewrite::Unfilterable(id);
            }
        }
    }
    if lists == 0 {
        return Rewrite::Unchanged;
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

    fn to(id: RequestId) -> Target {
        Target::Request(id)
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
        let out = match rewrite_list(
            msg,
            &to(RequestId::Number(3)),
            Some(&set(&["add", "echo"])),
            true,
        ) {
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
        let v = rewritten(rewrite_list(
            msg,
            &to("a".into()),
            Some(&set(&["slow"])),
            false,
        ));
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"slow"}]}})
        );
    }

    #[test]
    fn other_messages_pass_unchanged() {
        let allowed = set(&["add"]);
        let id = to(RequestId::Number(3));
        for msg in [
            &br#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"crash"}]}}"#[..],
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":-32603,"message":"x"}}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            b"",
            b"not json",
        ] {
            assert_eq!(
                rewrite_list(msg, &id, Some(&allowed), true),
                Rewrite::Unchanged
            );
        }
    }

    #[test]
    fn an_object_that_cannot_be_read_is_not_passed() {
        let allowed = set(&["add"]);
        for msg in [
            &b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"crash\",\"description\":\"\xff\"}]}}"[..],
            br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"crash"}]}"#,
        ] {
            for target in [to(RequestId::Number(3)), Target::AnyList] {
                assert_eq!(
                    rewrite_list(msg, &target, Some(&allowed), true),
                    Rewrite::Unfilterable(None),
                    "{}",
                    String::from_utf8_lossy(msg)
                );
            }
        }
    }

    #[test]
    fn tricks_do_not_leak_hidden_tools() {
        let allowed = set(&["add"]);
        let id = to(RequestId::Number(1));
        // Escaped key and escaped name, duplicate tools keys, duplicate names, non-string names.
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":{"tool\u0073":[{"name":"cr\u0061sh"},{"name":"\u0061dd"}],"tools":[{"name":"add","name":"crash"},{"name":7},{"nome":"x"}]}}"#;
        let v = rewritten(rewrite_list(msg, &id, Some(&allowed), false));
        let s = v.to_string();
        assert!(!s.contains("crash") && !s.contains("cr\\u0061sh"), "{s}");
        assert_eq!(v["result"]["tools"], json!([]));
        // A result whose tools is not an array cannot be filtered.
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":{"name":"crash"}}}"#;
        assert_eq!(
            rewrite_list(msg, &id, Some(&allowed), false),
            Rewrite::Unfilterable(Some(RequestId::Number(1)))
        );
        let msg = br#"{"jsonrpc":"2.0","id":1,"result":[1]}"#;
        assert_eq!(
            rewrite_list(msg, &id, Some(&allowed), false),
            Rewrite::Unfilterable(Some(RequestId::Number(1)))
        );
    }

    #[test]
    fn any_list_result_in_a_stream_is_filtered_whatever_its_id() {
        let allowed = set(&["add"]);
        let any = Target::AnyList;
        // A replayed `tools/list` answer: its id belongs to a request this layer never saw.
        let msg = br#"{"jsonrpc":"2.0","id":42,"result":{"tools":[{"name":"add"},{"name":"crash"}],"cacheScope":"public"}}"#;
        let v = rewritten(rewrite_list(msg, &any, Some(&allowed), false));
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":42,"result":{"tools":[{"name":"add"}],"cacheScope":"private"}})
        );
        // Other results, errors, requests and notifications are not lists.
        for msg in [
            &br#"{"jsonrpc":"2.0","id":5,"result":{"content":[{"type":"text","text":"crash"}]}}"#[..],
            br#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":5,"result":"tools"}"#,
            br#"{"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage","params":{"tools":[]}}"#,
            b"",
        ] {
            assert_eq!(
                rewrite_list(msg, &any, Some(&allowed), false),
                Rewrite::Unchanged
            );
        }
        // An escaped `tools` key is a list too; a malformed one fails closed with its id.
        let msg = br#"{"jsonrpc":"2.0","id":"x","result":{"tool\u0073":[{"name":"crash"}]}}"#;
        let v = rewritten(rewrite_list(msg, &any, Some(&allowed), false));
        assert_eq!(v["result"]["tools"], json!([]));
        let msg = br#"{"jsonrpc":"2.0","id":"x","result":{"tools":{"name":"crash"}}}"#;
        assert_eq!(
            rewrite_list(msg, &any, Some(&allowed), false),
            Rewrite::Unfilterable(Some("x".into()))
        );
    }

    #[test]
    fn unrestricted_lists_keep_every_tool_and_get_the_scope() {
        let msg = br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"add"},{"name":"crash"}],"cacheScope":"public","ttlMs":0}}"#;
        let out = match rewrite_list(msg, &to(RequestId::Number(3)), None, true) {
            Rewrite::Rewritten(b) => String::from_utf8(b).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"add"},{"name":"crash"}],"ttlMs":0,"cacheScope":"private"}}"#
        );
    }
}
