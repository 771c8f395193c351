//! Fuzzes the SSE outcome observer: arbitrary stream bytes cut into frames chosen by the input.
//! Must never panic, must forward every byte untouched, and must reach the same outcome and the
//! same events whatever the framing.
#![no_main]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use libfuzzer_sys::fuzz_target;
use tower_armor_mcp::observe::observe_response;
use tower_armor_mcp::sse::SseParser;
use tower_armor_mcp::{Outcome, RequestId};

fn run(chunks: Vec<Bytes>) -> (Vec<u8>, Option<Outcome>, u64) {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
    let resp = http::Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let (resp, handle) = observe_response(resp, Some(&RequestId::Number(1)));
    let mut body = pin!(resp.into_body());
    let mut out = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let mut f = pin!(body.frame());
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => out.extend_from_slice(frame.data_ref().unwrap()),
            Poll::Ready(Some(Err(e))) => match e {},
            Poll::Ready(None) => break,
            Poll::Pending => unreachable!("an iterator body is always ready"),
        }
    }
    (out, handle.outcome(), handle.progress_count())
}

fn events(chunks: &[Bytes]) -> Vec<(Vec<u8>, bool)> {
    let mut p = SseParser::new(1 << 16);
    let mut evs = Vec::new();
    for c in chunks {
        p.feed(c, |e| evs.push((e.data.to_vec(), e.truncated)));
    }
    evs
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 17) + 1;
    let whole = vec![Bytes::copy_from_slice(stream)];
    let split: Vec<Bytes> = stream.chunks(step).map(Bytes::copy_from_slice).collect();
    let (a, oa, pa) = run(whole.clone());
    let (b, ob, pb) = run(split.clone());
    assert_eq!(a, stream);
    assert_eq!(b, stream);
    assert_eq!(oa, ob);
    assert_eq!(pa, pb);
    assert!(oa.is_some(), "a finished stream always has an outcome");
    assert_eq!(events(&whole), events(&split));
});
