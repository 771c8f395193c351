//! The server and client layers against mock services: ids taken, generated, refused and
//! echoed; trace context from headers and from `_meta`; span fields recorded; the body polled in
//! the span.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_armor_correlation_id::{
    AdoptMetaTraceLayer, CorrelationIdLayer, PropagateCorrelationLayer, TraceContext, TraceOrigin,
};
use tower_armor_mcp::inspect::McpInspectLayer;
use tower_armor_mcp::{CorrelationId, McpBody, Principal};
use tower_armor_test_support::LogCapture;
use tracing_subscriber::fmt::format::FmtSpan;

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

thread_local! {
    /// Where this test thread's log lines go, while it captures.
    static SINK: std::cell::RefCell<Option<LogCapture>> = const { std::cell::RefCell::new(None) };
}

/// Writes into the current thread's [`SINK`], if any.
struct Routed;

impl io::Write for Routed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SINK.with(|s| {
            if let Some(c) = &*s.borrow() {
                c.append(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Stops the capture of this thread when dropped.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        SINK.with(|s| s.borrow_mut().take());
    }
}

/// Captures this thread's tracing output (TRACE level, span closes included) until the guard
/// drops. Tests run on a current-thread runtime, so everything they do is captured.
///
/// One global subscriber routes lines to the capturing thread: scoped subscribers coming and
/// going on parallel test threads raced with tracing's process-wide callsite interest cache and
/// lost a span now and then.
fn capture() -> (LogCapture, CaptureGuard) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .with_writer(|| Routed)
            .with_ansi(false)
            .with_max_level(tracing::Level::TRACE)
            .with_span_events(FmtSpan::CLOSE)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("no other global subscriber");
    });
    let cap = LogCapture::default();
    SINK.with(|s| *s.borrow_mut() = Some(cap.clone()));
    (cap, CaptureGuard)
}

type Seen = Arc<Mutex<Option<(HeaderMap, Extensions)>>>;

/// A service answering `status`, recording the request's headers and extensions.
fn recording(
    status: StatusCode,
) -> (
    Seen,
    impl tower::Service<
        Request<String>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone,
) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let svc = service_fn(move |req: Request<String>| {
        let s = s.clone();
        async move {
            let (parts, _) = req.into_parts();
            *s.lock().unwrap() = Some((parts.headers, parts.extensions));
            let mut resp = Response::new("answer".to_owned());
            *resp.status_mut() = status;
            Ok::<_, Infallible>(resp)
        }
    });
    (seen, svc)
}

fn get(headers: &[(&str, &str)]) -> Request<String> {
    let mut b = Request::get("/mcp");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(String::new()).unwrap()
}

#[tokio::test]
async fn a_valid_id_is_taken_and_echoed() {
    let (seen, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner);
    let resp = svc
        .oneshot(get(&[("x-request-id", "case-42:a.b_c")]))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "case-42:a.b_c");
    let (headers, ext) = seen.lock().unwrap().take().unwrap();
    assert_eq!(headers["x-request-id"], "case-42:a.b_c");
    assert_eq!(
        ext.get::<CorrelationId>().unwrap().as_str(),
        "case-42:a.b_c"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "answer");
}

#[tokio::test]
async fn a_missing_id_is_generated_and_echoed() {
    let (seen, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner);
    let resp = svc.oneshot(get(&[])).await.unwrap();
    let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(echoed.len(), 36);
    assert_eq!(&echoed[14..15], "7", "a UUID v7: {echoed}");
    let (headers, ext) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        headers["x-request-id"],
        echoed.as_str(),
        "the inner service sees it too"
    );
    assert_eq!(ext.get::<CorrelationId>().unwrap().as_str(), echoed);
}

#[tokio::test]
async fn refused_ids_are_replaced_and_logged_without_their_value() {
    let (cap, _guard) = capture();
    let evil = "x\" injected=1 level=ERROR";
    let (seen, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner);
    let resp = svc.oneshot(get(&[("x-request-id", evil)])).await.unwrap();
    let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(echoed.len(), 36);
    let (headers, _) = seen.lock().unwrap().take().unwrap();
    assert_eq!(
        headers.get_all("x-request-id").iter().count(),
        1,
        "the refused value does not go inward"
    );
    assert_eq!(headers["x-request-id"], echoed.as_str());
    drop(resp);
    let out = cap.text();
    assert!(out.contains("incoming correlation id rejected"), "{out}");
    assert!(out.contains(&format!("len={}", evil.len())), "{out}");
    assert!(out.contains("reason=character outside"), "{out}");
    assert!(out.contains(&format!("request_id={echoed}")), "{out}");
    assert!(
        !out.contains("injected"),
        "the raw value never reaches the log: {out}"
    );

    // With a trace context, the line carries its trace id too (read before the line).
    let (cap, _guard) = capture();
    let (_, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner);
    let resp = svc
        .oneshot(get(&[("x-request-id", "bad id"), ("traceparent", TP)]))
        .await
        .unwrap();
    drop(resp);
    let out = cap.text();
    let line = out
        .lines()
        .find(|l| l.contains("incoming correlation id rejected"))
        .unwrap_or_else(|| panic!("logged: {out}"));
    assert!(line.contains(&format!("trace_id={TRACE_ID}")), "{line}");

    // Twice the header: refused as ambiguous.
    let (_, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner);
    let mut req = get(&[("x-request-id", "one")]);
    req.headers_mut()
        .append("x-request-id", http::HeaderValue::from_static("two"));
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"].len(), 36);
    assert!(cap.text().contains("header sent more than once"));
}

#[tokio::test]
async fn inner_rejections_carry_the_id() {
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let (_, inner) = recording(status);
        let svc = CorrelationIdLayer::new().layer_service(inner);
        let resp = svc.oneshot(get(&[("x-request-id", "abc")])).await.unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["x-request-id"], "abc", "{status}");
    }
    // An inner service's own x-request-id is replaced by the validated one.
    let svc = CorrelationIdLayer::new().layer_service(service_fn(|_: Request<String>| async {
        let mut r = Response::new(String::new());
        r.headers_mut().insert(
            "x-request-id",
            http::HeaderValue::from_static("inner\tjunk"),
        );
        Ok::<_, Infallible>(r)
    }));
    let resp = svc.oneshot(get(&[("x-request-id", "abc")])).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc");
}

#[tokio::test]
async fn the_header_name_is_configurable() {
    let (seen, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new()
        .header_name(http::HeaderName::from_static("x-case-id"))
        .layer_service(inner);
    let resp = svc
        .oneshot(get(&[("x-case-id", "c1"), ("x-request-id", "other")]))
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-case-id"], "c1");
    assert!(resp.headers().get("x-request-id").is_none());
    let (_, ext) = seen.lock().unwrap().take().unwrap();
    assert_eq!(ext.get::<CorrelationId>().unwrap().as_str(), "c1");
}

/// A header HTTP, MCP or another layer gives a meaning to cannot carry the id: as
/// `authorization` it would replace every credential, as `mcp-session-id` overwrite the
/// server's session id, as a key log the secret.
#[test]
fn the_configured_header_name_must_be_one_of_its_own() {
    let from = |v: &'static str| {
        CorrelationIdLayer::from_lookup(move |k| (k == "MCP_REQUEST_ID_HEADER").then(|| v.into()))
    };
    for reserved in [
        "Authorization",
        "mcp-session-id",
        "Mcp-Param-Region",
        "MCP-Protocol-Version",
        "cookie",
        "x-api-key",
        "traceparent",
        "host",
        " content-length ",
        // A gRPC answer's status (bearer-auth's 401 would carry a UUID as its `grpc-status`).
        "grpc-status",
        "Grpc-Message",
        "proxy-authenticate",
        "access-control-allow-origin",
        // Fields of the answer the echo would write over (a 405's allowed methods).
        "allow",
        "Refresh",
        "content-disposition",
        "content-range",
        "range",
        "etag",
        "if-none-match",
        "proxy-connection",
        "via",
        "user-agent",
        "strict-transport-security",
        "sec-fetch-site",
        "x-forwarded-port",
    ] {
        let err = from(reserved).unwrap_err();
        assert_eq!(err.variable(), Some("MCP_REQUEST_ID_HEADER"), "{reserved}");
        assert!(err.to_string().contains("meaning of its own"), "{err}");
    }
    assert!(
        from("bad name")
            .unwrap_err()
            .to_string()
            .contains("not a valid")
    );
    let layer = from(" X-Correlation-ID ").unwrap();
    assert_eq!(layer.header(), "x-correlation-id");
    for own in [
        "request-id",
        "x-amzn-trace-id",
        "x-case-id",
        "correlation-id",
    ] {
        assert!(from(own).is_ok(), "{own}");
    }
    assert!(
        tower_armor_correlation_id::PropagateCorrelationLayer::new()
            .try_header_name("authorization")
            .is_err()
    );
}

#[tokio::test]
async fn traceparent_headers_are_parsed_or_replaced() {
    let (seen, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner.clone());
    svc.oneshot(get(&[
        ("traceparent", TP),
        ("tracestate", "rojo=1,congo=2"),
    ]))
    .await
    .unwrap();
    let (_, ext) = seen.lock().unwrap().take().unwrap();
    let ctx = ext.get::<TraceContext>().unwrap();
    assert_eq!(ctx.trace_id().to_string(), TRACE_ID);
    assert_eq!(ctx.origin(), TraceOrigin::Header);
    assert_eq!(ctx.state().unwrap().as_str(), "rojo=1,congo=2");

    // What goes inward is the list as the context holds it: two lines joined in one, one over
    // the length limit rebuilt within it; and none without a `traceparent`.
    let long: Vec<String> = (0..20)
        .map(|i| format!("k{i}={}", "v".repeat(40)))
        .collect();
    let long = long.join(",");
    for (states, expect) in [
        (&["rojo=1,congo=2"][..], Some("rojo=1,congo=2".to_owned())),
        (
            &["rojo=1", "congo=2"][..],
            Some("rojo=1,congo=2".to_owned()),
        ),
        (&[long.as_str()][..], None),
    ] {
        let svc = CorrelationIdLayer::new().layer_service(inner.clone());
        let mut headers = vec![("traceparent", TP)];
        headers.extend(states.iter().map(|s| ("tracestate", *s)));
        svc.oneshot(get(&headers)).await.unwrap();
        let (h, ext) = seen.lock().unwrap().take().unwrap();
        let passed: Vec<_> = h.get_all("tracestate").iter().collect();
        assert_eq!(passed.len(), 1, "{states:?}");
        let held = ext.get::<TraceContext>().unwrap().state().unwrap().as_str();
        assert_eq!(passed[0], held, "{states:?}");
        assert!(held.len() <= 512, "{states:?}");
        if let Some(expect) = expect {
            assert_eq!(held, expect);
        }
    }
    // Without a `traceparent` the context (a new root) has no state.
    let svc = CorrelationIdLayer::new().layer_service(inner.clone());
    svc.oneshot(get(&[("tracestate", "rojo=1")])).await.unwrap();
    let (_, ext) = seen.lock().unwrap().take().unwrap();
    assert!(ext.get::<TraceContext>().unwrap().state().is_none());

    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "garbage",
    ] {
        let svc = CorrelationIdLayer::new().layer_service(inner.clone());
        svc.oneshot(get(&[("traceparent", bad), ("tracestate", "rojo=1")]))
            .await
            .unwrap();
        let (h, ext) = seen.lock().unwrap().take().unwrap();
        assert!(
            h.get("traceparent").is_none() && h.get("tracestate").is_none(),
            "{bad}: a refused trace context does not go inward"
        );
        let ctx = ext.get::<TraceContext>().unwrap();
        assert_eq!(ctx.origin(), TraceOrigin::Generated, "{bad}");
        assert!(
            ctx.state().is_none(),
            "no tracestate without a valid traceparent"
        );
        assert_ne!(ctx.trace_id().to_string(), TRACE_ID);
    }
}

/// A `tracestate` that does not parse is dropped from the context and from the request passed
/// inward (W3C Trace Context: an invalid one must not be propagated), and the line saying so
/// is logged inside the request's span, like everything the layer logs.
#[tokio::test]
async fn a_bad_tracestate_is_dropped_inside_the_span_and_not_passed_on() {
    let (cap, _guard) = capture();
    let (seen, inner) = recording(StatusCode::OK);
    let svc = CorrelationIdLayer::new().layer_service(inner);
    let members: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    let state = members.join(",");
    let resp = svc
        .oneshot(get(&[
            ("x-request-id", "state-case-1"),
            ("traceparent", TP),
            ("tracestate", state.as_str()),
        ]))
        .await
        .unwrap();
    let (h, ext) = seen.lock().unwrap().take().unwrap();
    assert!(h.get("tracestate").is_none(), "not passed on");
    assert_eq!(h["traceparent"], TP, "the trace itself is kept");
    let ctx = ext.get::<TraceContext>().unwrap();
    assert_eq!(ctx.trace_id().to_string(), TRACE_ID);
    assert!(ctx.state().is_none());
    drop(resp);
    let out = cap.text();
    let line = out
        .lines()
        .find(|l| l.contains("tracestate dropped"))
        .unwrap_or_else(|| panic!("logged: {out}"));
    assert!(line.contains("request_id=state-case-1"), "{line}");
}

fn post(body: &str, headers: &[(&str, &str)]) -> Request<String> {
    let mut b = Request::post("/mcp").header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.to_owned()).unwrap()
}

/// correlation → (test auth recording a principal) → inspect → adopt → recording service.
fn stack(
    seen: Seen,
) -> impl tower::Service<
    Request<String>,
    Response = Response<impl Body<Data = Bytes, Error = Infallible>>,
    Error = Infallible,
> {
    ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .map_request(|req: Request<String>| {
            // What bearer-auth does in `call`: record the principal into the current span.
            let p = Principal::new("alice");
            tower_armor_mcp::span::record_principal(&p);
            req
        })
        .layer(McpInspectLayer::new())
        .layer(AdoptMetaTraceLayer::new())
        .service(service_fn(move |req: Request<McpBody>| {
            let s = seen.clone();
            async move {
                tracing::info!("inner service ran");
                let (parts, _) = req.into_parts();
                *s.lock().unwrap() = Some((parts.headers, parts.extensions));
                Ok::<_, Infallible>(Response::new(McpBody::from("{}")))
            }
        }))
}

const CALL_WITH_META: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","_meta":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"congo=t61rcWkgMzE"}}}"#;

#[tokio::test]
async fn meta_traceparent_is_adopted_without_a_header() {
    let (cap, _guard) = capture();
    let seen: Seen = Arc::default();
    let resp = stack(seen.clone())
        .oneshot(post(CALL_WITH_META, &[("x-request-id", "case-meta")]))
        .await
        .unwrap();
    let (_, ext) = seen.lock().unwrap().take().unwrap();
    let ctx = ext.get::<TraceContext>().unwrap();
    assert_eq!(ctx.origin(), TraceOrigin::Meta);
    assert_eq!(
        ctx.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(ctx.state().unwrap().as_str(), "congo=t61rcWkgMzE");
    resp.into_body().collect().await.unwrap();
    let out = cap.text();
    let close = out
        .lines()
        .find(|l| l.contains("close") && l.contains("mcp.request"))
        .unwrap_or_else(|| panic!("no close line: {out}"));
    for want in [
        "request_id=case-meta",
        "trace_id=0af7651916cd43dd8448eb211c80319c",
        "principal=\"alice\"",
        "mcp.method=tools/call",
        "mcp.tool=\"add\"",
        "http.method=POST",
    ] {
        assert!(close.contains(want), "{want} missing in {close}");
    }
    assert_eq!(
        close.matches("trace_id=").count(),
        1,
        "recorded once: {close}"
    );
    let inner_line = out
        .lines()
        .find(|l| l.contains("inner service ran"))
        .unwrap();
    assert!(inner_line.contains("request_id=case-meta"), "{inner_line}");
}

/// A client that can only write `_meta` (`with_correlation_meta`) threads its case id through
/// a server that got no `x-request-id`: the id in the extensions, the request's header, the
/// span's `request_id` and the echo become the case id. A valid header wins; an invalid `_meta` id is not adopted, and
/// is logged by length and reason only.
#[tokio::test]
async fn meta_request_id_is_adopted_when_no_valid_header_came() {
    let call = |meta_id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"add","_meta":{{"tower-armor/requestId":"{meta_id}"}}}}}}"#
        )
    };
    for (headers, meta_id, adopted) in [
        (&[][..], "case-88", true),
        (&[("x-request-id", "bad id!")][..], "case-88", true),
        (&[("x-request-id", "case-header")][..], "case-88", false),
        (&[][..], "evil\\u001b[31m", false),
    ] {
        let (cap, _guard) = capture();
        let seen: Seen = Arc::default();
        let resp = stack(seen.clone())
            .oneshot(post(&call(meta_id), headers))
            .await
            .unwrap();
        let echo = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let (inner_headers, ext) = seen.lock().unwrap().take().unwrap();
        let id = ext.get::<CorrelationId>().unwrap().clone();
        assert_eq!(id.as_str(), echo, "{headers:?}: the echo is the id inside");
        // And the header the server's code (or a gateway propagating it onward) reads.
        assert_eq!(
            inner_headers
                .get_all("x-request-id")
                .iter()
                .collect::<Vec<_>>(),
            [id.as_str()],
            "{headers:?}"
        );
        resp.into_body().collect().await.unwrap();
        let out = cap.text();
        let inner_line = out
            .lines()
            .find(|l| l.contains("inner service ran"))
            .unwrap();
        if adopted {
            assert_eq!(echo, "case-88", "{headers:?}");
            assert!(!id.is_generated());
            assert!(inner_line.contains("request_id=case-88"), "{inner_line}");
        } else {
            assert_ne!(echo, "case-88");
            assert!(!out.contains("evil"), "{out}");
            if headers.is_empty() {
                assert!(id.is_generated());
                assert!(out.contains("_meta correlation id rejected"), "{out}");
            } else {
                assert_eq!(echo, "case-header");
            }
        }
    }
}

#[tokio::test]
async fn a_traceparent_header_wins_over_meta() {
    let (cap, _guard) = capture();
    let seen: Seen = Arc::default();
    let resp = stack(seen.clone())
        .oneshot(post(CALL_WITH_META, &[("traceparent", TP)]))
        .await
        .unwrap();
    let (_, ext) = seen.lock().unwrap().take().unwrap();
    let ctx = ext.get::<TraceContext>().unwrap();
    assert_eq!(ctx.origin(), TraceOrigin::Header);
    assert_eq!(ctx.trace_id().to_string(), TRACE_ID);
    drop(resp);
    let out = cap.text();
    let close = out.lines().find(|l| l.contains("close")).unwrap();
    assert!(close.contains(&format!("trace_id={TRACE_ID}")), "{close}");
    assert_eq!(close.matches("trace_id=").count(), 1, "{close}");
}

#[tokio::test]
async fn without_any_trace_the_new_one_is_recorded_once() {
    let (cap, _guard) = capture();
    let seen: Seen = Arc::default();
    let resp = stack(seen.clone())
        .oneshot(post(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","_meta":{"traceparent":"00-bad"}}}"#,
            &[],
        ))
        .await
        .unwrap();
    let (_, ext) = seen.lock().unwrap().take().unwrap();
    let ctx = ext.get::<TraceContext>().unwrap().clone();
    assert_eq!(ctx.origin(), TraceOrigin::Generated);
    drop(resp);
    let out = cap.text();
    assert!(out.contains("_meta.traceparent rejected"), "{out}");
    assert!(!out.contains("00-bad"), "{out}");
    let close = out.lines().find(|l| l.contains("close")).unwrap();
    assert!(
        close.contains(&format!("trace_id={}", ctx.trace_id())),
        "{close}"
    );
    assert_eq!(close.matches("trace_id=").count(), 1, "{close}");
}

#[tokio::test]
async fn inner_rejections_of_the_inspector_carry_the_id() {
    let seen: Seen = Arc::default();
    let svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(McpInspectLayer::new().max_body_bytes(16))
        .service(service_fn(move |_req: Request<McpBody>| async move {
            Ok::<_, Infallible>(Response::new(McpBody::empty()))
        }));
    let resp = svc
        .oneshot(post(CALL_WITH_META, &[("x-request-id", "too-big")]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(resp.headers()["x-request-id"], "too-big");
    drop(seen);
}

/// A body that logs an event each time it is polled.
struct LoggingBody(u8);

impl Body for LoggingBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        self.0 -= 1;
        tracing::info!(left = self.0, "stream event");
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"data: x\n\n")))))
    }
}

#[tokio::test]
async fn the_body_is_polled_in_the_span() {
    let (cap, _guard) = capture();
    let svc = CorrelationIdLayer::new().layer_service(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(LoggingBody(2)))
    }));
    let resp = svc
        .oneshot(get(&[("x-request-id", "streamed")]))
        .await
        .unwrap();
    // Polled after the future finished, on its own: still in the span.
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.len(), 18);
    let out = cap.text();
    let events: Vec<&str> = out.lines().filter(|l| l.contains("stream event")).collect();
    assert_eq!(events.len(), 2, "{out}");
    for e in events {
        assert!(e.contains("mcp.request{request_id=streamed"), "{e}");
    }
}

#[test]
fn span_field_names_match_the_shared_vocabulary() {
    // The span macro needs literal names; make sure they are the ones inner layers record.
    let (_cap, _guard) = capture();
    let span = tracing::info_span!(
        "probe",
        principal = tracing::field::Empty,
        mcp.method = tracing::field::Empty,
        mcp.tool = tracing::field::Empty,
        mcp.session = tracing::field::Empty,
    );
    let fields = span.metadata().unwrap().fields();
    for name in [
        tower_armor_mcp::span::PRINCIPAL,
        tower_armor_mcp::span::METHOD,
        tower_armor_mcp::span::TOOL,
        tower_armor_mcp::span::SESSION,
    ] {
        assert!(fields.field(name).is_some(), "{name}");
    }
    // And the layer's span has them: a request through it records all four.
    let handler = tower_armor_correlation_id::span_from_extensions(&Extensions::new());
    let fields = handler.metadata().unwrap().fields();
    for name in [
        "request_id",
        "trace_id",
        "principal",
        "mcp.method",
        "mcp.tool",
        "mcp.session",
    ] {
        assert!(fields.field(name).is_some(), "{name}");
    }
}

#[tokio::test]
async fn client_layer_sets_id_and_child_traceparent() {
    let (seen, inner) = recording(StatusCode::OK);
    let svc = PropagateCorrelationLayer::new().layer_service(inner.clone());
    let parent = TraceContext::parse(TP.as_bytes()).unwrap();
    let mut req = get(&[("tracestate", "stale=1")]);
    req.extensions_mut()
        .insert(CorrelationId::parse(b"case-9").unwrap());
    req.extensions_mut().insert(parent.clone());
    svc.oneshot(req).await.unwrap();
    let (h, _) = seen.lock().unwrap().take().unwrap();
    assert_eq!(h["x-request-id"], "case-9");
    let sent = TraceContext::parse(h["traceparent"].as_bytes()).unwrap();
    assert_eq!(sent.trace_id(), parent.trace_id());
    assert_ne!(sent.parent_id(), parent.parent_id());
    assert!(
        h.get("tracestate").is_none(),
        "a stale tracestate is not sent with ours"
    );

    // Nothing in the extensions: new id and new trace.
    let svc = PropagateCorrelationLayer::new().layer_service(inner.clone());
    svc.oneshot(get(&[])).await.unwrap();
    let (h, _) = seen.lock().unwrap().take().unwrap();
    assert_eq!(h["x-request-id"].len(), 36);
    assert!(TraceContext::parse(h["traceparent"].as_bytes()).is_ok());

    // Headers the caller set are kept.
    let svc = PropagateCorrelationLayer::new().layer_service(inner);
    let mut req = get(&[("x-request-id", "mine"), ("traceparent", TP)]);
    req.extensions_mut()
        .insert(CorrelationId::parse(b"case-9").unwrap());
    svc.oneshot(req).await.unwrap();
    let (h, _) = seen.lock().unwrap().take().unwrap();
    assert_eq!(h["x-request-id"], "mine");
    assert_eq!(h["traceparent"], TP);
}

#[tokio::test]
async fn client_layer_replaces_invalid_and_passed_on_traceparents() {
    let (seen, inner) = recording(StatusCode::OK);
    let case = TraceContext::parse(TP.as_bytes()).unwrap();
    let send = |headers: &[(&str, &str)], ctx: Option<&TraceContext>| {
        let mut req = get(headers);
        if let Some(ctx) = ctx {
            req.extensions_mut().insert(ctx.clone());
        }
        let svc = PropagateCorrelationLayer::new().layer_service(inner.clone());
        let seen = seen.clone();
        async move {
            svc.oneshot(req).await.unwrap();
            let (h, _) = seen.lock().unwrap().take().unwrap();
            h
        }
    };
    // The header the case came in with (a gateway passing the request on): a child goes out.
    let h = send(
        &[("traceparent", TP), ("tracestate", "rojo=1")],
        Some(&case),
    )
    .await;
    let sent = TraceContext::parse(h["traceparent"].as_bytes()).unwrap();
    assert_eq!(sent.trace_id(), case.trace_id());
    assert_ne!(sent.parent_id(), case.parent_id());
    assert!(h.get("tracestate").is_none(), "the case had no tracestate");
    // Invalid ones are never passed on, with or without a case.
    for ctx in [Some(&case), None] {
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let h = send(&[("traceparent", bad), ("tracestate", "rojo=1")], ctx).await;
            let sent = TraceContext::parse(h["traceparent"].as_bytes()).unwrap();
            assert_eq!(sent.trace_id() == case.trace_id(), ctx.is_some(), "{bad}");
            assert!(h.get("tracestate").is_none(), "{bad}");
        }
    }
    // A valid one of the caller's own (another trace) stays, with its tracestate.
    let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let h = send(
        &[("traceparent", own), ("tracestate", "rojo=1")],
        Some(&case),
    )
    .await;
    assert_eq!(h["traceparent"], own);
    assert_eq!(h["tracestate"], "rojo=1");
}

#[tokio::test]
async fn server_and_client_chain_one_case() {
    // A server handler forwards its case to an upstream call: same id, same trace.
    let (seen, upstream) = recording(StatusCode::OK);
    let client = PropagateCorrelationLayer::new().layer_service(upstream);
    let server =
        CorrelationIdLayer::new().layer_service(service_fn(move |req: Request<String>| {
            let client = client.clone();
            async move {
                let mut out = Request::get("/upstream").body(String::new()).unwrap();
                out.extensions_mut()
                    .insert(req.extensions().get::<CorrelationId>().unwrap().clone());
                out.extensions_mut()
                    .insert(req.extensions().get::<TraceContext>().unwrap().clone());
                client.oneshot(out).await
            }
        }));
    server
        .oneshot(get(&[("x-request-id", "case-chain"), ("traceparent", TP)]))
        .await
        .unwrap();
    let (h, _) = seen.lock().unwrap().take().unwrap();
    assert_eq!(h["x-request-id"], "case-chain");
    assert!(h["traceparent"].to_str().unwrap().contains(TRACE_ID));
}

#[test]
fn services_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>(_: &T) {}
    let (_, inner) = recording(StatusCode::OK);
    check(&CorrelationIdLayer::new().layer_service(inner.clone()));
    check(&PropagateCorrelationLayer::new().layer_service(inner.clone()));
    check(&AdoptMetaTraceLayer::new().layer_service(inner));
}

trait LayerExt: Sized {
    fn layer_service<S>(&self, inner: S) -> <Self as tower::Layer<S>>::Service
    where
        Self: tower::Layer<S>,
    {
        tower::Layer::layer(self, inner)
    }
}
impl<L> LayerExt for L {}

#[tokio::test]
async fn handler_spans_carry_what_the_layers_know() {
    let (cap, _guard) = capture();
    let mut ext = Extensions::new();
    ext.insert(CorrelationId::parse(b"case-h").unwrap());
    ext.insert(TraceContext::parse(TP.as_bytes()).unwrap());
    ext.insert(Principal::new("bob"));
    ext.insert(
        tower_armor_mcp::McpRequest::new(
            tower_armor_mcp::MessageKind::Request,
            Some(tower_armor_mcp::Method::ToolsCall),
            None,
        )
        .with_name("echo"),
    );
    let (parts, ()) = Request::new(()).into_parts();
    let mut parts = parts;
    parts.extensions = ext;
    {
        let span = tower_armor_correlation_id::span_from_parts(&parts);
        let _entered = span.enter();
        tracing::info!("inside the tool");
    }
    let out = cap.text();
    let line = out.lines().find(|l| l.contains("inside the tool")).unwrap();
    for want in [
        "mcp.handler{",
        "request_id=case-h",
        &format!("trace_id={TRACE_ID}"),
        "principal=\"bob\"",
        "mcp.method=tools/call",
        "mcp.tool=\"echo\"",
    ] {
        assert!(line.contains(want), "{want} missing in {line}");
    }
}
