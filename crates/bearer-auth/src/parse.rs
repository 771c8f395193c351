//! Pure parsing of an `Authorization` header value into a bearer token, or the reason it was
//! refused. No I/O, no allocation: tested and fuzzed directly.
//!
//! Grammar (RFC 9110 §11.4 with RFC 6750 §2.1): `credentials = auth-scheme 1*SP token68`, read
//! strictly: the scheme `Bearer` in any case, exactly one space, then a non-empty `token68`
//! (`ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`, then optional trailing `=`). Anything
//! else is refused with a specific [`AuthFailure`].

use std::fmt;

/// The default bound on an `Authorization` header value: 4 KiB (large JWTs included).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 4096;

/// Why a request was not authenticated.
///
/// [`AuthFailure::Missing`] and [`AuthFailure::OtherScheme`] get the bearer challenge without an
/// `error=` attribute (RFC 6750 §3.1: the client may simply not know that authentication is
/// needed); every other reason gets `error="invalid_token"` and its own `error_description`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No `Authorization` header, or an empty one (it carries no credentials either).
    Missing,
    /// More than one `Authorization` header.
    MultipleHeaders,
    /// The header is longer than the configured limit.
    TooLong,
    /// A scheme other than `Bearer` (for example `Basic`).
    OtherScheme,
    /// `Bearer` with nothing after it.
    EmptyToken,
    /// Leading or trailing whitespace, more than one space after the scheme, or a tab.
    Whitespace,
    /// A comma: several credentials or auth-params in one header.
    Comma,
    /// A control character (other than tab) in the header.
    ControlCharacter,
    /// A character outside `token68` in the token (including non-ASCII bytes and a `=` that is
    /// not trailing).
    InvalidCharacter,
    /// A well-formed token that matches no configured token.
    UnknownToken,
}

impl AuthFailure {
    /// A short machine-readable name (`snake_case`), used in logs and in the JSON-RPC error's
    /// `data.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::MultipleHeaders => "multiple_headers",
            AuthFailure::TooLong => "too_long",
            AuthFailure::OtherScheme => "other_scheme",
            AuthFailure::EmptyToken => "empty_token",
            AuthFailure::Whitespace => "whitespace",
            AuthFailure::Comma => "comma",
            AuthFailure::ControlCharacter => "control_character",
            AuthFailure::InvalidCharacter => "invalid_character",
            AuthFailure::UnknownToken => "unknown_token",
        }
    }

    /// The human-readable description sent as `error_description` (never echoes input).
    pub fn description(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing Authorization header",
            AuthFailure::MultipleHeaders => "more than one Authorization header",
            AuthFailure::TooLong => "Authorization header too long",
            AuthFailure::OtherScheme => "Authorization scheme is not Bearer",
            AuthFailure::EmptyToken => "empty bearer token",
            AuthFailure::Whitespace => "unexpected whitespace in Authorization header",
            AuthFailure::Comma => "comma in Authorization header",
            AuthFailure::ControlCharacter => "control character in Authorization header",
            AuthFailure::InvalidCharacter => "bearer token contains a character outside token68",
            AuthFailure::UnknownToken => "invalid bearer token",
        }
    }

    /// The RFC 6750 `error` attribute of the challenge: `None` when the request carried no
    /// bearer credentials at all.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            AuthFailure::Missing | AuthFailure::OtherScheme => None,
            _ => Some("invalid_token"),
        }
    }

    /// Every reason, for building the answers once.
    pub(crate) const ALL: [AuthFailure; 10] = [
        AuthFailure::Missing,
        AuthFailure::MultipleHeaders,
        AuthFailure::TooLong,
        AuthFailure::OtherScheme,
        AuthFailure::EmptyToken,
        AuthFailure::Whitespace,
        AuthFailure::Comma,
        AuthFailure::ControlCharacter,
        AuthFailure::InvalidCharacter,
        AuthFailure::UnknownToken,
    ];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for AuthFailure {}

/// Parses an `Authorization` header value and returns the bearer token's bytes (a sub-slice of
/// `value`), with the [default length limit](DEFAULT_MAX_HEADER_BYTES).
///
/// ```
/// use tower_armor_bearer_auth::{AuthFailure, parse_authorization};
/// assert_eq!(parse_authorization(b"bearer abc.DEF-1~+/=="), Ok(&b"abc.DEF-1~+/=="[..]));
/// assert_eq!(parse_authorization(b"Bearer  abc"), Err(AuthFailure::Whitespace));
/// assert_eq!(parse_authorization(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"), Err(AuthFailure::OtherScheme));
/// ```
pub fn parse_authorization(value: &[u8]) -> Result<&[u8], AuthFailure> {
    parse_with_limit(value, DEFAULT_MAX_HEADER_BYTES)
}

/// Parses with an explicit length limit; see [`parse_authorization`].
pub(crate) fn parse_with_limit(value: &[u8], max_len: usize) -> Result<&[u8], AuthFailure> {
    if value.len() > max_len {
        return Err(AuthFailure::TooLong);
    }
    if let Some(token) = well_formed(value) {
        return Ok(token);
    }
    // Something is off: find out exactly what, for a specific error.
    parse_stepwise(value)
}

/// The step-by-step checks, each naming its problem (length already checked).
fn parse_stepwise(value: &[u8]) -> Result<&[u8], AuthFailure> {
    if value.is_empty() {
        // `Authorization:` with no value (hyper trims the white space around one) presents no
        // credentials: RFC 6750 §3.1's challenge without `error=`, as for a missing header.
        return Err(AuthFailure::Missing);
    }
    // Control characters anywhere first: they are never part of a credential and must not reach
    // a log line through a later message.
    for &b in value {
        if (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err(AuthFailure::ControlCharacter);
        }
    }
    if matches!(value[0], b' ' | b'\t') || matches!(value[value.len() - 1], b' ' | b'\t') {
        // "Bearer " (scheme, a space, nothing) is an empty token rather than stray whitespace.
        if let Some(rest) = strip_scheme(value)
            && rest.iter().all(|&b| b == b' ')
            && !value.starts_with(b" ")
        {
            return Err(AuthFailure::EmptyToken);
        }
        return Err(AuthFailure::Whitespace);
    }
    let scheme_end = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let scheme = &value[..scheme_end];
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        if scheme.contains(&b',') && scheme.len() > 6 && scheme[..6].eq_ignore_ascii_case(b"bearer")
        {
            return Err(AuthFailure::Comma);
        }
        return Err(AuthFailure::OtherScheme);
    }
    let rest = &value[scheme_end..];
    let Some(token) = rest.strip_prefix(b" ") else {
        // Nothing after the scheme, or a tab.
        return Err(if rest.is_empty() {
            AuthFailure::EmptyToken
        } else {
            AuthFailure::Whitespace
        });
    };
    if token.is_empty() {
        return Err(AuthFailure::EmptyToken);
    }
    check_token68(token)?;
    Ok(token)
}

/// The common case in one pass: `bearer` in any case, one space, then a `token68` token. Every
/// value accepted here is accepted by the step-by-step checks below with the same token (no
/// control character, no stray whitespace or comma can be in it); anything else returns `None`
/// and gets the step-by-step checks, which name the problem.
fn well_formed(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = &value[SCHEME.len()..];
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    let mut ok = body_len > 0;
    for &b in &token[..body_len] {
        ok &= TOKEN68[usize::from(b)];
    }
    ok.then_some(token)
}

/// The bytes of a `token68` body (before any `=` padding).
static TOKEN68: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    t
};

fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    (value.len() >= 6 && value[..6].eq_ignore_ascii_case(b"bearer")).then(|| &value[6..])
}

/// Checks the `token68` grammar: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
pub(crate) fn check_token68(token: &[u8]) -> Result<(), AuthFailure> {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    if body_len == 0 {
        return Err(if token.is_empty() {
            AuthFailure::EmptyToken
        } else {
            AuthFailure::InvalidCharacter
        });
    }
    for &b in &token[..body_len] {
        match b {
            _ if TOKEN68[usize::from(b)] => {}
            b' ' | b'\t' => return Err(AuthFailure::Whitespace),
            b',' => return Err(AuthFailure::Comma),
            _ => return Err(AuthFailure::InvalidCharacter),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(v: &[u8]) -> Result<&[u8], AuthFailure> {
        parse_authorization(v)
    }

    #[test]
    fn accepts_bearer_in_any_case() {
        for v in [
            &b"Bearer tok"[..],
            b"bearer tok",
            b"BEARER tok",
            b"bEaReR tok",
        ] {
            assert_eq!(p(v), Ok(&b"tok"[..]), "{v:?}");
        }
        assert_eq!(p(b"Bearer a-b.c_d~e+f/g=="), Ok(&b"a-b.c_d~e+f/g=="[..]));
    }

    #[test]
    fn refuses_each_malformation_specifically() {
        let cases: &[(&[u8], AuthFailure)] = &[
            (b"", AuthFailure::Missing),
            (b"Bearer", AuthFailure::EmptyToken),
            (b"Bearer ", AuthFailure::EmptyToken),
            (b"Bearer   ", AuthFailure::EmptyToken),
            (b"Bearer  tok", AuthFailure::Whitespace),
            (b"Bearer\ttok", AuthFailure::Whitespace),
            (b" Bearer tok", AuthFailure::Whitespace),
            (b"Bearer tok ", AuthFailure::Whitespace),
            (b"Bearer tok\t", AuthFailure::Whitespace),
            (b"Bearer tok other", AuthFailure::Whitespace),
            (b"Bearer tok,Bearer x", AuthFailure::Comma),
            (b"Bearer tok, x", AuthFailure::Comma),
            (b"Bearer,tok", AuthFailure::Comma),
            (b"Bearer a,b", AuthFailure::Comma),
            (b"Bearer t\x01k", AuthFailure::ControlCharacter),
            (b"Bearer t\x7fk", AuthFailure::ControlCharacter),
            (b"Bearer tok\x00", AuthFailure::ControlCharacter),
            (b"Bearer t\xc3\xa9", AuthFailure::InvalidCharacter),
            (b"Bearer t=k", AuthFailure::InvalidCharacter),
            (b"Bearer ===", AuthFailure::InvalidCharacter),
            (b"Bearer \"tok\"", AuthFailure::InvalidCharacter),
            (b"Bearer tok;x", AuthFailure::InvalidCharacter),
            (b"Basic YWxhZGRpbjpvcGVuc2VzYW1l", AuthFailure::OtherScheme),
            (b"Bearertok", AuthFailure::OtherScheme),
            (b"Token tok", AuthFailure::OtherScheme),
        ];
        for (v, want) in cases {
            assert_eq!(p(v), Err(*want), "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_anything_else() {
        let mut v = b"Bearer ".to_vec();
        v.extend(std::iter::repeat_n(
            b'a',
            DEFAULT_MAX_HEADER_BYTES - v.len(),
        ));
        assert!(p(&v).is_ok());
        v.push(b'a');
        assert_eq!(p(&v), Err(AuthFailure::TooLong));
        assert_eq!(
            parse_with_limit(b"Bearer abc", 9),
            Err(AuthFailure::TooLong)
        );
    }

    #[test]
    fn only_missing_and_other_schemes_lack_an_error_code() {
        for f in AuthFailure::ALL {
            let silent = matches!(f, AuthFailure::Missing | AuthFailure::OtherScheme);
            assert_eq!(f.error_code().is_none(), silent, "{f:?}");
            assert_eq!(AuthFailure::ALL[f.index()], f);
            assert!(!f.description().is_empty());
        }
    }

    proptest! {
        #[test]
        fn the_one_pass_path_agrees_with_the_stepwise_checks(
            scheme in prop_oneof![Just("Bearer "), Just("bearer "), Just("BEARER "), Just("Bearer"), Just("Bearer  "), Just("Basic ")],
            token in "[A-Za-z0-9._~+/=, \t\x00-\x1f-]{0,24}",
        ) {
            let v = format!("{scheme}{token}");
            let stepwise = parse_stepwise(v.as_bytes());
            if let Some(t) = well_formed(v.as_bytes()) {
                prop_assert_eq!(stepwise, Ok(t));
            }
            prop_assert_eq!(parse_with_limit(v.as_bytes(), 4096), stepwise);
        }

        #[test]
        fn never_panics_and_tokens_are_token68(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(tok) = p(&v) {
                prop_assert!(!tok.is_empty());
                prop_assert!(check_token68(tok).is_ok());
                prop_assert!(v.ends_with(tok));
                prop_assert_eq!(v.len(), tok.len() + 7);
            }
        }

        #[test]
        fn valid_tokens_round_trip(tok in "[A-Za-z0-9._~+/-]{1,40}={0,2}", scheme in "(?i)bearer") {
            let v = format!("{scheme} {tok}");
            prop_assert_eq!(p(v.as_bytes()), Ok(tok.as_bytes()));
        }
    }
}
