//! Shared pieces of the root tests: the example server, the interop client runner.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

#[path = "../../examples/mcp_server.rs"]
pub mod example;

pub use tower_armor_test_support as ts;

/// The example server (`examples/mcp_server.rs`) running on 127.0.0.1, with the handles a test
/// needs.
pub struct Example {
    /// The server (dropping it stops it).
    pub server: ts::TestServer,
    /// The app's parts (breaker handle, bulkhead stats, shutdown handles).
    pub breakers: tower_armor_circuit_breaker::CircuitBreakerHandle,
    /// Bulkhead counters.
    pub bulkheads: tower_armor_bulkhead::BulkheadStats,
    /// Ends every open SSE stream.
    pub sse_shutdown: tower_armor_sse::SseShutdown,
}

impl Example {
    /// `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        self.server.url()
    }
}

/// The example server with its defaults plus the given environment variables.
pub async fn spawn_example(vars: &[(&str, &str)]) -> Example {
    let settings = example::Settings::for_tests(vars).expect("valid example settings");
    let app = example::app(settings);
    Example {
        server: ts::serve(app.router).await,
        breakers: app.breakers,
        bulkheads: app.bulkheads,
        sse_shutdown: app.sse_shutdown,
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the pinned third-party clients once per test process (`tests/interop/setup.sh`) and
/// returns the install directory.
pub fn interop_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("tests/interop/setup.sh"))
            .output()
            .expect("run tests/interop/setup.sh");
        assert!(
            out.status.success(),
            "interop setup failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("setup prints the interop dir")
                .trim(),
        )
    })
}

/// Which client to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// Python `mcp`, legacy mode (2025-11-25).
    PythonLegacy,
    /// Python `mcp`, 2026-07-28 mode.
    Python2026,
    /// TypeScript `@modelcontextprotocol/sdk` (2025-11-25).
    TypeScript,
}

/// Runs a client against `url` with these extra arguments (`--expect-unauthorized`,
/// `--scenario failures`, …; see the client scripts) and returns its JSON verdict line and its
/// stderr.
pub async fn run_client(
    client: Client,
    url: &str,
    token: Option<&str>,
    extra_args: &[&str],
) -> (serde_json::Value, String) {
    let dir = interop_dir().clone();
    let url = url.to_string();
    let token = token.map(str::to_string);
    let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = match client {
            Client::PythonLegacy | Client::Python2026 => {
                let mut c = Command::new(dir.join("venv/bin/python"));
                c.arg(repo().join("tests/interop/py_client.py"));
                c.args([
                    "--mode",
                    if matches!(client, Client::PythonLegacy) {
                        "legacy"
                    } else {
                        "2026-07-28"
                    },
                ]);
                c
            }
            Client::TypeScript => {
                let mut c = Command::new("node");
                c.arg(repo().join("tests/interop/ts_client.mjs"));
                c.env("INTEROP_NODE_DIR", dir.join("node"));
                c
            }
        };
        cmd.args(["--url", &url]);
        if let Some(t) = &token {
            cmd.args(["--token", t]);
        }
        cmd.args(&extra_args);
        cmd.env("INTEROP_TIMEOUT_S", "40");
        let out = cmd.output().expect("run interop client");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let line = stdout.lines().last().unwrap_or_default().to_string();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!("{client:?} printed no verdict.\nstdout: {stdout}\nstderr: {stderr}")
        });
        (v, stderr)
    })
    .await
    .expect("client runner")
}

/// The `host:port` of a server URL such as `http://127.0.0.1:8080/mcp`, for raw connections.
pub fn authority(url: &str) -> &str {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap_or(rest)
}

/// Bounds a test step.
pub async fn bounded<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("step timed out")
}
