//! Pure rewriting of one `tools/list` answer message: drop the tools the principal may not call
//! and, where list results carry a cache scope, mark the result `cacheScope: "private"`.
//!
//! Everything that is kept is kept verbatim (each tool's JSON and every other field, in order):
//! objects are read as ordered lists of raw values. Duplicate keys are handled the way that
//! leaks nothing: every `tools` array is filtered and every `cacheScope` replaced.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// A JSON object as an ordered list of (decoded key, raw value). Keys borrow from the message
/// unless they have escapes; values always do.
struct Ordered<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// How many members an object of a list answer may have. A JSON-RPC message, a list result and
/// a tool have a handful; a hostile upstream's `{"a":0,"a":0,…}` of 16 MiB would otherwise cost
/// tens of bytes of bookkeeping per member. An object with more is unreadable here, so a list
/// answer holding one fails closed.
const MAX_MEMBERS: usize = 1024;

/// An object key, borrowed from the message when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

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
                while let Some((k, raw)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    if v.len() == MAX_MEMBERS {
                        return Err(de::Error::custom("too many members"));
                    }
                    v.push((k.0, raw));
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

/// An object member on its way out: its key and its JSON, kept (borrowed) or rewritten.
type Member<'a> = (Cow<'a, str>, Cow<'a, [u8]>);

fn write_object(out: &mut Vec<u8>, pairs: &[Member<'_>]) {
    out.push(b'{');
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a string into a vector cannot fail.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
}

fn kept(raw: &RawValue) -> Cow<'_, [u8]> {
    Cow::Borrowed(raw.get().as_bytes())
}

/// Writes the elements of a JSON array that `allowed` lets through into `out` (with its
/// brackets), one element at a time: never a list of all of them.
struct FilterTools<'o, 's> {
    out: &'o mut Vec<u8>,
    allowed: &'s ToolSet,
}

impl<'de> DeserializeSeed<'de> for FilterTools<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilterTools<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tools")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.out.push(b'[');
        let mut first = true;
        while let Some(t) = seq.next_element::<&'de RawValue>()? {
            if tool_allowed(t, self.allowed) {
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.out.extend_from_slice(t.get().as_bytes());
            }
        }
        self.out.push(b']');
        Ok(())
    }
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
        // Valid JSON (a raw value is), so only an object over the member limit is an object
        // this cannot read: it may hold a list, so it must not pass.
        return if result.get().starts_with('{') {
            ListResult::Bad
        } else {
            ListResult::NotObject
        };
    };
    let mut pairs: Vec<Member<'_>> = Vec::with_capacity(obj.0.len() + 1);
    let mut has_scope = false;
    let mut has_tools = false;
    for (k, v) in obj.0 {
        match &*k {
            "tools" => {
                has_tools = true;
                let Some(allowed) = allowed else {
                    pairs.push((k, kept(v)));
                    continue;
                };
                let mut arr = Vec::with_capacity(v.get().len());
                let mut de = serde_json::Deserializer::from_str(v.get());
                if (FilterTools {
                    out: &mut arr,
                    allowed,
                })
                .deserialize(&mut de)
                .is_err()
                {
                    return ListResult::Bad;
                }
                pairs.push((k, Cow::Owned(arr)));
            }
            "cacheScope" => has_scope = true,
            _ => pairs.push((k, kept(v))),
        }
    }
    if private || has_scope {
        pairs.push((Cow::Borrowed("cacheScope"), Cow::Borrowed(b"\"private\"")));
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
        // (A byte order mark first too: a client's `fetch(…).json()` skips it.) A JSON array
        // answering a request (a batch of answers, which MCP no longer has) may hold its list
        // answer too.
        let start = message.trim_ascii_start();
        let start = start.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(start);
        let start = start.trim_ascii_start();
        return if start.starts_with(b"{")
            || (matches!(target, Target::Request(_)) && start.starts_with(b"["))
        {
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
    let mut pairs: Vec<Member<'_>> = Vec::with_capacity(top.0.len());
    let mut lists = 0;
    for (k, v) in &top.0 {
        if k != "result" {
            pairs.push((k.clone(), kept(v)));
            continue;
        }
        match filter_result(v, allowed, private) {
            ListResult::Object { json, tools } if tools || !any => {
                lists += 1;
                pairs.push((k.clone(), Cow::Owned(json)));
            }
            // In a GET stream any other result (a tool's, `{}`) is not a list: kept as it is.
            ListResult::NotObject | ListResult::Object { .. } if any => {
                pairs.push((k.clone(), kept(v)));
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

/// [`rewrite_list`] for the fuzz target (`fuzz/fuzz_targets/allow_rewrite.rs`), built only under
/// `cargo fuzz`: `Ok(None)` unchanged, `Ok(Some(json))` rewritten, `Err(())` unfilterable.
#[cfg(fuzzing)]
#[allow(clippy::result_unit_err)]
pub fn fuzz_rewrite(
    message: &[u8],
    request_id: Option<i64>,
    allowed: &[&str],
    private: bool,
) -> Result<Option<Vec<u8>>, ()> {
    let target = match request_id {
        Some(id) => Target::Request(RequestId::Number(id)),
        None => Target::AnyList,
    };
    let set: ToolSet = std::sync::Arc::new(allowed.iter().map(|n| Box::<str>::from(*n)).collect());
    match rewrite_list(message, &target, Some(&set), private) {
        Rewrite::Unchanged => Ok(None),
        Rewrite::Rewritten(out) => Ok(Some(out)),
        Rewrite::Unfilterable(_) => Err(()),
    }
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
            // A byte order mark first: this parser refuses it, a browser's `json()` skips it.
            b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"crash\"}]}}",
            b" \xEF\xBB\xBF {}",
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

    /// A batch answering a `tools/list` request may hold its list answer: refused. On a GET
    /// (any list answer), an array is no MCP message (a non-MCP JSON route): passed.
    #[test]
    fn a_batch_answering_a_list_request_is_not_passed() {
        let allowed = set(&["add"]);
        let batch = br#"[{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"crash"}]}}]"#;
        assert_eq!(
            rewrite_list(batch, &to(RequestId::Number(3)), Some(&allowed), true),
            Rewrite::Unfilterable(None)
        );
        assert_eq!(
            rewrite_list(batch, &Target::AnyList, Some(&allowed), false),
            Rewrite::Unchanged
        );
    }

    #[test]
    fn objects_with_too_many_members_fail_closed() {
        let allowed = set(&["add"]);
        let padding = r#""a":0,"#.repeat(MAX_MEMBERS);
        // A result over the limit, with a hidden tool in it: an error, in a POST answer and in a
        // GET stream alike.
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{{padding}"tools":[{{"name":"crash"}}]}}}}"#
        );
        for target in [to(RequestId::Number(1)), Target::AnyList] {
            assert_eq!(
                rewrite_list(msg.as_bytes(), &target, Some(&allowed), false),
                Rewrite::Unfilterable(Some(RequestId::Number(1)))
            );
        }
        // The message itself over the limit.
        let msg = format!(
            r#"{{{padding}"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"crash"}}]}}}}"#
        );
        assert_eq!(
            rewrite_list(msg.as_bytes(), &Target::AnyList, Some(&allowed), false),
            Rewrite::Unfilterable(None)
        );
        // A tool over the limit is not listed; the others are.
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{{padding}"name":"add"}},{{"name":"add"}}]}}}}"#
        );
        let v = rewritten(rewrite_list(
            msg.as_bytes(),
            &Target::AnyList,
            Some(&allowed),
            false,
        ));
        assert_eq!(v["result"]["tools"], json!([{"name": "add"}]));
        // At the limit, all is read.
        let padding = r#""a":0,"#.repeat(MAX_MEMBERS - 1);
        let msg = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{{padding}"tools":[{{"name":"crash"}},{{"name":"add"}}]}}}}"#
        );
        let v = rewritten(rewrite_list(
            msg.as_bytes(),
            &to(RequestId::Number(1)),
            Some(&allowed),
            false,
        ));
        assert_eq!(v["result"]["tools"], json!([{"name": "add"}]));
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
