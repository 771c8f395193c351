use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::in_flight::{InFlightIds, InProgress};
use super::layer::McpInspectLayer;
use super::parse::{self, Limits, Rejection};
use crate::body::{McpBody, ResponseBody, json_rpc_error_response, local_error_response};
use crate::error::CODE_BODY_TIMEOUT;
use crate::{CompletionHandle, CorrelationId};
use crate::{ListenId, MessageKind, Method, ProtocolRevision};

pin_project! {
    /// Response future of [`McpInspect`](super::McpInspect): reads the body, then calls the inner
    /// service, or answers a rejection.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<McpBody>>,
    {
        #[pin]
        state: State<B, S, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S, F> {
        Reading {
            #[pin]
            body: B,
            read: Read,
            parts: Option<Parts>,
            service: Option<S>,
            json: bool,
            limits: Limits,
            max: usize,
            timeout: Option<Duration>,
            // Armed on the first `Pending` from the body, never before: a body that is complete
            // when the request comes costs no timer. Boxed so the slow path alone pays for it.
            sleep: Option<Pin<Box<Sleep>>>,
            in_flight: Option<Arc<InFlightIds>>,
            // Over the limit: the rest of the body is read and dropped (the body's bytes so
            // far; at most `DRAIN_MAX_BYTES` past the limit, for at most `DRAIN_TIME`) before
            // the 413 goes out.
            drained: Option<usize>,
        },
        Calling {
            #[pin]
            future: F,
            // A `subscriptions/listen` request's id, put on its answer.
            listen: Option<ListenId>,
            // The request's id marked in progress in its session, until its answer ends (the
            // request carries a clone too).
            in_flight: Option<InProgress>,
        },
        Answer {
            rejection: Option<Rejection>,
            // Named in the answer's `data`, as every local error answer does.
            correlation: Option<CorrelationId>,
        },
    }
}

/// The bytes read so far: the first frame kept as is (no copy for single-frame bodies).
#[derive(Default)]
struct Read {
    first: Option<Bytes>,
    rest: BytesMut,
    len: usize,
}

impl Read {
    fn push(&mut self, mut data: impl Buf) {
        let n = data.remaining();
        self.len += n;
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(data.copy_to_bytes(n));
        } else {
            if let Some(f) = self.first.take() {
                self.rest.extend_from_slice(&f);
            }
            while data.has_remaining() {
                let c = data.chunk();
                let l = c.len();
                self.rest.extend_from_slice(c);
                data.advance(l);
            }
        }
    }

    fn finish(&mut self) -> Bytes {
        match self.first.take() {
            Some(f) => f,
            None => std::mem::take(&mut self.rest).freeze(),
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<McpBody>>,
{
    pub(crate) fn calling(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Calling {
                future,
                listen: None,
                in_flight: None,
            },
        }
    }

    pub(crate) fn answer(rejection: Rejection, correlation: Option<&CorrelationId>) -> Self {
        ResponseFuture {
            state: State::Answer {
                rejection: Some(rejection),
                correlation: correlation.cloned(),
            },
        }
    }

    /// Reads the body; `too_large`: it is known to be over the limit already (its declared
    /// length), so it is only drained before the 413.
    pub(crate) fn reading(
        body: B,
        parts: Parts,
        service: S,
        json: bool,
        config: &McpInspectLayer,
        too_large: bool,
    ) -> Self {
        // Only a request naming a session is tracked.
        let in_flight = config
            .in_flight
            .as_ref()
            .filter(|_| parts.headers.contains_key(&super::parse::SESSION_ID))
            .cloned();
        ResponseFuture {
            state: State::Reading {
                body,
                read: Read::default(),
                parts: Some(parts),
                service: Some(service),
                json,
                limits: config.limits,
                max: config.max_body,
                timeout: config.body_timeout,
                sleep: None,
                in_flight,
                drained: too_large.then_some(0),
            },
        }
    }
}

/// How much of an oversized body is read and dropped before the 413 goes out, at most. An HTTP
/// server that answers while the client is still sending closes the connection with unread
/// bytes in it, which resets it: many clients (Python's httpx among them) then report a reset
/// and never see the 413. A body over the limit by more than this is answered at once.
pub(crate) const DRAIN_MAX_BYTES: usize = 8 << 20;
/// How long an oversized body may take to be drained before the 413 goes out anyway.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Whether a Tokio timer can be armed here: polled inside a Tokio runtime. Warns once if not.
/// (A Tokio runtime built without `enable_time` still panics here, as every Tokio timer does.)
#[cold]
fn timer_available() -> bool {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let ok = tokio::runtime::Handle::try_current().is_ok();
    if !ok && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "McpInspectLayer: polled outside a Tokio runtime; request bodies are read without \
             the body_timeout deadline"
        );
    }
    ok
}

/// The 408 for a body that did not arrive in time.
fn body_timeout_response<B>(parts: &Parts) -> Response<ResponseBody<B>> {
    let mut resp = local_error_response(
        StatusCode::REQUEST_TIMEOUT,
        None,
        CODE_BODY_TIMEOUT,
        "request body not received in time",
        parts.extensions.get::<CorrelationId>(),
    );
    // The rest of the body is never read, so an HTTP/1 connection cannot carry another request.
    // HTTP/2 has no `Connection` header (hyper would strip it with a warning); its stream ends
    // with the answer.
    if parts.version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<McpBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<McpBody>, Response = Response<ResBody>>,
    B: Body,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Calling {
                    future,
                    listen,
                    in_flight,
                } => {
                    let result = ready!(future.poll(cx));
                    return Poll::Ready(result.map(|mut r| {
                        if let Some(id) = listen.take() {
                            r.extensions_mut().insert(id);
                        }
                        // The id stays in progress until the answer has ended.
                        if let Some(entry) = in_flight.take()
                            && let Some(h) = r.extensions().get::<CompletionHandle>()
                        {
                            h.on_complete(move |_| drop(entry));
                        }
                        r.map(ResponseBody::inner)
                    }));
                }
                StateProj::Answer {
                    rejection,
                    correlation,
                } => {
                    let rej = rejection
                        .take()
                        .expect("ResponseFuture polled after completion");
                    tracing::debug!(
                        status = rej.status.as_u16(),
                        code = rej.code,
                        reason = rej.message,
                        "MCP request rejected"
                    );
                    let mut resp = match &rej.requested {
                        None => local_error_response(
                            rej.status,
                            rej.id.as_ref(),
                            rej.code,
                            rej.message,
                            correlation.as_ref(),
                        ),
                        Some(requested) => {
                            // 2026-07-28's UnsupportedProtocolVersionError: what the client
                            // asked for and what it may ask for instead.
                            let mut data = serde_json::Map::new();
                            let supported = ProtocolRevision::ALL.map(ProtocolRevision::as_str);
                            data.insert("supported".into(), supported.to_vec().into());
                            data.insert("requested".into(), (**requested).into());
                            if let Some(c) = correlation.as_ref() {
                                data.insert("correlationId".into(), c.as_str().into());
                            }
                            json_rpc_error_response(
                                rej.status,
                                rej.id.as_ref(),
                                rej.code,
                                rej.message,
                                Some(&serde_json::Value::Object(data)),
                            )
                        }
                    };
                    if rej.status == http::StatusCode::PAYLOAD_TOO_LARGE {
                        // What is left of the body (if the drain stopped short) is not read:
                        // the connection cannot carry another request.
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    if rej.status == http::StatusCode::UNSUPPORTED_MEDIA_TYPE {
                        // RFC 9110 §12.5.3: the codings accepted, for a 415 about one.
                        resp.headers_mut().insert(
                            http::header::ACCEPT_ENCODING,
                            http::HeaderValue::from_static("identity"),
                        );
                    }
                    return Poll::Ready(Ok(resp));
                }
                StateProj::Reading {
                    mut body,
                    read,
                    parts,
                    service,
                    json,
                    limits,
                    max,
                    timeout,
                    sleep,
                    in_flight,
                    drained,
                } => {
                    let done = loop {
                        let frame = match body.as_mut().poll_frame(cx) {
                            Poll::Ready(frame) => frame,
                            Poll::Pending if drained.is_some() => {
                                // Draining: the 413 goes out when the time is up.
                                if sleep.is_none() && !timer_available() {
                                    break Err(Rejection::too_large());
                                }
                                let timer = sleep.get_or_insert_with(|| {
                                    Box::pin(tokio::time::sleep(DRAIN_TIME))
                                });
                                ready!(timer.as_mut().poll(cx));
                                break Err(Rejection::too_large());
                            }
                            Poll::Pending => {
                                let Some(limit) = *timeout else {
                                    return Poll::Pending;
                                };
                                // A timer needs a Tokio runtime; polled by another executor, read
                                // without a deadline rather than panic.
                                if sleep.is_none() && !timer_available() {
                                    *timeout = None;
                                    return Poll::Pending;
                                }
                                let timer = sleep
                                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                                ready!(timer.as_mut().poll(cx));
                                let parts = parts.take().expect("polled after completion");
                                // Debug, not warn: a client can cause one per connection.
                                tracing::debug!(
                                    timeout_ms = limit.as_millis(),
                                    bytes_read = read.len,
                                    "MCP request body not received in time"
                                );
                                return Poll::Ready(Ok(body_timeout_response(&parts)));
                            }
                        };
                        match (frame, drained.as_mut()) {
                            (Some(Ok(frame)), Some(n)) => {
                                if let Ok(data) = frame.into_data() {
                                    *n += data.remaining();
                                    if *n > max.saturating_add(DRAIN_MAX_BYTES) {
                                        break Err(Rejection::too_large());
                                    }
                                }
                            }
                            (Some(Ok(frame)), None) => {
                                if let Ok(data) = frame.into_data() {
                                    if read.len + data.remaining() > *max {
                                        // Over the limit: drop what was read, drain the rest.
                                        *drained = Some(read.len + data.remaining());
                                        *read = Read::default();
                                        *sleep = None;
                                        continue;
                                    }
                                    read.push(data);
                                }
                            }
                            (Some(Err(_)), Some(_)) | (None, Some(_)) => {
                                break Err(Rejection::too_large());
                            }
                            (Some(Err(_)), None) => break Err(Rejection::unreadable()),
                            (None, None) => break Ok(()),
                        }
                        if body.is_end_stream() {
                            break match drained {
                                Some(_) => Err(Rejection::too_large()),
                                None => Ok(()),
                            };
                        }
                    };
                    let mut parts = parts.take().expect("polled after completion");
                    match done.and_then(|()| {
                        let bytes = read.finish();
                        let facts = if *json {
                            parse::from_post(&parts.headers, &bytes, *limits)?
                        } else {
                            parse::from_headers(&parts.method, &parts.headers, *limits)?
                        };
                        // A request whose id is in progress in its session never reaches
                        // the server.
                        let entry =
                            match (&*in_flight, facts.kind(), facts.session_id(), facts.id()) {
                                (Some(t), MessageKind::Request, Some(s), Some(id)) => t
                                    .begin(s, id)
                                    .map_err(|_| Rejection::in_use().with_id(Some(id.clone())))?,
                                _ => None,
                            };
                        Ok((bytes, facts, entry))
                    }) {
                        Ok((bytes, facts, entry)) => {
                            crate::span::record_request(&facts);
                            if let Some(e) = &entry {
                                parts.extensions.insert(e.clone());
                            }
                            let listen = match (facts.method(), facts.kind(), facts.id()) {
                                (
                                    Some(Method::SubscriptionsListen),
                                    MessageKind::Request,
                                    Some(id),
                                ) => Some(ListenId(id.clone())),
                                _ => None,
                            };
                            parts.extensions.insert(facts);
                            let mut svc = service.take().expect("polled after completion");
                            let req = Request::from_parts(parts, McpBody::new(bytes));
                            State::Calling {
                                future: svc.call(req),
                                listen,
                                in_flight: entry,
                            }
                        }
                        Err(rejection) => State::Answer {
                            rejection: Some(rejection),
                            correlation: parts.extensions.get::<CorrelationId>().cloned(),
                        },
                    }
                }
            };
            this.state.set(next);
        }
    }
}
