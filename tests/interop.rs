//! Interop: real third-party MCP clients (Python `mcp`, TypeScript `@modelcontextprotocol/sdk`)
//! against the example server (`examples/mcp_server.rs`, every layer on, bearer auth required)
//! over real HTTP on loopback.

mod support;

use support::{Client, run_client, spawn_example};

const TOKEN: &str = "interop-token-7f3a9c";
/// `MCP_BEARER_TOKEN` of the example server: one principal holding [`TOKEN`].
const TOKENS: &str = "interop:interop-token-7f3a9c";

async fn passes(client: Client, mode: &str, protocol: &str) {
    let server = spawn_example(&[("MCP_BEARER_TOKEN", TOKENS)]).await;
    let (v, stderr) = run_client(client, &server.url(), Some(TOKEN), &[]).await;
    assert_eq!(v["ok"], true, "{client:?}: {v}\nstderr:\n{stderr}");
    assert_eq!(v["mode"], mode);
    assert_eq!(v["protocol_version"], protocol);
    assert_eq!(v["add"], "5");
    assert_eq!(v["echo"], "hello interop");
    assert!(v["progress_notifications"].as_u64().unwrap() >= 1, "{v}");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["add", "echo", "progress"] {
        assert!(tools.contains(&t), "{tools:?}");
    }
    assert!(!stderr.contains(TOKEN), "a client logged the token?");
}

async fn refused(client: Client) {
    // With the RFC 9728 metadata URL the MCP authorization spec asks for: a client without an
    // OAuth setup still reports the 401 (nothing listens there, so one that went to fetch it
    // would fail otherwise).
    let metadata = "http://127.0.0.1:9/.well-known/oauth-protected-resource";
    let server = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_RESOURCE_METADATA_URL", metadata),
    ])
    .await;
    let (v, stderr) = run_client(
        client,
        &server.url(),
        Some("not-the-token"),
        &["--expect-unauthorized"],
    )
    .await;
    assert_eq!(v["ok"], true, "{client:?}: {v}\nstderr:\n{stderr}");
    assert_eq!(v["unauthorized"], true);
    assert_eq!(v["status"], 401);
    let challenge = v["www_authenticate"]
        .as_str()
        .unwrap_or_else(|| panic!("{client:?}: no WWW-Authenticate reported: {v}"));
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata}\"")),
        "{challenge}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_legacy_mode() {
    passes(Client::PythonLegacy, "legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_2026_mode() {
    passes(Client::Python2026, "2026-07-28", "2026-07-28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client() {
    passes(Client::TypeScript, "legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_with_the_wrong_token_sees_401() {
    refused(Client::PythonLegacy).await;
    refused(Client::Python2026).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_with_the_wrong_token_sees_401() {
    refused(Client::TypeScript).await;
}

/// The example server with a short call deadline, a breaker that trips after 3 failures and a
/// bulkhead of 2 running + 1 queued calls per tool.
const FAILING: [(&str, &str); 5] = [
    ("MCP_CALL_TIMEOUT_MS", "1500"),
    ("MCP_BREAKER_MIN_CALLS", "3"),
    ("MCP_BREAKER_WINDOW", "5"),
    ("MCP_BULKHEAD_MAX_CONCURRENT", "2"),
    ("MCP_BULKHEAD_MAX_QUEUE", "1"),
];

/// The JSON-RPC error code of one call's outcome, as the client saw it.
fn code(outcome: &serde_json::Value) -> Option<i64> {
    outcome["code"].as_i64()
}

/// What a third-party client sees of our failure answers: the timeout's in-stream (or 504)
/// error, the breaker's and the bulkhead's 503s, each with its local JSON-RPC code, and the
/// session still working after each.
async fn failures(client: Client) {
    let mut vars = FAILING.to_vec();
    vars.push(("MCP_BEARER_TOKEN", TOKENS));
    let server = spawn_example(&vars).await;
    let (v, stderr) = run_client(
        client,
        &server.url(),
        Some(TOKEN),
        &["--scenario", "failures"],
    )
    .await;
    assert_eq!(v["ok"], true, "{client:?}: {v}\nstderr:\n{stderr}");
    // `slow` asked for 5 s; the 1.5 s deadline ends it.
    assert_eq!(code(&v["timeout"]), Some(-31504), "{v}");
    assert!(v["timeout"]["ms"].as_u64().unwrap() < 4_000, "{v}");
    assert_eq!(v["after_timeout"]["text"], "5", "{v}");
    let crash: Vec<Option<i64>> = v["crash"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(
        crash,
        [Some(-32603), Some(-32603), Some(-32603), Some(-31503)],
        "three failures, then the open circuit: {v}"
    );
    assert_eq!(
        v["after_crash"]["text"], "5",
        "`add` has its own breaker: {v}"
    );
    let slow = v["concurrent_slow"].as_array().unwrap();
    let full = slow.iter().filter(|o| code(o) == Some(-31509)).count();
    let done = slow.iter().filter(|o| o["text"].is_string()).count();
    assert_eq!((full, done), (2, 3), "2 running + 1 queued, 2 refused: {v}");
    // Both clients report the HTTP answers: the open circuit's 503 says when to retry.
    let errors = v["http_errors"].as_array().expect("http_errors");
    assert!(
        errors
            .iter()
            .any(|e| e["status"] == 503 && e["retry_after"].is_string()),
        "{v}"
    );
    if client == Client::TypeScript {
        // Its SDK raises the HTTP error itself, with the status.
        assert_eq!(v["crash"][3]["http"], 503, "{v}");
    }
}

/// A client over its quota sees 429 with the local code and `Retry-After`, and can still end its
/// session.
async fn over_quota(client: Client) {
    let server = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_RATE_LIMIT_PER_MINUTE", "1"),
        ("MCP_RATE_LIMIT_BURST", "5"),
    ])
    .await;
    let (v, stderr) = run_client(client, &server.url(), Some(TOKEN), &["--scenario", "rate"]).await;
    assert_eq!(v["ok"], true, "{client:?}: {v}\nstderr:\n{stderr}");
    let outcomes = v["rate"].as_array().unwrap();
    let (last, allowed) = outcomes.split_last().unwrap();
    assert_eq!(code(last), Some(-31429), "{v}");
    assert!(
        !allowed.is_empty(),
        "the burst lets calls through first: {v}"
    );
    assert!(allowed.iter().all(|o| o["text"] == "5"), "{v}");
    if client == Client::TypeScript {
        assert_eq!(last["http"], 429, "{v}");
    }
    let errors = v["http_errors"].as_array().expect("http_errors");
    assert!(
        errors
            .iter()
            .any(|e| e["status"] == 429 && e["retry_after"] == "60"),
        "one request a minute: retry in 60 s: {v}"
    );
    // Each client ends its session with DELETE when it closes; over quota or not, that passes.
    // (The 2025-11-25 runs: a 2026-07-28 client has no session to end.)
    assert!(
        !stderr.contains("Session termination failed: 429")
            && !stderr.contains("Failed to terminate session"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sees_timeout_breaker_and_bulkhead_answers() {
    failures(Client::PythonLegacy).await;
    failures(Client::Python2026).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_sees_timeout_breaker_and_bulkhead_answers() {
    failures(Client::TypeScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_over_quota_sees_429() {
    over_quota(Client::PythonLegacy).await;
    over_quota(Client::Python2026).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_over_quota_sees_429() {
    over_quota(Client::TypeScript).await;
}

/// The Python SDK (2026-07-28) reads a subscription the server's idle timeout ends as a graceful
/// end (the SSE layer closes it with the subscription's final result), not as a lost
/// subscription to re-establish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_sees_its_subscription_end_gracefully() {
    let server = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_SSE_KEEPALIVE_SECONDS", "1"),
        ("MCP_SSE_IDLE_TIMEOUT_SECONDS", "2"),
    ])
    .await;
    let (v, stderr) = run_client(
        Client::Python2026,
        &server.url(),
        Some(TOKEN),
        &["--scenario", "listen"],
    )
    .await;
    assert_eq!(v["ok"], true, "{v}\nstderr:\n{stderr}");
    assert_eq!(v["listen_ended"], "graceful", "{v}\nstderr:\n{stderr}");
    let took = v["listen_s"].as_f64().unwrap();
    assert!(
        (1.5..10.0).contains(&took),
        "ended by the idle timeout: {v}"
    );
}

/// A TCP proxy on loopback in front of `upstream` (`host:port`): it cuts the first connection
/// whose answer carries a progress notification, right after passing that on (a network that
/// drops a call's stream); every other connection passes untouched. Returns its `/mcp` URL.
async fn cutting_proxy(upstream: String) -> (String, tokio::task::JoinHandle<()>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, cut) = (upstream.clone(), Arc::clone(&cut));
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                });
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let progress = buf[..n].windows(22).any(|w| w == b"notifications/progress");
                    if progress && !cut.swap(true, Ordering::SeqCst) {
                        break;
                    }
                }
                // Both directions go: the connection is closed on both sides.
                requests.abort();
            });
        }
    });
    (format!("http://{addr}/mcp"), task)
}

/// A 2025-11-25 SDK client whose call stream the network cuts after the first progress
/// notification, against the example with this resume grace: the SDK resumes after rmcp's 3 s
/// `retry`; returns what it made of the call, then of an `add` on the same session.
async fn cut_call(client: Client, grace_ms: &str) -> serde_json::Value {
    let server = spawn_example(&[
        ("MCP_BEARER_TOKEN", TOKENS),
        ("MCP_CALL_TIMEOUT_MS", "20000"),
        ("MCP_CALL_RESUME_GRACE_MS", grace_ms),
    ])
    .await;
    let url = server.url();
    let authority = url.trim_start_matches("http://").trim_end_matches("/mcp");
    let (proxy_url, proxy) = cutting_proxy(authority.to_owned()).await;
    let (v, stderr) = run_client(client, &proxy_url, Some(TOKEN), &["--scenario", "broken"]).await;
    proxy.abort();
    assert_eq!(v["ok"], true, "{client:?}: {v}\nstderr:\n{stderr}");
    assert_eq!(v["after"]["text"], "5", "the session still works: {v}");
    assert!(v["call"]["progress"].as_u64() >= Some(1), "{v}");
    v
}

/// Without a resume grace the server cancels the call at the cut; the SDK's resumption then
/// ends with an error for the call (-31499) at once, instead of waiting for its own timeout.
/// With a grace longer than the SDK's wait, the resumption gets the call's real result.
async fn a_cut_call_stream_is_resumed_or_answered(client: Client) {
    let cancelled = cut_call(client, "0").await;
    assert_eq!(cancelled["call"]["code"], -31499, "{cancelled}");
    let ms = cancelled["call"]["ms"].as_u64().unwrap();
    assert!(
        ms < 15_000,
        "answered after the SDK's resumption, not its timeout: {ms} ms"
    );
    let resumed = cut_call(client, "8000").await;
    assert_eq!(resumed["call"]["text"], "done after 8 steps", "{resumed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_resumes_a_cut_call_stream_or_gets_an_error() {
    a_cut_call_stream_is_resumed_or_answered(Client::PythonLegacy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_client_resumes_a_cut_call_stream_or_gets_an_error() {
    a_cut_call_stream_is_resumed_or_answered(Client::TypeScript).await;
}
