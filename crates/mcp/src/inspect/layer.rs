use tower_layer::Layer;

use super::parse::Limits;
use super::service::McpInspect;

/// Applies [`McpInspect`]: see the [module docs](super).
///
/// ```
/// use tower_armor_mcp::inspect::McpInspectLayer;
/// let layer = McpInspectLayer::new().max_body_bytes(1 << 20);
/// # let _ = layer;
/// ```
#[derive(Clone, Copy, Debug)]
pub struct McpInspectLayer {
    pub(crate) max_body: usize,
    pub(crate) limits: Limits,
}

impl Default for McpInspectLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl McpInspectLayer {
    /// The default body limit: 4 MiB.
    pub const DEFAULT_MAX_BODY: usize = 4 << 20;
    /// The default limit on a string id's length: 256 bytes.
    pub const DEFAULT_MAX_ID_LEN: usize = 256;

    /// A layer with the defaults: 4 MiB bodies, ids up to 256 bytes, unknown protocol versions
    /// rejected.
    pub fn new() -> Self {
        McpInspectLayer {
            max_body: Self::DEFAULT_MAX_BODY,
            limits: Limits {
                max_id_len: Self::DEFAULT_MAX_ID_LEN,
                reject_unknown_versions: true,
            },
        }
    }

    /// The largest request body read; larger ones get 413.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The longest string id accepted; longer ones get 400 + `-32600`.
    pub fn max_id_len(mut self, len: usize) -> Self {
        self.limits.max_id_len = len;
        self
    }

    /// Passes requests with an unknown `MCP-Protocol-Version` inward (with no revision in their
    /// facts) instead of answering 400 + `-32022`. Use when the inner server speaks revisions
    /// newer than this crate knows.
    pub fn allow_unknown_versions(mut self) -> Self {
        self.limits.reject_unknown_versions = false;
        self
    }

    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }
}

impl<S> Layer<S> for McpInspectLayer {
    type Service = McpInspect<S>;

    fn layer(&self, inner: S) -> McpInspect<S> {
        McpInspect::new(inner, *self)
    }
}
