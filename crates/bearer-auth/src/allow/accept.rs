//! The `Accept` check a streamable-HTTP MCP server makes before it reads a POST: the client must
//! accept both `application/json` and `text/event-stream`.

use http::HeaderMap;
use http::header::ACCEPT;

/// The body of rmcp's (and the TypeScript SDK's) 406 answer.
pub(crate) const NOT_ACCEPTABLE: &str =
    "Not Acceptable: Client must accept both application/json and text/event-stream";

/// Whether the `Accept` fields list both media types, with a weight other than zero. Parsed
/// like rmcp parses them: comma-separated entries (commas inside quoted strings don't split),
/// the media type before the first `;`, compared without regard to case; wildcards don't
/// count; only an explicit `q=0` (`0`, `0.`, `0.0`…) excludes an entry, a malformed weight is
/// ignored. A field that is not visible ASCII is skipped.
pub(crate) fn json_and_event_stream(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for entry in split_unquoted(value, b',') {
            let mut parts = split_unquoted(entry, b';');
            let essence = parts.next().unwrap_or_default().trim_ascii();
            if !parts.all(weight_allows) {
                continue;
            }
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

/// `false` only for a `q` parameter whose value is zero.
fn weight_allows(parameter: &str) -> bool {
    let Some((name, value)) = parameter.split_once('=') else {
        return true;
    };
    if !name.trim_ascii().eq_ignore_ascii_case("q") {
        return true;
    }
    let (whole, fraction) = value
        .trim_ascii()
        .split_once('.')
        .unwrap_or((value.trim_ascii(), ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    whole != "0" || fraction.bytes().any(|b| b != b'0')
}

/// `s` split at `sep` outside double-quoted strings (splitting at an ASCII byte keeps each
/// piece UTF-8).
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    tower_armor_mcp::observe::split_unquoted(s.as_bytes(), sep)
        .map(|piece| std::str::from_utf8(piece).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn accepts(values: &[&'static str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT, HeaderValue::from_static(v));
        }
        json_and_event_stream(&h)
    }

    #[test]
    fn both_types_are_needed() {
        assert!(accepts(&["application/json, text/event-stream"]));
        assert!(accepts(&[
            "Text/Event-Stream ; charset=utf-8",
            "APPLICATION/JSON;q=0.5"
        ]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["application/json"]));
        assert!(!accepts(&["text/event-stream"]));
        assert!(!accepts(&["*/*"]));
        assert!(!accepts(&["application/*, text/*"]));
    }

    #[test]
    fn only_a_zero_weight_excludes() {
        assert!(!accepts(&["application/json;q=0, text/event-stream"]));
        assert!(!accepts(&["application/json;Q=0.000, text/event-stream"]));
        assert!(!accepts(&["application/json, text/event-stream;q=0."]));
        assert!(accepts(&[
            "application/json;q=0.001, text/event-stream;q=abc"
        ]));
        assert!(accepts(&["application/json;q=0.0000, text/event-stream"]));
    }

    #[test]
    fn quoted_separators_do_not_split() {
        assert!(accepts(&[
            r#"application/json;p="a,text/x", text/event-stream"#
        ]));
        assert!(!accepts(&[
            r#"application/json;p="a;q=0\",x", text/event-stream;q=0"#
        ]));
        // An unterminated quote swallows the rest of the field.
        assert!(!accepts(&[r#"application/json;p=", text/event-stream"#]));
    }
}
