//! MCP method semantics for both protocol revisions: which methods are safe to retry, which open
//! long-lived streams, which carry a name.

use std::fmt;

/// A JSON-RPC method name, with the MCP methods middleware cares about as variants so that the
/// common case needs no allocation and matches are exhaustive.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// `initialize` (2025-11-25 handshake).
    Initialize,
    /// `ping` (2025-11-25 only).
    Ping,
    /// `server/discover` (2026-07-28).
    ServerDiscover,
    /// `subscriptions/listen` (2026-07-28): a long-lived POST stream.
    SubscriptionsListen,
    /// `tools/list`.
    ToolsList,
    /// `tools/call`.
    ToolsCall,
    /// `resources/list`.
    ResourcesList,
    /// `resources/templates/list`.
    ResourceTemplatesList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/subscribe`.
    ResourcesSubscribe,
    /// `resources/unsubscribe`.
    ResourcesUnsubscribe,
    /// `prompts/list`.
    PromptsList,
    /// `prompts/get`.
    PromptsGet,
    /// `completion/complete`.
    CompletionComplete,
    /// `logging/setLevel`.
    LoggingSetLevel,
    /// `tasks/get`.
    TasksGet,
    /// `tasks/list`.
    TasksList,
    /// `tasks/result`.
    TasksResult,
    /// `tasks/cancel`.
    TasksCancel,
    /// `notifications/initialized`.
    NotificationsInitialized,
    /// `notifications/cancelled`.
    NotificationsCancelled,
    /// `notifications/progress`.
    NotificationsProgress,
    /// Any other method, verbatim.
    Other(Box<str>),
}

/// Whether a method may be re-sent after a failure without risking a duplicated side effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrySafety {
    /// Read-only or idempotent by definition (`ping`, lists, reads, gets, `server/discover`).
    Safe,
    /// `tools/call`: safe only when the tool is known to be read-only / idempotent (annotations are
    /// server hints; trusting them is opt-in) or the call carries an idempotency key.
    DependsOnTool,
    /// Never retried (side effects, or not a call at all).
    Unsafe,
}

/// Which field of `params` names the target of a method (mirrored in the `Mcp-Name` header under
/// 2026-07-28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameField {
    /// `params.name` (`tools/call`, `prompts/get`).
    Name,
    /// `params.uri` (`resources/read`, `resources/subscribe`, `resources/unsubscribe`).
    Uri,
    /// `params.taskId` (`tasks/get`, `tasks/cancel`).
    TaskId,
}

impl Method {
    /// Parses a method name. Known MCP methods need no allocation.
    pub fn parse(s: &str) -> Method {
        match s {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "server/discover" => Method::ServerDiscover,
            "subscriptions/listen" => Method::SubscriptionsListen,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourceTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "completion/complete" => Method::CompletionComplete,
            "logging/setLevel" => Method::LoggingSetLevel,
            "tasks/get" => Method::TasksGet,
            "tasks/list" => Method::TasksList,
            "tasks/result" => Method::TasksResult,
            "tasks/cancel" => Method::TasksCancel,
            "notifications/initialized" => Method::NotificationsInitialized,
            "notifications/cancelled" => Method::NotificationsCancelled,
            "notifications/progress" => Method::NotificationsProgress,
            other => Method::Other(other.into()),
        }
    }

    /// The method name as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Initialize => "initialize",
            Method::Ping => "ping",
            Method::ServerDiscover => "server/discover",
            Method::SubscriptionsListen => "subscriptions/listen",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::ResourcesList => "resources/list",
            Method::ResourceTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe => "resources/subscribe",
            Method::ResourcesUnsubscribe => "resources/unsubscribe",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::CompletionComplete => "completion/complete",
            Method::LoggingSetLevel => "logging/setLevel",
            Method::TasksGet => "tasks/get",
            Method::TasksList => "tasks/list",
            Method::TasksResult => "tasks/result",
            Method::TasksCancel => "tasks/cancel",
            Method::NotificationsInitialized => "notifications/initialized",
            Method::NotificationsCancelled => "notifications/cancelled",
            Method::NotificationsProgress => "notifications/progress",
            Method::Other(s) => s,
        }
    }

    /// Whether the method may be retried (see [`RetrySafety`]).
    pub fn retry_safety(&self) -> RetrySafety {
        match self {
            Method::Ping
            | Method::ServerDiscover
            | Method::ToolsList
            | Method::ResourcesList
            | Method::ResourceTemplatesList
            | Method::ResourcesRead
            | Method::PromptsList
            | Method::PromptsGet
            | Method::CompletionComplete
            | Method::TasksGet
            | Method::TasksList => RetrySafety::Safe,
            Method::ToolsCall => RetrySafety::DependsOnTool,
            _ => RetrySafety::Unsafe,
        }
    }

    /// Whether a POST of this method opens a long-lived stream rather than a call
    /// (`subscriptions/listen`). GET listen streams are recognised from the HTTP method instead.
    #[inline]
    pub fn is_long_lived(&self) -> bool {
        matches!(self, Method::SubscriptionsListen)
    }

    /// Which `params` field names this method's target, if any (mirrored in `Mcp-Name`).
    pub fn name_field(&self) -> Option<NameField> {
        match self {
            Method::ToolsCall | Method::PromptsGet => Some(NameField::Name),
            Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe => {
                Some(NameField::Uri)
            }
            Method::TasksGet | Method::TasksCancel => Some(NameField::TaskId),
            _ => None,
        }
    }

    /// Whether the method exists in the given revision. `ping` and `initialize` are gone in
    /// 2026-07-28; `server/discover` and `subscriptions/listen` are new there.
    pub fn exists_in(&self, revision: crate::ProtocolRevision) -> bool {
        use crate::ProtocolRevision as R;
        match self {
            Method::Ping | Method::Initialize | Method::NotificationsInitialized => {
                revision != R::V2026_07_28
            }
            Method::ServerDiscover | Method::SubscriptionsListen => revision == R::V2026_07_28,
            _ => true,
        }
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Method {
    /// Known methods print as is; unknown ones escaped and cut short (they are client-controlled:
    /// see [`LoggedName`](crate::span::LoggedName)).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Other(s) => fmt::Display::fmt(&crate::span::LoggedName(s), f),
            m => f.write_str(m.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        for m in [
            "initialize",
            "ping",
            "server/discover",
            "subscriptions/listen",
            "tools/list",
            "tools/call",
            "resources/read",
            "prompts/get",
            "tasks/cancel",
            "notifications/cancelled",
        ] {
            assert_eq!(Method::parse(m).as_str(), m);
            assert!(!matches!(Method::parse(m), Method::Other(_)));
        }
        assert_eq!(Method::parse("x/y"), Method::Other("x/y".into()));
        // Client-chosen: escaped and cut short when displayed (logged).
        assert_eq!(Method::parse("x/y").to_string(), r#""x/y""#);
        assert_eq!(Method::parse("tools/call").to_string(), "tools/call");
        let long = Method::parse(&"m\n".repeat(10_000)).to_string();
        assert!(
            long.len() < 300 && long.ends_with("… (20000 bytes)"),
            "{long}"
        );
    }

    #[test]
    fn semantics() {
        assert_eq!(Method::Ping.retry_safety(), RetrySafety::Safe);
        assert_eq!(Method::ServerDiscover.retry_safety(), RetrySafety::Safe);
        assert_eq!(Method::ToolsCall.retry_safety(), RetrySafety::DependsOnTool);
        assert_eq!(Method::Initialize.retry_safety(), RetrySafety::Unsafe);
        assert_eq!(Method::TasksCancel.retry_safety(), RetrySafety::Unsafe);
        assert!(Method::SubscriptionsListen.is_long_lived());
        assert!(!Method::ToolsCall.is_long_lived());
        assert_eq!(Method::ResourcesRead.name_field(), Some(NameField::Uri));
        assert_eq!(Method::ToolsList.name_field(), None);
        assert!(!Method::Ping.exists_in(crate::ProtocolRevision::V2026_07_28));
        assert!(Method::Ping.exists_in(crate::ProtocolRevision::V2025_11_25));
    }
}
