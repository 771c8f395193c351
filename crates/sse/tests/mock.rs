//! The SSE layer against mock services and bodies, on paused time: keep-alive only at event
//! boundaries, idle timeout only for long-lived streams, shutdown at boundaries, headers, and
//! frames forwarded one by one.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, advance};
use tower::{Layer, ServiceExt, service_fn};
use tower_armor_sse::{SseBody, SseLayer, SseShutdown};

/// A body fed by the test through a channel: each message is one frame (`Err` ends it with an
/// error).
struct ChanBody(mpsc::UnboundedReceiver<Result<Bytes, &'static str>>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = &'static str;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        self.0.poll_recv(cx).map(|m| m.map(|r| r.map(Frame::data)))
    }
}

type Tx = mpsc::UnboundedSender<Result<Bytes, &'static str>>;

/// Sends the request through `layer` to a service answering with a channel body of
/// `content_type`; returns the feeding end and the answer.
async fn open(
    layer: &SseLayer,
    req: Request<()>,
    content_type: &'static str,
) -> (Tx, Response<SseBody<ChanBody>>) {
    serve(layer, req, content_type, None, None).await
}

/// [`open`] for an event stream with this `Content-Encoding`.
async fn open_encoded(
    layer: &SseLayer,
    req: Request<()>,
    encoding: &'static str,
) -> (Tx, Response<SseBody<ChanBody>>) {
    serve(layer, req, "text/event-stream", Some(encoding), None).await
}

/// [`open`], the answer with a `Content-Encoding` if given, and carrying `listen` (as the
/// inspector puts it on a listen's answer).
async fn serve(
    layer: &SseLayer,
    req: Request<()>,
    content_type: &'static str,
    encoding: Option<&'static str>,
    listen: Option<tower_armor_mcp::ListenId>,
) -> (Tx, Response<SseBody<ChanBody>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let svc = layer.layer(service_fn(move |_req: Request<()>| {
        let rx = rx.lock().unwrap().take().unwrap();
        let listen = listen.clone();
        async move {
            let mut resp = Response::builder()
                .header(header::CONTENT_TYPE, content_type)
                .body(ChanBody(rx))
                .unwrap();
            if let Some(e) = encoding {
                resp.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static(e));
            }
            if let Some(id) = listen {
                resp.extensions_mut().insert(id);
            }
            Ok::<_, Infallible>(resp)
        }
    }));
    (tx, svc.oneshot(req).await.unwrap())
}

fn get() -> Request<()> {
    Request::get("/mcp").body(()).unwrap()
}

fn post() -> Request<()> {
    Request::post("/mcp").body(()).unwrap()
}

fn layer(keep_alive: Option<u64>, idle: Option<u64>) -> SseLayer {
    SseLayer::builder()
        .keep_alive(keep_alive.map(Duration::from_secs))
        .idle_timeout(idle.map(Duration::from_secs))
        .build()
        .unwrap()
}

const KA: &[u8] = b":\n\n";

/// The next frame of `body` (data), `None` at its end; waits at most `within` of (paused) time.
async fn next(
    body: &mut Pin<Box<SseBody<ChanBody>>>,
    within: u64,
) -> Result<Option<Bytes>, &'static str> {
    match tokio::time::timeout(Duration::from_secs(within), body.frame()).await {
        Ok(Some(Ok(f))) => Ok(Some(f.into_data().unwrap())),
        Ok(Some(Err(e))) => Err(e),
        Ok(None) => Ok(None),
        Err(_) => Err("no frame in time"),
    }
}

/// Asserts that nothing comes out of `body` for `secs` (paused) seconds.
async fn quiet(body: &mut Pin<Box<SseBody<ChanBody>>>, secs: u64) {
    let got = tokio::time::timeout(Duration::from_secs(secs), body.frame()).await;
    assert!(got.is_err(), "expected nothing for {secs}s, got {got:?}");
}

#[tokio::test(start_paused = true)]
async fn keep_alive_comes_after_the_quiet_interval() {
    let l = layer(Some(15), None);
    let (_tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(t0.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn frames_restart_the_keep_alive_clock_and_pass_one_by_one() {
    let l = layer(Some(15), None);
    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    let t0 = Instant::now();
    advance(Duration::from_secs(10)).await;
    let frames = [
        &b"id: 1\ndata: {\"a\":1}\n\n"[..],
        b"data: 2\n\n",
        b": server comment\n\n",
    ];
    for f in frames {
        tx.send(Ok(Bytes::from_static(f))).unwrap();
    }
    // No coalescing: each frame comes out as it went in.
    for f in frames {
        assert_eq!(next(&mut body, 1).await.unwrap().unwrap(), f);
    }
    assert_eq!(next(&mut body, 30).await.unwrap().unwrap(), KA);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(25),
        "15 s after the last frame"
    );
}

#[tokio::test(start_paused = true)]
async fn no_comment_is_ever_inserted_inside_an_event() {
    let l = layer(Some(15), None);
    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    // An event split across frames with a long gap in the middle.
    tx.send(Ok(Bytes::from_static(
        b"event: message\ndata: {\"jsonrpc\"",
    )))
    .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"event: message\ndata: {\"jsonrpc\""[..]
    );
    quiet(&mut body, 120).await;
    // A complete line is not the end of the event either.
    tx.send(Ok(Bytes::from_static(b":\"2.0\"}\n"))).unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b":\"2.0\"}\n"[..]
    );
    quiet(&mut body, 120).await;
    // The blank line that ends the event, by a lone \r (half of a \r\n, maybe): the event is
    // over, so a keep-alive may follow 15 s later. A \n after it reads as one more blank line,
    // which dispatches nothing.
    tx.send(Ok(Bytes::from_static(b"\r"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
    tx.send(Ok(Bytes::from_static(b"\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(t0.elapsed(), Duration::from_secs(15));
}

/// A server that ends its lines with a lone \r (the SSE format allows it) gets keep-alive
/// comments while it is quiet between events, like any other.
#[tokio::test(start_paused = true)]
async fn a_stream_of_cr_lines_gets_keep_alives_between_events() {
    let l = layer(Some(15), None);
    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"data: {\"a\":1}\r\r")))
        .unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    for _ in 0..3 {
        let t0 = Instant::now();
        assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
        assert_eq!(t0.elapsed(), Duration::from_secs(15));
    }
}

#[tokio::test(start_paused = true)]
async fn keep_alive_off_sends_nothing() {
    let l = layer(None, None);
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    quiet(&mut body, 600).await;
    drop(tx);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn idle_long_lived_streams_end_at_a_boundary() {
    let l = layer(Some(15), Some(40));
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    // Comments (the server's) do not count as data.
    tx.send(Ok(Bytes::from_static(b": ping\n\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(next(&mut body, 20).await.unwrap(), None, "idle: ended");
    assert_eq!(t0.elapsed(), Duration::from_secs(40));
    // And stays ended.
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
    assert!(body.is_end_stream());
}

#[tokio::test(start_paused = true)]
async fn resuming_the_listen_stream_does_not_dodge_the_idle_timeout() {
    let l = layer(Some(15), Some(40));
    // rmcp's listen-stream event ids have no `/`: this GET resumes the listen stream.
    let req = Request::get("/mcp")
        .header("last-event-id", "0")
        .body(())
        .unwrap();
    let (_tx, resp) = open(&l, req, "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(next(&mut body, 20).await.unwrap().unwrap(), KA);
    assert_eq!(next(&mut body, 20).await.unwrap(), None, "idle: ended");
    assert_eq!(t0.elapsed(), Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn data_events_restart_the_idle_clock() {
    let l = layer(None, Some(40));
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    let t0 = Instant::now();
    advance(Duration::from_secs(30)).await;
    tx.send(Ok(Bytes::from_static(
        b"data: {\"method\":\"notifications/tools/list_changed\"}\n\n",
    )))
    .unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    assert_eq!(next(&mut body, 60).await.unwrap(), None);
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(70),
        "40 s after the data event"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_waits_for_the_end_of_an_event() {
    let l = layer(None, Some(40));
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"id: 9\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    // Within the shutdown grace (5 s) after the idle timeout.
    quiet(&mut body, 44).await;
    tx.send(Ok(Bytes::from_static(b"data: x\n\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 60).await.unwrap(), None);
    assert_eq!(t0.elapsed(), Duration::from_secs(40));
}

#[tokio::test(start_paused = true)]
async fn idle_ends_after_an_event_without_data() {
    let l = layer(None, Some(40));
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"id: 9\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    // Within the shutdown grace (5 s) after the idle timeout.
    quiet(&mut body, 44).await;
    // The event ends without data: no data came for 40 s, so the stream ends right after.
    tx.send(Ok(Bytes::from_static(b"\n"))).unwrap();
    assert_eq!(next(&mut body, 1).await.unwrap().unwrap(), &b"\n"[..]);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn subscriptions_listen_is_long_lived_too() {
    let l = layer(None, Some(40));
    let req = Request::post("/mcp")
        .header("mcp-method", "subscriptions/listen")
        .body(())
        .unwrap();
    let (_tx, resp) = open(&l, req, "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    assert_eq!(next(&mut body, 60).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn call_streams_never_time_out() {
    let l = layer(Some(15), Some(40));
    for req in [
        post(),
        Request::post("/mcp")
            .header("mcp-method", "tools/call")
            .body(())
            .unwrap(),
        // A resumed call stream (GET + Last-Event-ID of a call: rmcp's `<index>/<request>`)
        // is the call, not a listen stream.
        Request::get("/mcp")
            .header("last-event-id", "0/1")
            .body(())
            .unwrap(),
    ] {
        let (_tx, resp) = open(&l, req, "text/event-stream").await;
        let mut body = Box::pin(resp.into_body());
        for _ in 0..20 {
            assert_eq!(next(&mut body, 16).await.unwrap().unwrap(), KA);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_ends_streams_at_a_boundary() {
    let l = layer(Some(15), None);
    let handle: SseShutdown = l.shutdown_handle();
    let (tx_a, resp_a) = open(&l, get(), "text/event-stream").await;
    let (tx_b, resp_b) = open(&l, post(), "text/event-stream").await;
    let (mut a, mut b) = (Box::pin(resp_a.into_body()), Box::pin(resp_b.into_body()));
    assert_eq!(handle.open_streams(), 2);
    tx_a.send(Ok(Bytes::from_static(b"data: whole\n\n")))
        .unwrap();
    next(&mut a, 1).await.unwrap().unwrap();
    // b is inside an event when the shutdown comes.
    tx_b.send(Ok(Bytes::from_static(b"data: par"))).unwrap();
    next(&mut b, 1).await.unwrap().unwrap();

    handle.shutdown();
    assert!(handle.is_shutdown());
    assert_eq!(
        next(&mut a, 1).await.unwrap(),
        None,
        "at a boundary: ends at once"
    );
    quiet(&mut b, 2).await;
    tx_b.send(Ok(Bytes::from_static(b"tial\n\n"))).unwrap();
    assert_eq!(next(&mut b, 1).await.unwrap().unwrap(), &b"tial\n\n"[..]);
    assert_eq!(next(&mut b, 1).await.unwrap(), None, "then ends");
    drop((a, b));
    assert_eq!(handle.open_streams(), 0);

    // Answered after the shutdown: ends at once.
    let (_tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut c = Box::pin(resp.into_body());
    assert_eq!(next(&mut c, 1).await.unwrap(), None);
}

/// A compressed stream gets no keep-alives (its bytes are not events), but shutdown still ends
/// it, cut where it is: graceful shutdown must not wait for it. A drain ends it when it is a
/// listen stream only.
#[tokio::test(start_paused = true)]
async fn shutdown_ends_compressed_streams_too() {
    let l = layer(Some(15), None);
    let handle = l.shutdown_handle();
    let (tx_listen, listen) = open_encoded(&l, get(), "gzip").await;
    let (tx_call, call) = open_encoded(&l, post(), "gzip").await;
    let mut listen = Box::pin(listen.into_body());
    let mut call = Box::pin(call.into_body());
    assert_eq!(handle.open_streams(), 2);
    tx_call.send(Ok(Bytes::from_static(b"\x1f\x8b"))).unwrap();
    assert_eq!(next(&mut call, 1).await.unwrap().unwrap(), &b"\x1f\x8b"[..]);
    quiet(&mut call, 30).await;

    handle.end_long_lived();
    assert_eq!(next(&mut listen, 1).await.unwrap(), None);
    quiet(&mut call, 2).await;
    handle.shutdown();
    assert_eq!(next(&mut call, 1).await.unwrap(), None);
    drop((listen, call, tx_listen, tx_call));
    assert_eq!(handle.open_streams(), 0);
}

/// A drain ends the long-lived streams (at a boundary) and lets call streams go on to their
/// answers; a full shutdown afterwards ends those too.
#[tokio::test(start_paused = true)]
async fn a_drain_ends_listen_streams_and_lets_calls_finish() {
    let l = layer(Some(15), None);
    let handle = l.shutdown_handle();
    let (_tx_listen, resp) = open(&l, get(), "text/event-stream").await;
    let mut listen = Box::pin(resp.into_body());
    let (tx_call, resp) = open(&l, post(), "text/event-stream").await;
    let mut call = Box::pin(resp.into_body());

    handle.end_long_lived();
    assert!(handle.is_draining() && !handle.is_shutdown());
    assert_eq!(next(&mut listen, 1).await.unwrap(), None);
    // The call goes on: keep-alives, then its answer.
    assert_eq!(next(&mut call, 16).await.unwrap().unwrap(), KA);
    tx_call
        .send(Ok(Bytes::from_static(b"data: answer\n\n")))
        .unwrap();
    assert_eq!(
        next(&mut call, 1).await.unwrap().unwrap(),
        &b"data: answer\n\n"[..]
    );
    // Answered during the drain: a listen stream ends at once, a call's does not.
    let (_tx, resp) = open(&l, get(), "text/event-stream").await;
    assert_eq!(
        next(&mut Box::pin(resp.into_body()), 1).await.unwrap(),
        None
    );
    let (_tx_late, resp) = open(&l, post(), "text/event-stream").await;
    let mut late = Box::pin(resp.into_body());
    quiet(&mut late, 2).await;

    // The full shutdown ends the rest.
    handle.shutdown();
    assert_eq!(next(&mut call, 1).await.unwrap(), None);
    assert_eq!(next(&mut late, 1).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cuts_a_stuck_event_after_the_grace() {
    let l = SseLayer::builder()
        .shutdown_grace(Duration::from_secs(3))
        .build()
        .unwrap();
    let (_tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    _tx.send(Ok(Bytes::from_static(b"data: stuck"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    let t0 = Instant::now();
    l.shutdown_handle().shutdown();
    assert_eq!(next(&mut body, 10).await.unwrap(), None);
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
}

/// A frame that ends the event in flight and starts the next (a proxied upstream's frames
/// follow its reads, not its events) is cut at that boundary on shutdown: the stream ends
/// there at once, without the start of an event the client would never see whole.
#[tokio::test(start_paused = true)]
async fn shutdown_cuts_a_frame_at_the_boundary_inside_it() {
    let l = layer(Some(15), None);
    let handle = l.shutdown_handle();
    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"data: A-par"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    handle.shutdown();
    tx.send(Ok(Bytes::from_static(b"t\n\ndata: B\n\ndata: C-par")))
        .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"t\n\ndata: B\n\n"[..],
        "complete events pass, the unfinished one does not"
    );
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
}

/// Ending at a boundary, the layer gives the inner body one look first: a whole event already
/// waiting (the final event a layer further in ended its call with: the drain's `-31510`)
/// passes, then the end. So it does after the event in flight ends.
#[tokio::test(start_paused = true)]
async fn shutdown_passes_a_whole_event_already_waiting() {
    let l = layer(Some(15), None);
    let handle = l.shutdown_handle();
    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"data: 1\n\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    tx.send(Ok(Bytes::from_static(b"data: final\n\n"))).unwrap();
    handle.shutdown();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"data: final\n\n"[..]
    );
    assert_eq!(next(&mut body, 1).await.unwrap(), None);

    let l2 = layer(Some(15), None);
    let handle = l2.shutdown_handle();
    let (tx2, resp2) = open(&l2, post(), "text/event-stream").await;
    let mut body2 = Box::pin(resp2.into_body());
    tx2.send(Ok(Bytes::from_static(b"data: par"))).unwrap();
    next(&mut body2, 1).await.unwrap().unwrap();
    handle.shutdown();
    tx2.send(Ok(Bytes::from_static(b"tial\n\n"))).unwrap();
    tx2.send(Ok(Bytes::from_static(b"data: final\n\n")))
        .unwrap();
    assert_eq!(
        next(&mut body2, 1).await.unwrap().unwrap(),
        &b"tial\n\n"[..]
    );
    assert_eq!(
        next(&mut body2, 1).await.unwrap().unwrap(),
        &b"data: final\n\n"[..]
    );
    assert_eq!(next(&mut body2, 1).await.unwrap(), None);
}

/// An idle timeout that passes inside an event waits for its end, but not for ever: a server
/// stalled mid-event is cut a shutdown grace later (its stream's slots come back).
#[tokio::test(start_paused = true)]
async fn an_idle_stream_stalled_mid_event_is_cut_after_the_grace() {
    let l = SseLayer::builder()
        .keep_alive(None::<Duration>)
        .idle_timeout(Duration::from_secs(40))
        .shutdown_grace(Duration::from_secs(3))
        .build()
        .unwrap();
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"data: {\"jsonrpc\":")))
        .unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    let t0 = Instant::now();
    assert_eq!(next(&mut body, 100).await.unwrap(), None);
    assert_eq!(t0.elapsed(), Duration::from_secs(43));
    drop(tx);
}

/// A keep-alive that went out before the server's first byte: a byte order mark at the start
/// of the server's bytes would reach the client mid-stream (read as part of a field name, its
/// first event lost), so it is dropped. Without a keep-alive before it, it passes.
#[tokio::test(start_paused = true)]
async fn a_byte_order_mark_after_a_keep_alive_is_dropped() {
    let l = layer(Some(15), None);
    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    assert_eq!(next(&mut body, 16).await.unwrap().unwrap(), KA);
    tx.send(Ok(Bytes::from_static(b"\xEF\xBB\xBFdata: 1\n\n")))
        .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"data: 1\n\n"[..]
    );

    let (tx, resp) = open(&l, post(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"\xEF\xBB\xBFdata: 1\n\n")))
        .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"\xEF\xBB\xBFdata: 1\n\n"[..]
    );
}

#[tokio::test(start_paused = true)]
async fn other_answers_pass_through() {
    let l = layer(Some(15), Some(40));
    let (tx, resp) = open(&l, get(), "application/json").await;
    assert!(resp.headers().get("x-accel-buffering").is_none());
    assert!(resp.headers().get(header::CACHE_CONTROL).is_none());
    let mut body = Box::pin(resp.into_body());
    assert!(!body.is_stream());
    quiet(&mut body, 100).await;
    l.shutdown_handle().shutdown();
    tx.send(Ok(Bytes::from_static(b"{}"))).unwrap();
    assert_eq!(next(&mut body, 1).await.unwrap().unwrap(), &b"{}"[..]);
}

#[tokio::test(start_paused = true)]
async fn body_errors_pass_through() {
    let l = layer(Some(15), None);
    let (tx, resp) = open(&l, get(), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Err("reset")).unwrap();
    assert_eq!(next(&mut body, 1).await, Err("reset"));
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
}

#[tokio::test]
async fn sse_headers_are_set_with_a_mock_service() {
    let (mut mock, mut handle) =
        tower_test::mock::spawn_layer::<Request<()>, Response<String>, _>(SseLayer::new());
    tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(
            Response::builder()
                .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
                .header(header::CONTENT_LENGTH, "10")
                .header(header::CACHE_CONTROL, "private")
                .body("data: x\n\n".to_owned())
                .unwrap(),
        );
    });
    assert!(mock.poll_ready().is_ready());
    let resp = mock.call(get()).await.unwrap();
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let cc: Vec<_> = resp
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(cc, ["private", "no-cache"]);
    assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "data: x\n\n");
}

/// A compressed event stream's bytes are not events: no keep-alive comment is written into them
/// (it would corrupt the compressed stream) and no idle timeout ends it at a "boundary".
#[tokio::test(start_paused = true)]
async fn compressed_sse_gets_no_keep_alive_and_no_idle_timeout() {
    let (tx, resp) = open_encoded(&layer(Some(1), Some(2)), get(), "br").await;
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "br");
    let mut body = Box::pin(resp.into_body());
    quiet(&mut body, 10).await;
    tx.send(Ok(Bytes::from_static(b"\x0b\x02\x80"))).unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"\x0b\x02\x80"[..]
    );
    quiet(&mut body, 10).await;
    drop(tx);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
}

#[test]
fn layer_and_services_are_send_sync_clone() {
    fn check<T: Send + Sync + Clone>(_: &T) {}
    let l = SseLayer::new();
    check(&l);
    check(&l.shutdown_handle());
    check(&l.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    })));
    let _ = HeaderValue::from_static("x");
    let _ = FutureExt::now_or_never(async {});
}

fn resume(last_event_id: &'static str) -> Request<()> {
    Request::get("/mcp")
        .header("last-event-id", last_event_id)
        .body(())
        .unwrap()
}

/// rmcp 3.11 replays the event a resumed call stream's `Last-Event-ID` names (an off-by-one):
/// the client has it already, so it is dropped, even when it comes split over frames.
#[tokio::test(start_paused = true)]
async fn a_resumed_call_stream_does_not_repeat_the_event_named_by_last_event_id() {
    let l = layer(Some(15), None);
    let (tx, resp) = open(&l, resume("2/0"), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"id: 2/"))).unwrap();
    tx.send(Ok(Bytes::from_static(b"0\ndata: {\"step\":1}\n")))
        .unwrap();
    tx.send(Ok(Bytes::from_static(b"\nid: 3/0\ndata: {\"step\":2}\n")))
        .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"id: 3/0\ndata: {\"step\":2}\n"[..],
        "the replayed event is dropped; what follows it in the frame is not"
    );
    // From then on frames pass one by one, untouched, even one with the same id.
    tx.send(Ok(Bytes::from_static(b"\n"))).unwrap();
    assert_eq!(next(&mut body, 1).await.unwrap().unwrap(), &b"\n"[..]);
    tx.send(Ok(Bytes::from_static(b"id: 2/0\ndata: x\n\n")))
        .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"id: 2/0\ndata: x\n\n"[..]
    );
    drop(tx);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_stream_starting_with_a_new_event_is_untouched() {
    let l = layer(Some(15), None);
    // Another id first (a server without the off-by-one), CRLF line ends.
    let (tx, resp) = open(&l, resume("2/0"), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"id: 3/0\r\ndata: a\r\n\r\n")))
        .unwrap();
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"id: 3/0\r\ndata: a\r\n\r\n"[..]
    );
    // The replayed event alone, then the end: nothing is sent for it.
    let (tx, resp) = open(&l, resume("2/0"), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"id:2/0\ndata: a\n\n")))
        .unwrap();
    drop(tx);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
    // An unfinished first event when the body ends: what came is sent.
    let (tx, resp) = open(&l, resume("2/0"), "text/event-stream").await;
    let mut body = Box::pin(resp.into_body());
    tx.send(Ok(Bytes::from_static(b"id: 2/0\ndata: a")))
        .unwrap();
    drop(tx);
    assert_eq!(
        next(&mut body, 1).await.unwrap().unwrap(),
        &b"id: 2/0\ndata: a"[..]
    );
    assert_eq!(next(&mut body, 1).await.unwrap(), None);
    // Not a resumption (a listen stream's id, a POST): nothing is held or dropped.
    for req in [resume("2"), post()] {
        let (tx, resp) = open(&l, req, "text/event-stream").await;
        let mut body = Box::pin(resp.into_body());
        tx.send(Ok(Bytes::from_static(b"id: 2\ndata: a\n")))
            .unwrap();
        assert_eq!(
            next(&mut body, 1).await.unwrap().unwrap(),
            &b"id: 2\ndata: a\n"[..]
        );
    }
}

// === the graceful close of a 2026-07-28 listen stream the layer ends ===

/// A `subscriptions/listen` answer whose response names its request (as the inspector does).
async fn open_listen(layer: &SseLayer, id: i64) -> (Tx, Pin<Box<SseBody<ChanBody>>>) {
    let req = Request::post("/mcp")
        .header("mcp-method", "subscriptions/listen")
        .body(())
        .unwrap();
    let listen = tower_armor_mcp::ListenId(id.into());
    let (tx, resp) = serve(layer, req, "text/event-stream", None, Some(listen)).await;
    (tx, Box::pin(resp.into_body()))
}

fn assert_graceful_close(frame: Option<Bytes>, id: i64) {
    let frame = frame.expect("the graceful close");
    let text = std::str::from_utf8(&frame).unwrap();
    let data = text
        .strip_prefix("data: ")
        .and_then(|d| d.strip_suffix("\n\n"))
        .expect(text);
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"resultType":"complete",
            "_meta":{"io.modelcontextprotocol/subscriptionId":id}}})
    );
}

#[tokio::test(start_paused = true)]
async fn a_listen_stream_the_layer_ends_gets_its_graceful_close() {
    // Idle, at a boundary.
    let l = layer(None, Some(40));
    let (tx, mut body) = open_listen(&l, 7).await;
    tx.send(Ok(Bytes::from_static(b"data: {\"ack\":1}\n\n")))
        .unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    assert_graceful_close(next(&mut body, 60).await.unwrap(), 7);
    assert!(body.is_end_stream());
    assert_eq!(next(&mut body, 1).await.unwrap(), None);

    // Idle inside an event: the event ends, then the close (the body is not over before it).
    let (tx, mut body) = open_listen(&l, 8).await;
    tx.send(Ok(Bytes::from_static(b"id: 1\n"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    // Within the shutdown grace (5 s) after the idle timeout.
    quiet(&mut body, 44).await;
    tx.send(Ok(Bytes::from_static(b"\n"))).unwrap();
    assert_eq!(next(&mut body, 1).await.unwrap().unwrap(), &b"\n"[..]);
    assert!(!body.is_end_stream(), "the close is still to come");
    assert_graceful_close(next(&mut body, 1).await.unwrap(), 8);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);

    // The drain.
    let l = layer(Some(15), None);
    let (_tx, mut body) = open_listen(&l, 9).await;
    l.shutdown_handle().end_long_lived();
    assert_graceful_close(next(&mut body, 1).await.unwrap(), 9);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);

    // Cut inside an event after the shutdown grace: nothing may follow the partial event.
    let l = SseLayer::builder()
        .shutdown_grace(Duration::from_secs(3))
        .build()
        .unwrap();
    let (tx, mut body) = open_listen(&l, 10).await;
    tx.send(Ok(Bytes::from_static(b"data: stuck"))).unwrap();
    next(&mut body, 1).await.unwrap().unwrap();
    l.shutdown_handle().shutdown();
    assert_eq!(next(&mut body, 10).await.unwrap(), None);

    // The server's own end: nothing added.
    let l = layer(None, Some(40));
    let (tx, mut body) = open_listen(&l, 11).await;
    drop(tx);
    assert_eq!(next(&mut body, 1).await.unwrap(), None);

    // The event in flight when the drain came is the server's own final result: the
    // subscription is closed already, no second close follows. Another id's response is not
    // the subscription's end.
    for (id, answers) in [(12, 12), (13, 99)] {
        let l = layer(Some(15), None);
        let (tx, mut body) = open_listen(&l, id).await;
        let head = format!("data: {{\"jsonrpc\":\"2.0\",\"id\":{answers},");
        tx.send(Ok(Bytes::from(head))).unwrap();
        next(&mut body, 1).await.unwrap().unwrap();
        l.shutdown_handle().end_long_lived();
        quiet(&mut body, 1).await;
        tx.send(Ok(Bytes::from_static(
            b"\"result\":{\"resultType\":\"complete\"}}\n\n",
        )))
        .unwrap();
        next(&mut body, 1).await.unwrap().unwrap();
        if id == answers {
            assert_eq!(next(&mut body, 1).await.unwrap(), None);
        } else {
            assert_graceful_close(next(&mut body, 1).await.unwrap(), id);
        }
    }
}

fn listen(session: &'static str) -> Request<()> {
    Request::get("/mcp")
        .header("mcp-session-id", session)
        .body(())
        .unwrap()
}

/// One standalone stream per session: a second one while the first is open gets 409 (and the
/// server's stream for it is dropped); once the first ends, the session may open one again.
/// Other sessions, call streams and a GET resuming a call are not affected.
#[tokio::test(start_paused = true)]
async fn a_second_standalone_stream_of_a_session_gets_409() {
    let l = layer(Some(15), None);
    let (_tx1, first) = open(&l, listen("s-1"), "text/event-stream").await;
    assert_eq!(first.status(), 200);
    let mut again = listen("s-1");
    again
        .extensions_mut()
        .insert(tower_armor_mcp::CorrelationId::parse("case-409").unwrap());
    let (tx2, second) = open(&l, again, "text/event-stream").await;
    assert_eq!(second.status(), 409);
    assert_eq!(second.headers()["content-type"], "application/json");
    assert!(tx2.is_closed(), "the server's second stream is dropped");
    let body = second.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], -31409);
    assert_eq!(v["error"]["data"]["correlationId"], "case-409");
    assert!(v["id"].is_null());
    // A reconnection of the listen stream (a bare event id) is one too.
    let reconnect = Request::get("/mcp")
        .header("mcp-session-id", "s-1")
        .header("last-event-id", "7")
        .body(())
        .unwrap();
    assert_eq!(
        open(&l, reconnect, "text/event-stream").await.1.status(),
        409
    );
    // Another session, a call's resumption and a call stream pass.
    let (_tx, other) = open(&l, listen("s-2"), "text/event-stream").await;
    assert_eq!(other.status(), 200);
    let resume_call = Request::get("/mcp")
        .header("mcp-session-id", "s-1")
        .header("last-event-id", "3/0")
        .body(())
        .unwrap();
    assert_eq!(
        open(&l, resume_call, "text/event-stream").await.1.status(),
        200
    );
    // An answer that is not a stream takes no place (the server refused the GET).
    let (_tx, refused) = open(&l, listen("s-3"), "text/plain").await;
    assert_eq!(refused.status(), 200);
    assert_eq!(
        open(&l, listen("s-3"), "text/event-stream")
            .await
            .1
            .status(),
        200
    );
    // The first stream ends: the session may open one again.
    drop(first);
    assert_eq!(
        open(&l, listen("s-1"), "text/event-stream")
            .await
            .1
            .status(),
        200
    );
    // A compressed stream (a misconfiguration, logged) holds its session's place all the same.
    let (_tx, compressed) = serve(&l, listen("s-4"), "text/event-stream", Some("gzip"), None).await;
    assert_eq!(compressed.status(), 200);
    assert_eq!(
        open(&l, listen("s-4"), "text/event-stream")
            .await
            .1
            .status(),
        409
    );
    drop(compressed);
    assert_eq!(
        open(&l, listen("s-4"), "text/event-stream")
            .await
            .1
            .status(),
        200
    );
}

/// The place is taken when the request comes: of two standalone GETs of one session in flight
/// at once, the second waits for the first's answer and, that being the stream, is refused
/// without ever reaching the server (rmcp decides which of two is the stream that carries
/// messages when it gets them, so the answers' order cannot).
#[tokio::test(start_paused = true)]
async fn two_standalone_gets_in_flight_at_once_reach_the_server_once() {
    let l = layer(Some(15), None);
    let (svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<ChanBody>, _>(l);
    let mut svc = svc.into_inner();
    ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap();
    let first = tower::Service::call(&mut svc, listen("s-1"));
    ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap();
    let second = tokio::spawn(tower::Service::call(&mut svc, listen("s-1")));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!second.is_finished(), "waits for the first's answer");
    let (_req, tx) = answer_next(&mut handle, 200).await;
    let stream = first.await.unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 409);
    assert!(
        tokio::time::timeout(Duration::from_millis(10), handle.next_request())
            .await
            .is_err(),
        "the refused request never reached the server"
    );
    // A request whose answer is not a stream gives the place back.
    ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap();
    let foreign = tower::Service::call(&mut svc, listen("s-2"));
    answer_next(&mut handle, 404).await;
    assert_eq!(foreign.await.unwrap().status(), 404);
    ServiceExt::<Request<()>>::ready(&mut svc).await.unwrap();
    let owner = tower::Service::call(&mut svc, listen("s-2"));
    assert!(handle.next_request().await.is_some(), "s-2 is free again");
    drop((owner, stream, tx));
}

/// [`listen`] with an `Authorization` header.
fn listen_as(session: &'static str, authorization: &'static str) -> Request<()> {
    let mut req = listen(session);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        http::HeaderValue::from_static(authorization),
    );
    req
}

/// Answers the mock's next request with `status` and, for 200, an event stream.
async fn answer_next(
    handle: &mut tower_test::mock::Handle<Request<()>, Response<ChanBody>>,
    status: u16,
) -> (Request<()>, Tx) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
        .await
        .expect("a request reached the server")
        .expect("the service is alive");
    let (tx, rx) = mpsc::unbounded_channel();
    let mut resp = Response::builder().status(status);
    if status == 200 {
        resp = resp.header(header::CONTENT_TYPE, "text/event-stream");
    }
    send.send_response(resp.body(ChanBody(rx)).unwrap());
    (req, tx)
}

/// The status of a call's answer.
async fn status<B, E: std::fmt::Debug>(
    call: impl std::future::Future<Output = Result<Response<B>, E>>,
) -> http::StatusCode {
    call.await.unwrap().status()
}

/// The layer runs before authentication: only a request with the place holder's own
/// credential is refused at once. One with another credential, or none, goes on to be
/// answered by whatever authenticates further in (a 401, bearer-auth's unknown-session 404),
/// so the 409 tells nobody else that the session exists or has a stream open; if the server
/// lets it in with a stream, it asks for the place then, and gets 409 while it is held.
#[tokio::test(start_paused = true)]
async fn only_the_holders_own_credential_is_refused_before_going_on() {
    let l = layer(Some(15), None);
    let (svc, mut handle) = tower_test::mock::spawn_layer::<Request<()>, Response<ChanBody>, _>(l);
    let mut svc = svc.into_inner();
    let mut call = |req: Request<()>| {
        futures_util::FutureExt::now_or_never(ServiceExt::<Request<()>>::ready(&mut svc))
            .expect("ready")
            .expect("no error");
        tower::Service::call(&mut svc, req)
    };

    let owner = call(listen_as("s-1", "Bearer alice"));
    let (_req, _owner_tx) = answer_next(&mut handle, 200).await;
    let owner = owner.await.unwrap();
    assert_eq!(owner.status(), 200);

    // The owner's own second stream: 409 without reaching the server.
    assert_eq!(status(call(listen_as("s-1", "Bearer alice"))).await, 409);
    // Another principal and no token at all: answered by the server (auth, further in).
    for (req, status) in [(listen_as("s-1", "Bearer bob"), 404), (listen("s-1"), 401)] {
        let refused = call(req);
        answer_next(&mut handle, status).await;
        assert_eq!(refused.await.unwrap().status(), status);
    }
    // Let in with a stream while the place is held: 409, the server's stream dropped.
    let other = call(listen_as("s-1", "Bearer alice-second-token"));
    let (_req, tx) = answer_next(&mut handle, 200).await;
    assert_eq!(other.await.unwrap().status(), 409);
    assert!(tx.is_closed(), "the server's second stream is dropped");
    assert!(
        tokio::time::timeout(Duration::from_millis(10), handle.next_request())
            .await
            .is_err()
    );

    // A foreign request in flight does not shut the owner out: the owner's GET waits for its
    // answer (it learns nothing: it would have gone on anyway), then takes the place.
    let foreign = call(listen_as("s-2", "Bearer bob"));
    let second_owner = tokio::spawn(call(listen_as("s-2", "Bearer alice")));
    let (req, _) = answer_next(&mut handle, 404).await;
    assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer bob");
    assert_eq!(foreign.await.unwrap().status(), 404);
    let (req, _tx) = answer_next(&mut handle, 200).await;
    assert_eq!(req.headers()[header::AUTHORIZATION], "Bearer alice");
    let second_stream = second_owner.await.unwrap().unwrap();
    assert_eq!(second_stream.status(), 200);
    assert_eq!(status(call(listen_as("s-2", "Bearer alice"))).await, 409);
    // Requests without a valid credential never refuse each other: each waits its turn and
    // gets what authentication answers.
    let anonymous: Vec<_> = (0..3).map(|_| tokio::spawn(call(listen("s-3")))).collect();
    for _ in 0..3 {
        answer_next(&mut handle, 401).await;
    }
    for a in anonymous {
        assert_eq!(a.await.unwrap().unwrap().status(), 401);
    }
    drop((owner, second_stream));
}
