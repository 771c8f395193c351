//! W3C Trace Context: [`TraceContext`] (`traceparent`) and [`TraceState`] (`tracestate`), parsed
//! and validated by the rules of the W3C recommendation (version `00`, with the forward-compatible
//! parsing of higher versions), and written back for propagation.
//!
//! Pure code: no runtime, no allocation except when a `tracestate` arrives in several header
//! lines and has to be joined.

use std::fmt;

use http::HeaderValue;

use crate::random;

/// The `traceparent` header name.
pub static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// The `tracestate` header name.
pub static TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// Length of a version-`00` `traceparent`: `2 + 1 + 32 + 1 + 16 + 1 + 2`.
pub const TRACEPARENT_LEN: usize = 55;

/// The most list members a `tracestate` may carry.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// The longest `tracestate` kept (W3C Trace Context §3.3.1.5: at least 512 characters are
/// propagated; past that a vendor may truncate). A longer one is rebuilt from its members:
/// those over 128 characters dropped first, from the end of the list, then the last
/// ones until it fits, so a caller cannot make every request this layer passes on carry
/// kilobytes of state (or blanks and commas).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Members longer than this (`key=value`) are the first dropped from a `tracestate` over
/// [`MAX_TRACESTATE_LEN`] (W3C Trace Context §3.3.1.5).
const LONG_TRACESTATE_MEMBER: usize = 128;

/// A 16-byte trace id, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span (parent) id, never all zeros.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

/// The `trace-flags` byte of a `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceFlags(u8);

impl TraceId {
    /// A trace id from its bytes; `None` when they are all zeros (invalid).
    pub fn from_bytes(bytes: [u8; 16]) -> Option<TraceId> {
        (bytes != [0; 16]).then_some(TraceId(bytes))
    }

    /// A random trace id.
    pub fn random() -> TraceId {
        loop {
            let hi = random::next_u64().to_be_bytes();
            let lo = random::next_u64().to_be_bytes();
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&hi);
            b[8..].copy_from_slice(&lo);
            if let Some(id) = TraceId::from_bytes(b) {
                return id;
            }
        }
    }

    /// The bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// A span id from its bytes; `None` when they are all zeros (invalid).
    pub fn from_bytes(bytes: [u8; 8]) -> Option<SpanId> {
        (bytes != [0; 8]).then_some(SpanId(bytes))
    }

    /// A random span id.
    pub fn random() -> SpanId {
        loop {
            if let Some(id) = SpanId::from_bytes(random::next_u64().to_be_bytes()) {
                return id;
            }
        }
    }

    /// The bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl TraceFlags {
    /// The `sampled` flag (bit 0).
    pub const SAMPLED: TraceFlags = TraceFlags(0x01);
    /// The `random` flag of Trace Context level 2 (bit 1): the trace id is random.
    pub const RANDOM: TraceFlags = TraceFlags(0x02);

    /// Flags from the raw byte.
    pub fn new(byte: u8) -> TraceFlags {
        TraceFlags(byte)
    }

    /// The raw byte.
    pub fn to_u8(self) -> u8 {
        self.0
    }

    /// Whether the caller may have recorded the trace (`sampled`).
    pub fn is_sampled(self) -> bool {
        self.0 & 0x01 != 0
    }

    /// The flags a version-`00` writer may send on: `sampled` and `random`; other bits are
    /// unknown to us and cleared, as the recommendation asks.
    pub fn propagated(self) -> TraceFlags {
        TraceFlags(self.0 & 0x03)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 32];
    let n = hex_into(bytes, &mut buf);
    // Only hex digits were written.
    f.write_str(std::str::from_utf8(&buf[..n]).unwrap_or_default())
}

/// Writes `bytes` as lowercase hex into `out`; returns the number of characters written.
fn hex_into(bytes: &[u8], out: &mut [u8]) -> usize {
    crate::hex::encode(bytes, out)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// Why a `traceparent` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTraceparent {
    /// Shorter than 55 characters, or a version-`00` value longer than 55.
    Length,
    /// The version is not two lowercase hex digits, or is `ff` (forbidden).
    Version,
    /// A `-` is missing where the format puts one.
    Separator,
    /// The trace id is not 32 lowercase hex digits.
    TraceId,
    /// The trace id is all zeros.
    ZeroTraceId,
    /// The parent id is not 16 lowercase hex digits.
    ParentId,
    /// The parent id is all zeros.
    ZeroParentId,
    /// The flags are not two lowercase hex digits.
    Flags,
    /// The header came more than once.
    Multiple,
}

impl fmt::Display for InvalidTraceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidTraceparent::Length => "wrong length",
            InvalidTraceparent::Version => "invalid version",
            InvalidTraceparent::Separator => "missing '-' separator",
            InvalidTraceparent::TraceId => "trace-id is not 32 lowercase hex digits",
            InvalidTraceparent::ZeroTraceId => "trace-id is all zeros",
            InvalidTraceparent::ParentId => "parent-id is not 16 lowercase hex digits",
            InvalidTraceparent::ZeroParentId => "parent-id is all zeros",
            InvalidTraceparent::Flags => "trace-flags are not 2 lowercase hex digits",
            InvalidTraceparent::Multiple => "header sent more than once",
        })
    }
}

impl std::error::Error for InvalidTraceparent {}

/// Why a `tracestate` was refused (the `traceparent` is kept; only the state is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTracestate {
    /// No list member at all (empty or only blanks and commas): nothing to propagate.
    Empty,
    /// More than 32 list members.
    TooManyMembers,
    /// A list member without `=`.
    MissingEquals,
    /// A key outside the W3C grammar (lowercase, digits, `_-*/`, optional `tenant@system`).
    Key,
    /// A value outside the W3C grammar (1–256 printable characters, no `,` or `=`, no
    /// trailing space).
    Value,
    /// The same key twice.
    DuplicateKey,
    /// Longer than [`MAX_TRACESTATE_LEN`] with no list member that fits in it.
    TooLong,
}

impl fmt::Display for InvalidTracestate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidTracestate::Empty => "no list member",
            InvalidTracestate::TooManyMembers => "more than 32 list members",
            InvalidTracestate::MissingEquals => "list member without '='",
            InvalidTracestate::Key => "invalid key",
            InvalidTracestate::Value => "invalid value",
            InvalidTracestate::DuplicateKey => "duplicate key",
            InvalidTracestate::TooLong => "longer than 512 characters, no member fits",
        })
    }
}

impl std::error::Error for InvalidTracestate {}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b - b'a' + 10,
    }
}

/// Decodes lowercase hex into `out` (`s.len() == 2 * out.len()`); `false` on a non-hex digit.
fn decode_hex(s: &[u8], out: &mut [u8]) -> bool {
    if s.len() != out.len() * 2 || !s.iter().all(|&b| is_lower_hex(b)) {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *o = (hex_val(pair[0]) << 4) | hex_val(pair[1]);
    }
    true
}

/// Where the trace context of a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceOrigin {
    /// The `traceparent` header.
    Header,
    /// `params._meta.traceparent` (SEP-414), adopted after inspection because no header came.
    Meta,
    /// Nothing (valid) came: a new trace was started here.
    Generated,
}

/// The W3C trace context of a request: trace id, the caller's span id, flags and `tracestate`.
///
/// The server layer puts one in the request's extensions (from `traceparent`, or a new trace);
/// the client layer sends a [`child`](TraceContext::child) of it on outgoing calls.
#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: TraceId,
    parent_id: SpanId,
    flags: TraceFlags,
    state: Option<TraceState>,
    origin: TraceOrigin,
}

impl TraceContext {
    /// Parses a `traceparent` value (origin [`TraceOrigin::Header`]).
    ///
    /// Version `00` must be exactly 55 characters. A higher version (`01`–`fe`) is parsed for its
    /// first four fields as the recommendation asks (at least 55 characters, and a `-` after the
    /// flags when longer). Everything is lowercase hex; all-zero ids and version `ff` are invalid.
    pub fn parse(value: impl AsRef<[u8]>) -> Result<TraceContext, InvalidTraceparent> {
        let value = value.as_ref();
        if value.len() < TRACEPARENT_LEN {
            return Err(InvalidTraceparent::Length);
        }
        let mut version = [0u8; 1];
        if !decode_hex(&value[0..2], &mut version) || version[0] == 0xff {
            return Err(InvalidTraceparent::Version);
        }
        if version[0] == 0 && value.len() != TRACEPARENT_LEN {
            return Err(InvalidTraceparent::Length);
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return Err(InvalidTraceparent::Separator);
        }
        if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' {
            return Err(InvalidTraceparent::Separator);
        }
        let mut trace = [0u8; 16];
        if !decode_hex(&value[3..35], &mut trace) {
            return Err(InvalidTraceparent::TraceId);
        }
        let trace_id = TraceId::from_bytes(trace).ok_or(InvalidTraceparent::ZeroTraceId)?;
        let mut parent = [0u8; 8];
        if !decode_hex(&value[36..52], &mut parent) {
            return Err(InvalidTraceparent::ParentId);
        }
        let parent_id = SpanId::from_bytes(parent).ok_or(InvalidTraceparent::ZeroParentId)?;
        let mut flags = [0u8; 1];
        if !decode_hex(&value[53..55], &mut flags) {
            return Err(InvalidTraceparent::Flags);
        }
        Ok(TraceContext {
            trace_id,
            parent_id,
            flags: TraceFlags(flags[0]),
            state: None,
            origin: TraceOrigin::Header,
        })
    }

    /// Reads `traceparent` and `tracestate` from request headers.
    ///
    /// `Ok(None)` when no `traceparent` came; an error when it is invalid (or sent twice), in
    /// which case `tracestate` is not looked at, as the recommendation says. An invalid
    /// `tracestate` next to a valid `traceparent` is dropped (logged at debug level) and the
    /// trace is kept.
    pub fn from_headers(
        headers: &http::HeaderMap,
    ) -> Result<Option<TraceContext>, InvalidTraceparent> {
        Ok(Self::read_headers(headers)?.map(|(ctx, _)| ctx))
    }

    /// [`from_headers`](Self::from_headers), and whether a `tracestate` came that the context
    /// does not keep (one the layer must not pass on).
    pub(crate) fn read_headers(
        headers: &http::HeaderMap,
    ) -> Result<Option<(TraceContext, bool)>, InvalidTraceparent> {
        let mut values = headers.get_all(&TRACEPARENT).iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(InvalidTraceparent::Multiple);
        }
        let ctx = TraceContext::parse(first.as_bytes())?;
        let states = headers.get_all(&TRACESTATE);
        if states.iter().next().is_none() {
            return Ok(Some((ctx, false)));
        }
        let state = match TraceState::from_header_values(states) {
            Ok(state) => Some(state),
            Err(InvalidTracestate::Empty) => None,
            Err(reason) => {
                tracing::debug!(%reason, "tracestate dropped");
                None
            }
        };
        let dropped = state.is_none();
        Ok(Some((ctx.with_state(state), dropped)))
    }

    /// A new trace: random trace id and span id, flags `sampled` + `random` (we log the
    /// request under this trace id, so a downstream tracer may record it too; its own sampler
    /// still decides). Origin [`TraceOrigin::Generated`].
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: TraceId::random(),
            parent_id: SpanId::random(),
            flags: TraceFlags(TraceFlags::SAMPLED.0 | TraceFlags::RANDOM.0),
            state: None,
            origin: TraceOrigin::Generated,
        }
    }

    /// A context from its parts (origin [`TraceOrigin::Header`]).
    pub fn from_parts(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> TraceContext {
        TraceContext {
            trace_id,
            parent_id,
            flags,
            state: None,
            origin: TraceOrigin::Header,
        }
    }

    /// The same context with this `tracestate`.
    pub fn with_state(mut self, state: Option<TraceState>) -> TraceContext {
        self.state = state;
        self
    }

    /// The same context, marked as coming from `origin`.
    pub fn with_origin(mut self, origin: TraceOrigin) -> TraceContext {
        self.origin = origin;
        self
    }

    /// The context to send on an outgoing call: same trace id, flags and state, a fresh random
    /// span id.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            parent_id: SpanId::random(),
            flags: self.flags,
            state: self.state.clone(),
            origin: self.origin,
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The parent (caller's) span id.
    pub fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The flags as received.
    pub fn flags(&self) -> TraceFlags {
        self.flags
    }

    /// The `tracestate`, when a valid one came with the `traceparent`.
    pub fn state(&self) -> Option<&TraceState> {
        self.state.as_ref()
    }

    /// Where the context came from.
    pub fn origin(&self) -> TraceOrigin {
        self.origin
    }

    /// Writes the version-`00` `traceparent` of this context into `out`.
    pub fn write_traceparent(&self, out: &mut [u8; TRACEPARENT_LEN]) {
        out[0] = b'0';
        out[1] = b'0';
        out[2] = b'-';
        hex_into(&self.trace_id.0, &mut out[3..35]);
        out[35] = b'-';
        hex_into(&self.parent_id.0, &mut out[36..52]);
        out[52] = b'-';
        hex_into(&[self.flags.propagated().0], &mut out[53..55]);
    }

    /// The version-`00` `traceparent` header value of this context (unknown flag bits cleared).
    pub fn traceparent(&self) -> HeaderValue {
        let mut buf = [0u8; TRACEPARENT_LEN];
        self.write_traceparent(&mut buf);
        // Only hex digits and '-': always a valid header value.
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

impl std::str::FromStr for TraceContext {
    type Err = InvalidTraceparent;

    /// [`TraceContext::parse`] of a `traceparent` value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceContext::parse(s)
    }
}

impl std::str::FromStr for TraceState {
    type Err = InvalidTracestate;

    /// [`TraceState::parse`] of a `tracestate` value.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceState::parse(s)
    }
}

impl fmt::Display for TraceContext {
    /// The version-`00` `traceparent` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; TRACEPARENT_LEN];
        self.write_traceparent(&mut buf);
        f.write_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("trace_id", &self.trace_id)
            .field("parent_id", &self.parent_id)
            .field("flags", &self.flags)
            .field("state", &self.state)
            .field("origin", &self.origin)
            .finish()
    }
}

/// A validated `tracestate`: 1–32 list members `key=value`, kept verbatim for propagation when
/// it is at most [`MAX_TRACESTATE_LEN`] characters long, otherwise rebuilt to fit (see there).
#[derive(Clone, PartialEq, Eq)]
pub struct TraceState {
    value: HeaderValue,
    members: u8,
}

impl TraceState {
    /// Parses one `tracestate` value.
    pub fn parse(value: impl AsRef<[u8]>) -> Result<TraceState, InvalidTracestate> {
        let value = value.as_ref();
        let mut keys = Keys::default();
        validate_list(value, &mut keys)?;
        if keys.len == 0 {
            return Err(InvalidTracestate::Empty);
        }
        if value.len() > MAX_TRACESTATE_LEN {
            return rebuild(&keys);
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| InvalidTracestate::Value)?;
        Ok(TraceState {
            value,
            members: keys.len as u8,
        })
    }

    /// Parses a `tracestate` sent in one or more header lines (they form one list, in order).
    /// A single line of at most [`MAX_TRACESTATE_LEN`] characters is kept as is (no copy);
    /// several are joined with `,`, a longer one rebuilt to fit.
    pub fn from_header_values<'a>(
        values: impl IntoIterator<Item = &'a HeaderValue>,
    ) -> Result<TraceState, InvalidTracestate> {
        let mut keys = Keys::default();
        let mut first: Option<&HeaderValue> = None;
        let mut lines = 0usize;
        for v in values {
            validate_list(v.as_bytes(), &mut keys)?;
            first.get_or_insert(v);
            lines += 1;
        }
        match first {
            Some(_) if keys.len == 0 => Err(InvalidTracestate::Empty),
            None => Err(InvalidTracestate::Empty),
            Some(first) if lines == 1 && first.len() <= MAX_TRACESTATE_LEN => Ok(TraceState {
                value: first.clone(),
                members: keys.len as u8,
            }),
            Some(_) => rebuild(&keys),
        }
    }

    /// The value, for a `tracestate` header.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// The value as text.
    pub fn as_str(&self) -> &str {
        // Validated printable ASCII.
        self.value.to_str().unwrap_or_default()
    }

    /// The number of list members.
    pub fn members(&self) -> usize {
        usize::from(self.members)
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceState").field(&self.as_str()).finish()
    }
}

/// The list members seen so far, for the duplicate check (no allocation: at most 32).
#[derive(Default)]
struct Keys<'a> {
    members: [(&'a [u8], &'a [u8]); MAX_TRACESTATE_MEMBERS],
    len: usize,
}

/// The list's members joined with `,` (no blanks or empty members), at most
/// [`MAX_TRACESTATE_LEN`] long: members over [`LONG_TRACESTATE_MEMBER`] are dropped first, from
/// the end, then others from the end, until the rest fits.
fn rebuild(keys: &Keys<'_>) -> Result<TraceState, InvalidTracestate> {
    let members = &keys.members[..keys.len];
    let len = |(k, v): &(&[u8], &[u8])| k.len() + 1 + v.len();
    let mut keep = [true; MAX_TRACESTATE_MEMBERS];
    // Each kept member also takes a `,` (one too many counted: the first has none).
    let mut total: usize = members.iter().map(|m| len(m) + 1).sum();
    for long in [true, false] {
        for (i, m) in members.iter().enumerate().rev() {
            if total <= MAX_TRACESTATE_LEN + 1 {
                break;
            }
            if keep[i] && (!long || len(m) > LONG_TRACESTATE_MEMBER) {
                keep[i] = false;
                total -= len(m) + 1;
            }
        }
    }
    let mut out = Vec::with_capacity(total);
    let mut kept = 0u8;
    for ((k, v), _) in members.iter().zip(keep).filter(|(_, keep)| *keep) {
        if kept > 0 {
            out.push(b',');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        kept += 1;
    }
    if kept == 0 {
        return Err(InvalidTracestate::TooLong);
    }
    let value = HeaderValue::from_bytes(&out).map_err(|_| InvalidTracestate::Value)?;
    Ok(TraceState {
        value,
        members: kept,
    })
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ows(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ows(*last) {
            break;
        }
        s = rest;
    }
    s
}

fn validate_list<'a>(list: &'a [u8], keys: &mut Keys<'a>) -> Result<(), InvalidTracestate> {
    for member in list.split(|&b| b == b',') {
        let member = trim_ows(member);
        if member.is_empty() {
            // Empty list members are allowed (and ignored).
            continue;
        }
        let eq = member
            .iter()
            .position(|&b| b == b'=')
            .ok_or(InvalidTracestate::MissingEquals)?;
        let (key, value) = (&member[..eq], &member[eq + 1..]);
        if !valid_key(key) {
            return Err(InvalidTracestate::Key);
        }
        if !valid_value(value) {
            return Err(InvalidTracestate::Value);
        }
        if keys.members[..keys.len].iter().any(|(k, _)| *k == key) {
            return Err(InvalidTracestate::DuplicateKey);
        }
        if keys.len == MAX_TRACESTATE_MEMBERS {
            return Err(InvalidTracestate::TooManyMembers);
        }
        keys.members[keys.len] = (key, value);
        keys.len += 1;
    }
    Ok(())
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// `simple-key = lcalpha 0*255(keychar)`, or `tenant-id "@" system-id` with
/// `tenant-id = (lcalpha / DIGIT) 0*240(keychar)` and `system-id = lcalpha 0*13(keychar)`.
fn valid_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key.iter().all(|&b| is_key_char(b))
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant.iter().all(|&b| is_key_char(b))
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system.iter().all(|&b| is_key_char(b))
        }
    }
}

/// `value = 0*255(chr) nblk-chr`: `chr = %x20 / nblk-chr`,
/// `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E` (printable ASCII without `,` and `=`).
fn valid_value(value: &[u8]) -> bool {
    let nblk = |b: u8| (0x21..=0x7e).contains(&b) && b != b',' && b != b'=';
    match value.split_last() {
        Some((&last, rest)) => {
            value.len() <= 256 && nblk(last) && rest.iter().all(|&b| b == b' ' || nblk(b))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_w3c_example() {
        let tc = TraceContext::parse(VALID.as_bytes()).unwrap();
        assert_eq!(
            tc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(tc.parent_id().to_string(), "00f067aa0ba902b7");
        assert!(tc.flags().is_sampled());
        assert_eq!(tc.origin(), TraceOrigin::Header);
        assert_eq!(tc.to_string(), VALID);
        assert_eq!(tc.traceparent(), VALID);
    }

    #[test]
    fn version_00_rules() {
        use InvalidTraceparent as E;
        let bad = |s: &str| TraceContext::parse(s.as_bytes()).unwrap_err();
        assert_eq!(bad(""), E::Length);
        assert_eq!(bad(&VALID[..54]), E::Length);
        assert_eq!(
            bad(&format!("{VALID}-")),
            E::Length,
            "00 must be exactly 55"
        );
        assert_eq!(
            bad("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            E::Version
        );
        assert_eq!(
            bad("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            E::Version
        );
        assert_eq!(
            bad("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            E::Version
        );
        assert_eq!(
            bad("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            E::TraceId,
            "uppercase hex is invalid"
        );
        assert_eq!(
            bad("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            E::ZeroTraceId
        );
        assert_eq!(
            bad("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            E::ZeroParentId
        );
        assert_eq!(
            bad("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bX-01"),
            E::ParentId
        );
        assert_eq!(
            bad("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x"),
            E::Flags
        );
        assert_eq!(
            bad("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            E::Separator
        );
        assert_eq!(
            bad("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"),
            E::Separator
        );
    }

    #[test]
    fn higher_versions_parse_forward_compatibly() {
        let v = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds";
        let tc = TraceContext::parse(v.as_bytes()).unwrap();
        assert_eq!(tc.flags().to_u8(), 0x09);
        // We send version 00, with only the flags we know.
        assert_eq!(
            tc.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert!(TraceContext::parse(&v.as_bytes()[..55]).is_ok());
        let no_dash = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09x";
        assert_eq!(
            TraceContext::parse(no_dash.as_bytes()),
            Err(InvalidTraceparent::Separator)
        );
    }

    #[test]
    fn children_keep_the_trace_and_change_the_span() {
        let tc = TraceContext::parse(VALID.as_bytes()).unwrap();
        let child = tc.child();
        assert_eq!(child.trace_id(), tc.trace_id());
        assert_ne!(child.parent_id(), tc.parent_id());
        assert_eq!(child.flags(), tc.flags());
        let root = TraceContext::new_root();
        assert_eq!(root.origin(), TraceOrigin::Generated);
        assert!(TraceContext::parse(root.to_string().as_bytes()).is_ok());
        assert_ne!(root.trace_id(), TraceContext::new_root().trace_id());
    }

    #[test]
    fn tracestate_rules() {
        use InvalidTracestate as E;
        let ok = |s: &str| TraceState::parse(s.as_bytes()).unwrap().members();
        let bad = |s: &str| TraceState::parse(s.as_bytes()).unwrap_err();
        assert_eq!(ok("congo=t61rcWkgMzE"), 1);
        assert_eq!(ok("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), 2);
        assert_eq!(
            ok(" rojo=1 ,, \t congo=2 "),
            2,
            "OWS and empty members are fine"
        );
        assert_eq!(ok("tenant@vendor=x"), 1);
        assert_eq!(ok("1tenant@vendor=x"), 1);
        assert_eq!(ok("a=b c"), 1, "inner spaces are allowed in values");
        assert_eq!(bad(""), E::Empty);
        assert_eq!(bad(" , "), E::Empty);
        assert_eq!(bad("novalue"), E::MissingEquals);
        assert_eq!(bad("Upper=x"), E::Key);
        assert_eq!(bad("1digitfirst=x"), E::Key);
        assert_eq!(bad("t@1system=x"), E::Key);
        assert_eq!(bad("t@systemnamewaytoolong=x"), E::Key);
        assert_eq!(bad("a="), E::Value);
        assert_eq!(bad("a=x=y"), E::Value);
        assert_eq!(bad("a=caf\u{e9}"), E::Value);
        assert_eq!(bad("a=1,a=2"), E::DuplicateKey);
        assert_eq!(bad(&format!("k={}", "v".repeat(257))), E::Value);
        assert_eq!(ok(&format!("k={}", "v".repeat(256))), 1);
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("k{i}=v"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(ok(&list(32)), 32);
        assert_eq!(bad(&list(33)), E::TooManyMembers);
    }

    #[test]
    fn from_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(TraceContext::from_headers(&h), Ok(None));
        h.insert(&TRACESTATE, HeaderValue::from_static("rojo=1"));
        h.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        let tc = TraceContext::from_headers(&h).unwrap().unwrap();
        assert_eq!(tc.state().unwrap().as_str(), "rojo=1");
        h.insert(&TRACESTATE, HeaderValue::from_static("BAD"));
        let tc = TraceContext::from_headers(&h).unwrap().unwrap();
        assert!(
            tc.state().is_none(),
            "a bad tracestate is dropped, the trace kept"
        );
        h.append(&TRACEPARENT, HeaderValue::from_static(VALID));
        assert_eq!(
            TraceContext::from_headers(&h),
            Err(InvalidTraceparent::Multiple)
        );
    }

    /// A `tracestate` over 512 characters is rebuilt to fit (W3C §3.3.1.5): blanks and empty
    /// members go, then members over 128 characters from the end, then others from the end.
    #[test]
    fn long_tracestates_are_cut_to_fit() {
        let short = "a=1,,  ,b=2";
        assert_eq!(
            TraceState::parse(short).unwrap().as_str(),
            short,
            "kept verbatim"
        );
        // Padding alone: the members are kept, the padding is not.
        let padded = format!("a=1{},b=2", ",".repeat(60_000));
        let ts = TraceState::parse(&padded).unwrap();
        assert_eq!((ts.as_str(), ts.members()), ("a=1,b=2", 2));
        // 32 members of 2 + 1 + 40 characters: 1,407; long ones are none.
        let members: Vec<String> = (0..32)
            .map(|i| format!("k{i:x}={}", "v".repeat(40)))
            .collect();
        let ts = TraceState::parse(members.join(",")).unwrap();
        assert!(
            ts.as_str().len() <= MAX_TRACESTATE_LEN,
            "{}",
            ts.as_str().len()
        );
        assert_eq!(
            ts.as_str(),
            members[..ts.members()].join(","),
            "the first ones kept"
        );
        assert_eq!(ts.members(), 11);
        // A long member goes before any short one.
        let long = format!("long={}", "x".repeat(200));
        let list = format!("a=1,{long},{},z=9", members[..7].join(","));
        let ts = TraceState::parse(&list).unwrap();
        assert_eq!(ts.as_str(), format!("a=1,{},z=9", members[..7].join(",")));
        // Several header lines over the limit: the same.
        let lines = [
            HeaderValue::from_str(&long).unwrap(),
            HeaderValue::from_str(&members[..20].join(",")).unwrap(),
        ];
        let ts = TraceState::from_header_values(&lines).unwrap();
        assert!(!ts.as_str().contains("long=") && ts.as_str().len() <= MAX_TRACESTATE_LEN);
        // One member too long to fit at all.
        let huge = format!("{}={}", "k".repeat(256), "v".repeat(256));
        assert_eq!(TraceState::parse(&huge), Err(InvalidTracestate::TooLong));
    }

    #[test]
    fn tracestate_over_several_lines() {
        let a = HeaderValue::from_static("rojo=1");
        let b = HeaderValue::from_static("congo=2");
        let one = TraceState::from_header_values([&a]).unwrap();
        assert_eq!(one.as_str(), "rojo=1");
        let two = TraceState::from_header_values([&a, &b]).unwrap();
        assert_eq!(two.as_str(), "rojo=1,congo=2");
        assert_eq!(two.members(), 2);
        let dup = HeaderValue::from_static("rojo=3");
        assert_eq!(
            TraceState::from_header_values([&a, &dup]),
            Err(InvalidTracestate::DuplicateKey)
        );
        assert_eq!(
            TraceState::from_header_values(std::iter::empty()),
            Err(InvalidTracestate::Empty)
        );
    }

    proptest::proptest! {
        #[test]
        fn written_contexts_parse_back(
            trace in proptest::array::uniform16(proptest::num::u8::ANY),
            span in proptest::array::uniform8(proptest::num::u8::ANY),
            flags in 0u8..4,
        ) {
            let (Some(t), Some(s)) = (TraceId::from_bytes(trace), SpanId::from_bytes(span)) else {
                return Ok(());
            };
            let ctx = TraceContext::from_parts(t, s, TraceFlags::new(flags));
            let text = ctx.to_string();
            let back = TraceContext::parse(text.as_bytes()).unwrap();
            proptest::prop_assert_eq!(back.trace_id(), t);
            proptest::prop_assert_eq!(back.parent_id(), s);
            proptest::prop_assert_eq!(back.flags(), TraceFlags::new(flags));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = TraceContext::parse(&bytes);
            let _ = TraceState::parse(&bytes);
        }
    }
}
