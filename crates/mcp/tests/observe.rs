//! The shared body observer: outcome of streamed and JSON answers, byte-exact forwarding.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use proptest::prelude::*;
use tower_armor_mcp::observe::{ObservedBody, observe_response};
use tower_armor_mcp::{CompletionHandle, Outcome, RequestId};

type Chunks = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>>;

fn body(chunks: Vec<Result<Bytes, std::io::Error>>) -> Chunks {
    StreamBody::new(stream::iter(
        chunks
            .into_iter()
            .map(|c| c.map(Frame::data))
            .collect::<Vec<_>>(),
    ))
}

fn sse_response(chunks: Vec<Result<Bytes, std::io::Error>>) -> Response<Chunks> {
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(body(chunks))
        .unwrap()
}

async fn drain(b: ObservedBody<Chunks>) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut b = std::pin::pin!(b);
    let mut errored = false;
    while let Some(f) = b.frame().await {
        match f {
            Ok(f) => out.extend_from_slice(f.data_ref().unwrap()),
            Err(_) => {
                errored = true;
                break;
            }
        }
    }
    (out, errored)
}

fn ok(s: &str) -> Result<Bytes, std::io::Error> {
    Ok(Bytes::copy_from_slice(s.as_bytes()))
}

const PROGRESS: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;

#[tokio::test]
async fn streamed_internal_error_after_progress() {
    let id = RequestId::Number(5);
    let resp = sse_response(vec![
        ok("id: 0\ndata:\n\n"),
        ok(&format!("data: {PROGRESS}\n\n")),
        ok(&format!("data: {PROGRESS}\n\n")),
        ok(r#"data: {"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"boom"}}"#),
        ok("\n\n"),
    ]);
    let (resp, handle) = observe_response(resp, Some(&id));
    assert!(resp.extensions().get::<CompletionHandle>().is_some());
    assert_eq!(
        handle.outcome(),
        None,
        "nothing known before the stream is read"
    );
    let (_, _) = drain(resp.into_body()).await;
    assert_eq!(handle.outcome(), Some(Outcome::RpcError(-32603)));
    assert_eq!(handle.progress_count(), 2);
}

#[tokio::test]
async fn outcome_is_known_when_the_final_event_passes_not_at_stream_end() {
    let id = RequestId::from("abc");
    let resp = sse_response(vec![
        ok(r#"data: {"jsonrpc":"2.0","id":"abc","result":{"content":[],"isError":true}}"#),
        ok("\n\n"),
        ok(": trailing comment\n\n"),
    ]);
    let (resp, handle) = observe_response(resp, Some(&id));
    let mut b = std::pin::pin!(resp.into_body());
    b.frame().await.unwrap().unwrap();
    assert_eq!(handle.outcome(), None);
    b.frame().await.unwrap().unwrap();
    assert_eq!(handle.outcome(), Some(Outcome::ToolError));
}

#[tokio::test]
async fn stream_dropped_midway_is_cancelled() {
    let id = RequestId::Number(1);
    let resp = sse_response(vec![
        ok(&format!("data: {PROGRESS}\n\n")),
        ok("data: {\"jsonrpc\""),
    ]);
    let (resp, handle) = observe_response(resp, Some(&id));
    let (tx, rx) = std::sync::mpsc::channel();
    handle.on_complete(move |o| tx.send(*o).unwrap());
    let mut b = Box::pin(resp.into_body());
    b.frame().await.unwrap().unwrap();
    assert!(rx.try_recv().is_err());
    drop(b);
    assert_eq!(rx.try_recv().unwrap(), Outcome::Cancelled);
    assert_eq!(handle.outcome(), Some(Outcome::Cancelled));
}

#[tokio::test]
async fn stream_error_is_transport_and_clean_end_without_answer_is_incomplete() {
    let id = RequestId::Number(1);
    let resp = sse_response(vec![
        ok(&format!("data: {PROGRESS}\n\n")),
        Err(std::io::Error::other("reset")),
    ]);
    let (resp, handle) = observe_response(resp, Some(&id));
    let (_, errored) = drain(resp.into_body()).await;
    assert!(errored);
    assert_eq!(handle.outcome(), Some(Outcome::Transport));

    let resp = sse_response(vec![ok(&format!("data: {PROGRESS}\n\n"))]);
    let (resp, handle) = observe_response(resp, Some(&id));
    drain(resp.into_body()).await;
    assert_eq!(handle.outcome(), Some(Outcome::Incomplete));
}

/// An event longer than the observer reads (16 MiB) is forwarded unread: it may have been the
/// final response (a large tool result), so an answer that then ends without one is classified
/// from its status, a success, as a JSON answer too long to read is; not `Incomplete`, which
/// a breaker counts as a failure of the server.
#[tokio::test]
async fn an_answer_whose_final_event_was_too_long_to_read_is_classified_by_its_status() {
    let id = RequestId::Number(1);
    let text = "x".repeat(17 << 20);
    let result = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{text}"}}]}}}}"#
    );
    let resp = sse_response(vec![
        ok(&format!("data: {PROGRESS}\n\n")),
        ok(&format!("data: {result}\n\n")),
    ]);
    let (resp, handle) = observe_response(resp, Some(&id));
    let (bytes, errored) = drain(resp.into_body()).await;
    assert!(!errored);
    assert!(bytes.len() > 17 << 20, "forwarded whole");
    assert_eq!(handle.outcome(), Some(Outcome::Success));

    // Its beginning names the call's id before the `result`, as serializers write a response:
    // final as it passes, before the stream ends (a timeout must not add an error after it).
    // One whose `result` comes first, or that answers another id, is not.
    let open = |events: Vec<String>| {
        let mut frames: Vec<_> = events
            .iter()
            .map(|e| ok(&format!("data: {e}\n\n")))
            .collect();
        frames.push(Err(std::io::Error::other("still open")));
        observe_response(sse_response(frames), Some(&id))
    };
    let late_id =
        format!(r#"{{"jsonrpc":"2.0","result":{{"content":[{{"text":"{text}"}}]}},"id":1}}"#);
    let other_id = result.replacen(r#""id":1"#, r#""id":2"#, 1);
    for (event, want) in [
        (result.clone(), Some(Outcome::Success)),
        (late_id, None),
        (other_id, None),
    ] {
        let (resp, handle) = open(vec![event]);
        let mut b = std::pin::pin!(resp.into_body());
        assert!(b.frame().await.unwrap().is_ok());
        assert_eq!(handle.outcome(), want);
    }
}

#[tokio::test]
async fn responses_to_other_ids_and_server_requests_are_not_final() {
    let id = RequestId::Number(2);
    let resp = sse_response(vec![
        ok("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"),
        ok(
            "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"elicitation/create\",\"params\":{}}\n\n",
        ),
    ]);
    let (resp, handle) = observe_response(resp, Some(&id));
    let mut b = std::pin::pin!(resp.into_body());
    b.frame().await.unwrap().unwrap();
    b.frame().await.unwrap().unwrap();
    assert_eq!(handle.outcome(), None);
    assert_eq!(handle.server_requests_outstanding(), 1);
    handle.server_request_answered();
    assert_eq!(handle.server_requests_outstanding(), 0);
}

#[tokio::test]
async fn json_answers_are_classified_from_their_body() {
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            Outcome::Success,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#,
            Outcome::RpcError(-32602),
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[]}}"#,
            Outcome::ToolError,
        ),
        // Without the call's id, nothing else to go on than the status.
        ("not json", Outcome::Success),
        (r#"{"jsonrpc":"2.0","id":2,"result":{}}"#, Outcome::Success),
    ] {
        // A single-frame body that reports its end through `is_end_stream`, as hyper expects.
        let resp = Response::builder()
            .header("content-type", "application/json; charset=utf-8")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        let (resp, handle) = observe_response(resp, None);
        let mut b = std::pin::pin!(resp.into_body());
        let f = b.frame().await.unwrap().unwrap();
        assert_eq!(
            f.data_ref().unwrap(),
            body.as_bytes(),
            "forwarded untouched"
        );
        assert_eq!(handle.outcome(), Some(want), "{body}");
    }
}

/// With the call's id known, a JSON answer that is the response to another id is an answer
/// without the call's final response, as an SSE answer that ends without it. A body that is no
/// JSON-RPC response at all is judged by its status, as without the id.
#[tokio::test]
async fn a_json_answer_to_another_id_is_incomplete() {
    let id = RequestId::Number(1);
    for (body, want) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
            Outcome::Success,
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#,
            Outcome::RpcError(-32700),
        ),
        (
            r#"{"jsonrpc":"2.0","id":2,"result":{}}"#,
            Outcome::Incomplete,
        ),
        (
            r#"{"jsonrpc":"2.0","id":"1","result":{}}"#,
            Outcome::Incomplete,
        ),
        (
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            Outcome::Success,
        ),
        ("not json", Outcome::Success),
        ("", Outcome::Success),
    ] {
        let resp = Response::builder()
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .unwrap();
        let (resp, handle) = observe_response(resp, Some(&id));
        let collected = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(collected, body.as_bytes(), "forwarded untouched");
        assert_eq!(handle.outcome(), Some(want), "{body}");
    }
}

#[tokio::test]
async fn error_statuses_complete_at_once_and_empty_answers_succeed() {
    let resp = Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from("{}")))
        .unwrap();
    let (_, handle) = observe_response(resp, None);
    assert_eq!(
        handle.outcome(),
        Some(Outcome::Status(StatusCode::SERVICE_UNAVAILABLE))
    );
    let resp = Response::builder()
        .status(StatusCode::ACCEPTED)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let (_, handle) = observe_response(resp, None);
    assert_eq!(
        handle.outcome(),
        Some(Outcome::Status(StatusCode::ACCEPTED))
    );
}

#[tokio::test]
async fn grpc_web_is_not_mistaken_for_grpc() {
    let answer = |ct: &str, status: Option<&str>| {
        let mut b = Response::builder().header("content-type", ct);
        if let Some(s) = status {
            b = b.header("grpc-status", s);
        }
        let (resp, handle) =
            observe_response(b.body(http_body_util::Empty::<Bytes>::new()).unwrap(), None);
        // Read before the body is dropped (a dropped gRPC body would be `Cancelled`).
        let outcome = handle.outcome();
        drop(resp);
        outcome
    };
    // gRPC proper waits for its trailers (unless trailers-only), with or without a codec.
    assert_eq!(answer("application/grpc", None), None);
    assert_eq!(answer("application/GRPC+proto", None), None);
    assert_eq!(
        answer("application/grpc", Some("14")),
        Some(Outcome::Grpc(14))
    );
    // gRPC-Web never gets HTTP trailers (its status is inside the body): a trailers-only status
    // completes it at once; otherwise it completes by its HTTP status at the body's end, not
    // `Incomplete` (a failure) after every success, and not at the headers (a streaming call
    // would escape its deadline and its bulkhead permit).
    for ct in [
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpc-web-text",
        "application/grpc-Web-text+proto; charset=x",
    ] {
        assert_eq!(answer(ct, None), None, "{ct}");
        assert_eq!(answer(ct, Some("0")), Some(Outcome::Success), "{ct}");
        assert_eq!(answer(ct, Some("14")), Some(Outcome::Grpc(14)), "{ct}");
        let resp = Response::builder()
            .header("content-type", ct)
            .body(http_body_util::Full::new(Bytes::from_static(
                b"\x00\x00\x00\x00\x00",
            )))
            .unwrap();
        let (resp, handle) = observe_response(resp, None);
        resp.into_body().collect().await.unwrap();
        assert_eq!(
            handle.outcome(),
            Some(Outcome::Status(StatusCode::OK)),
            "{ct}"
        );
    }
    // Neither.
    assert_eq!(
        answer("application/grpcx", None),
        Some(Outcome::Status(StatusCode::OK))
    );
}

#[tokio::test]
async fn a_second_observer_reuses_the_first_handle() {
    let resp = sse_response(vec![ok(
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    )]);
    let (resp, first) = observe_response(resp, Some(&RequestId::Number(1)));
    // Another id: an observer of its own would take the answer for another call's
    // (`Incomplete`); the first one's handle, reused, has the call's outcome.
    let (resp, second) = observe_response(resp, Some(&RequestId::Number(2)));
    let mut b = std::pin::pin!(resp.into_body());
    while b.frame().await.is_some() {}
    assert_eq!(first.outcome(), Some(Outcome::Success));
    assert_eq!(second.outcome(), Some(Outcome::Success));
}

#[test]
fn listeners_run_once_even_if_registered_late() {
    let h = CompletionHandle::new();
    let (tx, rx) = std::sync::mpsc::channel::<Outcome>();
    let tx2 = tx.clone();
    h.on_complete(move |o| tx.send(*o).unwrap());
    assert!(h.complete(Outcome::Elapsed));
    assert!(!h.complete(Outcome::Success), "first outcome wins");
    h.on_complete(move |o| tx2.send(*o).unwrap());
    assert_eq!(
        rx.try_iter().collect::<Vec<_>>(),
        [Outcome::Elapsed, Outcome::Elapsed]
    );
    let _: Infallible;
}

// === property: any framing, any line endings, same outcome, same bytes ===

#[derive(Clone, Debug)]
enum Msg {
    Progress,
    ServerRequest,
    OtherResponse,
    Comment,
    Final(i64),
}

fn msg_strategy() -> impl Strategy<Value = Msg> {
    prop_oneof![
        Just(Msg::Progress),
        Just(Msg::ServerRequest),
        Just(Msg::OtherResponse),
        Just(Msg::Comment),
    ]
}

fn render(msgs: &[Msg], crlf: &[bool]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut eol = |out: &mut Vec<u8>| {
        out.extend_from_slice(if crlf[n % crlf.len()] { b"\r\n" } else { b"\n" });
        n += 1;
    };
    for m in msgs {
        let line = match m {
            Msg::Progress => format!("data: {PROGRESS}"),
            Msg::ServerRequest => {
                r#"data: {"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage","params":{}}"#.into()
            }
            Msg::OtherResponse => r#"data: {"jsonrpc":"2.0","id":99,"result":{}}"#.into(),
            Msg::Comment => ":".into(),
            Msg::Final(0) => r#"data: {"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a\nb"}]}}"#.into(),
            Msg::Final(code) => {
                format!(r#"data: {{"jsonrpc":"2.0","id":7,"error":{{"code":{code},"message":"m"}}}}"#)
            }
        };
        out.extend_from_slice(b"id: e");
        eol(&mut out);
        out.extend_from_slice(line.as_bytes());
        eol(&mut out);
        eol(&mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_split_any_line_endings(
        before in proptest::collection::vec(msg_strategy(), 0..6),
        final_code in prop_oneof![Just(0i64), Just(-32603i64), Just(-32602i64)],
        crlf in proptest::collection::vec(any::<bool>(), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut msgs = before.clone();
        msgs.push(Msg::Final(final_code));
        let bytes = render(&msgs, &crlf);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain([bytes.len()]) {
            if p > last {
                chunks.push(Ok(Bytes::copy_from_slice(&bytes[last..p])));
                last = p;
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (out, handle) = rt.block_on(async {
            let (resp, handle) = observe_response(sse_response(chunks), Some(&RequestId::Number(7)));
            (drain(resp.into_body()).await.0, handle)
        });
        prop_assert_eq!(&out, &bytes, "bytes forwarded untouched");
        let want = if final_code == 0 { Outcome::Success } else { Outcome::RpcError(final_code) };
        prop_assert_eq!(handle.outcome(), Some(want));
        let progress = before.iter().filter(|m| matches!(m, Msg::Progress)).count() as u64;
        prop_assert_eq!(handle.progress_count(), progress);
    }
}
