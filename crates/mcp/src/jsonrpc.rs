//! The small part of JSON-RPC 2.0 that middleware needs: request ids, error codes, error bodies.

use std::fmt;

use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Invalid JSON was received (`-32700`).
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object (`-32600`).
pub const INVALID_REQUEST: i64 = -32600;
/// The method does not exist (`-32601`).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters (`-32602`).
pub const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error (`-32603`).
pub const INTERNAL_ERROR: i64 = -32603;
/// MCP 2026-07-28: a mirrored header (`Mcp-Method`, `Mcp-Name`) disagrees with the body (`-32020`).
pub const HEADER_MISMATCH: i64 = -32020;
/// MCP 2026-07-28: unsupported protocol version (`-32022`).
pub const UNSUPPORTED_VERSION: i64 = -32022;

/// A JSON-RPC request id: a string or an integer.
///
/// An integer written in float form (`7.0`, `1e2`, `-0`), below 2^53 in magnitude, is that
/// integer, as rmcp reads it; fractional or out-of-range numbers are refused by the inspector (JSON-RPC
/// says ids SHOULD NOT have fractional parts, and no MCP SDK produces them), so every id here
/// compares exactly.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RequestId {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(Box<str>),
}

impl RequestId {
    /// The length of the id as it would be written in JSON, without quotes.
    pub fn len(&self) -> usize {
        match self {
            RequestId::Number(n) => itoa_len(*n),
            RequestId::String(s) => s.len(),
        }
    }

    /// Whether the id is the empty string.
    pub fn is_empty(&self) -> bool {
        matches!(self, RequestId::String(s) if s.is_empty())
    }
}

fn itoa_len(n: i64) -> usize {
    let mut len = usize::from(n < 0);
    let mut v = n.unsigned_abs();
    loop {
        len += 1;
        v /= 10;
        if v == 0 {
            return len;
        }
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RequestId {
    /// Numbers print as digits; strings print escaped, so a hostile id cannot forge log lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{:?}", &**s),
        }
    }
}

impl From<i64> for RequestId {
    fn from(n: i64) -> Self {
        RequestId::Number(n)
    }
}

impl From<&str> for RequestId {
    fn from(s: &str) -> Self {
        RequestId::String(s.into())
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestId::Number(n) => s.serialize_i64(*n),
            RequestId::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdVisitor)
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = RequestId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an integer JSON-RPC id")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RequestId, E> {
        Ok(RequestId::Number(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RequestId, E> {
        i64::try_from(v)
            .map(RequestId::Number)
            .map_err(|_| E::custom("id out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RequestId, E> {
        integral_id(v)
            .map(RequestId::Number)
            .ok_or_else(|| E::custom("fractional id"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RequestId, E> {
        Ok(RequestId::String(v.into()))
    }
}

/// The integer a JSON number in float form stands for (`7.0`, `1e2`, `-0`), when an `f64` holds
/// it exactly: below 2^53 in magnitude (2^53 + 1 parses to the same `f64`). rmcp reads such an id
/// as that integer, so the layers must too: a `notifications/cancelled` naming call `7` as `7.0`
/// cancels it in rmcp, and must be the client's cancellation here as well.
pub(crate) fn integral_id(v: f64) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    (v.fract() == 0.0 && v.abs() < EXACT).then_some(v as i64)
}

/// Builds the bytes of a JSON-RPC error response.
///
/// `id` is `None` when the request's id is unknown (parse errors): JSON-RPC then requires `null`.
/// `data` is any extra JSON object (for example the correlation id).
pub fn error_body(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        jsonrpc: &'static str,
        id: Option<&'a RequestId>,
        error: Err<'a>,
    }
    #[derive(Serialize)]
    struct Err<'a> {
        code: i64,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a serde_json::Value>,
    }
    let body = Body {
        jsonrpc: "2.0",
        id,
        error: Err {
            code,
            message,
            data,
        },
    };
    // Serializing these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// [`error_body`] for an answer a layer makes itself, with the request's correlation id (when
/// known) in `data.correlationId`, as every local error answer carries it.
pub fn local_error_body(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    correlation: Option<&crate::CorrelationId>,
) -> Bytes {
    let data = correlation.map(|c| serde_json::json!({ "correlationId": c.as_str() }));
    error_body(id, code, message, data.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_fractions() {
        let id: RequestId = serde_json::from_str("42").unwrap();
        assert_eq!(id, RequestId::Number(42));
        let id: RequestId = serde_json::from_str("\"a\\nb\"").unwrap();
        assert_eq!(id.to_string(), "\"a\\nb\"");
        assert!(serde_json::from_str::<RequestId>("1.5").is_err());
        assert!(serde_json::from_str::<RequestId>("18446744073709551615").is_err());
        assert!(serde_json::from_str::<RequestId>("null").is_err());
        assert_eq!(RequestId::Number(-120).len(), 4);
        assert_eq!(RequestId::Number(0).len(), 1);
    }

    #[test]
    fn error_body_is_json_rpc() {
        let b = error_body(None, PARSE_ERROR, "parse error", None);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], serde_json::Value::Null);
        assert_eq!(v["error"]["code"], -32700);
        let b = error_body(
            Some(&"x".into()),
            -1,
            "m",
            Some(&serde_json::json!({"k": 1})),
        );
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["error"]["data"]["k"], 1);
    }
}
