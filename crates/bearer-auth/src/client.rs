//! Client side: [`InjectBearerLayer`] sets `Authorization: Bearer <token>` on every outgoing
//! request from a [`TokenSource`], and [`FileTokenSource`] reads the token from a file that may
//! be rotated.
//!
//! The header is marked sensitive (hyper and `http`'s `Debug` do not print it), and any
//! `Authorization` the request already carries is replaced: a token that came in from a client is
//! never passed on upstream (MCP forbids token passthrough).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::{HeaderValue, Request, header};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_armor_mcp::{BoxError, Secret, TokenSource};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{ConfigError, InvalidToken, TokenUnavailable};
use crate::parse::check_token68;
use crate::tokens::{Settled, read_bounded, read_settled};

/// Applies [`InjectBearer`]: every outgoing request gets `Authorization: Bearer <token>` from the
/// [`TokenSource`], replacing any it carried.
///
/// ```
/// use tower_armor_bearer_auth::InjectBearerLayer;
/// use tower_armor_mcp::Secret;
///
/// let static_token = InjectBearerLayer::new(Secret::new("s3cr3t"));
/// let refreshing = InjectBearerLayer::new(|| Ok(Secret::new("fresh")));
/// # let _ = (static_token, refreshing);
/// ```
#[derive(Clone)]
pub struct InjectBearerLayer {
    source: Arc<dyn TokenSource>,
}

impl fmt::Debug for InjectBearerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectBearerLayer").finish_non_exhaustive()
    }
}

impl InjectBearerLayer {
    /// A layer taking its tokens from `source`: a [`Secret`], a [`FileTokenSource`], or a
    /// closure `Fn() -> Result<Secret, BoxError>` (called once per request; keep it cheap).
    pub fn new(source: impl TokenSource) -> Self {
        InjectBearerLayer {
            source: Arc::new(source),
        }
    }

    /// A layer sending the fixed `token`, checked now: one that cannot be a bearer token
    /// (whitespace, say a newline kept from an environment variable) is refused here, before
    /// anything starts, rather than failing every request with [`InvalidToken`].
    pub fn with_token(token: Secret) -> Result<Self, InvalidToken> {
        bearer_value(&token)?;
        Ok(Self::new(token))
    }

    /// A layer sharing an existing source.
    pub fn from_shared(source: Arc<dyn TokenSource>) -> Self {
        InjectBearerLayer { source }
    }
}

impl<S> Layer<S> for InjectBearerLayer {
    type Service = InjectBearer<S>;

    fn layer(&self, inner: S) -> InjectBearer<S> {
        InjectBearer {
            inner,
            source: Arc::clone(&self.source),
        }
    }
}

/// Sets `Authorization: Bearer <token>` on every request; see [`InjectBearerLayer`].
///
/// Fails with [`TokenUnavailable`] when the source fails and with [`InvalidToken`] when the token
/// cannot be a header value; the request is then not sent. Errors are [`BoxError`] (client stacks
/// are call-plane stacks).
#[derive(Clone)]
pub struct InjectBearer<S> {
    inner: S,
    source: Arc<dyn TokenSource>,
}

impl<S: fmt::Debug> fmt::Debug for InjectBearer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectBearer")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Builds the sensitive `Bearer <token>` header value. The token must be an RFC 6750
/// `b64token`, the grammar a server (ours included) accepts: anything else would only be sent
/// to be refused with a 401.
pub(crate) fn bearer_value(token: &Secret) -> Result<HeaderValue, InvalidToken> {
    let t = token.expose().as_bytes();
    check_token68(t).map_err(|_| InvalidToken::new())?;
    let mut buf = BytesMut::with_capacity(7 + t.len());
    buf.put_slice(b"Bearer ");
    buf.put_slice(t);
    let mut v = HeaderValue::from_maybe_shared(buf.freeze()).map_err(|_| InvalidToken::new())?;
    v.set_sensitive(true);
    Ok(v)
}

impl<S, B> Service<Request<B>> for InjectBearer<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = InjectFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let value = match self.source.token() {
            Ok(secret) => match bearer_value(&secret) {
                Ok(v) => v,
                Err(e) => return InjectFuture::failed(Box::new(e)),
            },
            Err(e) => return InjectFuture::failed(Box::new(TokenUnavailable::new(e))),
        };
        // `insert` replaces every value already there: an inbound token never goes upstream.
        req.headers_mut().insert(header::AUTHORIZATION, value);
        InjectFuture::inner(self.inner.call(req))
    }
}

pin_project! {
    /// Response future of [`InjectBearer`].
    pub struct InjectFuture<F> {
        #[pin]
        kind: InjectKind<F>,
    }
}

pin_project! {
    #[project = InjectKindProj]
    enum InjectKind<F> {
        Inner { #[pin] future: F },
        Failed { error: Option<BoxError> },
    }
}

impl<F> InjectFuture<F> {
    fn inner(future: F) -> Self {
        InjectFuture {
            kind: InjectKind::Inner { future },
        }
    }

    fn failed(error: BoxError) -> Self {
        InjectFuture {
            kind: InjectKind::Failed { error: Some(error) },
        }
    }
}

impl<F> fmt::Debug for InjectFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectFuture").finish_non_exhaustive()
    }
}

impl<F, T, E> Future for InjectFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            InjectKindProj::Inner { future } => future.poll(cx).map_err(Into::into),
            InjectKindProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .expect("InjectFuture polled after completion"))),
        }
    }
}

/// A [`TokenSource`] reading one token from a file, read again at most every `interval` (default
/// 5 s) when a request asks for the token, so a rotated secret is picked up without a restart
/// and without a background task.
///
/// The file holds one token; surrounding whitespace (a trailing newline) is ignored. It must be
/// a regular file (or a symlink to one): a FIFO, socket or device is refused unread, as
/// reading one from the request path could block. A missing, empty or invalid file at start is
/// a [`ConfigError`]; later, the last good token is kept and an error is logged.
///
/// One caller at a time reads the file, without holding any lock: the others go on with the
/// token they have meanwhile.
pub struct FileTokenSource {
    path: PathBuf,
    interval: Duration,
    state: Mutex<FileState>,
}

struct FileState {
    token: Secret,
    /// A caller is reading the file: the others keep the token meanwhile, even once the next
    /// check is due (a read stalled on a hung network file system holds up one caller, not one
    /// more every interval).
    reading: bool,
    /// `None`: never (an interval too long to add to the clock).
    next_check: Option<Instant>,
}

/// Marks the end of a read of the token file when dropped (a read that panicked too).
struct ReadDone<'a>(&'a Mutex<FileState>);

impl Drop for ReadDone<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).reading = false;
    }
}

impl fmt::Debug for FileTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTokenSource")
            .field("path", &self.path)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl FileTokenSource {
    /// The default interval between two reads: 5 s.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// Reads the token from `path` now.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let path = path.into();
        let token = read_token(&path).map_err(|e| ConfigError::new("FileTokenSource", e))?;
        Ok(FileTokenSource {
            path,
            interval: Self::DEFAULT_INTERVAL,
            state: Mutex::new(FileState {
                token,
                reading: false,
                next_check: Instant::now().checked_add(Self::DEFAULT_INTERVAL),
            }),
        })
    }

    /// The shortest interval accepted: 100 ms.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

    /// How often the file is read again (one too long for the clock, such as `Duration::MAX`,
    /// means never). Under [`MIN_INTERVAL`](Self::MIN_INTERVAL) is refused: the file would be
    /// read on nearly every request, on the request's own task (the read is blocking I/O,
    /// bounded to one small regular file, by one caller at a time).
    pub fn interval(mut self, interval: Duration) -> Result<Self, ConfigError> {
        if interval < Self::MIN_INTERVAL {
            return Err(ConfigError::new(
                "FileTokenSource::interval",
                "must be at least 100 ms (the file would be read on nearly every request)",
            ));
        }
        self.interval = interval;
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        st.next_check = Instant::now().checked_add(interval);
        Ok(self)
    }
}

fn read_token(path: &Path) -> Result<Secret, String> {
    read_token_with(path, read_bounded)
}

/// [`read_token`] reading the file with `read` (tests simulate a writer). A file that changed
/// while it was read may be a valid-looking prefix of the new token: never used.
fn read_token_with(
    path: &Path,
    read: impl FnOnce(&Path) -> Result<Vec<u8>, String>,
) -> Result<Secret, String> {
    let bytes = match read_settled(path, read)? {
        Settled::Bytes(bytes) => bytes,
        Settled::Changing => {
            return Err("token file changed while being read (being written?)".to_owned());
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| "token file is not UTF-8".to_owned())?;
    let token = text.trim_ascii();
    if token.is_empty() {
        return Err("token file is empty".to_owned());
    }
    let secret = Secret::new(token);
    bearer_value(&secret).map_err(|e| e.to_string())?;
    Ok(secret)
}

impl FileTokenSource {
    /// [`TokenSource::token`], reading the file with `read` when a check is due.
    fn token_with(&self, read: impl FnOnce(&Path) -> Result<Secret, String>) -> Secret {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if st.reading || st.next_check.is_none_or(|at| now < at) {
                return st.token.clone();
            }
            // This caller reads the file; the others go on with the current token meanwhile,
            // without waiting for the read.
            st.next_check = now.checked_add(self.interval);
            st.reading = true;
        }
        let _done = ReadDone(&self.state);
        let fresh = read(&self.path);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match fresh {
            Ok(fresh) => st.token = fresh,
            Err(e) => tracing::error!(
                path = %self.path.display(),
                error = %e,
                "client token file unreadable or invalid; keeping the last good token"
            ),
        }
        st.token.clone()
    }
}

impl TokenSource for FileTokenSource {
    fn token(&self) -> Result<Secret, BoxError> {
        Ok(self.token_with(read_token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file caught while a writer is at work (the read got a prefix of the new token, a
    /// valid-looking token68) is not used: the last good token stays until the next check.
    #[test]
    fn a_file_written_while_read_is_not_used() {
        let dir = std::env::temp_dir().join(format!("tower-armor-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "abc").unwrap();
        let e = read_token_with(&path, |p| {
            let bytes = read_bounded(p);
            std::fs::write(p, "abcdef-rotated").unwrap();
            bytes
        })
        .unwrap_err();
        assert!(e.contains("changed while being read"), "{e}");
        assert_eq!(read_token(&path).unwrap().expose(), "abcdef-rotated");
    }

    #[test]
    fn a_fixed_token_is_checked_when_the_layer_is_built() {
        assert!(InjectBearerLayer::with_token(Secret::new("abc-123._~+/=")).is_ok());
        for bad in ["", "tok\n", "two words", "t\u{e9}"] {
            assert!(
                InjectBearerLayer::with_token(Secret::new(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    /// A read that stalls (a hung network file system) is not joined by another once the
    /// next check is due: the other callers keep the current token, and the next check after
    /// it reads again.
    #[test]
    fn a_stalled_read_is_not_joined() {
        let dir = std::env::temp_dir().join(format!("tower-armor-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stalled");
        std::fs::write(&path, "token-0").unwrap();
        let source = FileTokenSource::new(&path).unwrap();
        let due = || source.state.lock().unwrap().next_check = Some(Instant::now());
        let reads = std::cell::Cell::new(0);
        due();
        let got = source.token_with(|_| {
            reads.set(reads.get() + 1);
            due();
            let meanwhile = source.token_with(|_| {
                reads.set(reads.get() + 1);
                Ok(Secret::new("token-2"))
            });
            assert_eq!(meanwhile.expose(), "token-0");
            Ok(Secret::new("token-1"))
        });
        assert_eq!((got.expose(), reads.get()), ("token-1", 1));
        due();
        let next = source.token_with(|_| {
            reads.set(reads.get() + 1);
            Ok(Secret::new("token-3"))
        });
        assert_eq!((next.expose(), reads.get()), ("token-3", 2));
    }
}
