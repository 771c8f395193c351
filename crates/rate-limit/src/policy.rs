//! Quotas ([`Limit`]), what they apply to ([`Target`]), the validated list of [`Policy`]s, and
//! the `RateLimit-Policy` / `RateLimit` header values (draft-ietf-httpapi-ratelimit-headers-09).
//!
//! Pure logic, no runtime.

use std::fmt::{self, Write as _};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;
use tower_armor_mcp::{KnownTools, Method};

use crate::config::ConfigError;
use crate::store::{Decision, Outcome};

/// A GCRA quota: `count` requests per `period`, with bursts of up to `burst` requests (by
/// default `count`).
///
/// One request is replenished every `period / count`; a client that has been quiet long enough
/// may send `burst` requests at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    count: u32,
    period: Duration,
    burst: Option<u32>,
}

impl Limit {
    /// `count` requests per second.
    pub const fn per_second(count: u32) -> Limit {
        Limit::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub const fn per_minute(count: u32) -> Limit {
        Limit::new(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    pub const fn per_hour(count: u32) -> Limit {
        Limit::new(count, Duration::from_secs(3600))
    }

    /// `count` requests per `period`. Validated when the layer is built: both must be non-zero.
    pub const fn new(count: u32, period: Duration) -> Limit {
        Limit {
            count,
            period,
            burst: None,
        }
    }

    /// Allows bursts of up to `burst` requests (at least 1; validated when the layer is built).
    pub const fn burst(mut self, burst: u32) -> Limit {
        self.burst = Some(burst);
        self
    }

    /// Requests per period.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The largest burst (`count` unless set).
    pub fn burst_size(&self) -> u32 {
        self.burst.unwrap_or(self.count)
    }

    /// How often one request is replenished: `period / count`.
    pub fn replenish_interval(&self) -> Duration {
        self.period / self.count.max(1)
    }

    /// The governor quota, or why the limit is invalid.
    pub(crate) fn quota(&self, setting: &str) -> Result<Quota, ConfigError> {
        let invalid = |why: &str| ConfigError::new(setting, format!("{self}: {why}"));
        if self.count == 0 {
            return Err(invalid("the count must be at least 1"));
        }
        let burst = NonZeroU32::new(self.burst_size())
            .ok_or_else(|| invalid("the burst must be at least 1"))?;
        // governor keeps times in u64 nanoseconds (≈ 584 years) and adds, without a check, the
        // time since the limiter started to a full burst's replenish time and one more
        // interval: a quota that only fits by itself overflows after enough uptime (a panic in
        // debug builds, a limit that resets itself in release ones). Half the range for the
        // quota leaves the other half, ≈ 292 years, for uptime.
        let refill = self
            .replenish_interval()
            .as_nanos()
            .checked_mul(u128::from(burst.get()) + 1);
        if refill.is_none_or(|n| n > u128::from(u64::MAX / 2)) {
            return Err(invalid(
                "a full burst would take over 292 years to replenish; lower the burst or the period",
            ));
        }
        // governor counts whole nanoseconds: an interval under a microsecond that is not a whole
        // number of them would be enforced up to 7 % too fast (4,294,967,295 per minute is one
        // request every 13.97 ns, enforced as every 13).
        let (period, count) = (self.period.as_nanos(), u128::from(self.count));
        if period < count * 1_000 && period % count != 0 && period >= count {
            return Err(invalid(
                "too fast to enforce exactly (one request every fraction of a nanosecond more \
                 than a whole number of them); use at most 1,000,000 per second, or a count that \
                 divides the period in nanoseconds",
            ));
        }
        Quota::with_period(self.replenish_interval())
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| invalid("the period is too short for the count"))
    }

    /// The `w` of `RateLimit-Policy`: how long a full burst takes to replenish, in whole seconds
    /// (rounded up, at least 1). With the default burst that is the period itself.
    pub(crate) fn window_secs(&self) -> u64 {
        let nanos = self.replenish_interval().as_nanos() * u128::from(self.burst_size());
        let secs = nanos.div_ceil(1_000_000_000).max(1);
        u64::try_from(secs).unwrap_or(u64::MAX)
    }

    /// The `q` of `RateLimit-Policy`: how many requests the quota allows over
    /// [`window_secs`](Limit::window_secs). The burst when that window is exact; more when the
    /// window was rounded up (600 per minute with a burst of 1 is `q=10;w=1`, not `q=1;w=1`,
    /// which would state a tenth of the real rate).
    pub(crate) fn window_quota(&self) -> u64 {
        let window = u128::from(self.window_secs()) * 1_000_000_000;
        let per = self.replenish_interval().as_nanos().max(1);
        let q = (window / per).max(u128::from(self.burst_size()));
        u64::try_from(q).unwrap_or(u64::MAX)
    }

    /// How long until a bucket with `remaining` requests left is full again: at most one
    /// replenish interval more than the exact value (GCRA state is not exposed by governor).
    /// The store computes the same with the interval worked out once.
    #[cfg(test)]
    pub(crate) fn time_to_full(&self, remaining: u32) -> Duration {
        let missing = self.burst_size().saturating_sub(remaining);
        self.replenish_interval().saturating_mul(missing)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {:?}", self.count, self.period)?;
        if let Some(b) = self.burst {
            write!(f, " (burst {b})")?;
        }
        Ok(())
    }
}

/// What a policy applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Every request that is not exempt: the base quota.
    All,
    /// Requests of one JSON-RPC method (as read by the inspector).
    Method(Method),
    /// `tools/call` of one named tool.
    Tool(Box<str>),
    /// `tools/call` of every tool, one quota per tool: tools the server has (its
    /// [`KnownTools`]) get their own, every other name shares
    /// the `unknown` one.
    EachTool,
}

/// The index of a policy in the layer's list; the base policy is always 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId(u16);

impl PolicyId {
    /// The base policy.
    pub const BASE: PolicyId = PolicyId(0);

    /// The index in [`Policies::iter`] order.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub(crate) fn raw(self) -> u16 {
        self.0
    }
}

/// One quota policy: a name (as shown in the headers), a limit and a target.
#[derive(Clone, Debug)]
pub struct Policy {
    id: PolicyId,
    name: Box<str>,
    limit: Limit,
    target: Target,
    quota: Quota,
    /// `"name";q=..;w=..`
    item: Box<str>,
    /// `"name";r=`, the start of its `RateLimit` item.
    limit_prefix: Box<str>,
}

impl Policy {
    /// The policy's index.
    pub fn id(&self) -> PolicyId {
        self.id
    }

    /// The name in `RateLimit-Policy` / `RateLimit`: `default`, `method:<method>`,
    /// `tool:<name>` or `each-tool`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// What the quota applies to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The governor quota of [`Policy::limit`].
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// The validated policies of one layer: the base policy first, then the per-method and per-tool
/// ones in the order they were added.
#[derive(Clone, Debug)]
pub struct Policies {
    items: Box<[Policy]>,
}

impl Policies {
    /// Validates the base limit and the rules.
    pub(crate) fn new(base: Limit, rules: &[(Target, Limit)]) -> Result<Policies, ConfigError> {
        let mut items = Vec::with_capacity(rules.len() + 1);
        let all = std::iter::once((Target::All, base)).chain(rules.iter().cloned());
        for (i, (target, limit)) in all.enumerate() {
            let id = u16::try_from(i)
                .map(PolicyId)
                .map_err(|_| ConfigError::new("rules", "more than 65535 rules"))?;
            let name = match &target {
                Target::All => String::from("default"),
                Target::Method(m) => format!("method:{}", m.as_str()),
                Target::Tool(t) => format!("tool:{t}"),
                Target::EachTool => String::from("each-tool"),
            };
            let setting = if i == 0 { "limit" } else { name.as_str() };
            let quota = limit.quota(setting)?;
            if !is_sf_string(&name) {
                return Err(ConfigError::new(
                    setting,
                    "names must be printable ASCII (they are sent in the RateLimit headers)",
                ));
            }
            if items.iter().any(|p: &Policy| p.target == target) {
                return Err(ConfigError::new(setting, "configured twice"));
            }
            let mut item = String::new();
            write_sf_string(&mut item, &name);
            let mut limit_prefix = item.clone();
            limit_prefix.push_str(";r=");
            let _ = write!(
                item,
                ";q={};w={}",
                limit.window_quota(),
                limit.window_secs()
            );
            items.push(Policy {
                id,
                name: name.into(),
                limit,
                target,
                quota,
                item: item.into(),
                limit_prefix: limit_prefix.into(),
            });
        }
        Ok(Policies {
            items: items.into(),
        })
    }

    /// The policies, base first.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Policy> {
        self.items.iter()
    }

    /// The policy with this id.
    pub fn get(&self, id: PolicyId) -> Option<&Policy> {
        self.items.get(id.index())
    }

    /// The base policy.
    pub fn base(&self) -> &Policy {
        // `new` always puts the base first.
        &self.items[0]
    }

    /// The base policy's `RateLimit-Policy` item.
    pub(crate) fn base_item(&self) -> &str {
        &self.base().item
    }

    /// How many policies there are.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Always false: the base policy is always there.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The `RateLimit-Policy` value for the policies a decision covers.
    pub(crate) fn policy_header(&self, decision: &Decision) -> String {
        let mut out = String::new();
        for (i, o) in decision.outcomes().iter().enumerate() {
            if let Some(p) = self.get(o.policy()) {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&p.item);
            }
        }
        out
    }

    /// The `RateLimit` value: `"name";r=<remaining>;t=<seconds until full>` per policy; a denied
    /// policy shows `r=0` and `t` equal to `Retry-After`.
    #[cfg(test)]
    pub(crate) fn ratelimit_header(&self, decision: &Decision) -> String {
        String::from_utf8(self.ratelimit_value(decision)).unwrap_or_default()
    }

    /// [`Policies::ratelimit_header`] as bytes (ASCII), ready for a header value.
    pub(crate) fn ratelimit_value(&self, decision: &Decision) -> Vec<u8> {
        let outcomes = decision.outcomes();
        let mut out = Vec::with_capacity(outcomes.iter().map(|o| self.item_len(o)).sum());
        for (i, o) in outcomes.iter().enumerate() {
            if let Some(p) = self.get(o.policy()) {
                if i > 0 {
                    out.extend_from_slice(b", ");
                }
                write_service_limit(&mut out, p, o);
            }
        }
        out
    }

    /// The most bytes `o`'s `RateLimit` item takes.
    fn item_len(&self, o: &Outcome) -> usize {
        // ", " + prefix + u32 + ";t=" + u64
        self.get(o.policy())
            .map_or(0, |p| 2 + p.limit_prefix.len() + 10 + 3 + 20)
    }
}

fn write_service_limit(out: &mut Vec<u8>, p: &Policy, o: &Outcome) {
    let (r, t) = match o.retry_after() {
        Some(wait) => (0, tower_armor_mcp::error::retry_after_secs(wait)),
        None => (o.remaining(), whole_secs_up(o.reset())),
    };
    // `"name";r=<r>;t=<t>`, the digits written without `fmt`.
    out.extend_from_slice(p.limit_prefix.as_bytes());
    push_decimal(out, u64::from(r));
    out.extend_from_slice(b";t=");
    push_decimal(out, t);
}

/// Appends `n` in decimal, two digits at a time.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        start -= 1;
        digits[start] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[start..]);
}

/// Rounds up to whole seconds (0 stays 0: a full bucket resets now).
fn whole_secs_up(d: Duration) -> u64 {
    // Saturating: a key store of the user's may answer with any duration.
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Why `name` cannot have a per-tool quota, if it cannot: it must fit the tool-name bound and
/// be printable ASCII (it is sent in the `RateLimit` headers).
pub(crate) fn tool_name_problem(name: &str) -> Option<String> {
    (name.is_empty() || name.len() > KnownTools::MAX_NAME_LEN || !is_sf_string(name)).then(|| {
        format!(
            "tool names are 1 to {} printable ASCII characters (they are sent in the RateLimit \
             headers), got {name:?}",
            KnownTools::MAX_NAME_LEN
        )
    })
}

/// Whether `s` can be an sf-string (RFC 8941 §3.3.3): printable ASCII.
fn is_sf_string(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Writes `s` as an sf-string: quoted, with `"` and `\` escaped.
fn write_sf_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_up_and_saturate() {
        assert_eq!(whole_secs_up(Duration::ZERO), 0);
        assert_eq!(whole_secs_up(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs_up(Duration::from_secs(2)), 2);
        // A user's key store may answer with any duration.
        assert_eq!(whole_secs_up(Duration::MAX), u64::MAX);
    }

    #[test]
    fn limits_validate_and_convert() {
        let l = Limit::per_minute(60);
        assert_eq!(l.replenish_interval(), Duration::from_secs(1));
        assert_eq!(l.burst_size(), 60);
        assert_eq!(l.window_secs(), 60);
        let q = l.quota("x").unwrap();
        assert_eq!(q.burst_size().get(), 60);
        assert_eq!(q.replenish_interval(), Duration::from_secs(1));

        let l = Limit::per_minute(60).burst(10);
        assert_eq!(l.window_secs(), 10);
        assert_eq!(l.quota("x").unwrap().burst_size().get(), 10);
        // 7 per minute, burst 1: one every 8.57 s, window rounded up to 9 s.
        assert_eq!(Limit::per_minute(7).burst(1).window_secs(), 9);
        assert_eq!(Limit::per_minute(7).burst(1).window_quota(), 1);
        // A window shorter than a second: the quota states the rate over the rounded window.
        let fast = Limit::per_minute(600).burst(1);
        assert_eq!((fast.window_quota(), fast.window_secs()), (10, 1));
        assert_eq!(Limit::per_minute(60).burst(10).window_quota(), 10);
        assert_eq!(Limit::per_minute(6).burst(3).window_quota(), 3);

        let e = Limit::per_minute(0)
            .quota("MCP_RATE_LIMIT_PER_MINUTE")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("MCP_RATE_LIMIT_PER_MINUTE: "),
            "{e}"
        );
        assert!(Limit::per_minute(5).burst(0).quota("x").is_err());
        assert!(Limit::new(5, Duration::ZERO).quota("x").is_err());
        assert!(
            Limit::new(u32::MAX, Duration::from_nanos(1))
                .quota("x")
                .is_err()
        );
        // Under a microsecond per request, the interval must be whole nanoseconds: governor
        // would enforce 13 ns for 13.97 ns, 7 % too fast.
        let e = Limit::per_minute(u32::MAX).quota("x").unwrap_err();
        assert!(e.to_string().contains("too fast to enforce exactly"), "{e}");
        assert!(
            Limit::per_minute(60_000_000).quota("x").is_ok(),
            "1 µs exactly"
        );
        assert!(
            Limit::per_minute(59_999_999).quota("x").is_ok(),
            "over 1 µs: 0.0001 % off at most"
        );
        assert!(
            Limit::new(1_000_000_000, Duration::from_secs(1))
                .quota("x")
                .is_ok(),
            "1 ns exactly"
        );
        // Past u64 nanoseconds governor's arithmetic would overflow: refused, never a panic.
        let e = Limit::per_minute(1)
            .burst(1_000_000_000)
            .quota("x")
            .unwrap_err();
        assert!(e.to_string().contains("292 years"), "{e}");
        assert!(Limit::new(1, Duration::MAX).quota("x").is_err());
        assert!(
            Limit::new(1, Duration::from_secs(86_400 * 365 * 100))
                .quota("x")
                .is_ok()
        );
        assert!(
            Limit::new(1, Duration::from_secs(86_400 * 365 * 200))
                .quota("x")
                .is_err(),
            "a burst of one still needs room for two intervals and the uptime"
        );
    }

    #[test]
    fn time_to_full_is_an_upper_bound_within_one_interval() {
        let l = Limit::per_minute(60).burst(5);
        assert_eq!(l.time_to_full(5), Duration::ZERO);
        assert_eq!(l.time_to_full(4), Duration::from_secs(1));
        assert_eq!(l.time_to_full(0), Duration::from_secs(5));
    }

    #[test]
    fn policies_are_named_validated_and_unique() {
        let rules = vec![
            (Target::Tool("expensive".into()), Limit::per_minute(10)),
            (Target::Method(Method::ToolsList), Limit::per_second(2)),
            (Target::EachTool, Limit::per_minute(30)),
        ];
        let p = Policies::new(Limit::per_minute(60), &rules).unwrap();
        let names: Vec<_> = p.iter().map(Policy::name).collect();
        assert_eq!(
            names,
            [
                "default",
                "tool:expensive",
                "method:tools/list",
                "each-tool"
            ]
        );
        assert_eq!(p.base().id(), PolicyId::BASE);
        assert_eq!(&*p.items[1].item, r#""tool:expensive";q=10;w=60"#);

        let dup = vec![
            (Target::Tool("a".into()), Limit::per_minute(1)),
            (Target::Tool("a".into()), Limit::per_minute(2)),
        ];
        let e = Policies::new(Limit::per_minute(60), &dup).unwrap_err();
        assert!(e.to_string().contains("tool:a"), "{e}");
        let bad = vec![(Target::Tool("é".into()), Limit::per_minute(1))];
        assert!(Policies::new(Limit::per_minute(60), &bad).is_err());
        let zero = vec![(Target::Tool("z".into()), Limit::per_minute(0))];
        let e = Policies::new(Limit::per_minute(60), &zero).unwrap_err();
        assert_eq!(e.setting(), "tool:z");
    }

    #[test]
    fn decimals() {
        for n in [
            0,
            7,
            10,
            99,
            100,
            101,
            999,
            1000,
            65_536,
            999_999_999,
            1_000_000_000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn sf_strings_escape() {
        let mut s = String::new();
        write_sf_string(&mut s, r#"a"b\c"#);
        assert_eq!(s, r#""a\"b\\c""#);
        assert!(is_sf_string("tool:x-y_z.1"));
        assert!(!is_sf_string("tab\t"));
    }

    #[test]
    fn header_values() {
        let rules = vec![(Target::Tool("expensive".into()), Limit::per_minute(10))];
        let p = Policies::new(Limit::per_minute(60), &rules).unwrap();
        let mut d = Decision::new();
        d.push(Outcome::allowed(
            PolicyId(0),
            59,
            Duration::from_millis(1500),
        ));
        d.push(Outcome::denied(PolicyId(1), Duration::from_millis(5001)));
        assert_eq!(
            p.policy_header(&d),
            r#""default";q=60;w=60, "tool:expensive";q=10;w=60"#
        );
        assert_eq!(
            p.ratelimit_header(&d),
            r#""default";r=59;t=2, "tool:expensive";r=0;t=6"#
        );
        let mut d = Decision::new();
        d.push(Outcome::allowed(PolicyId(0), 60, Duration::ZERO));
        assert_eq!(p.ratelimit_header(&d), r#""default";r=60;t=0"#);
    }
}
