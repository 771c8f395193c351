//! `BearerAuth`, `InjectBearer` and `ToolAllowList` against `tower_test` mocks, on paused time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::{Layer, ServiceExt};
use tower_armor_bearer_auth::allow::{AllowPolicy, ToolAllowListLayer};
use tower_armor_bearer_auth::error::{InvalidToken, TokenUnavailable};
use tower_armor_bearer_auth::{
    BearerAuthLayer, ConfigError, FileTokenSource, InjectBearerLayer, RequestHead, check_bind_with,
    default_exempt,
};
use tower_armor_mcp::{
    BoxError, McpRequest, MessageKind, Method, Principal, ProtocolRevision, RequestId, Secret,
};
use tower_test::mock;

type Req = Request<String>;
type Resp = Response<String>;

const SESSION: &str = "mcp-session-id";

fn tmp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tower-armor-bearer-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn auth() -> BearerAuthLayer {
    BearerAuthLayer::builder()
        .tokens("alice:alice-tok,bob:bob-tok")
        .resource_metadata("https://mcp.example/.well-known/oauth-protected-resource")
        .realm("tools")
        .build()
        .unwrap()
}

fn req(auth: Option<&str>) -> Req {
    let mut b = Request::post("/mcp").header(header::ACCEPT, "application/json, text/event-stream");
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(String::new()).unwrap()
}

async fn body_json<B>(resp: Response<B>) -> Value
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap()
}

async fn body_bytes<B>(resp: Response<B>) -> Bytes
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test(start_paused = true)]
async fn each_malformed_header_gets_its_own_401() {
    let cases: &[(&[&str], &str, Option<&str>)] = &[
        (&[], "missing", None),
        // An empty header carries no credentials either.
        (&[""], "missing", None),
        (&["Basic YWxhZGRpbjpvcGVuc2VzYW1l"], "other_scheme", None),
        (&["Bearer"], "empty_token", Some("empty bearer token")),
        (
            &["Bearer  alice-tok"],
            "whitespace",
            Some("unexpected whitespace in Authorization header"),
        ),
        (
            &["Bearer alice-tok,bob-tok"],
            "comma",
            Some("comma in Authorization header"),
        ),
        // Control characters cannot reach a service (`http` refuses them in header values); the
        // parser's own tests cover them. A tab can.
        (&["Bearer\talice-tok"], "whitespace", None),
        (
            &["Bearer alice-tok=="],
            "unknown_token",
            Some("invalid bearer token"),
        ),
        (
            &["Bearer al@ce"],
            "invalid_character",
            Some("bearer token contains a character outside token68"),
        ),
        (
            &["Bearer alice-tok", "Bearer alice-tok"],
            "multiple_headers",
            Some("more than one Authorization header"),
        ),
        (
            &["Bearer not-a-token"],
            "unknown_token",
            Some("invalid bearer token"),
        ),
    ];
    let layer = auth();
    for (values, reason, description) in cases {
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
        assert!(svc.poll_ready().is_ready());
        let mut r = req(None);
        for v in *values {
            let hv = HeaderValue::from_bytes(v.as_bytes()).unwrap();
            r.headers_mut().append(header::AUTHORIZATION, hv);
        }
        let resp = svc.call(r).await.unwrap();
        assert!(
            handle.poll_request().is_pending(),
            "{reason}: reached the inner service"
        );
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{reason}");
        let challenge = resp.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with(r#"Bearer realm="tools", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource""#),
            "{challenge}"
        );
        match (reason, description) {
            (&"missing" | &"other_scheme", _) => {
                assert!(!challenge.contains("error="), "{challenge}")
            }
            (_, Some(d)) => assert!(
                challenge.ends_with(&format!(
                    r#", error="invalid_token", error_description="{d}""#
                )),
                "{challenge}"
            ),
            (_, None) => assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{challenge}"
            ),
        }
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let v = body_json(resp).await;
        assert_eq!(v["error"]["code"], -31401, "{reason}");
        assert_eq!(v["error"]["data"]["reason"], *reason);
        assert_eq!(v["id"], Value::Null);
    }
}

#[tokio::test(start_paused = true)]
async fn oversized_header_is_refused() {
    let layer = BearerAuthLayer::builder()
        .tokens("alice:alice-tok")
        .max_header_bytes(16)
        .build()
        .unwrap();
    let svc = layer.layer(tower::service_fn(|_r: Req| async {
        Ok::<_, BoxError>(Resp::new(String::new()))
    }));
    let resp = svc
        .clone()
        .oneshot(req(Some("Bearer alice-tok")))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "exactly 16 bytes is fine");
    let resp = svc.oneshot(req(Some("Bearer alice-tok1"))).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(body_json(resp).await["error"]["data"]["reason"], "too_long");
}

#[tokio::test(start_paused = true)]
async fn accepted_requests_carry_the_principal_and_no_token() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(auth());
    for (token, who) in [("Bearer alice-tok", "alice"), ("bEaReR bob-tok", "bob")] {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(req(Some(token)));
        let (got, send) = handle.next_request().await.unwrap();
        assert!(got.headers().get(header::AUTHORIZATION).is_none());
        assert_eq!(got.extensions().get::<Principal>().unwrap().name(), who);
        send.send_response(Resp::new("ok".into()));
        let resp = fut.await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(body_bytes(resp).await, "ok");
    }
}

#[tokio::test(start_paused = true)]
async fn exempt_requests_pass_without_a_principal_and_without_the_token() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(auth());
    let preflight = Request::options("/mcp")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(String::new())
        .unwrap();
    let health = Request::get("/healthz")
        .header(header::AUTHORIZATION, "Bearer whatever")
        .body(String::new())
        .unwrap();
    for r in [
        preflight,
        health,
        Request::get("/readyz").body(String::new()).unwrap(),
    ] {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(r);
        let (got, send) = handle.next_request().await.unwrap();
        assert!(got.headers().get(header::AUTHORIZATION).is_none());
        assert!(got.extensions().get::<Principal>().is_none());
        send.send_response(Resp::new(String::new()));
        assert_eq!(fut.await.unwrap().status(), 200);
    }
    // A plain OPTIONS is not a preflight.
    let plain = Request::options("/mcp").body(String::new()).unwrap();
    assert_eq!(svc.call(plain).await.unwrap().status(), 401);

    // A custom predicate replaces the default.
    let layer = BearerAuthLayer::builder()
        .tokens("t0k")
        .exempt(|h: RequestHead<'_>| h.path() == "/metrics" || default_exempt(h))
        .build()
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(Request::get("/metrics").body(String::new()).unwrap());
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Resp::new(String::new()));
    assert_eq!(fut.await.unwrap().status(), 200);
}

/// The exemption predicate runs before `Authorization` is removed: a predicate that logs its
/// view of the request must not log the token.
#[test]
fn the_exemption_view_prints_header_names_only() {
    let req = Request::post("/mcp?x=1")
        .header(header::AUTHORIZATION, "Bearer t0k-s3cret")
        .header("x-api-key", "k3y-s3cret")
        .body(())
        .unwrap();
    let shown = format!(
        "{:?}",
        RequestHead::new(req.method(), req.uri(), req.headers())
    );
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        shown.contains("authorization") && shown.contains("/mcp?x=1"),
        "{shown}"
    );
}

/// Behind `nest_service("/mcp", …)`, `POST /mcp/healthz` reaches the layer as `/healthz`, and
/// the MCP server ignores the path: only session-less `GET`/`HEAD` health checks are exempt.
#[tokio::test(start_paused = true)]
async fn health_paths_exempt_only_session_less_get_and_head() {
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#;
    let refused = [
        Request::post("/healthz")
            .header(header::CONTENT_TYPE, "application/json")
            .body(call.to_owned())
            .unwrap(),
        Request::get("/healthz")
            .header(SESSION, "s-alice")
            .body(String::new())
            .unwrap(),
        Request::head("/readyz")
            .header(SESSION, "s-alice")
            .body(String::new())
            .unwrap(),
        Request::delete("/readyz").body(String::new()).unwrap(),
    ];
    // A server that answers at once, so a request let through fails the test rather than hang.
    let server = auth().layer(tower::service_fn(|_r: Req| async {
        Ok::<_, BoxError>(Resp::new("reached the server".into()))
    }));
    for r in refused {
        let what = format!("{} {}", r.method(), r.uri());
        let resp = server.clone().oneshot(r).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(auth());
    let passed = [
        Request::get("/healthz").body(String::new()).unwrap(),
        Request::head("/readyz").body(String::new()).unwrap(),
        Request::options("/healthz")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(String::new())
            .unwrap(),
    ];
    for r in passed {
        let what = format!("{} {}", r.method(), r.uri());
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(r);
        let (got, send) = handle.next_request().await.unwrap();
        assert!(got.extensions().get::<Principal>().is_none(), "{what}");
        send.send_response(Resp::new(String::new()));
        assert_eq!(fut.await.unwrap().status(), 200, "{what}");
    }

    // Whatever the predicate says, a request naming a session is authenticated (and so checked
    // against the session's principal).
    let layer = BearerAuthLayer::builder()
        .tokens("alice:alice-tok,bob:bob-tok")
        .exempt(|_: RequestHead<'_>| true)
        .build()
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    initialize(&mut svc, &mut handle, "Bearer alice-tok", "s-alice").await;
    let anonymous = Request::get("/mcp")
        .header(SESSION, "s-alice")
        .body(String::new())
        .unwrap();
    for (r, want) in [
        (anonymous, StatusCode::UNAUTHORIZED),
        (
            with_session("Bearer bob-tok", "s-alice", http::Method::GET),
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert!(svc.poll_ready().is_ready());
        // The mock takes a request as soon as it is called: check before awaiting.
        let fut = svc.call(r);
        assert!(handle.poll_request().is_pending(), "reached the server");
        assert_eq!(fut.await.unwrap().status(), want);
    }
    // Without a session id the predicate still decides.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req(None));
    let (got, send) = handle.next_request().await.unwrap();
    assert!(got.extensions().get::<Principal>().is_none());
    send.send_response(Resp::new(String::new()));
    assert_eq!(fut.await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn disabled_auth_passes_everything_but_still_strips_the_token() {
    let layer = BearerAuthLayer::from_lookup(|_| None).unwrap();
    assert!(!layer.is_enabled());
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req(Some("Bearer anything")));
    let (got, send) = handle.next_request().await.unwrap();
    assert!(got.headers().get(header::AUTHORIZATION).is_none());
    assert!(got.extensions().get::<Principal>().is_none());
    send.send_response(Resp::new(String::new()));
    assert_eq!(fut.await.unwrap().status(), 200);
}

fn with_session(auth: &str, session: &str, method: http::Method) -> Req {
    Request::builder()
        .method(method)
        .uri("/mcp")
        .header(header::AUTHORIZATION, auth)
        .header(SESSION, session)
        .body(String::new())
        .unwrap()
}

/// Initializes a session for `token` through `svc`; the mock answers with `session`.
async fn initialize(
    svc: &mut tower_test::mock::Spawn<tower_armor_bearer_auth::BearerAuth<mock::Mock<Req, Resp>>>,
    handle: &mut mock::Handle<Req, Resp>,
    token: &str,
    session: &'static str,
) {
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(req(Some(token)));
    let (_, send) = handle.next_request().await.unwrap();
    let mut r = Resp::new(String::new());
    r.headers_mut()
        .insert(SESSION, HeaderValue::from_static(session));
    send.send_response(r);
    assert_eq!(fut.await.unwrap().status(), 200);
}

/// A POST presenting `session` as `auth` gets the unknown-session 404 from the layer itself:
/// nothing reaches the server.
async fn answered_as_unknown(
    svc: &mut tower_test::mock::Spawn<tower_armor_bearer_auth::BearerAuth<mock::Mock<Req, Resp>>>,
    handle: &mut mock::Handle<Req, Resp>,
    auth: &str,
    session: &str,
) {
    let resp = svc
        .call(with_session(auth, session, http::Method::POST))
        .await
        .unwrap();
    assert!(handle.poll_request().is_pending());
    assert_eq!(resp.status(), 404);
}

#[tokio::test(start_paused = true)]
async fn sessions_are_bound_to_the_principal_that_created_them() {
    let layer = auth();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
    initialize(&mut svc, &mut handle, "Bearer alice-tok", "s-alice").await;

    // Bob presenting alice's session: the unknown-session answer, nothing reaches the server.
    for method in [http::Method::POST, http::Method::GET] {
        let resp = svc
            .call(with_session("Bearer bob-tok", "s-alice", method))
            .await
            .unwrap();
        assert!(handle.poll_request().is_pending());
        assert_eq!(resp.status(), 404);
        assert!(resp.headers().get(header::CONTENT_TYPE).is_none());
        assert_eq!(body_bytes(resp).await, "Not Found: Session not found");
    }
    let resp = svc
        .call(with_session(
            "Bearer bob-tok",
            "s-alice",
            http::Method::DELETE,
        ))
        .await
        .unwrap();
    assert!(
        handle.poll_request().is_pending(),
        "bob cannot delete alice's session"
    );
    // 404 like the others (rmcp would answer an unknown session's DELETE with 202: "ended").
    assert_eq!(resp.status(), 404);
    assert_eq!(body_bytes(resp).await, "Not Found: Session not found");

    // Another service from the same layer shares the table.
    let (mut other, mut other_handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
    assert!(other.poll_ready().is_ready());
    let fut = other.call(with_session(
        "Bearer alice-tok",
        "s-alice",
        http::Method::POST,
    ));
    let (got, send) = other_handle.next_request().await.unwrap();
    assert_eq!(got.headers()[SESSION], "s-alice");
    send.send_response(Resp::new(String::new()));
    assert_eq!(fut.await.unwrap().status(), 200);

    // Alice deletes it: forgotten, so the id is unknown from then on.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(with_session(
        "Bearer alice-tok",
        "s-alice",
        http::Method::DELETE,
    ));
    let (_, send) = handle.next_request().await.unwrap();
    let mut r = Resp::new(String::new());
    *r.status_mut() = StatusCode::ACCEPTED;
    send.send_response(r);
    assert_eq!(fut.await.unwrap().status(), 202);
    answered_as_unknown(&mut svc, &mut handle, "Bearer alice-tok", "s-alice").await;
}

/// `Mcp-Session-Id` more than once gets the inspector's 400 (`-32600`) in whatever order the
/// values come: the server would read the first, so checking one of them would let a principal
/// put another's session first, and answering the first one's 404 would differ by order.
#[tokio::test(start_paused = true)]
async fn a_repeated_session_header_is_refused_in_any_order() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(auth());
    initialize(&mut svc, &mut handle, "Bearer alice-tok", "s-alice").await;
    initialize(&mut svc, &mut handle, "Bearer bob-tok", "s-bob").await;
    let mut bodies = Vec::new();
    for values in [
        ["s-bob", "s-alice"],
        ["s-alice", "s-bob"],
        ["bogus", "s-alice"],
        ["s-alice", "s-alice"],
    ] {
        for method in [http::Method::POST, http::Method::GET, http::Method::DELETE] {
            let mut r = with_session("Bearer alice-tok", values[0], method.clone());
            r.headers_mut()
                .append(SESSION, HeaderValue::from_static(values[1]));
            let resp = svc.call(r).await.unwrap();
            assert!(handle.poll_request().is_pending(), "{values:?} {method}");
            assert_eq!(resp.status(), 400, "{values:?} {method}");
            let v = body_json(resp).await;
            assert_eq!(v["error"]["code"], -32600, "{values:?}");
            bodies.push(v);
        }
    }
    // Under the stateless revision too (where one would be removed, not checked), as the
    // inspector answers it with auth off.
    let mut r = with_session("Bearer alice-tok", "s-alice", http::Method::POST);
    r.headers_mut()
        .append(SESSION, HeaderValue::from_static("s-bob"));
    r.headers_mut().insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2026-07-28"),
    );
    let resp = svc.call(r).await.unwrap();
    assert!(handle.poll_request().is_pending());
    assert_eq!(resp.status(), 400);
    bodies.push(body_json(resp).await);
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    // Nothing was forgotten or rebound: each owner still has its session.
    for (token, session) in [("Bearer alice-tok", "s-alice"), ("Bearer bob-tok", "s-bob")] {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(with_session(token, session, http::Method::POST));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Resp::new(String::new()));
        assert_eq!(fut.await.unwrap().status(), 200);
    }
}

/// Under the stateless revision the server ignores `Mcp-Session-Id` (except on `initialize`,
/// which would join the session it names): the layer removes the header from a 2026-07-28
/// request instead of checking it, so a stale or another principal's id neither gets the
/// unknown-session answer nor reaches the server, and the request's 404 (an unknown method
/// there) forgets no binding.
#[tokio::test(start_paused = true)]
async fn a_stateless_request_is_not_held_to_a_session() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(auth());
    initialize(&mut svc, &mut handle, "Bearer alice-tok", "s-alice").await;
    let stateless = |auth: &str, session: &str| {
        let mut r = with_session(auth, session, http::Method::POST);
        r.headers_mut().insert(
            "mcp-protocol-version",
            HeaderValue::from_static("2026-07-28"),
        );
        r
    };
    for (who, session) in [("Bearer bob-tok", "s-alice"), ("Bearer alice-tok", "stale")] {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(stateless(who, session));
        let (got, send) = handle.next_request().await.unwrap();
        assert!(got.headers().get(SESSION).is_none(), "{session}");
        let mut r = Resp::new(String::new());
        *r.status_mut() = StatusCode::NOT_FOUND;
        send.send_response(r);
        assert_eq!(fut.await.unwrap().status(), 404);
    }
    // Alice's 2025-11-25 session is still bound to her, and only to her.
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(with_session(
        "Bearer alice-tok",
        "s-alice",
        http::Method::POST,
    ));
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(Resp::new(String::new()));
    assert_eq!(fut.await.unwrap().status(), 200);
    answered_as_unknown(&mut svc, &mut handle, "Bearer bob-tok", "s-alice").await;
}

#[tokio::test(start_paused = true)]
async fn a_404_from_the_server_forgets_the_session() {
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(auth());
    initialize(&mut svc, &mut handle, "Bearer alice-tok", "s-exp").await;
    assert!(svc.poll_ready().is_ready());
    let fut = svc.call(with_session(
        "Bearer alice-tok",
        "s-exp",
        http::Method::POST,
    ));
    let (_, send) = handle.next_request().await.unwrap();
    let mut r = Resp::new("Not Found: Session not found".into());
    *r.status_mut() = StatusCode::NOT_FOUND;
    send.send_response(r);
    assert_eq!(fut.await.unwrap().status(), 404);
    // Forgotten: answered locally now.
    answered_as_unknown(&mut svc, &mut handle, "Bearer alice-tok", "s-exp").await;
}

#[tokio::test(start_paused = true)]
async fn the_session_table_is_bounded() {
    let layer = BearerAuthLayer::builder()
        .tokens("alice:alice-tok")
        .max_sessions(2)
        .build()
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    for s in ["s1", "s2", "s3"] {
        initialize(&mut svc, &mut handle, "Bearer alice-tok", s).await;
    }
    // s1 made room for s3.
    let resp = svc
        .call(with_session("Bearer alice-tok", "s1", http::Method::POST))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    for s in ["s2", "s3"] {
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(with_session("Bearer alice-tok", s, http::Method::POST));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(Resp::new(String::new()));
        assert_eq!(fut.await.unwrap().status(), 200, "{s}");
    }
}

async fn status_for(layer: &BearerAuthLayer, token: &str) -> StatusCode {
    let svc = layer.layer(tower::service_fn(|r: Req| async move {
        let who = r.extensions().get::<Principal>().unwrap().name().to_owned();
        Ok::<_, BoxError>(Resp::new(who))
    }));
    svc.oneshot(req(Some(&format!("Bearer {token}"))))
        .await
        .unwrap()
        .status()
}

#[tokio::test(start_paused = true)]
async fn token_file_is_reread_at_most_every_interval_and_bad_content_keeps_the_old_tokens() {
    let path = tmp_path("tokens");
    std::fs::write(&path, "alice:first-token\n").unwrap();
    let layer = BearerAuthLayer::builder()
        .token_file(&path)
        .reload_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(status_for(&layer, "first-token").await, 200);

    // Rotated (same length, so only the content tells): not seen before the interval.
    std::fs::write(&path, "alice:secnd-token\n").unwrap();
    assert_eq!(status_for(&layer, "secnd-token").await, 401);
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(status_for(&layer, "secnd-token").await, 401);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(status_for(&layer, "secnd-token").await, 200);
    assert_eq!(status_for(&layer, "first-token").await, 401);

    // Empty, half-written and vanished files keep the current tokens.
    // (A file written while it is read is caught by the stats around the read, see the unit
    // tests; partial content left at rest that happens to be valid cannot be told apart.
    // Kubernetes swaps a symlink atomically, and writers should rename into place.)
    for bad in [
        Some(""),
        Some("\n"),
        Some("alice:"),
        Some("alice:thi rd"),
        None,
    ] {
        match bad {
            Some(content) => std::fs::write(&path, content).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(status_for(&layer, "secnd-token").await, 200, "{bad:?}");
    }

    // A Kubernetes-style symlink swap is followed.
    let target = tmp_path("data-v2");
    std::fs::write(&target, "bob:via-symlink\n").unwrap();
    std::os::unix::fs::symlink(&target, &path).unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(status_for(&layer, "via-symlink").await, 200);
    assert_eq!(status_for(&layer, "secnd-token").await, 401);
}

#[test]
fn token_file_must_be_usable_at_start() {
    let missing = tmp_path("nope");
    let e = BearerAuthLayer::from_lookup(|k| {
        (k == "MCP_BEARER_TOKEN_FILE").then(|| missing.display().to_string())
    })
    .unwrap_err();
    assert_eq!(e.setting(), "MCP_BEARER_TOKEN_FILE");
    assert!(e.detail().starts_with("cannot open"), "{e}");

    let empty = tmp_path("empty");
    std::fs::write(&empty, "\n\n").unwrap();
    let e = BearerAuthLayer::from_lookup(|k| {
        (k == "MCP_BEARER_TOKEN_FILE").then(|| empty.display().to_string())
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "MCP_BEARER_TOKEN_FILE: no token");
}

#[test]
fn env_configuration_is_validated_naming_the_variable() {
    fn from(vars: &[(&str, &str)]) -> Result<BearerAuthLayer, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        BearerAuthLayer::from_lookup(move |k| {
            vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }
    let l = from(&[("MCP_BEARER_TOKEN", "alice:a1,bob:b1,c1")]).unwrap();
    assert!(l.is_enabled());
    assert_eq!(l.token_count(), 3);
    assert_eq!(l.principals(), ["alice", "bob", "default"]);
    assert!(!from(&[("MCP_BEARER_TOKEN", "  ")]).unwrap().is_enabled());

    let e = from(&[
        ("MCP_BEARER_TOKEN", "alice:a1"),
        ("MCP_BEARER_TOKEN_FILE", "/x"),
    ])
    .unwrap_err();
    assert_eq!(e.setting(), "MCP_BEARER_TOKEN_FILE");
    let e = from(&[("MCP_BEARER_TOKEN", "alice:sec ret")]).unwrap_err();
    assert_eq!(e.setting(), "MCP_BEARER_TOKEN");
    assert!(!e.to_string().contains("sec"), "{e}");
    for bad in [
        "ftp://x",
        "http://",
        "https:///x",
        "https://x/ y",
        "http://user:pass@x/",
        "/relative",
    ] {
        let e = from(&[
            ("MCP_BEARER_TOKEN", "a1"),
            ("MCP_RESOURCE_METADATA_URL", bad),
        ])
        .unwrap_err();
        assert_eq!(e.setting(), "MCP_RESOURCE_METADATA_URL", "{bad}");
    }
    for good in ["HTTPS://mcp.example/x", "http://127.0.0.1:8080/m"] {
        let ok = from(&[
            ("MCP_BEARER_TOKEN", "a1"),
            ("MCP_RESOURCE_METADATA_URL", good),
        ]);
        assert!(ok.is_ok(), "{good}");
    }
    let e = from(&[("MCP_BEARER_TOKEN", "a1"), ("MCP_AUTH_REALM", "a\"b")]).unwrap_err();
    assert_eq!(e.setting(), "MCP_AUTH_REALM");
    // Checked with auth off too: a bad value does not wait for the day auth is turned on.
    let e = from(&[("MCP_AUTH_REALM", "a\"b")]).unwrap_err();
    assert_eq!(e.setting(), "MCP_AUTH_REALM");
    let e = from(&[("MCP_RESOURCE_METADATA_URL", "/relative")]).unwrap_err();
    assert_eq!(e.setting(), "MCP_RESOURCE_METADATA_URL");
    assert!(!from(&[("MCP_AUTH_REALM", "ok")]).unwrap().is_enabled());

    // Builder errors name the method.
    let e = BearerAuthLayer::builder().build().unwrap_err();
    assert_eq!(e.setting(), "BearerAuthLayer::token");
    let e = BearerAuthLayer::builder()
        .token("bad name", Secret::new("x"))
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "BearerAuthLayer::token");
    let e = BearerAuthLayer::builder()
        .tokens("a")
        .max_sessions(0)
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "BearerAuthLayer::max_sessions");
    let e = BearerAuthLayer::builder()
        .tokens("a")
        .session_stale_after(std::time::Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(e.setting(), "BearerAuthLayer::session_stale_after");
}

#[test]
fn auth_off_refuses_public_addresses_unless_explicitly_allowed() {
    let public = "0.0.0.0:8080".parse().unwrap();
    let local = "127.0.0.1:8080".parse().unwrap();
    let v6 = "[::1]:8080".parse().unwrap();
    let none = |_: &str| None;
    let yes = |_: &str| Some("true".to_owned());
    let junk = |_: &str| Some("maybe".to_owned());
    assert!(check_bind_with(local, false, none).is_ok());
    assert!(check_bind_with(v6, false, none).is_ok());
    assert!(check_bind_with(public, true, none).is_ok());
    // Named after what is missing (the token), not the opt-out nobody set.
    let e = check_bind_with(public, false, none).unwrap_err();
    assert_eq!(e.setting(), "MCP_BEARER_TOKEN");
    assert!(e.to_string().contains("MCP_AUTH_DISABLED=true"), "{e}");
    assert!(check_bind_with(public, false, yes).is_ok());
    let e = check_bind_with(public, false, junk).unwrap_err();
    assert_eq!(e.setting(), "MCP_AUTH_DISABLED");
    assert!(e.to_string().contains("got \"maybe\""), "{e}");
    // A no-break space is part of the value, not trimmed away.
    let nbsp = |_: &str| Some("\u{a0}true".to_owned());
    let e = check_bind_with(public, false, nbsp).unwrap_err();
    assert_eq!(e.setting(), "MCP_AUTH_DISABLED");
    assert!(BearerAuthLayer::disabled().check_bind(local).is_ok());
}

#[tokio::test(start_paused = true)]
async fn inject_replaces_any_inbound_token_and_marks_it_sensitive() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<Req, Resp, _>(InjectBearerLayer::new(Secret::new("upstream-tok")));
    assert!(svc.poll_ready().is_ready());
    let mut r = req(Some("Bearer inbound-client-token"));
    r.headers_mut().append(
        header::AUTHORIZATION,
        HeaderValue::from_static("Basic second"),
    );
    let fut = svc.call(r);
    let (got, send) = handle.next_request().await.unwrap();
    let values: Vec<_> = got
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .collect();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0], "Bearer upstream-tok");
    assert!(values[0].is_sensitive());
    assert!(!format!("{:?}", got.headers()).contains("upstream-tok"));
    send.send_response(Resp::new(String::new()));
    assert_eq!(fut.await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn inject_fails_without_sending_when_the_source_fails() {
    let failing =
        InjectBearerLayer::new(|| -> Result<Secret, BoxError> { Err("vault down".into()) });
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(failing);
    assert!(svc.poll_ready().is_ready());
    let e = svc.call(req(None)).await.unwrap_err();
    assert!(e.downcast_ref::<TokenUnavailable>().is_some(), "{e}");
    assert!(handle.poll_request().is_pending());

    let bad = InjectBearerLayer::new(Secret::new("line\nbreak"));
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(bad);
    assert!(svc.poll_ready().is_ready());
    let e = svc.call(req(None)).await.unwrap_err();
    assert!(e.downcast_ref::<InvalidToken>().is_some(), "{e}");
    assert!(!e.to_string().contains("line"));
    assert!(handle.poll_request().is_pending());

    // What our own server (RFC 6750 `b64token`) would refuse is not sent either; padding is fine.
    for (token, ok) in [
        ("abc,def", false),
        ("abc def", false),
        ("=abc", false),
        ("a\"b", false),
        ("ab;c", false),
        ("tok-é", false),
        ("abc==", true),
        ("a.b_c~d+e/f-g", true),
    ] {
        let (mut svc, mut handle) =
            mock::spawn_layer::<Req, Resp, _>(InjectBearerLayer::new(Secret::new(token)));
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(req(None));
        if ok {
            let (got, send) = handle.next_request().await.unwrap();
            assert_eq!(
                got.headers()[header::AUTHORIZATION],
                format!("Bearer {token}")
            );
            send.send_response(Resp::new(String::new()));
            fut.await.unwrap();
        } else {
            let e = fut.await.unwrap_err();
            assert!(e.downcast_ref::<InvalidToken>().is_some(), "{token}: {e}");
            assert!(handle.poll_request().is_pending(), "{token}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn file_token_source_follows_rotation() {
    let path = tmp_path("client-token");
    std::fs::write(&path, "one\n").unwrap();
    let source = FileTokenSource::new(&path)
        .unwrap()
        .interval(Duration::from_secs(2))
        .unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(InjectBearerLayer::new(source));
    let mut sent = Vec::new();
    for (write, advance) in [
        (None, 0),
        (Some("two"), 1),
        (None, 1),
        (Some(""), 2),
        (Some("three"), 2),
    ] {
        if let Some(w) = write {
            std::fs::write(&path, w).unwrap();
        }
        tokio::time::advance(Duration::from_secs(advance)).await;
        assert!(svc.poll_ready().is_ready());
        let fut = svc.call(req(None));
        let (got, send) = handle.next_request().await.unwrap();
        sent.push(
            got.headers()[header::AUTHORIZATION]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        send.send_response(Resp::new(String::new()));
        fut.await.unwrap();
    }
    assert_eq!(
        sent,
        [
            "Bearer one",
            "Bearer one",
            "Bearer two",
            "Bearer two",
            "Bearer three"
        ]
    );
    assert!(FileTokenSource::new(tmp_path("absent")).is_err());
    let zero = FileTokenSource::new(&path)
        .unwrap()
        .interval(Duration::from_millis(99))
        .unwrap_err();
    assert_eq!(zero.setting(), "FileTokenSource::interval");

    // An interval too long for the clock means "never re-read", not a panic.
    std::fs::write(&path, "four").unwrap();
    let source = FileTokenSource::new(&path)
        .unwrap()
        .interval(Duration::MAX)
        .unwrap();
    std::fs::write(&path, "five").unwrap();
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(
        tower_armor_mcp::TokenSource::token(&source)
            .unwrap()
            .expose(),
        "four"
    );
}

fn facts_call(tool: &str, session: bool) -> McpRequest {
    let f = McpRequest::new(
        MessageKind::Request,
        Some(Method::ToolsCall),
        Some(RequestId::Number(9)),
    )
    .with_name(tool);
    if session {
        f.with_revision(ProtocolRevision::V2025_11_25)
            .with_session_id(HeaderValue::from_static("s"))
    } else {
        f.with_revision(ProtocolRevision::V2026_07_28)
    }
}

#[tokio::test(start_paused = true)]
async fn allow_list_answers_denied_calls_locally_in_the_servers_form() {
    let policy = AllowPolicy::parse("alice:add").unwrap();
    for (json, session, want_ct, want_body) in [
        (
            false,
            true,
            "text/event-stream",
            "data: \nretry: 3000\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602,\"message\":\"tool not found\"}}\n\n",
        ),
        (
            false,
            false,
            "text/event-stream",
            "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602,\"message\":\"tool not found\"}}\n\n",
        ),
        (
            true,
            false,
            "application/json",
            "{\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602,\"message\":\"tool not found\"}}",
        ),
        (
            true,
            true,
            "text/event-stream",
            "data: \nretry: 3000\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"error\":{\"code\":-32602,\"message\":\"tool not found\"}}\n\n",
        ),
    ] {
        let layer = ToolAllowListLayer::new(policy.clone()).json_response(json);
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
        assert!(svc.poll_ready().is_ready());
        let mut r = req(None);
        r.extensions_mut().insert(Principal::new("alice"));
        r.extensions_mut().insert(facts_call("crash", session));
        let resp = svc.call(r).await.unwrap();
        assert!(
            handle.poll_request().is_pending(),
            "a denied call never reaches the server"
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], want_ct);
        assert_eq!(body_bytes(resp).await, want_body);

        // An allowed tool, or an unrestricted principal, passes.
        for (who, tool) in [("alice", "add"), ("bob", "crash")] {
            assert!(svc.poll_ready().is_ready());
            let mut r = req(None);
            r.extensions_mut().insert(Principal::new(who));
            r.extensions_mut().insert(facts_call(tool, session));
            let fut = svc.call(r);
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(Resp::new("server".into()));
            assert_eq!(body_bytes(fut.await.unwrap()).await, "server");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn allow_list_refuses_a_denied_call_like_the_server_before_its_lookup() {
    let layer = ToolAllowListLayer::new(AllowPolicy::parse("alice:add").unwrap());
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    for (accept, kind, want_status, want_body) in [
        (
            Some("application/json"),
            MessageKind::Request,
            406,
            NOT_ACCEPTABLE,
        ),
        (None, MessageKind::Request, 406, NOT_ACCEPTABLE),
        (
            Some("application/json, text/event-stream"),
            MessageKind::Notification,
            202,
            "",
        ),
        // Refused on Accept first, as the server does.
        (
            Some("text/event-stream"),
            MessageKind::Notification,
            406,
            NOT_ACCEPTABLE,
        ),
    ] {
        assert!(svc.poll_ready().is_ready());
        let mut r = req(None);
        r.headers_mut().remove(header::ACCEPT);
        if let Some(a) = accept {
            r.headers_mut()
                .insert(header::ACCEPT, HeaderValue::from_static(a));
        }
        r.extensions_mut().insert(Principal::new("alice"));
        let id = (kind == MessageKind::Request).then_some(RequestId::Number(9));
        r.extensions_mut().insert(
            McpRequest::new(kind, Some(Method::ToolsCall), id)
                .with_name("crash")
                .with_revision(ProtocolRevision::V2026_07_28),
        );
        let resp = svc.call(r).await.unwrap();
        assert!(handle.poll_request().is_pending());
        assert_eq!(resp.status(), want_status, "{accept:?} {kind:?}");
        assert!(resp.headers().get(header::CONTENT_TYPE).is_none());
        assert_eq!(body_bytes(resp).await, want_body);
    }
}

/// rmcp's answer to a POST whose `Accept` lacks JSON or SSE.
const NOT_ACCEPTABLE: &str =
    "Not Acceptable: Client must accept both application/json and text/event-stream";

/// rmcp replays a request's events to a `GET` + `Last-Event-ID` resumption (from its event
/// store, or while the request's channel is kept): a replayed `tools/list` answer, whatever its
/// id, must be filtered like the original.
#[tokio::test(start_paused = true)]
async fn allow_list_filters_list_answers_replayed_on_get_streams() {
    let replay = concat!(
        "data: \nid: 0/3\nretry: 3000\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":12,\"result\":{\"tools\":[{\"name\":\"add\"},{\"name\":\"crash\"}]}}\nid: 1/3\n\n",
        ": keep-alive\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":13,\"result\":{\"tools\":[{\"name\":\"slow\"}],\"nextCursor\":\"2\"}}\nid: 0/4\n\n",
    );
    let layer = ToolAllowListLayer::new(AllowPolicy::parse("alice:add").unwrap());
    for (who, resume) in [("alice", true), ("alice", false), ("bob", true)] {
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
        assert!(svc.poll_ready().is_ready());
        let mut b = Request::get("/mcp").header(SESSION, "s");
        if resume {
            b = b.header("last-event-id", "0/3");
        }
        let mut r = b.body(String::new()).unwrap();
        r.extensions_mut().insert(Principal::new(who));
        let fut = svc.call(r);
        let (_, send) = handle.next_request().await.unwrap();
        let mut answer = Resp::new(replay.to_owned());
        answer.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        send.send_response(answer);
        let resp = fut.await.unwrap();
        assert_eq!(resp.status(), 200);
        let text = String::from_utf8(body_bytes(resp).await.to_vec()).unwrap();
        if who == "bob" {
            assert_eq!(text, replay, "unrestricted: untouched");
            continue;
        }
        assert_eq!(
            text,
            concat!(
                "data: \nid: 0/3\nretry: 3000\n\n",
                "data: {\"jsonrpc\":\"2.0\",\"id\":12,\"result\":{\"tools\":[{\"name\":\"add\"}]}}\nid: 1/3\n\n",
                ": keep-alive\n\n",
                "data: {\"jsonrpc\":\"2.0\",\"id\":13,\"result\":{\"tools\":[],\"nextCursor\":\"2\"}}\nid: 0/4\n\n",
            ),
            "resume={resume}"
        );
    }
}

/// A list answer the filter cannot read must not reach a restricted principal: a client may
/// decode a compressed body, or read JSON sent under another type, hidden names and all.
/// A server's answer with this status, `Content-Type` and `Content-Encoding` (when given).
fn answer(status: u16, ct: Option<&'static str>, ce: Option<&'static str>, body: &str) -> Resp {
    let mut answer = Resp::new(body.to_owned());
    *answer.status_mut() = StatusCode::from_u16(status).unwrap();
    for (name, value) in [(header::CONTENT_TYPE, ct), (header::CONTENT_ENCODING, ce)] {
        if let Some(v) = value {
            answer
                .headers_mut()
                .insert(name, HeaderValue::from_static(v));
        }
    }
    answer
}

#[tokio::test(start_paused = true)]
async fn allow_list_fails_closed_on_list_answers_it_cannot_read() {
    let list = r#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"add"},{"name":"crash"}]}}"#;
    let filtered = r#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"add"}]}}"#;
    let layer = ToolAllowListLayer::new(AllowPolicy::parse("alice:add").unwrap());
    // (status, content type, content encoding, body, what alice gets: None = refused)
    type Case<'a> = (
        u16,
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
        Option<&'a str>,
    );
    let cases: [Case<'_>; 10] = [
        (200, Some("application/json"), Some("gzip"), list, None),
        (
            200,
            Some("application/json"),
            Some("identity, gzip"),
            list,
            None,
        ),
        (200, Some("text/event-stream"), Some("br"), list, None),
        (200, Some("text/plain"), None, list, None),
        (200, None, None, list, None),
        (200, None, Some("gzip"), "", None),
        // Filtered whatever the status.
        (203, Some("application/json"), None, list, Some(filtered)),
        (
            200,
            Some("application/json"),
            Some("identity"),
            list,
            Some(filtered),
        ),
        // An empty list of codings is no coding.
        (
            200,
            Some("application/json"),
            Some(" , "),
            list,
            Some(filtered),
        ),
        // Nothing to read: passes.
        (200, None, None, "", Some("")),
    ];
    for (status, ct, ce, body, want) in cases {
        for who in ["alice", "bob"] {
            let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
            assert!(svc.poll_ready().is_ready());
            let mut r = req(None);
            r.extensions_mut().insert(Principal::new(who));
            r.extensions_mut().insert(
                McpRequest::new(
                    MessageKind::Request,
                    Some(Method::ToolsList),
                    Some(RequestId::Number(9)),
                )
                .with_revision(ProtocolRevision::V2025_11_25)
                .with_session_id(HeaderValue::from_static("s")),
            );
            let fut = svc.call(r);
            let (_, send) = handle.next_request().await.unwrap();
            send.send_response(answer(status, ct, ce, body));
            let resp = fut.await.unwrap();
            let case = format!("{who} {status} {ct:?} {ce:?}");
            if who == "bob" {
                // Unrestricted under 2025-11-25: nothing to filter, untouched.
                assert_eq!(resp.status(), status, "{case}");
                assert_eq!(body_bytes(resp).await, body, "{case}");
                continue;
            }
            match want {
                Some(want) => {
                    assert_eq!(resp.status(), status, "{case}");
                    assert_eq!(body_bytes(resp).await, want, "{case}");
                }
                None => {
                    assert_eq!(resp.status(), 502, "{case}");
                    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
                    assert!(resp.headers().get(header::CONTENT_ENCODING).is_none());
                    let v = body_json(resp).await;
                    assert_eq!(v["id"], 9, "{case}");
                    assert_eq!(v["error"]["code"], -31502, "{case}");
                }
            }
        }
    }

    // A restricted principal's GET stream, compressed: refused too.
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
    assert!(svc.poll_ready().is_ready());
    let mut r = Request::get("/mcp")
        .header(SESSION, "s")
        .body(String::new())
        .unwrap();
    r.extensions_mut().insert(Principal::new("alice"));
    let fut = svc.call(r);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(answer(
        200,
        Some("text/event-stream"),
        Some("gzip"),
        &format!("data: {list}\n\n"),
    ));
    let resp = fut.await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(
        !String::from_utf8(body_bytes(resp).await.to_vec())
            .unwrap()
            .contains("crash")
    );

    // A GET answer that is neither JSON nor SSE is no MCP stream (a non-MCP route behind the
    // layer), and a JSON array no MCP message: both pass.
    for (ct, body) in [("text/plain", "up 1\n"), ("application/json", "[1,2]")] {
        let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer.clone());
        assert!(svc.poll_ready().is_ready());
        let mut r = Request::get("/metrics").body(String::new()).unwrap();
        r.extensions_mut().insert(Principal::new("alice"));
        let fut = svc.call(r);
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(answer(200, Some(ct), None, body));
        let resp = fut.await.unwrap();
        assert_eq!(resp.status(), 200, "{ct}");
        assert_eq!(body_bytes(resp).await, body, "{ct}");
    }

    // Under 2026-07-28 an unrestricted principal's list answer is marked private too, once
    // anybody is restricted: one that cannot be read cannot be marked, and is refused as well.
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let mut r = req(None);
    r.extensions_mut().insert(Principal::new("bob"));
    r.extensions_mut().insert(
        McpRequest::new(
            MessageKind::Request,
            Some(Method::ToolsList),
            Some(RequestId::Number(9)),
        )
        .with_revision(ProtocolRevision::V2026_07_28),
    );
    let fut = svc.call(r);
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(answer(200, Some("application/json"), Some("gzip"), list));
    assert_eq!(fut.await.unwrap().status(), 502);
}

#[tokio::test(start_paused = true)]
async fn allow_list_refuses_uninspected_posts_of_restricted_principals() {
    let layer = ToolAllowListLayer::new(AllowPolicy::parse("alice:add").unwrap());
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Resp, _>(layer);
    assert!(svc.poll_ready().is_ready());
    let mut r = req(None);
    r.extensions_mut().insert(Principal::new("alice"));
    let resp = svc.call(r).await.unwrap();
    assert!(handle.poll_request().is_pending());
    assert_eq!(resp.status(), 500);
    assert_eq!(body_json(resp).await["error"]["code"], -31500);
}

#[test]
fn allow_list_from_env() {
    let l = ToolAllowListLayer::from_lookup(|k| {
        (k == "MCP_TOOL_ALLOW").then(|| "alice:add,echo;bob:*".to_owned())
    })
    .unwrap();
    assert!(l.policy().allows("alice", "echo"));
    assert!(!l.policy().allows("alice", "slow"));
    let e = ToolAllowListLayer::from_lookup(|_| Some("alice".to_owned())).unwrap_err();
    assert_eq!(e.setting(), "MCP_TOOL_ALLOW");
    assert!(
        ToolAllowListLayer::from_lookup(|_| None)
            .unwrap()
            .policy()
            .is_empty()
    );
}

/// Runs `f` with a subscriber capturing every event at `level` and above; returns the output.
fn captured(level: tracing::Level, f: impl FnOnce()) -> String {
    let capture = tower_armor_test_support::LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(level)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    capture.text()
}

#[test]
fn allow_list_warns_once_about_principals_without_a_token() {
    let auth = BearerAuthLayer::builder()
        .tokens("alice:alice-tok,bob:bob-tok")
        .build()
        .unwrap();
    let policy = AllowPolicy::parse("Alice:add;bob:*;carol:echo").unwrap();
    let log = captured(tracing::Level::WARN, || {
        let layer = ToolAllowListLayer::new(policy.clone()).warn_unknown_principals(&auth);
        assert_eq!(layer.policy(), &policy, "a warning, not a change");
    });
    assert_eq!(log.matches(" WARN ").count(), 1, "{log}");
    assert!(log.contains(r#"principals=["Alice", "carol"]"#), "{log}");
    assert!(!log.contains("-tok"), "{log}");
    // Or refused, naming the variable and the principals (never a token).
    let err = ToolAllowListLayer::new(policy.clone())
        .require_known_principals(&auth)
        .unwrap_err();
    assert_eq!(err.setting(), "MCP_TOOL_ALLOW");
    assert!(err.to_string().contains(r#"["Alice", "carol"]"#), "{err}");
    assert!(!err.to_string().contains("-tok"), "{err}");
    assert!(auth.tokens_are_fixed());
    assert!(
        ToolAllowListLayer::new(AllowPolicy::parse("alice:add").unwrap())
            .require_known_principals(&auth)
            .is_ok()
    );

    // Every named principal has a token: quiet. A token file or auth off: not checked.
    let path = tmp_path("tokens");
    std::fs::write(&path, "bob:bob-tok\n").unwrap();
    let from_file = BearerAuthLayer::builder()
        .token_file(&path)
        .build()
        .unwrap();
    let log = captured(tracing::Level::WARN, || {
        ToolAllowListLayer::new(AllowPolicy::parse("alice:add;bob:echo").unwrap())
            .warn_unknown_principals(&auth);
        ToolAllowListLayer::new(policy.clone()).warn_unknown_principals(&from_file);
        assert!(!from_file.tokens_are_fixed());
        assert!(
            ToolAllowListLayer::new(policy.clone())
                .require_known_principals(&from_file)
                .is_ok(),
            "a token file may bring the name"
        );
        ToolAllowListLayer::new(policy.clone())
            .warn_unknown_principals(&BearerAuthLayer::disabled());
    });
    assert!(log.is_empty(), "{log}");
}

#[test]
fn services_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>(_: &T) {}
    let svc = tower::service_fn(|_r: Req| async { Ok::<_, BoxError>(Resp::new(String::new())) });
    check(&auth().layer(svc));
    check(&InjectBearerLayer::new(Secret::new("t")).layer(svc));
    check(&ToolAllowListLayer::new(AllowPolicy::new()).layer(svc));
    check(&auth());
    let _ = Poll::<()>::Pending;
}

#[test]
fn the_principal_is_recorded_in_the_request_span() {
    use futures_util::FutureExt;

    let log = captured(tracing::Level::INFO, || {
        let svc = auth().layer(tower::service_fn(|_r: Req| async {
            tracing::info!("inside the tool");
            Ok::<_, BoxError>(Resp::new(String::new()))
        }));
        let span = tracing::info_span!("request", principal = tracing::field::Empty);
        let _g = span.enter();
        let resp = svc
            .oneshot(req(Some("Bearer bob-tok")))
            .now_or_never()
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
    });
    assert!(
        log.contains("request{principal=bob}: ") || log.contains("request{principal=\"bob\"}"),
        "{log}"
    );
    assert!(log.contains("inside the tool"), "{log}");
}

type Frame = Result<http_body::Frame<Bytes>, BoxError>;
type Frames = tokio::sync::mpsc::UnboundedSender<Frame>;
type Senders = std::sync::Arc<std::sync::Mutex<Vec<Frames>>>;
type StreamBody = http_body_util::StreamBody<futures_util::stream::BoxStream<'static, Frame>>;

/// A service answering every request with a stream that stays open while its sender lives.
fn streaming() -> (
    Senders,
    impl tower::Service<Req, Response = Response<StreamBody>, Error = BoxError, Future = impl Send>
    + Clone,
) {
    use futures_util::StreamExt;
    let senders = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = senders.clone();
    let svc = tower::service_fn(move |req: Req| {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.lock().unwrap().push(tx);
        // What the inspector puts on a `subscriptions/listen` answer: the request's id (7).
        let listen = req
            .headers()
            .get("mcp-method")
            .is_some_and(|m| m == "subscriptions/listen");
        async move {
            let frames = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed();
            let mut resp = Response::new(http_body_util::StreamBody::new(frames));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            if listen {
                resp.extensions_mut()
                    .insert(tower_armor_mcp::ListenId(RequestId::Number(7)));
            }
            Ok::<_, BoxError>(resp)
        }
    });
    (senders, svc)
}

/// A layer over a token file holding `tokens`, re-read every 5 s. Without session binding: the
/// listen streams of these tests name a session nobody initialized.
fn file_layer(name: &str, tokens: &str) -> (PathBuf, BearerAuthLayer) {
    let path = tmp_path(name);
    std::fs::write(&path, tokens).unwrap();
    let layer = BearerAuthLayer::builder()
        .token_file(&path)
        .reload_interval(Duration::from_secs(5))
        .session_binding(false)
        .build()
        .unwrap();
    (path, layer)
}

fn event(n: usize) -> Frame {
    Ok(http_body::Frame::data(Bytes::from(format!(
        "data: {n}\n\n"
    ))))
}

/// A rotation that removes a token also ends the long-lived streams it opened (a 2025-11-25
/// `GET` listen stream, a 2026-07-28 `subscriptions/listen`, which gets the error answer to its
/// listen request last when it is between two events), at once when the reload comes from
/// another request, or on the stream's own next poll; streams whose token survives the reload,
/// and call streams, go on.
#[tokio::test(start_paused = true)]
async fn a_revoked_token_ends_the_long_lived_streams_it_opened() {
    use http_body::Body as _;

    let (path, layer) = file_layer("tokens", "alice:alice-one\nbob:bob-one\n");
    let (senders, inner) = streaming();
    let svc = layer.layer(inner);
    let open = |method: http::Method, token: &str, headers: &[(&str, &str)]| {
        let mut b = Request::builder()
            .method(method)
            .uri("/mcp")
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        svc.clone().oneshot(b.body(String::new()).unwrap())
    };
    let listen = open(http::Method::GET, "alice-one", &[("mcp-session-id", "s-1")])
        .await
        .unwrap();
    let subscription = open(
        http::Method::POST,
        "alice-one",
        &[("mcp-method", "subscriptions/listen")],
    )
    .await
    .unwrap();
    let call = open(http::Method::POST, "alice-one", &[]).await.unwrap();
    let bobs = open(http::Method::GET, "bob-one", &[("mcp-session-id", "s-1")])
        .await
        .unwrap();
    let cut = open(
        http::Method::POST,
        "alice-one",
        &[("mcp-method", "subscriptions/listen")],
    )
    .await
    .unwrap();
    let mut cut = Box::pin(cut.into_body());
    let mut bodies = [listen, subscription, call, bobs].map(|r| Box::pin(r.into_body()));
    let tx: Vec<Frames> = senders.lock().unwrap().clone();
    assert_eq!(tx.len(), 5);
    // The fifth is a subscription whose last frame ends inside an event.
    tx[4]
        .send(Ok(http_body::Frame::data(Bytes::from_static(b"data: par"))))
        .unwrap();
    assert!(matches!(
        cut.as_mut()
            .poll_frame(&mut std::task::Context::from_waker(std::task::Waker::noop())),
        Poll::Ready(Some(Ok(_)))
    ));

    // Every stream carries events; an idle one is waiting.
    let waker_hits = std::sync::Arc::new(AtomicUsize::new(0));
    struct Hit(std::sync::Arc<AtomicUsize>);
    impl std::task::Wake for Hit {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Hit(waker_hits.clone())));
    let mut cx = std::task::Context::from_waker(&waker);
    for (i, (body, tx)) in bodies.iter_mut().zip(&tx).enumerate() {
        tx.send(event(i)).unwrap();
        let frame = body.as_mut().poll_frame(&mut cx);
        assert!(matches!(frame, Poll::Ready(Some(Ok(_)))), "stream {i}");
        assert!(body.as_mut().poll_frame(&mut cx).is_pending(), "stream {i}");
    }

    // A reload that keeps alice's token (bob's too, under the same names) ends nothing.
    std::fs::write(&path, "alice:alice-one\nbob:bob-one\ncarol:carol-one\n").unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(status_for(&layer, "carol-one").await, 200);
    for (i, (body, tx)) in bodies.iter_mut().zip(&tx).enumerate() {
        tx.send(event(10 + i)).unwrap();
        let frame = body.as_mut().poll_frame(&mut cx);
        assert!(matches!(frame, Poll::Ready(Some(Ok(_)))), "stream {i}");
        assert!(body.as_mut().poll_frame(&mut cx).is_pending(), "stream {i}");
    }

    // Alice's token is rotated out. The reload comes from another request: the idle streams
    // are woken, and alice's long-lived ones end before their next event.
    std::fs::write(&path, "alice:alice-two\nbob:bob-one\n").unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let before = waker_hits.load(Ordering::SeqCst);
    assert_eq!(status_for(&layer, "alice-two").await, 200);
    assert!(
        waker_hits.load(Ordering::SeqCst) > before,
        "the reload wakes the streams watching the tokens"
    );
    for (i, tx) in tx.iter().enumerate() {
        tx.send(event(20 + i)).unwrap();
    }
    // The GET stream just ends; the subscription gets the error answer to its listen
    // request first.
    let last = match bodies[1].as_mut().poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(f))) => f.into_data().unwrap(),
        other => panic!("{other:?}"),
    };
    let last = std::str::from_utf8(&last).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        last.strip_prefix("data: ")
            .and_then(|l| l.strip_suffix("\n\n"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["id"], 7, "{json}");
    assert_eq!(json["error"]["code"], -31401, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{json}"
    );
    for i in [0, 1] {
        assert!(
            matches!(bodies[i].as_mut().poll_frame(&mut cx), Poll::Ready(None)),
            "alice's long-lived stream {i} ended"
        );
        assert!(bodies[i].is_end_stream());
        assert!(matches!(
            bodies[i].as_mut().poll_frame(&mut cx),
            Poll::Ready(None)
        ));
    }
    // Inside an event, nothing of ours could be added: it just ends.
    assert!(matches!(
        cut.as_mut().poll_frame(&mut cx),
        Poll::Ready(None)
    ));
    assert!(
        matches!(
            bodies[2].as_mut().poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ),
        "a call's stream is not cut: it ends with its call"
    );
    assert!(
        matches!(
            bodies[3].as_mut().poll_frame(&mut cx),
            Poll::Ready(Some(Ok(_)))
        ),
        "bob's token is still there"
    );

    // With no other request, the stream's own poll checks the file when a check is due.
    let late = open(http::Method::GET, "bob-one", &[("mcp-session-id", "s-1")])
        .await
        .unwrap();
    let mut late = Box::pin(late.into_body());
    let late_tx = senders.lock().unwrap().last().unwrap().clone();
    assert!(late.as_mut().poll_frame(&mut cx).is_pending());
    std::fs::write(&path, "alice:alice-two\nbob:bob-two\n").unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    late_tx.send(event(30)).unwrap();
    assert!(matches!(
        late.as_mut().poll_frame(&mut cx),
        Poll::Ready(None)
    ));
    assert!(
        matches!(bodies[3].as_mut().poll_frame(&mut cx), Poll::Ready(None)),
        "bob's first stream too"
    );
    // A token given to another principal is revoked for the stream its old holder opened.
    let mine = open(http::Method::GET, "bob-two", &[("mcp-session-id", "s-1")])
        .await
        .unwrap();
    let mut mine = Box::pin(mine.into_body());
    assert!(mine.as_mut().poll_frame(&mut cx).is_pending());
    std::fs::write(&path, "alice:alice-two\ncarol:bob-two\n").unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(matches!(
        mine.as_mut().poll_frame(&mut cx),
        Poll::Ready(None)
    ));
}

/// No answer of ours after the server's own final result of the subscription.
#[tokio::test(start_paused = true)]
async fn a_revoked_listen_stream_gets_no_second_answer() {
    use http_body::Body as _;
    let (path, layer) = file_layer("tokens-final", "alice:alice-one\n");
    let (senders, inner) = streaming();
    let svc = layer.layer(inner);
    let listen = || {
        svc.clone().oneshot(
            Request::post("/mcp")
                .header(header::AUTHORIZATION, "Bearer alice-one")
                .header("mcp-method", "subscriptions/listen")
                .body(String::new())
                .unwrap(),
        )
    };
    let mut done = Box::pin(listen().await.unwrap().into_body());
    let tx: Vec<Frames> = senders.lock().unwrap().clone();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    // The server ends the subscription itself (its final result for the listen request, 7).
    tx[0]
        .send(Ok(http_body::Frame::data(Bytes::from_static(
            b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resultType\":\"complete\"}}\n\n",
        ))))
        .unwrap();
    assert!(matches!(
        done.as_mut().poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    std::fs::write(&path, "alice:alice-two\n").unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(status_for(&layer, "alice-two").await, 200);
    assert!(
        matches!(done.as_mut().poll_frame(&mut cx), Poll::Ready(None)),
        "no second answer for the listen request"
    );
}

/// A token that no `Authorization` header within the layer's limit can carry, a challenge
/// parameter longer than clients take in a header, and a metadata URL whose port no server has
/// are refused when the layer is built.
#[test]
fn settings_that_could_never_work_are_refused() {
    let limit = tower_armor_bearer_auth::DEFAULT_MAX_HEADER_BYTES;
    let fits = "a".repeat(limit - "Bearer ".len());
    assert!(
        BearerAuthLayer::builder()
            .token("alice", fits.as_str())
            .build()
            .is_ok()
    );
    let too_long = format!("{fits}a");
    let e = BearerAuthLayer::builder()
        .token("bob", "short")
        .token("alice", too_long.as_str())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("cannot be presented"), "{e}");
    assert!(!e.to_string().contains(&too_long), "never the token: {e}");
    // With a larger header limit it can be presented.
    assert!(
        BearerAuthLayer::builder()
            .token("alice", too_long.as_str())
            .max_header_bytes(limit * 2)
            .build()
            .is_ok()
    );
    let e = BearerAuthLayer::builder()
        .token("alice", "t")
        .realm("r".repeat(1025))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("at most 1024"), "{e}");
    for url in ["http://a:99999/x", "http://a:0/x", "https://a:65536/"] {
        let e = BearerAuthLayer::builder()
            .token("alice", "t")
            .resource_metadata(url)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("port"), "{url}: {e}");
    }
    assert!(
        BearerAuthLayer::builder()
            .token("alice", "t")
            .resource_metadata("https://a:65535/.well-known/oauth-protected-resource")
            .build()
            .is_ok()
    );
}
