//! Who a request counts against: [`KeyBy`] chooses, [`ClientKey`] is the answer.
//!
//! Pure logic (no runtime): the client-IP rule behind trusted proxies, `X-Forwarded-For` /
//! `Forwarded` parsing, IPv6 prefix grouping and header digests.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use tower_armor_mcp::Principal;

/// How requests are grouped into quotas.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum KeyBy {
    /// The authenticated [`Principal`] (put into request extensions by bearer-auth); a request
    /// without one counts against its peer IP. The default.
    #[default]
    Principal,
    /// The value of a request header (for example `X-Api-Key`); a request without it counts
    /// against its peer IP. The value is stored and logged only as a truncated SHA-256 digest.
    /// The header is believed as sent: use this only behind something that validates it.
    Header(HeaderName),
    /// The peer IP, from the connection (`ConnectInfo<SocketAddr>`), or from `X-Forwarded-For` /
    /// `Forwarded` when the peer is a trusted proxy (see [`TrustedProxies`]).
    Ip,
    /// One quota shared by every request.
    Global,
}

impl KeyBy {
    /// Parses the `MCP_RATE_LIMIT_KEY` syntax: `principal`, `ip`, `global` or
    /// `header:<Header-Name>`.
    pub fn parse(s: &str) -> Result<KeyBy, String> {
        let s = s.trim_ascii();
        if let Some(name) = strip_prefix_ignore_case(s, "header:") {
            let name = name.trim_ascii();
            let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                format!(
                    "{} is not a valid header name",
                    tower_armor_mcp::env::shown(name)
                )
            })?;
            if FORWARDED_KEYS.contains(&header.as_str()) {
                return Err(format!(
                    "{header} is partly written by the client (a proxy appends to what the client \
                     sent): keyed whole, a client would get a new quota by changing its part; key \
                     by ip, with MCP_RATE_LIMIT_TRUSTED_PROXIES naming the proxies whose hops are \
                     believed"
                ));
            }
            if NOT_CLIENT_KEYS.contains(&header.as_str()) {
                return Err(format!(
                    "{header} does not identify a client: it changes per request or session (a \
                     client would reset its quota at will) or describes the request; key by a \
                     header that names the client, such as X-Api-Key"
                ));
            }
            return Ok(KeyBy::Header(header));
        }
        match s.to_ascii_lowercase().as_str() {
            "principal" => Ok(KeyBy::Principal),
            "ip" => Ok(KeyBy::Ip),
            "global" => Ok(KeyBy::Global),
            _ => Err(format!(
                "expected principal, ip, global or header:<name>, got {s:?}"
            )),
        }
    }
}

/// Headers [`KeyBy::parse`] refuses as a key: each changes with the request or the session,
/// describes the request or its connection rather than who sends it (framing and hop-by-hop
/// fields, which proxies remove or rewrite), or never comes on a request (`Set-Cookie`).
const NOT_CLIENT_KEYS: &[&str] = &[
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "x-request-id",
    "traceparent",
    "tracestate",
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "accept",
    "set-cookie",
];

/// Headers that list the hops a request came through, which [`KeyBy::parse`] refuses as a key:
/// proxies append to what the client sent, so the client writes the start of them.
/// [`KeyBy::Ip`] reads them hop by hop, believing only trusted proxies. (`X-Real-IP`, which a
/// proxy sets whole, may key clients behind a proxy that overwrites it.)
const FORWARDED_KEYS: &[&str] = &["x-forwarded-for", "forwarded"];

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// The client part of a quota key: what one client's requests have in common.
///
/// Cheap to clone (a principal is an `Arc`); a fixed size whatever the client sends.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// Every request ([`KeyBy::Global`]).
    Global,
    /// An authenticated principal.
    Principal(Principal),
    /// A client IP (IPv6 addresses grouped by their prefix, /64 by default).
    Ip(IpAddr),
    /// A header value, as a digest.
    Header(HeaderDigest),
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::Global => f.write_str("Global"),
            ClientKey::Principal(p) => write!(f, "Principal({:?})", p.name()),
            ClientKey::Ip(ip) => write!(f, "Ip({ip})"),
            ClientKey::Header(d) => write!(f, "Header({d:?})"),
        }
    }
}

/// The first 16 bytes of the SHA-256 of a header value: stable across processes (so a shared
/// store can use it), fixed in size, and not the value itself (an API key never sits in the key
/// table or in a log).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderDigest([u8; 16]);

impl HeaderDigest {
    /// The digest of a header value.
    pub fn of(value: &[u8]) -> Self {
        let full = Sha256::digest(value);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        HeaderDigest(out)
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for HeaderDigest {
    /// The first four bytes in hex: enough to tell keys apart in a log, nothing of the value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr` with `prefix` leading bits; `None` when the prefix is longer than
    /// the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let canonical = addr.to_canonical();
        // An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) becomes its IPv4 form.
        let prefix = match (addr, canonical) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96)?,
            _ => prefix,
        };
        let addr = canonical;
        let max = max_prefix(addr);
        (prefix <= max).then(|| IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        same_family(ip, self.addr) && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Debug for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<IpNet, String> {
        let s = s.trim_ascii();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{} is not an IP address or network",
                tower_armor_mcp::env::shown(s)
            )
        })?;
        let prefix = match prefix {
            Some(p) => tower_armor_mcp::env::number::<u8>(p).map_err(|_| {
                format!(
                    "{} has an invalid prefix length",
                    tower_armor_mcp::env::shown(s)
                )
            })?,
            None => max_prefix(addr),
        };
        IpNet::new(addr, prefix).ok_or_else(|| {
            format!(
                "{} has a prefix longer than the address",
                tower_armor_mcp::env::shown(s)
            )
        })
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    matches!(
        (a, b),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
    )
}

/// Keeps the first `prefix` bits of `ip`.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// Which header carries the client address when the peer is a trusted proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de facto standard). The default.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => http::header::FORWARDED,
        }
    }
}

/// The proxies whose forwarding headers are believed.
///
/// The client address is found by walking the forwarding header from the right (the hop added
/// last, by the proxy nearest to us) past every trusted address; the first untrusted hop is the
/// client. A request from an untrusted peer is keyed on the peer itself, whatever headers it
/// carries, so a client cannot pick its own key by forging `X-Forwarded-For`. When every hop is
/// trusted the left-most one is used; an unparsable hop (`unknown`, an obfuscated name, garbage)
/// ends the walk at the last address believed. At most 32 hops are examined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Box<[IpNet]>,
}

/// The most hops of a forwarding header examined.
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// No trusted proxy: forwarding headers are never believed.
    pub fn none() -> Self {
        Self::default()
    }

    /// These networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        TrustedProxies {
            nets: nets.into_iter().collect(),
        }
    }

    /// Parses a comma-separated list of addresses and networks
    /// (`MCP_RATE_LIMIT_TRUSTED_PROXIES` syntax); empty means none.
    pub fn parse_list(s: &str) -> Result<Self, String> {
        let nets = tower_armor_mcp::env::list(s)?
            .into_iter()
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(nets))
    }

    /// Whether a network of these trusts every address (`0.0.0.0/0`, `::/0`): any client can
    /// then choose the address it is counted under.
    pub fn trusts_everyone(&self) -> bool {
        self.nets.iter().any(|n| n.prefix == 0)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client address of a request that came from `peer` with these headers.
    #[inline]
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap, which: ForwardedHeader) -> IpAddr {
        let client = peer.to_canonical();
        if self.nets.is_empty() {
            return client;
        }
        self.forwarded_client_ip(client, headers, which)
    }

    /// [`TrustedProxies::client_ip`] with some proxy trusted; `client` is the canonical peer.
    fn forwarded_client_ip(
        &self,
        mut client: IpAddr,
        headers: &HeaderMap,
        which: ForwardedHeader,
    ) -> IpAddr {
        if !self.contains(client) {
            return client;
        }
        let mut hops = 0;
        // Walks one hop back; `false` once the client is found (or the chain is not usable).
        let mut step = |hop: &[u8], client: &mut IpAddr| -> bool {
            hops += 1;
            let Some(ip) = parse_hop(hop, which).filter(|_| hops <= MAX_HOPS) else {
                return false;
            };
            *client = ip.to_canonical();
            self.contains(*client)
        };
        for value in headers.get_all(which.name()).iter().rev() {
            // Bytes, not text: a proxy appends the hops it saw to the line the client sent, so
            // a byte that is not text in the client's part must not cost the hops after it.
            let value = value.as_bytes();
            let go_on = match which {
                ForwardedHeader::XForwardedFor => {
                    value.rsplit(|&b| b == b',').all(|h| step(h, &mut client))
                }
                // RFC 7239: a comma inside a quoted string separates nothing.
                ForwardedHeader::Forwarded => split_unquoted(value, b',')
                    .into_iter()
                    .rev()
                    .all(|h| step(h, &mut client)),
            };
            if !go_on {
                return client;
            }
        }
        client
    }
}

/// One hop of a forwarding header: its address, if it has one (none if it is not text).
fn parse_hop(hop: &[u8], which: ForwardedHeader) -> Option<IpAddr> {
    let node = match which {
        ForwardedHeader::XForwardedFor => std::str::from_utf8(hop).ok()?.trim_ascii(),
        ForwardedHeader::Forwarded => split_unquoted(hop, b';').into_iter().find_map(|pair| {
            let (k, v) = std::str::from_utf8(pair).ok()?.split_once('=')?;
            k.trim_ascii()
                .eq_ignore_ascii_case("for")
                .then(|| v.trim_ascii())
        })?,
    };
    parse_node(node.trim_matches('"'))
}

/// `s` cut at every `sep` outside a quoted string (RFC 9110 `quoted-string`, with `\` escapes).
/// A quote left open (a client's malformed part, to which a proxy appended its own hops) is
/// no quoted string: `s` is then cut at every `sep`, so the hops after it are not swallowed.
fn split_unquoted(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return s.split(|&b| b == sep).collect();
    }
    parts.push(&s[start..]);
    parts
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// The key of a client IP: IPv4 as is, IPv6 cut to its first `v6_prefix` bits (one allocation
/// of a /64 is one client; a host can pick any address inside it).
#[inline]
pub(crate) fn ip_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => v4,
        v6 @ IpAddr::V6(_) => mask(v6, v6_prefix),
    }
}

/// The key of a header value, or `None` when it is absent or empty.
pub(crate) fn header_key(value: Option<&HeaderValue>) -> Option<ClientKey> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| ClientKey::Header(HeaderDigest::of(v.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn key_choice_parses() {
        assert_eq!(KeyBy::parse("principal"), Ok(KeyBy::Principal));
        assert_eq!(KeyBy::parse(" IP "), Ok(KeyBy::Ip));
        assert_eq!(KeyBy::parse("global"), Ok(KeyBy::Global));
        assert_eq!(
            KeyBy::parse("header:X-Api-Key"),
            Ok(KeyBy::Header(HeaderName::from_static("x-api-key")))
        );
        assert_eq!(
            KeyBy::parse("Header: x-api-key"),
            Ok(KeyBy::Header(HeaderName::from_static("x-api-key")))
        );
        assert!(KeyBy::parse("header:bad name").is_err());
        // Headers a client changes per request or session, that describe the request or its
        // connection, or that never come on a request.
        let refused = [
            "Mcp-Session-Id",
            "x-request-id",
            "Host",
            "content-type",
            "traceparent",
            "Transfer-Encoding",
            "TE",
            "connection",
            "set-cookie",
        ]
        .map(|name| (name, "does not identify a client"));
        // Headers the client writes the start of: keyed whole, a new quota at will.
        let forwarded = ["X-Forwarded-For", "forwarded"].map(|name| (name, "key by ip"));
        for (name, why) in refused.into_iter().chain(forwarded) {
            let e = KeyBy::parse(&format!("header:{name}")).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        assert!(KeyBy::parse("header:").is_err());
        assert!(KeyBy::parse("user").is_err());
    }

    #[test]
    fn networks_parse_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.1.2.3")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(
            n.contains(ip("::ffff:10.9.9.9")),
            "IPv4-mapped IPv6 is IPv4"
        );
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("10.0.0.0/x".parse::<IpNet>().is_err());
        assert!("nope".parse::<IpNet>().is_err());
        assert!("::/129".parse::<IpNet>().is_err());
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains(ip("10.2.3.4")));
        assert_eq!(format!("{mapped}"), "10.0.0.0/8");
        assert!(
            TrustedProxies::parse_list("10.0.0.0/8, ::1 ")
                .unwrap()
                .contains(ip("::1"))
        );
        assert!(TrustedProxies::parse_list("10.0.0.0/8, ::1 ,").is_err());
        assert!(TrustedProxies::parse_list("").unwrap().is_empty());
        assert!(TrustedProxies::parse_list(" ").unwrap().is_empty());
        assert!(
            !TrustedProxies::parse_list("10.0.0.0/8")
                .unwrap()
                .trusts_everyone()
        );
        assert!(
            TrustedProxies::parse_list("::/0")
                .unwrap()
                .trusts_everyone()
        );
        assert!(TrustedProxies::parse_list("10.0.0.0/8,bad").is_err());
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let t = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let h = headers("x-forwarded-for", &["1.1.1.1"]);
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), &h, ForwardedHeader::XForwardedFor),
            ip("203.0.113.9")
        );
        // No trusted proxies at all: headers are never believed.
        assert_eq!(
            TrustedProxies::none().client_ip(ip("10.0.0.1"), &h, ForwardedHeader::XForwardedFor),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn right_most_untrusted_hop_behind_trusted_proxies() {
        let t = TrustedProxies::parse_list("10.0.0.0/8, 192.168.0.0/16").unwrap();
        // A client forged "6.6.6.6"; the edge proxy appended the real client, 198.51.100.7; an
        // inner proxy (10.0.0.2) appended the edge proxy 192.168.1.1.
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7", "192.168.1.1"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::XForwardedFor),
            ip("198.51.100.7")
        );
        // Every hop trusted: the left-most.
        let h = headers("x-forwarded-for", &["192.168.5.5, 10.1.1.1"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::XForwardedFor),
            ip("192.168.5.5")
        );
        // No header: the proxy itself.
        assert_eq!(
            t.client_ip(
                ip("10.0.0.2"),
                &HeaderMap::new(),
                ForwardedHeader::XForwardedFor
            ),
            ip("10.0.0.2")
        );
        // Garbage ends the walk at the last address believed.
        let h = headers("x-forwarded-for", &["garbage, 10.3.3.3"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::XForwardedFor),
            ip("10.3.3.3")
        );
        // Ports and brackets.
        let h = headers("x-forwarded-for", &["[2001:db8::7]:4711, 198.51.100.8:80"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::XForwardedFor),
            ip("198.51.100.8")
        );
        // The other header is not read.
        let h = headers("forwarded", &["for=198.51.100.9"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::XForwardedFor),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_header_rfc7239() {
        let t = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let h = headers(
            "forwarded",
            &[
                r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.9;by=10.0.0.1"#,
            ],
        );
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::Forwarded),
            ip("2001:db8:cafe::17")
        );
        // A comma or semicolon inside a quoted string separates nothing: the last element is
        // the one the trusted proxy appended, whatever the client put in quotes before it.
        let h = headers(
            "forwarded",
            &[r#"for="5.5.5.5";x="a,for=1.1.1.1", for=10.0.0.9;x="b;for=7.7.7.7""#],
        );
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::Forwarded),
            ip("5.5.5.5")
        );
        assert_eq!(
            super::split_unquoted(br#"a="x,\"y,z",b"#, b','),
            [&br#"a="x,\"y,z""#[..], b"b"]
        );
        // A byte that is not text in the part the client wrote does not cost the hops the
        // proxies appended to the same line.
        for (name, which, value) in [
            (
                "x-forwarded-for",
                ForwardedHeader::XForwardedFor,
                &b"\xff, 8.8.8.8"[..],
            ),
            (
                "forwarded",
                ForwardedHeader::Forwarded,
                b"for=\"\xff\", for=8.8.8.8",
            ),
            // A quote the client left open does not swallow the proxy's hops after it.
            (
                "forwarded",
                ForwardedHeader::Forwarded,
                b"for=\"x, for=8.8.8.8",
            ),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_static(name),
                HeaderValue::from_bytes(value).unwrap(),
            );
            assert_eq!(
                t.client_ip(ip("10.0.0.2"), &h, which),
                ip("8.8.8.8"),
                "{name}"
            );
        }
        let h = headers("forwarded", &["for=unknown, for=10.0.0.9"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::Forwarded),
            ip("10.0.0.9")
        );
        let h = headers("forwarded", &["proto=http"]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::Forwarded),
            ip("10.0.0.2")
        );
    }

    /// Pieces a client's forged part of a forwarding header is made of: quotes, escapes,
    /// separators, addresses and bytes that are not text.
    const FORGED: [&[u8]; 16] = [
        b"\"",
        b"\\",
        b",",
        b";",
        b"=",
        b"for=",
        b"For=",
        b" ",
        b"\t",
        b"1.2.3.4",
        b"[2001:db8::9]:1",
        b"unknown",
        b"\xff",
        b"x",
        b"\"[",
        b"]:80",
    ];

    /// How the edge proxy writes the client it saw.
    fn hop(which: ForwardedHeader, client: IpAddr, form: u8) -> String {
        let node = match (client, form % 3) {
            (IpAddr::V4(v4), 0) => v4.to_string(),
            (IpAddr::V4(v4), _) => format!("{v4}:4711"),
            (IpAddr::V6(v6), 0) if which == ForwardedHeader::XForwardedFor => v6.to_string(),
            (IpAddr::V6(v6), 1) => format!("[{v6}]:443"),
            (IpAddr::V6(v6), _) => format!("[{v6}]"),
        };
        match which {
            ForwardedHeader::XForwardedFor => node,
            // RFC 7239: anything but a bare IPv4 address (ports, brackets) is quoted.
            ForwardedHeader::Forwarded if form.is_multiple_of(3) && client.is_ipv4() => {
                format!("for={node}")
            }
            ForwardedHeader::Forwarded if form >= 3 => format!("for=\"{node}\";proto=https"),
            ForwardedHeader::Forwarded => format!("for=\"{node}\""),
        }
    }

    proptest::proptest! {
        /// Behind trusted proxies, the address the edge proxy appended is the client's, whatever
        /// the client wrote in the header before it (quotes left open, escapes, separators,
        /// addresses of its choosing, bytes that are not text), on the proxy's line or its own.
        #[test]
        fn a_client_cannot_choose_its_own_address(
            forged in proptest::collection::vec(proptest::sample::select(&FORGED[..]), 0..12),
            v4 in proptest::prelude::any::<bool>(),
            low in proptest::prelude::any::<u16>(),
            form in 0u8..6,
            inner_proxies in 0usize..3,
            own_line in proptest::prelude::any::<bool>(),
            forwarded in proptest::prelude::any::<bool>(),
        ) {
            let trusted = TrustedProxies::parse_list("10.0.0.0/8, fd00::/8").unwrap();
            let which = if forwarded {
                ForwardedHeader::Forwarded
            } else {
                ForwardedHeader::XForwardedFor
            };
            let client = if v4 {
                IpAddr::V4(Ipv4Addr::new(198, 51, (low >> 8) as u8, low as u8))
            } else {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, low, 1))
            };
            let forged = forged.concat();
            let mut lines: Vec<Vec<u8>> = Vec::new();
            let edge = hop(which, client, form).into_bytes();
            match (forged.is_empty(), own_line) {
                (true, _) => lines.push(edge),
                (false, true) => lines.extend([forged, edge]),
                (false, false) => lines.push([forged, b", ".to_vec(), edge].concat()),
            }
            for i in 0..inner_proxies {
                let proxy = match which {
                    ForwardedHeader::XForwardedFor => format!("10.0.0.{i}"),
                    ForwardedHeader::Forwarded => format!("for=\"[fd00::{i}]:80\""),
                };
                // A proxy appends to the last line or adds its own.
                if i % 2 == 0 {
                    lines.last_mut().unwrap().extend_from_slice(format!(", {proxy}").as_bytes());
                } else {
                    lines.push(proxy.into_bytes());
                }
            }
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(which.name(), HeaderValue::from_bytes(&line).unwrap());
            }
            proptest::prop_assert_eq!(
                trusted.client_ip(ip("10.0.0.200"), &headers, which),
                client,
                "{:?}",
                headers
            );
            // From a peer no one trusts, the header is never read.
            proptest::prop_assert_eq!(
                trusted.client_ip(ip("203.0.113.1"), &headers, which),
                ip("203.0.113.1")
            );
        }
    }

    #[test]
    fn long_chains_are_cut() {
        let t = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let chain = vec!["10.0.0.1"; 100].join(",");
        let h = headers("x-forwarded-for", &[&format!("1.2.3.4,{chain}")]);
        assert_eq!(
            t.client_ip(ip("10.0.0.2"), &h, ForwardedHeader::XForwardedFor),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        assert_eq!(ip_key(ip("2001:db8:1:2:aaaa::1"), 64), ip("2001:db8:1:2::"));
        assert_eq!(
            ip_key(ip("2001:db8:1:2:aaaa::1"), 64),
            ip_key(ip("2001:db8:1:2:bbbb::9"), 64)
        );
        assert_ne!(
            ip_key(ip("2001:db8:1:2::1"), 64),
            ip_key(ip("2001:db8:1:3::1"), 64)
        );
        assert_eq!(ip_key(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(ip_key(ip("::ffff:1.2.3.4"), 64), ip("1.2.3.4"));
        assert_eq!(ip_key(ip("1.2.3.4"), 0), ip("1.2.3.4"));
    }

    #[test]
    fn header_digests_hide_the_value() {
        let k = header_key(Some(&HeaderValue::from_static("sk-live-secret"))).unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
        assert_eq!(
            k,
            header_key(Some(&HeaderValue::from_static("sk-live-secret"))).unwrap()
        );
        assert_ne!(
            k,
            header_key(Some(&HeaderValue::from_static("sk-live-other"))).unwrap()
        );
        assert_eq!(header_key(Some(&HeaderValue::from_static(""))), None);
        assert_eq!(header_key(None), None);
    }
}
