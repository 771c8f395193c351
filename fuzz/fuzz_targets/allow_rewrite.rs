//! Fuzzes the tool allow-list's rewriting of a `tools/list` answer (a server's or an upstream's
//! bytes: hostile input). The first byte picks the target (the answer to request 1, or any list
//! answer in a GET stream) and whether the result is marked private; the rest is the message.
//! Must never panic. A rewritten message must be JSON (unless the message was not, to serde_json:
//! numbers beyond `f64` pass verbatim) in which no `tools` array of any `result`
//! (duplicate keys included, read in order) lists a tool outside the allowed set, every
//! `cacheScope` is `"private"` (and there is one when asked), and rewriting it again changes
//! nothing; a message passed untouched that is a list answer (any, in a GET stream; the
//! request's, otherwise) must list no hidden tool either, also read past a byte order mark.
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use tower_armor_bearer_auth::allow::fuzz_rewrite;

const ALLOWED: &[&str] = &["add", "echo"];

/// JSON read in order, duplicate keys kept.
enum J {
    Scalar,
    Num(i64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<J, E> {
                Ok(J::Scalar)
            }
            fn visit_i64<E>(self, v: i64) -> Result<J, E> {
                Ok(J::Num(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<J, E> {
                Ok(i64::try_from(v).map_or(J::Scalar, J::Num))
            }
            fn visit_f64<E>(self, _: f64) -> Result<J, E> {
                Ok(J::Scalar)
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Scalar)
            }
            fn visit_str<E>(self, v: &str) -> Result<J, E> {
                Ok(J::Str(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = s.next_element()? {
                    v.push(e);
                }
                Ok(J::Arr(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<J, A::Error> {
                let mut v = Vec::new();
                while let Some((k, e)) = m.next_entry::<String, J>()? {
                    v.push((k, e));
                }
                Ok(J::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Whether some `id` member of the message is the request's (1).
fn answers_request_1(top: &J) -> bool {
    let J::Obj(m) = top else {
        return false;
    };
    m.iter().any(|(k, v)| k == "id" && matches!(v, J::Num(1)))
}

fn members<'a>(j: &'a J, key: &'a str) -> impl Iterator<Item = &'a J> {
    let m: &[(String, J)] = match j {
        J::Obj(m) => m,
        _ => &[],
    };
    m.iter().filter(move |(k, _)| k == key).map(|(_, v)| v)
}

fn check(message: &[u8], out: &[u8], private: bool) {
    let top: J = match serde_json::from_slice(out) {
        Ok(top) => top,
        // Kept verbatim, a value serde_json will not read (a number beyond f64, say) is as
        // unreadable in the message itself: what this checker cannot read, it cannot check.
        Err(_) => {
            assert!(
                serde_json::from_slice::<J>(message).is_err(),
                "a rewritten message is JSON"
            );
            return;
        }
    };
    no_hidden_tool(&top);
    for result in members(&top, "result") {
        if !matches!(result, J::Obj(_)) {
            continue;
        }
        let scopes: Vec<&J> = members(result, "cacheScope").collect();
        for s in &scopes {
            assert!(matches!(s, J::Str(s) if s == "private"));
        }
        if private && members(result, "tools").next().is_some() {
            assert_eq!(scopes.len(), 1, "one private scope");
        }
    }
}

/// No `tools` array of any object `result` lists a tool outside the allowed set.
fn no_hidden_tool(top: &J) {
    for result in members(top, "result") {
        if !matches!(result, J::Obj(_)) {
            continue;
        }
        for tools in members(result, "tools") {
            let J::Arr(tools) = tools else {
                panic!("a filtered tools member is an array");
            };
            for tool in tools {
                let names: Vec<&J> = members(tool, "name").collect();
                assert!(!names.is_empty(), "a listed tool has a name");
                for n in names {
                    assert!(
                        matches!(n, J::Str(s) if ALLOWED.contains(&s.as_str())),
                        "a hidden tool leaked"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, message)) = data.split_first() else {
        return;
    };
    let request_id = (flags & 1 == 1).then_some(1);
    let private = flags & 2 == 2;
    match fuzz_rewrite(message, request_id, ALLOWED, private) {
        Ok(Some(out)) => {
            check(message, &out, private);
            // Filtering what is already filtered changes nothing.
            match fuzz_rewrite(&out, request_id, ALLOWED, private) {
                Ok(Some(again)) => assert_eq!(again, out, "rewriting is idempotent"),
                other => panic!("a rewritten message rewrites again: {other:?}"),
            }
        }
        // Passed untouched: where a leak would hide. Any list answer of a GET stream, and the
        // answer to the request (id 1), must hold no hidden tool, also as a client that skips
        // a byte order mark reads it.
        Ok(None) => {
            let text = message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(message);
            if let Ok(top) = serde_json::from_slice::<J>(text)
                && (request_id.is_none() || answers_request_1(&top))
            {
                no_hidden_tool(&top);
            }
        }
        Err(()) => {}
    }
});
