//! Bearer auth and the tool allow-list in front of the real rmcp demo server, over real HTTP on
//! loopback, under both protocol revisions.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder};
use tower_armor_bearer_auth::BearerAuthLayer;
use tower_armor_bearer_auth::allow::{AllowPolicy, ToolAllowListLayer};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{McpRequest, Principal};
use tower_armor_test_support::client::tool_call_params;
use tower_armor_test_support::{
    CallReply, DEMO_TOOLS, DemoStats, RawClient, RawError, Revision, ServerOptions, SseStream,
    TestServer, demo_service, serve, spawn_demo,
};

const ALICE: &str = "alice-Tk7wQ2mZ9xR4";
const BOB: &str = "bob-Jp3vN8cL5sY1";
const CAROL: &str = "carol-Hd6bF2gK8qW3";

async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("test step took longer than its bound")
}

/// What reached the MCP server: one entry per request.
#[derive(Clone, Debug)]
struct Seen {
    authorization: bool,
    principal: Option<String>,
    tool: Option<String>,
}

#[derive(Clone, Default)]
struct Probe(Arc<Mutex<Vec<Seen>>>);

impl Probe {
    fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

impl<S> Layer<S> for Probe {
    type Service = ProbeService<S>;
    fn layer(&self, inner: S) -> ProbeService<S> {
        ProbeService {
            inner,
            probe: self.clone(),
        }
    }
}

/// A tiny layer right in front of rmcp that records what each request carried.
#[derive(Clone)]
struct ProbeService<S> {
    inner: S,
    probe: Probe,
}

impl<S, B> Service<Request<B>> for ProbeService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> S::Future {
        self.probe.0.lock().unwrap().push(Seen {
            authorization: req.headers().contains_key(header::AUTHORIZATION),
            principal: req
                .extensions()
                .get::<Principal>()
                .map(|p| p.name().to_owned()),
            tool: req
                .extensions()
                .get::<McpRequest>()
                .and_then(|f| f.tool().map(str::to_owned)),
        });
        self.inner.call(req)
    }
}

struct Stack {
    server: TestServer,
    probe: Probe,
    stats: Arc<DemoStats>,
}

/// bearer-auth → inspect → allow-list → probe → rmcp, as DESIGN §4 orders them.
async fn stack(json_response: bool) -> Stack {
    let auth = BearerAuthLayer::builder()
        .tokens(&format!("alice:{ALICE},bob:{BOB},carol:{CAROL}"))
        .resource_metadata("http://127.0.0.1/.well-known/oauth-protected-resource")
        .build()
        .unwrap();
    let allow = ToolAllowListLayer::new(AllowPolicy::parse("alice:add,echo;bob:*").unwrap())
        .json_response(json_response);
    let probe = Probe::default();
    let opts = ServerOptions {
        json_response,
        ..ServerOptions::default()
    };
    let stats = Arc::clone(&opts.stats);
    let svc = ServiceBuilder::new()
        .layer(auth)
        .layer(McpInspectLayer::new())
        .layer(allow)
        .layer(probe.clone())
        .service(demo_service(&opts));
    let server = serve(Router::new().nest_service("/mcp", svc)).await;
    Stack {
        server,
        probe,
        stats,
    }
}

async fn client(server: &TestServer, rev: Revision, token: &str) -> RawClient {
    bounded(
        RawClient::new(server.url(), rev)
            .with_bearer(token)
            .connected(),
    )
    .await
    .unwrap_or_else(|e| panic!("{rev}: connect failed: {e}"))
}

fn challenge(reply: &CallReply) -> &str {
    reply.header("www-authenticate").expect("a challenge")
}

fn unauthorized_body(reply: &CallReply) -> &Value {
    let v = reply.json.as_ref().expect("a JSON body");
    assert_eq!(v["error"]["code"], -31401, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_never_reach_the_server() {
    let s = stack(false).await;
    for rev in Revision::ALL {
        let alice = client(&s.server, rev, ALICE).await;
        let reply = bounded(alice.call_tool("add", json!({"a": 2, "b": 3})))
            .await
            .unwrap();
        assert_eq!(reply.tool_text(), Some("5"), "{rev}: {reply:?}");

        // Wrong token.
        let wrong = RawClient::new(s.server.url(), rev).with_bearer("guessed-token");
        let reply = bounded(wrong.call_tool("add", json!({"a": 1, "b": 1})))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{rev}");
        assert_eq!(
            challenge(&reply),
            r#"Bearer realm="mcp", resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource", error="invalid_token", error_description="invalid bearer token""#
        );
        assert_eq!(
            unauthorized_body(&reply)["error"]["data"]["reason"],
            "unknown_token"
        );
        if rev == Revision::V2025_11_25 {
            match bounded(
                RawClient::new(s.server.url(), rev)
                    .with_bearer("guessed-token")
                    .connected(),
            )
            .await
            {
                Err(RawError::Handshake { status, .. }) => assert_eq!(status, 401),
                other => panic!("initialize with a wrong token: {other:?}"),
            }
        }

        // No token: the challenge without an error code.
        let anonymous = RawClient::new(s.server.url(), rev);
        let reply = bounded(anonymous.call_tool("add", json!({"a": 1, "b": 1})))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(
            !challenge(&reply).contains("error="),
            "{}",
            challenge(&reply)
        );
        unauthorized_body(&reply);

        // Malformed header.
        let malformed = RawClient::new(s.server.url(), rev)
            .with_header("authorization", &format!("Bearer  {ALICE}"));
        let reply = bounded(malformed.call_tool("add", json!({"a": 1, "b": 1})))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            unauthorized_body(&reply)["error"]["data"]["reason"],
            "whitespace"
        );
    }
    // GET and DELETE need auth too.
    let alice = client(&s.server, Revision::V2025_11_25, ALICE).await;
    let mut thief = RawClient::new(s.server.url(), Revision::V2025_11_25);
    thief.set_session_id(alice.session_id().map(str::to_owned));
    let get = bounded(thief.open_get_stream()).await.unwrap();
    assert_eq!(get.status(), 401);
    assert_eq!(bounded(thief.delete_session()).await.unwrap(), 401);

    let seen = s.probe.all();
    assert!(!seen.is_empty());
    for entry in &seen {
        assert!(
            !entry.authorization,
            "Authorization reached the server: {seen:?}"
        );
        assert_eq!(entry.principal.as_deref(), Some("alice"), "{seen:?}");
    }
}

/// The answer of rmcp itself (no layers) for a session it does not know.
async fn rmcp_unknown_session(raw: &TestServer) -> [(StatusCode, Option<String>, Vec<u8>); 3] {
    let mut c = RawClient::new(raw.url(), Revision::V2025_11_25);
    c.set_session_id(Some("no-such-session".into()));
    answers_for_session(&c).await
}

async fn answers_for_session(c: &RawClient) -> [(StatusCode, Option<String>, Vec<u8>); 3] {
    async fn read(r: reqwest::Response) -> (StatusCode, Option<String>, Vec<u8>) {
        let status = r.status();
        let ct = r
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        (status, ct, r.bytes().await.unwrap().to_vec())
    }
    let post = bounded(c.request("tools/list", json!({})).send())
        .await
        .unwrap();
    let get = bounded(c.open_get_stream()).await.unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    if let Some(s) = c.session_id() {
        headers.insert("mcp-session-id", s.parse().unwrap());
    }
    for (k, v) in c.headers_for(&json!({})).iter() {
        if k == header::AUTHORIZATION {
            headers.insert(k.clone(), v.clone());
        }
    }
    let delete = bounded(c.http().delete(c.url()).headers(headers).send())
        .await
        .unwrap();
    [read(post).await, read(get).await, read(delete).await]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_answer_another_principal_like_an_unknown_session() {
    let s = stack(false).await;
    let raw = spawn_demo(ServerOptions::default()).await;
    let mut want = rmcp_unknown_session(&raw).await;
    assert_eq!(want[0].0, 404, "rmcp's own answer: {want:?}");
    // rmcp answers a DELETE of an unknown session with an empty 202; the layer answers it like
    // the rest (404, as the MCP spec has it for a session id that is not valid).
    assert_eq!(want[2].0, 202, "rmcp's own answer: {want:?}");
    want[2] = want[0].clone();

    let alice = client(&s.server, Revision::V2025_11_25, ALICE).await;
    let alice_session = alice.session_id().expect("a session").to_owned();
    let mut bob = client(&s.server, Revision::V2025_11_25, BOB).await;
    let bob_session = bob.session_id().unwrap().to_owned();
    bob.set_session_id(Some(alice_session.clone()));
    let got = answers_for_session(&bob).await;
    assert_eq!(got, want, "bob presenting alice's session");

    // An id nobody was given gets the same.
    bob.set_session_id(Some("no-such-session".into()));
    assert_eq!(answers_for_session(&bob).await, want);

    // Alice's session is untouched; bob's own works.
    let reply = bounded(alice.call_tool("echo", json!({"text": "still mine"})))
        .await
        .unwrap();
    assert_eq!(reply.tool_text(), Some("still mine"));
    bob.set_session_id(Some(bob_session));
    let reply = bounded(bob.call_tool("add", json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    assert_eq!(reply.tool_text(), Some("3"));

    // Alice ends her session: forgotten.
    assert_eq!(bounded(alice.delete_session()).await.unwrap(), 202);
    let reply = bounded(alice.list_tools()).await.unwrap();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text.as_deref(), Some("Not Found: Session not found"));
}

/// What a client can observe of a `tools/call` answer, with the request id left out.
#[derive(Debug, PartialEq)]
struct Shape {
    status: StatusCode,
    content_type: Option<String>,
    cache_control: Option<String>,
    accel: Option<String>,
    priming_events: usize,
    messages: Vec<Value>,
}

fn shape(reply: &CallReply) -> Shape {
    Shape {
        status: reply.status,
        content_type: reply.content_type().map(str::to_owned),
        cache_control: reply.header("cache-control").map(str::to_owned),
        accel: reply.header("x-accel-buffering").map(str::to_owned),
        priming_events: reply.events.iter().filter(|e| e.is_priming()).count(),
        messages: reply
            .messages()
            .into_iter()
            .map(|mut m| {
                m["id"] = Value::Null;
                m
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_tool_answers_exactly_like_an_unknown_one() {
    for json_response in [false, true] {
        let s = stack(json_response).await;
        for rev in Revision::ALL {
            let alice = client(&s.server, rev, ALICE).await;
            let carol = client(&s.server, rev, CAROL).await;
            // rmcp's own answer for a tool it does not have (carol is unrestricted).
            let unknown = bounded(carol.call_tool("no-such-tool", json!({})))
                .await
                .unwrap();
            assert_eq!(unknown.error_code(), Some(-32602), "{unknown:?}");
            let want = shape(&unknown);
            for tool in ["crash", "slow", "no-such-tool"] {
                let got = bounded(alice.call_tool(tool, json!({"ms": 10})))
                    .await
                    .unwrap();
                assert_eq!(shape(&got), want, "json={json_response} {rev} {tool}");
                assert_eq!(got.error().unwrap()["message"], "tool not found");
            }
            let allowed = bounded(alice.call_tool("echo", json!({"text": "hi"})))
                .await
                .unwrap();
            assert_eq!(allowed.tool_text(), Some("hi"));
        }
        // The refused calls never reached the server.
        let alice_tools: Vec<_> = s
            .probe
            .all()
            .into_iter()
            .filter(|e| e.principal.as_deref() == Some("alice"))
            .filter_map(|e| e.tool)
            .collect();
        assert_eq!(alice_tools, ["echo", "echo"], "json={json_response}");
        assert_eq!(s.stats.slow_started(), 0);
    }
}

/// What is refused before the tool lookup is refused alike for a hidden tool: by the server (a
/// client that does not accept both JSON and SSE: 406; a call without its session: 400; a
/// `tools/call` sent as a notification: 202, no body) or by the inspector (the 2026-07-28
/// `_meta` rules; `arguments` or `_meta` that are not objects). Otherwise a malformed call would tell a hidden tool from an unknown one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_tool_is_refused_like_an_unknown_one_before_the_lookup() {
    let s = stack(false).await;
    for rev in Revision::ALL {
        let alice = client(&s.server, rev, ALICE).await;
        let carol = client(&s.server, rev, CAROL).await;
        let mut cases = vec![
            Early::Accept(Some("application/json")),
            Early::Accept(Some("text/event-stream")),
            Early::Accept(Some("application/json, text/event-stream;q=0")),
            Early::Accept(None),
            Early::Notification,
            Early::ArgumentsNotAnObject,
            Early::MetaNotAnObject,
        ];
        if rev.is_stateless() {
            cases.extend([Early::NoMeta, Early::NoCapabilities, Early::NoVersionHeader]);
        } else {
            cases.push(Early::NoSession);
        }
        for case in cases {
            let unknown = refused_early(&carol, "no-such-tool", case).await;
            let want = (shape(&unknown), unknown.text.clone());
            assert!(
                matches!(want.0.status.as_u16(), 400 | 406 | 202),
                "{rev} {case:?}: {unknown:?}"
            );
            for tool in ["slow", "no-such-tool"] {
                let got = refused_early(&alice, tool, case).await;
                assert_eq!(
                    (shape(&got), got.text.clone()),
                    want,
                    "{rev} {case:?} {tool}"
                );
            }
        }
    }
    assert_eq!(s.stats.slow_started(), 0);
}

/// How [`refused_early`] spoils a call.
#[derive(Clone, Copy, Debug)]
enum Early {
    /// This `Accept` (none: no header).
    Accept(Option<&'static str>),
    /// Sent as a notification (no id).
    Notification,
    /// Without `Mcp-Session-Id` (2025-11-25).
    NoSession,
    /// Without `_meta` (2026-07-28).
    NoMeta,
    /// Without `_meta`'s client capabilities (2026-07-28).
    NoCapabilities,
    /// Without the `MCP-Protocol-Version` header (2026-07-28).
    NoVersionHeader,
    /// `arguments` a string.
    ArgumentsNotAnObject,
    /// `_meta` a string.
    MetaNotAnObject,
}

/// A `tools/call` of `tool`, spoiled as `case` says.
async fn refused_early(c: &RawClient, tool: &str, case: Early) -> CallReply {
    let mut body = c.body(
        Some(c.next_id()),
        "tools/call",
        tool_call_params(tool, json!({"ms": 10}), None),
    );
    let mut headers = c.headers_for(&body);
    match case {
        Early::Accept(accept) => {
            headers.remove(header::ACCEPT);
            if let Some(a) = accept {
                headers.insert(header::ACCEPT, a.parse().unwrap());
            }
        }
        Early::Notification => {
            body.as_object_mut().unwrap().remove("id");
        }
        Early::NoSession => {
            assert!(headers.remove("mcp-session-id").is_some());
        }
        Early::NoMeta => {
            body["params"].as_object_mut().unwrap().remove("_meta");
        }
        Early::NoCapabilities => {
            let meta = body["params"]["_meta"].as_object_mut().unwrap();
            meta.remove("io.modelcontextprotocol/clientCapabilities");
        }
        Early::NoVersionHeader => {
            assert!(headers.remove("mcp-protocol-version").is_some());
        }
        Early::ArgumentsNotAnObject => body["params"]["arguments"] = json!("x"),
        Early::MetaNotAnObject => body["params"]["_meta"] = json!("x"),
    }
    let builder = c
        .http()
        .post(c.url())
        .headers(headers)
        .body(body.to_string());
    bounded(c.exchange(builder, body.get("id").cloned()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_only_the_allowed_tools() {
    for json_response in [false, true] {
        let s = stack(json_response).await;
        for rev in Revision::ALL {
            let alice = client(&s.server, rev, ALICE).await;
            let reply = bounded(alice.list_tools()).await.unwrap();
            assert_eq!(reply.status, 200);
            let expect_json = json_response && rev.is_stateless();
            assert_eq!(reply.is_sse(), !expect_json, "json={json_response} {rev}");
            let mut names = reply.tool_names();
            names.sort();
            assert_eq!(
                names,
                ["add", "echo"],
                "json={json_response} {rev}: {reply:?}"
            );
            let result = reply.result().unwrap();
            if rev.is_stateless() {
                assert_eq!(result["cacheScope"], "private", "{rev}: {result}");
            } else {
                assert!(result.get("cacheScope").is_none(), "{rev}: {result}");
            }
            // The rest of the tool entries is what the server sent.
            let add = result["tools"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == "add")
                .unwrap();
            assert_eq!(add["inputSchema"]["required"], json!(["a", "b"]));

            // Unrestricted principals see the server's answer.
            for token in [BOB, CAROL] {
                let other = client(&s.server, rev, token).await;
                let reply = bounded(other.list_tools()).await.unwrap();
                assert_eq!(reply.tool_names().len(), DEMO_TOOLS.len(), "{rev}");
                if rev.is_stateless() {
                    // Some principal is restricted: a shared cache must not hand this full
                    // catalogue to them.
                    assert_eq!(reply.result().unwrap()["cacheScope"], "private", "{rev}");
                }
            }
        }
    }
}

/// A restricted principal's GET streams are read by the allow-list (a `Last-Event-ID`
/// resumption may replay a `tools/list` answer; see the mock tests): they still flow, event by
/// event, and resumption still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_principals_get_streams_still_flow() {
    let s = stack(false).await;
    let alice = client(&s.server, Revision::V2025_11_25, ALICE).await;
    let listen = bounded(alice.open_get_stream()).await.unwrap();
    assert_eq!(listen.status(), 200);
    let mut listen = SseStream::new(listen);
    let priming = bounded(listen.next_event()).await.expect("a priming event");
    assert!(priming.is_priming(), "{priming:?}");

    // A call stream broken after its priming event, resumed by GET: the rest of the call,
    // result included, arrives through the filter.
    let resp =
        bounded(alice.open_call_stream_with_id(41, "echo", json!({"text": "resumed"}), None))
            .await
            .unwrap();
    let mut stream = SseStream::new(resp);
    let first = bounded(stream.next_event()).await.expect("a priming event");
    let resume_from = first.id.expect("rmcp numbers its events");
    let answer = bounded(stream.next_message()).await.expect("the answer");
    assert_eq!(answer["result"]["content"][0]["text"], "resumed");
    drop(stream);
    let resumed = bounded(alice.open_get_stream_after(&resume_from))
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    assert_eq!(resumed.headers()[header::CONTENT_TYPE], "text/event-stream");
    drop(listen);
}

/// Behind `nest_service("/mcp", …)` the inner path of `/mcp/healthz` is `/healthz`; rmcp ignores
/// the path, so only a session-less health check may pass without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_health_paths_do_not_open_the_server() {
    let s = stack(false).await;
    let health = format!("{}/healthz", s.server.url());
    for rev in Revision::ALL {
        let anonymous = RawClient::new(health.clone(), rev);
        let reply = bounded(anonymous.call_tool("add", json!({"a": 1, "b": 1})))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{rev}: {reply:?}");
    }
    let alice = client(&s.server, Revision::V2025_11_25, ALICE).await;
    let mut thief = RawClient::new(health, Revision::V2025_11_25);
    thief.set_session_id(alice.session_id().map(str::to_owned));
    let get = bounded(thief.open_get_stream()).await.unwrap();
    assert_eq!(get.status(), 401);
    assert!(
        s.probe.all().iter().all(|e| e.principal.is_some()),
        "{:?}",
        s.probe.all()
    );
}
