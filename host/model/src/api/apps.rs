//! Web apps on the local API (`apps.*` for the trusted session; the app-facing methods for
//! an app session): scopes, grants, and the shapes the app-facing methods answer with.
//!
//! An **app session** is a session whose `hello` named an `origin` (the extension opens one
//! per page origin or external extension id, taking the origin from the browser, never from
//! the page). The daemon serves such a session only the app-facing methods
//! (`contract::visit_app_methods`), each behind its [`Scope`] granted to that origin.
//! The trusted session (the extension's own, the CLI) lists, grants and revokes with
//! `apps.*`.

use serde::{Deserialize, Serialize};

use super::ErrorCode;
use super::social::PresenceState;
use crate::PeerId;

pub const APPS_LIST: &str = "apps.list";
pub const APPS_GRANT: &str = "apps.grant";
pub const APPS_REVOKE: &str = "apps.revoke";

/// The methods of the apps area (trusted sessions only).
pub const METHODS: &[&str] = &[APPS_LIST, APPS_GRANT, APPS_REVOKE];

pub const PERMISSIONS_GET: &str = "permissions.get";
pub const PERMISSIONS_REQUEST: &str = "permissions.request";
pub const MESSAGES_SEND: &str = "messages.send";

/// Event topics of the apps area.
pub mod topics {
    /// A grant changed (granted, narrowed or revoked): the app's origin and scopes now.
    pub const APPS_CHANGED: &str = "apps.changed";

    pub const ALL: &[&str] = &[APPS_CHANGED];
}

/// What an app may be granted. The wire names are `identity`, `contacts:read`,
/// `presence`, `messages:send`, `resources`, `shares`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Scope {
    /// The node's PeerId and name.
    #[serde(rename = "identity")]
    Identity,
    /// The accepted contacts: PeerId and name.
    #[serde(rename = "contacts:read")]
    ContactsRead,
    /// The contacts' online state, and `presence.changed`.
    #[serde(rename = "presence")]
    Presence,
    /// Sending a chat message to an accepted contact.
    #[serde(rename = "messages:send")]
    MessagesSend,
    /// The app's own resource types and resources (and those of its types shared with the user).
    #[serde(rename = "resources")]
    Resources,
    /// Sharing the app's resources with contacts; listing and revoking those shares.
    #[serde(rename = "shares")]
    Shares,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::Identity,
        Scope::ContactsRead,
        Scope::Presence,
        Scope::MessagesSend,
        Scope::Resources,
        Scope::Shares,
    ];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Identity => "identity",
            Scope::ContactsRead => "contacts:read",
            Scope::Presence => "presence",
            Scope::MessagesSend => "messages:send",
            Scope::Resources => "resources",
            Scope::Shares => "shares",
        }
    }

    /// The scope of a wire name.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.iter().copied().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An app the user granted something: `apps.list`'s entries, `apps.grant`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppEntry {
    /// `https://example.com`, `chrome-extension://<id>`, …
    pub origin: String,
    /// Sorted, each once.
    pub scopes: Vec<Scope>,
    /// When the first scope still held was granted (unix ms).
    pub granted_at_ms: u64,
    /// When an app session of this origin last made a call (unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub last_used_ms: Option<u64>,
}

/// `apps.grant`'s params: adds scopes to an origin's grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct GrantParams {
    pub origin: String,
    pub scopes: Vec<Scope>,
}

/// `apps.revoke`'s params: these scopes, or (none given) every scope: the origin is forgotten
/// (its data stays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RevokeAppParams {
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub scopes: Option<Vec<Scope>>,
}

/// `apps.changed`'s data, and what `permissions.get` / `permissions.request` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppPermissions {
    pub origin: String,
    /// The scopes granted now (empty once revoked).
    pub scopes: Vec<Scope>,
    /// The prefix of this app's resource type names (`app_<hash>_`): a type the app
    /// registers is named `<namespace><Name>`, e.g. `app_k3v9q2m7x4ab_Todo`.
    pub namespace: String,
}

/// `permissions.request`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct PermissionsRequestParams {
    pub scopes: Vec<Scope>,
}

/// The identity as an app sees it (`identity.get` on an app session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppIdentity {
    pub peer_id: PeerId,
    /// `alice@hub`, once registered at the home hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub name: Option<String>,
}

/// An accepted contact as an app sees it (`contacts.list` on an app session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppContact {
    pub peer_id: PeerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub name: Option<String>,
    /// With the `presence` scope only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub online: Option<bool>,
    /// With the `presence` scope only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub state: Option<PresenceState>,
}

/// `messages.send`'s params: a chat message to an accepted contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AppSendParams {
    pub peer_id: PeerId,
    /// ≤ 16 KiB.
    pub text: String,
}

/// `messages.send`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AppSent {
    /// The message's id.
    pub id: String,
    /// The 1:1 chat's id.
    pub chat: String,
}

/// `schemas.register`'s params on an app session: RELAX NG text whose types are all named
/// in the app's namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AppSchemaParams {
    /// The RELAX NG text (as for the built-in `schemas.register`).
    pub schema: String,
    /// Which of the app's schema files this is (1-64 of letters, digits, `.`, `_`, `-`;
    /// default `schema`): registering the same file again evolves its types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub file: Option<String>,
}

/// `shares.create`'s params on an app session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AppShareParams {
    /// The app's resource to share (of one of its types).
    pub resource: String,
    /// Accepted contacts.
    pub members: Vec<PeerId>,
    /// Their level (default `read`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub role: Option<super::shares::ShareLevel>,
}

/// `shares.revoke`'s params on an app session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AppRevokeShareParams {
    pub share: String,
    pub peer_id: PeerId,
}

/// The codes an app may see, for the SDK (`sdk/src/api.gen.ts`).
pub const APP_ERRORS: &[ErrorCode] = &[
    ErrorCode::UserRejected,
    ErrorCode::Unauthorized,
    ErrorCode::Unsupported,
    ErrorCode::Disconnected,
    ErrorCode::RateLimited,
    ErrorCode::BadOrigin,
    ErrorCode::InvalidParams,
    ErrorCode::Internal,
    ErrorCode::HelloRequired,
    ErrorCode::InvalidResource,
    ErrorCode::NotFound,
    ErrorCode::Exists,
    ErrorCode::SchemaRefused,
    ErrorCode::InvalidQuery,
    ErrorCode::NoHub,
    ErrorCode::NotAContact,
    ErrorCode::TooLarge,
    ErrorCode::NotAllowed,
    ErrorCode::ShareNotFound,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_have_their_wire_names() {
        for &scope in Scope::ALL {
            let json = serde_json::to_value(scope).unwrap();
            assert_eq!(json, scope.as_str());
            assert_eq!(serde_json::from_value::<Scope>(json).unwrap(), scope);
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::ContactsRead.as_str(), "contacts:read");
        assert!(Scope::parse("contacts").is_none());
        assert!(serde_json::from_value::<Scope>("root".into()).is_err());
    }
}
