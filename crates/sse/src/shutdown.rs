//! [`SseShutdown`]: ends every open stream of a layer.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::layer::Shared;

/// Ends every open SSE stream of one [`SseLayer`](crate::SseLayer) (all its clones and
/// services), cleanly: each stream ends at its next event boundary (at once if it is at one),
/// so clients see whole events and then the end of the body. A stream caught inside an event
/// gets the layer's shutdown grace to finish it, then is cut. Streams answered after the
/// shutdown end at once.
///
/// Without it, a server's graceful shutdown (axum's `with_graceful_shutdown`) waits forever for
/// open SSE streams. Cheap to clone; wire it to Ctrl-C / SIGTERM:
///
/// ```no_run
/// # async fn serve(
/// #     router: axum::Router,
/// #     listener: tokio::net::TcpListener,
/// #     layer: tower_armor_sse::SseLayer,
/// #     ctrl_c_or_sigterm: impl std::future::Future<Output = ()> + Send + 'static,
/// # ) {
/// let shutdown = layer.shutdown_handle();
/// axum::serve(listener, router)
///     .with_graceful_shutdown(async move {
///         ctrl_c_or_sigterm.await;
///         shutdown.shutdown();
///     })
///     .await
///     .unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct SseShutdown {
    shared: Arc<Shared>,
}

impl SseShutdown {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        SseShutdown { shared }
    }

    /// Ends every open stream (and any answered later). Idempotent.
    pub fn shutdown(&self) {
        // Long-lived streams first: whoever sees the shutdown sees the drain too.
        self.shared.listen_shutdown.fire();
        self.shared.shutdown.fire();
    }

    /// Ends the long-lived streams only ([`is_long_lived`](crate::is_long_lived): the GET listen
    /// stream, `subscriptions/listen`), and any answered later; the streams of calls in flight
    /// go on to their answers. Idempotent.
    ///
    /// The first step of a drain: long-lived streams never end by themselves, while a call's
    /// stream ends with its answer. Stop accepting requests, call this, give the calls in flight
    /// a grace period, then [`shutdown`](Self::shutdown) whatever is left:
    ///
    /// ```
    /// # async fn drain(
    /// #     shutdown: tower_armor_sse::SseShutdown,
    /// #     connections_done: impl std::future::Future<Output = ()>,
    /// # ) {
    /// shutdown.end_long_lived();
    /// let grace = tokio::time::sleep(std::time::Duration::from_secs(5));
    /// tokio::select! {
    ///     () = connections_done => {}
    ///     () = grace => shutdown.shutdown(),
    /// }
    /// # }
    /// ```
    pub fn end_long_lived(&self) {
        self.shared.listen_shutdown.fire();
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.shutdown.is_fired()
    }

    /// Whether long-lived streams are being ended: [`end_long_lived`](Self::end_long_lived) or
    /// [`shutdown`](Self::shutdown) was called.
    pub fn is_draining(&self) -> bool {
        self.shared.listen_shutdown.is_fired()
    }

    /// How many SSE answers of this layer are open right now (bodies not yet ended or dropped).
    pub fn open_streams(&self) -> usize {
        self.shared.open.load(Ordering::Acquire)
    }
}
