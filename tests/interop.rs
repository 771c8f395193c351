//! Interop: real third-party MCP clients (Python `mcp`, TypeScript `@modelcontextprotocol/sdk`)
//! against the example server (`examples/mcp_server.rs`, every layer on, bearer auth required)
//! over real HTTP on loopback.

mod support;

use support::{Client, run_client, spawn_example};

const TOKEN: &str = "interop-token-7f3a9c";

async fn passes(client: Client, mode: &str, protocol: &str) {
    let server = spawn_example(&[("MCP_BEARER_TOKEN", &format!("interop:{TOKEN}"))]).await;
    let (v, stderr) = run_client(client, &server.url(), Some(TOKEN), false).await;
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
    let server = spawn_example(&[("MCP_BEARER_TOKEN", &format!("interop:{TOKEN}"))]).await;
    let (v, stderr) = run_client(client, &server.url(), Some("not-the-token"), true).await;
    assert_eq!(v["ok"], true, "{client:?}: {v}\nstderr:\n{stderr}");
    assert_eq!(v["unauthorized"], true);
    assert_eq!(v["status"], 401);
    if let Some(challenge) = v.get("www_authenticate").and_then(|c| c.as_str()) {
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
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
