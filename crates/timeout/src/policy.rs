//! Which deadline a call gets: pure, tested without a runtime.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_armor_mcp::McpRequest;

/// A per-request deadline chooser: `Some(d)` gives the call `d`, `None` leaves it to the
/// per-tool table and the default.
pub(crate) type PerRequest = Arc<dyn Fn(&McpRequest) -> Option<Duration> + Send + Sync>;

/// The settings of a [`TimeoutLayer`](crate::TimeoutLayer), validated by its builder.
#[derive(Clone)]
pub(crate) struct Policy {
    pub(crate) default: Duration,
    pub(crate) per_tool: HashMap<Box<str>, Duration>,
    pub(crate) per_request: Option<PerRequest>,
    pub(crate) reset_on_progress: bool,
    pub(crate) max_total: Option<Duration>,
    pub(crate) max_pause: Duration,
    pub(crate) boundary_grace: Duration,
    pub(crate) resume_grace: Duration,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("default", &self.default)
            .field("per_tool", &self.per_tool)
            .field("per_request", &self.per_request.as_ref().map(|_| "fn"))
            .field("reset_on_progress", &self.reset_on_progress)
            .field("max_total", &self.max_total)
            .field("max_pause", &self.max_pause)
            .field("boundary_grace", &self.boundary_grace)
            .field("resume_grace", &self.resume_grace)
            .finish()
    }
}

impl Policy {
    /// The deadline of a call with these facts: the per-request chooser's answer, else the
    /// tool's entry (`tools/call` only), else the default.
    ///
    /// The tool name is client-controlled; it is only looked up, never stored.
    pub(crate) fn duration_for(&self, facts: Option<&McpRequest>) -> Duration {
        let Some(facts) = facts else {
            return self.default;
        };
        if let Some(d) = self.per_request.as_ref().and_then(|f| f(facts)) {
            return d;
        }
        facts
            .tool()
            .and_then(|t| self.per_tool.get(t).copied())
            .unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use tower_armor_mcp::{MessageKind, Method};

    use super::*;

    fn policy() -> Policy {
        Policy {
            default: Duration::from_secs(10),
            per_tool: [("slow".into(), Duration::from_secs(60))]
                .into_iter()
                .collect(),
            per_request: None,
            reset_on_progress: false,
            max_total: None,
            max_pause: Duration::from_secs(600),
            boundary_grace: Duration::from_millis(100),
            resume_grace: Duration::ZERO,
        }
    }

    fn call(method: Method, name: Option<&str>) -> McpRequest {
        let f = McpRequest::new(MessageKind::Request, Some(method), Some(1.into()));
        match name {
            Some(n) => f.with_name(n),
            None => f,
        }
    }

    #[test]
    fn per_tool_then_default() {
        let p = policy();
        assert_eq!(p.duration_for(None), Duration::from_secs(10));
        let slow = call(Method::ToolsCall, Some("slow"));
        assert_eq!(p.duration_for(Some(&slow)), Duration::from_secs(60));
        let add = call(Method::ToolsCall, Some("add"));
        assert_eq!(p.duration_for(Some(&add)), Duration::from_secs(10));
        // A prompt that happens to be called "slow" is not the tool.
        let prompt = call(Method::PromptsGet, Some("slow"));
        assert_eq!(p.duration_for(Some(&prompt)), Duration::from_secs(10));
    }

    #[test]
    fn the_per_request_chooser_wins_when_it_answers() {
        let mut p = policy();
        p.per_request = Some(Arc::new(|f: &McpRequest| {
            (f.method() == Some(&Method::TasksResult)).then_some(Duration::from_secs(300))
        }));
        let r = call(Method::TasksResult, None);
        assert_eq!(p.duration_for(Some(&r)), Duration::from_secs(300));
        let slow = call(Method::ToolsCall, Some("slow"));
        assert_eq!(p.duration_for(Some(&slow)), Duration::from_secs(60));
    }
}
