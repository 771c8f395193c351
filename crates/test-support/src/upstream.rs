//! A scripted upstream: an HTTP server whose answers a test lines up in advance.

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, body::Body, extract::Request, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::server::{TestServer, serve};

/// Placeholder replaced by the received request's JSON-RPC id: a JSON string equal to it
/// anywhere in a [`Step::Json`] body, and the quoted text `"$request_id"` in
/// [`Step::Sse`] events, become the id (`null` when the request had none).
pub const REQUEST_ID: &str = "$request_id";

/// Largest request body the upstream reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Step {
    /// `application/json` answer after `delay`.
    Json {
        /// HTTP status.
        status: StatusCode,
        /// The body ([`REQUEST_ID`] placeholders replaced).
        body: Value,
        /// Wait before answering (headers included).
        delay: Duration,
    },
    /// `text/event-stream` answer: headers at once, then each string written verbatim as
    /// one body chunk after its delay (measured from the previous chunk). Write whole SSE
    /// frames, e.g. with [`sse_data`]. The body ends after the last chunk.
    Sse {
        /// HTTP status.
        status: StatusCode,
        /// `(delay, chunk)` pairs.
        events: Vec<(Duration, String)>,
    },
    /// A status with an empty body.
    Status(StatusCode),
    /// Any answer: status, headers and body, after `delay`.
    Full {
        /// HTTP status.
        status: StatusCode,
        /// Headers (e.g. `Retry-After`).
        headers: HeaderMap,
        /// Body bytes.
        body: Bytes,
        /// Wait before answering.
        delay: Duration,
    },
    /// Never answers (until the client goes away).
    Hang,
}

impl Step {
    /// `200 application/json` with `body`, at once.
    pub fn json(body: Value) -> Self {
        Step::Json {
            status: StatusCode::OK,
            body,
            delay: Duration::ZERO,
        }
    }

    /// `200 application/json` with a JSON-RPC result echoing the request id.
    pub fn result(result: Value) -> Self {
        Step::json(jsonrpc_result(json!(REQUEST_ID), result))
    }

    /// `200 application/json` with a tool result of one text item, echoing the request id.
    pub fn tool_text(text: &str) -> Self {
        Step::result(json!({ "content": [{ "type": "text", "text": text }], "isError": false }))
    }

    /// `200 application/json` with a JSON-RPC error echoing the request id.
    pub fn rpc_error(code: i64, message: &str) -> Self {
        Step::json(jsonrpc_error(json!(REQUEST_ID), code, message))
    }

    /// `200 text/event-stream` with one `data:` event per message, each after `gap`.
    pub fn sse_messages(gap: Duration, messages: &[Value]) -> Self {
        Step::Sse {
            status: StatusCode::OK,
            events: messages
                .iter()
                .map(|message| (gap, sse_data(&message.to_string())))
                .collect(),
        }
    }

    /// A status with a `Retry-After` header (seconds) and an empty body.
    pub fn status_retry_after(status: StatusCode, seconds: u64) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        Step::Full {
            status,
            headers,
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }
}

/// One SSE frame with `data` (split on newlines into several `data:` lines).
pub fn sse_data(data: &str) -> String {
    let mut frame = String::with_capacity(data.len() + 8);
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line);
        frame.push('\n');
    }
    frame.push('\n');
    frame
}

/// A JSON-RPC success response.
pub fn jsonrpc_result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// A JSON-RPC error response.
pub fn jsonrpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// HTTP method.
    pub method: Method,
    /// Request URI.
    pub uri: Uri,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
}

impl ReceivedRequest {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

#[derive(Debug, Default)]
struct Shared {
    steps: Mutex<VecDeque<Step>>,
    received: Mutex<Vec<ReceivedRequest>>,
    count: AtomicUsize,
    streams_dropped: AtomicUsize,
}

/// An upstream that answers each request with the next scripted [`Step`] (500 with an
/// empty body once the queue is empty) and records what it received. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct ScriptedUpstream {
    shared: Arc<Shared>,
}

impl ScriptedUpstream {
    /// An upstream with an empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// An upstream with `steps` queued.
    pub fn with_steps(steps: impl IntoIterator<Item = Step>) -> Self {
        let upstream = Self::new();
        upstream.push_all(steps);
        upstream
    }

    /// Queues one step.
    pub fn push(&self, step: Step) {
        self.lock_steps().push_back(step);
    }

    /// Queues several steps.
    pub fn push_all(&self, steps: impl IntoIterator<Item = Step>) {
        self.lock_steps().extend(steps);
    }

    /// Steps not used yet.
    pub fn remaining(&self) -> usize {
        self.lock_steps().len()
    }

    /// Requests received so far (counted on arrival, before the body is read).
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// The requests received so far, bodies included, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The received bodies that parsed as JSON.
    pub fn bodies(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter_map(ReceivedRequest::json)
            .collect()
    }

    /// [`Step::Sse`] bodies the client dropped before their last chunk was sent.
    pub fn streams_dropped(&self) -> usize {
        self.shared.streams_dropped.load(Ordering::SeqCst)
    }

    /// The upstream as an axum router answering every path and method.
    pub fn router(&self) -> Router {
        let upstream = self.clone();
        Router::new().fallback(move |request: Request| {
            let upstream = upstream.clone();
            async move { upstream.answer(request).await }
        })
    }

    /// Serves [`ScriptedUpstream::router`] on loopback.
    pub async fn spawn(&self) -> TestServer {
        serve(self.router()).await
    }

    fn lock_steps(&self) -> std::sync::MutexGuard<'_, VecDeque<Step>> {
        self.shared
            .steps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn answer(&self, request: Request) -> Response {
        self.shared.count.fetch_add(1, Ordering::SeqCst);
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_default();
        let request_id = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|json| json.get("id").cloned())
            .unwrap_or(Value::Null);
        self.shared
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(ReceivedRequest {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                body,
            });
        let step = self.lock_steps().pop_front();
        match step {
            None => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                HeaderMap::new(),
                Body::empty(),
            ),
            Some(Step::Status(status)) => respond(status, HeaderMap::new(), Body::empty()),
            Some(Step::Hang) => std::future::pending().await,
            Some(Step::Json {
                status,
                mut body,
                delay,
            }) => {
                tokio::time::sleep(delay).await;
                replace_id(&mut body, &request_id);
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                respond(status, headers, Body::from(body.to_string()))
            }
            Some(Step::Full {
                status,
                headers,
                body,
                delay,
            }) => {
                tokio::time::sleep(delay).await;
                respond(status, headers, Body::from(body))
            }
            Some(Step::Sse { status, events }) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                let id_text = request_id.to_string();
                let quoted = format!("\"{REQUEST_ID}\"");
                let chunks: Vec<(Duration, Bytes)> = events
                    .into_iter()
                    .map(|(delay, text)| (delay, Bytes::from(text.replace(&quoted, &id_text))))
                    .collect();
                respond(status, headers, self.streamed_body(chunks))
            }
        }
    }

    /// A body fed by a task through a channel, so each chunk leaves when its delay is over
    /// whether or not the reader is waiting.
    fn streamed_body(&self, chunks: Vec<(Duration, Bytes)>) -> Body {
        let (sender, receiver) = mpsc::channel::<Bytes>(16);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            for (delay, chunk) in chunks {
                tokio::time::sleep(delay).await;
                if sender.send(chunk).await.is_err() {
                    shared.streams_dropped.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            let chunk = receiver.recv().await?;
            Some((Ok::<_, Infallible>(chunk), receiver))
        });
        Body::from_stream(stream)
    }
}

fn respond(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn replace_id(value: &mut Value, id: &Value) {
    match value {
        Value::String(text) if text == REQUEST_ID => *value = id.clone(),
        Value::Array(items) => items.iter_mut().for_each(|item| replace_id(item, id)),
        Value::Object(map) => map.values_mut().for_each(|item| replace_id(item, id)),
        _ => {}
    }
}
