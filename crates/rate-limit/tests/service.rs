//! RateLimitLayer through tower-test mocks, on paused time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{
    CorrelationId, KnownTools, McpBody, McpRequest, MessageKind, Method, Principal, ResponseBody,
    StreamRole,
};
use tower_armor_rate_limit::store::{Checks, Decision, StoreError};
use tower_armor_rate_limit::{
    Builder, ForwardedHeader, KeyBy, KeyStore, Limit, RateLimit, RateLimitLayer, TrustedProxies,
};
use tower_test::mock;

type Mock = mock::Mock<Request<McpBody>, Response<String>>;
type Answer = Response<ResponseBody<String>>;

/// The layer over a mock inner service that answers every request `200 inner`; the counter
/// tells how many requests reached it.
fn setup<St: KeyStore>(layer: &RateLimitLayer<St>) -> (RateLimit<Mock, St>, Arc<AtomicUsize>) {
    let (svc, mut handle) = mock::pair::<Request<McpBody>, Response<String>>();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some((_req, send)) = handle.next_request().await {
            counter.fetch_add(1, Ordering::SeqCst);
            send.send_response(Response::new("inner".to_string()));
        }
    });
    (layer.layer(svc), seen)
}

async fn send<St: KeyStore>(svc: &RateLimit<Mock, St>, req: Request<McpBody>) -> Answer {
    svc.clone().oneshot(req).await.unwrap()
}

fn peer(ip: &str) -> ConnectInfo<SocketAddr> {
    ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40_000))
}

/// A POST from `ip` (with `ConnectInfo`), optionally as a principal.
fn post(ip: &str, principal: Option<&str>) -> Request<McpBody> {
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut().insert(peer(ip));
    if let Some(p) = principal {
        req.extensions_mut().insert(Principal::new(p));
    }
    req
}

fn call_tool(ip: &str, principal: &str, tool: &str, id: i64) -> Request<McpBody> {
    let mut req = post(ip, Some(principal));
    req.extensions_mut().insert(
        McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsCall),
            Some(id.into()),
        )
        .with_name(tool),
    );
    req
}

fn header<'a>(resp: &'a Answer, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn body_json(resp: Answer) -> serde_json::Value {
    let (parts, body) = resp.into_parts();
    assert_eq!(parts.headers["content-type"], "application/json");
    let b = body.collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap()
}

fn layer(b: Builder) -> RateLimitLayer {
    b.build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn quota_and_burst() {
    let l = layer(Builder::new(Limit::per_minute(60).burst(3)));
    let (svc, seen) = setup(&l);
    for _ in 0..3 {
        assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 200);
    }
    let resp = send(&svc, post("1.1.1.1", Some("a"))).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "a refused request never reaches the service"
    );
    // One request per second comes back; a burst needs the whole bucket.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 200);
    assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 429);
    tokio::time::advance(Duration::from_secs(3)).await;
    for _ in 0..3 {
        assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 200);
    }
    assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_whole_seconds_rounded_up() {
    // One request every 1.5 s, no burst.
    let l = layer(Builder::new(Limit::per_minute(40).burst(1)));
    let (svc, _) = setup(&l);
    assert_eq!(send(&svc, post("1.1.1.1", None)).await.status(), 200);
    let resp = send(&svc, post("1.1.1.1", None)).await;
    assert_eq!(
        header(&resp, "retry-after"),
        Some("2"),
        "1.5 s rounds up to 2"
    );
    tokio::time::advance(Duration::from_millis(1000)).await;
    let resp = send(&svc, post("1.1.1.1", None)).await;
    assert_eq!(
        header(&resp, "retry-after"),
        Some("1"),
        "0.5 s rounds up to 1"
    );
    tokio::time::advance(Duration::from_millis(499)).await;
    let resp = send(&svc, post("1.1.1.1", None)).await;
    assert_eq!(
        header(&resp, "retry-after"),
        Some("1"),
        "1 ms is still at least 1 s"
    );
    assert_eq!(header(&resp, "ratelimit"), Some(r#""default";r=0;t=1"#));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(send(&svc, post("1.1.1.1", None)).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn headers_and_json_rpc_body() {
    let l = layer(Builder::new(Limit::per_minute(60).burst(2)));
    let (svc, _) = setup(&l);
    let resp = send(&svc, post("1.1.1.1", Some("a"))).await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.body().is_local());
    assert_eq!(
        header(&resp, "ratelimit-policy"),
        Some(r#""default";q=2;w=2"#)
    );
    assert_eq!(header(&resp, "ratelimit"), Some(r#""default";r=1;t=1"#));
    let resp = send(&svc, post("1.1.1.1", Some("a"))).await;
    assert_eq!(header(&resp, "ratelimit"), Some(r#""default";r=0;t=2"#));

    let mut req = call_tool("1.1.1.1", "a", "add", 42);
    req.extensions_mut()
        .insert(CorrelationId::parse(b"corr-1").unwrap());
    let resp = send(&svc, req).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "retry-after"), Some("1"));
    assert_eq!(
        header(&resp, "ratelimit-policy"),
        Some(r#""default";q=2;w=2"#)
    );
    assert_eq!(header(&resp, "ratelimit"), Some(r#""default";r=0;t=1"#));
    let v = body_json(resp).await;
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 42);
    assert_eq!(v["error"]["code"], -31429);
    assert_eq!(v["error"]["data"]["correlationId"], "corr-1");

    // Without the inspector's facts the id is null.
    let v = body_json(send(&svc, post("1.1.1.1", Some("a"))).await).await;
    assert_eq!(v["id"], serde_json::Value::Null);
}

#[tokio::test(start_paused = true)]
async fn headers_on_success_can_be_turned_off() {
    let l = layer(Builder::new(Limit::per_minute(1)).headers_on_success(false));
    let (svc, _) = setup(&l);
    let resp = send(&svc, post("1.1.1.1", None)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("ratelimit").is_none());
    assert!(resp.headers().get("ratelimit-policy").is_none());
    let resp = send(&svc, post("1.1.1.1", None)).await;
    assert_eq!(resp.status(), 429);
    assert!(
        resp.headers().get("ratelimit").is_some(),
        "429s always carry them"
    );
}

#[tokio::test(start_paused = true)]
async fn principal_is_the_default_key_and_ip_the_fallback() {
    let l = layer(Builder::new(Limit::per_minute(1)));
    let (svc, _) = setup(&l);
    // Same IP, different principals: separate quotas.
    assert_eq!(
        send(&svc, post("1.1.1.1", Some("alice"))).await.status(),
        200
    );
    assert_eq!(
        send(&svc, post("1.1.1.1", Some("alice"))).await.status(),
        429
    );
    assert_eq!(send(&svc, post("1.1.1.1", Some("bob"))).await.status(), 200);
    // Same principal from another IP: same quota.
    assert_eq!(
        send(&svc, post("2.2.2.2", Some("alice"))).await.status(),
        429
    );
    // No principal: the peer IP.
    assert_eq!(send(&svc, post("1.1.1.1", None)).await.status(), 200);
    assert_eq!(send(&svc, post("1.1.1.1", None)).await.status(), 429);
    assert_eq!(send(&svc, post("3.3.3.3", None)).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn header_keys() {
    let l = layer(
        Builder::new(Limit::per_minute(1))
            .key_by(KeyBy::Header(http::HeaderName::from_static("x-api-key"))),
    );
    let (svc, _) = setup(&l);
    let with_key = |ip: &str, key: &'static str| {
        let mut r = post(ip, Some("ignored"));
        r.headers_mut()
            .insert("x-api-key", HeaderValue::from_static(key));
        r
    };
    assert_eq!(send(&svc, with_key("1.1.1.1", "k1")).await.status(), 200);
    // The same key from elsewhere shares the quota; another key does not.
    assert_eq!(send(&svc, with_key("2.2.2.2", "k1")).await.status(), 429);
    assert_eq!(send(&svc, with_key("1.1.1.1", "k2")).await.status(), 200);
    // No header: the peer IP (the principal is not the key here).
    assert_eq!(send(&svc, post("1.1.1.1", Some("x"))).await.status(), 200);
    assert_eq!(send(&svc, post("1.1.1.1", Some("y"))).await.status(), 429);
}

#[tokio::test(start_paused = true)]
async fn ip_keys_behind_trusted_proxies() {
    let l = layer(
        Builder::new(Limit::per_minute(1))
            .key_by(KeyBy::Ip)
            .trusted_proxies(TrustedProxies::parse_list("10.0.0.0/8").unwrap()),
    );
    let (svc, _) = setup(&l);
    let via = |peer_ip: &str, xff: &'static str| {
        let mut r = post(peer_ip, Some("ignored"));
        r.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_static(xff));
        r
    };
    // Through the trusted proxy, each client has its own quota: the right-most untrusted hop.
    assert_eq!(
        send(&svc, via("10.0.0.5", "198.51.100.1")).await.status(),
        200
    );
    assert_eq!(
        send(&svc, via("10.0.0.5", "198.51.100.2")).await.status(),
        200
    );
    assert_eq!(
        send(&svc, via("10.0.0.6", "6.6.6.6, 198.51.100.1, 10.0.0.9"))
            .await
            .status(),
        429
    );
    // A forged X-Forwarded-For from an untrusted peer is ignored: the peer is the key.
    assert_eq!(
        send(&svc, via("203.0.113.7", "198.51.100.50"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&svc, via("203.0.113.7", "198.51.100.51"))
            .await
            .status(),
        429
    );
    assert_eq!(
        send(&svc, via("203.0.113.7", "198.51.100.52"))
            .await
            .status(),
        429
    );
    // And it cannot borrow another client's quota either: 198.51.100.50 itself is still fresh.
    assert_eq!(
        send(&svc, via("10.0.0.5", "198.51.100.50")).await.status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn forwarded_header_when_configured() {
    let l = layer(
        Builder::new(Limit::per_minute(1))
            .key_by(KeyBy::Ip)
            .trusted_proxies(TrustedProxies::parse_list("10.0.0.0/8").unwrap())
            .forwarded_header(ForwardedHeader::Forwarded),
    );
    let (svc, _) = setup(&l);
    let via = |fwd: &'static str| {
        let mut r = post("10.0.0.5", None);
        r.headers_mut()
            .insert("forwarded", HeaderValue::from_static(fwd));
        r
    };
    assert_eq!(send(&svc, via("for=198.51.100.1")).await.status(), 200);
    assert_eq!(
        send(&svc, via("for=198.51.100.2;proto=https"))
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&svc, via(r#"for="198.51.100.1:999""#)).await.status(),
        429
    );
}

#[tokio::test(start_paused = true)]
async fn ipv6_clients_share_their_prefix() {
    let l = layer(Builder::new(Limit::per_minute(1)).key_by(KeyBy::Ip));
    let (svc, _) = setup(&l);
    assert_eq!(
        send(&svc, post("2001:db8:1:2::1", None)).await.status(),
        200
    );
    assert_eq!(
        send(&svc, post("2001:db8:1:2:ffff::9", None))
            .await
            .status(),
        429
    );
    assert_eq!(
        send(&svc, post("2001:db8:1:3::1", None)).await.status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn missing_connect_info_is_a_clear_500() {
    let l = layer(Builder::new(Limit::per_minute(5)).key_by(KeyBy::Ip));
    let (svc, seen) = setup(&l);
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut().insert(McpRequest::new(
        MessageKind::Request,
        Some(Method::ToolsList),
        Some(7.into()),
    ));
    req.extensions_mut()
        .insert(CorrelationId::parse(b"corr-500").unwrap());
    let resp = send(&svc, req).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let v = body_json(resp).await;
    assert_eq!(
        v["error"]["code"],
        tower_armor_rate_limit::CODE_MISCONFIGURED
    );
    assert_eq!(v["id"], 7);
    assert_eq!(v["error"]["data"]["correlationId"], "corr-500");
    assert_eq!(seen.load(Ordering::SeqCst), 0);

    // Principal keying needs no peer when a principal is present, but falls back to it.
    let l = layer(Builder::new(Limit::per_minute(5)));
    let (svc, _) = setup(&l);
    let mut req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    req.extensions_mut().insert(Principal::new("a"));
    assert_eq!(send(&svc, req).await.status(), 200);
    let req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    assert_eq!(send(&svc, req).await.status(), 500);

    // Global keying never needs it.
    let l = layer(Builder::new(Limit::per_minute(1)).key_by(KeyBy::Global));
    let (svc, _) = setup(&l);
    let req = Request::post("/mcp").body(McpBody::empty()).unwrap();
    assert_eq!(send(&svc, req).await.status(), 200);
    let resp = send(&svc, post("9.9.9.9", Some("z"))).await;
    assert_eq!(resp.status(), 429, "one quota for everyone");
}

#[tokio::test(start_paused = true)]
async fn per_tool_quotas_key_only_known_tools() {
    let known = KnownTools::from_names(["add", "expensive"]);
    let l = layer(
        Builder::new(Limit::per_minute(100))
            .tool("expensive", Limit::per_minute(60).burst(1))
            .each_tool(Limit::per_minute(60).burst(2))
            .known_tools(known.clone()),
    );
    let (svc, _) = setup(&l);
    // Unknown names share one `unknown` quota (burst 2), whatever the client calls them.
    assert_eq!(
        send(&svc, call_tool("1.1.1.1", "a", "made-up-1", 1))
            .await
            .status(),
        200
    );
    assert_eq!(
        send(&svc, call_tool("1.1.1.1", "a", "made-up-2", 2))
            .await
            .status(),
        200
    );
    let resp = send(&svc, call_tool("1.1.1.1", "a", "made-up-3", 3)).await;
    assert_eq!(resp.status(), 429);
    // Refused by its narrowest quota: the base quota was not spent.
    assert_eq!(
        header(&resp, "ratelimit-policy"),
        Some(r#""each-tool";q=2;w=2"#)
    );
    // A known tool has its own.
    assert_eq!(
        send(&svc, call_tool("1.1.1.1", "a", "add", 4))
            .await
            .status(),
        200
    );
    // The named tool's quota applies on top of its per-tool one. Four requests passed so far
    // (the refused one spent no base quota).
    let resp = send(&svc, call_tool("1.1.1.1", "a", "expensive", 5)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "ratelimit"),
        Some(r#""tool:expensive";r=0;t=1, "each-tool";r=1;t=1, "default";r=96;t=3"#)
    );
    let resp = send(&svc, call_tool("1.1.1.1", "a", "expensive", 6)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        header(&resp, "ratelimit"),
        Some(r#""tool:expensive";r=0;t=1"#)
    );
    // A client hammering a tool over its quota keeps its base quota for everything else.
    for id in 100..150 {
        let resp = send(&svc, call_tool("1.1.1.1", "a", "expensive", id)).await;
        assert_eq!(resp.status(), 429);
    }
    let resp = send(&svc, call_tool("1.1.1.1", "a", "add", 150)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "ratelimit"),
        Some(r#""each-tool";r=0;t=2, "default";r=95;t=3"#)
    );
    // Quotas are per key: another principal is unaffected.
    assert_eq!(
        send(&svc, call_tool("1.1.1.1", "b", "expensive", 7))
            .await
            .status(),
        200
    );
    // A tool learned later gets its own key from then on.
    known.learn(["late"]);
    assert_eq!(
        send(&svc, call_tool("1.1.1.1", "a", "late", 8))
            .await
            .status(),
        200
    );
    // Only tool calls meet tool quotas.
    let mut list = post("1.1.1.1", Some("a"));
    list.extensions_mut().insert(McpRequest::new(
        MessageKind::Request,
        Some(Method::ToolsList),
        Some(9.into()),
    ));
    assert_eq!(send(&svc, list).await.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn per_method_quota() {
    let l =
        layer(Builder::new(Limit::per_minute(100)).method(Method::ToolsList, Limit::per_minute(1)));
    let (svc, _) = setup(&l);
    let list = || {
        let mut r = post("1.1.1.1", Some("a"));
        r.extensions_mut().insert(McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsList),
            Some(1.into()),
        ));
        r
    };
    assert_eq!(send(&svc, list()).await.status(), 200);
    let resp = send(&svc, list()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), Some("60"));
    assert_eq!(
        send(&svc, call_tool("1.1.1.1", "a", "add", 2))
            .await
            .status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn opening_a_long_lived_stream_counts() {
    let l = layer(Builder::new(Limit::per_minute(1)));
    let (svc, seen) = setup(&l);
    // The inspector in front, as in the documented order: it marks listen streams.
    let svc = McpInspectLayer::new().layer(svc);
    let send = |req: Request<String>| svc.clone().oneshot(req);
    let from = |who: &str, req: http::request::Builder, body: &str| {
        let mut req = req.body(body.to_string()).unwrap();
        req.extensions_mut().insert(Principal::new(who));
        req
    };
    let post = |who: &str, body: &str| {
        from(
            who,
            Request::post("/mcp").header("content-type", "application/json"),
            body,
        )
    };
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;

    // A 2025-11-25 GET listen stream.
    let get = from(
        "a",
        Request::get("/mcp").header("accept", "text/event-stream"),
        "",
    );
    assert_eq!(send(get).await.unwrap().status(), 200);
    assert_eq!(send(post("a", ping)).await.unwrap().status(), 429);

    // A 2026-07-28 subscriptions/listen POST.
    let listen = post(
        "b",
        r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{}}}"#,
    );
    assert_eq!(send(listen).await.unwrap().status(), 200);
    assert_eq!(send(post("b", ping)).await.unwrap().status(), 429);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn health_checks_are_exempt() {
    let l = layer(Builder::new(Limit::per_minute(1)));
    let (svc, seen) = setup(&l);
    for path in ["/healthz", "/readyz", "/healthz", "/readyz"] {
        // No ConnectInfo, no principal: exempt requests are not even keyed.
        let resp = send(&svc, Request::get(path).body(McpBody::empty()).unwrap()).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("ratelimit").is_none());
    }
    assert_eq!(seen.load(Ordering::SeqCst), 4);
    // Not health checks: an MCP message on a health path (what `POST /mcp/healthz` looks like
    // behind `nest_service("/mcp", …)`), or a session's stream. Keyed and counted.
    let resp = send(
        &svc,
        Request::post("/healthz").body(McpBody::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        resp.status(),
        500,
        "counted: keyed on a peer it does not have"
    );
    let resp = send(
        &svc,
        Request::get("/healthz")
            .header("mcp-session-id", "s1")
            .body(McpBody::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(seen.load(Ordering::SeqCst), 4);
    // What a predicate may log of its view: header names, not values (an API key).
    let shown = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let l = layer(Builder::new(Limit::per_minute(1)).exempt_when({
        let shown = std::sync::Arc::clone(&shown);
        move |h| {
            *shown.lock().unwrap() = format!("{h:?}");
            h.headers().contains_key("x-internal")
        }
    }));
    let (svc, _) = setup(&l);
    let internal = || {
        Request::post("/mcp")
            .header("x-internal", "1")
            .body(McpBody::empty())
            .unwrap()
    };
    assert_eq!(send(&svc, internal()).await.status(), 200);
    assert_eq!(send(&svc, internal()).await.status(), 200);
    send(
        &svc,
        Request::post("/mcp")
            .header("x-api-key", "k3y-s3cret")
            .body(McpBody::empty())
            .unwrap(),
    )
    .await;
    let shown = shown.lock().unwrap().clone();
    assert!(
        shown.contains("x-api-key") && !shown.contains("s3cret"),
        "{shown}"
    );
    let resp = send(
        &svc,
        Request::get("/healthz").body(McpBody::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        resp.status(),
        500,
        "the predicate replaced the paths; no peer to key on"
    );
}

#[tokio::test(start_paused = true)]
async fn ending_a_session_is_never_refused() {
    let l = layer(Builder::new(Limit::per_minute(1)));
    let (svc, seen) = setup(&l);
    assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 200);
    assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 429);
    let delete = |session: Option<&str>, inspected: bool, principal: bool| {
        let mut b = Request::delete("/mcp");
        if let Some(s) = session {
            b = b.header("mcp-session-id", s);
        }
        let mut req = b.body(McpBody::empty()).unwrap();
        req.extensions_mut().insert(peer("1.1.1.1"));
        if principal {
            req.extensions_mut().insert(Principal::new("a"));
        }
        if inspected {
            req.extensions_mut()
                .insert(McpRequest::new(MessageKind::NotJsonRpc, None, None));
        }
        req
    };
    // Over quota, the client can still end its session, and doing so costs it nothing.
    let resp = send(&svc, delete(Some("s1"), true, true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("ratelimit").is_none());
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    // Counted like any request: a DELETE without a session (it ends nothing), one the inspector
    // did not see (another route under this layer), one without a principal (anyone can invent
    // a session id).
    assert_eq!(send(&svc, delete(None, true, true)).await.status(), 429);
    assert_eq!(
        send(&svc, delete(Some("s1"), false, true)).await.status(),
        429
    );
    // (Without a principal the key is the peer IP: use up that bucket first.)
    assert_eq!(send(&svc, post("1.1.1.1", None)).await.status(), 200);
    assert_eq!(
        send(&svc, delete(Some("s1"), true, false)).await.status(),
        429
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(
        send(&svc, delete(Some("s1"), true, true)).await.status(),
        200
    );
    assert_eq!(
        send(&svc, post("1.1.1.1", Some("a"))).await.status(),
        200,
        "the DELETE took nothing from the refilled bucket"
    );
}

/// A client over quota can still cancel a call, answer the server's requests (an elicitation,
/// a sampling request), finish a handshake (`notifications/initialized`) and resume a call's
/// stream: refusing them would leave the call waiting for its timeout, its answer lost, a
/// cancelled tool running, or a new session unusable. Other notifications and requests are
/// refused as usual, on both the base-quota path and the path with extra rules.
#[tokio::test(start_paused = true)]
async fn cancellations_and_answers_to_the_server_are_never_refused() {
    let message = |kind: MessageKind, method: Option<Method>| {
        let mut req = post("1.1.1.1", Some("a"));
        let id = (kind != MessageKind::Notification).then(|| 7.into());
        req.extensions_mut()
            .insert(McpRequest::new(kind, method, id));
        req
    };
    for builder in [
        Builder::new(Limit::per_minute(1)),
        Builder::new(Limit::per_minute(1)).each_tool(Limit::per_minute(100)),
    ] {
        let (svc, seen) = setup(&layer(builder));
        assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 200);
        assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 429);
        let cancel = message(
            MessageKind::Notification,
            Some(Method::NotificationsCancelled),
        );
        let resp = send(&svc, cancel).await;
        assert_eq!(resp.status(), 200);
        // Let through over quota, and told so, as any answer it gets.
        let state = header(&resp, "ratelimit").expect("RateLimit on the answer");
        assert!(state.contains("r=0;"), "{state}");
        assert!(header(&resp, "ratelimit-policy").is_some());
        assert_eq!(
            send(&svc, message(MessageKind::Response, None))
                .await
                .status(),
            200
        );
        // The end of a 2025-11-25 handshake (in its session); without a session there is no
        // handshake to finish.
        let initialized = message(
            MessageKind::Notification,
            Some(Method::NotificationsInitialized),
        );
        assert_eq!(send(&svc, initialized).await.status(), 429);
        let mut initialized = post("1.1.1.1", Some("a"));
        let facts = McpRequest::new(
            MessageKind::Notification,
            Some(Method::NotificationsInitialized),
            None,
        )
        .with_session_id(http::HeaderValue::from_static("s-1"));
        initialized.extensions_mut().insert(facts);
        assert_eq!(send(&svc, initialized).await.status(), 200);
        // A 2025-11-25 GET resuming an admitted call's stream: refusing it would lose the
        // call's answer.
        let mut resume = post("1.1.1.1", Some("a"));
        *resume.method_mut() = http::Method::GET;
        let facts = McpRequest::new(MessageKind::NotJsonRpc, None, None)
            .with_session_id(http::HeaderValue::from_static("s-1"))
            .with_stream_role(StreamRole::Resume {
                last_event_id: http::HeaderValue::from_static("1/7"),
            });
        resume.extensions_mut().insert(facts.clone());
        assert_eq!(send(&svc, resume).await.status(), 200);
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        // Without a session, nothing was admitted that it could resume.
        let mut stray = post("1.1.1.1", Some("a"));
        *stray.method_mut() = http::Method::GET;
        let sessionless = McpRequest::new(MessageKind::NotJsonRpc, None, None).with_stream_role(
            StreamRole::Resume {
                last_event_id: http::HeaderValue::from_static("1/7"),
            },
        );
        stray.extensions_mut().insert(sessionless);
        assert_eq!(send(&svc, stray).await.status(), 429);
        let progress = message(
            MessageKind::Notification,
            Some(Method::NotificationsProgress),
        );
        assert_eq!(send(&svc, progress).await.status(), 429);
        let call = message(MessageKind::Request, Some(Method::ToolsCall));
        assert_eq!(send(&svc, call).await.status(), 429);
        assert_eq!(seen.load(Ordering::SeqCst), 5);
    }
}

#[tokio::test(start_paused = true)]
async fn state_is_shared_across_clones_and_layer_calls() {
    let l = layer(Builder::new(Limit::per_minute(2)));
    let (a, _) = setup(&l);
    let (b, _) = setup(&l.clone());
    assert_eq!(send(&a, post("1.1.1.1", Some("p"))).await.status(), 200);
    assert_eq!(send(&b, post("1.1.1.1", Some("p"))).await.status(), 200);
    assert_eq!(
        send(&a.clone(), post("1.1.1.1", Some("p"))).await.status(),
        429
    );
    assert_eq!(
        send(&b.clone(), post("1.1.1.1", Some("p"))).await.status(),
        429
    );
    assert_eq!(l.store().stats().entries, 1);
}

#[tokio::test(start_paused = true)]
async fn eviction_through_the_layer() {
    let l = layer(
        Builder::new(Limit::per_minute(60).burst(1))
            .key_by(KeyBy::Ip)
            .max_keys(8),
    );
    let (svc, _) = setup(&l);
    for i in 0..8 {
        assert_eq!(
            send(&svc, post(&format!("192.0.2.{i}"), None))
                .await
                .status(),
            200
        );
    }
    // Full: newcomers share the overflow bucket (burst 1); known clients keep their state.
    assert_eq!(send(&svc, post("198.51.100.1", None)).await.status(), 200);
    assert_eq!(send(&svc, post("198.51.100.2", None)).await.status(), 429);
    assert_eq!(send(&svc, post("192.0.2.0", None)).await.status(), 429);
    let st = l.store().stats();
    assert_eq!((st.entries, st.overflowed), (8, 2));
    // A second later every bucket is full again: stale, swept when a newcomer needs room.
    tokio::time::advance(Duration::from_secs(1)).await;
    for i in 0..8 {
        assert_eq!(
            send(&svc, post(&format!("203.0.113.{i}"), None))
                .await
                .status(),
            200
        );
    }
    let st = l.store().stats();
    assert_eq!(st.entries, 8);
    assert_eq!(st.overflowed, 2, "{st:?}");
    assert!(st.evicted >= 8, "{st:?}");
}

/// A store that answers later (like a networked one would) and counts its calls.
#[derive(Clone, Debug)]
struct SlowStore {
    inner: tower_armor_rate_limit::InMemoryStore,
    calls: Arc<AtomicUsize>,
    fail: bool,
}

impl KeyStore for SlowStore {
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Decision, StoreError>> + Send>>;

    fn check(&self, checks: &Checks) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let store = self.inner.clone();
        let checks = checks.clone();
        let fail = self.fail;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if fail {
                return Err(StoreError::new("unreachable"));
            }
            Ok(store.check_now(&checks))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn an_async_store_is_awaited_through_the_trait() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let l = Builder::new(Limit::per_minute(1))
        .max_keys(100)
        .build_with_store(move |p, max_keys| {
            // The key bound the builder was given reaches the store.
            assert_eq!(max_keys, 100);
            SlowStore {
                inner: tower_armor_rate_limit::InMemoryStore::new(p, max_keys),
                calls: c,
                fail: false,
            }
        })
        .unwrap();
    assert!(
        Builder::new(Limit::per_minute(1))
            .max_keys(0)
            .build_with_store(|p, n| SlowStore {
                inner: tower_armor_rate_limit::InMemoryStore::new(p, n.max(1)),
                calls: Arc::new(AtomicUsize::new(0)),
                fail: false,
            })
            .is_err(),
        "a zero key bound is refused whatever the store"
    );
    let (svc, seen) = setup(&l);
    let resp = send(&svc, post("1.1.1.1", Some("a"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "ratelimit"), Some(r#""default";r=0;t=60"#));
    let resp = send(&svc, post("1.1.1.1", Some("a"))).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // A failing store lets requests through (fail open).
    let l = Builder::new(Limit::per_minute(1))
        .build_with_store(|p, _| SlowStore {
            inner: tower_armor_rate_limit::InMemoryStore::new(p, 100),
            calls: Arc::new(AtomicUsize::new(0)),
            fail: true,
        })
        .unwrap();
    let (svc, seen) = setup(&l);
    for _ in 0..3 {
        let resp = send(&svc, post("1.1.1.1", Some("a"))).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("ratelimit").is_none());
    }
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_while_the_store_answers_reaches_nothing() {
    let l = Builder::new(Limit::per_minute(5))
        .build_with_store(|p, _| SlowStore {
            inner: tower_armor_rate_limit::InMemoryStore::new(p, 100),
            calls: Arc::new(AtomicUsize::new(0)),
            fail: false,
        })
        .unwrap();
    let (mut svc, seen) = setup(&l);
    let fut = svc.ready().await.unwrap().call(post("1.1.1.1", Some("a")));
    assert!(format!("{fut:?}").contains("Checking"));
    drop(fut);
    tokio::time::advance(Duration::from_millis(10)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    assert_eq!(send(&svc, post("1.1.1.1", Some("a"))).await.status(), 200);
}

#[test]
fn services_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<RateLimitLayer>();
    check::<RateLimit<Mock>>();
    fn future_is_send<F: Send>(_: &F) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let l = layer(Builder::new(Limit::per_minute(1)));
        let (mut svc, _) = setup(&l);
        let fut = svc.ready().await.unwrap().call(post("1.1.1.1", None));
        future_is_send(&fut);
    });
}

/// governor adds the time since the limiter started to a full burst's replenish time, in u64
/// nanoseconds: a quota must leave room for centuries of uptime, not only fit by itself.
#[tokio::test(start_paused = true)]
async fn accepted_quotas_leave_room_for_uptime() {
    // Fits u64 nanoseconds alone (1.84e19 ns), overflowed governor's arithmetic 34 s after
    // start (a panic in debug builds, a limit that resets itself in release ones).
    let e = Builder::new(Limit::per_minute(1).burst(307_445_734))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("292 years"), "{e}");
    // The largest burst accepted at one request a minute still counts right after 250 years.
    let most = u64::MAX / 2 / 60_000_000_000 - 1;
    let l = layer(Builder::new(
        Limit::per_minute(1).burst(u32::try_from(most).unwrap()),
    ));
    assert!(
        Builder::new(Limit::per_minute(1).burst(u32::try_from(most + 1).unwrap()))
            .build()
            .is_err()
    );
    let (svc, seen) = setup(&l);
    let year = Duration::from_secs(365 * 86_400);
    for step in [
        Duration::ZERO,
        Duration::from_secs(34),
        100 * year,
        150 * year,
    ] {
        tokio::time::advance(step).await;
        for _ in 0..3 {
            assert_eq!(send(&svc, post("1.1.1.1", None)).await.status(), 200);
        }
    }
    assert_eq!(seen.load(Ordering::SeqCst), 12);
}
