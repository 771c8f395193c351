//! The example server's whole stack over real HTTP: what each layer does when composed in the
//! documented order, under both protocol revisions where it matters.

mod support;

use std::time::Duration;

use tokio::time::Instant;

use http::{Method, StatusCode};
use serde_json::json;
use support::{bounded, spawn_example};
use tower_armor_test_support::{CallReply, RawClient, RawError, Revision, SseStream};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-9876543210";
const TOKENS: &str = "alice:alice-token-0123456789,bob:bob-token-9876543210";

async fn client(url: &str, rev: Revision, token: &str) -> RawClient {
    bounded(10, RawClient::new(url, rev).with_bearer(token).connected())
        .await
        .expect("connect")
}

async fn raw_post(url: &str, headers: &[(&str, &str)], body: String) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    bounded(10, req.body(body).send()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_correlation_id_even_inner_rejections() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_MAX_BODY_BYTES", "2048"),
        ("MCP_RATE_LIMIT_PER_MINUTE", "2"),
        ("MCP_RATE_LIMIT_BURST", "2"),
    ])
    .await;
    let url = ex.url();
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let stateless = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];

    // 401 from bearer-auth, with our id echoed.
    let r = raw_post(&url, &[("x-request-id", "case-401")], ping.into()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["x-request-id"], "case-401");
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["data"]["correlationId"], "case-401", "{v}");
    assert_eq!(v["error"]["data"]["reason"], "missing", "{v}");

    // 413 from the inspector.
    let auth = format!("Bearer {ALICE}");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(4096)
    );
    let r = raw_post(
        &url,
        &[("x-request-id", "case-413"), ("authorization", &auth)],
        big,
    )
    .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers()["x-request-id"], "case-413");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -31413, "{v}");
    assert_eq!(v["error"]["data"]["correlationId"], "case-413", "{v}");

    // A hostile id is replaced, never echoed.
    let r = raw_post(
        &url,
        &[
            ("x-request-id", "bad id\twith tab"),
            ("authorization", &auth),
        ],
        "{".into(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let echoed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!echoed.contains("bad id"), "{echoed}");
    assert_eq!(echoed.len(), 36, "a generated UUID: {echoed}");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700, "{v}");
    assert_eq!(v["error"]["data"]["correlationId"], echoed.as_str(), "{v}");

    // 429 from the rate limit (the 413 and 400 above were counted too), with Retry-After.
    let mut saw_429 = false;
    for i in 0..4 {
        let id = format!("case-429-{i}");
        let mut h = vec![
            ("x-request-id", id.as_str()),
            ("authorization", auth.as_str()),
        ];
        h.extend(stateless);
        let r = raw_post(&url, &h, ping.into()).await;
        assert_eq!(r.headers()["x-request-id"], id.as_str());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], -31429);
            assert_eq!(v["error"]["data"]["correlationId"], id.as_str(), "{v}");
            saw_429 = true;
            break;
        }
    }
    assert!(saw_429);
}

/// A client that can only write `_meta` (`with_correlation_meta`) and sends no `x-request-id`:
/// its case id is the one the answers echo and the one in a local error's body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_id_in_meta_is_adopted_when_no_header_came() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_RATE_LIMIT_PER_MINUTE", "1"),
        ("MCP_RATE_LIMIT_BURST", "1"),
    ])
    .await;
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"tower-armor/requestId":"case-meta-1"}}}"#;
    let auth = format!("Bearer {ALICE}");
    let headers = [
        ("authorization", auth.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "add"),
    ];
    let ok = raw_post(&ex.url(), &headers, call.into()).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-request-id"], "case-meta-1");
    let refused = raw_post(&ex.url(), &headers, call.into()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["x-request-id"], "case-meta-1");
    let v: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["data"]["correlationId"], "case-meta-1", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_fails_fast_while_others_keep_working_then_recovers() {
    for rev in Revision::ALL {
        let ex = spawn_example(&[
            ("MCP_BREAKER_FAILURE_RATE", "0.5"),
            ("MCP_BREAKER_MIN_CALLS", "3"),
            ("MCP_BREAKER_WINDOW", "4"),
            ("MCP_BREAKER_OPEN_MS", "400"),
        ])
        .await;
        let c = client(&ex.url(), rev, "unused").await;
        for _ in 0..3 {
            let r = c.call_tool("crash", json!({})).await.unwrap();
            assert_eq!(r.error_code(), Some(-32603), "{rev}");
        }
        // Open: a fast 503 with Retry-After, without reaching the server.
        let t = Instant::now();
        let r = c.call_tool("crash", json!({})).await.unwrap();
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{rev}");
        assert_eq!(r.error_code(), Some(-31503));
        assert!(r.header("retry-after").is_some());
        assert!(t.elapsed() < Duration::from_millis(500));
        // Another tool has its own circuit.
        assert_eq!(
            c.call_tool("add", json!({"a": 2, "b": 3}))
                .await
                .unwrap()
                .tool_text(),
            Some("5")
        );

        // `unstable` trips with fail=true and closes again after the open duration.
        for _ in 0..3 {
            c.call_tool("unstable", json!({"fail": true}))
                .await
                .unwrap();
        }
        let r = c
            .call_tool("unstable", json!({"fail": false}))
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{rev}: open");
        tokio::time::sleep(Duration::from_millis(450)).await;
        let r = c
            .call_tool("unstable", json!({"fail": false}))
            .await
            .unwrap();
        assert_eq!(r.tool_text(), Some("ok"), "{rev}: the probe passes");
        let r = c
            .call_tool("unstable", json!({"fail": false}))
            .await
            .unwrap();
        assert_eq!(r.tool_text(), Some("ok"), "{rev}: closed again");
        let state = ex.breakers.circuit("unstable").unwrap().state();
        assert_eq!(format!("{state:?}"), "Closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_break_glass_switch_opens_and_resets_a_circuit() {
    let ex = spawn_example(&[("MCP_BEARER_TOKEN", TOKENS)]).await;
    let c = client(&ex.url(), Revision::V2025_11_25, ALICE).await;
    assert_eq!(
        c.call_tool("add", json!({"a": 1, "b": 1}))
            .await
            .unwrap()
            .tool_text(),
        Some("2")
    );
    let admin = |action: &str| {
        reqwest::Client::new()
            .post(ex.server.url_for(&format!("/admin/breakers/add/{action}")))
            .bearer_auth(ALICE)
            .send()
    };
    // The admin endpoint needs the token too.
    let r = reqwest::Client::new()
        .post(ex.server.url_for("/admin/breakers/add/force-open"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(admin("force-open").await.unwrap().status(), StatusCode::OK);
    let r = c.call_tool("add", json!({"a": 1, "b": 1})).await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(admin("reset").await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        c.call_tool("add", json!({"a": 1, "b": 1}))
            .await
            .unwrap()
            .tool_text(),
        Some("2")
    );
}

/// Over its quota, a restricted principal still cannot tell a hidden tool from one that does
/// not exist: the allow-list answers both before the rate limit, alike, and only the calls it
/// may make are counted and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_quota_a_hidden_tool_is_answered_like_an_unknown_one() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_TOOL_ALLOW", "alice:add"),
        ("MCP_RATE_LIMIT_PER_MINUTE", "8"),
        ("MCP_RATE_LIMIT_BURST", "8"),
        ("MCP_RATE_LIMIT_TOOLS", "slow:1"),
    ])
    .await;
    let c = client(&ex.url(), Revision::V2026_07_28, ALICE).await;
    let call = |tool: &'static str| {
        let c = &c;
        async move {
            let r = c
                .call_with_id(
                    5,
                    "tools/call",
                    json!({"name": tool, "arguments": {"a": 1, "b": 2, "ms": 1}}),
                )
                .await
                .unwrap();
            (r.status, r.messages().first().cloned())
        }
    };
    for _ in 0..2 {
        assert_eq!(call("slow").await, call("no-such-tool").await);
    }
    let mut refused = false;
    for _ in 0..10 {
        if call("add").await.0 == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
    }
    assert!(refused, "the quota never ran out");
    let hidden = call("slow").await;
    assert_ne!(hidden.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(hidden, call("no-such-tool").await);
}

/// One standalone GET stream per session: a second one while the first is open gets 409 and
/// takes no long-lived stream slot of the principal (rmcp would keep it as an idle "shadow"
/// forever: the TypeScript SDK opens one after each call stream that ends with an error, and
/// four of them used to lock the principal out of listen streams).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_standalone_stream_of_a_session_is_refused_and_takes_no_slot() {
    let ex = spawn_example(&[("MCP_BEARER_TOKEN", TOKENS)]).await;
    let c = client(&ex.url(), Revision::V2025_11_25, ALICE).await;
    let first = bounded(10, c.open_get_stream()).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    for _ in 0..6 {
        let again = bounded(10, c.open_get_stream()).await.unwrap();
        assert_eq!(again.status(), StatusCode::CONFLICT);
        let v: serde_json::Value = again.json().await.unwrap();
        assert_eq!(v["error"]["code"], -31409, "{v}");
    }
    // The 409 comes before authentication: only the session's own principal gets it. Anyone
    // else presenting the session id gets what an unknown session gets (no oracle).
    let session = c.session_id().expect("a session").to_owned();
    let mut stranger = RawClient::new(ex.url(), Revision::V2025_11_25).with_bearer(BOB);
    stranger.set_session_id(Some(session.clone()));
    let mut anonymous = RawClient::new(ex.url(), Revision::V2025_11_25);
    anonymous.set_session_id(Some(session));
    for _ in 0..3 {
        let foreign = bounded(10, stranger.open_get_stream()).await.unwrap();
        assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
        let unauthenticated = bounded(10, anonymous.open_get_stream()).await.unwrap();
        assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    }
    let stats = ex.bulkheads.clone();
    let open = || stats.streams_open();
    let settled = async {
        while open() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    bounded(5, settled).await;
    // Another session of the same principal still gets its stream.
    let other = client(&ex.url(), Revision::V2025_11_25, ALICE).await;
    let second = bounded(10, other.open_get_stream()).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    // Once the first ends, its session may open one again.
    drop(first);
    let reopened = async {
        loop {
            let r = c.open_get_stream().await.unwrap();
            if r.status() == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded(5, reopened).await;
    drop(second);
}

/// The admin routes name every tool with a circuit: a principal the allow-list limits to some
/// tools gets the 404 of a path that does not exist (no oracle for its hidden tools), while an
/// unrestricted one uses them. Every answer, `/healthz` and an unknown path included, carries
/// the correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_hidden_from_restricted_principals() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_TOOL_ALLOW", "alice:add,echo"),
    ])
    .await;
    // A hidden tool gets a circuit once someone calls it.
    let c = client(&ex.url(), Revision::V2025_11_25, BOB).await;
    let r = c.call_tool("crash", json!({})).await.unwrap();
    assert!(r.status.is_success(), "{}", r.status);
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| {
        http.get(ex.server.url_for(path))
            .bearer_auth(token)
            .header("x-request-id", "admin-check-1")
            .send()
    };
    let unknown_path = get("/admin/nothing-here", ALICE).await.unwrap();
    assert_eq!(unknown_path.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown_path.headers()["x-request-id"], "admin-check-1");
    let unknown_body = unknown_path.bytes().await.unwrap();
    for path in [
        "/admin/breakers",
        "/admin/breakers/crash/reset",
        // A segment that does not decode: still the one answer.
        "/admin/breakers/%ff/reset",
    ] {
        let r = if path.ends_with("reset") {
            http.post(ex.server.url_for(path))
                .bearer_auth(ALICE)
                .send()
                .await
                .unwrap()
        } else {
            get(path, ALICE).await.unwrap()
        };
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.bytes().await.unwrap(), unknown_body, "{path}");
    }
    // Nor does another method tell it the routes exist (axum's 405 and its `Allow` would).
    for (method, path) in [
        (Method::PUT, "/admin/breakers"),
        (Method::DELETE, "/admin/breakers"),
        (Method::GET, "/admin/breakers/crash/force-open"),
    ] {
        let r = http
            .request(method.clone(), ex.server.url_for(path))
            .bearer_auth(ALICE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert!(!r.headers().contains_key("allow"), "{method} {path}");
        assert_eq!(r.bytes().await.unwrap(), unknown_body, "{method} {path}");
    }
    // Nor do a `HEAD`'s headers (axum's default 404 left out `Content-Length`).
    let head = |path: &'static str| {
        http.head(ex.server.url_for(path))
            .bearer_auth(ALICE)
            .header("x-request-id", "admin-check-1")
            .send()
    };
    let shown = |r: &reqwest::Response| {
        let mut h: Vec<_> = r
            .headers()
            .iter()
            .filter(|(n, _)| *n != "date")
            .map(|(n, v)| format!("{n}: {v:?}"))
            .collect();
        h.sort();
        (r.status(), h)
    };
    let hidden = head("/admin/breakers").await.unwrap();
    let absent = head("/admin/nothing-here").await.unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    assert_eq!(shown(&hidden), shown(&absent));
    // An operator gets the 405 (with its `Allow`); a client without a token the 401 alone.
    for (method, path, allow) in [
        (Method::PUT, "/admin/breakers", "GET, HEAD"),
        (Method::GET, "/admin/breakers/crash/reset", "POST"),
    ] {
        let r = http
            .request(method.clone(), ex.server.url_for(path))
            .bearer_auth(BOB)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(r.headers()["allow"], allow, "{method} {path}");
        let r = http
            .request(method.clone(), ex.server.url_for(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(!r.headers().contains_key("allow"), "{method} {path}");
    }
    let listed = get("/admin/breakers", BOB).await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(listed.text().await.unwrap().contains("crash"));
    let undecodable = http
        .post(ex.server.url_for("/admin/breakers/%ff/reset"))
        .bearer_auth(BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(undecodable.status(), StatusCode::NOT_FOUND);
    assert_eq!(undecodable.text().await.unwrap(), "no such circuit\n");
    let health = http
        .get(ex.server.url_for("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(health.headers().contains_key("x-request-id"));

    // Without a token: the admin routes want one; any other path is simply not there (the MCP
    // endpoint is `/mcp` alone, so `/mcp/healthz` is not a health check that skips auth).
    let anonymous = |path: &str| http.get(ex.server.url_for(path)).send();
    let admin = anonymous("/admin/breakers").await.unwrap();
    assert_eq!(admin.status(), StatusCode::UNAUTHORIZED);
    for path in [
        "/nope",
        "/mcp/healthz",
        "/mcp/readyz",
        "/.well-known/anything",
    ] {
        let r = anonymous(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(r.headers().contains_key("x-request-id"), "{path}");
    }
}

/// `MCP_ADMIN_PRINCIPALS` names the operators: any other principal gets the 404 of a path that
/// does not exist. A session id sent to the admin routes is ignored there: their own 404 ("no
/// such circuit") does not end the session's binding. Names that no fixed token has are
/// refused at start, here and in `MCP_TOOL_ALLOW` (a rule for nobody restricts nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_principals_name_the_operators() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_ADMIN_PRINCIPALS", "bob"),
    ])
    .await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: &str| http.get(ex.server.url_for(path)).bearer_auth(token).send();
    let unknown_body = get("/admin/nothing-here", ALICE)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let refused = get("/admin/breakers", ALICE).await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(refused.bytes().await.unwrap(), unknown_body);
    let forced = http
        .post(ex.server.url_for("/admin/breakers/add/force-open"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), StatusCode::NOT_FOUND);
    assert_eq!(get("/admin/breakers", BOB).await.unwrap().status(), 200);

    // Bob's session, sent along to a circuit that does not exist: still his afterwards.
    let c = client(&ex.url(), Revision::V2025_11_25, BOB).await;
    let session = c.session_id().unwrap().to_owned();
    let r = http
        .post(ex.server.url_for("/admin/breakers/nosuch/force-open"))
        .bearer_auth(BOB)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.text().await.unwrap(), "no such circuit\n");
    let r = bounded(10, c.call_tool("add", json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert_eq!(r.tool_text(), Some("3"), "the session survives");

    for vars in [
        &[("MCP_ADMIN_PRINCIPALS", "BOB")][..],
        &[("MCP_ADMIN_PRINCIPALS", "bob,,alice")],
        &[("MCP_ADMIN_PRINCIPALS", "bob alice")],
        &[("MCP_TOOL_ALLOW", "BOB:add")],
        // An operator some tools are hidden from: the routes would name them.
        &[
            ("MCP_TOOL_ALLOW", "bob:add"),
            ("MCP_ADMIN_PRINCIPALS", "bob"),
        ],
    ] {
        let mut all = vec![("MCP_BEARER_TOKEN", TOKENS)];
        all.extend_from_slice(vars);
        let err = support::example::Settings::for_tests(&all).unwrap_err();
        let var = vars.last().unwrap().0;
        assert!(err.starts_with(var), "{vars:?}: {err}");
    }
    // Checked with auth off too, where it has no effect.
    let err =
        support::example::Settings::for_tests(&[("MCP_ADMIN_PRINCIPALS", "a b")]).unwrap_err();
    assert!(err.starts_with("MCP_ADMIN_PRINCIPALS"), "{err}");
    assert!(support::example::Settings::for_tests(&[("MCP_ADMIN_PRINCIPALS", "ops")]).is_ok());
}

/// With auth off (the default on loopback), web pages must not reach the admin routes: not
/// through DNS rebinding (a foreign `Host`), nor by a cross-site `POST` (a foreign `Origin`),
/// which a browser sends without a preflight. A same-origin request and one without an
/// `Origin` (curl, an operator's script) pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_refuse_foreign_hosts_and_cross_site_requests() {
    use tower_armor_circuit_breaker::State as CircuitState;
    let ex = spawn_example(&[]).await;
    let port = ex.server.addr.port();
    let http = reqwest::Client::new();
    let post = |host: String, origin: Option<&str>| {
        let mut r = http
            .post(ex.server.url_for("/admin/breakers/add/force-open"))
            .header("host", host);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let add_state = || ex.breakers.circuit("add").map(|c| c.state());
    let evil = format!("evil.example:{port}");
    for (host, origin) in [
        (evil.clone(), None),
        (evil.clone(), Some(format!("http://{evil}"))),
        (format!("127.0.0.1:{port}"), Some(format!("http://{evil}"))),
        (format!("127.0.0.1:{port}"), Some("null".to_owned())),
        (
            format!("127.0.0.1:{port}"),
            Some(format!("http://127.0.0.1:{}", port.wrapping_add(1))),
        ),
        (format!("127.0.0.1:{port}"), Some("not a uri".to_owned())),
        // As `/mcp` requires them: a port of digits, no user information.
        ("127.0.0.1:abc".to_owned(), None),
        (format!("user@127.0.0.1:{port}"), None),
        // An origin is `scheme://host[:port]`.
        (
            format!("127.0.0.1:{port}"),
            Some(format!("http://127.0.0.1:{port}/path")),
        ),
        (
            format!("127.0.0.1:{port}"),
            Some(format!("http://user@127.0.0.1:{port}")),
        ),
    ] {
        let r = post(host.clone(), origin.as_deref()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host} {origin:?}");
        assert_ne!(
            add_state(),
            Some(CircuitState::ForcedOpen),
            "{host} {origin:?}"
        );
    }
    let r = http
        .get(ex.server.url_for("/admin/breakers"))
        .header("host", evil.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "the list names the tools"
    );

    // An absolute-form target names the host, whatever `Host` says (RFC 9112 §3.2.2), as for
    // `/mcp`: a foreign one is refused, a served one admitted.
    let raw = |target: String, host: String| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(ex.server.addr)
            .await
            .unwrap();
        let head = format!(
            "POST {target} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n\
             connection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        bounded(10, tcp.read_to_end(&mut answer)).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let path = "/admin/breakers/add/force-open";
    let answer = raw(format!("http://{evil}{path}"), format!("127.0.0.1:{port}")).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_ne!(add_state(), Some(CircuitState::ForcedOpen));
    // A `Host` that is not valid is refused whatever the target names, as on `/mcp`.
    for host in [
        format!("user@evil.example:{port}"),
        "127.0.0.1:abc".to_owned(),
    ] {
        let answer = raw(format!("http://127.0.0.1:{port}{path}"), host.clone()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
    }
    assert_ne!(add_state(), Some(CircuitState::ForcedOpen));
    let answer = raw(format!("http://127.0.0.1:{port}{path}"), evil.clone()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(add_state(), Some(CircuitState::ForcedOpen));
    ex.breakers.circuit("add").unwrap().reset();

    // `Origin` twice: refused, whichever comes first.
    let r = http
        .post(ex.server.url_for("/admin/breakers/add/force-open"))
        .header("origin", format!("http://127.0.0.1:{port}"))
        .header("origin", format!("http://{evil}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let same = format!("http://localhost:{port}");
    let r = post(format!("localhost:{port}"), Some(&same))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(add_state(), Some(CircuitState::ForcedOpen));
    let r = http
        .post(ex.server.url_for("/admin/breakers/add/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "no Origin: not a browser's cross-site request"
    );
    assert_eq!(add_state(), Some(CircuitState::Closed));
}

/// `/mcp` refuses a request whose `Origin` is not the origin of the host it names (the MCP
/// transport's rule against DNS rebinding: 403), before any layer; one from that origin, or
/// without an `Origin` (not a browser), is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_refuses_cross_origin_requests() {
    let ex = spawn_example(&[]).await;
    let port = ex.server.addr.port();
    let http = reqwest::Client::new();
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
    let post = |origins: &[String]| {
        let mut r = http
            .post(ex.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/list");
        for o in origins {
            r = r.header("origin", o);
        }
        r.body(list).send()
    };
    for origins in [
        vec!["http://evil.example".to_owned()],
        vec!["null".to_owned()],
        vec![format!("http://127.0.0.1:{}", port.wrapping_add(1))],
        vec![
            format!("http://127.0.0.1:{port}"),
            "http://evil.example".to_owned(),
        ],
    ] {
        let r = post(&origins).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{origins:?}");
        assert!(r.headers().contains_key("x-request-id"), "{origins:?}");
    }
    for origins in [vec![format!("http://127.0.0.1:{port}")], vec![]] {
        let r = post(&origins).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{origins:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_slow_calls_two_run_one_waits_two_are_refused_and_add_stays_fast() {
    for rev in Revision::ALL {
        let ex = spawn_example(&[
            ("MCP_BULKHEAD_MAX_CONCURRENT", "2"),
            ("MCP_BULKHEAD_MAX_QUEUE", "1"),
        ])
        .await;
        let c = std::sync::Arc::new(client(&ex.url(), rev, "unused").await);
        let mut calls = Vec::new();
        for _ in 0..5 {
            let c = c.clone();
            calls.push(tokio::spawn(async move {
                let t = Instant::now();
                let r = c.call_tool("slow", json!({"ms": 600})).await.unwrap();
                (r, t.elapsed())
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let t = Instant::now();
        assert_eq!(
            c.call_tool("add", json!({"a": 2, "b": 2}))
                .await
                .unwrap()
                .tool_text(),
            Some("4")
        );
        assert!(
            t.elapsed() < Duration::from_millis(450),
            "add waited behind slow"
        );
        let stats = ex.bulkheads.key("slow").expect("slow pool");
        assert_eq!((stats.running, stats.queued), (2, 1), "{rev}: {stats:?}");

        let mut ok = 0;
        let mut refused = 0;
        for call in calls {
            let (r, took) = bounded(10, call).await.unwrap();
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(r.error_code(), Some(-31509));
                assert!(
                    took < Duration::from_millis(450),
                    "refusals are fast: {took:?}"
                );
                refused += 1;
            } else {
                assert!(r.tool_text().is_some(), "{rev}: {:?}", r.final_message);
                ok += 1;
            }
        }
        assert_eq!((ok, refused), (3, 2), "{rev}");
        // Local rejections are not the tool's fault: its circuit stays closed.
        let state = ex.breakers.circuit("slow").unwrap().state();
        assert_eq!(format!("{state:?}"), "Closed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_quota_gets_429_and_another_principal_is_unaffected() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_RATE_LIMIT_PER_MINUTE", "6"),
        ("MCP_RATE_LIMIT_BURST", "6"),
    ])
    .await;
    // 2026-07-28 clients make no handshake requests, so the count is exact.
    let alice = client(&ex.url(), Revision::V2026_07_28, ALICE).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            alice
                .call_tool("add", json!({"a": 1, "b": 2}))
                .await
                .unwrap(),
        );
    }
    let limited = statuses
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(limited, 2, "six pass, two are limited");
    let last = statuses.last().unwrap();
    let retry: u64 = last.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(last.error_code(), Some(-31429));
    let bob = client(&ex.url(), Revision::V2025_11_25, BOB).await;
    assert_eq!(
        bob.call_tool("add", json!({"a": 1, "b": 2}))
            .await
            .unwrap()
            .tool_text(),
        Some("3")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_ends_with_a_local_timeout_error() {
    // 2026-07-28: rmcp sends no headers until the first message, so the deadline hits first: 504.
    let ex = spawn_example(&[("MCP_CALL_TIMEOUT_MS", "300")]).await;
    let c = client(&ex.url(), Revision::V2026_07_28, "unused").await;
    let t = Instant::now();
    let r = c.call_tool("slow", json!({"ms": 2000})).await.unwrap();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.error_code(), Some(-31504));
    assert!(t.elapsed() < Duration::from_millis(1500));

    // 2025-11-25: headers left at once; the call ends with an in-stream error for its id.
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
    let t = Instant::now();
    let r = c.call_tool("slow", json!({"ms": 2000})).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.is_sse());
    assert_eq!(r.error_code(), Some(-31504));
    assert!(t.elapsed() < Duration::from_millis(1500));
    // Both timed-out calls count as failures of the `slow` circuit (the breaker sits outside the
    // timeout and sees `Elapsed`), not yet enough to open it.
    let counts = ex.breakers.circuit("slow").unwrap().counts();
    assert_eq!((counts.calls, counts.failures), (2, 2), "{counts:?}");
}

/// `stream` (a 3 s `slow` call's) ends well before the call would have, with no message.
async fn ends_early_without_a_message(stream: &mut SseStream, why: &str) {
    let started = Instant::now();
    let message = bounded(10, stream.next_message()).await;
    assert_eq!(message, None, "{why} without a message");
    assert!(started.elapsed() < Duration::from_millis(2500), "{why}");
}

/// `tool`'s circuit has counted no failure and is closed.
fn assert_no_failures(ex: &support::Example, tool: &str) {
    let circuit = ex.breakers.circuit(tool).unwrap();
    let counts = circuit.counts();
    assert_eq!(counts.failures, 0, "{counts:?}");
    assert_eq!(circuit.state(), tower_armor_circuit_breaker::State::Closed);
}

/// A 2025-11-25 client that cancels its own call (`notifications/cancelled` in its session):
/// rmcp stops the tool and ends the call's stream without a final response. That is the
/// client's choice, not a failure of the server: the breaker does not count it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_client_cancels_is_not_a_breaker_failure() {
    let ex = spawn_example(&[]).await;
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
    for _ in 0..2 {
        let id = c.next_id();
        let mut stream = open_slow(&c, id, 3000).await;
        let cancelled = bounded(10, c.cancel(id, "the user changed their mind"))
            .await
            .unwrap();
        assert_eq!(cancelled.status, StatusCode::ACCEPTED);
        ends_early_without_a_message(&mut stream, "rmcp ends a cancelled call's stream").await;
    }
    assert_no_failures(&ex, "slow");
}

/// Starts a `slow` call of `ms` under `id` and returns its open answer stream.
async fn open_slow(c: &RawClient, id: i64, ms: u64) -> SseStream {
    let resp = bounded(
        10,
        c.open_call_stream_with_id(id, "slow", json!({ "ms": ms }), None),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    SseStream::new(resp)
}

/// A 2025-11-25 client that reuses the id of a call still in progress in its session (MCP
/// forbids it): rmcp would keep one answer slot for both, leaving one unanswered until the call
/// deadline, and those timeouts would open the tool's circuit for everyone. The reuse is
/// refused at once, the first call gets its own answer, and nothing counts as a failure. With a
/// resume grace, a call whose stream the client dropped runs on, held for resumption: its id
/// stays in progress until the tool is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_reused_while_in_progress_is_refused_and_changes_nothing() {
    let ex = spawn_example(&[("MCP_CALL_RESUME_GRACE_MS", "3000")]).await;
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
    let add = |id: i64| {
        let args = json!({"name": "add", "arguments": {"a": 1, "b": 2}});
        bounded(5, c.call_with_id(id, "tools/call", args))
    };
    let refused = |reply: CallReply| {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.error_code(), Some(-32600));
    };
    // The id is free again once the call is over and the server has let go of its request:
    // a bounded wait for that, not a race with rmcp's own clean-up.
    let free_again = |id: i64| async move {
        let deadline = Instant::now() + Duration::from_secs(4);
        loop {
            let r = add(id).await.unwrap();
            if r.status != StatusCode::BAD_REQUEST {
                assert_eq!(r.tool_text(), Some("3"));
                return Instant::now();
            }
            assert!(Instant::now() < deadline, "id {id} never free again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };

    let id = c.next_id();
    let mut stream = open_slow(&c, id, 800).await;
    for _ in 0..3 {
        refused(add(id).await.unwrap());
    }
    // The first call's answer is its own, and arrives.
    let last = bounded(10, stream.next_event_where(|m| m["id"] == json!(id)))
        .await
        .and_then(|e| e.json())
        .expect("the slow call's answer");
    assert!(last["result"].is_object(), "{last}");
    free_again(id).await;

    // The client drops the stream; the tool runs on (held for resumption).
    let id = c.next_id();
    let started = Instant::now();
    drop(open_slow(&c, id, 800).await);
    refused(add(id).await.unwrap());
    let freed = free_again(id).await;
    assert!(
        freed - started >= Duration::from_millis(700),
        "freed while the tool still ran"
    );
    assert_no_failures(&ex, "slow");
    assert_no_failures(&ex, "add");
}

/// Opens call `id` of `progress` (`args`, with a progress token) and reads its stream up to
/// the first progress notification.
async fn progress_until_first(c: &RawClient, id: i64, args: serde_json::Value) -> SseStream {
    let resp = bounded(
        10,
        c.open_call_stream_with_id(id, "progress", args, Some(json!("p"))),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = SseStream::new(resp);
    bounded(
        10,
        stream.next_event_where(|m| m["method"] == "notifications/progress"),
    )
    .await
    .expect("a first progress");
    stream
}

/// Through every layer of the example (auth on), a call's first progress notification reaches
/// the client while the tool still runs (2 s), under both revisions: no layer buffers the
/// stream (2025-11-25 sends the headers at once, 2026-07-28 with the first message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_client_through_the_whole_stack_while_the_tool_runs() {
    let ex = spawn_example(&[("MCP_BEARER_TOKEN", TOKENS)]).await;
    for rev in [Revision::V2025_11_25, Revision::V2026_07_28] {
        let c = client(&ex.url(), rev, ALICE).await;
        let started = Instant::now();
        let args = json!({"steps": 4, "interval_ms": 500});
        let mut stream = progress_until_first(&c, 7, args).await;
        let first = started.elapsed();
        let result = bounded(10, stream.next_event_where(|m| m["id"] == json!(7)))
            .await
            .and_then(|e| e.json())
            .expect("the result");
        let done = started.elapsed();
        assert!(result["result"].is_object(), "{rev:?}: {result}");
        assert!(done >= Duration::from_millis(1900), "{rev:?}: {done:?}");
        // The first notification leaves as the tool starts, the result 2 s later.
        assert!(
            first < Duration::from_millis(1200) && done - first >= Duration::from_millis(1000),
            "{rev:?}: first progress after {first:?}, result after {done:?}"
        );
    }
}

/// What a `progress` call gets while the tool's only bulkhead permit is taken: 503 `-31509`.
async fn assert_progress_busy(c: &RawClient, why: &str) {
    let args = json!({"steps": 1, "interval_ms": 10});
    let r = bounded(10, c.call_tool("progress", args)).await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{why}: {r:?}");
    assert_eq!(r.error_code(), Some(-31509), "{why}: {r:?}");
}

/// Resumes call `id`'s stream after `last`: the resumption is served, the tool's only permit
/// stays taken while it runs (`why`), and its result comes on the resumption.
async fn resumed_result_keeps_permit(c: &RawClient, last: &str, id: i64, why: &str) {
    let resumed = bounded(10, c.open_get_stream_after(last)).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK, "{why}");
    let mut stream = SseStream::new(resumed);
    assert_progress_busy(c, why).await;
    let result = bounded(10, stream.next_event_where(|m| m["id"] == json!(id)))
        .await
        .and_then(|e| e.json())
        .expect("the call's result, on the resumption");
    assert!(result["result"].is_object(), "{result}");
}

/// Waits (bounded) until a `progress` call is served again; returns when.
async fn progress_free_again(c: &RawClient) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let args = json!({"steps": 1, "interval_ms": 10});
        let r = bounded(10, c.call_tool("progress", args)).await.unwrap();
        if r.status != StatusCode::SERVICE_UNAVAILABLE {
            assert!(r.result().is_some(), "{r:?}");
            return Instant::now();
        }
        assert!(Instant::now() < deadline, "the permit never came back");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// With a resume grace, a 2025-11-25 call whose client dropped its stream runs on, held for
/// the client to resume it: it keeps its place in the tool's bulkhead until it is resumed and
/// ends, or until the grace ends and it is cancelled. Otherwise a client could start a tool,
/// drop the stream and start it again, and run it past the tool's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_for_resumption_keeps_its_bulkhead_permit() {
    let ex = spawn_example(&[
        ("MCP_BULKHEAD_MAX_CONCURRENT", "1"),
        ("MCP_BULKHEAD_MAX_QUEUE", "0"),
        ("MCP_CALL_RESUME_GRACE_MS", "1000"),
    ])
    .await;
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;

    // Dropped, then resumed: the permit stays taken until the resumed answer has its result.
    let id = c.next_id();
    let last = bounded(15, c.drop_call_at_first_progress(id)).await;
    assert_progress_busy(&c, "dropped, held for resumption").await;
    let add = bounded(10, c.call_tool("add", json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert_eq!(add.tool_text(), Some("5"), "other tools are not held up");
    resumed_result_keeps_permit(&c, &last, id, "resumed").await;
    progress_free_again(&c).await;

    // Dropped and not resumed: held for the grace (1 s), then cancelled (the tool would take
    // 2 s), and the permit goes with it.
    let id = c.next_id();
    let args = json!({"steps": 20, "interval_ms": 100});
    drop(progress_until_first(&c, id, args).await);
    let dropped = Instant::now();
    assert_progress_busy(&c, "dropped, within the grace").await;
    let freed = progress_free_again(&c).await;
    assert!(
        freed - dropped >= Duration::from_millis(900),
        "freed {:?} after the drop, before the grace ended",
        freed - dropped
    );
}

/// A client away while its call sends far more events than rmcp's default replay buffer (16)
/// gets every one of them when it resumes the call (still running): the example keeps `MCP_REPLAY_EVENTS` (256) per
/// stream. (With rmcp's default the replay would start at the newest 16, the rest lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumption_replays_every_event_sent_while_its_client_was_away() {
    let ex = spawn_example(&[("MCP_CALL_RESUME_GRACE_MS", "5000")]).await;
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
    let id = c.next_id();
    let steps = 100;
    let args = json!({"steps": steps, "interval_ms": 10});
    let resp = bounded(
        10,
        c.open_call_stream_with_id(id, "progress", args, Some(json!("p"))),
    )
    .await
    .unwrap();
    let mut stream = SseStream::new(resp);
    let first = bounded(
        10,
        stream.next_event_where(|m| m["method"] == "notifications/progress"),
    )
    .await
    .expect("a first progress");
    let first_progress = first.json().unwrap()["params"]["progress"]
        .as_f64()
        .unwrap();
    let last = first.id.expect("rmcp numbers its events");
    drop(stream);
    // Away while the tool sends about 50 events (it runs on for 1 s in all: a call that ended
    // meanwhile would leave nothing to replay).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resumed = bounded(10, c.open_get_stream_after(&last)).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let mut resumed = SseStream::new(resumed);
    let mut progress = Vec::new();
    for bad in ["15", "65537", "many", "-1"] {
        let err = support::example::Settings::for_tests(&[("MCP_REPLAY_EVENTS", bad)]).unwrap_err();
        assert!(err.starts_with("MCP_REPLAY_EVENTS"), "{bad}: {err}");
    }
    loop {
        let event = bounded(10, resumed.next_event())
            .await
            .expect("the call's result before the stream ends");
        let Some(m) = event.json() else { continue };
        if m["id"] == json!(id) {
            assert!(m["result"].is_object(), "{m}");
            break;
        }
        if m["method"] == "notifications/progress" {
            progress.push(m["params"]["progress"].as_f64().unwrap());
        }
    }
    let expected: Vec<f64> = (0..=steps)
        .map(f64::from)
        .filter(|p| *p > first_progress)
        .collect();
    assert_eq!(
        progress, expected,
        "every event after the last one read, once, in order"
    );
}

/// A 2025-11-25 client that resumes its call's stream while the answer is still being read
/// (or before the server has seen it go): rmcp moves the rest of the call onto the `GET` and
/// ends the answer early. The call keeps its bulkhead permit until its result has passed on
/// the `GET` (a client could otherwise run a tool past its limit by resuming its own calls),
/// and the early end is no breaker failure (one client could otherwise open a tool's circuit
/// for all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumption_of_an_answer_still_being_read_takes_the_call_over() {
    let ex = spawn_example(&[
        ("MCP_BULKHEAD_MAX_CONCURRENT", "1"),
        ("MCP_BULKHEAD_MAX_QUEUE", "0"),
    ])
    .await;
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
    for round in 0..3 {
        let id = c.next_id();
        let args = json!({"steps": 10, "interval_ms": 100});
        let resp = bounded(
            10,
            c.open_call_stream_with_id(id, "progress", args, Some(json!("p"))),
        )
        .await
        .unwrap();
        let mut first = SseStream::new(resp);
        let progress = bounded(
            10,
            first.next_event_where(|m| m["method"] == "notifications/progress"),
        )
        .await
        .expect("a first progress");
        let last = progress.id.expect("rmcp numbers its events");
        let why = format!("round {round}: the call moved to the resumption keeps its permit");
        resumed_result_keeps_permit(&c, &last, id, &why).await;
        drop(first);
        progress_free_again(&c).await;
    }
    assert_no_failures(&ex, "progress");
}

/// Without a resume grace (the default) a call whose client dropped its stream is cancelled at
/// once. A client that comes back to resume it, as the SDKs do after rmcp's 3 s `retry`, gets
/// what rmcp replays and then a final error for its id (-31499), not a stream that ends
/// without one and leaves it waiting for its own timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_resumption_of_a_cancelled_call_gets_an_error_for_its_id() {
    let ex = spawn_example(&[]).await;
    let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
    let id = c.next_id();
    let last = bounded(15, c.drop_call_at_first_progress(id)).await;
    // The server sees the drop and cancels the call, which gives its permit back (a bounded
    // wait for that, not a race with the drop).
    let deadline = Instant::now() + Duration::from_secs(5);
    while ex.bulkheads.key("progress").is_some_and(|k| k.running > 0) {
        assert!(
            Instant::now() < deadline,
            "the dropped call was never let go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = bounded(10, c.open_get_stream_after(&last)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut stream = SseStream::new(resp);
    let end = bounded(10, stream.next_event_where(|m| m["id"] == json!(id)))
        .await
        .and_then(|e| e.json())
        .expect("a final message for the call's id");
    assert_eq!(end["error"]["code"], -31499, "{end}");
}

/// A 2025-11-25 client that ends its session (`DELETE`) while a call of it runs: rmcp ends
/// the call's stream without a final response. The client's choice again, not a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_client_ends_mid_call_is_not_a_breaker_failure() {
    let ex = spawn_example(&[]).await;
    for _ in 0..2 {
        let c = client(&ex.url(), Revision::V2025_11_25, "unused").await;
        let resp = bounded(10, c.open_call_stream("slow", json!({"ms": 3000})))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut stream = SseStream::new(resp);
        let ended = bounded(10, c.delete_session()).await.unwrap();
        assert_eq!(ended, StatusCode::ACCEPTED);
        ends_early_without_a_message(&mut stream, "rmcp ends the session's call streams").await;
    }
    assert_no_failures(&ex, "slow");
}

/// A client that sends its headers and then trickles the body gets 408 once the body-read
/// deadline passes, with the correlation id, and the connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_arrives_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ex = spawn_example(&[("MCP_BEARER_TOKEN", TOKENS), ("MCP_BODY_TIMEOUT_MS", "300")]).await;
    let url = ex.url();
    let authority = support::authority(&url);
    let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {ALICE}\r\n\
         x-request-id: case-408\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: 200\r\n\r\n{{\"jsonrpc\""
    );
    let started = Instant::now();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after its answer: read to the end (bounded).
    bounded(10, tcp.read_to_end(&mut answer)).await.unwrap();
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("x-request-id: case-408"), "{answer}");
    assert!(answer.contains("\"code\":-31408"), "{answer}");
    assert!(
        answer.contains("\"correlationid\":\"case-408\""),
        "{answer}"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    // A bad value is refused by name; so is one under 100 ms, which would also cut off a
    // request whose head comes in two packets.
    for bad in ["soon", "1", "99", "+300"] {
        let err =
            support::example::Settings::for_tests(&[("MCP_BODY_TIMEOUT_MS", bad)]).unwrap_err();
        assert!(err.starts_with("MCP_BODY_TIMEOUT_MS"), "{err}");
    }
    assert!(support::example::Settings::for_tests(&[("MCP_BODY_TIMEOUT_MS", "100")]).is_ok());
    // A value pasted by mistake (a whole file) is quoted by its start and length, not whole.
    let pasted = "x".repeat(100_000);
    for var in [
        "MCP_MAX_CONNECTIONS",
        "MCP_MAX_BODY_BYTES",
        "MCP_DRAIN_GRACE_MS",
        "MCP_CALL_TIMEOUT_MS",
        "MCP_SSE_KEEPALIVE_SECONDS",
        "MCP_BREAKER_MIN_CALLS",
        "MCP_RATE_LIMIT_TOOLS",
    ] {
        let err = support::example::Settings::for_tests(&[(var, &pasted)]).unwrap_err();
        assert!(
            err.starts_with(var) && err.len() < 400,
            "{var}: {} bytes",
            err.len()
        );
        assert!(err.contains("(100000 characters)"), "{var}: {err}");
    }
    // An address that is not one is quoted, and host names are said not to work.
    let lookup = |k: &str| (k == "MCP_ADDR").then(|| "localhost:8080".to_owned());
    let err = support::example::Settings::from_lookup(lookup).unwrap_err();
    assert!(
        err.contains("\"localhost:8080\"") && err.contains("host names"),
        "{err}"
    );
}

/// A half-open probe runs under the timeout layer: its lease must outlast the longest call,
/// or a slow probe that succeeds is settled as failed. Unset, the example sizes the lease;
/// set too short, it refuses to start.
#[test]
fn the_probe_lease_outlasts_the_longest_call() {
    use support::example::Settings;
    let lease = |vars: &[(&str, &str)]| Settings::for_tests(vars).unwrap().breaker.probe_lease();
    // 60 s deadline + 10 min pause budget + 100 ms grace.
    assert_eq!(lease(&[]), Duration::from_millis(660_100));
    assert_eq!(
        lease(&[
            ("MCP_CALL_TIMEOUT_MS", "1000"),
            ("MCP_CALL_TIMEOUT_MAX_MS", "5000"),
            ("MCP_BULKHEAD_MAX_WAIT_MS", "2000"),
        ]),
        Duration::from_millis(60_000),
        "never below the breaker's default"
    );
    assert_eq!(
        lease(&[
            ("MCP_CALL_TIMEOUT_MS", "1000"),
            ("MCP_CALL_TIMEOUT_MAX_MS", "90000"),
            ("MCP_BULKHEAD_MAX_WAIT_MS", "5000"),
        ]),
        Duration::from_millis(95_100)
    );
    // Without a line no call waits: a wait bound then is a slip, refused.
    let err = Settings::for_tests(&[
        ("MCP_BULKHEAD_MAX_QUEUE", "0"),
        ("MCP_BULKHEAD_MAX_WAIT_MS", "86400000"),
    ])
    .unwrap_err();
    assert!(err.starts_with("MCP_BULKHEAD_MAX_WAIT_MS"), "{err}");
    assert_eq!(
        lease(&[
            ("MCP_CALL_TIMEOUT_MS", "1000"),
            ("MCP_CALL_TIMEOUT_MAX_MS", "90000"),
            ("MCP_BULKHEAD_MAX_QUEUE", "0"),
        ]),
        Duration::from_millis(90_100)
    );
    assert_eq!(
        lease(&[
            ("MCP_CALL_TIMEOUT_MAX_MS", "90000"),
            ("MCP_BREAKER_PROBE_LEASE_MS", "100000"),
        ]),
        Duration::from_millis(100_000),
        "a long enough lease is kept"
    );
    let err = Settings::for_tests(&[("MCP_BREAKER_PROBE_LEASE_MS", "60000")]).unwrap_err();
    assert!(
        err.starts_with("MCP_BREAKER_PROBE_LEASE_MS:") && err.contains("660100 ms"),
        "{err}"
    );
}

/// The example's own accept loop: each request carries the peer's address (the rate limit,
/// keyed by peer without auth, would answer 500 otherwise), and a client that never finishes
/// its request headers is disconnected at the deadline, before any layer could see a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let settings = support::example::Settings::for_tests(&[]).unwrap();
    let app = support::example::app(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(support::example::serve(
        listener,
        app.router,
        support::example::ConnectionLimits {
            header_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        stop.clone(),
        stop.clone(),
        || false,
    ));

    let c = client(
        &format!("http://{addr}/mcp"),
        Revision::V2025_11_25,
        "unused",
    )
    .await;
    let sum = bounded(10, c.call_tool("add", json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert_eq!(sum.tool_text(), Some("5"), "{sum:?}");

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    // Until the server closes: end of stream, or a reset.
    bounded(5, async {
        while let Ok(n) = tcp.read(&mut buf).await
            && n > 0
        {}
    })
    .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    stop.cancel();
    bounded(5, served).await.unwrap();
}

/// The accept loop serves at most `MCP_MAX_CONNECTIONS` connections (the next waits, and is
/// served once one ends), and a request's headers may take 64 KiB (431 past it). Turning the
/// body's deadline off keeps the headers' deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_loop_bounds_connections_and_header_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The example's accept loop alone (with `vars`) on loopback: its address, its stop switch
    /// and its task.
    async fn accept_loop(
        vars: &[(&str, &str)],
    ) -> (
        std::net::SocketAddr,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let settings = support::example::Settings::for_tests(vars).unwrap();
        let limits = settings.connections;
        let app = support::example::app(settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let served = tokio::spawn(support::example::serve(
            listener,
            app.router,
            limits,
            stop.clone(),
            stop.clone(),
            || false,
        ));
        (addr, stop, served)
    }
    /// Sends `GET /healthz` and reads what comes back (empty: the server closed).
    async fn ask_health(tcp: &mut tokio::net::TcpStream) -> std::io::Result<String> {
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut buf = vec![0u8; 1024];
        let n = tcp.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    async fn health(tcp: &mut tokio::net::TcpStream) -> String {
        ask_health(tcp).await.unwrap()
    }
    /// Two connections, each answered once (and left open).
    async fn two_served(addr: std::net::SocketAddr) -> [tokio::net::TcpStream; 2] {
        let mut both = [
            tokio::net::TcpStream::connect(addr).await.unwrap(),
            tokio::net::TcpStream::connect(addr).await.unwrap(),
        ];
        for tcp in &mut both {
            assert!(bounded(5, health(tcp)).await.starts_with("HTTP/1.1 200"));
        }
        both
    }

    const TWO: &[(&str, &str)] = &[
        ("MCP_MAX_CONNECTIONS", "2"),
        ("MCP_MAX_CONNECTIONS_PER_IP", "2"),
    ];
    let limits = support::example::Settings::for_tests(TWO)
        .unwrap()
        .connections;
    assert_eq!((limits.max_connections, limits.max_per_ip), (2, 2));
    let (addr, stop, served) = accept_loop(TWO).await;
    // Two idle connections take both slots.
    let [idle1, idle2] = two_served(addr).await;
    // A third is not served while they stay open…
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    let waiting = tokio::spawn(async move {
        let answer = health(&mut third).await;
        (answer, third)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served past the connection limit");
    // …and is once one of them ends.
    drop(idle1);
    let (answer, mut third) = bounded(5, waiting).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // 64 KiB of headers at most.
    drop(idle2);
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nx-pad: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.write_all(big.as_bytes()).await;
    let mut buf = vec![0u8; 1024];
    let n = bounded(5, tcp.read(&mut buf)).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        bounded(5, health(&mut third))
            .await
            .starts_with("HTTP/1.1 200")
    );
    stop.cancel();
    drop((tcp, third));
    bounded(5, served).await.unwrap();

    let off = support::example::Settings::for_tests(&[("MCP_BODY_TIMEOUT_MS", "0")]).unwrap();
    assert_eq!(off.connections.header_timeout, Duration::from_secs(30));
    assert_eq!(off.connections.max_per_ip, 256, "half the 512 connections");
    assert!(
        !off.connections.per_ip_on_loopback,
        "unset: not for loopback peers"
    );
    assert!(limits.per_ip_on_loopback, "set: for every address");
    for var in ["MCP_MAX_CONNECTIONS", "MCP_MAX_CONNECTIONS_PER_IP"] {
        for bad in ["0", "-1", "many", "2000000"] {
            let err = support::example::Settings::for_tests(&[(var, bad)]).unwrap_err();
            assert!(err.starts_with(&format!("{var}:")), "{bad}: {err}");
        }
    }
    // A per-address limit above the total could never apply: refused, not ignored.
    let err = support::example::Settings::for_tests(&[
        ("MCP_MAX_CONNECTIONS", "10"),
        ("MCP_MAX_CONNECTIONS_PER_IP", "11"),
    ])
    .unwrap_err();
    assert!(
        err.starts_with("MCP_MAX_CONNECTIONS_PER_IP:") && err.contains("(10)"),
        "{err}"
    );

    // One address may hold `MCP_MAX_CONNECTIONS_PER_IP` of the connections: the next is closed
    // at once, while there is room for others.
    let (addr, stop, served) = accept_loop(&[
        ("MCP_MAX_CONNECTIONS", "8"),
        ("MCP_MAX_CONNECTIONS_PER_IP", "2"),
    ])
    .await;
    let [first, second] = two_served(addr).await;
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Closed without an answer: end of stream, or a reset.
    let read = bounded(5, ask_health(&mut third)).await;
    assert!(
        read.as_ref().is_ok_and(String::is_empty) || read.is_err(),
        "{read:?}"
    );
    drop(first);
    // Its place is free again once a connection of it ends.
    let freed = async {
        loop {
            let mut next = tokio::net::TcpStream::connect(addr).await.unwrap();
            if ask_health(&mut next).await.is_ok_and(|a| !a.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    bounded(5, freed).await;
    stop.cancel();
    drop(second);
    bounded(5, served).await.unwrap();

    // Unset, the per-address limit (half of 4 here) spares loopback peers: a local proxy, or
    // a local client whose sessions each hold several connections.
    let (addr, stop, served) = accept_loop(&[("MCP_MAX_CONNECTIONS", "4")]).await;
    let [first, second] = two_served(addr).await;
    let [third, fourth] = two_served(addr).await;
    stop.cancel();
    drop((first, second, third, fourth));
    bounded(5, served).await.unwrap();
}

/// rmcp serves only the `Host` values `MCP_ALLOWED_HOSTS` names (loopback names by default),
/// refused before the layers too (an open circuit tells another host nothing), and its body
/// limit follows `MCP_MAX_BODY_BYTES`: a raised limit is the one that applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_and_the_body_limit_reach_rmcp() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_ALLOWED_HOSTS", "mcp.example.com, other.example:8443"),
        ("MCP_MAX_BODY_BYTES", "6291456"),
    ])
    .await;
    let url = ex.url();
    let auth = format!("Bearer {ALICE}");
    let list = |pad: usize| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "pad": "x".repeat(pad)}}})
        .to_string()
    };
    let stateless = |host: &'static str| {
        [
            ("authorization", auth.clone()),
            ("mcp-protocol-version", "2026-07-28".to_owned()),
            ("mcp-method", "tools/list".to_owned()),
            ("host", host.to_owned()),
        ]
    };
    let post = |headers: [(&'static str, String); 4], body: String| {
        let url = url.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            raw_post(&url, &headers, body).await
        }
    };
    let r = post(stateless("mcp.example.com"), list(10)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(stateless("other.example:8443"), list(10)).await;
    assert_eq!(r.status(), StatusCode::OK);
    for host in ["evil.example", "other.example:9999", "127.0.0.1"] {
        let r = post(stateless(host), list(10)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{host}");
    }
    // A host rmcp refuses is refused before the layers: an open circuit says nothing to it.
    let r = reqwest::Client::new()
        .post(ex.server.url_for("/admin/breakers/add/force-open"))
        .header("host", "mcp.example.com")
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "add", "arguments": {"a": 1, "b": 2}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    let call_as = |host: &'static str| {
        let mut h = stateless(host);
        h[2].1 = "tools/call".to_owned();
        let url = url.clone();
        let call = call.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            headers.push(("mcp-name", "add"));
            raw_post(&url, &headers, call).await
        }
    };
    let r = call_as("evil.example").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(
        r.text().await.unwrap(),
        "Forbidden: Host header is not allowed"
    );
    assert_eq!(
        call_as("mcp.example.com").await.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "an allowed host gets the open circuit's answer"
    );
    // 5 MiB is over rmcp's default limit but under the configured one: served.
    let r = post(stateless("mcp.example.com"), list(5 << 20)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Over the configured limit: the inspector's 413 with its JSON-RPC error, at once from the
    // declared length (over a raw socket: a client still sending the body would see the
    // connection close under it).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let authority = support::authority(&url);
        let mut tcp = tokio::net::TcpStream::connect(authority).await.unwrap();
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: mcp.example.com\r\nauthorization: Bearer {ALICE}\r\n\
             content-type: application/json\r\naccept: application/json, text/event-stream\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{{",
            7 << 20
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        bounded(10, tcp.read_to_end(&mut answer)).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("-31413"), "{answer}");
    }

    // The correlation id never takes the header the rate limit keys clients by.
    let err = support::example::Settings::for_tests(&[
        ("MCP_RATE_LIMIT_KEY", "header:X-Client-Key"),
        ("MCP_REQUEST_ID_HEADER", "x-client-key"),
    ])
    .unwrap_err();
    assert!(err.starts_with("MCP_REQUEST_ID_HEADER"), "{err}");
    // Nor can the rate limit key by Authorization: bearer-auth removes it first.
    let err = support::example::Settings::for_tests(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_RATE_LIMIT_KEY", "header:Authorization"),
    ])
    .unwrap_err();
    assert!(err.starts_with("MCP_RATE_LIMIT_KEY"), "{err}");
    assert!(
        support::example::Settings::for_tests(&[("MCP_RATE_LIMIT_KEY", "header:Authorization")])
            .is_err(),
        "auth off strips the header too"
    );

    // The variable's forms, and the default by address.
    use support::example::allowed_hosts;
    let loopback = "127.0.0.1:8080".parse().unwrap();
    let public = "0.0.0.0:8080".parse().unwrap();
    assert_eq!(allowed_hosts(None, loopback), Ok(None));
    assert_eq!(allowed_hosts(None, public), Ok(Some(Vec::new())));
    assert_eq!(allowed_hosts(Some(" * "), loopback), Ok(Some(Vec::new())));
    assert_eq!(
        allowed_hosts(Some("A.example,b.example:80"), public),
        Ok(Some(vec![
            "a.example".to_owned(),
            "b.example:80".to_owned()
        ]))
    );
    assert_eq!(
        allowed_hosts(Some("localhost,127.0.0.1,::1,[::1]:8080"), public),
        Ok(Some(
            ["localhost", "127.0.0.1", "::1", "[::1]:8080"]
                .map(String::from)
                .to_vec()
        ))
    );
    for bad in [
        "a.example,",
        "user@a.example",
        "http://a.example",
        "a b",
        "*.example",
        "a:port",
        // Names no client sends, ports no server has, and a port written oddly.
        ".",
        "-",
        "a..b",
        "a;b",
        "-a.example",
        "localhost:0",
        "localhost:65536",
        "a:+1",
        "a: 80",
        "a:",
        "[::1",
        "[nothost]:80",
        &"a".repeat(300),
        // Only ASCII white space is trimmed.
        "\u{a0}localhost",
        "\u{a0}*",
    ] {
        let err = allowed_hosts(Some(bad), public).unwrap_err();
        assert!(err.starts_with("MCP_ALLOWED_HOSTS"), "{bad}: {err}");
    }
}

/// Set to bytes that are not UTF-8, a variable is an error naming it, in every crate's
/// `from_env` (never "unset": that would turn auth off or leave calls without a deadline).
/// Runs itself again with such variables set (a test cannot set them in its own process).
#[test]
fn every_from_env_refuses_a_value_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    const CHILD: &str = "TOWER_ARMOR_NOT_UTF8_CHILD";
    let vars = [
        "MCP_BEARER_TOKEN",
        "MCP_TOOL_ALLOW",
        "MCP_REQUEST_ID_HEADER",
        "MCP_SSE_KEEPALIVE_SECONDS",
        "MCP_RATE_LIMIT_BURST",
        "MCP_BREAKER_WINDOW",
        "MCP_BULKHEAD_MAX_QUEUE",
        "MCP_CALL_TIMEOUT_MS",
    ];
    if std::env::var_os(CHILD).is_none() {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args(["--exact", "every_from_env_refuses_a_value_that_is_not_utf8"])
            .env(CHILD, "1");
        for var in vars {
            child.env(var, std::ffi::OsStr::from_bytes(b"60\xff"));
        }
        let out = child.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }
    let errors = [
        tower_armor_bearer_auth::BearerAuthLayer::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_bearer_auth::allow::ToolAllowListLayer::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_correlation_id::CorrelationIdLayer::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_sse::SseLayer::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_rate_limit::Builder::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_circuit_breaker::Builder::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_bulkhead::BulkheadLayer::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
        tower_armor_timeout::TimeoutLayer::from_env()
            .map(drop)
            .unwrap_err()
            .to_string(),
    ];
    for (var, err) in vars.iter().zip(&errors) {
        assert!(err.contains(var), "{var}: {err}");
    }
    let err = support::example::Settings::from_env().unwrap_err();
    assert!(err.contains("not valid UTF-8"), "{err}");
}

/// The params of a 2026-07-28 `subscriptions/listen`.
fn listen_params() -> serde_json::Value {
    json!({"notifications": {"toolsListChanged": true}})
}

/// Opens a `subscriptions/listen` stream under `id`; returns at its headers.
async fn listen(c: &RawClient, id: i64) -> Result<reqwest::Response, RawError> {
    c.open_request(id, "subscriptions/listen", listen_params())
        .await
}

/// Reads the subscription's acknowledgement, its first message.
async fn acknowledged(stream: &mut SseStream) {
    let ack = bounded(10, stream.next_message())
        .await
        .expect("an acknowledgement");
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
}

/// A 2026-07-28 `subscriptions/listen` stream through the whole stack is a long-lived stream,
/// not a call: rmcp acknowledges it, the call deadline does not end it, it takes one of its
/// principal's stream slots (returned when the client closes it), keep-alives flow, and the
/// idle timeout ends it with the subscription's final result (a graceful close, for its id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriptions_listen_stream_is_long_lived_through_the_stack() {
    let ex = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_BULKHEAD_STREAMS_PER_PRINCIPAL", "1"),
        ("MCP_CALL_TIMEOUT_MS", "200"),
        ("MCP_SSE_KEEPALIVE_SECONDS", "1"),
        ("MCP_SSE_IDLE_TIMEOUT_SECONDS", "3"),
    ])
    .await;
    let alice = client(&ex.url(), Revision::V2026_07_28, ALICE).await;
    let bob = client(&ex.url(), Revision::V2026_07_28, BOB).await;

    let resp = bounded(10, listen(&alice, 1)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut first = SseStream::new(resp);
    acknowledged(&mut first).await;

    // The principal's one slot is taken; another principal has its own.
    let refused = bounded(
        10,
        alice.call_with_id(2, "subscriptions/listen", listen_params()),
    )
    .await
    .unwrap();
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert_eq!(refused.error_code(), Some(-31509), "{refused:?}");
    assert_eq!(refused.messages()[0]["id"], 2, "{refused:?}");
    let resp = bounded(10, listen(&bob, 3)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);

    // Past the 200 ms call deadline the stream is still open: a keep-alive comes, no message.
    let event = bounded(5, first.next_event()).await.expect("a keep-alive");
    assert!(event.comment, "{event:?}");

    // Closing it gives the slot back.
    drop(first);
    let reopened = async {
        let mut id = 10;
        loop {
            let resp = listen(&alice, id).await.unwrap();
            if resp.status() == StatusCode::OK {
                return (resp, id);
            }
            id += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (resp, second_id) = bounded(5, reopened).await;
    let mut second = SseStream::new(resp);

    // Nothing but keep-alives for 3 s: the idle timeout ends it, with the graceful close.
    let started = Instant::now();
    acknowledged(&mut second).await;
    let close = bounded(10, second.next_message())
        .await
        .expect("a graceful close");
    assert_eq!(close["id"], second_id, "{close}");
    assert_eq!(close["result"]["resultType"], "complete", "{close}");
    let subscription_id = &close["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"];
    assert_eq!(*subscription_id, second_id, "{close}");
    assert_eq!(bounded(10, second.next_message()).await, None);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2000) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

/// The example server run as its `main` runs it (accept loop, drain on a signal), on loopback.
struct Drainable {
    url: String,
    /// The signals `run` drains on (SIGTERM's stand-in): the first starts the drain, a second
    /// ends its grace at once.
    signal: tokio::sync::mpsc::UnboundedSender<()>,
    server: tokio::task::JoinHandle<()>,
    bulkheads: tower_armor_bulkhead::BulkheadStats,
}

async fn run_drainable(vars: &[(&str, &str)], header_timeout: Option<Duration>) -> Drainable {
    // With bearer auth, as a deployment runs it.
    let vars: Vec<(&str, &str)> = [("MCP_BEARER_TOKEN", TOKENS)]
        .into_iter()
        .chain(vars.iter().copied())
        .collect();
    let settings = support::example::Settings::for_tests(&vars).unwrap();
    let app = support::example::app(settings);
    let bulkheads = app.bulkheads.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (signal, on_signal) = tokio::sync::mpsc::unbounded_channel::<()>();
    let first = std::sync::Arc::new(tokio::sync::Mutex::new(on_signal));
    let second = first.clone();
    let limits = support::example::ConnectionLimits {
        header_timeout: header_timeout.unwrap_or(Duration::from_secs(30)),
        ..Default::default()
    };
    let server = tokio::spawn(support::example::run(
        listener,
        app,
        limits,
        async move {
            // A dropped sender counts as the signal, like SIGTERM at a test's end.
            let _ = first.lock().await.recv().await;
        },
        async move {
            if second.lock().await.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        },
    ));
    Drainable {
        url,
        signal,
        server,
        bulkheads,
    }
}

/// SIGTERM drains: listen streams end at once (a 2026-07-28 subscription with its graceful
/// close), new calls are refused with -31510 (also on new connections, which are still taken
/// for follow-ups such as a session's notification) and `/readyz` answers 503, while calls in
/// flight (under both revisions) finish with their results, and a catalogue read right after
/// still gets its answer; then the server returns, once no connection is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_listen_streams_end_and_calls_in_flight_finish() {
    let Drainable {
        url,
        signal,
        server,
        ..
    } = run_drainable(&[], Some(Duration::from_secs(5))).await;

    let legacy = client(&url, Revision::V2025_11_25, ALICE).await;
    let stateless = client(&url, Revision::V2026_07_28, ALICE).await;
    let listen = bounded(10, legacy.open_get_stream()).await.unwrap();
    assert_eq!(listen.status(), StatusCode::OK);
    let mut listen = SseStream::new(listen);
    // (`crate::listen`: the local `listen` is the GET stream.)
    let subscription = bounded(10, crate::listen(&stateless, 1)).await.unwrap();
    let mut subscription = SseStream::new(subscription);
    acknowledged(&mut subscription).await;
    // Calls still running at the signal: a 2025-11-25 `slow` (its headers went out at once) and
    // a 2026-07-28 `progress` (its headers went out with its first progress).
    let mut calls = Vec::new();
    for (c, tool, args) in [
        (&legacy, "slow", json!({"ms": 2500})),
        (
            &stateless,
            "progress",
            json!({"steps": 5, "interval_ms": 500}),
        ),
    ] {
        let id = c.next_id();
        let opened = c.open_call_stream_with_id(id, tool, args, Some(json!("p")));
        let resp = bounded(10, opened).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        calls.push(SseStream::new(resp));
    }
    // A connection that never sent anything (a load balancer's preopened one) is not waited
    // for beyond a moment.
    let authority = support::authority(&url);
    let _preopened = tokio::net::TcpStream::connect(authority).await.unwrap();
    let readyz = url.replace("/mcp", "/readyz");
    let ready = bounded(10, reqwest::Client::new().get(&readyz).send())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    // (Accepted before the signal.)
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    signal.send(()).unwrap();

    // The listen streams end at once: the 2025-11-25 GET without a message, the
    // subscription with its graceful close.
    assert_eq!(bounded(10, listen.next_message()).await, None);
    let close = bounded(10, subscription.next_message())
        .await
        .expect("a graceful close");
    assert_eq!(close["id"], 1, "{close}");
    assert_eq!(close["result"]["resultType"], "complete", "{close}");
    assert_eq!(bounded(10, subscription.next_message()).await, None);
    assert!(started.elapsed() < Duration::from_millis(1000));
    // Connections are still taken, for what concerns the calls in flight: `/readyz` says the
    // server is draining, a new call is refused with -31510, a notification of the session
    // passes (each on a connection of its own: the session's is busy with its call).
    let ready = bounded(10, reqwest::Client::new().get(&readyz).send())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let late = client(&url, Revision::V2026_07_28, ALICE).await;
    let refused = bounded(10, late.call_tool("add", json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.error_code(),
        Some(-31510),
        "{:?}",
        refused.messages()
    );
    let note = bounded(
        10,
        legacy.notify("notifications/cancelled", json!({"requestId": 999})),
    )
    .await
    .unwrap();
    assert_eq!(note.status, StatusCode::ACCEPTED);
    // Nor is one opened during the drain.
    let _idle = tokio::net::TcpStream::connect(authority).await.unwrap();
    // The calls finish with their results.
    for mut call in calls {
        let message = loop {
            let m = bounded(10, call.next_message()).await.expect("a result");
            if m.get("id").is_some() {
                break m;
            }
        };
        assert!(message["result"].is_object(), "{message}");
    }
    // Right after an answer a client may read the catalogue, on a new connection (the Python
    // SDK lists the tools to check a call's result, and fails the call if it cannot): served,
    // under both revisions, although the last call has ended.
    for c in [&legacy, &stateless] {
        let list = bounded(10, c.list_tools()).await.unwrap();
        assert_eq!(list.status, StatusCode::OK, "{:?}", list.messages());
        assert!(
            list.result().is_some_and(|r| r["tools"].is_array()),
            "{:?}",
            list.messages()
        );
    }
    bounded(10, server).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// Calls still running when the drain grace (`MCP_DRAIN_GRACE_MS`) runs out end with a final
/// `-31510` error for their id, whatever the revision and whether headers went out: a
/// 2026-07-28 call that has sent nothing gets 503, a 2025-11-25 call's stream and a
/// 2026-07-28 call's stream that already carried progress get one last event. A call still
/// waiting in the bulkhead's line then never starts: it is refused the same way (rmcp would
/// answer it with a bare 404 once its sessions are cancelled). Then the server returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_drain_grace_end_with_a_final_error_for_their_id() {
    let Drainable {
        url,
        signal,
        server,
        bulkheads,
    } = run_drainable(
        &[
            ("MCP_DRAIN_GRACE_MS", "400"),
            ("MCP_BULKHEAD_MAX_CONCURRENT", "2"),
            ("MCP_BULKHEAD_MAX_QUEUE", "2"),
        ],
        None,
    )
    .await;
    let legacy = client(&url, Revision::V2025_11_25, ALICE).await;
    let stateless = client(&url, Revision::V2026_07_28, ALICE).await;
    // Two `slow` calls hold the two permits of its pool; `progress` has a pool of its own.
    let legacy_id = legacy.next_id();
    let resp = legacy.open_call_stream_with_id(legacy_id, "slow", json!({"ms": 5000}), None);
    let mut legacy_call = SseStream::new(bounded(10, resp).await.unwrap());
    let progress_id = stateless.next_id();
    let resp = stateless.open_call_stream_with_id(
        progress_id,
        "progress",
        json!({"steps": 50, "interval_ms": 100}),
        Some(json!("p")),
    );
    let mut progress_call = SseStream::new(bounded(10, resp).await.unwrap());
    let first = bounded(10, progress_call.next_message()).await.unwrap();
    assert_eq!(first["method"], "notifications/progress", "{first}");
    let waiting = std::sync::Arc::new(client(&url, Revision::V2026_07_28, ALICE).await);
    let [running, quiet, queued] = [waiting.next_id(), waiting.next_id(), waiting.next_id()];
    let slow = |id: i64| {
        let c = waiting.clone();
        tokio::spawn(async move {
            c.call_with_id(
                id,
                "tools/call",
                json!({"name": "slow", "arguments": {"ms": 5000}}),
            )
            .await
        })
    };
    // Runs beside the legacy call and sends nothing (under 2026-07-28 rmcp sends headers with
    // the first message); the next two wait in `slow`'s line.
    let running_call = slow(running);
    let in_pool = |running, queued| {
        let bulkheads = bulkheads.clone();
        async move {
            // Every call in place before the signal (the accept loop stops at it).
            while bulkheads
                .key("slow")
                .is_none_or(|s| (s.running, s.queued) != (running, queued))
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    bounded(5, in_pool(2, 0)).await;
    let quiet_call = slow(quiet);
    bounded(5, in_pool(2, 1)).await;
    let queued_call = slow(queued);
    bounded(5, in_pool(2, 2)).await;
    let started = Instant::now();
    signal.send(()).unwrap();

    let is_shutdown = |m: &serde_json::Value, id: i64| {
        m["id"] == id
            && m["error"]["code"] == -31510
            && m["error"]["message"] == "server shutting down"
    };
    let message = bounded(10, legacy_call.next_message())
        .await
        .expect("a final event");
    assert!(is_shutdown(&message, legacy_id), "{message}");
    assert_eq!(bounded(10, legacy_call.next_message()).await, None);
    let message = bounded(
        10,
        progress_call.next_event_where(|m| m.get("id").is_some()),
    )
    .await
    .and_then(|e| e.json())
    .expect("a final event");
    assert!(is_shutdown(&message, progress_id), "{message}");
    assert_eq!(bounded(10, progress_call.next_message()).await, None);
    for (call, id) in [
        (running_call, running),
        (quiet_call, quiet),
        (queued_call, queued),
    ] {
        let reply = bounded(10, call).await.unwrap().unwrap();
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert!(is_shutdown(&reply.messages()[0], id), "{reply:?}");
    }
    bounded(10, server).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(3000),
        "{took:?}"
    );

    let err = support::example::Settings::for_tests(&[("MCP_DRAIN_GRACE_MS", "soon")]).unwrap_err();
    assert!(err.starts_with("MCP_DRAIN_GRACE_MS"), "{err}");
}

/// The drain's end alone with one 2026-07-28 call that has sent nothing (no stream open to
/// wait for): the call still gets 503 with `-31510` for its id, not the 502 that rescue makes
/// of rmcp's bare 500 for a handler its shutdown cancelled in the same instant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_call_alone_at_the_drain_deadline_gets_the_shutdown_error() {
    for _ in 0..3 {
        let Drainable {
            url,
            signal,
            server,
            ..
        } = run_drainable(&[("MCP_DRAIN_GRACE_MS", "200")], None).await;
        let call = slow_call_7(&url, 5000).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        signal.send(()).unwrap();
        assert_drained(&bounded(10, call).await.unwrap().unwrap());
        bounded(10, server).await.unwrap();
    }
}

/// A 2026-07-28 `slow` call of `ms` milliseconds, id 7, by alice, in a task of its own.
async fn slow_call_7(url: &str, ms: u64) -> tokio::task::JoinHandle<Result<CallReply, RawError>> {
    let c = client(url, Revision::V2026_07_28, ALICE).await;
    tokio::spawn(async move {
        c.call_with_id(
            7,
            "tools/call",
            json!({"name": "slow", "arguments": {"ms": ms}}),
        )
        .await
    })
}

/// The drain's answer to a call that has sent nothing: 503 with `-31510` for its id (7).
fn assert_drained(reply: &CallReply) {
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(reply.error_code(), Some(-31510), "{reply:?}");
    assert_eq!(reply.messages()[0]["id"], 7, "{reply:?}");
}

/// A 2025-11-25 call whose client dropped its stream just before the drain, and will resume it
/// (`MCP_CALL_RESUME_GRACE_MS`), keeps the drained server reachable although no connection is
/// open: the resumption (a new connection, `GET` with `Last-Event-ID`) gets the call's result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_awaiting_resumption_keeps_a_draining_server_reachable() {
    let Drainable {
        url,
        signal,
        server,
        ..
    } = run_drainable(
        &[
            ("MCP_CALL_TIMEOUT_MS", "10000"),
            ("MCP_CALL_RESUME_GRACE_MS", "5000"),
            ("MCP_DRAIN_GRACE_MS", "8000"),
        ],
        None,
    )
    .await;
    let legacy = client(&url, Revision::V2025_11_25, ALICE).await;
    let id = legacy.next_id();
    let last_event_id = bounded(10, legacy.drop_call_at_first_progress(id)).await;
    let started = Instant::now();
    signal.send(()).unwrap();
    // The dropped call's connection is gone and nothing else is open: the server waits for the
    // client to come back rather than exiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resumed = bounded(10, legacy.open_get_stream_after(&last_event_id))
        .await
        .expect("the drained server still takes the resumption");
    assert_eq!(resumed.status(), StatusCode::OK);
    let mut resumed = SseStream::new(resumed);
    let result = bounded(10, resumed.next_event_where(|m| m["id"] == json!(id)))
        .await
        .and_then(|e| e.json())
        .expect("the call's result");
    assert!(result["result"].is_object(), "{result}");
    drop(resumed);
    // Then it exits, well before its grace.
    bounded(10, server).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A second signal during the drain ends the grace at once: a call that would have had a minute
/// ends with the shutdown error for its id within moments, and the server returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_grace_at_once() {
    let Drainable {
        url,
        signal,
        server,
        ..
    } = run_drainable(&[("MCP_DRAIN_GRACE_MS", "60000")], None).await;
    let call = slow_call_7(&url, 30000).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the first signal only starts the grace"
    );
    let started = Instant::now();
    signal.send(()).unwrap();
    assert_drained(&bounded(10, call).await.unwrap().unwrap());
    bounded(10, server).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// A connection opened before the drain that has not sent a whole request head yet gets what a
/// connection opened during the drain gets, one second for its head: one that sends its request
/// just after the signal gets its answer (not a closed connection), and one halfway through its
/// head (a stalled or slow client) is then closed, so it does not hold the drained server up
/// until the grace ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_request_yet_gets_a_second_of_the_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Drainable {
        url,
        signal,
        server,
        ..
    } = run_drainable(&[("MCP_DRAIN_GRACE_MS", "20000")], None).await;
    let authority = support::authority(&url);
    let mut stalled = tokio::net::TcpStream::connect(authority).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut late = tokio::net::TcpStream::connect(authority).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    signal.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    late.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let sent = Instant::now();
    let mut answer = Vec::new();
    bounded(10, late.read_to_end(&mut answer)).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.ends_with("draining\n"),
        "{answer}"
    );
    // One request, then closed at once (not kept alive for the rest of the second).
    assert!(
        sent.elapsed() < Duration::from_millis(700),
        "{:?}",
        sent.elapsed()
    );
    // Closed without an answer once the drain's header deadline has passed.
    let mut rest = Vec::new();
    bounded(10, stalled.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    bounded(10, server).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

/// The example's list of variables (it warns about any other `MCP_*` one) is exactly what
/// `docs/configuration.md` documents, and holds every variable each crate's `from_env` reads.
#[test]
fn the_known_variables_are_the_documented_ones() {
    let docs = include_str!("../docs/configuration.md");
    // The first cell of each table row that names a variable.
    let mut documented: Vec<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `MCP_"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .collect();
    documented.sort_unstable();
    documented.dedup();
    let mut known: Vec<&str> = support::example::ENV_VARS
        .iter()
        .map(|v| &v["MCP_".len()..])
        .collect();
    known.sort_unstable();
    assert_eq!(documented, known);
    let known = support::example::ENV_VARS;
    for crate_vars in [
        &tower_armor_bulkhead::ENV_VARS[..],
        &tower_armor_circuit_breaker::ENV_VARS[..],
        &tower_armor_rate_limit::config::ENV_VARS[..],
        &tower_armor_timeout::ENV_VARS[..],
    ] {
        for v in crate_vars {
            assert!(known.contains(v), "{v} is read but not listed");
        }
    }
}

/// A resume grace not above rmcp's 3 s SSE `retry` is accepted (a client that resumes at once
/// needs less) but warned about at start: the official SDKs wait for the `retry` before they
/// resume, and such a grace cancels their calls just before they come back.
#[test]
fn a_resume_grace_shorter_than_the_sse_retry_is_warned_about() {
    use support::example::Settings;
    let warned = |grace: &str| {
        let capture = support::ts::LogCapture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            Settings::for_tests(&[("MCP_CALL_RESUME_GRACE_MS", grace)]).unwrap();
        });
        capture
            .text()
            .contains("MCP_CALL_RESUME_GRACE_MS is not above the SSE retry")
    };
    assert!(warned("3000"));
    assert!(warned("1000"));
    assert!(!warned("3500"));
    assert!(!warned("0"));
}
